// Deno adapter: Deno.serve with a Hono upgradeWebSocket built on Deno.upgradeWebSocket.

import { getConnInfo } from "hono/deno";
import { defineWebSocketHelper, WSContext, type WSEvents, type WSReadyState } from "hono/ws";
import { within } from "../core/deps.ts";
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
  const { response, socket } = Deno.upgradeWebSocket(c.req.raw, { idleTimeout });
  if (offered) response.headers.set("sec-websocket-protocol", offered);
  // One object per connection does it all (hono's context, the four listeners): no closures,
  // no URL kept (nothing reads ctx.url), so an idle connection holds little beyond Deno's socket.
  const link = new SocketLink(socket, events);
  for (const type of ["open", "message", "close", "error"]) socket.addEventListener(type, link);
  return response;
});

/** hono's WSContext init and the socket's event listener (handleEvent) for one connection. */
class SocketLink {
  readonly raw: WebSocket;
  readonly url = null;
  #events: WSEvents<WebSocket>;
  #ctx: WSContext<WebSocket>;

  constructor(socket: WebSocket, events: WSEvents<WebSocket>) {
    this.raw = socket;
    this.#events = events;
    this.#ctx = new WSContext<WebSocket>(this);
  }

  get protocol(): string {
    return this.raw.protocol;
  }

  get readyState(): WSReadyState {
    return this.raw.readyState as WSReadyState;
  }

  send(source: string | ArrayBuffer | Uint8Array<ArrayBuffer>): void {
    this.raw.send(source);
  }

  close(code?: number, reason?: string): void {
    this.raw.close(code, reason);
  }

  handleEvent(evt: Event): void {
    const events = this.#events;
    switch (evt.type) {
      case "open":
        return events.onOpen?.(evt, this.#ctx);
      case "message":
        return events.onMessage?.(evt as MessageEvent, this.#ctx);
      case "close":
        return events.onClose?.(evt as CloseEvent, this.#ctx);
      case "error":
        return events.onError?.(evt, this.#ctx);
    }
  }
}

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
    stopping ??= within(server.shutdown(), 2000).then(() => {});
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      // Stop listening, close every socket with 1001 and flush the store; exit within 5 s whatever happens.
      setTimeout(() => Deno.exit(0), 4500);
      void Promise.all([stop(), opts.onShutdown()]).finally(() => Deno.exit(0));
    });
  }
  return { port, stop };
}
