// Bun adapter: Bun.serve with hono/bun's upgradeWebSocket and websocket handler.

import { upgradeWebSocket, websocket } from "hono/bun";
import type { WebSocketLike } from "../core/socket.ts";
import type { RunningServer, StartOptions } from "./types.ts";

export async function start(opts: StartOptions): Promise<RunningServer> {
  const { config } = opts;
  const app = opts.buildApp({
    upgradeWebSocket,
    // hono/bun makes a new context per event with a snapshot readyState; the raw
    // ServerWebSocket is the same object for the whole connection and live.
    toSocket: (ws) => ws.raw as WebSocketLike,
  });
  const server = Bun.serve({
    port: config.port,
    hostname: config.host,
    fetch: app.fetch,
    websocket: { ...websocket, maxPayloadLength: config.maxFrameBytes, perMessageDeflate: false },
  });
  const port = server.port ?? config.port;

  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= Promise.race([
      server.stop(false),
      new Promise<void>((r) => setTimeout(r, 2000)),
    ]);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      opts.onShutdown();
      void stop().then(() => process.exit(0));
    });
  }
  return { port, stop };
}
