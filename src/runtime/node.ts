// Node adapter: @hono/node-server for HTTP, and WebSocket upgrades through the app onto a `ws` server (noServer).

import { createAdaptorServer, RequestError } from "@hono/node-server";
import { getConnInfo } from "@hono/node-server/conninfo";
import { STATUS_CODES } from "node:http";
import type { IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { defineWebSocketHelper, type WSContext, type WSEvents, type WSReadyState } from "hono/ws";
import { type RawData, WebSocket, WebSocketServer } from "ws";
import type { WebSocketLike } from "../core/socket.ts";
import { selectSubprotocol } from "../http/auth/subprotocol.ts";
import { Heartbeat } from "./heartbeat.ts";
import type { RunningServer, StartOptions } from "./types.ts";

export async function start(opts: StartOptions): Promise<RunningServer> {
  const { config, log } = opts;
  // Heartbeat: ws does not ping by itself (browsers answer pings even in background tabs).
  const heartbeat = new Heartbeat<ServerSocket>({
    intervalMs: config.heartbeatMs,
    ping: (ws) => ws.ping(),
    terminate: (ws) => ws.terminate(),
  });

  // The events of every socket of this server go straight to its handlers (a field of the socket):
  // no listeners, closures, contexts or event objects are kept per connection while it is idle.
  const failed = (what: string, err: unknown) => log.error("ws_handler_failed", { event: what, error: String(err) });
  const onMessage = (ws: ServerSocket, data: RawData, isBinary: boolean): void => {
    const events = ws.chat;
    if (!events?.onMessage) return;
    for (const chunk of Array.isArray(data) ? data : [data]) {
      try {
        events.onMessage(new MessageEvent("message", { data: messageData(chunk, isBinary) }), wsContext(ws));
      } catch (err) {
        failed("message", err);
      }
    }
  };
  const onClose = (ws: ServerSocket, code: number, reason: Buffer): void => {
    heartbeat.delete(ws);
    try {
      ws.chat?.onClose?.(new CloseEventLike("close", { code, reason: reason.toString() }), wsContext(ws));
    } catch (err) {
      failed("close", err);
    }
  };
  const onError = (ws: ServerSocket, error: Error): void => {
    try {
      ws.chat?.onError?.(new ErrorEventLike("error", { error }), wsContext(ws));
    } catch (err) {
      failed("error", err);
    }
  };
  /** This server's sockets: ws's events for an open connection are dispatched here, not to listeners. */
  class Socket extends ServerSocket {
    override emit(event: string | symbol, ...args: any[]): boolean {
      if (this.chat !== undefined) {
        switch (event) {
          case "message":
            onMessage(this, args[0], args[1]);
            return true;
          case "pong":
            heartbeat.alive(this);
            return true;
          case "close":
            onClose(this, args[0], args[1]);
            return true;
          case "error":
            onError(this, args[0]);
            return true;
        }
      }
      return super.emit(event, ...args);
    }
  }
  const wss = new WebSocketServer<typeof Socket>({
    noServer: true,
    maxPayload: config.maxFrameBytes,
    perMessageDeflate: false,
    // Nothing reads wss.clients: without it, ws keeps no Set entry and no close closure per socket.
    clientTracking: false,
    WebSocket: Socket,
    // shootawall.v1 when offered, else the first offered; never a "bearer.<token>" entry.
    handleProtocols: (protocols) => selectSubprotocol([...protocols]) ?? false,
  });
  const open = (ws: ServerSocket, events: WSEvents<ServerSocket>): void => {
    ws.chat = events;
    heartbeat.add(ws);
    // Called before any frame can arrive: ws reads the socket from the next tick on.
    try {
      events.onOpen?.(new Event("open"), wsContext(ws));
    } catch (err) {
      failed("open", err);
    }
  };

  const app = opts.buildApp({
    upgradeWebSocket,
    // The socket itself is the Room's WebSocketLike (live readyState and bufferedAmount, framed sends).
    toSocket: (ctx) => ctx.raw as ServerSocket,
    clientIp: (c) => getConnInfo(c).remote.address ?? "unknown",
    closeReason: (ctx) => (ctx.raw && heartbeat.killed(ctx.raw as ServerSocket) ? "heartbeat" : undefined),
  });
  const server = createAdaptorServer({
    fetch: app.fetch,
    // Bound slow requests (slowloris): the timeouts are checked every second, not every 30 s.
    serverOptions: { connectionsCheckingInterval: 1000, headersTimeout: config.headersTimeoutMs, requestTimeout: config.headersTimeoutMs * 3 },
  });

  // Every WebSocket upgrade request goes through the app; the upgrade route accepts it by handing its
  // events to upgradeWebSocket (below), anything else is answered with the app's full response.
  // Node hands over the socket of any request with an Upgrade header: one for another protocol
  // (h2c, ...) is answered like a plain request, with the app's full response, never left hanging.
  server.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    handleUpgrade(request, socket, head).catch(() => socket.destroy());
  });
  const handleUpgrade = async (request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    socket.on("error", ignore);
    const env: UpgradeEnv = { incoming: request, outgoing: undefined, [ACCEPT]: undefined };
    let res: Response;
    try {
      res = await app.fetch(upgradeRequest(request), env);
    } catch (err) {
      res = err instanceof RequestError
        ? new Response("Bad request\n", { status: 400 })
        : new Response("Internal server error\n", { status: 500 });
    }
    const events = env[ACCEPT];
    if (events === undefined) {
      await writeRefusal(request, res);
      return;
    }
    // Gone mid-handshake: the gate gives the slot back after its pending timeout.
    if (socket.destroyed) return;
    // The 101 is ws's own: the app puts no headers on an accepted upgrade (see createApp).
    wss.handleUpgrade(request, socket, head, (ws) => {
      socket.off("error", ignore);
      open(ws, events);
    });
  };
  server.on("close", () => wss.close());
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

