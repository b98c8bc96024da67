import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../../src/core/deps.ts";
import { FileStore, parseLog } from "../../src/storage/file.ts";
import { message, storeContract } from "./contract.ts";

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "shootawall-store-"));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("FileStore", () => {
  const dir = tempDir();
  storeContract({
    makeStore: () => new FileStore({ dir, fsync: "always", retain: 5, log: silentLogger }),
    durable: true,
    retain: 5,
  });

  it("skips a torn last line (a crash mid-write) and appends after the last good one", async () => {
    const d = tempDir();
    const store = new FileStore({ dir: d, fsync: "always", retain: 100, log: silentLogger });
    const { log, state } = await store.open("torn", () => "E1");
    await log.append([message(1), message(2)]);
    await log.close();
    await store.close();
    const path = join(d, "rooms", "torn.jsonl");
    appendFileSync(path, '{"type":"message","room":"r","seq":3,"us');
    const again = new FileStore({ dir: d, fsync: "always", retain: 100, log: silentLogger });
    const reopened = await again.open("torn", () => "E2");
    assert.equal(reopened.state.epoch, state.epoch);
    assert.equal(reopened.state.seq, 2);
    await reopened.log.append([message(3)]);
    await reopened.log.close();
    await again.close();
    const parsed = parseLog(readFileSync(path, "utf8"))!;
    assert.deepEqual(parsed.messages.map((m) => m.seq), [1, 2, 3]);
    assert.equal(parsed.skipped, 0);
  });

  it("moves an unreadable log aside and starts a new epoch, never crashing", async () => {
    const d = tempDir();
    const store = new FileStore({ dir: d, fsync: "always", retain: 100, log: silentLogger });
    await (await store.open("bad", () => "E1")).log.close();
    writeFileSync(join(d, "rooms", "bad.jsonl"), "garbage\n{not json\n");
    const { state, log } = await store.open("bad", () => "E9");
    assert.equal(state.epoch, "E9");
    assert.equal(state.seq, 0);
    await log.close();
    await store.close();
    assert.ok(readdirSync(join(d, "rooms")).some((f) => f.startsWith("bad.jsonl.corrupt-")));
  });

  it("rejects an append it cannot write and keeps nothing of it; later appends work again", async () => {
    const d = tempDir();
    const store = new FileStore({ dir: d, fsync: "always", retain: 100, log: silentLogger });
    const opened = await store.open("fail", () => "E1");
    await opened.log.append([message(1)]);
    await opened.log.close();
    await assert.rejects(Promise.resolve(opened.log.append([message(2)])), /Cannot store message/);
    const again = new FileStore({ dir: d, fsync: "always", retain: 100, log: silentLogger });
    const re = await again.open("fail", () => "E2");
    assert.equal(re.state.seq, 1);
    await re.log.append([message(2)]);
    await re.log.close();
    await again.close();
    await store.close();
  });

  it("with fsync=interval acks at once and still keeps everything across a clean close", async () => {
    const d = tempDir();
    const store = new FileStore({ dir: d, fsync: "interval", retain: 100, log: silentLogger, intervalMs: 50 });
    const { log } = await store.open("interval", () => "E1");
    for (let seq = 1; seq <= 20; seq++) await log.append([message(seq)]);
    await store.close();
    const again = new FileStore({ dir: d, fsync: "interval", retain: 100, log: silentLogger });
    assert.equal((await again.open("interval", () => "E2")).state.seq, 20);
    await again.close();
  });

  it("parseLog() ignores a line whose seq does not follow and lines that are not JSON", () => {
    const text = [
      JSON.stringify({ v: 1, epoch: "E", base: 4 }),
      JSON.stringify(message(5)),
      "not json",
      JSON.stringify(message(9)),
      JSON.stringify(message(6)),
      "",
    ].join("\n");
    const parsed = parseLog(text)!;
    assert.deepEqual(parsed.messages.map((m) => m.seq), [5, 6]);
    assert.equal(parsed.skipped, 2);
  });
});

describe("FileStore file handles", () => {
  it("keeps at most maxOpenFiles logs open and still writes every room", async () => {
    const d = tempDir();
    const store = new FileStore({ dir: d, fsync: "always", retain: 100, log: silentLogger, maxOpenFiles: 2 });
    const logs = await Promise.all(["a", "b", "c", "d", "e"].map((r) => store.open(r, () => `E-${r}`)));
    for (let round = 1; round <= 3; round++) {
      for (const { log } of logs) await log.append([message(round)]);
    }
    await store.close();
    const again = new FileStore({ dir: d, fsync: "always", retain: 100, log: silentLogger });
    for (const r of ["a", "b", "c", "d", "e"]) {
      const { state } = await again.open(r, () => "new");
      assert.equal(state.seq, 3, r);
      assert.equal(state.epoch, `E-${r}`);
    }
    await again.close();
  });
});
