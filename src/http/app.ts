// The Hono app: page, /healthz, /ws and /ws/:room. Runtime pieces arrive as parameters.

import { Hono } from "hono";
import { secureHeaders } from "hono/secure-headers";
import type { UpgradeWebSocket, WSEvents } from "hono/ws";
import type { Context } from "hono";
import type { IdSource, Logger } from "../core/deps.ts";
import type { ConnectionGate, Ticket } from "../core/gate.ts";
import { Metrics } from "../core/metrics.ts";
import { DEFAULT_ROOM, isValidRoomName, type RoomRegistry } from "../core/rooms.ts";
import { chatSocketEvents, type ChatSocketDeps } from "./chat-socket.ts";
import { checkHandshake } from "./handshake.ts";
import { checkName } from "./identity.ts";
import { renderMetrics } from "./metrics.ts";
import type { StaticFile } from "./static.ts";

export interface AppDeps extends ChatSocketDeps {
  rooms: RoomRegistry;
  ids: IdSource;
  log: Logger;
  metrics: Metrics;
  gate: ConnectionGate;
  staticFiles: Map<string, StaticFile>;
  runtime: string;
  upgradeWebSocket: UpgradeWebSocket<any>;
  /** The client's IP address as the runtime saw it (never sent to other clients). */
  clientIp: (c: Context) => string;
  now?: () => number;
}

type Env = { Variables: { room: string; user: string; ticket: Ticket } };

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

  app.get("/metrics", (c) =>
    c.body(renderMetrics(deps), 200, {
      "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
      "Cache-Control": "no-store",
    }));

  const upgrade = deps.upgradeWebSocket((c): WSEvents =>
    chatSocketEvents(deps, c.get("room"), c.get("user"), c.get("ticket"))
  );
  const refuse = (c: Context, reason: string, status: 400 | 426 | 429 | 503, message: string, headers?: Record<string, string>) => {
    Metrics.bump(deps.metrics.rejectedUpgrades, reason);
    deps.log.debug("upgrade_refused", { reason, status });
    return c.text(text(message), status, headers);
  };

  app.on("GET", ["/ws", "/ws/*"], async (c, next) => {
    const path = c.req.path;
    const room = path === "/ws" ? DEFAULT_ROOM : safeDecode(path.slice("/ws/".length));
    if (room === undefined || !isValidRoomName(room)) {
      return refuse(c, "bad_room", 400, "Bad room name: use 1 to 64 characters of a-z, 0-9, \"-\" and \"_\"");
    }
    const name = checkName(c.req.query("name"), deps.ids);
    if (!name.ok) return refuse(c, "bad_name", 400, name.message);
    const handshake = checkHandshake(c.req.raw.headers);
    if (!handshake.ok) {
      // A plain GET (no Upgrade at all) is a person or a probe, not a bad handshake: not counted.
      if (!c.req.header("upgrade")) return c.text(text(handshake.message), handshake.status, handshake.headers);
      return refuse(c, "bad_handshake", handshake.status, handshake.message, handshake.headers);
    }
    const admission = deps.gate.admit(deps.clientIp(c));
    if (!admission.ok) {
      return admission.reason === "max_connections"
        ? refuse(c, admission.reason, 503, "Server busy: too many connections; try again later", { "Retry-After": "5" })
        : refuse(c, admission.reason, 429, "Too many connections from your address; close some tabs and retry", { "Retry-After": "5" });
    }
    if (!deps.rooms.get(room)) {
      admission.ticket.release();
      return refuse(c, "max_rooms", 503, "Server busy: too many rooms are open; try again later", { "Retry-After": "5" });
    }
    c.set("room", room);
    c.set("user", name.name);
    c.set("ticket", admission.ticket);
    try {
      const res = await upgrade(c, next);
      // No response means the runtime did not upgrade (and next() answered): give the slot back now.
      // An upgrade whose socket never opens gives it back after the gate's pending timeout.
      if (!res) admission.ticket.release();
      return res;
    } catch (err) {
      admission.ticket.release();
      throw err;
    }
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