function ignore(): void {}

/** Where upgradeWebSocket leaves the events of an upgrade the app accepted. */
const ACCEPT = Symbol("accept");

/** The env of an upgrade request (node-server's bindings, which getConnInfo reads, plus ACCEPT). */
interface UpgradeEnv {
  incoming: IncomingMessage;
  outgoing: undefined;
  [ACCEPT]: WSEvents<ServerSocket> | undefined;
}

/**
 * The app's upgrade helper: a route that accepts the upgrade hands over its events, and the
 * "upgrade" listener completes the handshake once the app has answered.
 */
const upgradeWebSocket = defineWebSocketHelper<ServerSocket>((c, events) => {
  if (c.req.header("upgrade")?.toLowerCase() !== "websocket") return;
  const env = c.env as Partial<UpgradeEnv> | undefined;
  // A plain request (no HTTP upgrade underneath) cannot be upgraded.
  if (!env || !(ACCEPT in env)) return new Response(null, { status: 500 });
  env[ACCEPT] = events;
  return new Response(null);
});

const VALID_HOST = /^[a-z0-9._-]+(?::(?:[1-5]\d{3,4}|[6-9]\d{3}))?$/;

/** The upgrade request as a fetch Request (headers only), with node-server's URL checks. */
function upgradeRequest(request: IncomingMessage): Request {
  const target = request.url ?? "/";
  const backslash = target.indexOf("\\");
  if (backslash !== -1) {
    const query = target.indexOf("?");
    if (query === -1 || backslash < query) throw new RequestError("Backslash in request path");
  }
  let url: string;
  if (target.startsWith("http://") || target.startsWith("https://")) url = new URL(target).href;
  else {
    if (target[0] !== "/") throw new RequestError("Invalid URL");
    const host = request.headers.host ?? "localhost";
    const parsed = new URL(`${(request.socket as { encrypted?: boolean }).encrypted ? "https" : "http"}://${host}${target}`);
    if (!VALID_HOST.test(host) && parsed.hostname.length !== host.length &&
      parsed.hostname !== (host.includes(":") ? host.replace(/:\d+$/, "") : host).toLowerCase()) {
      throw new RequestError("Invalid host header");
    }
    url = parsed.href;
  }
  const headers = new Headers();
  for (const key in request.headers) {
    const value = request.headers[key];
    if (value) headers.append(key, Array.isArray(value) ? value[0] as string : value);
  }
  return new Request(url, { headers });
}

