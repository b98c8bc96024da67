// Deno adapter: Deno.serve with hono/deno's upgradeWebSocket.

import { upgradeWebSocket } from "hono/deno";
import type { WebSocketLike } from "../core/socket.ts";
import type { RunningServer, StartOptions } from "./types.ts";

// Only what this file uses of the Deno namespace, so the project type-checks without Deno's types.
declare const Deno: {
  serve(
    options: { port: number; hostname: string; onListen?: (addr: { port: number }) => void },
    handler: (req: Request) => Response | Promise<Response>,
  ): { addr: { port: number }; shutdown(): Promise<void>; finished: Promise<void> };
  addSignalListener(signal: "SIGINT" | "SIGTERM", handler: () => void): void;
  exit(code: number): never;
};

export async function start(opts: StartOptions): Promise<RunningServer> {
  const { config } = opts;
  const app = opts.buildApp({
    upgradeWebSocket,
    // Deno's socket is the WHATWG WebSocket itself.
    toSocket: (ws) => ws.raw as WebSocketLike,
  });
  let resolveListening: (port: number) => void = () => {};
  const listening = new Promise<number>((r) => (resolveListening = r));
  const server = Deno.serve(
    { port: config.port, hostname: config.host, onListen: ({ port }) => resolveListening(port) },
    (req) => app.fetch(req),
  );
  const port = await listening;

  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= Promise.race([
      server.shutdown(),
      new Promise<void>((r) => setTimeout(r, 2000)),
    ]);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      opts.onShutdown();
      void stop().then(() => Deno.exit(0));
    });
  }
  return { port, stop };
}
