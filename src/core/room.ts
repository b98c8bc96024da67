// Room: connections, presence and history of one chat room; broadcasts each frame once-serialised. Portable.

import type { Clock, IdSource, Logger } from "./deps.ts";
import { HistoryBuffer } from "./history.ts";
import { type CloseReason, Metrics } from "./metrics.ts";
import { NonceWindow } from "./nonces.ts";
import { Presence } from "./presence.ts";
import { type RateLimit, TokenBucket, type UserBuckets } from "./rate-limit.ts";
import { closeQuietly, CloseCode, OPEN, type WebSocketLike } from "./socket.ts";
import { encodeFrame, utf8Length } from "../protocol/encode.ts";
import type { AnnounceFrame, ChatMessage, ErrorCode, ErrorFrame, Nonce, ServerFrame } from "../protocol/messages.ts";
import { frameBytes, parseClientFrame, type ParseLimits } from "../protocol/parse.ts";
import { type Draft, isShared, type RoomLog, type SharedLog, type StoredRoom, type Submitted } from "../storage/store.ts";

/** Where a reconnecting client left off (`?since=` and `&epoch=`). */
export interface Resume {
  since?: number;
  epoch?: string;
}

/** Work waiting for the room's log, kept in arrival order. */
type Pending =
  | { kind: "message"; conn: Connection; text: string; nonce?: Nonce }
  | { kind: "reply"; conn: Connection; frame: ServerFrame };

/** A shared log's answer for a batch, held until the room has delivered every seq it names. */
interface Parked {
  items: Pending[];
  results: Submitted[];
  err: unknown;
  /** The highest seq the batch's acks name (0: none). */
  upTo: number;
}

/** The close code telling clients the room started over (its history was lost): reconnect and resume. */
export const RESET_CLOSE = { code: 1012, reason: "room history reset; reconnect" } as const;

const NO_LOG: RoomLog = { append() {}, close: () => Promise.resolve() };

export interface RoomOptions {
  /** Messages a newcomer receives (`HISTORY_REPLAY`). */
  historyReplay: number;
  /** Messages the room keeps (`HISTORY_RETAIN`). */
  historyRetain: number;
  /** Time a user's last connection may be gone before their leave is announced. */
  presenceGraceMs: number;
  limits: ParseLimits;
  /** Close a connection with 1013 when more than this many bytes wait to be sent to it; 0 = never. */
  slowClientBytes?: number;
  /** Frames per connection (`perSecond` 0 = off); the same limit applies per user via `RoomDeps.users`. */
  rateLimit?: RateLimit;
}

export interface RoomDeps {
  clock: Clock;
  ids: IdSource;
  log: Logger;
  metrics?: Metrics;
  /** Per-user buckets shared by every room; rate limiting per user is off without it. */
  users?: UserBuckets;
  /** A high-resolution clock in milliseconds, for the fan-out histogram. */
  hrtime?: () => number;
  /** A runtime's native fan-out (Bun's publish); without it the room sends socket by socket. */
  fanout?: Fanout;
}

/**
 * An optional capability a runtime adapter can hand the Room: native pub/sub.
 * Frames published and frames sent directly to a socket must reach it in call order.
 */
export interface Fanout {
  /** From now on `socket` receives what is published to `room`. */
  subscribe(socket: WebSocketLike, room: string): void;
  unsubscribe(socket: WebSocketLike, room: string): void;
  /** Sends `data` as a text frame to every socket subscribed to `room`. */
  publish(room: string, data: string): void;
}

/**
 * With native fan-out, connections are checked for slowness and death every this many broadcasts,
 * or after this long, whichever comes first (so a burst cannot pile up unchecked).
 */
export const FANOUT_SWEEP_MS = 200;
export const FANOUT_SWEEP_EVERY = 32;

