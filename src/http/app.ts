// The Hono app: page, /healthz, /ws and /ws/:room. Runtime pieces arrive as parameters.

import { Hono } from "hono";
import { secureHeaders } from "hono/secure-headers";
import type { UpgradeWebSocket, WSEvents } from "hono/ws";
import type { Context } from "hono";
import type { IdSource, Logger } from "../core/deps.ts";
import type { ConnectionGate, Ticket } from "../core/gate.ts";
import { Metrics } from "../core/metrics.ts";
import type { Resume } from "../core/room.ts";
import { DEFAULT_ROOM, isValidRoomName, type RoomRegistry } from "../core/rooms.ts";
import type { LiveAccess } from "./auth/live.ts";
import { AuthService } from "./auth/service.ts";
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
  /** Who may connect, as whom, to which room (default: AUTH=open with the same-origin rule). */
  auth?: AuthService;
}

/** What the /ws route decided, handed to the upgrade's events (one context variable, not five). */
interface Admitted {
  room: string;
  user: string;
  ticket: Ticket;
  resume: Resume;
  access: LiveAccess | undefined;
}

type Env = { Variables: { admitted: Admitted; switched?: boolean } };

const EPOCH = /^[A-Za-z0-9_-]{1,64}$/;

/** Reads `since` and `epoch` from the upgrade query (wire contract: resume). */
function parseResume(since: string | undefined, epoch: string | undefined): Resume | string {
  const resume: Resume = {};
  if (since !== undefined) {
    if (!/^\d{1,15}$/.test(since)) return "Bad since: expected the last seq you received, a whole number >= 0";
    resume.since = Number(since);
  }
  if (epoch !== undefined) {
    if (!EPOCH.test(epoch)) return "Bad epoch: expected the epoch from a welcome frame";
    resume.epoch = epoch;
  }
  return resume;
}

const text = (body: string) => body.endsWith("\n") ? body : `${body}\n`;

/** Builds the app; it never imports a runtime. */
export function createApp(deps: AppDeps): Hono<Env> {
  const app = new Hono<Env>();
  const now = deps.now ?? Date.now;
  const startedAt = now();

  const security = secureHeaders({
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
  });
  const nothing = async () => {};
  // Every response gets the security headers, refused upgrades included, except a successful
  // WebSocket upgrade: a 101 carries no document for them to protect, and setting them cost about
  // 6 kB of garbage per upgrade on Deno (half of what an upgrade allocates there).
  app.use(async (c, next) => {
    await next();
    if (!c.get("switched")) await security(c, nothing);
  });

  app.get("/healthz", (c) => {
    // Degraded (503): the shared store is unreachable; connected clients are still served, sends
    // get `unavailable`, and a load balancer should send newcomers elsewhere.
    const store = deps.rooms.storeHealth();
    return c.json({
      status: store.ok ? "ok" : "degraded",
      runtime: deps.runtime,
      uptime_s: Math.round((now() - startedAt) / 1000),
      rooms: deps.rooms.size,
      connections: deps.rooms.connectionCount,
      store: store.kind,
      ...store.detail,
    }, store.ok ? 200 : 503, { "Cache-Control": "no-store" });
  });

  app.get("/metrics", (c) =>
    c.body(renderMetrics(deps), 200, {
      "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
      "Cache-Control": "no-store",
    }));

  const auth = deps.auth ?? AuthService.open(deps.log);
  auth.mount(app, deps.clientIp);

  const upgrade = deps.upgradeWebSocket((c): WSEvents => {
    const a = c.get("admitted");
    return chatSocketEvents(deps, a.room, a.user, a.ticket, a.resume, a.access);
  });
  const refuse = (c: Context, reason: string, status: 400 | 401 | 403 | 426 | 429 | 503, message: string, headers?: Record<string, string>) => {
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
    // With auth on, the name comes from the verified identity, never from the query string.
    const query = c.req.query(); // parsed once
    const name = checkName(auth.mode === "open" ? query.name : undefined, deps.ids);
    if (!name.ok) return refuse(c, "bad_name", 400, name.message);
    const resume = parseResume(query.since, query.epoch);
    if (typeof resume === "string") return refuse(c, "bad_resume", 400, resume);
    const handshake = checkHandshake(c.req.raw.headers);
    if (!handshake.ok) {
      // A plain GET (no Upgrade at all) is a person or a probe, not a bad handshake: not counted.
      if (!c.req.header("upgrade")) return c.text(text(handshake.message), handshake.status, handshake.headers);
      return refuse(c, "bad_handshake", handshake.status, handshake.message, handshake.headers);
    }
    const verdict = await auth.admitUpgrade(c, room);
    if (!verdict.ok) return refuse(c, verdict.reason, verdict.status, verdict.message);
    const admission = deps.gate.admit(deps.clientIp(c));
    if (!admission.ok) {
      return admission.reason === "max_connections"
        ? refuse(c, admission.reason, 503, "Server busy: too many connections; try again later", { "Retry-After": "5" })
        : refuse(c, admission.reason, 429, "Too many connections from your address; close some tabs and retry", { "Retry-After": "5" });
    }
    let opened;
    try {
      opened = await deps.rooms.get(room);
    } catch (err) {
      admission.ticket.release();
      deps.log.error("room_open_failed", { room, error: String(err) });
      return refuse(c, "store_unavailable", 503, "Server busy: this room's history cannot be read right now; try again later", { "Retry-After": "5" });
    }
    if (!opened) {
      admission.ticket.release();
      return refuse(c, "max_rooms", 503, "Server busy: too many rooms are open; try again later", { "Retry-After": "5" });
    }
    c.set("admitted", {
      room,
      user: verdict.identity?.user ?? name.name,
      ticket: admission.ticket,
      resume,
      access: auth.live(verdict.identity, room),
    });
    try {
      const res = await upgrade(c, next);
      // No response means the runtime did not upgrade (and next() answered): give the slot back now.
      // An upgrade whose socket never opens gives it back after the gate's pending timeout.
      if (!res) admission.ticket.release();
      else c.set("switched", true);
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
