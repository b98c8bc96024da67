// A tiny round-robin TCP load balancer (node:net only, so it runs on Node, Deno and Bun). No sticky
// sessions: each new connection goes to the next backend in turn that accepts it; a backend that refuses
// (or does not answer within connectTimeoutMs) is skipped for that connection, and when none accepts the
// client is closed. Bytes are piped both ways untouched (HTTP, WebSocket upgrades, anything). Errors on
// either side never reach the process: an error destroys both sides at once; a clean close of one side
// ends the other (so bytes already queued are delivered) and destroys both within 5 s.

import net from "node:net";

export interface Backend {
  host: string;
  port: number;
}

/** How long the other side may take to flush after one side of a pair closed. */
const LINGER_MS = 5000;

export interface BalancerOptions {
  backends: Backend[];
  /** Default 0: a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Give up on a backend that neither accepts nor refuses within this time (default 3000 ms). */
  connectTimeoutMs?: number;
  /** Told about each backend skipped and each client that no backend took (default: nothing). */
  onEvent?: (event: BalancerEvent) => void;
}

export type BalancerEvent =
  | { type: "skipped"; backend: Backend; error: string }
  | { type: "unrouted"; tried: number }
  | { type: "server_error"; error: string };

export interface RunningBalancer {
  port: number;
  host: string;
  /** Connections handed to each backend so far, in `backends` order. */
  routed: number[];
  /** Client connections currently open. */
  readonly open: number;
  /** Stops accepting and destroys every open connection. */
  close(): Promise<void>;
}

/** Connects to one backend; resolves with the socket once connected, rejects on error or timeout. */
function dial(backend: Backend, timeoutMs: number): { socket: net.Socket; ready: Promise<net.Socket> } {
  const socket = net.connect({ host: backend.host, port: backend.port });
  const ready = new Promise<net.Socket>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer in ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeListener("error", onError);
      resolve(socket);
    });
    const onError = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once("error", onError);
    // Destroyed by us while connecting (its client went away): settle now, not at the timeout.
    socket.once("close", () => {
      clearTimeout(timer);
      reject(new Error("closed while connecting"));
    });
  });
  return { socket, ready };
}

export function startBalancer(opts: BalancerOptions): Promise<RunningBalancer> {
  const backends = opts.backends.slice();
  if (backends.length === 0) return Promise.reject(new Error("startBalancer: no backends"));
  const host = opts.host ?? "127.0.0.1";
  const timeoutMs = opts.connectTimeoutMs ?? 3000;
  const emit = (e: BalancerEvent) => {
    try {
      opts.onEvent?.(e);
    } catch { /* a listener's bug must not take the balancer down */ }
  };
  const routed = backends.map(() => 0);
  /** Destroys one client and its backend connection, for every open client. */
  const open = new Set<() => void>();
  let cursor = 0;

  const handle = async (client: net.Socket) => {
    let upstream: net.Socket | undefined;
    let dialing: net.Socket | undefined;
    let finished = false;
    let linger: ReturnType<typeof setTimeout> | undefined;
    const destroyBoth = () => {
      if (finished) return;
      finished = true;
      clearTimeout(linger);
      client.destroy();
      upstream?.destroy();
      dialing?.destroy();
      open.delete(destroyBoth);
    };
    // One side closed cleanly: let the other flush what it already holds, then destroy both, within
    // LINGER_MS whatever the peer does.
    const closed = (other: net.Socket | undefined) => () => {
      if (!other || other.destroyed) return destroyBoth();
      other.end();
      // Unpiped now: read on (into nowhere) so that the peer's FIN is seen and "close" follows.
      other.resume();
      linger ??= setTimeout(destroyBoth, LINGER_MS);
    };
    open.add(destroyBoth);
    client.on("error", destroyBoth);
    client.on("close", () => closed(upstream)());
    client.setNoDelay(true);
    // The client's first bytes wait in its (paused) readable buffer until a backend is connected.
    client.pause();

    const start = cursor;
    cursor = (cursor + 1) % backends.length;
    for (let i = 0; i < backends.length; i++) {
      if (finished) return;
      const index = (start + i) % backends.length;
      const backend = backends[index]!;
      const attempt = dial(backend, timeoutMs);
      dialing = attempt.socket;
      let socket: net.Socket;
      try {
        socket = await attempt.ready;
      } catch (err) {
        dialing = undefined;
        emit({ type: "skipped", backend, error: (err as Error).message });
        continue;
      }
      dialing = undefined;
      if (finished) {
        socket.destroy();
        return;
      }
      upstream = socket;
      routed[index]!++;
      // After skipping, carry on after the backend that took it, unless others moved the cursor meanwhile.
      if (i > 0 && cursor === (start + 1) % backends.length) cursor = (index + 1) % backends.length;
      socket.setNoDelay(true);
      socket.on("error", destroyBoth);
      socket.on("close", closed(client));
      client.pipe(socket);
      socket.pipe(client);
      client.resume();
      return;
    }
    emit({ type: "unrouted", tried: backends.length });
    destroyBoth();
  };

  const server = net.createServer((client) => {
    handle(client).catch(() => client.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, host, () => {
      server.removeListener("error", reject);
      // Accept errors (EMFILE and the like) after startup: report, keep serving.
      server.on("error", (err) => emit({ type: "server_error", error: err.message }));
      const addr = server.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      resolve({
        port,
        host,
        routed,
        get open() {
          return open.size;
        },
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            for (const destroy of [...open]) destroy();
          }),
      });
    });
  });
}