/** A received message as node-server hands it over: text as a string, binary as an ArrayBuffer. */
function messageData(data: Buffer | ArrayBuffer, isBinary: boolean): string | ArrayBuffer {
  if (data instanceof ArrayBuffer) return isBinary ? data : Buffer.from(data).toString("utf8");
  return isBinary ? data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer : data.toString("utf8");
}

/**
 * hono's view of a socket for one event, made per event rather than kept per connection
 * (the handlers here read `raw`; no URL is kept).
 */
function wsContext(ws: ServerSocket): WSContext<ServerSocket> {
  return new EventContext(ws) as unknown as WSContext<ServerSocket>;
}

class EventContext {
  readonly raw: ServerSocket;
  binaryType: BinaryType = "arraybuffer";
  url: URL | null = null;
  constructor(ws: ServerSocket) {
    this.raw = ws;
  }
  get protocol(): string | null {
    return this.raw.protocol;
  }
  get readyState(): WSReadyState {
    return this.raw.readyState as WSReadyState;
  }
  send(source: string | ArrayBuffer | Uint8Array, options?: { compress?: boolean }): void {
    this.raw.send(source, { compress: options?.compress });
  }
  close(code?: number, reason?: string): void {
    this.raw.close(code, reason);
  }
}

// Node 20 has no global CloseEvent or ErrorEvent.
const CloseEventLike: typeof CloseEvent = globalThis.CloseEvent ?? class extends Event {
  readonly code: number;
  readonly reason: string;
  readonly wasClean: boolean;
  constructor(type: string, init: CloseEventInit = {}) {
    super(type, init);
    this.code = init.code ?? 0;
    this.reason = init.reason ?? "";
    this.wasClean = init.wasClean ?? false;
  }
} as unknown as typeof CloseEvent;
const ErrorEventLike: typeof ErrorEvent = globalThis.ErrorEvent ?? class extends Event {
  readonly error: unknown;
  readonly message: string;
  constructor(type: string, init: ErrorEventInit = {}) {
    super(type, init);
    this.error = init.error ?? null;
    this.message = init.message ?? "";
  }
} as unknown as typeof ErrorEvent;

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
let corked: ServerSocket[] = [];

function uncorkAll(): void {
  const list = corked;
  corked = [];
  for (const socket of list) socket.uncorkTick();
}

/**
 * ws's socket for one connection, which is also the Room's WebSocketLike (ws's live readyState,
 * bufferedAmount and close) and holds the connection's handlers: one object per connection.
 */
class ServerSocket extends WebSocket implements WebSocketLike {
  /** The handlers of the route that accepted this connection. */
  chat: WSEvents<ServerSocket> | undefined = undefined;
  /** True while the TCP socket is corked for this tick's frames. */
  tickCorked = false;

  /** A text frame, framed once per broadcast (see above); ws's own send for anything else. */
  override send(data: any, options?: any, cb?: any): void {
    if (typeof data !== "string" || options !== undefined || cb !== undefined) {
      super.send(data, options, cb);
      return;
    }
    const frame = frameFor(data);
    const { _socket: tcp, _sender: sender } = this as unknown as WsInternals;
    if (tcp && !tcp.destroyed) {
      if (!this.tickCorked) {
        this.tickCorked = true;
        tcp.cork();
        if (corked.push(this) === 1) process.nextTick(uncorkAll);
      }
      // Straight to the TCP socket only while ws is open and holds nothing back (its queue is used
      // for compression and Blobs, neither of which this server sends): frames keep their call order.
      if (this.readyState === 1 && tcp.writable && sender && sender._bufferedBytes === 0 && sender._queue.length === 0) {
        tcp.write(frame);
        return;
      }
    }
    super.send(lastPayload, { binary: false });
  }

  /** Called once per tick in which this socket was corked. */
  uncorkTick(): void {
    this.tickCorked = false;
    const tcp = (this as unknown as WsInternals)._socket;
    if (tcp && !tcp.destroyed) tcp.uncork();
  }
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
