import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { silentLogger } from "../../src/core/deps.ts";
import { ConnectionGate } from "../../src/core/gate.ts";
import { Metrics } from "../../src/core/metrics.ts";
import { TokenBucket, UserBuckets } from "../../src/core/rate-limit.ts";
import { Room, type RoomOptions } from "../../src/core/room.ts";
import { FakeClock, sequentialIds } from "../_helpers/fake-clock.ts";
import { FakeSocket } from "../_helpers/fake-socket.ts";

const chat = (text: string) => JSON.stringify({ type: "message", text });

function setup(extra: Partial<RoomOptions> = {}) {
  const clock = new FakeClock();
  const metrics = new Metrics();
  const rateLimit = extra.rateLimit ?? { perSecond: 10, burst: 30 };
  const users = new UserBuckets(rateLimit, clock);
  const room = new Room("lobby", {
    historyReplay: 10,
    historyRetain: 100,
    presenceGraceMs: 0,
    limits: { maxText: 4096, maxFrameBytes: 65536 },
    rateLimit,
    ...extra,
  }, { clock, ids: sequentialIds(), log: silentLogger, metrics, users });
  return { clock, room, metrics, users };
}

describe("TokenBucket", () => {
  it("allows a burst, then refills at the given rate", () => {
    const clock = new FakeClock();
    const b = new TokenBucket({ perSecond: 2, burst: 3 }, clock);
    assert.deepEqual([b.take(), b.take(), b.take(), b.take()], [true, true, true, false]);
    clock.advance(499);
    assert.equal(b.take(), false);
    clock.advance(1);
    assert.equal(b.take(), true);
    clock.advance(60_000);
    assert.deepEqual([b.take(), b.take(), b.take(), b.take()], [true, true, true, false]);
  });
});

describe("Room rate limit", () => {
  it("answers rate_limited past the burst, broadcasts nothing for it, and serves again after a refill", () => {
    const { room, clock, metrics } = setup({ rateLimit: { perSecond: 10, burst: 5 } });
    const a = new FakeSocket();
    const b = new FakeSocket();
    const ca = room.join(a, "alice");
    room.join(b, "bob");
    for (let i = 0; i < 7; i++) room.receive(ca, chat(`m${i}`));
    assert.equal(b.ofType("message").length, 5);
    const errors = a.ofType("error");
    assert.equal(errors.length, 2);
    assert.ok(errors.every((e) => e.code === "rate_limited"));
    assert.equal(a.closedWith, undefined);
    clock.advance(100);
    room.receive(ca, chat("later"));
    assert.equal(b.ofType("message").length, 6);
    assert.equal(metrics.errors.get("rate_limited"), 2);
  });

  it("closes with 1008 a client that keeps flooding after being told", () => {
    const { room, metrics } = setup({ rateLimit: { perSecond: 1, burst: 3 } });
    const a = new FakeSocket();
    const ca = room.join(a, "alice");
    for (let i = 0; i < 50; i++) room.receive(ca, chat(`m${i}`));
    assert.equal(a.closedWith?.code, 1008);
    assert.equal(a.ofType("error").length, 9);
    assert.equal(room.connectionCount, 0);
    assert.equal(metrics.closes.get("rate_limit"), 1);
  });

  it("limits a user across connections, not only per connection", () => {
    const { room, users } = setup({ rateLimit: { perSecond: 1, burst: 4 } });
    const tabs = [new FakeSocket(), new FakeSocket(), new FakeSocket()];
    const conns = tabs.map((s) => room.join(s, "alice"));
    const watcher = new FakeSocket();
    room.join(watcher, "bob");
    for (let i = 0; i < 3; i++) for (const c of conns) room.receive(c, chat("x"));
    assert.equal(watcher.ofType("message").length, 4);
    assert.equal(users.size, 2);
    for (const c of conns) room.leave(c);
    assert.equal(users.size, 1);
  });

  it("is off with perSecond 0", () => {
    const { room } = setup({ rateLimit: { perSecond: 0, burst: 1 } });
    const a = new FakeSocket();
    const ca = room.join(a, "alice");
    for (let i = 0; i < 200; i++) room.receive(ca, chat("x"));
    assert.equal(a.ofType("message").length, 200);
  });
});

