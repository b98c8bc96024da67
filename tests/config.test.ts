import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { flagName, helpText, OPTIONS, parseConfig, redactUrl } from "../src/config.ts";

describe("parseConfig()", () => {
  it("uses the documented defaults", () => {
    const r = parseConfig({}, []);
    assert.equal(r.kind, "config");
    if (r.kind !== "config") return;
    assert.equal(r.config.port, 8080);
    assert.equal(r.config.host, "0.0.0.0");
    assert.equal(r.config.historyReplay, 10);
    assert.equal(r.config.historyRetain, 1000);
    assert.equal(r.config.presenceGraceMs, 3000);
    assert.equal(r.config.maxText, 4096);
    assert.equal(r.config.logLevel, "info");
  });

  it("reads env vars, and flags win over them", () => {
    const r = parseConfig({ PORT: "9000", HISTORY_REPLAY: "3" }, ["--port", "9001", "--presence-grace-s=0.5"]);
    assert.equal(r.kind, "config");
    if (r.kind !== "config") return;
    assert.equal(r.config.port, 9001);
    assert.equal(r.config.historyReplay, 3);
    assert.equal(r.config.presenceGraceMs, 500);
  });

  it("explains an invalid value or an unknown flag", () => {
    const bad = parseConfig({ PORT: "http" }, []);
    assert.equal(bad.kind, "error");
    assert.match(bad.kind === "error" ? bad.message : "", /PORT is invalid/);
    const unknown = parseConfig({}, ["--nope"]);
    assert.match(unknown.kind === "error" ? unknown.message : "", /unknown option "--nope"/);
    assert.equal(parseConfig({ LOG_LEVEL: "loud" }, []).kind, "error");
    assert.equal(parseConfig({ HISTORY_RETAIN: "0" }, []).kind, "error");
  });

  it("REDIS_URL selects the Redis store; contradictions are refused", () => {
    const r = parseConfig({ REDIS_URL: "redis://:s3cret@127.0.0.1:6379/0" }, []);
    assert.equal(r.kind === "config" && r.config.store, "redis");
    assert.equal(r.kind === "config" && r.config.redisPresenceTtlMs, 15000);
    const explicit = parseConfig({}, ["--store", "redis", "--redis-url", "rediss://cache:6380"]);
    assert.equal(explicit.kind === "config" && explicit.config.redisUrl, "rediss://cache:6380");
    const noUrl = parseConfig({ STORE: "redis" }, []);
    assert.match(noUrl.kind === "error" ? noUrl.message : "", /STORE=redis needs REDIS_URL/);
    const both = parseConfig({ STORE: "file", REDIS_URL: "redis://127.0.0.1:6379" }, []);
    assert.match(both.kind === "error" ? both.message : "", /REDIS_URL is set but STORE=file/);
    assert.equal(parseConfig({ REDIS_URL: "http://127.0.0.1:6379" }, []).kind, "error");
  });

  it("redactUrl() hides a Redis password", () => {
    assert.equal(redactUrl("redis://user:s3cret@127.0.0.1:6379/0"), "redis://user:***@127.0.0.1:6379/0");
    assert.equal(redactUrl("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
  });

  it("--help lists every env var and flag", () => {
    const r = parseConfig({}, ["--help"]);
    assert.equal(r.kind, "help");
    const text = helpText();
    for (const o of OPTIONS) {
      assert.ok(text.includes(o.env), o.env);
      assert.ok(text.includes(flagName(o.env)), flagName(o.env));
    }
  });
});

describe("README configuration table", () => {
  it("lists every setting with its flag and default", async () => {
    const { readFile } = await import("node:fs/promises");
    const { fileURLToPath } = await import("node:url");
    const readme = await readFile(fileURLToPath(new URL("../README.md", import.meta.url).href), "utf8");
    for (const o of OPTIONS) {
      const row = `| \`${o.env}\` | \`${flagName(o.env)}\` | ${o.default} |`;
      assert.ok(readme.includes(row), `README is missing the row ${row}`);
    }
  });
});
