// The Room over a shared log (several instances, Redis): it broadcasts what the log delivers, acks
// after the message came back, keeps replies in order, and starts over when the history is reset.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { silentLogger } from "../../src/core/deps.ts";
import { RESET_CLOSE, Room, type RoomOptions } from "../../src/core/room.ts";
import type { ChatMessage } from "../../src/protocol/messages.ts";
import type { Draft, SharedLog, SharedSink, Submitted } from "../../src/storage/store.ts";
import { FakeClock, sequentialIds } from "../_helpers/fake-clock.ts";
import { FakeSocket } from "../_helpers/fake-socket.ts";

const OPTS: RoomOptions = {
  historyReplay: 10,
  historyRetain: 1000,
  presenceGraceMs: 0,
  limits: { maxText: 4096, maxFrameBytes: 65536 },
};

/** A shared log driven by hand: submits wait until the test answers them. */
class ScriptedLog implements SharedLog {
  readonly shared = true;
  sink?: SharedSink;
  submits: { drafts: Draft[]; resolve: (r: Submitted[]) => void; reject: (e: unknown) => void }[] = [];
  arrived: string[] = [];
  departed: string[] = [];
  closed = false;
  seq = 0;
  submit(drafts: Draft[]): Promise<Submitted[]> {
    return new Promise((resolve, reject) => this.submits.push({ drafts, resolve, reject }));
  }
  listen(sink: SharedSink): void {
    this.sink = sink;
  }
  arrive(user: string): void {
    this.arrived.push(user);
  }
  depart(user: string): void {
    this.departed.push(user);
  }
  append(): void {}
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
  /** Stores the oldest pending submit: gives seqs, answers it, and returns the stored messages (not yet delivered). */
  store(): ChatMessage[] {
    const s = this.submits.shift()!;
    const stored = s.drafts.map((d) => ({ ...d, seq: ++this.seq }) as ChatMessage);
    s.resolve(stored.map((m) => ({ seq: m.seq, duplicate: false })));
    return stored;
  }
  /** Another instance's message. */
  foreign(user: string, text: string): ChatMessage {
    return { type: "message", room: "lobby", seq: ++this.seq, user, date: new Date(0).toISOString(), text };
  }
}

const tick = () => new Promise((r) => setTimeout(r, 0));
const chat = (text: string, nonce?: string | number) =>
  JSON.stringify(nonce === undefined ? { type: "message", text } : { type: "message", text, nonce });

function setup(online: string[] = []) {
  const log = new ScriptedLog();
  const room = new Room("lobby", OPTS, { clock: new FakeClock(), ids: sequentialIds(), log: silentLogger }, {
    epoch: "E",
    seq: 0,
    messages: [],
    online,
  }, log);
  return { log, room };
}

