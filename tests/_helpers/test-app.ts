// The Hono app over an in-memory room registry and a stand-in upgrade, for app.request() tests.

import { defineWebSocketHelper, WSContext, type WSEvents } from "hono/ws";
import { silentLogger } from "../../src/core/deps.ts";
import { ConnectionGate } from "../../src/core/gate.ts";
import { Metrics } from "../../src/core/metrics.ts";
import { RoomRegistry } from "../../src/core/rooms.ts";
import type { WebSocketLike } from "../../src/core/socket.ts";
import { createApp } from "../../src/http/app.ts";
import type { AuthService } from "../../src/http/auth/service.ts";
import { loadStaticFiles, STATIC_DIR } from "../../src/http/static.ts";
import { FakeClock, sequentialIds } from "./fake-clock.ts";
import type { FakeSocket } from "./fake-socket.ts";

export interface TestAppOptions {
  maxRooms?: number;
  maxConnections?: number;
  maxPerIp?: number;
  maxFrameBytes?: number;
  auth?: AuthService;
}

export async function makeTestApp(opts: TestAppOptions = {}) {
  const ids = sequentialIds();
  const clock = new FakeClock();
  const metrics = new Metrics();
  const gate = new ConnectionGate(opts.maxConnections ?? 0, opts.maxPerIp ?? 0, clock);
  const rooms = new RoomRegistry(
    { historyReplay: 10, historyRetain: 100, presenceGraceMs: 0, limits: { maxText: 100, maxFrameBytes: opts.maxFrameBytes ?? 1000 } },
    { clock, ids, log: silentLogger, metrics },
    opts.maxRooms ?? 100,
  );
  const upgraded: WSEvents[] = [];
  // Stands in for a runtime's upgrade: records the events and answers 200 (Response cannot carry 101).
  const upgradeWebSocket = defineWebSocketHelper((_c, events) => {
    upgraded.push(events);
    return new Response("upgraded", { status: 200 });
  });
  const app = createApp({
    rooms,
    ids,
    log: silentLogger,
    metrics,
    gate,
    clientIp: (c) => c.req.header("x-test-ip") ?? "198.51.100.7",
    staticFiles: await loadStaticFiles(STATIC_DIR),
    runtime: "test",
    upgradeWebSocket,
    toSocket: (ws) => ws.raw as WebSocketLike,
    ...(opts.auth ? { auth: opts.auth } : {}),
  });
  return { app, rooms, upgraded, gate, clock, metrics };
}

/** Runs a recorded upgrade's onOpen on a fake socket; returns the context its other events take. */
export function openOn(events: WSEvents, socket: FakeSocket): WSContext {
  const ctx = new WSContext({ send: (d) => socket.send(String(d)), close: () => {}, readyState: 1, raw: socket });
  events.onOpen?.(new Event("open"), ctx);
  return ctx;
}
