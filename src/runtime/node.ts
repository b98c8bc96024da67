// Node adapter: @hono/node-server with its built-in upgradeWebSocket over a `ws` server (noServer).

import { createAdaptorServer, type Http2Bindings, type HttpBindings, upgradeWebSocket } from "@hono/node-server";
import { getConnInfo } from "@hono/node-server/conninfo";
import { STATUS_CODES } from "node:http";
import type { IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import type { Context, MiddlewareHandler } from "hono";
import type { WSEvents } from "hono/ws";
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
  // Shared listeners (called with the socket as `this`): no closures per connection.
  function onPong(this: WebSocket) {
    heartbeat.alive(this);
  }
  function onClose(this: WebSocket) {
    heartbeat.delete(this);
  }
  wss.on("connection", (ws) => {
    heartbeat.add(ws);
    ws.on("pong", onPong);
    ws.on("close", onClose);
  });

  // Upgrade requests that our routes hand to upgradeWebSocket; every other upgrade request is
  // answered by writeRefusal() below, with its body (node-server alone would send none).
  const upgrading = new WeakSet<object>();
  const trackedUpgrade = ((createEvents: (c: Context) => WSEvents | Promise<WSEvents>) => {
    // node-server's helper keeps the context it is given alive as long as the socket (its
    // per-connection closures share one scope with it): give it a slim stand-in, not Hono's
    // Context with the Request, its Headers and the IncomingMessage (about 6 kB per connection).
    const middleware = (upgradeWebSocket as unknown as (e: (c: SlimContext) => WSEvents | undefined) => MiddlewareHandler)(
      (slim) => slim.events,
    );
    const tracked: MiddlewareHandler = async (c, next) => {
      const events = await createEvents(c);
      const env = c.env as Record<string | symbol, unknown>;
      const slim = slimContext(env, c.req.url, c.req.header("upgrade"), events);
      const res = await middleware(slim as unknown as Context, next);
      // node-server marks the upgrade it accepted on the env it created: copy the mark back.
      for (const key of Object.getOwnPropertySymbols(slim.env)) env[key] = slim.env[key];
      // node-server's helper has already handed the request to its waiter: drop our references.
      slim.env.incoming = undefined;
      slim.events = undefined;
      if (res) upgrading.add(env);
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
 * The Room's view of a `ws` socket, with three savings on the broadcast path:
 * - a broadcast hands the same string to every socket, so its whole WebSocket
 *   frame (an unmasked text frame, header and payload) is built once (a one-entry
 *   cache keyed by the string itself) and written as is to each TCP socket, when
 *   ws has nothing queued of its own (else through ws.send, which keeps ws's order);
 * - all frames due to one socket in the same tick (a stored batch of messages)
 *   leave in one write: the TCP socket is corked on the first and uncorked on
 *   the next tick;
 * - one nextTick callback uncorks every socket corked in the tick.
 * What is written this way counts in ws's bufferedAmount (the TCP socket's writableLength).
 */
let lastText: string | undefined;
let lastFrame = Buffer.alloc(0);
let lastPayload = Buffer.alloc(0);

/** The complete frame for `data`, built once per distinct string in a row. */
function frameFor(data: string): Buffer {
  if (data !== lastText) {
    const length = Buffer.byteLength(data, "utf8");
    const head = length < 126 ? 2 : length < 65536 ? 4 : 10;
    const frame = Buffer.allocUnsafe(head + length);
    frame[0] = 0x81; // FIN, text
    if (head === 2) frame[1] = length;
    else if (head === 4) {
      frame[1] = 126;
      frame.writeUInt16BE(length, 2);
    } else {
      frame[1] = 127;
      frame.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
      frame.writeUInt32BE(length >>> 0, 6);
    }
    frame.write(data, head, "utf8");
    lastText = data;
    lastFrame = frame;
    lastPayload = frame.subarray(head);
  }
  return lastFrame;
}

interface TcpSocket {
  cork(): void;
  uncork(): void;
  write(chunk: Uint8Array): boolean;
  destroyed: boolean;
  writable: boolean;
}
interface WsInternals {
  _socket?: TcpSocket;
  _sender?: { _bufferedBytes: number; _queue: unknown[] };
}

/** Sockets corked in this tick, uncorked together on the next one. */
let corked: NodeSocket[] = [];

function uncorkAll(): void {
  const list = corked;
  corked = [];
  for (const socket of list) socket.uncork();
}

class NodeSocket implements WebSocketLike {
  #ws: WebSocket;
  #corked = false;

  constructor(ws: WebSocket) {
    this.#ws = ws;
  }

  get readyState(): number {
    return this.#ws.readyState;
  }

  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  send(data: string): void {
    const ws = this.#ws;
    const frame = frameFor(data);
    const { _socket: tcp, _sender: sender } = ws as unknown as WsInternals;
    if (tcp && !tcp.destroyed) {
      if (!this.#corked) {
        this.#corked = true;
        tcp.cork();
        if (corked.push(this) === 1) process.nextTick(uncorkAll);
      }
      // Straight to the TCP socket only while ws is open and holds nothing back (its queue is used
      // for compression and Blobs, neither of which this server sends): frames keep their call order.
      if (ws.readyState === 1 && tcp.writable && sender && sender._bufferedBytes === 0 && sender._queue.length === 0) {
        tcp.write(frame);
        return;
      }
    }
    ws.send(lastPayload, { binary: false });
  }

  /** Called once per tick in which this socket was corked. */
  uncork(): void {
    this.#corked = false;
    const tcp = (this.#ws as unknown as WsInternals)._socket;
    if (tcp && !tcp.destroyed) tcp.uncork();
  }

  close(code?: number, reason?: string): void {
    this.#ws.close(code, reason);
  }
}

function nodeSocket(ws: WebSocket): WebSocketLike {
  return new NodeSocket(ws);
}

/** What node-server's upgradeWebSocket reads from a context: `c.req.header("upgrade")`, `c.req.url`, `c.env`. */
interface SlimContext {
  env: Record<string | symbol, unknown>;
  req: { url: string; upgrade: string | undefined; header(this: { upgrade: string | undefined }, name: string): string | undefined };
  events: WSEvents | undefined;
}

function slimHeader(this: { upgrade: string | undefined }, name: string): string | undefined {
  return name.toLowerCase() === "upgrade" ? this.upgrade : undefined;
}

/** Built outside the middleware so that no closure here can capture Hono's Context. */
function slimContext(env: Record<string | symbol, unknown>, url: string, upgrade: string | undefined, events: WSEvents): SlimContext {
  const slimEnv: Record<string | symbol, unknown> = { incoming: env.incoming };
  for (const key of Object.getOwnPropertySymbols(env)) slimEnv[key] = env[key];
  return {
    env: slimEnv,
    req: { url, upgrade, header: slimHeader },
    events,
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
