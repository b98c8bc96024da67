// Room: connections, presence and history of one chat room; broadcasts each frame once-serialised. Portable.

import type { Clock, IdSource, Logger } from "./deps.ts";
import { HistoryBuffer } from "./history.ts";
import { type CloseReason, Metrics } from "./metrics.ts";
import { Presence } from "./presence.ts";
import { type RateLimit, TokenBucket, type UserBuckets } from "./rate-limit.ts";
import { closeQuietly, CloseCode, OPEN, type WebSocketLike } from "./socket.ts";
import { encodeFrame } from "../protocol/encode.ts";
import type { AnnounceFrame, ChatMessage, ErrorCode, ServerFrame } from "../protocol/messages.ts";
import { frameBytes, parseClientFrame, type ParseLimits } from "../protocol/parse.ts";

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
}

/** One client connection in a room. */
export interface Connection {
  readonly id: number;
  readonly user: string;
  readonly socket: WebSocketLike;
  /** Per-connection token bucket (absent when rate limiting is off). */
  readonly bucket?: TokenBucket;
  readonly userBucket?: TokenBucket;
  /** Frames refused in a row by the rate limit. */
  strikes: number;
  /** When this connection's send buffer was first seen above slowClientBytes (undefined: below). */
  slowSince?: number;
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
  #connections = new Set<Connection>();
  #history: HistoryBuffer<ChatMessage>;
  #presence: Presence;
  #opts: RoomOptions;
  #deps: RoomDeps;
  #metrics: Metrics;
  #hrtime: () => number;
  /** Last time the room had activity (joins, leaves, messages), for eviction. */
  lastActive: number;

  constructor(name: string, opts: RoomOptions, deps: RoomDeps) {
    this.name = name;
    this.#opts = opts;
    this.#deps = deps;
    this.#metrics = deps.metrics ?? new Metrics();
    this.#hrtime = deps.hrtime ?? (() => performance.now());
    this.epoch = deps.ids.epoch();
    this.#history = new HistoryBuffer(opts.historyRetain);
    this.#presence = new Presence(deps.clock, opts.presenceGraceMs);
    this.lastActive = deps.clock.now();
  }