/** One client connection in a room. */
export interface Connection {
  readonly id: number;
  readonly user: string;
  readonly socket: WebSocketLike;
  /** Per-connection token bucket: made on the first frame (a new bucket is full), absent when rate limiting is off. */
  bucket?: TokenBucket;
  /** The user's shared bucket, held from the join while rate limiting is on. */
  readonly userBucket?: TokenBucket;
  /** Frames refused in a row by the rate limit. */
  strikes: number;
  /** When this connection's send buffer was first seen above slowClientBytes (undefined: below). */
  slowSince?: number;
  /**
   * Bytes of the welcome and history frames, tolerated on top of slowClientBytes until the
   * buffer first drains below the mark (a resume may replay a whole retained history at once).
   */
  slack: number;
  /** Takes the token of an `auth` frame (set by the connection layer when auth is on). */
  onAuth?: (token: string) => void;
}

/**
 * A buffer above slowClientBytes is tolerated this long (a burst of sends can
 * sit in a healthy socket's buffer for a moment: Deno counts every queued send
 * until its write completes), unless it passes SLOW_HARD_FACTOR times the mark.
 */
export const SLOW_GRACE_MS = 1000;
export const SLOW_HARD_FACTOR = 4;

/** Why a connection left the room: the close reasons counted in metrics. */
export type LeaveReason = CloseReason;

let nextConnectionId = 1;

/** How a send went. */
const Sent = { ok: 0, notOpen: 1, threw: 2, slow: 3 } as const;
type Sent = (typeof Sent)[keyof typeof Sent];

/**
 * A chat room over WHATWG-like sockets. The runtime adapter calls
 * {@link join}, {@link receive} and {@link leave}; the room does the rest.
 */
export class Room {
  readonly name: string;
  readonly epoch: string;
  #seq = 0;
  #log: RoomLog;
  #nonces = new NonceWindow();
  /** Messages (and replies queued behind them) waiting for the log. */
  #queue: Pending[] = [];
  /** True while an append is in flight. */
  #writing = false;
  /** Connections waiting for the same (user, nonce) as a message in flight: they get its ack too. */
  #waiting = new Map<string, Connection[]>();
  #connections = new Set<Connection>();
  #history: HistoryBuffer<ChatMessage>;
  #presence: Presence;
  #opts: RoomOptions;
  #deps: RoomDeps;
  #metrics: Metrics;
  #hrtime: () => number;
  #lastSweep = 0;
  #sinceSweep = 0;
  /** Set when the log is shared by several instances (Redis): seqs, fan-out and presence come from it. */
  #shared?: SharedLog;
  /** Batches the shared log answered, waiting for their messages to come back (FIFO). */
  #parked: Parked[] = [];
  /** Users online on every instance (shared log only), kept from the log's announces. */
  #online = new Set<string>();
  /** True once the room started over: the registry opens a new one. */
  defunct = false;
  /** Last time the room had activity (joins, leaves, messages), for eviction. */
  lastActive: number;

  /**
   * `stored` is what the room's log held when opened (default: a new, empty
   * history with a fresh epoch); `log` stores each accepted message before it
   * is broadcast and acked.
   */
  constructor(name: string, opts: RoomOptions, deps: RoomDeps, stored?: StoredRoom, log: RoomLog = NO_LOG) {
    this.name = name;
    this.#opts = opts;
    this.#deps = deps;
    this.#metrics = deps.metrics ?? new Metrics();
    this.#hrtime = deps.hrtime ?? (() => performance.now());
    this.epoch = stored?.epoch ?? deps.ids.epoch();
    this.#log = log;
    this.#history = new HistoryBuffer(opts.historyRetain);
    this.#seq = stored?.seq ?? 0;
    for (const m of stored?.messages ?? []) {
      this.#history.push(m);
      if (m.nonce !== undefined) this.#nonces.record(m.user, m.nonce, m.seq, Date.parse(m.date) || 0);
    }
    this.#presence = new Presence(deps.clock, opts.presenceGraceMs);
    this.lastActive = deps.clock.now();
    if (isShared(log)) {
      this.#shared = log;
      for (const user of stored?.online ?? []) this.#online.add(user);
      log.listen({
        messages: (messages) => this.#deliver(messages),
        announce: (frame) => {
          if (frame.event === "join") this.#online.add(frame.user);
          else this.#online.delete(frame.user);
          this.#broadcast(frame);
        },
        reset: (why) => this.#reset(why),
      });
    }
  }

