// Redis scale-out, end to end, with real processes: one redis-server (tests/_helpers/redis.ts) and
// several server instances on different runtimes (node24, deno, bun) started with REDIS_URL. Fan-out
// across instances, resume anywhere, shared de-duplication, presence across instances, an instance
// killed with kill -9, every instance restarted, Redis stopped, killed (durable and not) and absent at
// startup, and the settings that must refuse to start. Room names are distinct per test.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join as pathJoin } from "node:path";
import { connect, type Frame, type TestClient } from "../_helpers/ws-client.ts";
import { ROOT, runtimeCommand, startServer, type RunningChild, type ServerRuntime } from "../_helpers/server.ts";
import { freePort, type RunningRedis, startRedis } from "../_helpers/redis.ts";

type Msg = Frame & { seq: number; text: string; user: string; nonce?: string };
type Announce = Frame & { event: "join" | "leave"; user: string };

/** A (node24), B (deno), C (bun). */
const RUNTIMES: ServerRuntime[] = ["node24", "deno", "bun"];
const TTL_S = 2;
const GRACE_S = 1;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns something other than undefined/false; fails with `what()` after `timeoutMs`. */
async function until<T>(what: () => string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const got = await probe();
    if (got !== undefined && got !== false) return got as T;
    if (Date.now() > end) assert.fail(`timed out after ${timeoutMs} ms: ${what()}`);
    await sleep(25);
  }
}

/** Every started client, terminated in after(). */
const clients = new Set<TestClient>();

async function join(server: RunningChild, room: string, query: string): Promise<{ c: TestClient; welcome: Frame; history: Frame }> {
  const c = await connect(`${server.wsUrl}/ws/${room}?${query}`);
  clients.add(c);
  const welcome = await c.next("welcome");
  const history = await c.next("history");
  return { c, welcome, history };
}

const msgs = (c: TestClient) => c.frames.filter((f) => f.type === "message") as Msg[];
const ackFrames = (c: TestClient) => c.frames.filter((f) => f.type === "ack");
const announces = (c: TestClient, event: "join" | "leave", user: string) =>
  (c.frames.filter((f) => f.type === "announce") as Announce[]).filter((f) => f.event === event && f.user === user);
const last = (c: TestClient, n = 6) => JSON.stringify(c.frames.slice(-n));

/** Waits until `c` has received at least `count` chat messages (every frame so far). */
function messages(c: TestClient, count: number, timeoutMs = 15_000): Promise<Msg[]> {
  return until(() => `${msgs(c).length} of ${count} messages; last frames ${last(c)}`, () => msgs(c).length >= count && msgs(c), timeoutMs);
}

function acks(c: TestClient, count: number, timeoutMs = 15_000): Promise<Frame[]> {
  return until(
    () => `${ackFrames(c).length} of ${count} acks; errors ${JSON.stringify(c.frames.filter((f) => f.type === "error").slice(0, 3))}`,
    () => ackFrames(c).length >= count && ackFrames(c),
    timeoutMs,
  );
}

/** The ack for `nonce` (the first one). */
function ackFor(c: TestClient, nonce: string, timeoutMs = 10_000): Promise<Frame> {
  return until(() => `no ack for ${nonce}; last frames ${last(c)}`, () => ackFrames(c).find((f) => f.nonce === nonce), timeoutMs);
}

