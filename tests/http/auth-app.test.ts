// The app with auth on, in process: what each mode lets through before the upgrade, the /auth/*
// routes, the identity that reaches the room, and the auth frame on a live connection.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../../src/core/deps.ts";
import { type AuthService, createAuth } from "../../src/http/auth/service.ts";
import type { AuthSettings } from "../../src/http/auth/types.ts";
import { hashPassword } from "../../src/http/auth/passwords.ts";
import { usersPath, writeUsers } from "../../src/http/auth/users-file.ts";
import { mintToken } from "../../scripts/token.ts";
import { FakeSocket } from "../_helpers/fake-socket.ts";
import { makeTestApp, openOn } from "../_helpers/test-app.ts";

const SECRET = "app-test-secret-0123456789-abcdefghijkl";
const WS_HEADERS = {
  upgrade: "websocket",
  connection: "Upgrade",
  "sec-websocket-version": "13",
  "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
};
const SELF = "http://localhost";
const SETTINGS: AuthSettings = {
  auth: "open",
  authSecret: "",
  authAudience: "",
  authIssuer: "",
  jwksFile: "",
  jwksUrl: "",
  allowedOrigins: "",
  dataDir: "./data",
  sessionTtlMs: 3_600_000,
  ticketTtlMs: 30_000,
  loginRatePerMin: 5,
};

async function setup(settings: Partial<AuthSettings>) {
  const made = await createAuth({ ...SETTINGS, ...settings }, { log: silentLogger });
  if (!made.ok) throw new Error(made.message);
  const auth: AuthService = made.auth;
  const { app, upgraded, metrics } = await makeTestApp({ maxFrameBytes: 10000, auth });
  /** Opens the last upgraded connection on a fake socket. */
  const openLast = () => {
    const socket = new FakeSocket();
    const events = upgraded.at(-1)!;
    const ctx = openOn(events, socket);
    const message = (data: string) => events.onMessage?.(new MessageEvent("message", { data }), ctx);
    const close = () => events.onClose?.(Object.assign(new Event("close"), { code: 1000 }) as CloseEvent, ctx);
    return { socket, message, close };
  };
  return { app, auth, upgraded, openLast, metrics };
}

const bearer = (token: string) => ({ "sec-websocket-protocol": `shootawall.v1, bearer.${token}` });

describe("AUTH=open", () => {
  it("keeps ?name=, refuses a foreign Origin with 403, and allows the same origin or none", async () => {
    const { app, openLast } = await setup({});
    const foreign = await app.request("/ws?name=ana", { headers: { ...WS_HEADERS, origin: "https://evil.example" } });
    assert.equal(foreign.status, 403);
    assert.match(await foreign.text(), /^Forbidden: origin "https:\/\/evil\.example" is not allowed/);
    assert.equal((await app.request("/ws?name=ana", { headers: { ...WS_HEADERS, origin: SELF } })).status, 200);
    assert.equal(openLast().socket.frames()[0]!.user, "ana");
    assert.equal((await app.request("/ws?name=bo", { headers: WS_HEADERS })).status, 200);
  });

  it("honours ALLOWED_ORIGINS, says the mode on /auth/me, and has no login", async () => {
    const { app } = await setup({ allowedOrigins: "https://app.example" });
    assert.equal((await app.request("/ws", { headers: { ...WS_HEADERS, origin: "https://app.example" } })).status, 200);
    assert.equal((await app.request("/ws", { headers: { ...WS_HEADERS, origin: SELF } })).status, 403);
    assert.deepEqual(await (await app.request("/auth/me")).json(), { mode: "open", user: null });
    assert.equal((await app.request("/auth/login", { method: "POST" })).status, 404);
  });

  it("answers an auth frame with bad_request", async () => {
    const { app, openLast } = await setup({});
    await app.request("/ws", { headers: WS_HEADERS });
    const { socket, message } = openLast();
    message(JSON.stringify({ type: "auth", token: "x" }));
    assert.deepEqual(socket.ofType("error")[0], { type: "error", code: "bad_request", message: "Cannot accept auth: this server does not use tokens" });
  });
});

