// WebSocket events for one chat connection: open -> Room.join, message -> receive, close -> leave.

import type { WSContext, WSEvents } from "hono/ws";
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

/** The events for one upgraded connection of `user` to room `roomName`. */
export function chatSocketEvents(
  deps: ChatSocketDeps,
  roomName: string,
  user: string,
  ticket: Ticket,
  resume: Resume = {},
  access?: LiveAccess,
): WSEvents {
  let room: Room | undefined;
  let conn: Connection | undefined;
  const finish = (reason: LeaveReason) => {
    access?.stop();
    ticket.release();
    if (room && conn) room.leave(conn, reason);
    conn = undefined;
  };
  return {
    onOpen(_evt, ws) {
      ticket.opened();
      const socket = deps.toSocket(ws);
      // The route opened the room just before the upgrade; should it have been closed since
      // (room limit reached in between), the client is told to come back.
      room = deps.rooms.peek(roomName);
      if (!room) {
        closeQuietly(socket, CloseCode.overloaded, "room not available; try again");
        ticket.release();
        return;
      }
      conn = room.join(socket, user, resume);
      deps.log.info("ws_open", { room: roomName, conn: conn.id });
      if (access) {
        // Auth on: closed with 1008 when the credential expires or is logged out; auth frames refresh it.
        const [r, c] = [room, conn];
        c.onAuth = (token) => void access.refresh(token);
        access.start({
          close: (code, reason, why) => {
            r.leave(c, why);
            closeQuietly(socket, code, reason);
          },
          send: (frame) => {
            try {
              if (socket.readyState === 1) socket.send(encodeFrame(frame));
            } catch { /* a broken socket is closed by the room */ }
          },
        });
      }
    },
    onMessage(evt) {
      if (room && conn) room.receive(conn, evt.data);
    },
    onClose(evt, ws) {
      finish(deps.closeReason?.(ws, evt.code) ?? "client");
    },
    onError(_evt, ws) {
      finish(deps.closeReason?.(ws, 1006) ?? "error");
    },
  };
}