describe("Room slow consumers", () => {
  it("closes with 1013 a socket whose buffer passes slowClientBytes for a second; the others keep receiving", () => {
    const { room, metrics, clock } = setup({ slowClientBytes: 1000, rateLimit: { perSecond: 0, burst: 1 } });
    const fast = new FakeSocket();
    const slow = new FakeSocket();
    const cf = room.join(fast, "fast");
    room.join(slow, "slow");
    room.receive(cf, chat("one"));
    slow.bufferedAmount = 3000;
    room.receive(cf, chat("two"));
    assert.equal(slow.closedWith, undefined, "a burst above the mark is tolerated for a moment");
    clock.advance(1000);
    room.receive(cf, chat("three"));
    assert.equal((slow.closedWith as { code?: number } | undefined)?.code, 1013);
    assert.equal(room.connectionCount, 1);
    room.receive(cf, chat("four"));
    assert.deepEqual(fast.ofType("message").map((m) => m.text), ["one", "two", "three", "four"]);
    assert.equal(metrics.closes.get("slow_consumer"), 1);
  });

  it("forgives a buffer that drains below the mark, and closes at once past four times the mark", () => {
    const { room, clock } = setup({ slowClientBytes: 1000, rateLimit: { perSecond: 0, burst: 1 } });
    const sender = room.join(new FakeSocket(), "sender");
    const bursty = new FakeSocket();
    const flooded = new FakeSocket();
    room.join(bursty, "bursty");
    room.join(flooded, "flooded");
    bursty.bufferedAmount = 2000;
    room.receive(sender, chat("a"));
    bursty.bufferedAmount = 0;
    clock.advance(900);
    room.receive(sender, chat("b"));
    bursty.bufferedAmount = 2000;
    clock.advance(900);
    room.receive(sender, chat("c"));
    assert.equal(bursty.closedWith, undefined);
    flooded.bufferedAmount = 4001;
    room.receive(sender, chat("d"));
    assert.equal(flooded.closedWith?.code, 1013);
  });
});

describe("Room metrics", () => {
  it("counts frames in, messages, deliveries and UTF-8 bytes once per broadcast", () => {
    const { room, metrics } = setup({ rateLimit: { perSecond: 0, burst: 1 } });
    const a = new FakeSocket();
    const b = new FakeSocket();
    const ca = room.join(a, "alice");
    room.join(b, "bob");
    const before = { out: metrics.framesOut, bytes: metrics.bytesOut };
    room.receive(ca, chat("héllo"));
    assert.equal(metrics.framesIn, 1);
    assert.equal(metrics.messagesIn, 1);
    assert.equal(metrics.framesOut - before.out, 2);
    const sent = a.sent.at(-1)!;
    assert.equal(metrics.bytesOut - before.bytes, 2 * new TextEncoder().encode(sent).byteLength);
    assert.equal(metrics.fanout.count > 0, true);
  });
});

describe("ConnectionGate", () => {
  it("caps connections in all and per IP, and gives slots back", () => {
    const clock = new FakeClock();
    const gate = new ConnectionGate(3, 2, clock);
    const a1 = gate.admit("a");
    const a2 = gate.admit("a");
    assert.ok(a1.ok && a2.ok);
    assert.deepEqual(gate.admit("a"), { ok: false, reason: "max_connections_per_ip" });
    const b1 = gate.admit("b");
    assert.ok(b1.ok);
    assert.deepEqual(gate.admit("c"), { ok: false, reason: "max_connections" });
    if (a1.ok) {
      a1.ticket.release();
      a1.ticket.release();
    }
    assert.equal(gate.total, 2);
    assert.ok(gate.admit("a").ok);
  });

  it("frees a slot whose socket never opened after the pending timeout", () => {
    const clock = new FakeClock();
    const gate = new ConnectionGate(1, 0, clock, 10_000);
    const opened = gate.admit("x");
    assert.ok(opened.ok);
    if (opened.ok) opened.ticket.opened();
    clock.advance(60_000);
    assert.equal(gate.total, 1);
    if (opened.ok) opened.ticket.release();
    const pending = gate.admit("y");
    assert.ok(pending.ok);
    clock.advance(10_000);
    assert.equal(gate.total, 0);
  });

  it("frees each never-opened slot at its own deadline with one timer for all of them", () => {
    const clock = new FakeClock();
    const gate = new ConnectionGate(0, 0, clock, 1_000);
    const tickets = [];
    for (let i = 0; i < 5; i++) {
      const admission = gate.admit(`ip${i}`);
      assert.ok(admission.ok);
      if (admission.ok) tickets.push(admission.ticket);
      clock.advance(300);
    }
    // Admitted at 0, 300, 600, 900 and 1200 ms; now at 1500 ms.
    assert.equal(clock.pending, 1);
    tickets[2]!.opened();
    tickets[1]!.release(); // already expired: no second release
    assert.equal(gate.total, 3); // the first two expired at 1000 and 1300 ms
    clock.advance(200); // 1700: not yet the fourth's deadline (1900)
    assert.equal(gate.total, 3);
    clock.advance(200); // 1900: the fourth goes
    assert.equal(gate.total, 2);
    clock.advance(300); // 2200: the fifth goes; the opened third stays
    assert.equal(gate.total, 1);
    assert.equal(gate.ips, 1);
    assert.equal(clock.pending, 0);
    tickets[2]!.release();
    assert.equal(gate.total, 0);
  });
});

