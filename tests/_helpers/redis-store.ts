// RedisStore instances for tests: one per simulated server instance, on a real redis-server, each
// test on its own key prefix so that tests sharing one Redis never see each other's rooms.

import { silentLogger } from "../../src/core/deps.ts";
import { RedisStore, type RedisStoreOptions } from "../../src/storage/redis.ts";
import type { RunningRedis } from "./redis.ts";

let epochs = 0;
export const newEpoch = (): string => `E${Date.now().toString(36)}${++epochs}`;

let prefixes = 0;
/** A key prefix no other test uses. */
export const freshPrefix = (tag = "t"): string => `${tag}${Date.now().toString(36)}${++prefixes}:`;

/** A store on `redis` under `prefix`, with test-sized defaults (history 50, presence TTL 60 s, no grace). */
export function connectStore(redis: RunningRedis, prefix: string, extra: Partial<RedisStoreOptions> = {}): Promise<RedisStore> {
  return RedisStore.connect({
    url: redis.url,
    prefix,
    retain: 50,
    presenceTtlMs: 60_000,
    presenceGraceMs: 0,
    log: silentLogger,
    newEpoch,
    connectTimeoutMs: 3000,
    ...extra,
  });
}

/** Waits until `check()` holds, polling every 10 ms; throws after `ms`. */
export async function until(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
