// Bun adapter: Bun.serve with hono/bun's upgradeWebSocket and websocket handler.

import type { ServerWebSocket } from "bun";
import { getConnInfo, upgradeWebSocket, websocket } from "hono/bun";
import type { WebSocketLike } from "../core/socket.ts";
import type { RunningServer, StartOptions } from "./types.ts";

export async function start(opts: StartOptions): Promise<RunningServer> {
  const { config } = opts;
  const app = opts.buildApp({
    upgradeWebSocket,
    // hono/bun makes a new context per event with a snapshot readyState; the raw
    // ServerWebSocket is the same object for the whole connection and live.
    toSocket: (ws) => bunSocket(ws.raw as ServerWebSocket<unknown>),
    clientIp: (c) => getConnInfo(c).remote.address ?? "unknown",
  });
  const server = Bun.serve({
    port: config.port,
    hostname: config.host,
    fetch: app.fetch,
    // Seconds a request may stay idle (also bounds slow header senders).
    idleTimeout: Math.min(255, Math.max(1, Math.round(config.headersTimeoutMs / 1000))),
    websocket: {
      ...websocket,
      maxPayloadLength: config.maxFrameBytes,
      perMessageDeflate: false,
      // Bun pings an idle peer and closes it when nothing comes back within idleTimeout.
      idleTimeout: Math.max(1, Math.round(config.heartbeatMs / 1000)),
      sendPings: true,
      // Never let Bun drop frames silently under backpressure: the Room measures and closes slow peers.
      backpressureLimit: 1024 * 1024 * 1024,
      closeOnBackpressureLimit: false,
    },
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

/**
 * Bun's ServerWebSocket as the Room's socket: `bufferedAmount` comes from
 * getBufferedAmount(), and a send Bun dropped (status 0) throws, so the Room
 * closes that peer instead of silently losing a message for it.
 */
function bunSocket(raw: ServerWebSocket<unknown>): WebSocketLike {
  return {
    get readyState() {
      return raw.readyState;
    },
    get bufferedAmount() {
      return raw.getBufferedAmount();
    },
    send(data: string) {
      if (raw.send(data) === 0) throw new Error("Bun dropped the frame");
    },
    close(code?: number, reason?: string) {
      raw.close(code, reason);
    },
  };
}
