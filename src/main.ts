// Entry point on every runtime: read the config, build the rooms, start the runtime's server.

import { type Config, parseConfig, redactUrl } from "./config.ts";
import { jsonLogger, type Logger, randomIds, systemClock } from "./core/deps.ts";
import { ConnectionGate } from "./core/gate.ts";
import { Metrics } from "./core/metrics.ts";
import { UserBuckets } from "./core/rate-limit.ts";
import type { RoomDeps } from "./core/room.ts";
import { RoomRegistry } from "./core/rooms.ts";
import { FileStore } from "./storage/file.ts";
import { MemoryStore } from "./storage/memory.ts";
import type { Store } from "./storage/store.ts";
import { CloseCode } from "./core/socket.ts";
import { createApp } from "./http/app.ts";
import { createAuth } from "./http/auth/service.ts";
import { loadStaticFiles, STATIC_DIR } from "./http/static.ts";
import { detectRuntime } from "./runtime/detect.ts";
import type { RunningServer, StartOptions } from "./runtime/types.ts";

declare const process: { env: Record<string, string | undefined>; argv: string[]; exitCode?: number };

async function main(): Promise<void> {
  const parsed = parseConfig(process.env, process.argv.slice(2));
  if (parsed.kind === "help") {
    console.log(parsed.text);
    return;
  }
  if (parsed.kind === "error") {
    console.error(parsed.message);
    process.exitCode = 2;
    return;
  }
  const { config } = parsed;
  const runtime = detectRuntime();
  const log = jsonLogger(config.logLevel, {});
  const store = await openStore(config, log);
  const auth = await createAuth(config, { log, shared: store.sharedAuth?.() });
  if (!auth.ok) {
    console.error(auth.message);
    process.exitCode = 2;
    await store.close();
    return;
  }
  const metrics = new Metrics();
  const rateLimit = { perSecond: config.rateLimitPerS, burst: config.rateLimitBurst };
  const roomDeps: RoomDeps = { clock: systemClock, ids: randomIds, log, metrics, users: new UserBuckets(rateLimit, systemClock) };
  const rooms = new RoomRegistry(
    {
      historyReplay: config.historyReplay,
      historyRetain: config.historyRetain,
      presenceGraceMs: config.presenceGraceMs,
      limits: { maxText: config.maxText, maxFrameBytes: config.maxFrameBytes },
      slowClientBytes: config.slowClientBytes,
      rateLimit,
    },
    roomDeps,
    config.maxRooms,
    store,
  );
  const gate = new ConnectionGate(config.maxConnections, config.maxConnectionsPerIp, systemClock);
  const staticFiles = await loadStaticFiles(STATIC_DIR);
  const options: StartOptions = {
    config,
    log,
    buildApp: (edge) => {
      // A runtime with native pub/sub (Bun) hands it over; the rooms then publish once per broadcast.
      if (edge.fanout) roomDeps.fanout = edge.fanout;
      return createApp({ rooms, ids: randomIds, log, metrics, gate, staticFiles, runtime, auth: auth.auth, ...edge });
    },
    onShutdown: async () => {
      log.info("shutdown", { connections: rooms.connectionCount });
      rooms.closeAll(CloseCode.goingAway, "server shutting down");
      await rooms.closeStore().catch((err) => log.error("store_close_failed", { error: String(err) }));
    },
  };
  let server: RunningServer;
  switch (runtime) {
    case "deno":
      // DENO_HTTP=node serves through Deno's node:http and ws instead of Deno.serve: it closes the
      // gaps Deno.serve leaves open (README, "Runtime differences").
      server = config.denoHttp === "node"
        ? await (await import("./runtime/node.ts")).start(options)
        : await (await import("./runtime/deno.ts")).start(options);
      break;
    case "bun":
      server = await (await import("./runtime/bun.ts")).start(options);
      break;
    default:
      server = await (await import("./runtime/node.ts")).start(options);
  }
  const shownHost = config.host === "0.0.0.0" || config.host === "::" ? "127.0.0.1" : config.host;
  log.info("listening", {
    runtime,
    ...(runtime === "deno" ? { deno_http: config.denoHttp } : {}),
    host: config.host,
    port: server.port,
    url: `http://${shownHost}:${server.port}/`,
    store: config.store,
    auth: config.auth,
    ...(config.store === "file" ? { fsync: config.fsync } : {}),
    ...(config.store === "redis" ? { redis: redactUrl(config.redisUrl), redis_prefix: config.redisPrefix } : {}),
  });
}

async function openStore(config: Config, log: Logger): Promise<Store> {
  switch (config.store) {
    case "memory":
      return new MemoryStore();
    case "file":
      return new FileStore({ dir: config.dataDir, fsync: config.fsync, retain: config.historyRetain, log });
    case "redis": {
      // Loaded only when used, so the other stores never load a Redis client.
      const { RedisStore } = await import("./storage/redis.ts");
      return await RedisStore.connect({
        url: config.redisUrl,
        prefix: config.redisPrefix,
        retain: config.historyRetain,
        presenceTtlMs: config.redisPresenceTtlMs,
        presenceGraceMs: config.presenceGraceMs,
        newEpoch: randomIds.epoch,
        log,
      });
    }
  }
}

await main();
