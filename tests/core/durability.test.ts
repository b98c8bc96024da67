import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { silentLogger } from "../../src/core/deps.ts";
import { Room, type RoomOptions } from "../../src/core/room.ts";
import type { ChatMessage } from "../../src/protocol/messages.ts";
import type { RoomLog, StoredRoom } from "../../src/storage/store.ts";
import { FakeClock, sequentialIds } from "../_helpers/fake-clock.ts";
import { FakeSocket } from "../_helpers/fake-socket.ts";

const OPTS: RoomOptions = {
  historyReplay: 3,
  historyRetain: 10,
  presenceGraceMs: 0,
  limits: { maxText: 100, maxFrameBytes: 10_000 },
};

/** A log whose appends wait until the test resolves or rejects them. */
class ManualLog implements RoomLog {
  stored: ChatMessage[] = [];
  calls: Array<{ batch: ChatMessage[]; resolve: () => void; reject: (e: Error) => void }> = [];
  append(batch: ChatMessage[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.calls.push({
        batch,
        resolve: () => {
          this.stored.push(...batch);
          resolve();
        },
        reject,
      });
    });
  }
  close() {
    return Promise.resolve();
  }
}

const flush = () => new Promise((r) => setTimeout(r, 0));
const chat = (text: string, nonce?: string | number) =>
  JSON.stringify(nonce === undefined ? { type: "message", text } : { type: "message", text, nonce });

function setup(stored?: StoredRoom, log: RoomLog = new ManualLog(), opts: Partial<RoomOptions> = {}) {
  const clock = new FakeClock();
  const room = new Room("lobby", { ...OPTS, ...opts }, { clock, ids: sequentialIds(), log: silentLogger }, stored, log);
  return { room, clock, log: log as ManualLog };
}

function seeded(count: number, epoch = "E1"): StoredRoom {
  const messages: ChatMessage[] = [];
  for (let seq = Math.max(1, count - 9); seq <= count; seq++) {
    messages.push({ type: "message", room: "lobby", seq, user: "old", date: new Date(seq * 1000).toISOString(), text: `m${seq}`, nonce: `old-${seq}` });
  }
  return { epoch, seq: count, messages };
}

describe("Room with a log", () => {
  it("broadcasts and acks only after the log stored the message", async () => {
    const { room, log } = setup();
    const a = new FakeSocket();
    const b = new FakeSocket();
    const ca = room.join(a, "alice");
    room.join(b, "bob");
    room.receive(ca, chat("hi", "n1"));
    assert.equal(b.ofType("message").length, 0);
    assert.equal(a.ofType("ack").length, 0);
    assert.equal(log.calls.length, 1);
    log.calls[0]!.resolve();
    await flush();
    assert.deepEqual(b.ofType("message").map((m) => m.seq), [1]);
    assert.deepEqual(a.ofType("ack"), [{ type: "ack", nonce: "n1", seq: 1 }]);
    assert.deepEqual(log.stored.map((m) => m.text), ["hi"]);
  });

  it("groups messages that arrive during a write into one append, in order", async () => {
    const { room, log } = setup();
    const a = new FakeSocket();
    const ca = room.join(a, "alice");
    room.receive(ca, chat("one"));
    room.receive(ca, chat("two"));
    room.receive(ca, chat("three"));
    assert.equal(log.calls.length, 1);
    log.calls[0]!.resolve();
    await flush();
    assert.equal(log.calls.length, 2);
    assert.deepEqual(log.calls[1]!.batch.map((m) => [m.seq, m.text]), [[2, "two"], [3, "three"]]);
    log.calls[1]!.resolve();
    await flush();
    assert.deepEqual(a.ofType("message").map((m) => m.seq), [1, 2, 3]);
  });

  it("answers unavailable with the nonce when the log fails, broadcasts nothing, reuses no seq", async () => {
    const { room, log } = setup();
    const a = new FakeSocket();
    const b = new FakeSocket();
    const ca = room.join(a, "alice");
    room.join(b, "bob");
    room.receive(ca, chat("lost", "n1"));
    log.calls[0]!.reject(new Error("ENOSPC"));
    await flush();
    assert.deepEqual(a.ofType("error").map((e) => [e.code, e.nonce]), [["unavailable", "n1"]]);
    assert.equal(a.ofType("ack").length, 0);
    assert.equal(b.ofType("message").length, 0);
    assert.equal(room.seq, 0);
    room.receive(ca, chat("retry", "n1"));
    log.calls[1]!.resolve();
    await flush();
    assert.deepEqual(b.ofType("message").map((m) => [m.seq, m.text]), [[1, "retry"]]);
    assert.deepEqual(a.ofType("ack"), [{ type: "ack", nonce: "n1", seq: 1 }]);
  });

  it("keeps replies in order behind messages waiting for the log", async () => {
    const { room, log } = setup();
    const a = new FakeSocket();
    const ca = room.join(a, "alice");
    a.clear();
    room.receive(ca, chat("x", 1));
    room.receive(ca, JSON.stringify({ type: "ping" }));
    room.receive(ca, "not json");
    assert.equal(a.sent.length, 0);
    log.calls[0]!.resolve();
    await flush();
    assert.deepEqual(a.frames().map((f) => f.type), ["message", "ack", "pong", "error"]);
  });
});

