// What main.ts hands a runtime adapter, and what the adapter hands back.

import type { Context, Hono } from "hono";
import type { UpgradeWebSocket, WSContext } from "hono/ws";
import type { Config } from "../config.ts";
import type { Logger } from "../core/deps.ts";
import type { Fanout, LeaveReason } from "../core/room.ts";
import type { WebSocketLike } from "../core/socket.ts";

/** What each runtime adapter gives the app. */
export interface EdgeParts {
  upgradeWebSocket: UpgradeWebSocket<any>;
  /** The runtime's live socket behind hono's per-event context, as the Room sees it. */
  toSocket: (ws: WSContext) => WebSocketLike;
  /** The client's IP address. */
  clientIp: (c: Context) => string;
  /** Why the runtime closed a socket, where it can tell (e.g. "heartbeat"). */
  closeReason?: (ws: WSContext, code: number) => LeaveReason | undefined;
  /** Native pub/sub for room fan-out, where the runtime has it (Bun). */
  fanout?: Fanout;
}

export interface StartOptions {
  config: Config;
  log: Logger;
  /** Builds the Hono app from the adapter's WebSocket pieces. */
  buildApp: (edge: EdgeParts) => Hono<any>;
  /** Called once on SIGINT/SIGTERM: closes sockets with 1001 and flushes the store. */
  onShutdown: () => Promise<void>;
}

export interface RunningServer {
  port: number;
  /** Stops listening and waits (bounded) for open connections to finish. */
  stop(): Promise<void>;
}

export type Runtime = "node" | "deno" | "bun";
