// The black-box conformance suite of wire contract v1, run against a real server child process.
// It only speaks HTTP and WebSocket to a base URL; runtime differences are option flags, never copies.

import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import WebSocket from "ws";
import type { RunningChild } from "../_helpers/server.ts";
import { connect, type Frame, type TestClient } from "../_helpers/ws-client.ts";
import { rawGet, rawRequest, UPGRADE_HEADERS } from "../_helpers/raw-http.ts";
import { scanPage } from "./page-scan.ts";

export interface SuiteOptions {
  /** PRESENCE_GRACE_S of the main server (`getServer`), in milliseconds; keep it short (e.g. 300). */
  graceMs: number;
  /** A server of the same runtime with every setting at its default (grace 3 s, replay 10, 64 KiB frames). */
  getDefaultServer: () => RunningChild;
  /** Starts one more server of the same runtime with `env` (the suite stops it). */
  start: (env?: Record<string, string>) => Promise<RunningChild>;
  /**
   * Whether the body of a refused WebSocket upgrade reaches the client. On Node the `ws`
   * upgrade path answers a refused upgrade with an empty body; then only the status is checked.
   */
  rejectedUpgradeHasBody: boolean;
}

/** Defaults of the contract. */
const MAX_TEXT = 4096;
const MAX_FRAME_BYTES = 65536;
const DEFAULT_GRACE_MS = 3000;
const DEFAULT_REPLAY = 10;

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/;
const GUEST = /^guest-[0-9a-f]{4}$/;
/** Timer slack: a server timer may fire a few ms "early" as seen from the client's clock. */
const SLACK_MS = 25;

type Pred = (f: Frame) => boolean;
const isType = (type: string): Pred => (f) => f.type === type;
const isText = (text: string): Pred => (f) => f.type === "message" && f.text === text;
const isAnnounce = (event: "join" | "leave", user?: string): Pred => (f) =>
  f.type === "announce" && f.event === event && (user === undefined || f.user === user);
const isChatOrAnnounce: Pred = (f) => f.type === "message" || f.type === "announce";

let counter = 0;
/** A fresh name valid as room and user name, unique in this process. */
function uniq(prefix: string): string {
  counter++;
  return `${prefix}-${counter}-${Math.random().toString(16).slice(2, 6)}`;
}

function dump(c: TestClient, from = 0): string {
  const s = JSON.stringify(c.frames.slice(from));
  return s.length > 1500 ? `${s.slice(0, 1500)}...` : s;
}

