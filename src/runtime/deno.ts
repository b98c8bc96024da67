// Deno adapter: Deno.serve with a Hono upgradeWebSocket built on Deno.upgradeWebSocket.

import { getConnInfo } from "hono/deno";
import { defineWebSocketHelper, WSContext } from "hono/ws";
import type { WebSocketLike } from "../core/socket.ts";
import { offeredProtocols, selectSubprotocol } from "../http/auth/subprotocol.ts";
import type { RunningServer, StartOptions } from "./types.ts";

// Only what this file uses of the Deno namespace, so the project type-checks without Deno's types.
declare const Deno: {
  serve(
    options: { port: number; hostname: string; onListen?: (addr: { port: number }) => void },
    handler: (req: Request, info: unknown) => Response | Promise<Response>,
  ): { addr: { port: number }; shutdown(): Promise<void>; finished: Promise<void> };
  addSignalListener(signal: "SIGINT" | "SIGTERM", handler: () => void): void;
  exit(code: number): never;
  upgradeWebSocket(req: Request, options?: { idleTimeout?: number }): { response: Response; socket: WebSocket };
};

/**
 * hono/deno's upgradeWebSocket, with two differences measured here (hono 4.13):
 * - it compares `Upgrade` case-sensitively, so `Upgrade: WebSocket` (legal) fell through to 404;
 * - it passes the first offered subprotocol to Deno, which splits the header only on ", ", so a
 *   client sending `a,b` got a 500. Here Deno picks none and we answer selectSubprotocol()'s
 *   choice (shootawall.v1 when offered, else the first offered, never a bearer token),
 *   as the Node and Bun adapters do.
 * `idleTimeout` (seconds) goes to Deno.upgradeWebSocket, which then pings and drops a silent peer.
 */
const makeUpgradeWebSocket = (idleTimeout: number) => defineWebSocketHelper<WebSocket>((c, events) => {
  if (c.req.header("upgrade")?.toLowerCase() !== "websocket") return;
  // Read every header first: once upgraded, Deno's request throws "Request closed".
  const offered = selectSubprotocol(offeredProtocols(c.req.header("sec-websocket-protocol")));
  const url = new URL(c.req.url);
  const { response, socket } = Deno.upgradeWebSocket(c.req.raw, { idleTimeout });
  if (offered) response.headers.set("sec-websocket-protocol", offered);
  const ctx = new WSContext({
    close: (code, reason) => socket.close(code, reason),
    get protocol() {
      return socket.protocol;
    },
    raw: socket,
    get readyState() {
      return socket.readyState as 0 | 1 | 2 | 3;
    },
    url,
    send: (source) => socket.send(source),
  });
  socket.onopen = (evt) => events.onOpen?.(evt, ctx);
  socket.onmessage = (evt) => events.onMessage?.(evt, ctx);
  socket.onclose = (evt) => events.onClose?.(evt, ctx);
  socket.onerror = (evt) => events.onError?.(evt, ctx);
  return response;
});

export async function start(opts: StartOptions): Promise<RunningServer> {
  const { config } = opts;
  const idleTimeout = Math.max(1, Math.round(config.heartbeatMs / 1000));
  const app = opts.buildApp({
    upgradeWebSocket: makeUpgradeWebSocket(idleTimeout),
    // Deno's socket is the WHATWG WebSocket itself.
    toSocket: (ws) => ws.raw as WebSocketLike,
    clientIp: (c) => getConnInfo(c).remote.address ?? "unknown",
  });
  let resolveListening: (port: number) => void = () => {};
  const listening = new Promise<number>((r) => (resolveListening = r));
  const server = Deno.serve(
    { port: config.port, hostname: config.host, onListen: ({ port }) => resolveListening(port) },
    // hono/deno's getConnInfo reads the connection info from the env argument.
    (req, info) => app.fetch(req, info),
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
      // Stop listening, close every socket with 1001 and flush the store; exit within 5 s whatever happens.
      setTimeout(() => Deno.exit(0), 4500);
      void Promise.all([stop(), opts.onShutdown()]).finally(() => Deno.exit(0));
    });
  }
  return { port, stop };
}
