// The client library (static/chat-client.js through src/client) driven by a fake WebSocket and a fake
// clock: no network. Runs on Node, Deno and Bun like every *.test.ts.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  ChatClient,
  ChatClientError,
  type ChatClientEvents,
  type ChatClientOptions,
  type ChatMessage,
  type StorageLike,
  type WebSocketLike,
} from "../../src/client/index.ts";
import { FakeClock } from "../_helpers/fake-clock.ts";

// ---- fakes -----------------------------------------------------------------------------------

type Frame = Record<string, any>;

/** One fake socket: the test plays the server through open(), receive() and drop(). */
class FakeWS implements WebSocketLike {
  readyState = 0;
  sent: string[] = [];
  closedWith: { code?: number; reason?: string } | undefined;
  onopen: ((event: any) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code?: number; reason?: string }) => void) | null = null;
  onerror: ((event: any) => void) | null = null;

  constructor(readonly url: string, readonly protocols?: string | string[]) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("InvalidStateError: not open");
    this.sent.push(data);
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  // The server's side.
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(frame: Frame): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  drop(code = 1006, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  frames(type?: string): Frame[] {
    return this.sent.map((s) => JSON.parse(s) as Frame).filter((f) => type === undefined || f.type === type);
  }

  query(): URLSearchParams {
    return new URL(this.url).searchParams;
  }
}

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
  json(key: string): any {
    const raw = this.map.get(key);
    return raw === undefined ? undefined : JSON.parse(raw);
  }
}

const EPOCH = "e-one";
const ROOM = "lobby";
const KEY = "test-key";

function msg(seq: number, user: string, text: string, nonce?: string): ChatMessage {
  const m: ChatMessage = { type: "message", room: ROOM, seq, user, date: "2026-11-25T09:00:00.000Z", text };
  if (nonce !== undefined) m.nonce = nonce;
  return m;
}

function setup(opts: Partial<ChatClientOptions> = {}, { random = (): number => 1 }: { random?: () => number } = {}) {
  const clock = new FakeClock();
  const sockets: FakeWS[] = [];
  const WS = class extends FakeWS {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      sockets.push(this);
    }
  };
  let n = 0;
  const client = new ChatClient({
    url: "http://chat.test:8080",
    room: ROOM,
    name: "ana",
    WebSocket: WS,
    timers: clock,
    random,
    nonce: () => `n${++n}`,
    ...opts,
  });
  const events: { [K in keyof ChatClientEvents]?: ChatClientEvents[K][] } = {};
  for (const type of ["status", "welcome", "history", "message", "announce", "presence", "gap", "ack", "error", "outbox", "disconnect"] as const) {
    const list: any[] = events[type] = [];
    client.on(type, (payload: any) => list.push(payload));
  }
  const last = () => sockets.at(-1)!;
  /** Opens the newest socket and plays welcome + history. */
  interface JoinOptions { epoch?: string; seq?: number; user?: string; online?: string[]; history?: ChatMessage[]; complete?: boolean }
  const join = ({ epoch = EPOCH, seq = 0, user = "ana", online, history = [], complete = true }: JoinOptions = {}) => {
    const ws = last();
    ws.open();
    ws.receive({ type: "welcome", room: ROOM, user, epoch, seq, online: online ?? [user] });
    ws.receive({ type: "history", room: ROOM, messages: history, complete });
    return ws;
  };
  return { client, clock, sockets, events, last, join };
}

const seqs = (list: ChatMessage[] | undefined) => (list ?? []).map((m) => m.seq);
const chatFrames = (ws: FakeWS) => ws.frames("message").map((f) => ({ text: f.text, nonce: f.nonce }));

// ---- tests -----------------------------------------------------------------------------------

