// WebSocket events for one chat connection: open -> Room.join, message -> receive, close -> leave.

import type { WSContext, WSEvents, WSMessageReceive } from "hono/ws";
import type { Logger } from "../core/deps.ts";
import type { Ticket } from "../core/gate.ts";
import type { Connection, LeaveReason, Resume, Room } from "../core/room.ts";
import type { RoomRegistry } from "../core/rooms.ts";
import { closeQuietly, CloseCode, type WebSocketLike } from "../core/socket.ts";
import { encodeFrame } from "../protocol/encode.ts";
import type { LiveAccess } from "./auth/live.ts";

export interface ChatSocketDeps {
  rooms: RoomRegistry;
  log: Logger;
  /** Gives the runtime's own live socket behind hono's context (see runtime/*.ts). Called once per connection. */
  toSocket: (ws: WSContext) => WebSocketLike;
  /** Why the runtime closed a socket, where it can tell (e.g. "heartbeat"). */
  closeReason?: (ws: WSContext, code: number) => LeaveReason | undefined;
}

/**
 * The events for one upgraded connection of `user` to room `roomName`. One object per connection,
 * its handlers on the prototype (every runtime's helper calls them as `events.onOpen(...)`), so an
 * idle connection costs a few fields rather than a handful of closures.
 */
export function chatSocketEvents(
  deps: ChatSocketDeps,
  roomName: string,
  user: string,
  ticket: Ticket,
  resume: Resume = {},
  access?: LiveAccess,
): WSEvents {
  return new ChatSocket(deps, roomName, user, ticket, resume, access);
}

/** What a connection needs only until it joins its room. */
interface Joining {
  roomName: string;
  user: string;
  resume: Resume;
}

class ChatSocket implements WSEvents {
  #deps: ChatSocketDeps;
  #ticket: Ticket;
  /** Until the join. */
  #joining: Joining | undefined;
  #access: LiveAccess | undefined;
  #room: Room | undefined;
  #conn: Connection | undefined;

  constructor(deps: ChatSocketDeps, roomName: string, user: string, ticket: Ticket, resume: Resume, access: LiveAccess | undefined) {
    this.#deps = deps;
    this.#ticket = ticket;
    this.#joining = { roomName, user, resume };
    this.#access = access;
  }

  onOpen(_evt: Event, ws: WSContext): void {
    const deps = this.#deps;
    this.#ticket.opened();
    const socket = deps.toSocket(ws);
    const { roomName, user, resume } = this.#joining as Joining;
    this.#joining = undefined;
    // The route opened the room just before the upgrade; should it have been closed since
    // (room limit reached in between), the client is told to come back.
    const room = deps.rooms.peek(roomName);
    this.#room = room;
    if (!room) {
      closeQuietly(socket, CloseCode.overloaded, "room not available; try again");
      this.#ticket.release();
      return;
    }
    const conn = room.join(socket, user, resume);
    this.#conn = conn;
    deps.log.info("ws_open", { room: roomName, conn: conn.id });
    const access = this.#access;
    if (access) {
      // Auth on: closed with 1008 when the credential expires or is logged out; auth frames refresh it.
      conn.onAuth = (token) => void access.refresh(token);
      access.start({
        close: (code, reason, why) => {
          room.leave(conn, why);
          closeQuietly(socket, code, reason);
        },
        send: (frame) => {
          try {
            if (socket.readyState === 1) socket.send(encodeFrame(frame));
          } catch { /* a broken socket is closed by the room */ }
        },
      });
    }
  }

  onMessage(evt: MessageEvent<WSMessageReceive>): void {
    if (this.#room && this.#conn) this.#room.receive(this.#conn, evt.data);
  }

  onClose(evt: CloseEvent, ws: WSContext): void {
    this.#finish(this.#deps.closeReason?.(ws, evt.code) ?? "client");
  }

  onError(_evt: Event, ws: WSContext): void {
    this.#finish(this.#deps.closeReason?.(ws, 1006) ?? "error");
  }

  #finish(reason: LeaveReason): void {
    this.#access?.stop();
    this.#ticket.release();
    if (this.#room && this.#conn) this.#room.leave(this.#conn, reason);
    this.#conn = undefined;
  }
}
