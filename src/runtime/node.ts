// Node adapter: @hono/node-server with its built-in upgradeWebSocket over a `ws` server (noServer).

import { createAdaptorServer, type Http2Bindings, type HttpBindings, upgradeWebSocket } from "@hono/node-server";
import { getConnInfo } from "@hono/node-server/conninfo";
import { STATUS_CODES } from "node:http";
import type { IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import type { MiddlewareHandler } from "hono";
import { type WebSocket, WebSocketServer } from "ws";
import type { WebSocketLike } from "../core/socket.ts";
import { selectSubprotocol } from "../http/auth/subprotocol.ts";
import { Heartbeat } from "./heartbeat.ts";
import type { RunningServer, StartOptions } from "./types.ts";

export async function start(opts: StartOptions): Promise<RunningServer> {
  const { config } = opts;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: config.maxFrameBytes,
    perMessageDeflate: false,
    // shootawall.v1 when offered, else the first offered; never a "bearer.<token>" entry.
    handleProtocols: (protocols) => selectSubprotocol([...protocols]) ?? false,
  });

  // Heartbeat: ws does not ping by itself (browsers answer pings even in background tabs).
  const heartbeat = new Heartbeat<WebSocket>({
    intervalMs: config.heartbeatMs,
    ping: (ws) => ws.ping(),
    terminate: (ws) => ws.terminate(),
  });
  wss.on("connection", (ws) => {
    heartbeat.add(ws);
    ws.on("pong", () => heartbeat.alive(ws));
    ws.once("close", () => heartbeat.delete(ws));
  });

  // Upgrade requests that our routes hand to upgradeWebSocket; every other upgrade request is
  // answered by writeRefusal() below, with its body (node-server alone would send none).
  const upgrading = new WeakSet<object>();
  const trackedUpgrade = ((createEvents: unknown) => {
    const middleware = (upgradeWebSocket as unknown as (e: unknown) => MiddlewareHandler)(createEvents);
    const tracked: MiddlewareHandler = async (c, next) => {
      const res = await middleware(c, next);
      if (res) upgrading.add(c.env as object);
      return res;
    };
    return tracked;
  }) as unknown as typeof upgradeWebSocket;

  const app = opts.buildApp({
    upgradeWebSocket: trackedUpgrade,
    // ws's WebSocket has a live readyState and bufferedAmount: hand it over as is.
    toSocket: (ws) => nodeSocket(ws.raw as WebSocket),
    clientIp: (c) => getConnInfo(c).remote.address ?? "unknown",
    closeReason: (ws) => (ws.raw && heartbeat.killed(ws.raw as WebSocket) ? "heartbeat" : undefined),
  });
  const fetch = async (req: Request, bindings: HttpBindings | Http2Bindings) => {
    const env = bindings as { incoming: IncomingMessage; outgoing?: unknown };
    if (env.outgoing !== undefined) return app.fetch(req, env);
    // An upgrade request (node-server passes no `outgoing`): answer refusals ourselves.
    let res: Response;
    try {
      res = await app.fetch(req, env);
    } catch {
      res = new Response("Internal server error\n", { status: 500 });
    }
    if (!upgrading.has(env)) await writeRefusal(env.incoming, res);
    return res;
  };
  const server = createAdaptorServer({
    fetch,
    websocket: { server: wss },
    // Bound slow requests (slowloris): the timeouts are checked every second, not every 30 s.
    serverOptions: { connectionsCheckingInterval: 1000, headersTimeout: config.headersTimeoutMs, requestTimeout: config.headersTimeoutMs * 3 },
  });
  // Malformed requests, oversized headers and header timeouts (slowloris) end here.
  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    const status = err.code === "HPE_HEADER_OVERFLOW"
      ? "431 Request Header Fields Too Large"
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
      ? "408 Request Timeout"
      : "400 Bad Request";
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    else socket.destroy();
  });
  // A second 'upgrade' listener tells node-server not to write its own (bodiless) refusals.
  server.on("upgrade", () => {});
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= new Promise<void>((resolve) => {
      heartbeat.stop();
      const timer = setTimeout(resolve, 2000);
      server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      if ("closeIdleConnections" in server) server.closeIdleConnections();
    });
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
 * The Room's view of a `ws` socket, with two savings on the broadcast path:
 * - a broadcast hands the same string to every socket, so it is UTF-8 encoded
 *   once (a one-entry cache keyed by the string itself) and sent as a text frame;
 * - all frames due to one socket in the same tick (a stored batch of messages)
 *   leave in one write: the TCP socket is corked on the first and uncorked on
 *   the next tick.
 */
let lastText = "";
let lastBytes = Buffer.alloc(0);

function nodeSocket(ws: WebSocket): WebSocketLike {
  const tcp = (ws as unknown as { _socket?: { cork(): void; uncork(): void; destroyed: boolean } })._socket;
  let corked = false;
  const uncork = () => {
    corked = false;
    if (tcp && !tcp.destroyed) tcp.uncork();
  };
  return {
    get readyState() {
      return ws.readyState;
    },
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
    send(data: string) {
      if (data !== lastText) {
        lastText = data;
        lastBytes = Buffer.from(data, "utf8");
      }
      if (tcp && !corked) {
        corked = true;
        tcp.cork();
        process.nextTick(uncork);
      }
      ws.send(lastBytes, { binary: false });
    },
    close(code?: number, reason?: string) {
      ws.close(code, reason);
    },
  };
}

const HOP_BY_HOP = new Set(["connection", "content-length", "keep-alive", "transfer-encoding", "upgrade"]);

/** Writes a refused upgrade's full response, body included, then closes the socket. */
async function writeRefusal(incoming: IncomingMessage, res: Response): Promise<void> {
  const socket = incoming.socket;
  const body = new Uint8Array(await res.arrayBuffer());
  if (socket.destroyed) return;
  const lines = [`HTTP/1.1 ${res.status} ${STATUS_CODES[res.status] ?? ""}`, "Connection: close", `Content-Length: ${body.byteLength}`];
  res.headers.forEach((value, key) => {
    if (!HOP_BY_HOP.has(key) && !/[\r\n]/.test(value)) lines.push(`${key}: ${value}`);
  });
  socket.end(Buffer.concat([Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1"), body]));
}