describe("AUTH=jwt", () => {
  const mint = (o: Partial<Parameters<typeof mintToken>[0]> = {}) =>
    mintToken({ sub: "u1", name: "Ana", key: { secret: SECRET }, ...o });

  it("refuses a start without keys, or with a short secret", async () => {
    const none = await createAuth({ ...SETTINGS, auth: "jwt" }, { log: silentLogger });
    assert.ok(!none.ok && /AUTH=jwt needs AUTH_SECRET/.test(none.message));
    const short = await createAuth({ ...SETTINGS, auth: "jwt", authSecret: "short" }, { log: silentLogger });
    assert.ok(!short.ok && /too short/.test(short.message));
    const origins = await createAuth({ ...SETTINGS, allowedOrigins: "nope" }, { log: silentLogger });
    assert.ok(!origins.ok && /ALLOWED_ORIGINS/.test(origins.message));
  });

  it("takes the user from the token, never from ?name=", async () => {
    const { app, openLast } = await setup({ auth: "jwt", authSecret: SECRET });
    const res = await app.request("/ws?name=mallory", { headers: { ...WS_HEADERS, ...bearer(await mint()) } });
    assert.equal(res.status, 200);
    const { socket, message, close } = openLast();
    assert.equal(socket.frames()[0]!.user, "Ana");
    message(JSON.stringify({ type: "message", text: "hi", nonce: 1 }));
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(socket.ofType("message")[0]?.user, "Ana");
    close();
  });

  it("answers 401 with a readable body to no, forged or expired credentials, and 400 to a bare bearer offer", async () => {
    const { app } = await setup({ auth: "jwt", authSecret: SECRET });
    const none = await app.request("/ws", { headers: WS_HEADERS });
    assert.equal(none.status, 401);
    assert.match(await none.text(), /^Unauthorized: send a token/);
    const forged = await app.request("/ws", { headers: { ...WS_HEADERS, ...bearer(await mint({ key: { secret: `${SECRET}!` } })) } });
    assert.equal(forged.status, 401);
    assert.match(await forged.text(), /signature is invalid/);
    const expired = await app.request("/ws", { headers: { ...WS_HEADERS, ...bearer(await mint({ ttl: -30 })) } });
    assert.match(await expired.text(), /^Unauthorized: token expired/);
    const bare = await app.request("/ws", { headers: { ...WS_HEADERS, "sec-websocket-protocol": `bearer.${await mint()}` } });
    assert.equal(bare.status, 400);
    assert.match(await bare.text(), /offer "shootawall.v1"/);
  });

  it("answers 403 to a room outside the token's rooms and to a foreign Origin", async () => {
    const { app } = await setup({ auth: "jwt", authSecret: SECRET });
    const token = await mint({ rooms: ["team-*"] });
    assert.equal((await app.request("/ws/team-red", { headers: { ...WS_HEADERS, ...bearer(token) } })).status, 200);
    const lobby = await app.request("/ws", { headers: { ...WS_HEADERS, ...bearer(token) } });
    assert.equal(lobby.status, 403);
    assert.match(await lobby.text(), /^Forbidden: Ana may not join room "lobby"/);
    const foreign = await app.request("/ws/team-red", { headers: { ...WS_HEADERS, ...bearer(token), origin: "https://evil.example" } });
    assert.equal(foreign.status, 403);
  });

  it("issues single-use tickets for a bearer token", async () => {
    const { app } = await setup({ auth: "jwt", authSecret: SECRET });
    assert.equal((await app.request("/auth/ticket", { method: "POST" })).status, 401);
    const bad = await app.request("/auth/ticket", { method: "POST", headers: { authorization: `Bearer ${await mint({ ttl: -30 })}` } });
    assert.equal(bad.status, 401);
    const res = await app.request("/auth/ticket", { method: "POST", headers: { authorization: `Bearer ${await mint()}` } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("cache-control"), "no-store");
    const { ticket, expires_in } = await res.json() as { ticket: string; expires_in: number };
    assert.equal(expires_in, 30);
    assert.equal((await app.request(`/ws?ticket=${ticket}`, { headers: WS_HEADERS })).status, 200);
    const replay = await app.request(`/ws?ticket=${ticket}`, { headers: WS_HEADERS });
    assert.equal(replay.status, 401);
    assert.match(await replay.text(), /ticket is invalid, expired or already used/);
  });

  it("takes a fresh token in an auth frame and answers auth_ok, or unauthorized", async () => {
    const { app, openLast } = await setup({ auth: "jwt", authSecret: SECRET });
    await app.request("/ws", { headers: { ...WS_HEADERS, ...bearer(await mint({ ttl: 60 })) } });
    const { socket, message, close } = openLast();
    message(JSON.stringify({ type: "auth", token: await mint({ ttl: 600 }) }));
    message(JSON.stringify({ type: "auth", token: await mint({ sub: "u2", ttl: 600 }) }));
    message(JSON.stringify({ type: "auth", token: "garbage" }));
    await new Promise((r) => setTimeout(r, 50));
    const ok = socket.ofType("auth_ok")[0];
    assert.ok(ok && Math.abs(Number(ok.exp) - (Date.now() / 1000 + 600)) < 3);
    const errors = socket.ofType("error");
    assert.deepEqual(errors.map((e) => e.code), ["unauthorized", "unauthorized"]);
    assert.deepEqual(errors.map((e) => e.message), [
      "Cannot accept auth: the token is for another user",
      "Cannot accept auth: token is malformed",
    ], "answered in the order the frames came");
    assert.deepEqual(socket.frames().slice(-3).map((f) => f.type), ["auth_ok", "error", "error"]);
    close();
  });
});

describe("AUTH=password", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "shootawall-auth-app-"));
    await writeUsers(usersPath(dir), {
      version: 1,
      users: {
        ana: { hash: await hashPassword("ana-password"), created: "2026-01-01T00:00:00.000Z" },
        bo: { hash: await hashPassword("bo-password"), rooms: ["lobby"], created: "2026-01-01T00:00:00.000Z" },
      },
    });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const login = (app: Awaited<ReturnType<typeof setup>>["app"], username: string, password: string, headers: Record<string, string> = {}) =>
    app.request("/auth/login", {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ username, password }),
    });
  const cookieOf = (res: Response) => res.headers.get("set-cookie")?.split(";")[0] ?? "";

  it("needs AUTH_SECRET to start", async () => {
    const r = await createAuth({ ...SETTINGS, auth: "password", dataDir: dir }, { log: silentLogger });
    assert.ok(!r.ok && /AUTH=password needs AUTH_SECRET/.test(r.message));
  });

  it("signs in with an HttpOnly, SameSite=Lax cookie (Secure behind HTTPS) and connects as that account", async () => {
    const { app, openLast } = await setup({ auth: "password", authSecret: SECRET, dataDir: dir });
    const res = await login(app, " ANA ", "ana-password");
    assert.equal(res.status, 200);
    assert.equal((await res.json() as { user: string }).user, "ana");
    const setCookie = res.headers.get("set-cookie") ?? "";
    assert.match(setCookie, /^shootawall_session=[\w-]+\.[\w-]+\.[\w-]+; Max-Age=3600; Path=\/; HttpOnly; SameSite=Lax$/);
    const secure = await login(app, "ana", "ana-password", { "x-forwarded-proto": "https" });
    assert.match(secure.headers.get("set-cookie") ?? "", /; Secure/);
    const cookie = cookieOf(res);
    assert.deepEqual((await (await app.request("/auth/me", { headers: { cookie } })).json() as { user: string }).user, "ana");
    assert.equal((await app.request("/ws?name=mallory", { headers: { ...WS_HEADERS, cookie, origin: SELF } })).status, 200);
    const conn = openLast();
    assert.equal(conn.socket.frames()[0]!.user, "ana");
    conn.close();
  });

  it("answers a wrong password and an unknown user alike", async () => {
    const { app } = await setup({ auth: "password", authSecret: SECRET, dataDir: dir });
    const wrong = await login(app, "ana", "nope-nope", { "x-test-ip": "203.0.113.1" });
    const unknown = await login(app, "nobody", "nope-nope", { "x-test-ip": "203.0.113.2" });
    assert.equal(wrong.status, 401);
    assert.equal(unknown.status, 401);
    assert.deepEqual(await wrong.json(), await unknown.json());
    assert.equal(wrong.headers.get("set-cookie"), null);
  });

  it("refuses no cookie and a tampered cookie with 401, a foreign Origin with 403, a room outside the account's with 403", async () => {
    const { app } = await setup({ auth: "password", authSecret: SECRET, dataDir: dir });
    const none = await app.request("/ws", { headers: WS_HEADERS });
    assert.equal(none.status, 401);
    assert.match(await none.text(), /sign in first/);
    const cookie = cookieOf(await login(app, "bo", "bo-password"));
    // Flip a character inside the signature: the last base64url character of an HMAC carries
    // padding bits, so changing only it can decode to the very same signature.
    const at = cookie.length - 10;
    const tampered = cookie.slice(0, at) + (cookie[at] === "A" ? "B" : "A") + cookie.slice(at + 1);
    assert.equal((await app.request("/ws", { headers: { ...WS_HEADERS, cookie: tampered } })).status, 401);
    const foreign = await app.request("/ws", { headers: { ...WS_HEADERS, cookie, origin: "https://evil.example" } });
    assert.equal(foreign.status, 403);
    const elsewhere = await app.request("/ws/secret", { headers: { ...WS_HEADERS, cookie } });
    assert.equal(elsewhere.status, 403);
    assert.equal((await app.request("/ws", { headers: { ...WS_HEADERS, cookie } })).status, 200);
    assert.equal((await app.request("/auth/login", { method: "POST", headers: { origin: "https://evil.example" } })).status, 403);
  });

  it("logs out: the session's sockets close with 1008 and the cookie stops working", async () => {
    const { app, openLast, metrics } = await setup({ auth: "password", authSecret: SECRET, dataDir: dir });
    const cookie = cookieOf(await login(app, "ana", "ana-password"));
    await app.request("/ws", { headers: { ...WS_HEADERS, cookie } });
    const a = openLast();
    const ticket = (await (await app.request("/auth/ticket", { method: "POST", headers: { cookie } })).json() as { ticket: string }).ticket;
    const out = await app.request("/auth/logout", { method: "POST", headers: { cookie, origin: SELF } });
    assert.equal(out.status, 200);
    assert.match(out.headers.get("set-cookie") ?? "", /^shootawall_session=; Max-Age=0; Path=\//);
    assert.deepEqual(a.socket.closedWith, { code: 1008, reason: "logged out" });
    assert.equal(metrics.closes.get("logged_out"), 1);
    assert.equal((await app.request("/ws", { headers: { ...WS_HEADERS, cookie } })).status, 401);
    assert.equal((await app.request(`/ws?ticket=${ticket}`, { headers: WS_HEADERS })).status, 401, "its tickets too");
    assert.deepEqual(await (await app.request("/auth/me", { headers: { cookie } })).json(), { mode: "password", user: null });
  });

  it("rate limits sign-in attempts with 429 and Retry-After", async () => {
    const { app } = await setup({ auth: "password", authSecret: SECRET, dataDir: dir, loginRatePerMin: 3 });
    const ip = { "x-test-ip": "192.0.2.50" };
    for (let i = 0; i < 3; i++) assert.equal((await login(app, "ana", `guess-${i}`, ip)).status, 401);
    const limited = await login(app, "ana", "ana-password", ip);
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers.get("retry-after")) >= 1);
    // The account is limited from any address now, and a right password does not get through.
    const other = await login(app, "ana", "ana-password", { "x-test-ip": "192.0.2.51" });
    assert.equal(other.status, 429);
    assert.match((await other.json() as { error: string }).error, /Too many sign-in attempts/);
  });
});