describe("Room nonce de-duplication", () => {
  it("a repeated nonce is not broadcast again: the same ack is sent", async () => {
    const { room, log } = setup();
    const a = new FakeSocket();
    const b = new FakeSocket();
    const ca = room.join(a, "alice");
    room.join(b, "bob");
    room.receive(ca, chat("once", "n-7"));
    log.calls[0]!.resolve();
    await flush();
    const reconnect = new FakeSocket();
    const ca2 = room.join(reconnect, "alice");
    room.receive(ca2, chat("once", "n-7"));
    await flush();
    assert.equal(log.calls.length, 1);
    assert.equal(b.ofType("message").length, 1);
    assert.deepEqual(reconnect.ofType("ack"), [{ type: "ack", nonce: "n-7", seq: 1 }]);
  });

  it("a retry that arrives while the first is still being stored gets the same ack", async () => {
    const { room, log } = setup();
    const a = new FakeSocket();
    const a2 = new FakeSocket();
    const ca = room.join(a, "alice");
    const ca2 = room.join(a2, "alice");
    room.receive(ca, chat("x", "dup"));
    room.receive(ca2, chat("x", "dup"));
    log.calls[0]!.resolve();
    await flush();
    assert.equal(log.stored.length, 1);
    assert.deepEqual(a.ofType("ack"), [{ type: "ack", nonce: "dup", seq: 1 }]);
    assert.deepEqual(a2.ofType("ack"), [{ type: "ack", nonce: "dup", seq: 1 }]);
    assert.equal(a.ofType("message").length, 1);
  });

  it("the same nonce from another user, or a string and a number, are different messages", async () => {
    const { room, log } = setup();
    const a = new FakeSocket();
    const ca = room.join(a, "alice");
    const cb = room.join(new FakeSocket(), "bob");
    room.receive(ca, chat("a", "1"));
    room.receive(cb, chat("b", "1"));
    room.receive(ca, chat("c", 1));
    log.calls[0]!.resolve();
    await flush();
    log.calls[1]!.resolve();
    await flush();
    assert.equal(log.stored.length, 3);
  });

  it("remembers nonces of stored history after a restart", () => {
    const { room } = setup(seeded(5));
    const a = new FakeSocket();
    const c = room.join(a, "old");
    room.receive(c, chat("again", "old-4"));
    assert.deepEqual(a.ofType("ack"), [{ type: "ack", nonce: "old-4", seq: 4 }]);
  });
});

describe("Room resume with since and epoch", () => {
  it("restores epoch, seq and history from the store", () => {
    const { room } = setup(seeded(25, "E7"));
    const a = new FakeSocket();
    room.join(a, "x");
    const [welcome, history] = a.frames();
    assert.equal(welcome!.epoch, "E7");
    assert.equal(welcome!.seq, 25);
    assert.deepEqual(history!.messages.map((m: ChatMessage) => m.seq), [23, 24, 25]);
    assert.equal(history!.complete, false);
  });

  it("since=S replays exactly seq > S, complete, when all are retained", () => {
    const { room } = setup(seeded(25, "E7"));
    const a = new FakeSocket();
    room.join(a, "x", { since: 18, epoch: "E7" });
    const history = a.frames()[1]!;
    assert.deepEqual(history.messages.map((m: ChatMessage) => m.seq), [19, 20, 21, 22, 23, 24, 25]);
    assert.equal(history.complete, true);
    const b = new FakeSocket();
    room.join(b, "y", { since: 25 });
    assert.deepEqual([b.frames()[1]!.messages.length, b.frames()[1]!.complete], [0, true]);
    const c = new FakeSocket();
    room.join(c, "z", { since: 15 });
    assert.deepEqual(c.frames()[1]!.messages.map((m: ChatMessage) => m.seq)[0], 16);
    assert.equal(c.frames()[1]!.complete, true);
  });

  it("a gap larger than retention, another epoch or a seq from the future gives the latest with complete:false", () => {
    const { room } = setup(seeded(25, "E7"));
    for (const resume of [{ since: 10 }, { since: 20, epoch: "OTHER" }, { since: 99 }]) {
      const s = new FakeSocket();
      room.join(s, "x", resume);
      const history = s.frames()[1]!;
      assert.deepEqual(history.messages.map((m: ChatMessage) => m.seq), [23, 24, 25], JSON.stringify(resume));
      assert.equal(history.complete, false, JSON.stringify(resume));
    }
  });

  it("since=0 on a first connect gets the whole history when it is all retained", () => {
    const { room } = setup(seeded(4, "E1"));
    const s = new FakeSocket();
    room.join(s, "x", { since: 0 });
    assert.deepEqual(s.frames()[1]!.messages.map((m: ChatMessage) => m.seq), [1, 2, 3, 4]);
    assert.equal(s.frames()[1]!.complete, true);
  });
});