describe("ChatClient: connecting", () => {
  it("connects to /ws/<room> with the name, and without since the first time", () => {
    const { client, last, events } = setup();
    client.connect();
    assert.equal(last().url, "ws://chat.test:8080/ws/lobby?name=ana");
    assert.equal(client.status, "connecting");
    const ws = last();
    ws.open();
    ws.receive({ type: "welcome", room: ROOM, user: "ana", epoch: EPOCH, seq: 0, online: ["ana"] });
    assert.equal(client.status, "connected");
    assert.deepEqual(events.status!.map((s) => s.status), ["connecting", "connected"]);
    assert.equal(client.user, "ana");
    assert.equal(client.epoch, EPOCH);
  });

  it("uses wss for https, keeps a path prefix and encodes the name", () => {
    const { client, last } = setup({ url: "https://example.test/chat/", name: "Zoë & co" });
    client.connect();
    assert.equal(last().url, "wss://example.test/chat/ws/lobby?name=Zo%C3%AB%20%26%20co");
  });

  it("backs off exponentially with full jitter, capped, and resets after a welcome", () => {
    const { client, clock, sockets, events, join } = setup({ backoff: { initialMs: 500, maxMs: 15_000 } });
    client.connect();
    const expected = [500, 1000, 2000, 4000, 8000, 15_000, 15_000];
    for (const delay of expected) {
      const count = sockets.length;
      sockets.at(-1)!.drop(1006);
      assert.equal(client.status, "reconnecting");
      clock.advance(delay - 1);
      assert.equal(sockets.length, count, `no new socket before ${delay} ms`);
      clock.advance(1);
      assert.equal(sockets.length, count + 1, `a new socket after ${delay} ms`);
    }
    assert.deepEqual(events.disconnect!.map((d) => d.retryInMs), expected);
    join();
    sockets.at(-1)!.drop(1006);
    assert.equal(events.disconnect!.at(-1)!.retryInMs, 500, "reset by the welcome");
    assert.equal(events.disconnect!.at(-1)!.welcomed, true);
  });

  it("draws each delay at random below the ceiling (jitter)", () => {
    const draws = [0.1, 0.9, 0.5, 0];
    const { client, clock, sockets, events } = setup({}, { random: () => draws.shift() ?? 0.5 });
    client.connect();
    for (let i = 0; i < 4; i++) {
      sockets.at(-1)!.drop();
      clock.advance(20_000);
    }
    assert.deepEqual(events.disconnect!.map((d) => d.retryInMs), [50, 900, 1000, 0]);
  });

  it("backs off long after 1008 (policy) and 1013 (overloaded)", () => {
    const { client, sockets, events, join, clock } = setup({}, { random: () => 0 });
    client.connect();
    join();
    sockets.at(-1)!.drop(1008, "rate limit exceeded");
    assert.equal(events.disconnect!.at(-1)!.retryInMs, 30_000);
    clock.advance(29_999);
    assert.equal(sockets.length, 1);
    clock.advance(1);
    join();
    sockets.at(-1)!.drop(1013, "overloaded");
    assert.equal(events.disconnect!.at(-1)!.retryInMs, 5_000);
    clock.advance(5_000);
    join();
    sockets.at(-1)!.drop(1001, "shutting down");
    assert.equal(events.disconnect!.at(-1)!.retryInMs, 0);
    clock.advance(0);
    join();
    sockets.at(-1)!.drop(1008, "token expired"); // not abuse: a fresh token may come at once
    assert.equal(events.disconnect!.at(-1)!.retryInMs, 0);
  });

  it("close() stops reconnecting, closes the socket with 1000 and connect() starts again", () => {
    const { client, sockets, clock, join, events } = setup();
    client.connect();
    const ws = join();
    client.close();
    assert.equal(client.status, "closed");
    assert.deepEqual(ws.closedWith, { code: 1000, reason: "bye" });
    ws.drop(1000); // the late close event is ignored
    clock.advance(60_000);
    assert.equal(sockets.length, 1);
    assert.equal(events.disconnect!.length, 0);
    client.connect();
    assert.equal(sockets.length, 2);
  });

  it("close() while still connecting leaves the dropped socket an error handler (ws throws errors nobody handles)", () => {
    const { client, last } = setup();
    client.connect();
    const ws = last();
    client.close();
    assert.equal(ws.readyState, 0);
    // Like the ws package on Node, an error with no handler would be thrown: a refused connection
    // arriving after close() must not crash the process using the client.
    assert.equal(typeof ws.onerror, "function");
    assert.doesNotThrow(() => ws.onerror!({ type: "error" }));
    ws.drop(1006);
    assert.equal(client.status, "closed");
  });

  it("retryNow() skips the backoff delay", () => {
    const { client, sockets } = setup();
    client.connect();
    sockets[0]!.drop();
    assert.equal(sockets.length, 1);
    client.retryNow();
    assert.equal(sockets.length, 2);
    client.retryNow(); // already trying: nothing more
    assert.equal(sockets.length, 2);
  });

  it("beforeConnect adds query parameters and subprotocols, even asynchronously", async () => {
    let calls = 0;
    const { client, last } = setup({
      beforeConnect: ({ attempt }) => {
        calls++;
        return Promise.resolve({ query: { token: `t${attempt}` }, protocols: ["shootawall.v1"] });
      },
    });
    client.connect();
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.equal(calls, 1);
    assert.equal(last().url, "ws://chat.test:8080/ws/lobby?name=ana&token=t0");
    assert.deepEqual(last().protocols, ["shootawall.v1"]);
  });

  it("getToken: sends the token as a subprotocol and refreshes it over the socket before it expires", async () => {
    const jwt = (exp: number) => `h.${btoa(JSON.stringify({ sub: "u1", exp })).replace(/=+$/, "")}.sig`;
    let calls = 0;
    let now = () => 0;
    const { client, clock, last, join } = setup({
      pingIntervalMs: 0,
      deadAfterMs: 0,
      refreshBeforeMs: 30_000,
      getToken: () => jwt(Math.floor(now() / 1000) + 120 + 60 * calls++),
    });
    now = () => clock.now();
    client.connect();
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.deepEqual(last().protocols, ["shootawall.v1", `bearer.${jwt(Math.floor(clock.now() / 1000) + 120)}`]);
    const ws = join();
    clock.advance(89_000);
    assert.equal(ws.frames("auth").length, 0, "not yet: 30 s before exp");
    clock.advance(1_000);
    await new Promise((resolve) => setTimeout(resolve, 0));
    const [auth] = ws.frames("auth");
    assert.ok(auth, "a fresh token was sent");
    assert.equal(calls, 2);
    const freshExp = JSON.parse(atob(String(auth.token).split(".")[1]!)).exp;
    ws.receive({ type: "auth_ok", exp: freshExp });
    await new Promise((resolve) => setTimeout(resolve, 0));
    clock.advance((freshExp * 1000 - 30_000) - clock.now() - 1);
    assert.equal(ws.frames("auth").length, 1);
    clock.advance(1);
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.equal(ws.frames("auth").length, 2, "and again before the fresh one expires");
  });

  it("pings every pingIntervalMs and replaces a connection silent for deadAfterMs", () => {
    const { client, clock, sockets, join } = setup({ pingIntervalMs: 25_000, deadAfterMs: 60_000 });
    client.connect();
    const ws = join();
    clock.advance(24_999);
    assert.equal(ws.frames("ping").length, 0);
    clock.advance(1);
    assert.equal(ws.frames("ping").length, 1);
    ws.receive({ type: "pong" });
    clock.advance(50_000);
    assert.equal(ws.frames("ping").length, 3);
    ws.receive({ type: "pong" });
    clock.advance(59_000); // silent, but not for 60 s yet
    assert.equal(sockets.length, 1);
    clock.advance(6_000);
    assert.deepEqual(ws.closedWith, { code: 4000, reason: "no reply" });
    assert.equal(client.status, "reconnecting");
    clock.advance(500);
    assert.equal(sockets.length, 2);
  });
});

