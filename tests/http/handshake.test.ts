import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { checkHandshake } from "../../src/http/handshake.ts";
import { checkName } from "../../src/http/identity.ts";
import { sequentialIds } from "../_helpers/fake-clock.ts";

const good = {
  upgrade: "websocket",
  connection: "keep-alive, Upgrade",
  "sec-websocket-version": "13",
  "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
};

describe("checkHandshake()", () => {
  it("accepts a valid RFC 6455 request", () => {
    assert.deepEqual(checkHandshake(new Headers(good)), { ok: true });
  });

  it("answers 426 without an Upgrade header and 400/426 for a broken handshake", () => {
    const without = (h: string) => {
      const copy: Record<string, string> = { ...good };
      delete copy[h];
      return checkHandshake(new Headers(copy));
    };
    assert.equal((without("upgrade") as { status: number }).status, 426);
    assert.equal((without("connection") as { status: number }).status, 400);
    assert.equal((without("sec-websocket-key") as { status: number }).status, 400);
    assert.equal((without("sec-websocket-version") as { status: number }).status, 426);
    const badKey = checkHandshake(new Headers({ ...good, "sec-websocket-key": "short" }));
    assert.equal(!badKey.ok && badKey.status, 400);
    const v99 = checkHandshake(new Headers({ ...good, "sec-websocket-version": "99" }));
    assert.equal(!v99.ok && v99.headers?.["Sec-WebSocket-Version"], "13");
  });
});

describe("checkName()", () => {
  it("trims, bounds and refuses control characters; generates guests", () => {
    const ids = sequentialIds();
    assert.deepEqual(checkName("  ana  ", ids), { ok: true, name: "ana" });
    assert.deepEqual(checkName(undefined, ids), { ok: true, name: "guest-0001" });
    assert.equal(checkName("x".repeat(32), ids).ok, true);
    assert.equal(checkName("😀".repeat(32), ids).ok, true);
    assert.equal(checkName("x".repeat(33), ids).ok, false);
    assert.equal(checkName("   ", ids).ok, false);
    assert.equal(checkName("a\u0007b", ids).ok, false);
    assert.equal(checkName("a\nb", ids).ok, false);
    assert.equal(checkName("a\u202Eb", ids).ok, false);
  });
});