  /** Last sequence number given in this room (0 before the first message). */
  get seq(): number {
    return this.#seq;
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Users online, one entry per user (on every instance when the log is shared). */
  online(): string[] {
    if (!this.#shared) return this.#presence.list();
    const all = new Set(this.#online);
    for (const user of this.#presence.list()) all.add(user);
    return [...all];
  }

  /** True when nobody is connected, no leave is pending and nothing waits for the log. */
  get idle(): boolean {
    return this.#connections.size === 0 && this.#presence.size === 0 && !this.#writing && this.#queue.length === 0 &&
      this.#parked.length === 0;
  }

  /** Flushes and releases the room's log (the room must be idle). */
  closeLog(): Promise<void> {
    return this.#log.close();
  }

  /** Messages retained, oldest first. */
  history(limit = this.#opts.historyRetain): ChatMessage[] {
    return this.#history.last(limit);
  }

  /**
   * Adds a connection: sends it `welcome` then `history`, then announces the
   * user's join to everyone when this is their first connection.
   */
  join(socket: WebSocketLike, user: string, resume: Resume = {}): Connection {
    const limit = this.#opts.rateLimit;
    const limited = limit !== undefined && limit.perSecond > 0;
    // Every field from the start: one shape for all connections, none added later.
    const conn: Connection = {
      id: nextConnectionId++,
      user,
      socket,
      bucket: undefined,
      userBucket: limited ? this.#deps.users?.acquire(user) : undefined,
      strikes: 0,
      slowSince: undefined,
      slack: 0,
      onAuth: undefined,
    };
    this.lastActive = this.#deps.clock.now();
    const isNewUser = this.#presence.add(user);
    this.#connections.add(conn);
    const { messages, complete } = this.#replay(resume);
    // A failed send drops the connection inside #sendTo; the join is still
    // announced so that its later leave always pairs with it.
    this.#sendTo(conn, {
      type: "welcome",
      room: this.name,
      user,
      epoch: this.epoch,
      seq: this.#seq,
      online: this.online(),
    }, false) && this.#sendTo(conn, {
      type: "history",
      room: this.name,
      messages,
      complete,
    }, false);
    conn.slack = conn.socket.bufferedAmount ?? 0;
    if (this.#connections.has(conn)) this.#deps.fanout?.subscribe(conn.socket, this.name);
    if (isNewUser) {
      // A shared log announces once for all instances, and the announce comes back like a message.
      if (this.#shared) this.#shared.arrive(user);
      else this.#broadcast(this.#announce("join", user));
    }
    return conn;
  }

  /** Handles one frame from `conn`: a chat message, a ping, or an error reply. */
  receive(conn: Connection, data: unknown): void {
    if (!this.#connections.has(conn)) return;
    this.#metrics.framesIn++;
    // Node and Bun enforce this in the runtime; Deno has no frame-size option, so it is checked here too.
    if (frameBytes(data, this.#opts.limits.maxFrameBytes) > this.#opts.limits.maxFrameBytes) {
      this.#close(conn, CloseCode.tooBig, "frame too big", "too_big");
      return;
    }
    const limit = this.#opts.rateLimit;
    const limited = limit !== undefined && limit.perSecond > 0;
    // A connection's bucket is made on its first frame: the same as one made (full) at the join.
    if (limited && !((conn.bucket ??= new TokenBucket(limit, this.#deps.clock)).take() && (conn.userBucket?.take() ?? true))) {
      // Every frame costs a token, invalid ones included; a client that keeps going after
      // a burst's worth of refusals is closed.
      if (++conn.strikes >= Math.max(10, limit.burst)) {
        this.#close(conn, CloseCode.policy, "rate limit exceeded", "rate_limit");
      } else {
        this.#error(conn, "rate_limited", "Cannot accept frame: rate limit exceeded; slow down");
      }
      return;
    }
    conn.strikes = 0;
    const parsed = parseClientFrame(data, this.#opts.limits);
    if (!parsed.ok) {
      this.#error(conn, parsed.code, parsed.message, parsed.nonce);
      return;
    }
    const frame = parsed.value;
    if (frame.type === "ping") {
      this.#reply(conn, { type: "pong" });
      return;
    }
    if (frame.type === "auth") {
      if (conn.onAuth) conn.onAuth(frame.token);
      else this.#error(conn, "bad_request", "Cannot accept auth: this server does not use tokens");
      return;
    }
    this.lastActive = this.#deps.clock.now();
    const nonce = frame.nonce;
    if (nonce !== undefined) {
      // A retry of a message already stored: the same ack again, nothing broadcast.
      const seq = this.#nonces.lookup(conn.user, nonce);
      if (seq !== undefined) {
        this.#reply(conn, { type: "ack", nonce, seq });
        return;
      }
      // A retry of a message still on its way to the log: acked together with it.
      const key = nonceKey(conn.user, nonce);
      const waiting = this.#waiting.get(key);
      if (waiting) {
        waiting.push(conn);
        return;
      }
      this.#waiting.set(key, []);
    }
    this.#queue.push({ kind: "message", conn, text: frame.text, nonce });
    this.#pump();
  }

  /** A reply that must not overtake this connection's messages waiting for the log. */
  #reply(conn: Connection, frame: ServerFrame): void {
    if (this.#writing || this.#queue.length > 0 || this.#parked.length > 0) this.#queue.push({ kind: "reply", conn, frame });
    else this.#sendTo(conn, frame);
  }

  /** Stores what is queued, in batches (one append and one sync for all that arrived meanwhile). */
  #pump(): void {
    if (this.#shared) {
      this.#pumpShared(this.#shared);
      return;
    }
    while (!this.#writing && this.#queue.length > 0) {
      const items = this.#queue;
      this.#queue = [];
      const date = new Date(this.#deps.clock.now()).toISOString();
      const messages: ChatMessage[] = [];
      for (const item of items) {
        if (item.kind !== "message") continue;
        const m: ChatMessage = {
          type: "message",
          room: this.name,
          seq: this.#seq + messages.length + 1,
          user: item.conn.user,
          date,
          text: item.text,
        };
        if (item.nonce !== undefined) m.nonce = item.nonce;
        messages.push(m);
      }
      if (messages.length === 0) {
        this.#settle(items, messages, undefined);
        continue;
      }
      let pending: void | Promise<void>;
      try {
        pending = this.#log.append(messages);
      } catch (err) {
        this.#settle(items, messages, err);
        continue;
      }
      if (pending === undefined) {
        this.#settle(items, messages, undefined);
        continue;
      }
      this.#writing = true;
      pending.then(
        () => this.#afterWrite(items, messages, undefined),
        (err: unknown) => this.#afterWrite(items, messages, err ?? new Error("store failed")),
      );
    }
  }

  #afterWrite(items: Pending[], messages: ChatMessage[], err: unknown): void {
    this.#writing = false;
    this.#settle(items, messages, err);
    this.#pump();
  }

  /** Broadcasts and acks a stored batch, or answers `unavailable` for a failed one; replies keep their place. */
  #settle(items: Pending[], messages: ChatMessage[], err: unknown): void {
    if (err !== undefined) {
      this.#deps.log.warn("store_unavailable", { room: this.name, messages: messages.length, error: String(err) });
    }
    let i = 0;
    for (const item of items) {
      if (item.kind === "reply") {
        this.#sendTo(item.conn, item.frame);
        continue;
      }
      const message = messages[i++] as ChatMessage;
      const waiting = item.nonce === undefined ? [] : this.#takeWaiting(item.conn.user, item.nonce);
      if (err !== undefined) {
        for (const c of [item.conn, ...waiting]) this.#errorFrame(c, unavailable(item.nonce));
        continue;
      }
      this.#accept(message);
      if (item.nonce !== undefined) this.#ack([item.conn, ...waiting], item.nonce, message.seq);
    }
  }

  /**
   * Shared log: one batch in flight; its answer is parked until its messages come
   * back through the log (so every instance broadcasts in the same order, and a
   * sender sees its message before its ack).
   */
  #pumpShared(log: SharedLog): void {
    if (this.#writing || this.#queue.length === 0) return;
    const items = this.#queue;
    this.#queue = [];
    const date = new Date(this.#deps.clock.now()).toISOString();
    const drafts: Draft[] = [];
    for (const item of items) {
      if (item.kind !== "message") continue;
      const d: Draft = { type: "message", room: this.name, user: item.conn.user, date, text: item.text };
      if (item.nonce !== undefined) d.nonce = item.nonce;
      drafts.push(d);
    }
    if (drafts.length === 0) {
      this.#park({ items, results: [], err: undefined, upTo: 0 });
      return;
    }
    this.#writing = true;
    log.submit(drafts).then(
      (results) => this.#park({ items, results, err: undefined, upTo: Math.max(0, ...results.map((r) => r.seq)) }),
      (err: unknown) => {
        this.#deps.log.warn("store_unavailable", { room: this.name, messages: drafts.length, error: String(err) });
        this.#park({ items, results: [], err: err ?? new Error("store failed"), upTo: 0 });
      },
    ).finally(() => {
      this.#writing = false;
      this.#pump();
    });
  }

  #park(entry: Parked): void {
    if (this.defunct) return;
    this.#parked.push(entry);
    this.#unpark();
  }

  /** Settles parked batches, in order, whose messages have all been delivered. */
  #unpark(): void {
    while (this.#parked.length > 0 && (this.#parked[0] as Parked).upTo <= this.#seq) {
      const { items, results, err } = this.#parked.shift() as Parked;
      let i = 0;
      for (const item of items) {
        if (item.kind === "reply") {
          this.#sendTo(item.conn, item.frame);
          continue;
        }
        const result = results[i++];
        const waiting = item.nonce === undefined ? [] : this.#takeWaiting(item.conn.user, item.nonce);
        if (err !== undefined || result === undefined) {
          for (const c of [item.conn, ...waiting]) this.#errorFrame(c, unavailable(item.nonce));
          continue;
        }
        if (item.nonce !== undefined) this.#ack([item.conn, ...waiting], item.nonce, result.seq);
      }
    }
  }

  /** Messages stored through the shared log (by any instance), in seq order. */
  #deliver(messages: ChatMessage[]): void {
    if (this.defunct) return;
    for (const message of messages) if (message.seq > this.#seq) this.#accept(message);
    this.lastActive = this.#deps.clock.now();
    this.#unpark();
    this.#pump();
  }

  /** The shared history was lost or replaced: close every connection so clients resume on a new room. */
  #reset(why: string): void {
    if (this.defunct) return;
    this.defunct = true;
    this.#deps.log.warn("room_reset", { room: this.name, epoch: this.epoch, seq: this.#seq, why });
    for (const conn of [...this.#connections]) this.#close(conn, RESET_CLOSE.code, RESET_CLOSE.reason, "reset");
    this.#presence.clear();
    this.#queue = [];
    this.#parked = [];
    this.#waiting.clear();
    void this.#log.close().catch(() => {});
  }

  /** A stored message: into the history and the nonce window, then to everyone. */
  #accept(message: ChatMessage): void {
    this.#seq = message.seq;
    this.#history.push(message);
    this.#metrics.messagesIn++;
    if (message.nonce !== undefined) {
      this.#nonces.record(message.user, message.nonce, message.seq, this.#deps.clock.now());
    }
    this.#broadcast(message);
  }

  #ack(conns: Connection[], nonce: Nonce, seq: number): void {
    const ack: ServerFrame = { type: "ack", nonce, seq };
    for (const c of conns) if (this.#connections.has(c)) this.#sendTo(c, ack);
  }

  #takeWaiting(user: string, nonce: Nonce): Connection[] {
    const key = nonceKey(user, nonce);
    const waiting = this.#waiting.get(key) ?? [];
    this.#waiting.delete(key);
    return waiting;
  }

  /** The history frame's content for a join: a resume when possible, else the latest messages. */
  #replay(resume: Resume): { messages: ChatMessage[]; complete: boolean } {
    const { since, epoch } = resume;
    if (since !== undefined) {
      const oldest = this.#history.first()?.seq ?? this.#seq + 1;
      const sameEpoch = epoch === undefined || epoch === this.epoch;
      if (sameEpoch && since <= this.#seq && since >= oldest - 1) {
        return { messages: this.#history.last(this.#seq - since), complete: true };
      }
      return { messages: this.#history.last(this.#opts.historyReplay), complete: false };
    }
    const messages = this.#history.last(this.#opts.historyReplay);
    // Complete when the frame holds every message of this epoch (seqs run 1..seq without gaps).
    return { messages, complete: messages.length === this.#seq };
  }

  /** Removes a connection whose socket closed; its leave follows the grace rule. */
  leave(conn: Connection, reason: LeaveReason = "client"): void {
    if (!this.#connections.delete(conn)) return;
    this.lastActive = this.#deps.clock.now();
    if (this.#deps.fanout) {
      try {
        this.#deps.fanout.unsubscribe(conn.socket, this.name);
      } catch {
        // The socket is already closed: it has no subscriptions left.
      }
    }
    Metrics.bump(this.#metrics.closes, reason);
    if (conn.userBucket) this.#deps.users?.release(conn.user);
    this.#deps.log.info("ws_close", { room: this.name, conn: conn.id, reason });
    this.#presence.remove(conn.user, () => {
      this.lastActive = this.#deps.clock.now();
      if (this.#shared) this.#shared.depart(conn.user);
      else this.#broadcast(this.#announce("leave", conn.user));
    });
  }

  /** True while `conn` is in this room. */
  has(conn: Connection): boolean {
    return this.#connections.has(conn);
  }

  /** Sends a frame to every connection, serialised once. */
  broadcast(frame: ServerFrame): void {
    this.#broadcast(frame);
  }

  /** Closes every connection (e.g. 1001 on shutdown) and cancels pending leaves. */
  closeAll(code: number, reason: string): void {
    for (const conn of [...this.#connections]) this.#close(conn, code, reason, "shutdown");
    this.#presence.clear();
  }

  #announce(event: "join" | "leave", user: string): AnnounceFrame {
    return {
      type: "announce",
      event,
      room: this.name,
      user,
      date: new Date(this.#deps.clock.now()).toISOString(),
      text: event === "join" ? `${user} connected` : `${user} disconnected`,
    };
  }

  #broadcast(frame: ServerFrame): void {
    const data = encodeFrame(frame);
    const started = this.#hrtime();
    const fanout = this.#deps.fanout;
    if (fanout) {
      // One native publish for the whole room; the per-connection checks run on a schedule.
      fanout.publish(this.name, data);
      this.#metrics.fanout.observe((this.#hrtime() - started) / 1000);
      this.#countOut(data, this.#connections.size);
      const now = this.#deps.clock.now();
      if (++this.#sinceSweep >= FANOUT_SWEEP_EVERY || now - this.#lastSweep >= FANOUT_SWEEP_MS) {
        this.#lastSweep = now;
        this.#sinceSweep = 0;
        this.#sweep();
      }
      return;
    }
    let delivered = 0;
    for (const conn of this.#connections) {
      const result = this.#sendRaw(conn, data);
      if (result === Sent.ok) delivered++;
      else this.#failed(conn, result);
    }
    this.#metrics.fanout.observe((this.#hrtime() - started) / 1000);
    this.#countOut(data, delivered);
  }

  /** Drops connections that are closed or too slow (native fan-out does not tell per send). */
  #sweep(): void {
    for (const conn of this.#connections) {
      const result = this.#check(conn);
      if (result !== Sent.ok) this.#failed(conn, result);
    }
  }

  #sendTo(conn: Connection, frame: ServerFrame, checkSlow = true): boolean {
    const data = encodeFrame(frame);
    const result = this.#sendRaw(conn, data, checkSlow);
    if (result !== Sent.ok) {
      this.#failed(conn, result);
      return false;
    }
    this.#countOut(data, 1);
    return true;
  }

  #error(conn: Connection, code: ErrorCode, message: string, nonce?: Nonce): void {
    Metrics.bump(this.#metrics.errors, code);
    this.#deps.log.debug("frame_rejected", { room: this.name, conn: conn.id, code });
    const frame: ErrorFrame = { type: "error", code, message };
    if (nonce !== undefined) frame.nonce = nonce;
    this.#reply(conn, frame);
  }

  #errorFrame(conn: Connection, frame: ErrorFrame): void {
    Metrics.bump(this.#metrics.errors, frame.code);
    if (this.#connections.has(conn)) this.#sendTo(conn, frame);
  }

  #countOut(data: string, sockets: number): void {
    if (sockets === 0) return;
    this.#metrics.framesOut += sockets;
    this.#metrics.bytesOut += utf8Length(data) * sockets;
  }

  /** Sends pre-encoded data and says how it went. */
  #sendRaw(conn: Connection, data: string, checkSlow = true): Sent {
    const socket = conn.socket;
    if (socket.readyState !== OPEN) return Sent.notOpen;
    try {
      socket.send(data);
    } catch (err) {
      this.#deps.log.warn("send_failed", { room: this.name, conn: conn.id, error: String(err) });
      return Sent.threw;
    }
    return checkSlow ? this.#check(conn) : Sent.ok;
  }

  /** Whether a connection is still open and keeping up. */
  #check(conn: Connection): Sent {
    const socket = conn.socket;
    if (socket.readyState !== OPEN) return Sent.notOpen;
    const mark = this.#opts.slowClientBytes ?? 0;
    if (mark > 0) {
      const buffered = socket.bufferedAmount ?? 0;
      if (conn.slack > 0 && buffered <= mark) conn.slack = 0;
      const limit = mark + conn.slack;
      if (buffered <= limit) conn.slowSince = undefined;
      else if (buffered > limit * SLOW_HARD_FACTOR) return Sent.slow;
      else if (conn.slowSince === undefined) conn.slowSince = this.#deps.clock.now();
      else if (this.#deps.clock.now() - conn.slowSince >= SLOW_GRACE_MS) return Sent.slow;
    }
    return Sent.ok;
  }

  #failed(conn: Connection, result: Sent): void {
    if (result === Sent.slow) this.#close(conn, CloseCode.overloaded, "slow consumer", "slow_consumer");
    else if (result === Sent.threw) this.#close(conn, CloseCode.internal, "send failed", "send_failed");
    else this.leave(conn, "send_failed");
  }

  #close(conn: Connection, code: number, reason: string, why: LeaveReason): void {
    if (!this.#connections.has(conn)) return;
    // Leave first: Bun runs the close callback inside close(), and that callback must find
    // the connection already gone rather than record the close as the client's.
    this.leave(conn, why);
    closeQuietly(conn.socket, code, reason);
  }
}

function unavailable(nonce: Nonce | undefined): ErrorFrame {
  const frame: ErrorFrame = {
    type: "error",
    code: "unavailable",
    message: "Cannot store message right now; it was not sent; try again",
  };
  if (nonce !== undefined) frame.nonce = nonce;
  return frame;
}

function nonceKey(user: string, nonce: Nonce): string {
  return `${typeof nonce === "number" ? "n" : "s"}${nonce}\u0000${user}`;
}
