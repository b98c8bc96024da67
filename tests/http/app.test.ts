import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { WSContext } from "hono/ws";
import { FakeSocket } from "../_helpers/fake-socket.ts";
import { makeTestApp, openOn } from "../_helpers/test-app.ts";

const WS_HEADERS = {
  upgrade: "websocket",
  connection: "Upgrade",
  "sec-websocket-version": "13",
  "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
};

function setup(maxRooms = 100, maxConnections = 0, maxPerIp = 0) {
  return makeTestApp({ maxRooms, maxConnections, maxPerIp });
}

const open = openOn;

describe("createApp()", () => {
  it("serves the page as HTML with security headers", async () => {
    const { app } = await setup();
    const res = await app.request("/");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/html/);
    assert.match(res.headers.get("content-security-policy") ?? "", /default-src 'self'/);
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    assert.match(await res.text(), /<!doctype html>/i);
    const etag = res.headers.get("etag")!;
    const again = await app.request("/", { headers: { "if-none-match": etag } });
    assert.equal(again.status, 304);
  });

  it("puts the security headers on refused upgrades but not on the upgrade itself", async () => {
    const { app, upgraded } = await setup();
    const refused = await app.request("/ws/Bad%20Room", { headers: WS_HEADERS });
    assert.equal(refused.status, 400);
    assert.equal(refused.headers.get("x-content-type-options"), "nosniff");
    assert.match(refused.headers.get("content-security-policy") ?? "", /default-src 'self'/);
    const accepted = await app.request("/ws/general?name=ann", { headers: WS_HEADERS });
    assert.equal(upgraded.length, 1);
    assert.equal(await accepted.text(), "upgraded");
    assert.equal(accepted.headers.get("content-security-policy"), null);
    assert.equal(accepted.headers.get("x-content-type-options"), null);
  });

  it("answers /healthz with status ok as JSON", async () => {
    const { app } = await setup();
    const res = await app.request("/healthz");
    assert.equal(res.status, 200);
    const body = await res.json() as Record<string, unknown>;
    assert.equal(body.status, "ok");
    assert.equal(body.connections, 0);
  });

  it("answers 404 with a text body for an unknown path", async () => {
    const { app } = await setup();
    for (const path of ["/nope", "/../package.json", "/static/index.html", "/.env"]) {
      const res = await app.request(path);
      assert.equal(res.status, 404, path);
      assert.match(await res.text(), /Not found/);
    }
  });

  it("answers 426 with a text body to a plain GET on /ws and /ws/:room", async () => {
    const { app } = await setup();
    for (const path of ["/ws", "/ws/general"]) {
      const res = await app.request(path);
      assert.equal(res.status, 426, path);
      assert.equal(res.headers.get("upgrade"), "websocket");
      assert.match(await res.text(), /WebSocket/);
    }
  });

  it("answers 400 to a bad room name or a bad nickname, before upgrading", async () => {
    const { app, upgraded } = await setup();
    for (const path of ["/ws/Lobby", `/ws/${"a".repeat(65)}`, "/ws/a.b", "/ws/", "/ws/a/b", "/ws/%ZZ"]) {
      const res = await app.request(path, { headers: WS_HEADERS });
      assert.equal(res.status, 400, path);
      assert.match(await res.text(), /room name/);
    }
    for (const name of ["", "%20%20", "x".repeat(33), "a%07b"]) {
      const res = await app.request(`/ws?name=${name}`, { headers: WS_HEADERS });
      assert.equal(res.status, 400, name);
      assert.match(await res.text(), /name/);
    }
    const badKey = await app.request("/ws", { headers: { ...WS_HEADERS, "sec-websocket-key": "abc" } });
    assert.equal(badKey.status, 400);
    assert.equal(upgraded.length, 0);
  });

  it("upgrades /ws into the lobby and /ws/:room into that room, as the named user", async () => {
    const { app, rooms, upgraded } = await setup();
    assert.equal((await app.request("/ws?name=%20ana%20", { headers: WS_HEADERS })).status, 200);
    assert.equal((await app.request("/ws/dev-team", { headers: WS_HEADERS })).status, 200);
    const a = new FakeSocket();
    const b = new FakeSocket();
    open(upgraded[0]!, a);
    open(upgraded[1]!, b);
    assert.deepEqual(a.frames()[0]!.room, "lobby");
    assert.deepEqual(a.frames()[0]!.user, "ana");
    assert.deepEqual(b.frames()[0]!.room, "dev-team");
    assert.match(b.frames()[0]!.user, /^guest-[0-9a-f]{4}$/);
    assert.equal(rooms.connectionCount, 2);
    upgraded[0]!.onClose?.(Object.assign(new Event("close"), { code: 1000 }) as CloseEvent, new WSContext({ send() {}, close() {}, readyState: 3 }));
    assert.equal(rooms.connectionCount, 1);
  });

  it("answers 503 when no more rooms can be made", async () => {
    const { app, upgraded } = await setup(1);
    assert.equal((await app.request("/ws/one", { headers: WS_HEADERS })).status, 200);
    open(upgraded[0]!, new FakeSocket());
    const res = await app.request("/ws/two", { headers: WS_HEADERS });
    assert.equal(res.status, 503);
    assert.match(await res.text(), /too many rooms/);
  });
});

