// The Redis store against a real redis-server: the storage contract, then what only a shared log does
// (seqs for several instances, fan-out, de-duplication, presence, Redis failures). Runs on every runtime.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { AnnounceFrame, ChatMessage } from "../../src/protocol/messages.ts";
import type { RedisRoomLog } from "../../src/storage/redis.ts";
import { type Draft, type SharedSink, StoreUnavailableError } from "../../src/storage/store.ts";
import { type RunningRedis, startRedis } from "../_helpers/redis.ts";
import { connectStore, freshPrefix, newEpoch, until } from "../_helpers/redis-store.ts";
import { storeContract } from "./contract.ts";

const store = connectStore;

/** A sink that records what a shared log delivers. */
class Recorder implements SharedSink {
  seqs: number[] = [];
  delivered: ChatMessage[] = [];
  announces: AnnounceFrame[] = [];
  resets: string[] = [];
  messages(ms: ChatMessage[]): void {
    for (const m of ms) {
      this.seqs.push(m.seq);
      this.delivered.push(m);
    }
  }
  announce(frame: AnnounceFrame): void {
    this.announces.push(frame);
  }
  reset(reason: string): void {
    this.resets.push(reason);
  }
}

const draft = (user: string, text: string, nonce?: string | number): Draft => {
  const d: Draft = { type: "message", room: "r", user, date: new Date(0).toISOString(), text };
  if (nonce !== undefined) d.nonce = nonce;
  return d;
};

describe("RedisStore: storage contract, durable Redis (same Redis across restarts of the store)", () => {
  let redis: RunningRedis;
  const prefix = freshPrefix();
  before(async () => {
    redis = await startRedis({ durable: true });
  });
  after(async () => {
    await redis.stop();
  });
  storeContract({ makeStore: () => store(redis, prefix, { retain: 5 }), durable: true, retain: 5 });
});

describe("RedisStore: storage contract, Redis without persistence (every restart loses everything)", () => {
  let redis: RunningRedis;
  before(async () => {
    redis = await startRedis({ durable: false });
  });
  after(async () => {
    await redis.stop();
  });
  storeContract({
    makeStore: async () => {
      // A store "restart" here is Redis crashing and coming back empty.
      await redis.kill9();
      redis = await redis.restart();
      return store(redis, "contract:", { retain: 5 });
    },
    durable: false,
    retain: 5,
  });
});