async function health(s: RunningChild): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${s.url}/healthz`, { signal: AbortSignal.timeout(3000) });
  return { status: res.status, body: await res.json() as Record<string, unknown> };
}

/** Waits until /healthz answers `status`; resolves with how long that took. */
async function healthBecomes(s: RunningChild, status: number, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  let seen = "";
  await until(() => `${s.runtime} /healthz never answered ${status}; last ${seen}`, async () => {
    const h = await health(s).catch((err) => ({ status: 0, body: { error: String(err) } }));
    seen = `${h.status} ${JSON.stringify(h.body)}`;
    return h.status === status;
  }, timeoutMs);
  return Date.now() - t0;
}

async function storeUpLine(s: RunningChild): Promise<string | undefined> {
  const res = await fetch(`${s.url}/metrics`, { signal: AbortSignal.timeout(3000) });
  return (await res.text()).split("\n").find((l) => l.startsWith("shootawall_store_up"));
}

/** Starts one instance per runtime against `redisUrl`; stops the started ones if any fails. */
async function startCluster(redisUrl: string, env: Record<string, string>, runtimes = RUNTIMES): Promise<RunningChild[]> {
  const started = await Promise.allSettled(runtimes.map((rt) => startServer(rt, { REDIS_URL: redisUrl, ...env })));
  const ok = started.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    await Promise.all(ok.map((s) => s.stop()));
    throw failed.reason;
  }
  return ok;
}

/** Shows where a server's log mentions something, for failure messages. */
const logTail = (s: RunningChild, n = 15) => `--- ${s.runtime} log:\n${s.output.slice(-n).join("\n")}`;

after(() => {
  for (const c of clients) c.ws.terminate();
});

describe("redis: one Redis, three instances (node24, deno, bun)", { timeout: 90_000 }, () => {
  let redis: RunningRedis;
  let cluster: RunningChild[] = [];
  const PREFIX = "sw-e2e:";
  const env = {
    REDIS_PREFIX: PREFIX,
    REDIS_PRESENCE_TTL_S: String(TTL_S),
    PRESENCE_GRACE_S: String(GRACE_S),
    RATE_LIMIT_PER_S: "0",
  };
  before(async () => {
    redis = await startRedis();
    cluster = await startCluster(redis.url, env);
  }, { timeout: 30_000 });
  after(async () => {
    await Promise.all(cluster.map((s) => s.stop()));
    await redis?.stop();
  }, { timeout: 30_000 });

  it("a message sent on any instance reaches every client of every instance once, in one seq order 1..n; the sender gets its message, then its ack", { timeout: 30_000 }, async () => {
    const room = "fanout";
    const peers: TestClient[] = [];
    for (const [i, s] of cluster.entries()) {
      for (let k = 0; k < 2; k++) {
        const p = await join(s, room, `name=p${i}${k}`);
        assert.equal(p.welcome.seq, 0, "a new room");
        peers.push(p.c);
      }
    }
    const PER = 25;
    const total = PER * peers.length;
    for (let j = 0; j < PER; j++) peers.forEach((c, i) => c.send({ type: "message", text: `p${i}-${j}`, nonce: `p${i}-${j}` }));
    const reference = (await messages(peers[0]!, total)).map((m) => m.text);
    for (const c of peers) await messages(c, total);
    await sleep(300); // anything sent twice would arrive by now
    for (const [i, c] of peers.entries()) {
      const got = msgs(c);
      assert.equal(got.length, total, `peer ${i} (${cluster[Math.floor(i / 2)]!.runtime}): each message once`);
      assert.deepEqual(got.map((m) => m.seq), Array.from({ length: total }, (_, j) => j + 1), `peer ${i}: seqs 1..${total}`);
      assert.deepEqual(got.map((m) => m.text), reference, `peer ${i}: the same order everywhere`);
      const a = await acks(c, PER);
      assert.equal(a.length, PER, `peer ${i}: one ack per nonce`);
      const bySeq = new Map(got.map((m) => [m.nonce, m.seq]));
      assert.deepEqual(a.map((f) => f.nonce), Array.from({ length: PER }, (_, j) => `p${i}-${j}`), "acks in the order sent");
      for (const f of a) assert.equal(f.seq, bySeq.get(f.nonce as string), `ack ${f.nonce} names its message's seq`);
      const seenAt = new Map<unknown, number>();
      c.frames.forEach((f, at) => {
        if (f.type === "message") seenAt.set(f.nonce, at);
        if (f.type === "ack") assert.ok((seenAt.get(f.nonce) ?? Infinity) < at, `peer ${i}: ack for ${f.nonce} before its message`);
      });
    }
    // REDIS_PREFIX is where the room lives.
    assert.equal(await redis.cli("HGET", `${PREFIX}room:${room}:meta`, "seq"), String(total));
    await Promise.all(peers.map((c) => c.close()));
  });

  it("resume on another instance: since/epoch from A, reconnect to B, get exactly what was missed with complete:true", { timeout: 20_000 }, async () => {
    const room = "resume";
    const [A, B, C] = cluster as [RunningChild, RunningChild, RunningChild];
    const talker = (await join(C, room, "name=talker")).c;
    const first = await join(A, room, "name=leaver");
    for (let i = 1; i <= 3; i++) talker.send({ type: "message", text: `before-${i}`, nonce: `b${i}` });
    const seen = await messages(first.c, 3);
    const lastSeq = seen.at(-1)!.seq;
    assert.equal(lastSeq, 3);
    await first.c.close();
    for (let i = 1; i <= 4; i++) talker.send({ type: "message", text: `missed-${i}`, nonce: `m${i}` });
    await acks(talker, 7);
    const back = await join(B, room, `name=leaver&since=${lastSeq}&epoch=${first.welcome.epoch}`);
    assert.equal(back.welcome.epoch, first.welcome.epoch, "one epoch for the room on every instance");
    assert.equal(back.welcome.seq, 7);
    assert.deepEqual((back.history.messages as Msg[]).map((m) => [m.seq, m.text]), [
      [4, "missed-1"], [5, "missed-2"], [6, "missed-3"], [7, "missed-4"],
    ]);
    assert.equal(back.history.complete, true);
    const whole = await join(C, room, `name=reader&since=0&epoch=${first.welcome.epoch}`);
    assert.deepEqual((whole.history.messages as Msg[]).map((m) => m.seq), [1, 2, 3, 4, 5, 6, 7]);
    assert.equal(whole.history.complete, true);
    const stranger = await join(A, room, `name=stranger&since=${lastSeq}&epoch=not-this-one`);
    assert.equal(stranger.history.complete, false, "another epoch is a gap");
    for (const c of [talker, back.c, whole.c, stranger.c]) await c.close();
  });

  it("shared de-duplication: (user, nonce) acked on A and resent on B or C gets the same ack and is not broadcast again", { timeout: 20_000 }, async () => {
    const room = "dedupe";
    const [A, B, C] = cluster as [RunningChild, RunningChild, RunningChild];
    const watchers = await Promise.all(cluster.map((s, i) => join(s, room, `name=watch${i}`).then((p) => p.c)));
    const first = await join(A, room, "name=ulla");
    first.c.send({ type: "message", text: "exactly once", nonce: "once-1" });
    const ack1 = await ackFor(first.c, "once-1");
    first.c.ws.terminate();
    for (const s of [B, C]) {
      const again = await join(s, room, "name=ulla");
      again.c.send({ type: "message", text: "exactly once", nonce: "once-1" });
      assert.deepEqual(await ackFor(again.c, "once-1"), ack1, `the same ack on ${s.runtime}`);
      await again.c.close();
    }
    // The same nonce sent at the same moment through two instances: stored and broadcast once.
    const onA = await join(A, room, "name=ulla");
    const onB = await join(B, room, "name=ulla");
    for (let k = 0; k < 10; k++) {
      onA.c.send({ type: "message", text: `race-${k}`, nonce: `race-${k}` });
      onB.c.send({ type: "message", text: `race-${k}`, nonce: `race-${k}` });
    }
    await acks(onA.c, 10);
    await acks(onB.c, 10);
    for (let k = 0; k < 10; k++) {
      assert.deepEqual(await ackFor(onA.c, `race-${k}`), await ackFor(onB.c, `race-${k}`), `race-${k}: the same ack on A and B`);
    }
    // Another user's identical nonce is not a duplicate.
    const otto = await join(C, room, "name=otto");
    otto.c.send({ type: "message", text: "mine", nonce: "once-1" });
    const ottoAck = await ackFor(otto.c, "once-1");
    assert.notEqual(ottoAck.seq, ack1.seq);
    for (const w of watchers) await messages(w, 12);
    await sleep(400);
    for (const [i, w] of watchers.entries()) {
      const got = msgs(w);
      assert.equal(got.filter((m) => m.user === "ulla" && m.nonce === "once-1").length, 1, `watcher on ${cluster[i]!.runtime}: once-1 broadcast once`);
      for (let k = 0; k < 10; k++) {
        assert.equal(got.filter((m) => m.nonce === `race-${k}`).length, 1, `watcher on ${cluster[i]!.runtime}: race-${k} broadcast once`);
      }
      assert.equal(got.length, 12, `watcher on ${cluster[i]!.runtime}: ${JSON.stringify(got.map((m) => [m.seq, m.user, m.nonce]))}`);
      assert.deepEqual(got.map((m) => m.seq), Array.from({ length: 12 }, (_, j) => j + 1));
    }
    for (const c of [...watchers, onA.c, onB.c, otto.c]) await c.close();
  });

  it("presence: a user with tabs on A and B is listed once on C, joins once, and leaves once after the last tab and the grace", { timeout: 25_000 }, async () => {
    const room = "presence";
    const [A, B, C] = cluster as [RunningChild, RunningChild, RunningChild];
    const walt = (await join(C, room, "name=walt")).c;
    const lou = (await join(A, room, "name=lou")).c;
    await until(() => `walt never saw lou join: ${last(walt)}`, () => announces(walt, "join", "lou").length === 1);
    const tabA = await join(A, room, "name=uma");
    await until(() => `walt never saw uma join: ${last(walt)}`, () => announces(walt, "join", "uma").length === 1);
    const tabB = await join(B, room, "name=uma");
    assert.equal((tabB.welcome.online as string[]).filter((u) => u === "uma").length, 1, `B's welcome: ${JSON.stringify(tabB.welcome.online)}`);
    const lara = await join(C, room, "name=lara");
    const online = lara.welcome.online as string[];
    assert.equal(online.filter((u) => u === "uma").length, 1, `uma listed once on C: ${JSON.stringify(online)}`);
    assert.deepEqual([...online].sort(), ["lara", "lou", "uma", "walt"]);
    await sleep(500);
    for (const w of [walt, lou, tabA.c]) assert.equal(announces(w, "join", "uma").length, 1, `one join for uma: ${last(w, 10)}`);
    assert.equal(announces(tabB.c, "join", "uma").length, 0, "the second tab is not a new join");
    // The first tab closes: uma is still on B, so no leave even after the grace.
    await tabA.c.close();
    await sleep(GRACE_S * 1000 + TTL_S * 1000);
    for (const w of [walt, lou]) assert.equal(announces(w, "leave", "uma").length, 0, `no leave while a tab is open: ${last(w)}`);
    // The last tab closes: one leave, after the grace.
    const closedAt = Date.now();
    await tabB.c.close();
    await until(() => `walt never saw uma leave: ${last(walt)}`, () => announces(walt, "leave", "uma").length > 0, 10_000);
    const took = Date.now() - closedAt;
    assert.ok(took >= GRACE_S * 1000 - 200, `leave came ${took} ms after the last tab closed, before the ${GRACE_S} s grace`);
    await until(() => `lou never saw uma leave: ${last(lou)}`, () => announces(lou, "leave", "uma").length > 0, 5_000);
    await sleep(500);
    for (const w of [walt, lou, lara.c]) {
      assert.equal(announces(w, "leave", "uma").length, 1, `one leave for uma: ${last(w, 10)}`);
      assert.equal(announces(w, "join", "uma").length, w === lara.c ? 0 : 1);
    }
    for (const c of [walt, lou, lara.c]) await c.close();
  });

  it("kill -9 of an instance (C, bun): its users' leave comes from the others after the presence TTL; its clients resume on B without loss", { timeout: 30_000 }, async (t) => {
    const room = "crash";
    const [A, B, C] = cluster as [RunningChild, RunningChild, RunningChild];
    const wendy = (await join(A, room, "name=wendy")).c;
    const vic = (await join(B, room, "name=vic")).c;
    const xavier = await join(C, room, "name=xavier");
    const yvonne = await join(C, room, "name=yvonne");
    await until(() => `wendy never saw xavier and yvonne join: ${last(wendy)}`, () =>
      announces(wendy, "join", "xavier").length === 1 && announces(wendy, "join", "yvonne").length === 1);
    for (let i = 1; i <= 3; i++) wendy.send({ type: "message", text: `before-${i}`, nonce: `w${i}` });
    const seen = await messages(xavier.c, 3);
    const since = seen.at(-1)!.seq;
    // One message on its way when the instance dies: stored or not, the client's retry must land once.
    xavier.c.send({ type: "message", text: "in flight", nonce: "x-crash" });
    C.proc.kill("SIGKILL");
    const killedAt = Date.now();
    assert.equal(await C.stop(), null, "C died of SIGKILL");
    const closed = await Promise.race([xavier.c.closed, sleep(5000).then(() => undefined)]);
    assert.ok(closed, "xavier's socket closed when C died");
    assert.ok(await Promise.race([yvonne.c.closed.then(() => true), sleep(5000).then(() => false)]), "yvonne's socket closed too");
    for (let i = 1; i <= 2; i++) wendy.send({ type: "message", text: `during-${i}`, nonce: `d${i}` });
    await ackFor(wendy, "d2");
    const back = await join(B, room, `name=xavier&since=${since}&epoch=${xavier.welcome.epoch}`);
    assert.equal(back.welcome.epoch, xavier.welcome.epoch);
    assert.equal(back.history.complete, true, `resume after the crash: ${JSON.stringify(back.history)}`);
    const replay = back.history.messages as Msg[];
    assert.deepEqual(replay.map((m) => m.seq), replay.map((_, i) => since + i + 1), "exactly the messages after since");
    assert.deepEqual(replay.filter((m) => m.user === "wendy").map((m) => m.text), ["during-1", "during-2"]);
    assert.ok(replay.every((m) => m.text === "during-1" || m.text === "during-2" || m.nonce === "x-crash"), JSON.stringify(replay));
    back.c.send({ type: "message", text: "in flight", nonce: "x-crash" });
    const xAck = await ackFor(back.c, "x-crash");
    // yvonne is gone for good: the others announce her leave once her entry expires.
    await until(() => `wendy never saw yvonne leave: ${last(wendy)}`, () => announces(wendy, "leave", "yvonne").length > 0, 10_000);
    const leaveAfter = Date.now() - killedAt;
    t.diagnostic(`yvonne's leave came ${leaveAfter} ms after the kill`);
    const bound = TTL_S * 1000 + (TTL_S * 1000) / 3 + 1500;
    assert.ok(leaveAfter >= 1000 && leaveAfter <= bound, `yvonne's leave came ${leaveAfter} ms after the kill (expected ${TTL_S} s TTL + a heartbeat, at most ${bound} ms)`);
    await until(() => `vic never saw yvonne leave: ${last(vic)}`, () => announces(vic, "leave", "yvonne").length > 0, 5_000);
    await sleep(700);
    for (const w of [wendy, vic]) {
      assert.equal(announces(w, "leave", "yvonne").length, 1, "one leave for yvonne");
      // xavier came back before his entry on C expired: neither a leave nor a second join.
      assert.equal(announces(w, "leave", "xavier").length, 0, `no leave for xavier: ${last(w, 10)}`);
      assert.equal(announces(w, "join", "xavier").length, 1, "one join for xavier");
      const inFlight = msgs(w).filter((m) => m.nonce === "x-crash");
      assert.equal(inFlight.length, 1, "the message in flight is delivered once");
      assert.equal(inFlight[0]!.seq, xAck.seq);
      const all = msgs(w);
      assert.deepEqual(all.map((m) => m.seq), all.map((_, i) => i + 1), "no gap, no duplicate");
    }
    for (const c of [wendy, vic, back.c]) await c.close();
  });

  it("every instance restarted: history, epoch and nonces are still there", { timeout: 40_000 }, async () => {
    const room = "survive";
    const live = cluster.filter((s) => s.proc.exitCode === null && s.proc.signalCode === null);
    assert.ok(live.length >= 2, "two instances still up");
    const writer = await join(live[0]!, room, "name=sam");
    const other = await join(live[1]!, room, "name=tess");
    for (let i = 1; i <= 3; i++) writer.c.send({ type: "message", text: `s${i}`, nonce: `s${i}` });
    for (let i = 1; i <= 2; i++) other.c.send({ type: "message", text: `t${i}`, nonce: `t${i}` });
    await acks(writer.c, 3);
    await acks(other.c, 2);
    const before = await messages(writer.c, 5);
    const epoch = writer.welcome.epoch;
    const s1Ack = await ackFor(writer.c, "s1");
    const old = cluster;
    cluster = [];
    const codes = await Promise.all(old.map((s) => s.stop()));
    old.forEach((s, i) => {
      if (live.includes(s)) assert.equal(codes[i], 0, `${s.runtime} stopped cleanly`);
    });
    cluster = await startCluster(redis.url, env);
    for (const s of cluster) {
      const back = await join(s, room, `name=reader-${s.runtime}&since=0&epoch=${epoch}`);
      assert.equal(back.welcome.epoch, epoch, `${s.runtime}: the same epoch`);
      assert.equal(back.welcome.seq, 5);
      assert.deepEqual((back.history.messages as Msg[]).map((m) => [m.seq, m.text]), before.map((m) => [m.seq, m.text]));
      assert.equal(back.history.complete, true);
      await back.c.close();
    }
    // A retry from before the restart is still recognised, on another runtime than the one that stored it.
    const retry = await join(cluster[2]!, room, "name=sam");
    const watcher = await join(cluster[0]!, room, "name=wes");
    retry.c.send({ type: "message", text: "s1", nonce: "s1" });
    assert.deepEqual(await ackFor(retry.c, "s1"), s1Ack);
    retry.c.send({ type: "message", text: "fresh", nonce: "fresh" });
    assert.equal((await ackFor(retry.c, "fresh")).seq, 6, "seqs continue");
    const got = await messages(watcher.c, 1);
    assert.deepEqual(got.map((m) => [m.seq, m.text]), [[6, "fresh"]], "the retry was not broadcast again");
    for (const c of [retry.c, watcher.c]) await c.close();
  });
});

