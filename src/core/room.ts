// Room: connections, presence and history of one chat room; broadcasts each frame once-serialised. Portable.

import type { Clock, IdSource, Logger } from "./deps.ts";
import { HistoryBuffer } from "./history.ts";
import { Presence } from "./presence.ts";
import { closeQuietly, CloseCode, OPEN, type WebSocketLike } from "./socket.ts";
import { encodeFrame } from "../protocol/encode.ts";
import type { AnnounceFrame, ChatMessage, ErrorFrame, ServerFrame } from "../protocol/messages.ts";
import { frameBytes, parseClientFrame, type ParseLimits } from "../protocol/parse.ts";

export interface RoomOptions {
  /** Messages a newcomer receives (`HISTORY_REPLAY`). */
  historyReplay: number;
  /** Messages the room keeps (`HISTORY_RETAIN`). */
  historyRetain: number;
  /** Time a user's last connection may be gone before their leave is announced. */
  presenceGraceMs: number;
  limits: ParseLimits;
}

export interface RoomDeps {
  clock: Clock;
  ids: IdSource;
  log: Logger;
}

/** One client connection in a room. */
export interface Connection {
  readonly id: number;
  readonly user: string;
  readonly socket: WebSocketLike;
}

/** Why a connection left the room (for logs and metrics). */
export type LeaveReason = "closed" | "send_failed" | "not_open" | "shutdown" | "too_big";

/**
 * A chat room over WHATWG-like sockets. The runtime adapter calls
 * {@link join}, {@link receive} and {@link leave}; the room does the rest.
 */
export class Room {
  readonly name: string;
  readonly epoch: string;
  #seq = 0;
  #nextConnId = 1;
  #connections = new Set<Connection>();
  #history: HistoryBuffer<ChatMessage>;
  #presence: Presence;
  #opts: RoomOptions;
  #deps: RoomDeps;
  /** Last time the room had activity (joins, leaves, messages), for eviction. */
  lastActive: number;

  constructor(name: string, opts: RoomOptions, deps: RoomDeps) {
    this.name = name;
    this.#opts = opts;
    this.#deps = deps;
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
    const conn: Connection = { id: this.#nextConnId++, user, socket };
    this.lastActive = this.#deps.clock.now();
    const isNewUser = this.#presence.add(user);
    this.#connections.add(conn);
    const messages = this.#history.last(this.#opts.historyReplay);
    const first = messages[0];
    // A failed send drops the connection inside #sendTo; the join is still
    // announced so that its later leave always pairs with it.
    const ok = this.#sendTo(conn, {
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
    if (!ok) this.#deps.log.debug("join_send_failed", { room: this.name, conn: conn.id });
    return conn;
  }

  /** Handles one frame from `conn`: a chat message, a ping, or an error reply. */
  receive(conn: Connection, data: unknown): void {
    if (!this.#connections.has(conn)) return;
    // Node and Bun enforce this in the runtime; Deno has no frame-size option, so it is checked here too.
    if (frameBytes(data, this.#opts.limits.maxFrameBytes) > this.#opts.limits.maxFrameBytes) {
      this.#deps.log.info("frame_too_big", { room: this.name, conn: conn.id });
      closeQuietly(conn.socket, CloseCode.tooBig, "frame too big");
      this.leave(conn, "too_big");
      return;
    }
    const parsed = parseClientFrame(data, this.#opts.limits);
    if (!parsed.ok) {
      this.#deps.log.debug("frame_rejected", { room: this.name, conn: conn.id, code: parsed.code });
      this.#sendTo(conn, { type: "error", code: parsed.code, message: parsed.message } satisfies ErrorFrame);
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
    this.#broadcast(message);
    if (frame.nonce !== undefined) {
      this.#sendTo(conn, { type: "ack", nonce: frame.nonce, seq: message.seq });
    }
  }

  /** Removes a connection whose socket closed; its leave follows the grace rule. */
  leave(conn: Connection, reason: LeaveReason = "closed"): void {
    if (!this.#connections.delete(conn)) return;
    this.lastActive = this.#deps.clock.now();
    this.#deps.log.debug("room_leave", { room: this.name, conn: conn.id, reason });
    this.#presence.remove(conn.user, () => {
      this.lastActive = this.#deps.clock.now();
      this.#broadcast(this.#announce("leave", conn.user));
    });
  }

  /** Sends a frame to every connection, serialised once. */
  broadcast(frame: ServerFrame): void {
    this.#broadcast(frame);
  }

  /** Closes every connection (e.g. 1001 on shutdown) and cancels pending leaves. */
  closeAll(code: number, reason: string): void {
    const conns = [...this.#connections];
    this.#connections.clear();
    this.#presence.clear();
    for (const conn of conns) closeQuietly(conn.socket, code, reason);
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
    for (const conn of this.#connections) {
      if (!this.#sendRaw(conn, data)) this.#drop(conn, conn.socket.readyState === OPEN ? "send_failed" : "not_open");
    }
  }

  #sendTo(conn: Connection, frame: ServerFrame): boolean {
    if (this.#sendRaw(conn, encodeFrame(frame))) return true;
    this.#drop(conn, conn.socket.readyState === OPEN ? "send_failed" : "not_open");
    return false;
  }

  /** Sends pre-encoded data; false when the socket is not open or the send threw. */
  #sendRaw(conn: Connection, data: string): boolean {
    if (conn.socket.readyState !== OPEN) return false;
    try {
      conn.socket.send(data);
      return true;
    } catch (err) {
      this.#deps.log.warn("send_failed", { room: this.name, conn: conn.id, error: String(err) });
      return false;
    }
  }

  #drop(conn: Connection, reason: LeaveReason): void {
    if (!this.#connections.has(conn)) return;
    closeQuietly(conn.socket, CloseCode.internal, "send failed");
    this.leave(conn, reason);
  }
}
