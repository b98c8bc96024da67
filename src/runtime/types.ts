// What main.ts hands a runtime adapter, and what the adapter hands back.

import type { Hono } from "hono";
import type { UpgradeWebSocket, WSContext } from "hono/ws";
import type { Config } from "../config.ts";
import type { Logger } from "../core/deps.ts";
import type { WebSocketLike } from "../core/socket.ts";

export interface EdgeParts {
  upgradeWebSocket: UpgradeWebSocket<any>;
  toSocket: (ws: WSContext) => WebSocketLike;
}

export interface StartOptions {
  config: Config;
  log: Logger;
  /** Builds the Hono app from the adapter's WebSocket pieces. */
  buildApp: (edge: EdgeParts) => Hono<any>;
  /** Called once on SIGINT/SIGTERM, before the adapter stops listening. */
  onShutdown: () => void;
}

export interface RunningServer {
  port: number;
  /** Stops listening and waits (bounded) for open connections to finish. */
  stop(): Promise<void>;
}

export type Runtime = "node" | "deno" | "bun";
