// The test helper's redis-server (tests/_helpers/redis.ts): durable keeps an acknowledged write through a
// SIGKILL, not durable forgets everything on restart, and stop() removes the temporary folder.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startRedis } from "../_helpers/redis.ts";

describe("redis-server test helper", () => {
  it("durable: a SET survives kill -9 and restart on the same port and folder", async () => {
    const redis = await startRedis({ durable: true });
    let current = redis;
    try {
      assert.match(redis.url, /^redis:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(await redis.cli("CONFIG", "GET", "appendfsync"), "appendfsync\nalways");
      assert.equal(await redis.cli("SET", "shootawall:test", "kept"), "OK");
      await redis.kill9();
      assert.equal(redis.proc.signalCode, "SIGKILL");
      current = await redis.restart();
      assert.equal(current.port, redis.port);
      assert.equal(current.dir, redis.dir);
      assert.equal(current.durable, true);
      assert.notEqual(current.proc.pid, redis.proc.pid);
      assert.equal(await current.cli("GET", "shootawall:test"), "kept");
      assert.equal(await current.cli("DBSIZE"), "1");
    } finally {
      await current.stop();
    }
    assert.equal(existsSync(redis.dir), false, "stop() removes the temporary folder");
  });

  it("not durable: a SET is gone after kill -9 and restart", async () => {
    const redis = await startRedis();
    let current = redis;
    try {
      assert.equal(redis.durable, false);
      assert.equal(await redis.cli("CONFIG", "GET", "appendonly"), "appendonly\nno");
      assert.equal(await redis.cli("SET", "shootawall:test", "lost"), "OK");
      assert.equal(await redis.cli("DBSIZE"), "1");
      await redis.kill9();
      current = await redis.restart();
      assert.equal(current.port, redis.port);
      assert.equal(await current.cli("GET", "shootawall:test"), "");
      assert.equal(await current.cli("DBSIZE"), "0");
      await assert.rejects(current.cli("NOSUCHCOMMAND"), /unknown command/);
    } finally {
      await current.stop();
    }
    assert.equal(existsSync(redis.dir), false);
  });

  it("durable in a given folder: stop() keeps the folder, restart() brings the data back", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "shootawall-redis-given-")), "made-by-helper");
    try {
      const redis = await startRedis({ durable: true, dir });
      assert.equal(redis.dir, dir);
      assert.equal(await redis.cli("RPUSH", "shootawall:list", "a", "b"), "2");
      await redis.stop();
      assert.equal(existsSync(dir), true, "a given folder is never removed");
      const again = await redis.restart();
      try {
        assert.equal(await again.cli("LRANGE", "shootawall:list", "0", "-1"), "a\nb");
      } finally {
        await again.stop();
      }
    } finally {
      rmSync(join(dir, ".."), { recursive: true, force: true });
    }
  });
});