describe("redis: a durable Redis stopped and killed under three instances", { timeout: 90_000 }, () => {
  let redis: RunningRedis;
  let dir: string;
  let cluster: RunningChild[] = [];
  const room = "steady";
  let epoch: unknown;
  let people: TestClient[] = [];
  before(async () => {
    dir = mkdtempSync(pathJoin(tmpdir(), "shootawall-redis-e2e-"));
    // Our own folder: stop() then keeps it, so restart() can bring the same data back.
    redis = await startRedis({ durable: true, dir });
    cluster = await startCluster(redis.url, { PRESENCE_GRACE_S: "0", REDIS_PRESENCE_TTL_S: String(TTL_S), RATE_LIMIT_PER_S: "0" });
  }, { timeout: 30_000 });
  after(async () => {
    await Promise.all(cluster.map((s) => s.stop()));
    await redis?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, { timeout: 30_000 });

  it("Redis stopped: /healthz 503 degraded, store_up 0, clients stay connected, sends get unavailable; back: ok again, sends work", { timeout: 40_000 }, async (t) => {
    const joined = await Promise.all(cluster.map((s, i) => join(s, room, `name=n${i}`)));
    epoch = joined[0]!.welcome.epoch;
    people = joined.map((j) => j.c);
    people.forEach((c, i) => c.send({ type: "message", text: `up-${i}`, nonce: `up-${i}` }));
    for (const c of people) await acks(c, 1);
    for (const c of people) await messages(c, 3);
    const pids = cluster.map((s) => s.proc.pid);

    await redis.stop();
    for (const s of cluster) {
      await healthBecomes(s, 503, 8000);
      const h = await health(s);
      assert.equal(h.body.status, "degraded", `${s.runtime}: ${JSON.stringify(h.body)}`);
      assert.equal(h.body.redis, "down");
      assert.equal(h.body.store, "redis");
      assert.equal(await storeUpLine(s), 'shootawall_store_up{store="redis"} 0', `${s.runtime} /metrics`);
    }
    people.forEach((c, i) => c.send({ type: "message", text: `down-${i}`, nonce: `down-${i}` }));
    for (const [i, c] of people.entries()) {
      const err = await until(() => `${cluster[i]!.runtime}: no error for down-${i}; ${last(c)}`, () =>
        c.frames.find((f) => f.type === "error" && f.nonce === `down-${i}`), 10_000);
      assert.equal(err.code, "unavailable", `${cluster[i]!.runtime}: ${JSON.stringify(err)}`);
    }
    await sleep(500);
    for (const [i, c] of people.entries()) {
      assert.equal(c.ws.readyState, c.ws.OPEN, `${cluster[i]!.runtime}: the client is still connected`);
      assert.equal(msgs(c).length, 3, `${cluster[i]!.runtime}: nothing broadcast while Redis is down: ${last(c)}`);
      assert.equal(ackFrames(c).length, 1, "no ack while Redis is down");
    }
    // A room not yet open on an instance cannot be opened without Redis.
    await assert.rejects(connect(`${cluster[1]!.wsUrl}/ws/elsewhere?name=late`), (err: Error & { status?: number; body?: string }) => {
      assert.equal(err.status, 503, String(err));
      assert.match(err.body ?? "", /cannot be read/);
      return true;
    });

    redis = await redis.restart();
    for (const s of cluster) {
      const took = await healthBecomes(s, 200, 12_000);
      const h = await health(s);
      assert.equal(h.body.status, "ok");
      assert.equal(h.body.redis, "up");
      assert.equal(await storeUpLine(s), 'shootawall_store_up{store="redis"} 1');
      t.diagnostic(`${s.runtime} healthy again ${took} ms after Redis was back`);
    }
    assert.deepEqual(cluster.map((s) => [s.proc.pid, s.proc.exitCode]), pids.map((pid) => [pid, null]), "no process restarted");
    // The refused messages, retried with their nonces, go through once each.
    people.forEach((c, i) => c.send({ type: "message", text: `down-${i}`, nonce: `down-${i}` }));
    for (const c of people) await acks(c, 2);
    for (const c of people) await messages(c, 6);
    await sleep(300);
    const order = msgs(people[0]!).map((m) => m.text);
    for (const [i, c] of people.entries()) {
      const got = msgs(c);
      assert.deepEqual(got.map((m) => m.seq), [1, 2, 3, 4, 5, 6], `${cluster[i]!.runtime}: ${JSON.stringify(got.map((m) => [m.seq, m.text]))}`);
      assert.deepEqual(got.map((m) => m.text), order);
      const ack = ackFrames(c).find((f) => f.nonce === `down-${i}`);
      assert.equal(ack?.seq, got.find((m) => m.text === `down-${i}`)?.seq);
    }
  });

  it("durable Redis killed with kill -9: every acked message is kept with its seq, the epoch is unchanged, chat goes on", { timeout: 40_000 }, async () => {
    assert.equal(people.length, cluster.length, "the clients of the previous test");
    const PER = 10;
    people.forEach((c, i) => {
      for (let k = 0; k < PER; k++) c.send({ type: "message", text: `k${i}-${k}`, nonce: `k${i}-${k}` });
    });
    for (const c of people) await acks(c, 2 + PER);
    const acked = new Map<string, number>();
    for (const c of people) for (const f of ackFrames(c)) acked.set(f.nonce as string, f.seq as number);
    const top = Math.max(...acked.values());

    await redis.kill9();
    for (const s of cluster) await healthBecomes(s, 503, 8000);
    redis = await redis.restart();
    for (const s of cluster) await healthBecomes(s, 200, 12_000);

    for (const s of cluster) {
      const reader = await join(s, room, `name=reader-${s.runtime}&since=0&epoch=${epoch}`);
      assert.equal(reader.welcome.epoch, epoch, `${s.runtime}: the epoch is unchanged`);
      assert.equal(reader.history.complete, true);
      const kept = reader.history.messages as Msg[];
      assert.deepEqual(kept.map((m) => m.seq), kept.map((_, i) => i + 1), "seqs 1..n, none twice");
      assert.ok(kept.length >= top, `${kept.length} kept, ${top} acked`);
      const bySeq = new Map(kept.map((m) => [m.nonce, m.seq]));
      for (const [nonce, seq] of acked) assert.equal(bySeq.get(nonce), seq, `${s.runtime}: acked ${nonce} kept with seq ${seq}`);
      await reader.c.close();
    }
    // Chat goes on: each client (reconnected with since/epoch if Redis's death closed it) sends once more.
    const now: TestClient[] = [];
    for (const [i, c] of people.entries()) {
      if (c.ws.readyState === c.ws.OPEN) now.push(c);
      else {
        const seen = msgs(c).at(-1)?.seq ?? 0;
        const again = await join(cluster[i]!, room, `name=n${i}&since=${seen}&epoch=${epoch}`);
        assert.equal(again.welcome.epoch, epoch);
        assert.equal(again.history.complete, true);
        now.push(again.c);
      }
    }
    const watcher = await join(cluster[0]!, room, `name=watcher&since=${top}&epoch=${epoch}`);
    now.forEach((c, i) => c.send({ type: "message", text: `after-${i}`, nonce: `after-${i}` }));
    const seqs: number[] = [];
    for (const [i, c] of now.entries()) seqs.push((await ackFor(c, `after-${i}`)).seq as number);
    assert.deepEqual([...seqs].sort((a, b) => a - b), [top + 1, top + 2, top + 3]);
    const got = await messages(watcher.c, 3);
    assert.deepEqual(got.map((m) => m.seq), [top + 1, top + 2, top + 3]);
    for (const c of [...now, watcher.c]) await c.close();
  });
});

describe("redis: a Redis without persistence killed and restarted empty", { timeout: 60_000 }, () => {
  let redis: RunningRedis;
  let cluster: RunningChild[] = [];
  before(async () => {
    redis = await startRedis();
    cluster = await startCluster(redis.url, { PRESENCE_GRACE_S: "0", REDIS_PRESENCE_TTL_S: String(TTL_S), RATE_LIMIT_PER_S: "0" }, ["deno", "bun", "node24"]);
  }, { timeout: 30_000 });
  after(async () => {
    await Promise.all(cluster.map((s) => s.stop()));
    await redis?.stop();
  }, { timeout: 30_000 });

  it("every instance closes its clients with 1012; a resume with the old since/epoch gets a new epoch and complete:false; seqs restart", { timeout: 40_000 }, async () => {
    const room = "amnesia";
    const joined = await Promise.all(cluster.map((s, i) => join(s, room, `name=a${i}`)));
    const oldEpoch = joined[0]!.welcome.epoch as string;
    const old = joined.map((j) => j.c);
    for (let i = 1; i <= 5; i++) old[i % old.length]!.send({ type: "message", text: `old-${i}`, nonce: `old-${i}` });
    for (const c of old) await messages(c, 5);
    const oldSince = 5;

    await redis.kill9();
    redis = await redis.restart();
    assert.notEqual(await redis.cli("HGET", `shootawall:room:${room}:meta`, "epoch"), oldEpoch, "Redis came back without the room");
    for (const [i, c] of old.entries()) {
      const closed = await Promise.race([c.closed, sleep(15_000).then(() => undefined)]);
      assert.deepEqual(closed, { code: 1012, reason: "room history reset; reconnect" }, `${cluster[i]!.runtime}: ${last(c)}\n${logTail(cluster[i]!)}`);
    }
    for (const s of cluster) assert.ok(s.output.some((l) => l.includes('"msg":"room_reset"') && l.includes(room)), `${s.runtime} logged room_reset`);

    const back = [];
    for (const [i, s] of cluster.entries()) {
      const b = await join(s, room, `name=a${i}&since=${oldSince}&epoch=${oldEpoch}`);
      assert.notEqual(b.welcome.epoch, oldEpoch, `${s.runtime}: a new epoch`);
      assert.equal(b.history.complete, false, `${s.runtime}: the old since/epoch is a gap`);
      assert.equal(b.welcome.seq, 0, `${s.runtime}: seqs restart`);
      assert.deepEqual(b.history.messages, []);
      back.push(b);
    }
    const newEpoch = back[0]!.welcome.epoch;
    for (const b of back) assert.equal(b.welcome.epoch, newEpoch, "one new epoch on every instance");
    back[1]!.c.send({ type: "message", text: "new-1", nonce: "new-1" });
    assert.equal((await ackFor(back[1]!.c, "new-1")).seq, 1);
    for (const b of back) assert.deepEqual((await messages(b.c, 1)).map((m) => [m.seq, m.text]), [[1, "new-1"]]);
    // Nothing of the new history ever reached a connection of the old epoch.
    for (const c of old) assert.deepEqual(msgs(c).map((m) => m.seq), [1, 2, 3, 4, 5]);
    for (const b of back) await b.c.close();
  });
});

describe("redis: unreachable at startup", { timeout: 60_000 }, () => {
  let redis: RunningRedis | undefined;
  let cluster: RunningChild[] = [];
  after(async () => {
    await Promise.all(cluster.map((s) => s.stop()));
    await redis?.stop();
  }, { timeout: 30_000 });

  it("the server starts and listens degraded, refuses upgrades with a readable 503, and becomes ok when Redis appears", { timeout: 45_000 }, async (t) => {
    const port = await freePort();
    cluster = await startCluster(`redis://127.0.0.1:${port}`, { PRESENCE_GRACE_S: "0" });
    for (const s of cluster) {
      const h = await health(s);
      assert.equal(h.status, 503, `${s.runtime}: ${JSON.stringify(h.body)}`);
      assert.equal(h.body.status, "degraded");
      assert.equal(h.body.redis, "down");
      assert.ok(s.output.some((l) => l.includes('"msg":"redis_unreachable"')), `${s.runtime} warned`);
      await assert.rejects(connect(`${s.wsUrl}/ws/later?name=early`), (err: Error & { status?: number; body?: string }) => {
        assert.equal(err.status, 503, `${s.runtime}: ${String(err)}`);
        assert.match(err.body ?? "", /room's history cannot be read/, `${s.runtime}: a readable body`);
        return true;
      });
    }
    redis = await startRedis({ port });
    for (const s of cluster) {
      const took = await healthBecomes(s, 200, 15_000);
      assert.equal((await health(s)).body.status, "ok", `${s.runtime} ok after ${took} ms`);
      t.diagnostic(`${s.runtime} ok ${took} ms after Redis appeared`);
    }
    const peers = await Promise.all(cluster.map((s, i) => join(s, "later", `name=late${i}`)));
    peers[0]!.c.send({ type: "message", text: "finally", nonce: "f" });
    assert.equal((await ackFor(peers[0]!.c, "f")).seq, 1);
    for (const p of peers) assert.deepEqual((await messages(p.c, 1)).map((m) => m.text), ["finally"]);
    for (const p of peers) await p.c.close();
  });
});

describe("redis: settings that must refuse to start", { timeout: 60_000 }, () => {
  /** Runs the server with `env` (and no inherited store settings); resolves with its exit code and output. */
  function run(runtime: ServerRuntime, env: Record<string, string>): Promise<{ code: number | null; out: string }> {
    const { cmd, args } = runtimeCommand(runtime);
    const base: Record<string, string | undefined> = { ...process.env };
    for (const k of ["STORE", "REDIS_URL", "REDIS_PREFIX", "DATA_DIR"]) delete base[k];
    const dataDir = mkdtempSync(pathJoin(tmpdir(), "shootawall-test-"));
    const proc = spawn(cmd, args, {
      cwd: ROOT,
      env: { ...base, HOST: "127.0.0.1", PORT: "0", NO_COLOR: "1", DATA_DIR: dataDir, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    return new Promise((resolve) => {
      const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
      proc.once("exit", (code) => {
        clearTimeout(timer);
        rmSync(dataDir, { recursive: true, force: true });
        resolve({ code, out });
      });
    });
  }

  it("STORE=file with REDIS_URL, and STORE=redis without REDIS_URL: exit code 2 and a clear message, on every runtime", { timeout: 40_000 }, async () => {
    type Case = { rt: ServerRuntime; env: Record<string, string>; says: string };
    const cases = RUNTIMES.flatMap((rt): Case[] => [
      { rt, env: { STORE: "file", REDIS_URL: "redis://127.0.0.1:6379" }, says: "Cannot start: REDIS_URL is set but STORE=file; unset one of them" },
      { rt, env: { STORE: "redis" }, says: "Cannot start: STORE=redis needs REDIS_URL" },
    ]);
    const results = await Promise.all(cases.map((c) => run(c.rt, c.env)));
    cases.forEach((c, i) => {
      const { code, out } = results[i]!;
      assert.equal(code, 2, `${c.rt} ${JSON.stringify(c.env)}: exit ${code}\n${out}`);
      assert.ok(out.includes(c.says), `${c.rt} ${JSON.stringify(c.env)} says: ${out}`);
      assert.ok(!out.includes('"msg":"listening"'), `${c.rt} did not listen`);
    });
  });
});