describe("ChatClient: delivery", () => {
  it("delivers history then live messages once each, in seq order, marking the replayed ones", () => {
    const { client, join, events } = setup();
    client.connect();
    const ws = join({ seq: 2, history: [msg(1, "bo", "a"), msg(2, "ana", "b")], complete: true });
    ws.receive(msg(3, "bo", "c"));
    ws.receive(msg(3, "bo", "c")); // a duplicate
    ws.receive(msg(2, "bo", "b"));
    assert.deepEqual(seqs(events.message), [1, 2, 3]);
    assert.deepEqual(events.message!.map((m) => [m.fromHistory, m.mine]), [[true, false], [true, true], [false, false]]);
    assert.deepEqual(events.history!.map((h) => [h.messages.length, h.complete, h.resumed]), [[2, true, false]]);
    assert.equal(client.lastSeq, 3);
  });

  it("resumes with since and epoch, and drops what the history repeats", () => {
    const { client, join, sockets, clock, events } = setup();
    client.connect();
    const ws = join({ seq: 0 });
    for (let s = 1; s <= 3; s++) ws.receive(msg(s, "bo", `m${s}`));
    ws.drop(1006);
    clock.advance(1_000);
    const again = sockets.at(-1)!;
    assert.equal(again.query().get("since"), "3");
    assert.equal(again.query().get("epoch"), EPOCH);
    assert.equal(again.query().get("name"), "ana");
    // A server that ignores since replays the latest messages: only 4 and 5 are new.
    join({ seq: 5, history: [2, 3, 4, 5].map((s) => msg(s, "bo", `m${s}`)), complete: false });
    again.receive(msg(5, "bo", "m5"));
    again.receive(msg(6, "bo", "m6"));
    assert.deepEqual(seqs(events.message), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(events.message!.slice(3).map((m) => m.fromHistory), [true, true, false]);
    assert.deepEqual(events.gap, [], "no gap: 4 follows 3");
    assert.deepEqual(events.history!.at(-1)!.resumed, true);
  });

  it("reports a gap when the resume cannot cover everything missed", () => {
    const { client, join, sockets, clock, events } = setup();
    client.connect();
    const ws = join({ seq: 3, history: [1, 2, 3].map((s) => msg(s, "bo", `m${s}`)) });
    ws.drop(1006);
    clock.advance(1_000);
    join({ seq: 10, history: [8, 9, 10].map((s) => msg(s, "bo", `m${s}`)), complete: false });
    assert.equal(events.gap!.length, 1);
    assert.deepEqual(
      { ...events.gap![0]!, epoch: undefined, previousEpoch: undefined },
      { reason: "missed", lastSeq: 3, from: 4, to: 7, cleared: false, epoch: undefined, previousEpoch: undefined },
    );
    assert.deepEqual(seqs(events.message), [1, 2, 3, 8, 9, 10]);
    // Nothing new at all while the room moved on: also a gap.
    sockets.at(-1)!.drop(1006);
    clock.advance(1_000);
    join({ seq: 12, history: [], complete: false });
    assert.deepEqual([events.gap![1]!.from, events.gap![1]!.to], [11, 12]);
    assert.equal(client.lastSeq, 12);
  });

  it("an epoch change clears what it knew and reports a gap", () => {
    const storage = new MemoryStorage();
    const { client, join, clock, events, sockets } = setup({ storage, storageKey: KEY, keepMessages: 10 });
    client.connect();
    join({ seq: 5, history: [1, 2, 3, 4, 5].map((s) => msg(s, "bo", `m${s}`)) });
    assert.equal(client.messages.length, 5);
    sockets.at(-1)!.drop(1001);
    clock.advance(1_000);
    assert.equal(sockets.at(-1)!.query().get("epoch"), EPOCH);
    join({ epoch: "e-two", seq: 2, history: [msg(1, "bo", "new 1"), msg(2, "bo", "new 2")], complete: true });
    assert.equal(events.gap!.length, 1);
    const gap = events.gap![0]!;
    assert.deepEqual([gap.reason, gap.previousEpoch, gap.epoch, gap.lastSeq, gap.cleared], ["epoch", EPOCH, "e-two", 5, true]);
    assert.deepEqual(events.message!.slice(5).map((m) => m.text), ["new 1", "new 2"]);
    assert.equal(client.epoch, "e-two");
    assert.equal(client.lastSeq, 2);
    assert.deepEqual(client.messages.map((m) => m.text), ["new 1", "new 2"]);
    assert.deepEqual([storage.json(KEY).epoch, storage.json(KEY).lastSeq], ["e-two", 2]);
  });

  it("a server behind what we saw in the same epoch counts as a lost history", () => {
    const { client, join, clock, events, sockets } = setup();
    client.connect();
    join({ seq: 4, history: [1, 2, 3, 4].map((s) => msg(s, "bo", `m${s}`)) });
    sockets.at(-1)!.drop(1006);
    clock.advance(1_000);
    join({ seq: 2, history: [msg(1, "bo", "x1"), msg(2, "bo", "x2")] });
    assert.equal(events.gap![0]!.reason, "rewound");
    assert.deepEqual(events.message!.slice(4).map((m) => m.text), ["x1", "x2"]);
  });

  it("keeps the online list from welcome and announces", () => {
    const { client, join, events } = setup();
    client.connect();
    const ws = join({ online: ["ana", "bo"] });
    ws.receive({ type: "announce", event: "join", room: ROOM, user: "cy", date: "", text: "cy connected" });
    ws.receive({ type: "announce", event: "leave", room: ROOM, user: "bo", date: "", text: "bo disconnected" });
    ws.receive({ type: "announce", event: "join", room: ROOM, user: "cy", date: "", text: "cy connected" });
    assert.deepEqual(events.presence, [["ana", "bo"], ["ana", "bo", "cy"], ["ana", "cy"], ["ana", "cy"]]);
    assert.deepEqual(client.online, ["ana", "cy"]);
    assert.equal(events.announce!.length, 3);
  });

  it("a guest keeps the name the server gave it when reconnecting", () => {
    const { client, join, clock, sockets } = setup({ name: undefined });
    client.connect();
    assert.equal(sockets[0]!.url, "ws://chat.test:8080/ws/lobby");
    join({ user: "guest-00ab" });
    sockets[0]!.drop(1006);
    clock.advance(1_000);
    assert.equal(sockets[1]!.query().get("name"), "guest-00ab");
  });

  it("ignores frames it does not know and frames that are not JSON", () => {
    const { client, join, events } = setup();
    client.connect();
    const ws = join();
    ws.onmessage?.({ data: "not json" });
    ws.receive({ type: "shout", text: "?" });
    ws.receive({ type: "message", seq: "x" });
    ws.receive(msg(1, "bo", "ok"));
    assert.deepEqual(seqs(events.message), [1]);
  });
});

describe("ChatClient: outbox", () => {
  it("sends with a nonce, and the ack resolves with the seq and empties the outbox", async () => {
    const { client, join, events } = setup();
    client.connect();
    const ws = join();
    const { nonce, acked } = client.send("hello");
    assert.deepEqual(chatFrames(ws), [{ text: "hello", nonce }]);
    assert.deepEqual(client.pending.map((e) => [e.text, e.state]), [["hello", "sending"]]);
    ws.receive(msg(1, "ana", "hello", nonce));
    assert.equal(client.pending[0]!.seq, 1, "the echo is noted");
    ws.receive({ type: "ack", nonce, seq: 1 });
    assert.equal(await acked, 1);
    assert.deepEqual(client.pending, []);
    assert.deepEqual(events.ack, [{ nonce, seq: 1, text: "hello" }]);
    assert.equal(events.message!.at(-1)!.mine, true);
  });

  it("queues while offline and sends only after welcome and history", () => {
    const { client, last } = setup();
    client.send("early");
    client.connect();
    const ws = last();
    ws.open();
    ws.receive({ type: "welcome", room: ROOM, user: "ana", epoch: EPOCH, seq: 0, online: ["ana"] });
    assert.deepEqual(chatFrames(ws), [], "not before the history");
    ws.receive({ type: "history", room: ROOM, messages: [], complete: true });
    assert.deepEqual(chatFrames(ws), [{ text: "early", nonce: "n1" }]);
  });

  it("re-sends un-acked messages after a reconnect, in order, with the same nonces", async () => {
    const { client, join, sockets, clock } = setup();
    client.connect();
    const first = join();
    const one = client.send("one");
    first.drop(1006); // before the ack
    const two = client.send("two"); // while offline
    assert.deepEqual(client.pending.map((e) => e.state), ["queued", "queued"]);
    clock.advance(1_000);
    const second = join();
    assert.deepEqual(chatFrames(second), [{ text: "one", nonce: one.nonce }, { text: "two", nonce: two.nonce }]);
    // The server had stored "one" already: it answers the repeat with the same ack, no echo.
    second.receive({ type: "ack", nonce: one.nonce, seq: 1 });
    second.receive(msg(2, "ana", "two", two.nonce));
    second.receive({ type: "ack", nonce: two.nonce, seq: 2 });
    assert.deepEqual([await one.acked, await two.acked], [1, 2]);
    assert.deepEqual(client.pending, []);
    assert.equal(sockets.length, 2);
  });

  it("a message found in the resumed history is done: not sent again", async () => {
    const { client, join, clock, events } = setup();
    client.connect();
    const first = join();
    const sent = client.send("made it");
    first.drop(1006);
    clock.advance(1_000);
    const second = join({ seq: 1, history: [msg(1, "ana", "made it", sent.nonce)] });
    assert.deepEqual(chatFrames(second), []);
    assert.equal(await sent.acked, 1);
    assert.deepEqual(seqs(events.message), [1]);
    assert.deepEqual(client.pending, []);
  });

  it("keeps at most maxInFlight messages unanswered", () => {
    const { client, join } = setup({ maxInFlight: 2 });
    client.connect();
    const ws = join();
    for (const t of ["a", "b", "c", "d"]) client.send(t);
    assert.deepEqual(chatFrames(ws).map((f) => f.text), ["a", "b"]);
    ws.receive({ type: "ack", nonce: "n1", seq: 1 });
    assert.deepEqual(chatFrames(ws).map((f) => f.text), ["a", "b", "c"]);
  });

  it("refuses empty and too long texts at once", () => {
    const { client } = setup({ maxText: 5 });
    assert.throws(() => client.send("   "), RangeError);
    assert.throws(() => client.send("123456"), RangeError);
    client.send("12345");
    client.send("🙂🙂🙂🙂🙂"); // code points, not UTF-16 units
    assert.equal(client.pending.length, 2);
  });

  it("persists the outbox, last seq, epoch and name, and a new client picks them up", () => {
    const storage = new MemoryStorage();
    const a = setup({ storage, storageKey: KEY, name: undefined, keepMessages: 2 });
    a.client.connect();
    const ws = a.join({ user: "guest-0001", seq: 3, history: [1, 2, 3].map((s) => msg(s, "bo", `m${s}`)) });
    ws.drop(1006);
    const queued = a.client.send("typed offline");
    const saved = storage.json(KEY);
    assert.deepEqual([saved.epoch, saved.lastSeq, saved.user], [EPOCH, 3, "guest-0001"]);
    assert.deepEqual(saved.outbox.map((e: any) => [e.nonce, e.text]), [[queued.nonce, "typed offline"]]);
    assert.deepEqual(saved.messages.map((m: any) => m.seq), [2, 3]);
    a.client.close();

    // A reload: a new client with the same storage.
    const b = setup({ storage, storageKey: KEY, name: undefined, keepMessages: 2 });
    assert.deepEqual(b.client.pending.map((e) => [e.nonce, e.text, e.state]), [[queued.nonce, "typed offline", "queued"]]);
    assert.deepEqual([b.client.epoch, b.client.lastSeq, b.client.user], [EPOCH, 3, "guest-0001"]);
    assert.deepEqual(b.client.messages.map((m) => m.text), ["m2", "m3"]);
    b.client.connect();
    const q = b.last().query();
    assert.deepEqual([q.get("name"), q.get("since"), q.get("epoch")], ["guest-0001", "3", EPOCH]);
    const ws2 = b.join({ user: "guest-0001", seq: 3 });
    assert.deepEqual(chatFrames(ws2), [{ text: "typed offline", nonce: queued.nonce }], "same nonce after the reload");
    ws2.receive(msg(4, "guest-0001", "typed offline", queued.nonce));
    ws2.receive({ type: "ack", nonce: queued.nonce, seq: 4 });
    assert.deepEqual(storage.json(KEY).outbox, []);
    assert.equal(storage.json(KEY).lastSeq, 4);
    assert.deepEqual(b.events.message!.map((m) => [m.seq, m.mine]), [[4, true]]);
  });

  it("keeps another tab's queued messages in the shared storage", () => {
    const storage = new MemoryStorage();
    const tab1 = setup({ storage, storageKey: KEY, nonce: () => "tab1-a" });
    const tab2 = setup({ storage, storageKey: KEY, nonce: () => "tab2-a" });
    tab1.client.send("from tab 1");
    tab2.client.send("from tab 2");
    assert.deepEqual(storage.json(KEY).outbox.map((e: any) => e.nonce).sort(), ["tab1-a", "tab2-a"]);
    // Once tab 1's message is acked, only tab 2's is left.
    tab1.client.connect();
    const ws = tab1.join();
    tab1.sockets[0]!.receive({ type: "ack", nonce: "tab1-a", seq: 1 });
    assert.deepEqual(chatFrames(ws).map((f) => f.nonce), ["tab1-a"]);
    assert.deepEqual(storage.json(KEY).outbox.map((e: any) => e.nonce), ["tab2-a"]);
  });

  it("survives a storage that throws", () => {
    const broken: StorageLike = {
      getItem: () => { throw new Error("SecurityError"); },
      setItem: () => { throw new Error("QuotaExceededError"); },
      removeItem: () => {},
    };
    const { client, join } = setup({ storage: broken });
    client.connect();
    const ws = join();
    client.send("still works");
    assert.equal(chatFrames(ws).length, 1);
  });
});

describe("ChatClient: server errors", () => {
  it("unavailable keeps the message and sends it again later with the same nonce", async () => {
    const { client, join, clock, events } = setup({ retry: { unavailableMs: 1_000 } }, { random: () => 1 });
    client.connect();
    const ws = join();
    const sent = client.send("hold on");
    ws.receive({ type: "error", code: "unavailable", message: "storage is down" });
    assert.deepEqual(client.pending.map((e) => e.state), ["queued"]);
    const err = events.error!.at(-1)!;
    assert.deepEqual([err.code, err.nonce, err.willRetry, err.retryInMs], ["unavailable", sent.nonce, true, 1_000]);
    const later = client.send("queued behind it");
    assert.equal(chatFrames(ws).length, 1, "paused: nothing sent during the retry delay");
    clock.advance(1_000);
    assert.deepEqual(chatFrames(ws), [
      { text: "hold on", nonce: sent.nonce },
      { text: "hold on", nonce: sent.nonce },
      { text: "queued behind it", nonce: later.nonce },
    ]);
    ws.receive({ type: "error", code: "unavailable", message: "still down" });
    assert.equal(events.error!.at(-1)!.retryInMs, 2_000, "slower each time");
    ws.receive({ type: "ack", nonce: later.nonce, seq: 1 });
    clock.advance(2_000);
    assert.equal(chatFrames(ws).length, 4, "sent a third time");
    ws.receive({ type: "ack", nonce: sent.nonce, seq: 2 });
    assert.equal(await sent.acked, 2);
    assert.deepEqual(client.pending, []);
  });

  it("rate_limited keeps the message and waits longer than unavailable", () => {
    const { client, join, events } = setup({}, { random: () => 1 });
    client.connect();
    const ws = join();
    client.send("spam?");
    ws.receive({ type: "error", code: "rate_limited", message: "slow down" });
    assert.equal(client.pending.length, 1);
    assert.equal(events.error!.at(-1)!.retryInMs, 2_000);
  });

  it("bad_request and payload_too_large drop the message and report it", async () => {
    const { client, join, events } = setup();
    client.connect();
    const ws = join();
    const bad = client.send("bad");
    const big = client.send("big");
    const fine = client.send("fine");
    ws.receive({ type: "error", code: "bad_request", message: "nope" });
    ws.receive({ type: "error", code: "payload_too_large", message: "too long" });
    ws.receive({ type: "ack", nonce: fine.nonce, seq: 1 });
    await assert.rejects(bad.acked, (err: unknown) => err instanceof ChatClientError && err.code === "bad_request" && err.nonce === bad.nonce);
    await assert.rejects(big.acked, (err: unknown) => err instanceof ChatClientError && err.code === "payload_too_large");
    assert.equal(await fine.acked, 1);
    assert.deepEqual(events.error!.map((e) => [e.code, e.text, e.willRetry]), [["bad_request", "bad", false], ["payload_too_large", "big", false]]);
    assert.deepEqual(client.pending, []);
  });

  it("matches errors to frames in order: a rate-limited ping is not a message", () => {
    const { client, join, clock } = setup({ pingIntervalMs: 1_000 });
    client.connect();
    const ws = join();
    clock.advance(1_000); // a ping goes out first
    const m = client.send("after the ping");
    ws.receive({ type: "error", code: "rate_limited", message: "slow down" }); // the ping's answer
    assert.deepEqual(client.pending.map((e) => e.state), ["sending"]);
    ws.receive({ type: "error", code: "bad_request", message: "nope" }); // the message's
    assert.deepEqual(client.pending, []);
    void m.acked.catch(() => {});
  });

  it("an error carrying a nonce is matched by it", () => {
    const { client, join } = setup();
    client.connect();
    const ws = join();
    client.send("first");
    const second = client.send("second");
    ws.receive({ type: "error", code: "bad_request", message: "nope", nonce: second.nonce });
    assert.deepEqual(client.pending.map((e) => e.text), ["first"]);
  });

  it("unauthorized and unknown codes are never pinned on a message", () => {
    const { client, join, events } = setup();
    client.connect();
    const ws = join();
    client.send("mine");
    ws.receive({ type: "error", code: "unauthorized", message: "token expired" });
    ws.receive({ type: "error", code: "teapot", message: "?" });
    assert.deepEqual(client.pending.map((e) => e.state), ["sending"]);
    assert.deepEqual(events.error!.map((e) => [e.code, e.nonce]), [["unauthorized", undefined], ["teapot", undefined]]);
  });

  it("authenticate() sends a token and settles on auth_ok or unauthorized, whatever came between", async () => {
    const { client, join } = setup();
    await assert.rejects(client.authenticate("early"), (e: unknown) => e instanceof ChatClientError && e.code === "not_connected");
    client.connect();
    const ws = join();
    const ok = client.authenticate("t1");
    const m = client.send("between");
    assert.deepEqual(ws.frames().map((f) => f.type), ["auth", "message"]);
    assert.equal(ws.frames("auth")[0]!.token, "t1");
    ws.receive({ type: "ack", nonce: m.nonce, seq: 1 }); // auth answers may come after later frames' answers
    ws.receive({ type: "auth_ok", exp: 1_900_000_000 });
    assert.equal(await ok, 1_900_000_000);
    const bad = client.authenticate("t2");
    ws.receive({ type: "error", code: "unauthorized", message: "bad token" });
    await assert.rejects(bad, (e: unknown) => e instanceof ChatClientError && e.code === "unauthorized");
    const cut = client.authenticate("t3");
    ws.drop(1006);
    await assert.rejects(cut, (e: unknown) => e instanceof ChatClientError && e.code === "closed");
  });

  it("an error with nothing in flight is only reported", () => {
    const { client, join, events } = setup();
    client.connect();
    const ws = join();
    ws.receive({ type: "error", code: "bad_request", message: "Cannot accept frame: not valid JSON" });
    assert.deepEqual(events.error!.map((e) => [e.code, e.willRetry, e.nonce]), [["bad_request", false, undefined]]);
  });

  it("close 1009 drops the largest message in flight instead of sending it forever", () => {
    const { client, join } = setup();
    client.connect();
    const ws = join();
    client.send("small");
    client.send("x".repeat(3000));
    ws.drop(1009, "frame too big");
    assert.deepEqual(client.pending.map((e) => e.text), ["small"]);
  });
});