describe("createApp() limits and metrics", () => {
  it("answers 429 past the per-IP limit and 503 past the total, before upgrading", async () => {
    const { app, upgraded } = await setup(100, 3, 2);
    const from = (ip: string) => ({ headers: { ...WS_HEADERS, "x-test-ip": ip } });
    assert.equal((await app.request("/ws", from("10.0.0.1"))).status, 200);
    assert.equal((await app.request("/ws", from("10.0.0.1"))).status, 200);
    const tooMany = await app.request("/ws", from("10.0.0.1"));
    assert.equal(tooMany.status, 429);
    assert.match(await tooMany.text(), /Too many connections from your address/);
    assert.equal((await app.request("/ws", from("10.0.0.2"))).status, 200);
    const full = await app.request("/ws", from("10.0.0.3"));
    assert.equal(full.status, 503);
    assert.match(await full.text(), /too many connections/);
    assert.equal(upgraded.length, 3);
  });

  it("gives the slot back when the connection closes", async () => {
    const { app, upgraded, gate } = await setup(100, 1, 0);
    assert.equal((await app.request("/ws", { headers: WS_HEADERS })).status, 200);
    open(upgraded[0]!, new FakeSocket());
    assert.equal((await app.request("/ws", { headers: WS_HEADERS })).status, 503);
    upgraded[0]!.onClose?.(Object.assign(new Event("close"), { code: 1000 }) as CloseEvent, new WSContext({ send() {}, close() {}, readyState: 3 }));
    assert.equal(gate.total, 0);
    assert.equal((await app.request("/ws", { headers: WS_HEADERS })).status, 200);
  });

  it("serves Prometheus metrics with connections, rejections and closes by reason", async () => {
    const { app, upgraded } = await setup(100, 0, 0);
    await app.request("/ws/BAD", { headers: WS_HEADERS });
    await app.request("/ws", { headers: WS_HEADERS });
    open(upgraded[0]!, new FakeSocket());
    const res = await app.request("/metrics");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const body = await res.text();
    assert.match(body, /^shootawall_connections 1$/m);
    assert.match(body, /^shootawall_rejected_upgrades_total\{reason="bad_room"\} 1$/m);
    assert.match(body, /^shootawall_closes_total\{reason="heartbeat"\} 0$/m);
    assert.match(body, /^shootawall_broadcast_fanout_seconds_bucket\{le="\+Inf"\} \d+$/m);
    assert.match(body, /^# TYPE shootawall_broadcast_fanout_seconds histogram$/m);
  });
});
