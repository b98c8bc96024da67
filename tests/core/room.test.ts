import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { silentLogger } from "../../src/core/deps.ts";
import { Room, type RoomOptions } from "../../src/core/room.ts";
import { FakeClock, sequentialIds } from "../_helpers/fake-clock.ts";
import { FakeSocket } from "../_helpers/fake-socket.ts";

const OPTS: RoomOptions = {
  historyReplay: 10,
  historyRetain: 1000,
  presenceGraceMs: 3000,
  limits: { maxText: 4096, maxFrameBytes: 65536 },
};

function setup(opts: Partial<RoomOptions> = {}) {
  const clock = new FakeClock();
  const room = new Room("lobby", { ...OPTS, ...opts }, { clock, ids: sequentialIds(), log: silentLogger });
  return { clock, room };
}

const chat = (text: string, nonce?: string | number) =>
  JSON.stringify(nonce === undefined ? { type: "message", text } : { type: "message", text, nonce });

describe("Room.join()", () => {
  it("sends welcome then history, then announces the join to everyone", () => {
    const { room } = setup();
    const a = new FakeSocket();
    room.join(a, "alice");
    const b = new FakeSocket();
    room.join(b, "bob");
    assert.deepEqual(b.frames().map((f) => f.type), ["welcome", "history", "announce"]);
    const welcome = b.frames()[0]!;
    assert.equal(welcome.room, "lobby");
    assert.equal(welcome.user, "bob");
    assert.equal(welcome.epoch, "e1");
    assert.equal(welcome.seq, 0);
    assert.deepEqual(welcome.online, ["alice", "bob"]);
    const announce = a.ofType("announce").at(-1)!;
    assert.deepEqual(
      { event: announce.event, user: announce.user, text: announce.text, room: announce.room },
      { event: "join", user: "bob", text: "bob connected", room: "lobby" },
    );
    assert.equal(announce.date, "2026-01-02T03:04:05.000Z");
  });

  it("lists a user with several tabs once and announces only the first tab", () => {
    const { room } = setup();
    const tab1 = new FakeSocket();
    const tab2 = new FakeSocket();
    room.join(tab1, "alice");
    room.join(tab2, "alice");
    assert.deepEqual(tab2.frames()[0]!.online, ["alice"]);
    assert.equal(tab1.ofType("announce").length, 1);
    assert.equal(tab2.ofType("announce").length, 0);
    assert.deepEqual(room.online(), ["alice"]);
  });
});

describe("Room.receive()", () => {
  it("broadcasts a message to every connection, sender included, with seq, user and date", () => {
    const { room, clock } = setup();
    const a = new FakeSocket();
    const b = new FakeSocket();
    const ca = room.join(a, "alice");
    room.join(b, "bob");
    clock.advance(1500);
    room.receive(ca, chat("hello"));
    for (const s of [a, b]) {
      const msg = s.ofType("message");
      assert.equal(msg.length, 1);
      assert.deepEqual(msg[0], {
        type: "message",
        room: "lobby",
        seq: 1,
        user: "alice",
        date: "2026-01-02T03:04:06.500Z",
        text: "hello",
      });
    }
    room.receive(ca, chat("again"));
    assert.deepEqual(b.ofType("message").map((m) => m.seq), [1, 2]);
    assert.equal(room.seq, 2);
  });

  it("serialises a broadcast once: every socket gets the identical string", () => {
    const { room } = setup();
    const sockets = [new FakeSocket(), new FakeSocket(), new FakeSocket()];
    const conns = sockets.map((s, i) => room.join(s, `u${i}`));
    sockets.forEach((s) => s.clear());
    room.receive(conns[0]!, chat("same bytes"));
    assert.equal(new Set(sockets.map((s) => s.sent[0])).size, 1);
    assert.ok(sockets.every((s) => s.sent.length === 1));
  });

  it("acks a message with a nonce to the sender only, after the broadcast", () => {
    const { room } = setup();
    const a = new FakeSocket();
    const b = new FakeSocket();
    const ca = room.join(a, "alice");
    room.join(b, "bob");
    room.receive(ca, chat("x", "n-1"));
    room.receive(ca, chat("y", 42));
    const types = a.frames().slice(-4).map((f) => f.type);
    assert.deepEqual(types, ["message", "ack", "message", "ack"]);
    assert.deepEqual(a.ofType("ack"), [{ type: "ack", nonce: "n-1", seq: 1 }, { type: "ack", nonce: 42, seq: 2 }]);
    assert.equal(b.ofType("ack").length, 0);
    assert.equal(b.ofType("message")[0]!.nonce, "n-1");
  });

  it("answers ping with pong", () => {
    const { room } = setup();
    const a = new FakeSocket();
    const ca = room.join(a, "alice");
    a.clear();
    room.receive(ca, JSON.stringify({ type: "ping" }));
    assert.deepEqual(a.frames(), [{ type: "pong" }]);
  });

  it("answers invalid frames with an error, keeps the socket, broadcasts nothing", () => {
    const { room } = setup();
    const a = new FakeSocket();
    const b = new FakeSocket();
    const ca = room.join(a, "alice");
    room.join(b, "bob");
    a.clear();
    b.clear();
    const bad: unknown[] = [
      "not json",
      "[1,2]",
      "null",
      JSON.stringify({ type: "shout", text: "hi" }),
      JSON.stringify({ type: "message" }),
      JSON.stringify({ type: "message", text: 5 }),
      JSON.stringify({ type: "message", text: "   " }),
      JSON.stringify({ type: "message", text: "hi", user: "mallory" }),
      '{"type":"message","text":"hi","__proto__":{"x":1}}',
      new ArrayBuffer(4),
    ];
    for (const frame of bad) room.receive(ca, frame);
    const errors = a.ofType("error");
    assert.equal(errors.length, bad.length);
    assert.ok(errors.every((e) => e.code === "bad_request" && typeof e.message === "string" && e.message.length > 0));
    room.receive(ca, chat("x".repeat(4097)));
    assert.equal(a.ofType("error").at(-1)!.code, "payload_too_large");
    assert.equal(b.sent.length, 0);
    assert.equal(a.closedWith, undefined);
    assert.equal(room.seq, 0);
    room.receive(ca, chat("still here"));
    assert.equal(b.ofType("message").length, 1);
  });
});

