// The upgrade handshake is judged the same way on every runtime, whatever each runtime would do alone.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { rawGet, rawRequest, UPGRADE_HEADERS } from "../_helpers/raw-http.ts";
import { selectedRuntimes, startServer, type RunningChild } from "../_helpers/server.ts";

const WS_FRAME_TEXT = (rest: Buffer) => rest.toString("utf8");

for (const runtime of selectedRuntimes()) {
  describe(`handshake on ${runtime}`, () => {
    let server: RunningChild;
    before(async () => {
      server = await startServer(runtime);
    });
    after(async () => {
      await server.stop();
    });

    it("accepts a mixed-case Upgrade: WebSocket (RFC 6455 tokens are case-insensitive)", async () => {
      const r = await rawRequest(server.port, rawGet("/ws?name=casey", { ...UPGRADE_HEADERS, Upgrade: "WebSocket" }), 800);
      assert.equal(r.status, 101, r.statusLine);
      assert.match(WS_FRAME_TEXT(r.rest), /"type":"welcome"/);
    });

    it("echoes the first offered subprotocol, with or without a space after the comma", async () => {
      for (const offer of ["a,b", "a, b"]) {
        const r = await rawRequest(server.port, rawGet("/ws", { ...UPGRADE_HEADERS, "Sec-WebSocket-Protocol": offer }), 800);
        assert.equal(r.status, 101, `${offer}: ${r.statusLine}`);
        assert.equal(r.headers["sec-websocket-protocol"], "a", offer);
      }
    });

    it("refuses a bad room or name on a real upgrade with a readable body", async () => {
      const room = await rawRequest(server.port, rawGet("/ws/NO", UPGRADE_HEADERS), 800);
      assert.equal(room.status, 400, room.statusLine);
      assert.match(room.rest.toString("utf8"), /Bad room name/);
      const name = await rawRequest(server.port, rawGet(`/ws?name=${"x".repeat(33)}`, UPGRADE_HEADERS), 800);
      assert.equal(name.status, 400, name.statusLine);
      assert.match(name.rest.toString("utf8"), /name is longer than 32/);
    });

    it("answers an upgrade request to a non-WebSocket path as a plain request", async () => {
      const r = await rawRequest(server.port, rawGet("/healthz", UPGRADE_HEADERS), 800);
      assert.equal(r.status, 200, r.statusLine);
      assert.match(r.rest.toString("utf8"), /"status":"ok"/);
    });

    it("answers an Upgrade for another protocol (h2c) like a plain request, never leaving the socket hanging", async () => {
      const page = await rawRequest(server.port, rawGet("/healthz", { Connection: "Upgrade", Upgrade: "h2c" }), 1500);
      assert.equal(page.status, 200, page.statusLine || "no answer within 1.5 s");
      assert.match(page.rest.toString("utf8"), /"status":"ok"/);
      const ws = await rawRequest(server.port, rawGet("/ws", { Connection: "Upgrade", Upgrade: "h2c" }), 1500);
      assert.ok(ws.status === 400 || ws.status === 426, ws.statusLine || "no answer within 1.5 s");
    });

    const refusals: Array<[string, Record<string, string>, number]> = [
      ["a missing Sec-WebSocket-Key", { ...UPGRADE_HEADERS, "Sec-WebSocket-Key": "" }, 400],
      ["a malformed Sec-WebSocket-Key", { ...UPGRADE_HEADERS, "Sec-WebSocket-Key": "not-base64-of-16-bytes" }, 400],
      ["Sec-WebSocket-Version 99", { ...UPGRADE_HEADERS, "Sec-WebSocket-Version": "99" }, 426],
      ["a missing Sec-WebSocket-Version", { ...UPGRADE_HEADERS, "Sec-WebSocket-Version": "" }, 426],
      ["Connection without Upgrade", { ...UPGRADE_HEADERS, Connection: "keep-alive" }, 400],
    ];
    for (const [label, headers, status] of refusals) {
      it(`refuses ${label} with ${status}, and the server still serves`, async () => {
        const clean = Object.fromEntries(Object.entries(headers).filter(([, v]) => v !== ""));
        const r = await rawRequest(server.port, rawGet("/ws", clean), 800);
        assert.equal(r.status, status, r.statusLine);
        assert.match(r.rest.toString("utf8"), /^(Bad handshake|Upgrade required): .+/, "a readable body");
        const health = await fetch(`${server.url}/healthz`);
        assert.equal(health.status, 200);
      });
    }
  });
}