describe("RedisStore: one room shared by several instances", () => {
  let redis: RunningRedis;
  before(async () => {
    redis = await startRedis({ durable: false });
  });
  after(async () => {
    await redis.stop();
  });

  it("delivers every instance's messages to every instance once, in the same seq order, without gaps", async () => {
    const prefix = freshPrefix();
    const [a, b] = await Promise.all([store(redis, prefix), store(redis, prefix)]);
    const ra = new Recorder();
    const rb = new Recorder();
    const la = await a.open("room", newEpoch);
    const lb = await b.open("room", newEpoch);
    assert.equal(la.state.epoch, lb.state.epoch, "both instances see one epoch");
    la.log.listen(ra);
    lb.log.listen(rb);
    const sent: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      sent.push(la.log.submit([draft("alice", `a${i}`), draft("alice", `a${i}'`)]));
      sent.push(lb.log.submit([draft("bob", `b${i}`)]));
    }
    const results = (await Promise.all(sent)).flat() as { seq: number; duplicate: boolean }[];
    assert.deepEqual(results.map((r) => r.seq).sort((x, y) => x - y), Array.from({ length: 60 }, (_, i) => i + 1));
    await until("60 deliveries on both", () => ra.seqs.length >= 60 && rb.seqs.length >= 60);
    assert.deepEqual(ra.seqs, Array.from({ length: 60 }, (_, i) => i + 1));
    assert.deepEqual(rb.seqs, ra.seqs);
    assert.deepEqual(rb.delivered.map((m) => m.text), ra.delivered.map((m) => m.text));
    // Per sender, the order of submission is kept.
    const aTexts = ra.delivered.filter((m) => m.user === "alice").map((m) => m.text);
    assert.deepEqual(aTexts, Array.from({ length: 20 }, (_, i) => [`a${i}`, `a${i}'`]).flat());
    await Promise.all([a.close(), b.close()]);
  });

  it("a (user, nonce) stored through one instance is a duplicate on another: same seq, not published again", async () => {
    const prefix = freshPrefix();
    const [a, b] = await Promise.all([store(redis, prefix), store(redis, prefix)]);
    const la = await a.open("dedupe", newEpoch);
    const lb = await b.open("dedupe", newEpoch);
    const rb = new Recorder();
    lb.log.listen(rb);
    la.log.listen(new Recorder());
    const [first] = await la.log.submit([draft("carol", "hello", "n-1")]);
    assert.deepEqual(first, { seq: 1, duplicate: false });
    const again = await lb.log.submit([draft("carol", "hello", "n-1"), draft("dave", "hi", "n-1"), draft("carol", "x", 7)]);
    assert.deepEqual(again, [{ seq: 1, duplicate: true }, { seq: 2, duplicate: false }, { seq: 3, duplicate: false }]);
    await until("3 deliveries", () => rb.seqs.length >= 3);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(rb.seqs, [1, 2, 3], "the duplicate was not published");
    // A number nonce and a string nonce of the same digits are different nonces.
    const [num] = await la.log.submit([draft("carol", "y", "7")]);
    assert.equal(num!.duplicate, false);
    await Promise.all([a.close(), b.close()]);
  });

  it("announces a user's join once and leave once, whichever instances their tabs are on", async () => {
    const prefix = freshPrefix();
    const [a, b] = await Promise.all([store(redis, prefix), store(redis, prefix)]);
    const la = await a.open("presence", newEpoch);
    const lb = await b.open("presence", newEpoch);
    const ra = new Recorder();
    const rb = new Recorder();
    la.log.listen(ra);
    lb.log.listen(rb);
    la.log.arrive("erin");
    lb.log.arrive("erin");
    await until("the join", () => ra.announces.length >= 1 && rb.announces.length >= 1);
    la.log.depart("erin");
    await new Promise((r) => setTimeout(r, 150));
    assert.deepEqual(ra.announces.map((f) => `${f.event}:${f.user}`), ["join:erin"]);
    assert.deepEqual((await a.open("presence", newEpoch)).state.online, ["erin"], "still online through b");
    lb.log.depart("erin");
    await until("the leave", () => rb.announces.length >= 2);
    assert.deepEqual(rb.announces.map((f) => `${f.event}:${f.user}`), ["join:erin", "leave:erin"]);
    assert.equal(rb.announces[1]!.text, "erin disconnected");
    assert.match(rb.announces[1]!.date, /^\d{4}-\d\d-\d\dT/);
    await Promise.all([a.close(), b.close()]);
  });

  it("expires a vanished instance's presence entries and announces the leave once", async () => {
    const prefix = freshPrefix();
    const a = await store(redis, prefix, { presenceTtlMs: 300 });
    const la = await a.open("ghosts", newEpoch);
    const ra = new Recorder();
    la.log.listen(ra);
    // An entry another instance wrote before it was killed: expired a second ago, never refreshed.
    const key = `${prefix}room:ghosts`;
    await redis.cli("ZADD", `${key}:pe`, String(Date.now() - 1000), "frank\ngone-instance");
    await redis.cli("HINCRBY", `${key}:pc`, "frank", "1");
    await until("frank's leave", () => ra.announces.some((f) => f.user === "frank"), 3000);
    await new Promise((r) => setTimeout(r, 400));
    assert.deepEqual(ra.announces.map((f) => `${f.event}:${f.user}`), ["leave:frank"]);
    assert.equal(await redis.cli("HEXISTS", `${key}:pc`, "frank"), "0");
    await a.close();
  });

  it("fetches from the stream a message whose publish it missed", async () => {
    const prefix = freshPrefix();
    const [a, b] = await Promise.all([store(redis, prefix), store(redis, prefix)]);
    const la = await a.open("gap", newEpoch);
    const lb = await b.open("gap", newEpoch);
    const ra = new Recorder();
    la.log.listen(ra);
    lb.log.listen(new Recorder());
    await lb.log.submit([draft("u", "one")]);
    // Stored without a publish, as if the channel had dropped it.
    const key = `${prefix}room:gap`;
    await redis.cli("XADD", `${key}:log`, "2-0", "m", JSON.stringify(["u", new Date(0).toISOString(), "two"]));
    await redis.cli("HSET", `${key}:meta`, "seq", "2");
    await lb.log.submit([draft("u", "three")]);
    await until("3 deliveries", () => ra.seqs.length >= 3);
    assert.deepEqual(ra.delivered.map((m) => `${m.seq}:${m.text}`), ["1:one", "2:two", "3:three"]);
    await Promise.all([a.close(), b.close()]);
  });

  it("answers unavailable while Redis is down, reports it, and works again once Redis is back", async () => {
    const own = await startRedis({ durable: true });
    try {
      const prefix = freshPrefix();
      const a = await store(own, prefix);
      const la = await a.open("outage", newEpoch);
      const ra = new Recorder();
      la.log.listen(ra);
      await la.log.submit([draft("u", "before", "b")]);
      assert.equal(a.health().ok, true);
      await own.kill9();
      await until("degraded", () => !a.health().ok);
      assert.equal(a.health().detail?.redis, "down");
      await assert.rejects(la.log.submit([draft("u", "during", "d")]), StoreUnavailableError);
      await assert.rejects(a.open("other", newEpoch), StoreUnavailableError);
      const back = await own.restart();
      await until("healthy again", () => a.health().ok, 10_000);
      const [r] = await la.log.submit([draft("u", "after", "c")]);
      assert.equal(r!.seq, 2, "the durable Redis kept seq 1; the refused send took no seq");
      await until("2 deliveries", () => ra.seqs.length >= 2);
      assert.deepEqual(ra.delivered.map((m) => m.text), ["before", "after"]);
      assert.deepEqual(ra.resets, []);
      await a.close();
      await back.stop();
    } finally {
      await own.stop().catch(() => {});
    }
  });

  it("resets a room when Redis comes back empty, and the room reopens with a new epoch", async () => {
    const own = await startRedis({ durable: false });
    try {
      const prefix = freshPrefix();
      const a = await store(own, prefix);
      const la = await a.open("amnesia", newEpoch);
      const ra = new Recorder();
      la.log.listen(ra);
      await la.log.submit([draft("u", "lost")]);
      await own.kill9();
      const back = await own.restart();
      await until("the reset", () => ra.resets.length > 0, 10_000);
      assert.match(ra.resets[0]!, /history lost/);
      await la.log.close();
      await until("healthy again", () => a.health().ok, 10_000);
      const again = await a.open("amnesia", newEpoch);
      assert.notEqual(again.state.epoch, la.state.epoch);
      assert.equal(again.state.seq, 0);
      await a.close();
      await back.stop();
    } finally {
      await own.stop().catch(() => {});
    }
  });

  it("starts a new epoch whose seqs continue when Redis lost acknowledged messages (seq went back)", async () => {
    const prefix = freshPrefix();
    const a = await store(redis, prefix);
    const la = await a.open("rewind", newEpoch);
    const ra = new Recorder();
    la.log.listen(ra);
    await la.log.submit([draft("u", "1"), draft("u", "2"), draft("u", "3")]);
    await until("3 deliveries", () => ra.seqs.length >= 3);
    // As after a restart from an older snapshot: the last write is gone.
    await redis.cli("HSET", `${prefix}room:rewind:meta`, "seq", "2");
    await assert.rejects(la.log.submit([draft("u", "4")]), StoreUnavailableError);
    assert.equal(ra.resets.length, 1);
    await la.log.close();
    const again = await a.open("rewind", newEpoch);
    assert.notEqual(again.state.epoch, la.state.epoch);
    assert.equal(again.state.seq, 3, "seq 3 is never given again");
    const r = again.log as RedisRoomLog;
    r.listen(new Recorder());
    assert.deepEqual(await r.submit([draft("u", "next")]), [{ seq: 4, duplicate: false }]);
    await a.close();
  });

  it("starts degraded when Redis is unreachable and recovers when it appears", async () => {
    const own = await startRedis({ durable: false });
    await own.kill9();
    try {
      const a = await store(own, freshPrefix(), { connectTimeoutMs: 300 });
      assert.equal(a.health().ok, false);
      await assert.rejects(a.open("x", newEpoch), StoreUnavailableError);
      const back = await own.restart();
      await until("healthy", () => a.health().ok, 10_000);
      assert.equal((await a.open("x", newEpoch)).state.seq, 0);
      await a.close();
      await back.stop();
    } finally {
      await own.stop().catch(() => {});
    }
  });
});
