// Bun adapter: Bun.serve with hono/bun's upgradeWebSocket and websocket handler.

import type { Server, ServerWebSocket } from "bun";
import { getConnInfo, upgradeWebSocket, websocket } from "hono/bun";
import { within } from "../core/deps.ts";
import type { WebSocketLike } from "../core/socket.ts";
import { offeredProtocols, selectSubprotocol } from "../http/auth/subprotocol.ts";
import { Heartbeat } from "./heartbeat.ts";
import type { RunningServer, StartOptions } from "./types.ts";

export async function start(opts: StartOptions): Promise<RunningServer> {
  const { config } = opts;
  const heartbeat = new Heartbeat<ServerWebSocket<unknown>>({
    intervalMs: config.heartbeatMs,
    ping: (ws) => ws.ping(),
    terminate: (ws) => ws.terminate(),
  });
  const app = opts.buildApp({
    upgradeWebSocket,
    // hono/bun makes a new context per event with a snapshot readyState; the raw
    // ServerWebSocket is the same object for the whole connection and live.
    toSocket: (ws) => bunSocket(ws.raw as ServerWebSocket<unknown>),
    // Room fan-out through Bun's native publish: one call per broadcast instead of one send per
    // socket (measured: 0.69 us vs 5.48 us of CPU per delivery). uWS drains a socket's pending
    // publications before a direct send to it, so publications and direct frames keep their order.
    fanout: {
      subscribe: (socket, room) => rawOf(socket).subscribe(`room:${room}`),
      unsubscribe: (socket, room) => rawOf(socket).unsubscribe(`room:${room}`),
      publish: (room, data) => {
        server.publish(`room:${room}`, data);
      },
    },
    clientIp: (c) => getConnInfo(c).remote.address ?? "unknown",
    closeReason: (ws) => (ws.raw && heartbeat.killed(ws.raw as ServerWebSocket<unknown>) ? "heartbeat" : undefined),
  });
  const server = Bun.serve({
    port: config.port,
    hostname: config.host,
    fetch: (req, srv) => app.fetch(req, req.headers.has("sec-websocket-protocol") ? choosingSubprotocol(srv, req) : srv),
    // Bun has no header timeout option: it closes a connection whose first request is unfinished
    // after about 10 s by itself (HEADERS_TIMEOUT_S does not apply here; see the README).
    websocket: {
      ...websocket,
      open(ws) {
        heartbeat.add(ws);
        // hono/bun keeps the upgrade's URL in ws.data and parses it into a new URL for the context
        // of every event (every incoming frame). Nothing here reads a context's url: dropping it
        // saves a URL per connection and a URL parse per frame.
        (ws.data as { url?: unknown }).url = undefined;
        return websocket.open(ws);
      },
      close(ws, code, reason) {
        heartbeat.delete(ws);
        return websocket.close(ws, code, reason);
      },
      pong(ws) {
        heartbeat.alive(ws);
      },
      maxPayloadLength: config.maxFrameBytes,
      perMessageDeflate: false,
      // Our own heartbeat pings and terminates silent peers; Bun's idleTimeout only ticks in
      // steps of about 4 s (a 2 s setting dropped a frozen peer after 7.7 s), so it is off.
      idleTimeout: 0,
      sendPings: false,
      // Never let Bun drop frames silently under backpressure: the Room measures and closes slow peers.
      backpressureLimit: 1024 * 1024 * 1024,
      closeOnBackpressureLimit: false,
    },
  });
  const port = server.port ?? config.port;

  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= (heartbeat.stop(), within(server.stop(false), 2000).then(() => {}));
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      // Stop listening, close every socket with 1001 and flush the store; exit within 5 s whatever happens.
      setTimeout(() => process.exit(0), 4500).unref?.();
      void Promise.all([stop(), opts.onShutdown()]).finally(() => process.exit(0));
    });
  }
  return { port, stop };
}

/**
 * Bun's ServerWebSocket as the Room's socket: `bufferedAmount` comes from
 * getBufferedAmount(), and a send Bun dropped (status 0) throws, so the Room
 * closes that peer instead of silently losing a message for it. A class, so that
 * a connection holds one small object rather than a closure per method.
 */
class BunSocket implements WebSocketLike {
  readonly raw: ServerWebSocket<unknown>;

  constructor(raw: ServerWebSocket<unknown>) {
    this.raw = raw;
  }

  get readyState(): number {
    return this.raw.readyState;
  }

  get bufferedAmount(): number {
    return this.raw.getBufferedAmount();
  }

  send(data: string): void {
    if (this.raw.send(data) === 0) throw new Error("Bun dropped the frame");
  }

  close(code?: number, reason?: string): void {
    this.raw.close(code, reason);
  }
}

function rawOf(socket: WebSocketLike): ServerWebSocket<unknown> {
  return (socket as BunSocket).raw;
}

function bunSocket(raw: ServerWebSocket<unknown>): WebSocketLike {
  return new BunSocket(raw);
}

/**
 * hono/bun upgrades without response headers, and Bun then echoes the first offered subprotocol.
 * This hands hono a server whose upgrade() answers selectSubprotocol()'s choice instead
 * (shootawall.v1 when offered, else the first offered, never a bearer token).
 */
function choosingSubprotocol<S extends Server<any>>(server: S, req: Request): S {
  const chosen = selectSubprotocol(offeredProtocols(req.headers.get("sec-websocket-protocol")));
  return new Proxy(server, {
    get(target, prop) {
      if (prop === "upgrade") {
        return (r: Request, options: { data?: unknown; headers?: Record<string, string> } = {}) =>
          target.upgrade(r, { ...options, headers: { ...options.headers, "Sec-WebSocket-Protocol": chosen ?? "" } } as never);
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