describe("Room over a shared log", () => {
  it("broadcasts only what the log delivers, and acks after the sender saw its message", async () => {
    const { log, room } = setup();
    const a = new FakeSocket();
    const conn = room.join(a, "alice");
    a.clear();
    room.receive(conn, chat("hi", "n1"));
    await tick();
    assert.equal(log.submits.length, 1);
    assert.equal(log.submits[0]!.drafts[0]!.text, "hi");
    assert.equal(a.sent.length, 0, "nothing is broadcast before the log answers");
    const stored = log.store();
    await tick();
    assert.equal(a.sent.length, 0, "the ack waits for the message to come back through the log");
    log.sink!.messages(stored);
    assert.deepEqual(a.frames().map((f) => `${f.type}:${f.seq}`), ["message:1", "ack:1"]);
    assert.equal(room.seq, 1);
  });

  it("delivers other instances' messages in seq order and skips ones it already has", () => {
    const { log, room } = setup();
    const a = new FakeSocket();
    room.join(a, "alice");
    a.clear();
    const m1 = log.foreign("bob", "one");
    const m2 = log.foreign("bob", "two");
    log.sink!.messages([m1, m2]);
    log.sink!.messages([m2]);
    assert.deepEqual(a.frames().map((f) => f.seq), [1, 2]);
    assert.deepEqual(room.history().map((m) => m.text), ["one", "two"]);
  });

  it("keeps a reply (pong, error) behind the ack of the sender's earlier message", async () => {
    const { log, room } = setup();
    const a = new FakeSocket();
    const conn = room.join(a, "alice");
    a.clear();
    room.receive(conn, chat("hi", "n1"));
    room.receive(conn, JSON.stringify({ type: "ping" }));
    room.receive(conn, "not json");
    await tick();
    const stored = log.store();
    await tick();
    assert.equal(a.sent.length, 0);
    log.sink!.messages(stored);
    await tick();
    assert.deepEqual(a.frames().map((f) => f.type), ["message", "ack", "pong", "error"]);
  });

  it("answers unavailable with the nonce when the log cannot store, and broadcasts nothing", async () => {
    const { log, room } = setup();
    const a = new FakeSocket();
    const b = new FakeSocket();
    const conn = room.join(a, "alice");
    room.join(b, "bob");
    a.clear();
    b.clear();
    room.receive(conn, chat("hi", "n1"));
    await tick();
    log.submits.shift()!.reject(new Error("Redis is away"));
    await tick();
    assert.deepEqual(a.frames(), [{
      type: "error",
      code: "unavailable",
      message: "Cannot store message right now; it was not sent; try again",
      nonce: "n1",
    }]);
    assert.equal(b.sent.length, 0);
    assert.equal(room.seq, 0);
  });

  it("acks a duplicate with the stored message's seq", async () => {
    const { log, room } = setup();
    const a = new FakeSocket();
    const conn = room.join(a, "alice");
    log.sink!.messages([{ ...log.foreign("alice", "sent through another instance"), nonce: "n1" }]);
    a.clear();
    // The room itself remembers the nonce from the delivery: answered at once.
    room.receive(conn, chat("sent through another instance", "n1"));
    assert.deepEqual(a.frames(), [{ type: "ack", nonce: "n1", seq: 1 }]);
    // One it has not seen yet: the log says it is a duplicate; the ack waits for the delivery.
    a.clear();
    room.receive(conn, chat("again", "n2"));
    await tick();
    log.submits.shift()!.resolve([{ seq: 2, duplicate: true }]);
    await tick();
    assert.equal(a.sent.length, 0);
    log.sink!.messages([{ ...log.foreign("alice", "again"), nonce: "n2" }]);
    assert.deepEqual(a.frames().map((f) => `${f.type}:${f.seq}`), ["message:2", "ack:2"]);
  });

  it("leaves presence to the log: arrive on a first tab, depart after the last, announces as delivered", () => {
    const { log, room } = setup(["zoe"]);
    const a = new FakeSocket();
    const tab1 = room.join(a, "alice");
    const tab2 = room.join(new FakeSocket(), "alice");
    assert.deepEqual(log.arrived, ["alice"]);
    assert.deepEqual(a.frames()[0]!.online, ["zoe", "alice"], "users of other instances are listed");
    assert.equal(a.ofType("announce").length, 0, "the join is the log's to announce");
    log.sink!.announce({ type: "announce", event: "join", room: "lobby", user: "alice", date: new Date(0).toISOString(), text: "alice connected" });
    log.sink!.announce({ type: "announce", event: "leave", room: "lobby", user: "zoe", date: new Date(0).toISOString(), text: "zoe disconnected" });
    assert.deepEqual(a.ofType("announce").map((f) => `${f.event}:${f.user}`), ["join:alice", "leave:zoe"]);
    assert.deepEqual(room.online(), ["alice"]);
    room.leave(tab1);
    assert.deepEqual(log.departed, []);
    room.leave(tab2);
    assert.deepEqual(log.departed, ["alice"]);
  });

  it("closes every connection with 1012 when the log resets the room, and the room is defunct", async () => {
    const { log, room } = setup();
    const a = new FakeSocket();
    const conn = room.join(a, "alice");
    room.receive(conn, chat("pending", "n1"));
    await tick();
    log.sink!.reset("history lost");
    assert.deepEqual(a.closedWith, { code: RESET_CLOSE.code, reason: RESET_CLOSE.reason });
    assert.equal(room.defunct, true);
    assert.equal(room.connectionCount, 0);
    assert.equal(log.closed, true);
    // A late answer for the pending batch changes nothing.
    log.store();
    await tick();
    log.sink!.messages([log.foreign("bob", "late")]);
    assert.equal(room.seq, 0);
  });
});
