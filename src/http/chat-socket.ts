// WebSocket events for one chat connection: open -> Room.join, message -> receive, close -> leave.

import type { WSContext, WSEvents } from "hono/ws";
import type { Logger } from "../core/deps.ts";
import type { Ticket } from "../core/gate.ts";
import type { Connection, LeaveReason, Room } from "../core/room.ts";
import type { RoomRegistry } from "../core/rooms.ts";
import { closeQuietly, CloseCode, type WebSocketLike } from "../core/socket.ts";

export interface ChatSocketDeps {
  rooms: RoomRegistry;
  log: Logger;
  /** Gives the runtime's own live socket behind hono's context (see runtime/*.ts). Called once per connection. */
  toSocket: (ws: WSContext) => WebSocketLike;
  /** Why the runtime closed a socket, where it can tell (e.g. "heartbeat"). */
  closeReason?: (ws: WSContext, code: number) => LeaveReason | undefined;
}

/** The events for one upgraded connection of `user` to room `roomName`. */
export function chatSocketEvents(deps: ChatSocketDeps, roomName: string, user: string, ticket: Ticket): WSEvents {
  let room: Room | undefined;
  let conn: Connection | undefined;
  const finish = (reason: LeaveReason) => {
    ticket.release();
    if (room && conn) room.leave(conn, reason);
    conn = undefined;
  };
  return {
    onOpen(_evt, ws) {
      ticket.opened();
      const socket = deps.toSocket(ws);
      room = deps.rooms.get(roomName);
      if (!room) {
        closeQuietly(socket, CloseCode.overloaded, "too many rooms");
        ticket.release();
        return;
      }
      conn = room.join(socket, user);
      deps.log.info("ws_open", { room: roomName, conn: conn.id });
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