describe("Room history", () => {
  it("replays the last historyReplay messages, oldest first", () => {
    const { room } = setup();
    const ca = room.join(new FakeSocket(), "alice");
    for (let i = 1; i <= 15; i++) room.receive(ca, chat(`m${i}`));
    const late = new FakeSocket();
    room.join(late, "late");
    const history = late.frames()[1]!;
    assert.equal(history.type, "history");
    assert.deepEqual(history.messages.map((m: { text: string }) => m.text), [
      "m6", "m7", "m8", "m9", "m10", "m11", "m12", "m13", "m14", "m15",
    ]);
    assert.deepEqual(history.messages.map((m: { seq: number }) => m.seq), [6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    assert.equal(history.complete, false);
    assert.equal(late.frames()[0]!.seq, 15);
  });

  it("says complete when nothing older exists", () => {
    const { room } = setup();
    const ca = room.join(new FakeSocket(), "alice");
    room.receive(ca, chat("one"));
    const late = new FakeSocket();
    room.join(late, "late");
    assert.equal(late.frames()[1]!.complete, true);
    assert.equal(late.frames()[1]!.messages.length, 1);
  });

  it("retains at most historyRetain messages", () => {
    const { room } = setup({ historyRetain: 5, historyReplay: 10 });
    const ca = room.join(new FakeSocket(), "alice");
    for (let i = 1; i <= 12; i++) room.receive(ca, chat(`m${i}`));
    assert.deepEqual(room.history().map((m) => m.seq), [8, 9, 10, 11, 12]);
    const late = new FakeSocket();
    room.join(late, "late");
    assert.equal(late.frames()[1]!.messages.length, 5);
  });
});

describe("Room presence grace period", () => {
  it("announces a leave only after the grace period with no reconnect", () => {
    const { room, clock } = setup();
    const a = new FakeSocket();
    const b = new FakeSocket();
    room.join(a, "alice");
    const cb = room.join(b, "bob");
    a.clear();
    room.leave(cb);
    clock.advance(2999);
    assert.equal(a.ofType("announce").length, 0);
    assert.deepEqual(room.online(), ["alice", "bob"]);
    clock.advance(1);
    const leave = a.ofType("announce");
    assert.equal(leave.length, 1);
    assert.deepEqual([leave[0]!.event, leave[0]!.user, leave[0]!.text], ["leave", "bob", "bob disconnected"]);
    assert.deepEqual(room.online(), ["alice"]);
  });

  it("a reload within the grace period announces neither leave nor join", () => {
    const { room, clock } = setup();
    const a = new FakeSocket();
    room.join(a, "alice");
    const cb = room.join(new FakeSocket(), "bob");
    a.clear();
    room.leave(cb);
    clock.advance(1000);
    room.join(new FakeSocket(), "bob");
    clock.advance(10_000);
    assert.equal(a.ofType("announce").length, 0);
    assert.equal(clock.pending, 0);
  });

  it("waits for the last tab of a user to close", () => {
    const { room, clock } = setup();
    const a = new FakeSocket();
    room.join(a, "alice");
    const t1 = room.join(new FakeSocket(), "bob");
    const t2 = room.join(new FakeSocket(), "bob");
    a.clear();
    room.leave(t1);
    clock.advance(5000);
    assert.equal(a.ofType("announce").length, 0);
    room.leave(t2);
    clock.advance(3000);
    assert.equal(a.ofType("announce").length, 1);
  });
});

describe("Room broken connections", () => {
  it("drops a socket whose send throws and still delivers to the others", () => {
    const { room, clock } = setup();
    const a = new FakeSocket();
    const broken = new FakeSocket();
    const c = new FakeSocket();
    const ca = room.join(a, "alice");
    room.join(broken, "bob");
    room.join(c, "carol");
    broken.failWith = new Error("EPIPE");
    room.receive(ca, chat("one"));
    assert.equal(a.ofType("message").length, 1);
    assert.equal(c.ofType("message").length, 1);
    assert.equal(room.connectionCount, 2);
    assert.equal(broken.closedWith?.code, 1011);
    room.receive(ca, chat("two"));
    assert.equal(c.ofType("message").length, 2);
    clock.advance(3000);
    assert.equal(c.ofType("announce").filter((f) => f.event === "leave" && f.user === "bob").length, 1);
  });

  it("drops a socket that is no longer open", () => {
    const { room } = setup();
    const a = new FakeSocket();
    const gone = new FakeSocket();
    const ca = room.join(a, "alice");
    room.join(gone, "bob");
    gone.readyState = 3;
    gone.clear();
    room.receive(ca, chat("hi"));
    assert.equal(gone.sent.length, 0);
    assert.equal(room.connectionCount, 1);
  });

  it("a newcomer whose first send fails is dropped without breaking the room", () => {
    const { room } = setup();
    const a = new FakeSocket();
    const ca = room.join(a, "alice");
    const bad = new FakeSocket();
    bad.failWith = new Error("boom");
    room.join(bad, "bob");
    assert.equal(room.connectionCount, 1);
    room.receive(ca, chat("ok"));
    assert.equal(a.ofType("message").length, 1);
  });
});

describe("Room.closeAll()", () => {
  it("closes every socket with the given code and cancels pending leaves", () => {
    const { room, clock } = setup();
    const a = new FakeSocket();
    const b = new FakeSocket();
    room.join(a, "alice");
    const cb = room.join(b, "bob");
    room.leave(cb);
    room.closeAll(1001, "server shutting down");
    assert.equal(a.closedWith?.code, 1001);
    assert.equal(room.connectionCount, 0);
    assert.equal(clock.pending, 0);
  });
});

describe("Room frame size limit", () => {
  it("closes a connection with 1009 when a frame is larger than maxFrameBytes, counting UTF-8 bytes", () => {
    const { room } = setup({ limits: { maxText: 4096, maxFrameBytes: 1000 } });
    const a = new FakeSocket();
    const b = new FakeSocket();
    const ca = room.join(a, "alice");
    const cb = room.join(b, "bob");
    room.receive(ca, chat("é".repeat(480)));
    assert.equal(a.closedWith, undefined);
    room.receive(cb, chat("é".repeat(500)));
    assert.equal(b.closedWith?.code, 1009);
    assert.equal(room.connectionCount, 1);
    room.receive(ca, new Uint8Array(2000));
    assert.equal((a.closedWith as { code?: number } | undefined)?.code, 1009);
    assert.equal(room.seq, 1);
  });
});

describe("Room close reasons", () => {
  it("records its own reason even when the socket's close callback runs inside close() (Bun)", () => {
    const { room } = setup();
    const a = new FakeSocket();
    const metricsSeen: string[] = [];
    const conn = room.join(a, "alice");
    // Like Bun: closing runs the runtime's close handler synchronously, which calls leave("client").
    a.close = (code?: number, reason?: string) => {
      a.closedWith = { code, reason };
      a.readyState = 3;
      metricsSeen.push(room.has(conn) ? "still-in-room" : "already-left");
      room.leave(conn, "client");
    };
    room.receive(conn, new Uint8Array(70_000));
    assert.deepEqual(metricsSeen, ["already-left"]);
    assert.equal(a.closedWith?.code, 1009);
  });
});