  /** Last sequence number given in this room (0 before the first message). */
  get seq(): number {
    return this.#seq;
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Users online, one entry per user. */
  online(): string[] {
    return this.#presence.list();
  }

  /** True when nobody is connected and no leave is pending. */
  get idle(): boolean {
    return this.#connections.size === 0 && this.#presence.size === 0;
  }

  /** Messages retained, oldest first. */
  history(limit = this.#opts.historyRetain): ChatMessage[] {
    return this.#history.last(limit);
  }

  /**
   * Adds a connection: sends it `welcome` then `history`, then announces the
   * user's join to everyone when this is their first connection.
   */
  join(socket: WebSocketLike, user: string): Connection {
    const limit = this.#opts.rateLimit;
    const limited = limit !== undefined && limit.perSecond > 0;
    const conn: Connection = {
      id: nextConnectionId++,
      user,
      socket,
      bucket: limited ? new TokenBucket(limit, this.#deps.clock) : undefined,
      userBucket: limited ? this.#deps.users?.acquire(user) : undefined,
      strikes: 0,
    };
    this.lastActive = this.#deps.clock.now();
    const isNewUser = this.#presence.add(user);
    this.#connections.add(conn);
    const messages = this.#history.last(this.#opts.historyReplay);
    const first = messages[0];
    // A failed send drops the connection inside #sendTo; the join is still
    // announced so that its later leave always pairs with it.
    this.#sendTo(conn, {
      type: "welcome",
      room: this.name,
      user,
      epoch: this.epoch,
      seq: this.#seq,
      online: this.#presence.list(),
    }) && this.#sendTo(conn, {
      type: "history",
      room: this.name,
      messages,
      complete: first === undefined || first.seq === 1,
    });
    if (isNewUser) this.#broadcast(this.#announce("join", user));
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
    if (conn.bucket && !(conn.bucket.take() && (conn.userBucket?.take() ?? true))) {
      // Every frame costs a token, invalid ones included; a client that keeps going after
      // a burst's worth of refusals is closed.
      if (++conn.strikes >= Math.max(10, this.#opts.rateLimit?.burst ?? 0)) {
        this.#close(conn, CloseCode.policy, "rate limit exceeded", "rate_limit");
      } else {
        this.#error(conn, "rate_limited", "Cannot accept frame: rate limit exceeded; slow down");
      }
      return;
    }
    conn.strikes = 0;
    const parsed = parseClientFrame(data, this.#opts.limits);
    if (!parsed.ok) {
      this.#error(conn, parsed.code, parsed.message);
      return;
    }
    const frame = parsed.value;
    if (frame.type === "ping") {
      this.#sendTo(conn, { type: "pong" });
      return;
    }
    const now = this.#deps.clock.now();
    this.lastActive = now;
    const message: ChatMessage = {
      type: "message",
      room: this.name,
      seq: ++this.#seq,
      user: conn.user,
      date: new Date(now).toISOString(),
      text: frame.text,
    };
    if (frame.nonce !== undefined) message.nonce = frame.nonce;
    this.#history.push(message);
    this.#metrics.messagesIn++;
    this.#broadcast(message);
    if (frame.nonce !== undefined) {
      this.#sendTo(conn, { type: "ack", nonce: frame.nonce, seq: message.seq });
    }
  }

  /** Removes a connection whose socket closed; its leave follows the grace rule. */
  leave(conn: Connection, reason: LeaveReason = "client"): void {
    if (!this.#connections.delete(conn)) return;
    this.lastActive = this.#deps.clock.now();
    Metrics.bump(this.#metrics.closes, reason);
    if (conn.bucket) this.#deps.users?.release(conn.user);
    this.#deps.log.info("ws_close", { room: this.name, conn: conn.id, reason });
    this.#presence.remove(conn.user, () => {
      this.lastActive = this.#deps.clock.now();
      this.#broadcast(this.#announce("leave", conn.user));
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
    let delivered = 0;
    for (const conn of this.#connections) {
      const result = this.#sendRaw(conn, data);
      if (result === Sent.ok) delivered++;
      else this.#failed(conn, result);
    }
    this.#metrics.fanout.observe((this.#hrtime() - started) / 1000);
    this.#countOut(data, delivered);
  }

  #sendTo(conn: Connection, frame: ServerFrame): boolean {
    const data = encodeFrame(frame);
    const result = this.#sendRaw(conn, data);
    if (result !== Sent.ok) {
      this.#failed(conn, result);
      return false;
    }
    this.#countOut(data, 1);
    return true;
  }

  #error(conn: Connection, code: ErrorCode, message: string): void {
    Metrics.bump(this.#metrics.errors, code);
    this.#deps.log.debug("frame_rejected", { room: this.name, conn: conn.id, code });
    this.#sendTo(conn, { type: "error", code, message });
  }

  #countOut(data: string, sockets: number): void {
    if (sockets === 0) return;
    this.#metrics.framesOut += sockets;
    this.#metrics.bytesOut += utf8Length(data) * sockets;
  }

  /** Sends pre-encoded data and says how it went. */
  #sendRaw(conn: Connection, data: string): Sent {
    const socket = conn.socket;
    if (socket.readyState !== OPEN) return Sent.notOpen;
    try {
      socket.send(data);
    } catch (err) {
      this.#deps.log.warn("send_failed", { room: this.name, conn: conn.id, error: String(err) });
      return Sent.threw;
    }
    const limit = this.#opts.slowClientBytes ?? 0;
    if (limit > 0) {
      const buffered = socket.bufferedAmount ?? 0;
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

/** UTF-8 length of a string without encoding it. */
function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff) i++, n += 2;
    else n += 2;
  }
  return n;
}
