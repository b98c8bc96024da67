// Node adapter: @hono/node-server with its built-in upgradeWebSocket over a `ws` server (noServer).

import { createAdaptorServer, upgradeWebSocket } from "@hono/node-server";
import { getConnInfo } from "@hono/node-server/conninfo";
import type { AddressInfo } from "node:net";
import { type WebSocket, WebSocketServer } from "ws";
import type { WebSocketLike } from "../core/socket.ts";
import type { RunningServer, StartOptions } from "./types.ts";

export async function start(opts: StartOptions): Promise<RunningServer> {
  const { config } = opts;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: config.maxFrameBytes,
    perMessageDeflate: false,
  });

  // Heartbeat: ws does not ping by itself. Every half interval each socket is pinged; one
  // that has not answered the previous ping is terminated, so a frozen or half-open peer
  // is gone within one interval (browsers answer pings even in background tabs).
  const answered = new WeakMap<WebSocket, boolean>();
  const killedByHeartbeat = new WeakSet<object>();
  wss.on("connection", (ws) => {
    answered.set(ws, true);
    ws.on("pong", () => answered.set(ws, true));
  });
  const heartbeat = setInterval(() => {
    for (const ws of wss.clients) {
      if (answered.get(ws) === false) {
        killedByHeartbeat.add(ws);
        ws.terminate();
        continue;
      }
      answered.set(ws, false);
      try {
        ws.ping();
      } catch {
        // Closing already; the close event does the rest.
      }
    }
  }, Math.max(250, config.heartbeatMs / 2));
  heartbeat.unref();

  const app = opts.buildApp({
    upgradeWebSocket,
    // ws's WebSocket has a live readyState and bufferedAmount: hand it over as is.
    toSocket: (ws) => ws.raw as WebSocketLike,
    clientIp: (c) => getConnInfo(c).remote.address ?? "unknown",
    closeReason: (ws) => (ws.raw && killedByHeartbeat.has(ws.raw as object) ? "heartbeat" : undefined),
  });
  const server = createAdaptorServer({
    fetch: app.fetch,
    websocket: { server: wss },
    // Bound slow requests (slowloris): the timeouts are checked every second, not every 30 s.
    serverOptions: { connectionsCheckingInterval: 1000, headersTimeout: config.headersTimeoutMs, requestTimeout: config.headersTimeoutMs * 3 },
  });
  server.on("clientError", (_err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= new Promise<void>((resolve) => {
      clearInterval(heartbeat);
      const timer = setTimeout(resolve, 2000);
      server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      if ("closeIdleConnections" in server) server.closeIdleConnections();
    });
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      opts.onShutdown();
      void stop().then(() => process.exit(0));
    });
  }
  return { port, stop };
}
