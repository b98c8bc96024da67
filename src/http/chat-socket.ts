// WebSocket events for one chat connection: open -> Room.join, message -> receive, close -> leave.

import type { WSContext, WSEvents } from "hono/ws";
import type { Logger } from "../core/deps.ts";
import type { Connection, Room } from "../core/room.ts";
import type { RoomRegistry } from "../core/rooms.ts";
import { closeQuietly, CloseCode, type WebSocketLike } from "../core/socket.ts";

export interface ChatSocketDeps {
  rooms: RoomRegistry;
  log: Logger;
  /** Gives the runtime's own live socket behind hono's context (see runtime/*.ts). */
  toSocket: (ws: WSContext) => WebSocketLike;
}

/** The events for one upgraded connection of `user` to room `roomName`. */
export function chatSocketEvents(deps: ChatSocketDeps, roomName: string, user: string): WSEvents {
  let room: Room | undefined;
  let conn: Connection | undefined;
  const finish = (why: string, code?: number) => {
    if (!room || !conn) return;
    room.leave(conn);
    deps.log.info("ws_close", { room: roomName, conn: conn.id, code, why });
    conn = undefined;
  };
  return {
    onOpen(_evt, ws) {
      const socket = deps.toSocket(ws);
      room = deps.rooms.get(roomName);
      if (!room) {
        closeQuietly(socket, CloseCode.overloaded, "too many rooms");
        return;
      }
      conn = room.join(socket, user);
      deps.log.info("ws_open", { room: roomName, conn: conn.id });
    },
    onMessage(evt) {
      if (room && conn) room.receive(conn, evt.data);
    },
    onClose(evt) {
      finish("closed", evt.code);
    },
    onError() {
      finish("error");
    },
  };
}
