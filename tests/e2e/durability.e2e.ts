// Nothing lost: acks, exactly-once delivery, resume with since/epoch, history across restarts and crashes,
// against the real server on every runtime.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type Frame, type TestClient } from "../_helpers/ws-client.ts";
import { selectedRuntimes, startServer, type RunningChild, type ServerRuntime } from "../_helpers/server.ts";

type Msg = Frame & { seq: number; text: string; user: string; nonce?: string };

async function joinRoom(url: string): Promise<{ c: TestClient; welcome: Frame; history: Frame }> {
  const c = await connect(url);
  const welcome = await c.next("welcome");
  const history = await c.next("history");
  return { c, welcome, history };
}

/** Waits until `c` has received `count` chat messages (counting every frame so far). */
async function messages(c: TestClient, count: number, timeoutMs = 30_000): Promise<Msg[]> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const got = c.frames.filter((f) => f.type === "message") as Msg[];
    if (got.length >= count) return got;
    if (Date.now() > end) assert.fail(`got ${got.length} of ${count} messages`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function acks(c: TestClient, count: number, timeoutMs = 30_000): Promise<Frame[]> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const got = c.frames.filter((f) => f.type === "ack");
    if (got.length >= count) return got;
    if (Date.now() > end) assert.fail(`got ${got.length} of ${count} acks; errors: ${JSON.stringify(c.frames.filter((f) => f.type === "error").slice(0, 3))}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function dataDir(): string {
  return mkdtempSync(join(tmpdir(), "shootawall-durable-"));
}

for (const runtime of selectedRuntimes()) {
  describe(`nothing lost on ${runtime}`, () => {
    let server: RunningChild;
    const clients: TestClient[] = [];
    const track = (c: TestClient) => (clients.push(c), c);
    before(async () => {
      server = await startServer(runtime, { RATE_LIMIT_PER_S: "0", PRESENCE_GRACE_S: "0", HISTORY_RETAIN: "1000" });
    });
    after(async () => {
      for (const c of clients) c.ws.terminate();
      await server.stop();
    });

    it("10 clients x 500 messages with nonces: each gets every message once, in one seq order, every nonce acked once", async () => {
      const N = 10;
      const PER = 500;
      const room = `${server.wsUrl}/ws/storm`;
      const peers = await Promise.all(Array.from({ length: N }, (_, i) => joinRoom(`${room}?name=u${i}`)));
      peers.forEach((p) => track(p.c));
      const start = peers[0]!.welcome.seq as number;
      for (let k = 0; k < PER; k++) {
        for (let i = 0; i < N; i++) peers[i]!.c.send({ type: "message", text: `u${i}-${k}`, nonce: `u${i}-${k}` });
      }
      const total = N * PER;
      const orders: number[][] = [];
      for (const p of peers) {
        const got = await messages(p.c, total, 60_000);
        assert.equal(got.length, total, "no duplicates");
        const seqs = got.map((m) => m.seq);
        assert.deepEqual(seqs, Array.from({ length: total }, (_, j) => start + j + 1), "seq order without gaps");
        orders.push(got.map((m) => m.seq));
        assert.equal(new Set(got.map((m) => m.text)).size, total, "every message once");
      }
      for (let i = 0; i < N; i++) {
        const a = await acks(peers[i]!.c, PER, 30_000);
        assert.equal(a.length, PER);
        assert.equal(new Set(a.map((f) => f.nonce)).size, PER, "each nonce acked once");
        // The ack's seq is the seq of that nonce's broadcast.
        const bySeq = new Map((await messages(peers[i]!.c, total)).map((m) => [m.nonce, m.seq]));
        for (const f of a) assert.equal(f.seq, bySeq.get(f.nonce as string));
        // The sender sees its message before the ack for it.
        const seenAt = new Map<string, number>();
        peers[i]!.c.frames.forEach((f, at) => {
          if (f.type === "message") seenAt.set(f.nonce as string, at);
          if (f.type === "ack") assert.ok((seenAt.get(f.nonce as string) ?? Infinity) < at, `ack before message for ${f.nonce}`);
        });
      }
      await Promise.all(peers.map((p) => p.c.close()));
    });

    it("a client that reconnects with since gets exactly what it missed; a gap beyond retention says complete:false", async () => {
      const r = `${server.wsUrl}/ws/resume`;
      const talker = track((await joinRoom(`${r}?name=talker`)).c);
      const first = await joinRoom(`${r}?name=leaver`);
      for (let i = 1; i <= 3; i++) talker.send({ type: "message", text: `before-${i}`, nonce: `b${i}` });
      const seen = await messages(first.c, 3);
      const lastSeq = seen.at(-1)!.seq;
      await first.c.close();
      for (let i = 1; i <= 7; i++) talker.send({ type: "message", text: `missed-${i}`, nonce: `m${i}` });
      await acks(talker, 10);
      const back = await joinRoom(`${r}?name=leaver&since=${lastSeq}&epoch=${first.welcome.epoch}`);
      track(back.c);
      const replay = back.history.messages as Msg[];
      assert.deepEqual(replay.map((m) => m.text), Array.from({ length: 7 }, (_, i) => `missed-${i + 1}`));
      assert.deepEqual(replay.map((m) => m.seq), Array.from({ length: 7 }, (_, i) => lastSeq + i + 1));
      assert.equal(back.history.complete, true);
      assert.equal(back.welcome.seq, lastSeq + 7);
      const other = await joinRoom(`${r}?name=stranger&since=${lastSeq}&epoch=not-this-one`);
      track(other.c);
      assert.equal(other.history.complete, false, "another epoch is a gap");
      // More than HISTORY_RETAIN (1000) messages since: the oldest missed ones are gone.
      const busy = `${server.wsUrl}/ws/retention`;
      const early = await joinRoom(`${busy}?name=early`);
      const flood = track((await joinRoom(`${busy}?name=flood`)).c);
      for (let i = 0; i < 1005; i++) flood.send({ type: "message", text: `r${i}`, nonce: `r${i}` });
      await acks(flood, 1005);
      await early.c.close();
      const late = await joinRoom(`${busy}?name=early&since=${early.welcome.seq}&epoch=${early.welcome.epoch}`);
      track(late.c);
      assert.equal(late.history.complete, false, "a gap larger than retention");
      assert.deepEqual((late.history.messages as Msg[]).map((m) => m.seq), Array.from({ length: 10 }, (_, i) => 996 + i));
    });

    it("a duplicate nonce after a reconnect is broadcast once and acked twice identically", async () => {
      const r = `${server.wsUrl}/ws/dedupe`;
      const watcher = track((await joinRoom(`${r}?name=watcher`)).c);
      const first = await joinRoom(`${r}?name=retrier`);
      first.c.send({ type: "message", text: "exactly once", nonce: "retry-1" });
      const [ack1] = await acks(first.c, 1);
      first.c.ws.terminate();
      const second = await joinRoom(`${r}?name=retrier&since=${first.welcome.seq}`);
      track(second.c);
      second.c.send({ type: "message", text: "exactly once", nonce: "retry-1" });
      const [ack2] = await acks(second.c, 1);
      assert.deepEqual(ack2, ack1);
      assert.equal(await watcher.quiet(300, "message"), false); // the one broadcast arrived...
      const got = watcher.frames.filter((f) => f.type === "message" && f.text === "exactly once");
      assert.equal(got.length, 1, "...and only one");
    });
  });

  describe(`history across restarts on ${runtime}`, () => {
    const dirs: string[] = [];
    after(() => {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    });

    async function chat(server: RunningChild, room: string, texts: string[]): Promise<{ welcome: Frame; acked: Frame[] }> {
      const { c, welcome } = await joinRoom(`${server.wsUrl}/ws/${room}?name=writer`);
      texts.forEach((text, i) => c.send({ type: "message", text, nonce: `${text}-${i}` }));
      const acked = await acks(c, texts.length);
      await c.close();
      return { welcome, acked };
    }

    it("a clean restart keeps epoch, seq and history, and resume works across it", async () => {
      const dir = dataDir();
      dirs.push(dir);
      const env = { DATA_DIR: dir, PRESENCE_GRACE_S: "0" };
      const one = await startServer(runtime, env);
      const { welcome } = await chat(one, "keep", ["a", "b", "c"]);
      assert.equal(await one.stop(), 0);
      const two = await startServer(runtime, env);
      try {
        const back = await joinRoom(`${two.wsUrl}/ws/keep?name=writer&since=1&epoch=${welcome.epoch}`);
        assert.equal(back.welcome.epoch, welcome.epoch);
        assert.equal(back.welcome.seq, 3);
        assert.deepEqual((back.history.messages as Msg[]).map((m) => m.text), ["b", "c"]);
        assert.equal(back.history.complete, true);
        // A retried nonce from before the restart is still recognised.
        back.c.send({ type: "message", text: "a", nonce: "a-0" });
        assert.deepEqual((await acks(back.c, 1))[0], { type: "ack", nonce: "a-0", seq: 1 });
        await back.c.close();
      } finally {
        await two.stop();
      }
    });

    for (const fsync of ["always", "interval"]) {
      it(`kill -9 loses no acknowledged message (FSYNC=${fsync}); a torn last line is skipped`, async () => {
        const dir = dataDir();
        dirs.push(dir);
        const env = { DATA_DIR: dir, FSYNC: fsync, RATE_LIMIT_PER_S: "0" };
        const one = await startServer(runtime, env);
        const { c } = await joinRoom(`${one.wsUrl}/ws/crash?name=writer`);
        const texts = Array.from({ length: 200 }, (_, i) => `crash-${i}`);
        texts.forEach((text) => c.send({ type: "message", text, nonce: text }));
        const acked = await acks(c, 50);
        one.proc.kill("SIGKILL");
        await one.stop();
        c.ws.terminate();
        const ackedNow = c.frames.filter((f) => f.type === "ack").length;
        assert.ok(ackedNow >= acked.length);
        // A crash mid-write leaves half a line: it must not stop the next start.
        appendFileSync(join(dir, "rooms", "crash.jsonl"), '{"type":"message","room":"crash","seq":99999,"te');
        const two = await startServer(runtime, env);
        try {
          const back = await joinRoom(`${two.wsUrl}/ws/crash?name=reader&since=0`);
          const kept = back.history.messages as Msg[];
          assert.ok(kept.length >= ackedNow, `${kept.length} kept, ${ackedNow} were acked`);
          assert.deepEqual(kept.slice(0, ackedNow).map((m) => m.text), texts.slice(0, ackedNow));
          assert.deepEqual(kept.map((m) => m.seq), kept.map((_, i) => i + 1));
          await back.c.close();
          assert.ok(two.output.some((l) => l.includes('"msg":"store_recovered"')), "the torn line was reported");
        } finally {
          await two.stop();
        }
        const lines = readFileSync(join(dir, "rooms", "crash.jsonl"), "utf8").split("\n");
        assert.equal(lines.at(-1), "", "the log ends with a whole line");
      });
    }

    it("kill -9 in the middle of a stream, 20 times: every acked message kept once with its seq, epoch unchanged", async () => {
      const dir = dataDir();
      dirs.push(dir);
      const env = { DATA_DIR: dir, RATE_LIMIT_PER_S: "0", PRESENCE_GRACE_S: "0" };
      let epoch: unknown;
      const acked = new Map<string, number>();
      for (let round = 0; round < 20; round++) {
        const server = await startServer(runtime, env);
        const { c, welcome } = await joinRoom(`${server.wsUrl}/ws/crash20?name=writer`);
        if (round === 0) epoch = welcome.epoch;
        assert.equal(welcome.epoch, epoch, `round ${round}: epoch changed`);
        for (let i = 0; i < 60; i++) c.send({ type: "message", text: `r${round}-${i}`, nonce: `r${round}-${i}` });
        await acks(c, 10);
        server.proc.kill("SIGKILL");
        await server.stop();
        for (const f of c.frames) if (f.type === "ack") acked.set(f.nonce as string, f.seq as number);
        c.ws.terminate();
      }
      const last = await startServer(runtime, { ...env, HISTORY_RETAIN: "5000" });
      try {
        const back = await joinRoom(`${last.wsUrl}/ws/crash20?name=reader&since=0`);
        assert.equal(back.welcome.epoch, epoch);
        const kept = back.history.messages as Msg[];
        assert.deepEqual(kept.map((m) => m.seq), kept.map((_, i) => i + 1), "seqs 1..n, none twice");
        assert.equal(new Set(kept.map((m) => m.nonce)).size, kept.length, "no message twice");
        const bySeq = new Map(kept.map((m) => [m.nonce, m.seq]));
        for (const [nonce, seq] of acked) assert.equal(bySeq.get(nonce), seq, `acked ${nonce} (seq ${seq}) is kept with its seq`);
        await back.c.close();
      } finally {
        await last.stop();
      }
    });

    it("a write error answers unavailable (no ack, nothing broadcast) and the server recovers when writes work again", async () => {
      const dir = dataDir();
      dirs.push(dir);
      const server = await startServer(runtime, { DATA_DIR: dir, PRESENCE_GRACE_S: "0" });
      try {
        const writer = await joinRoom(`${server.wsUrl}/ws/diskfull?name=writer`);
        const watcher = await joinRoom(`${server.wsUrl}/ws/diskfull?name=watcher`);
        // The room's log exists (made when the room opened) but was never written: its file is
        // opened on the first write, which now meets /dev/full and fails with ENOSPC.
        const log = join(dir, "rooms", "diskfull.jsonl");
        renameSync(log, `${log}.aside`);
        symlinkSync("/dev/full", log);
        writer.c.send({ type: "message", text: "lost?", nonce: "full-1" });
        const err = await writer.c.next("error", 10_000);
        assert.deepEqual([err.code, err.nonce], ["unavailable", "full-1"]);
        assert.equal(await watcher.c.quiet(300, "message"), true, "nothing broadcast");
        assert.equal(writer.c.frames.filter((f) => f.type === "ack").length, 0);
        // The disk is back: the same message, retried, goes through once, with the first seq.
        rmSync(log);
        renameSync(`${log}.aside`, log);
        writer.c.send({ type: "message", text: "lost?", nonce: "full-1" });
        const [ack] = await acks(writer.c, 1);
        assert.equal(ack!.seq, 1);
        const m = await watcher.c.next("message");
        assert.deepEqual([m.text, m.seq], ["lost?", 1]);
        assert.equal(await watcher.c.quiet(300, "message"), true, "broadcast once");
        assert.ok(server.proc.exitCode === null, "the server kept running");
        await writer.c.close();
        await watcher.c.close();
      } finally {
        await server.stop();
      }
    });

    it("--memory keeps nothing: after a restart the epoch changes and a resume says complete:false", async () => {
      const one = await startServer(runtime, { PRESENCE_GRACE_S: "0" }, ["--memory"]);
      const { welcome } = await chat(one, "volatile", ["x", "y"]);
      await one.stop();
      const two = await startServer(runtime, { PRESENCE_GRACE_S: "0" }, ["--memory"]);
      try {
        const back = await joinRoom(`${two.wsUrl}/ws/volatile?since=2&epoch=${welcome.epoch}`);
        assert.notEqual(back.welcome.epoch, welcome.epoch);
        assert.equal(back.welcome.seq, 0);
        assert.equal(back.history.complete, false);
        await back.c.close();
      } finally {
        await two.stop();
      }
    });
  });
}

export type { ServerRuntime };