describe("Room slow consumers and a large history", () => {
  it("does not count the join's own history against slowClientBytes until the buffer first drains", () => {
    const { room, clock } = setup({ slowClientBytes: 1000, rateLimit: { perSecond: 0, burst: 1 } });
    const sender = room.join(new FakeSocket(), "sender");
    const newcomer = new FakeSocket();
    // While joining, its welcome and history pile up in the buffer: 5000 bytes, over four times the mark.
    newcomer.send = function (data: string) {
      FakeSocket.prototype.send.call(this, data);
      if (JSON.parse(data).type === "history") this.bufferedAmount = 5000;
    };
    for (let i = 0; i < 3; i++) room.receive(sender, chat("x".repeat(200)));
    room.join(newcomer, "newcomer");
    newcomer.bufferedAmount = 5000;
    room.receive(sender, chat("live"));
    clock.advance(2000);
    room.receive(sender, chat("live 2"));
    assert.equal(newcomer.closedWith, undefined, "its own history does not make it slow");
    newcomer.bufferedAmount = 0;
    room.receive(sender, chat("drained"));
    newcomer.bufferedAmount = 5000;
    room.receive(sender, chat("stuck now"));
    assert.equal((newcomer.closedWith as { code?: number } | undefined)?.code, 1013);
  });
});

describe("Room with native fan-out", () => {
  it("publishes a broadcast once, subscribes after the join frames, and still drops slow or closed sockets", () => {
    const clock = new FakeClock();
    const published: string[] = [];
    const subscribed = new Set<unknown>();
    const order: string[] = [];
    const fanout = {
      subscribe: (socket: unknown) => {
        order.push(`subscribe after ${(socket as FakeSocket).sent.length} frames`);
        subscribed.add(socket);
      },
      unsubscribe: (socket: unknown) => void subscribed.delete(socket),
      publish: (_room: string, data: string) => {
        published.push(data);
        for (const s of subscribed) (s as FakeSocket).send(data);
      },
    };
    const room = new Room("lobby", {
      historyReplay: 10,
      historyRetain: 100,
      presenceGraceMs: 0,
      limits: { maxText: 4096, maxFrameBytes: 65536 },
      slowClientBytes: 1000,
    }, { clock, ids: sequentialIds(), log: silentLogger, fanout });
    const a = new FakeSocket();
    const b = new FakeSocket();
    const ca = room.join(a, "alice");
    room.join(b, "bob");
    assert.deepEqual(order, ["subscribe after 2 frames", "subscribe after 2 frames"]);
    published.length = 0;
    room.receive(ca, chat("hello"));
    assert.equal(published.length, 1);
    assert.equal(b.ofType("message").length, 1);
    b.bufferedAmount = 10_000;
    clock.advance(250);
    room.receive(ca, chat("again"));
    assert.equal((b.closedWith as { code?: number } | undefined)?.code, 1013);
    assert.equal(subscribed.has(b), false);
    assert.equal(room.connectionCount, 1);
  });
});
