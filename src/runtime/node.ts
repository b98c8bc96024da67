// Node adapter: @hono/node-server with its built-in upgradeWebSocket over a `ws` server (noServer).

import { createAdaptorServer, upgradeWebSocket } from "@hono/node-server";
import type { AddressInfo } from "node:net";
import { WebSocketServer } from "ws";
import type { WebSocketLike } from "../core/socket.ts";
import type { RunningServer, StartOptions } from "./types.ts";

export async function start(opts: StartOptions): Promise<RunningServer> {
  const { config } = opts;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: config.maxFrameBytes,
    perMessageDeflate: false,
  });
  const app = opts.buildApp({
    upgradeWebSocket,
    // ws's WebSocket has a live readyState and bufferedAmount: hand it over as is.
    toSocket: (ws) => ws.raw as WebSocketLike,
  });
  const server = createAdaptorServer({ fetch: app.fetch, websocket: { server: wss } });
  server.on("clientError", (_err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
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
