// The Hono app: page, /healthz, /ws and /ws/:room. Runtime pieces arrive as parameters.

import { Hono } from "hono";
import { secureHeaders } from "hono/secure-headers";
import type { UpgradeWebSocket, WSEvents } from "hono/ws";
import type { IdSource, Logger } from "../core/deps.ts";
import { DEFAULT_ROOM, isValidRoomName, type RoomRegistry } from "../core/rooms.ts";
import type { WebSocketLike } from "../core/socket.ts";
import { chatSocketEvents } from "./chat-socket.ts";
import { checkHandshake } from "./handshake.ts";
import { checkName } from "./identity.ts";
import type { StaticFile } from "./static.ts";
import type { WSContext } from "hono/ws";

export interface AppDeps {
  rooms: RoomRegistry;
  ids: IdSource;
  log: Logger;
  staticFiles: Map<string, StaticFile>;
  runtime: string;
  upgradeWebSocket: UpgradeWebSocket<any>;
  toSocket: (ws: WSContext) => WebSocketLike;
  now?: () => number;
}

type Env = { Variables: { room: string; user: string } };

const text = (body: string) => body.endsWith("\n") ? body : `${body}\n`;

/** Builds the app; it never imports a runtime. */
export function createApp(deps: AppDeps): Hono<Env> {
  const app = new Hono<Env>();
  const now = deps.now ?? Date.now;
  const startedAt = now();

  app.use(secureHeaders({
    contentSecurityPolicy: {
      defaultSrc: ["'self'"],
      connectSrc: ["'self'"],
      imgSrc: ["'self'", "data:"],
      styleSrc: ["'self'"],
      scriptSrc: ["'self'"],
      objectSrc: ["'none'"],
      baseUri: ["'none'"],
      frameAncestors: ["'none'"],
      formAction: ["'self'"],
    },
    referrerPolicy: "no-referrer",
    crossOriginEmbedderPolicy: false,
  }));

  app.get("/healthz", (c) =>
    c.json({
      status: "ok",
      runtime: deps.runtime,
      uptime_s: Math.round((now() - startedAt) / 1000),
      rooms: deps.rooms.size,
      connections: deps.rooms.connectionCount,
    }, 200, { "Cache-Control": "no-store" }));

  const upgrade = deps.upgradeWebSocket((c): WSEvents =>
    chatSocketEvents(deps, c.get("room"), c.get("user"))
  );

  app.on("GET", ["/ws", "/ws/*"], async (c, next) => {
    const path = c.req.path;
    const room = path === "/ws" ? DEFAULT_ROOM : safeDecode(path.slice("/ws/".length));
    if (room === undefined || !isValidRoomName(room)) {
      return c.text(text("Bad room name: use 1 to 64 characters of a-z, 0-9, \"-\" and \"_\""), 400);
    }
    const handshake = checkHandshake(c.req.raw.headers);
    if (!handshake.ok) return c.text(text(handshake.message), handshake.status, handshake.headers);
    const name = checkName(c.req.query("name"), deps.ids);
    if (!name.ok) return c.text(text(name.message), 400);
    if (!deps.rooms.get(room)) {
      return c.text(text("Server busy: too many rooms are open; try again later"), 503);
    }
    c.set("room", room);
    c.set("user", name.name);
    return upgrade(c, next);
  });

  app.get("/*", (c) => {
    const file = deps.staticFiles.get(c.req.path);
    if (!file) return c.notFound();
    const headers = { "Content-Type": file.type, "Cache-Control": "no-cache", ETag: file.etag };
    if (c.req.header("if-none-match") === file.etag) return c.body(null, 304, headers);
    return c.body(file.body as Uint8Array<ArrayBuffer>, 200, headers);
  });

  app.notFound((c) => c.text(text(`Not found: ${c.req.method} ${c.req.path}`), 404));
  app.onError((err, c) => {
    deps.log.error("http_error", { path: c.req.path, error: String(err) });
    return c.text("Internal server error\n", 500);
  });
  return app;
}

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}