/** The first frame at index >= `from` matching `pred`, waiting for it (never consumes frames). */
function waitFor(
  c: TestClient,
  pred: Pred,
  what: string,
  from = 0,
  timeoutMs = 3000,
): Promise<{ frame: Frame; index: number }> {
  return new Promise((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    function cleanup() {
      if (timer) clearTimeout(timer);
      c.ws.off("message", check);
      c.ws.off("close", onClose);
    }
    function check(): boolean {
      for (let i = from; i < c.frames.length; i++) {
        const frame = c.frames[i]!;
        if (pred(frame)) {
          cleanup();
          resolve({ frame, index: i });
          return true;
        }
      }
      return false;
    }
    function onClose() {
      if (!check()) {
        cleanup();
        reject(new Error(`socket closed before ${what}; frames since ${from}: ${dump(c, from)}`));
      }
    }
    if (check()) return;
    if (c.ws.readyState === WebSocket.CLOSED) return onClose();
    timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no ${what} within ${timeoutMs} ms; frames since ${from}: ${dump(c, from)}`));
    }, timeoutMs);
    c.ws.on("message", check);
    c.ws.once("close", onClose);
  });
}

/** Waits `ms`, then returns the frames matching `pred` that arrived at index >= `from`. */
async function collectFor(c: TestClient, ms: number, pred: Pred, from: number): Promise<Frame[]> {
  await new Promise((r) => setTimeout(r, ms));
  return c.frames.slice(from).filter(pred);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
    }),
  ]);
}

/** Exactly these keys (plus any of `optional`). */
function assertKeys(frame: Frame, required: string[], optional: string[] = []): void {
  const keys = Object.keys(frame).sort();
  for (const k of required) assert.ok(keys.includes(k), `frame lacks "${k}": ${JSON.stringify(frame)}`);
  const extra = keys.filter((k) => !required.includes(k) && !optional.includes(k));
  assert.deepEqual(extra, [], `frame has fields outside the contract: ${JSON.stringify(frame)}`);
}

function assertDate(date: unknown): void {
  assert.equal(typeof date, "string", `date must be a string, got ${JSON.stringify(date)}`);
  assert.match(date as string, ISO_UTC, "date must be ISO 8601 UTC (…Z)");
  const t = Date.parse(date as string);
  assert.ok(Number.isFinite(t), `date must parse: ${String(date)}`);
  assert.ok(Math.abs(t - Date.now()) < 120_000, `date must be about now: ${String(date)}`);
}

function assertChatMessage(f: Frame, want: { room: string; user: string; text?: string; seq?: number }): void {
  assert.equal(f.type, "message");
  assertKeys(f, ["type", "room", "seq", "user", "date", "text"], ["nonce"]);
  assert.equal(f.room, want.room, "message.room");
  assert.equal(f.user, want.user, "message.user is the server-known name of the sender");
  if (want.text !== undefined) assert.equal(f.text, want.text, "message.text");
  assert.ok(Number.isSafeInteger(f.seq) && (f.seq as number) >= 1, `message.seq must be an integer >= 1: ${JSON.stringify(f)}`);
  if (want.seq !== undefined) assert.equal(f.seq, want.seq, "message.seq");
  assertDate(f.date);
}

function assertAnnounce(f: Frame, event: "join" | "leave", room: string, user: string): void {
  assertKeys(f, ["type", "event", "room", "user", "date", "text"]);
  assert.equal(f.type, "announce");
  assert.equal(f.event, event);
  assert.equal(f.room, room);
  assert.equal(f.user, user);
  assert.equal(f.text, event === "join" ? `${user} connected` : `${user} disconnected`);
  assertDate(f.date);
}

function assertWelcome(f: Frame, room: string, user?: string): void {
  assert.equal(f.type, "welcome", `first frame must be welcome: ${JSON.stringify(f)}`);
  assertKeys(f, ["type", "room", "user", "epoch", "seq", "online"]);
  assert.equal(f.room, room, "welcome.room");
  if (user !== undefined) assert.equal(f.user, user, "welcome.user");
  assert.equal(typeof f.epoch, "string", "welcome.epoch is a string");
  assert.ok((f.epoch as string).length > 0, "welcome.epoch is not empty");
  assert.ok(Number.isSafeInteger(f.seq) && (f.seq as number) >= 0, "welcome.seq is an integer >= 0");
  assert.ok(Array.isArray(f.online), "welcome.online is an array");
  const online = f.online as unknown[];
  assert.ok(online.every((u) => typeof u === "string"), "welcome.online lists user names");
  assert.equal(online.filter((u) => u === f.user).length, 1, `welcome.online lists the user exactly once: ${JSON.stringify(f)}`);
}

function assertHistory(f: Frame, room: string): Frame[] {
  assert.equal(f.type, "history", `second frame must be history: ${JSON.stringify(f)}`);
  assertKeys(f, ["type", "room", "messages", "complete"]);
  assert.equal(f.room, room, "history.room");
  assert.equal(typeof f.complete, "boolean", "history.complete is a boolean");
  assert.ok(Array.isArray(f.messages), "history.messages is an array");
  return f.messages as Frame[];
}

/** A readable plain-text error body: non-empty, short, printable, not HTML. */
function assertReadableBody(body: string, context: string): void {
  const t = body.trim();
  assert.ok(t.length > 0, `${context}: body must explain the error, got an empty body`);
  assert.ok(t.length <= 1000, `${context}: body is too long to be a message (${t.length} chars)`);
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(t, /[\u0000-\u0008\u000b-\u001f\u007f]/, `${context}: body has control characters`);
  assert.doesNotMatch(t, /<html|<!doctype/i, `${context}: body must be text, not a page`);
}

async function assertPlainError(url: string, status: number): Promise<void> {
  const res = await fetch(url);
  const body = await res.text();
  assert.equal(res.status, status, `GET ${url} -> ${res.status} ${JSON.stringify(body)}, expected ${status}`);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain/i, `GET ${url}: Content-Type must be text/plain`);
  assertReadableBody(body, `GET ${url}`);
}

/** Runs every check, then fails once listing every failure (so one run shows all bad cases). */
async function allOf(checks: (() => Promise<void>)[]): Promise<void> {
  const failures: string[] = [];
  for (const check of checks) {
    try {
      await check();
    } catch (err) {
      failures.push((err as Error).message.split("\n")[0] ?? String(err));
    }
  }
  assert.deepEqual(failures, [], `${failures.length} of ${checks.length} cases failed`);
}

export function conformanceSuite(getServer: () => RunningChild, opts: SuiteOptions): void {
  const live = new Set<TestClient>();
  /** Every frame any client of this suite received, for the "no IP address" check. */
  const everyFrame: Frame[] = [];

  async function open(path: string, server: RunningChild = getServer()): Promise<TestClient> {
    const c = await connect(server.wsUrl + path);
    live.add(c);
    return c;
  }

  async function closeClient(c: TestClient): Promise<void> {
    if (live.delete(c)) everyFrame.push(...c.frames);
    await withTimeout(c.close(), 2000, "close handshake").catch(() => c.ws.terminate());
  }

  /** Joins `room` as `name` and waits for welcome and history; returns them. */
  async function join(room: string, name?: string, server?: RunningChild) {
    const q = name === undefined ? "" : `?name=${encodeURIComponent(name)}`;
    const c = await open(`/ws/${room}${q}`, server);
    const welcome = (await waitFor(c, isType("welcome"), "welcome")).frame;
    const history = (await waitFor(c, isType("history"), "history")).frame;
    return { c, welcome, history, user: welcome.user as string };
  }

  /** Opens `count` users in a fresh room, each having seen every later user's join (so the room is settled). */
  async function freshRoom(count: number, server?: RunningChild) {
    const room = uniq("room");
    const users: { c: TestClient; user: string }[] = [];
    for (let i = 0; i < count; i++) {
      const name = uniq(`u${i}`);
      const { c } = await join(room, name, server);
      for (const u of [...users, { c, user: name }]) await waitFor(u.c, isAnnounce("join", name), `join of ${name}`);
      users.push({ c, user: name });
    }
    return { room, users };
  }

  /** Sends `text` from `c` and waits for its echo. */
  async function say(c: TestClient, text: string): Promise<Frame> {
    const from = c.frames.length;
    c.send({ type: "message", text });
    return (await waitFor(c, isText(text), `echo of "${text.slice(0, 40)}"`, from)).frame;
  }

  afterEach(async () => {
    await Promise.all([...live].map((c) => closeClient(c)));
  });

  describe("HTTP", () => {
    it("GET /healthz -> 200 JSON with status ok", async () => {
      const res = await fetch(`${getServer().url}/healthz`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /^application\/json/i);
      const body = await res.json() as Record<string, unknown>;
      assert.equal(body.status, "ok");
    });

    it("GET / is text/html and the page and every asset it links are local with the right types", async () => {
      const res = await fetch(`${getServer().url}/`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /^text\/html/i);
      const html = await res.text();
      assert.match(html, /<html|<!doctype html|<title/i, "GET / returns a page");
      const assets = await scanPage(`${getServer().url}/`);
      const problems: string[] = [];
      for (const a of assets) {
        const path = new URL(a.url).pathname + new URL(a.url).search;
        if (a.status !== 200) problems.push(`${path}: HTTP ${a.status}`);
        if (a.typeProblem) problems.push(`${path}: ${a.typeProblem}`);
        for (const ext of a.external) problems.push(`${path}: external reference ${ext}`);
      }
      assert.deepEqual(problems, [], `page assets checked: ${assets.map((a) => new URL(a.url).pathname).join(", ")}`);
    });

    it("unknown path -> 404 with a text body", async () => {
      await allOf(["/nope", "/nope/deeper.js", "/wsx", "/healthz/x"].map((path) => () =>
        assertPlainError(`${getServer().url}${path}`, 404)
      ));
    });

    it("plain GET (no Upgrade) on /ws and /ws/:room -> 426 with a text body", async () => {
      await allOf(["/ws", "/ws/some-room", "/ws/lobby?name=bob"].map((path) => () =>
        assertPlainError(`${getServer().url}${path}`, 426)
      ));
    });

    const badRooms: [string, string][] = [
      ["uppercase", "Lobby"],
      ["65 characters", "a".repeat(65)],
      ["a dot", "a.b"],
      ["a space", "a%20b"],
      ["a slash", "a/b"],
      ["non-ASCII", "caf%C3%A9"],
      ["empty (/ws/)", ""],
    ];
    const badNames: [string, string][] = [
      ["empty", ""],
      ["empty after trim", "%20%20%09"],
      ["33 characters", "n".repeat(33)],
      ["a control character (%07)", "a%07b"],
      ["a newline", "a%0Ab"],
      ["DEL (%7F)", "a%7Fb"],
    ];

    it("plain GET with a bad room name -> 400 with a readable body", async () => {
      await allOf(badRooms.map(([, room]) => () => assertPlainError(`${getServer().url}/ws/${room}`, 400)));
    });

    it("plain GET with a bad name -> 400 with a readable body", async () => {
      await allOf(badNames.flatMap(([, name]) => [
        () => assertPlainError(`${getServer().url}/ws/lobby?name=${name}`, 400),
        () => assertPlainError(`${getServer().url}/ws?name=${name}`, 400),
      ]));
    });

    async function assertUpgradeRefused(path: string, status: number): Promise<void> {
      const err = await open(path).then(
        async (c) => {
          await closeClient(c);
          return undefined;
        },
        (e: { status?: number; body?: string }) => e,
      );
      assert.ok(err, `upgrade to ${path} was accepted, expected HTTP ${status}`);
      assert.equal(err.status, status, `upgrade to ${path}: ${String(err)}`);
      if (opts.rejectedUpgradeHasBody) assertReadableBody(err.body ?? "", `upgrade to ${path}`);
    }

    for (const [label, room] of badRooms) {
      it(`upgrade with a bad room name (${label}) -> 400`, async () => {
        await assertUpgradeRefused(`/ws/${room}`, 400);
      });
    }

    for (const [label, name] of badNames) {
      it(`upgrade with a bad name (${label}) -> 400`, async () => {
        await assertUpgradeRefused(`/ws/lobby?name=${name}`, 400);
        await assertUpgradeRefused(`/ws?name=${name}`, 400);
      });
    }

    it("upgrade on an unknown path -> 404", async () => {
      await assertUpgradeRefused("/nope", 404);
    });

    it("valid edge cases are accepted: 64-character room, 32-character name", async () => {
      const room = `r${uniq("edge")}`.padEnd(64, "_");
      const name = "N".repeat(28) + uniq("").slice(-4);
      assert.equal(room.length, 64);
      assert.equal(name.length, 32);
      const { welcome } = await join(room, name);
      assertWelcome(welcome, room, name);
    });
  });

  describe("connecting", () => {
    it("no name -> a generated guest-xxxx name; /ws is room lobby", async () => {
      const c = await open("/ws");
      const welcome = (await waitFor(c, isType("welcome"), "welcome")).frame;
      assertWelcome(welcome, "lobby");
      assert.match(welcome.user as string, GUEST);
      const other = await join("lobby");
      assert.match(other.user, GUEST);
      assert.notEqual(other.user, welcome.user, "two guests get two names");
      assertWelcome(other.welcome, "lobby");
      assert.ok((other.welcome.online as string[]).includes(welcome.user as string), "the first guest is online");
    });

    it("the name is trimmed", async () => {
      const name = uniq("alice");
      const { c, welcome } = await join(uniq("trim"), `  ${name}\t `);
      assert.equal(welcome.user, name);
      const echo = await say(c, "hi");
      assert.equal(echo.user, name);
    });

    it("welcome then history then the join announce, with every field", async () => {
      const room = uniq("order");
      const alice = uniq("alice");
      const a = await open(`/ws/${room}?name=${alice}`);
      await waitFor(a, isAnnounce("join", alice), "own join announce");
      assert.equal(a.frames.length, 3, `exactly welcome, history, join: ${dump(a)}`);
      const [w, h, j] = a.frames as [Frame, Frame, Frame];
      assertWelcome(w, room, alice);
      assert.equal(w.seq, 0, "a new room's seq is 0");
      assert.deepEqual(w.online, [alice]);
      assert.deepEqual(assertHistory(h, room), []);
      assert.equal(h.complete, true, "an empty new room's history is complete");
      assertAnnounce(j, "join", room, alice);

      const bob = uniq("bob");
      const aMark = a.frames.length;
      const b = await open(`/ws/${room}?name=${bob}`);
      await waitFor(b, isAnnounce("join", bob), "own join announce");
      const [bw, bh, bj] = b.frames as [Frame, Frame, Frame];
      assertWelcome(bw, room, bob);
      assert.equal(bw.epoch, w.epoch);
      assert.deepEqual([...(bw.online as string[])].sort(), [alice, bob].sort());
      assertHistory(bh, room);
      assertAnnounce(bj, "join", room, bob);
      const seen = await waitFor(a, isAnnounce("join", bob), "bob's join at alice", aMark);
      assertAnnounce(seen.frame, "join", room, bob);
    });

    it("since= on the upgrade is accepted (resume), and a malformed since or epoch is refused with 400", async () => {
      const room = uniq("since");
      for (const since of ["0", "5"]) {
        const c = await open(`/ws/${room}?name=${uniq("s")}&since=${since}`);
        assertWelcome((await waitFor(c, isType("welcome"), "welcome")).frame, room);
        assertHistory((await waitFor(c, isType("history"), "history")).frame, room);
        await closeClient(c);
      }
      for (const query of ["since=abc", "since=-1", "since=1.5", "since=0&epoch=%20bad%20"]) {
        const r = await rawRequest(getServer().port, rawGet(`/ws/${room}?${query}`, UPGRADE_HEADERS), 800);
        assert.equal(r.status, 400, `${query}: ${r.statusLine}`);
        assert.match(r.rest.toString("utf8"), /^Bad (since|epoch)/, query);
      }
    });

    it("epoch is stable for a room across connections and differs between rooms", async () => {
      const room = uniq("epoch");
      const first = await join(room, uniq("e"));
      await closeClient(first.c);
      const second = await join(room, uniq("e"));
      assert.equal(second.welcome.epoch, first.welcome.epoch, "same room, same epoch");
      const other = await join(uniq("epoch"), uniq("e"));
      assert.notEqual(other.welcome.epoch, first.welcome.epoch, "different rooms, different epochs");
      const lobby1 = await join("lobby");
      const c = await open("/ws");
      const lobby2 = (await waitFor(c, isType("welcome"), "welcome")).frame;
      assert.equal(lobby2.epoch, lobby1.welcome.epoch, "/ws and /ws/lobby are the same room");
    });

    it("welcome.seq equals the last message's seq", async () => {
      const { room, users } = await freshRoom(1);
      const a = users[0]!.c;
      let last: Frame | undefined;
      for (let i = 1; i <= 3; i++) last = await say(a, `m${i}`);
      const { welcome, history } = await join(room, uniq("late"));
      assert.equal(welcome.seq, last!.seq);
      assert.equal(welcome.seq, 3);
      const messages = history.messages as Frame[];
      assert.equal(messages.at(-1)?.seq, welcome.seq, "the history ends at welcome.seq");
    });
  });

  describe("messages", () => {
    it("broadcast to everyone including the sender, stamped by the server, seq 1, 2, 3...", async () => {
      const { room, users } = await freshRoom(3);
      const [a, b] = users as [typeof users[0], typeof users[0], typeof users[0]];
      const marks = users.map((u) => u.c.frames.length);
      for (const text of ["one", "two", "three"]) a.c.send({ type: "message", text });
      // Frames of different clients may interleave: bob speaks once alice's last one came back.
      await waitFor(a.c, isText("three"), "echo of three", marks[0]);
      b.c.send({ type: "message", text: "four" });
      const expected = [
        { text: "one", seq: 1, user: a.user },
        { text: "two", seq: 2, user: a.user },
        { text: "three", seq: 3, user: a.user },
        { text: "four", seq: 4, user: b.user },
      ];
      for (const [i, u] of users.entries()) {
        await waitFor(u.c, isText("four"), "the 4th message", marks[i]);
        const got = u.c.frames.slice(marks[i]).filter(isType("message"));
        assert.equal(got.length, 4, `${u.user} got ${dump(u.c, marks[i])}`);
        for (const [k, want] of expected.entries()) assertChatMessage(got[k]!, { room, ...want });
      }
    });

    it("a client-supplied user field is rejected or ignored, never used", async () => {
      const { users } = await freshRoom(2);
      const [a, b] = users as [typeof users[0], typeof users[0]];
      const aMark = a.c.frames.length;
      const bMark = b.c.frames.length;
      a.c.send({ type: "message", text: "spoof", user: "mallory" });
      const reply = await waitFor(a.c, (f) => f.type === "error" || isText("spoof")(f), "error or echo", aMark);
      if (reply.frame.type === "message") assert.equal(reply.frame.user, a.user);
      await say(a.c, "marker");
      await waitFor(b.c, isText("marker"), "marker", bMark);
      const leaked = [...a.c.frames, ...b.c.frames].filter((f) => JSON.stringify(f).includes("mallory"));
      assert.deepEqual(leaked, [], "no frame carries the client-supplied user");
    });

    for (const nonce of ["n-1", 42] as const) {
      it(`ack carries the ${typeof nonce} nonce and the broadcast's seq`, async () => {
        const { room, users } = await freshRoom(2);
        const [a, b] = users as [typeof users[0], typeof users[0]];
        await say(a.c, "first");
        const aMark = a.c.frames.length;
        const bMark = b.c.frames.length;
        a.c.send({ type: "message", text: "with nonce", nonce });
        const ack = (await waitFor(a.c, isType("ack"), "ack", aMark)).frame;
        const echo = (await waitFor(a.c, isText("with nonce"), "echo", aMark)).frame;
        const seen = (await waitFor(b.c, isText("with nonce"), "broadcast", bMark)).frame;
        assertKeys(ack, ["type", "nonce", "seq"]);
        assert.deepEqual(ack.nonce, nonce, "ack.nonce is the nonce as sent (same JSON type)");
        assertChatMessage(echo, { room, user: a.user, text: "with nonce", seq: 2 });
        assert.equal(ack.seq, echo.seq, "ack.seq is the message's seq");
        assert.equal(seen.seq, echo.seq);
        if ("nonce" in echo) assert.deepEqual(echo.nonce, nonce, "message.nonce, when present, is the nonce as sent");
        assert.equal(a.c.frames.slice(aMark).filter(isType("ack")).length, 1, "one ack");
        assert.equal(b.c.frames.slice(bMark).filter(isType("ack")).length, 0, "acks go to the sender only");
      });
    }

    it("no ack when the message has no nonce", async () => {
      const { users } = await freshRoom(1);
      const a = users[0]!.c;
      const mark = a.frames.length;
      a.send({ type: "message", text: "no nonce" });
      a.send({ type: "ping" });
      await waitFor(a, isType("pong"), "pong", mark);
      await waitFor(a, isText("no nonce"), "echo", mark);
      assert.deepEqual(a.frames.slice(mark).filter(isType("ack")), []);
    });

    it("ping -> pong", async () => {
      const { users } = await freshRoom(1);
      const a = users[0]!.c;
      const mark = a.frames.length;
      a.send({ type: "ping" });
      const pong = await waitFor(a, isType("pong"), "pong", mark);
      assert.deepEqual(pong.frame, { type: "pong" });
      assert.equal(pong.index, mark, `pong is the only frame: ${dump(a, mark)}`);
    });

    it(`text of exactly ${MAX_TEXT} characters is accepted unchanged, ASCII and astral emoji`, async () => {
      const { room, users } = await freshRoom(2);
      const [a, b] = users as [typeof users[0], typeof users[0]];
      const bMark = b.c.frames.length;
      for (const [i, text] of ["x".repeat(MAX_TEXT), "\u{1F600}".repeat(MAX_TEXT)].entries()) {
        const echo = await say(a.c, text);
        assertChatMessage(echo, { room, user: a.user, text, seq: i + 1 });
      }
      await waitFor(b.c, isText("\u{1F600}".repeat(MAX_TEXT)), "emoji text", bMark);
      assert.deepEqual(a.c.frames.filter(isType("error")), [], "no error frame");
    });

    const tooLong = JSON.stringify({ type: "message", text: "y".repeat(MAX_TEXT + 1) });
    const badInputs: { label: string; data: string | Buffer; binary?: boolean; code: string }[] = [
      { label: "not JSON", data: "hello {", code: "bad_request" },
      { label: "a JSON array", data: '[{"type":"ping"}]', code: "bad_request" },
      { label: "JSON null", data: "null", code: "bad_request" },
      { label: "a JSON number", data: "42", code: "bad_request" },
      { label: "a JSON string", data: '"ping"', code: "bad_request" },
      { label: "an unknown type", data: '{"type":"shout","text":"bad"}', code: "bad_request" },
      { label: "a missing type", data: '{"text":"bad"}', code: "bad_request" },
      { label: "a non-string type", data: '{"type":7,"text":"bad"}', code: "bad_request" },
      { label: "text missing", data: '{"type":"message"}', code: "bad_request" },
      { label: "text a number", data: '{"type":"message","text":5}', code: "bad_request" },
      { label: "text empty", data: '{"type":"message","text":""}', code: "bad_request" },
      { label: "text whitespace only", data: '{"type":"message","text":"  \\n\\t "}', code: "bad_request" },
      { label: `text of ${MAX_TEXT + 1} characters`, data: tooLong, code: "payload_too_large" },
      {
        label: `text of ${MAX_TEXT + 1} emoji`,
        data: JSON.stringify({ type: "message", text: "\u{1F600}".repeat(MAX_TEXT + 1) }),
        code: "payload_too_large",
      },
      { label: "a binary frame", data: Buffer.from('{"type":"message","text":"bad"}'), binary: true, code: "bad_request" },
      { label: "a __proto__ key", data: '{"type":"message","text":"bad","__proto__":{"user":"admin"}}', code: "bad_request" },
      { label: "an extra unknown field", data: '{"type":"message","text":"bad","color":"red"}', code: "bad_request" },
      { label: "a nonce of the wrong type", data: '{"type":"message","text":"bad","nonce":{"x":1}}', code: "bad_request" },
    ];

    for (const bad of badInputs) {
      it(`bad input (${bad.label}) -> error ${bad.code}; connection stays usable; nothing broadcast`, async () => {
        const { room, users } = await freshRoom(2);
        const [a, b] = users as [typeof users[0], typeof users[0]];
        const aMark = a.c.frames.length;
        const bMark = b.c.frames.length;
        a.c.sendRaw(bad.data, bad.binary ?? false);
        const err = await waitFor(a.c, isType("error"), "error frame", aMark);
        assert.equal(err.index, aMark, `the error is the only reply: ${dump(a.c, aMark)}`);
        assertKeys(err.frame, ["type", "code", "message"]);
        assert.equal(err.frame.code, bad.code);
        assert.equal(typeof err.frame.message, "string");
        assert.ok((err.frame.message as string).trim().length > 0, "error.message is human text");
        // Still usable: ping, then a real message that takes seq 1 (the bad input took none).
        a.c.send({ type: "ping" });
        await waitFor(a.c, isType("pong"), "pong after the error", err.index + 1);
        a.c.send({ type: "message", text: "after" });
        const echo = (await waitFor(a.c, isText("after"), "echo after the error", err.index + 1)).frame;
        assertChatMessage(echo, { room, user: a.user, text: "after", seq: 1 });
        const seen = await waitFor(b.c, isText("after"), "broadcast after the error", bMark);
        assert.deepEqual(b.c.frames.slice(bMark, seen.index), [], `nothing reached the others before it: ${dump(b.c, bMark)}`);
        assert.equal(a.c.ws.readyState, WebSocket.OPEN);
      });
    }

    it(`a frame larger than MAX_FRAME_BYTES (default ${MAX_FRAME_BYTES}) closes the socket with 1009`, async () => {
      const server = opts.getDefaultServer();
      const { room, users } = await freshRoom(2, server);
      const [a, b] = users as [typeof users[0], typeof users[0]];
      const bMark = b.c.frames.length;
      const prefix = '{"type":"message","text":"';
      const frame = prefix + "z".repeat(MAX_FRAME_BYTES + 1 - prefix.length - 2) + '"}';
      assert.equal(Buffer.byteLength(frame), MAX_FRAME_BYTES + 1);
      a.c.sendRaw(frame);
      const closed = await withTimeout(a.c.closed, 3000, `close after a ${MAX_FRAME_BYTES + 1}-byte frame (frames: ${dump(a.c)})`);
      assert.equal(closed.code, 1009);
      await say(b.c, "still here");
      const got = b.c.frames.slice(bMark).filter(isType("message"));
      assert.equal(got.length, 1, `nothing of the big frame was broadcast: ${dump(b.c, bMark)}`);
      assertChatMessage(got[0]!, { room, user: b.user, text: "still here", seq: 1 });
    });

    it(`a frame of exactly MAX_FRAME_BYTES is not closed (too long text -> payload_too_large)`, async () => {
      const server = opts.getDefaultServer();
      const { users } = await freshRoom(1, server);
      const a = users[0]!.c;
      const prefix = '{"type":"message","text":"';
      const frame = prefix + "z".repeat(MAX_FRAME_BYTES - prefix.length - 2) + '"}';
      assert.equal(Buffer.byteLength(frame), MAX_FRAME_BYTES);
      const mark = a.frames.length;
      a.sendRaw(frame);
      const err = (await waitFor(a, isType("error"), "error frame", mark)).frame;
      assert.equal(err.code, "payload_too_large");
      await say(a, "ok");
    });

    it("rooms are kept apart", async () => {
      const r1 = await freshRoom(2);
      const r2 = await freshRoom(2);
      const marks = [...r1.users, ...r2.users].map((u) => u.c.frames.length);
      await say(r1.users[0]!.c, "only in room one");
      await say(r1.users[0]!.c, "again in room one");
      const echo = await say(r2.users[0]!.c, "only in room two");
      assertChatMessage(echo, { room: r2.room, user: r2.users[0]!.user, text: "only in room two", seq: 1 });
      await waitFor(r2.users[1]!.c, isText("only in room two"), "room two message", marks[3]);
      await waitFor(r1.users[1]!.c, isText("again in room one"), "room one message", marks[1]);
      for (const u of r2.users) {
        const leaked = u.c.frames.filter((f) => f.type === "message" && (f.room !== r2.room || String(f.text).includes("room one")));
        assert.deepEqual(leaked, [], `room two saw room one's messages`);
      }
      for (const u of r1.users) {
        assert.ok(!u.c.frames.some(isText("only in room two")), "room one saw room two's message");
      }
    });
  });

  describe("history", () => {
    it(`a newcomer receives the last ${DEFAULT_REPLAY} of 15 messages, oldest first (defaults)`, async () => {
      const server = opts.getDefaultServer();
      const { room, users } = await freshRoom(1, server);
      const a = users[0]!;
      for (let i = 1; i <= 15; i++) a.c.send({ type: "message", text: `h${i}` });
      await waitFor(a.c, isText("h15"), "the 15th echo");
      const { welcome, history } = await join(room, uniq("late"), server);
      assert.equal(welcome.seq, 15);
      const messages = assertHistory(history, room);
      assert.deepEqual(messages.map((m) => m.seq), [6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
      for (const m of messages) assertChatMessage(m, { room, user: a.user, text: `h${m.seq as number}` });
      assert.equal(history.complete, false, "older messages exist, so the history is not complete");
    });

    it("a short history is complete and replayed whole", async () => {
      const { room, users } = await freshRoom(1);
      await say(users[0]!.c, "only one");
      const { history } = await join(room, uniq("late"));
      const messages = assertHistory(history, room);
      assert.deepEqual(messages.map((m) => m.text), ["only one"]);
      assert.equal(history.complete, true);
    });

    it("HISTORY_REPLAY=3 -> a newcomer receives the last 3", async () => {
      const server = await opts.start({ HISTORY_REPLAY: "3", PRESENCE_GRACE_S: "0" });
      try {
        const { room, users } = await freshRoom(1, server);
        for (let i = 1; i <= 5; i++) users[0]!.c.send({ type: "message", text: `r${i}` });
        await waitFor(users[0]!.c, isText("r5"), "the 5th echo");
        const { welcome, history } = await join(room, uniq("late"), server);
        assert.equal(welcome.seq, 5);
        const messages = assertHistory(history, room);
        assert.deepEqual(messages.map((m) => [m.seq, m.text]), [[3, "r3"], [4, "r4"], [5, "r5"]]);
        assert.equal(history.complete, false);
      } finally {
        for (const c of [...live]) await closeClient(c);
        await server.stop();
      }
    });

    it("HISTORY_RETAIN=2 bounds what the room keeps", async () => {
      const server = await opts.start({ HISTORY_RETAIN: "2", PRESENCE_GRACE_S: "0" });
      try {
        const { room, users } = await freshRoom(1, server);
        for (let i = 1; i <= 5; i++) users[0]!.c.send({ type: "message", text: `k${i}` });
        await waitFor(users[0]!.c, isText("k5"), "the 5th echo");
        const { welcome, history } = await join(room, uniq("late"), server);
        assert.equal(welcome.seq, 5, "seq keeps counting past the retained window");
        const messages = assertHistory(history, room);
        assert.deepEqual(messages.map((m) => [m.seq, m.text]), [[4, "k4"], [5, "k5"]]);
        assert.equal(history.complete, false);
      } finally {
        for (const c of [...live]) await closeClient(c);
        await server.stop();
      }
    });
  });

  describe("presence", () => {
    it("two tabs of one user: one join, listed once, leave only after the last tab and the grace", async () => {
      const room = uniq("tabs");
      const bob = await join(room, uniq("bob"));
      await waitFor(bob.c, isAnnounce("join", bob.user), "bob's own join");
      const alice = uniq("alice");
      const bMark = bob.c.frames.length;
      const tab1 = await join(room, alice);
      await waitFor(tab1.c, isAnnounce("join", alice), "alice's own join");
      const tab2 = await join(room, alice);
      assert.deepEqual([...(tab2.welcome.online as string[])].sort(), [alice, bob.user].sort(), "listed once");
      // A marker from tab 2: any second join would have reached bob before it.
      await say(tab2.c, "tab two here");
      const marker = await waitFor(bob.c, isText("tab two here"), "marker", bMark);
      const joins = bob.c.frames.slice(bMark, marker.index).filter(isType("announce"));
      assert.equal(joins.length, 1, `exactly one announce for two tabs: ${JSON.stringify(joins)}`);
      assertAnnounce(joins[0]!, "join", room, alice);
      assert.deepEqual(tab2.c.frames.filter(isAnnounce("join", alice)), [], "the second tab gets no join of its own user");

      const bMark2 = bob.c.frames.length;
      await closeClient(tab1.c);
      const early = await collectFor(bob.c, opts.graceMs + 300, isType("announce"), bMark2);
      assert.deepEqual(early, [], "closing one of two tabs announces nothing");
      const probe = await join(room, uniq("probe"));
      assert.ok((probe.welcome.online as string[]).includes(alice), "alice is still online with one tab");
      await waitFor(bob.c, isAnnounce("join", probe.user), "the probe's join", bMark2);

      const bMark3 = bob.c.frames.length;
      const closedAt = Date.now();
      await closeClient(tab2.c);
      const leave = await waitFor(bob.c, isAnnounce("leave", alice), "alice's leave", bMark3, opts.graceMs + 3000);
      const elapsed = Date.now() - closedAt;
      assert.ok(elapsed >= opts.graceMs - SLACK_MS, `leave came ${elapsed} ms after the close, before the ${opts.graceMs} ms grace`);
      assertAnnounce(leave.frame, "leave", room, alice);
      assert.deepEqual(bob.c.frames.slice(bMark3).filter(isType("announce")), [leave.frame], "a single leave");
      const after = await join(room, uniq("after"));
      assert.ok(!(after.welcome.online as string[]).includes(alice), "alice is no longer online");
    });

    it("reconnecting within the grace: no leave and no second join", async () => {
      const room = uniq("reconnect");
      const bob = await join(room, uniq("bob"));
      const alice = uniq("alice");
      const first = await join(room, alice);
      await waitFor(bob.c, isAnnounce("join", alice), "alice's join");
      const bMark = bob.c.frames.length;
      const t0 = Date.now();
      await closeClient(first.c);
      const again = await join(room, alice);
      const took = Date.now() - t0;
      assert.ok(took < opts.graceMs, `the reconnect took ${took} ms, not within the ${opts.graceMs} ms grace; cannot judge`);
      assert.deepEqual([...(again.welcome.online as string[])].sort(), [bob.user, alice].sort(), "online lists alice once");
      const announces = await collectFor(bob.c, opts.graceMs + 300, isType("announce"), bMark);
      assert.deepEqual(announces, [], "no leave and no second join");
      assert.deepEqual(again.c.frames.filter(isType("announce")), [], "the reconnected tab gets no join of its own user");
    });

    it("the leave of a single tab comes after the grace, with its text", async () => {
      const room = uniq("leave");
      const bob = await join(room, uniq("bob"));
      const alice = uniq("alice");
      const a = await join(room, alice);
      await waitFor(bob.c, isAnnounce("join", alice), "alice's join");
      const bMark = bob.c.frames.length;
      const closedAt = Date.now();
      await closeClient(a.c);
      const leave = (await waitFor(bob.c, isAnnounce("leave", alice), "leave", bMark, opts.graceMs + 3000)).frame;
      const elapsed = Date.now() - closedAt;
      assert.ok(elapsed >= opts.graceMs - SLACK_MS, `leave after ${elapsed} ms < grace ${opts.graceMs} ms`);
      assertAnnounce(leave, "leave", room, alice);
      assert.equal(leave.text, `${alice} disconnected`);
    });

    it(`default grace (${DEFAULT_GRACE_MS / 1000} s): no leave before it, the leave soon after`, async () => {
      const server = opts.getDefaultServer();
      const room = uniq("grace");
      const bob = await join(room, uniq("bob"), server);
      const alice = uniq("alice");
      const a = await join(room, alice, server);
      await waitFor(bob.c, isAnnounce("join", alice), "alice's join");
      const bMark = bob.c.frames.length;
      const closedAt = Date.now();
      await closeClient(a.c);
      const early = await collectFor(bob.c, DEFAULT_GRACE_MS - 400, isType("announce"), bMark);
      assert.deepEqual(early, [], "no leave within the default grace");
      const leave = (await waitFor(bob.c, isAnnounce("leave", alice), "leave", bMark, 2500)).frame;
      const elapsed = Date.now() - closedAt;
      assert.ok(elapsed >= DEFAULT_GRACE_MS - SLACK_MS, `leave after ${elapsed} ms`);
      assertAnnounce(leave, "leave", room, alice);
    });
  });

  describe("privacy and shutdown", () => {
    it("no frame carries the client's IP address", async () => {
      const { users } = await freshRoom(2);
      await say(users[0]!.c, "where am I?");
      users[1]!.c.send({ type: "ping" });
      users[1]!.c.sendRaw("not json");
      await waitFor(users[1]!.c, isType("error"), "error");
      await closeClient(users[0]!.c);
      await waitFor(users[1]!.c, isAnnounce("leave", users[0]!.user), "leave", 0, opts.graceMs + 3000);
      const all = [...everyFrame, ...users[1]!.c.frames];
      assert.ok(all.length > 50, "frames of the whole suite are checked");
      const leaks = all.filter((f) => /127\.0\.0\.1|::ffff:|"::1"/.test(JSON.stringify(f)));
      assert.deepEqual(leaks, []);
    });

    it("SIGTERM: clients are closed with 1001 and the process exits 0 within 5 s", async () => {
      const server = await opts.start({});
      try {
        const lobby = await open("/ws?name=term1", server);
        const other = await join(uniq("term"), "term2", server);
        const leaving = await join(uniq("term"), "term3", server);
        await closeClient(leaving.c); // a leave timer is pending at shutdown
        await waitFor(lobby, isType("history"), "history");
        const t0 = Date.now();
        const code = await server.stop(8000);
        const took = Date.now() - t0;
        const closes = await Promise.all([lobby.closed, other.c.closed].map((p) => withTimeout(p, 1000, "client close")));
        assert.deepEqual(closes.map((c) => c.code), [1001, 1001], "close code 1001 (going away)");
        assert.equal(code, 0, `exit code: ${String(code)}; output:\n${server.output.slice(-5).join("\n")}`);
        assert.ok(took < 5000, `exited after ${took} ms`);
      } finally {
        for (const c of [...live]) await closeClient(c);
        await server.stop(1000);
      }
    });
  });
}
