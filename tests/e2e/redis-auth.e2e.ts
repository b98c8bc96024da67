// Sign-in state shared by instances through Redis, end to end with real processes: one redis-server
// and instances A (node24) and B (bun) with AUTH=password, one AUTH_SECRET, one DATA_DIR (users.json)
// and one REDIS_URL/REDIS_PREFIX. A ticket bought on A works once on B and never again anywhere; a
// logout on A closes the session's sockets on B and its cookie is refused everywhere, also by an
// instance C (deno) started after the logout; with Redis down, logout, ticket issue and ticket
// redeem answer 503 and the cookie is kept.
// Run: npm run build && node --import tsx --test --test-concurrency=1 tests/e2e/redis-auth.e2e.ts

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { type Conn, openWs as openWsWith } from "../_helpers/auth-ws.ts";
import { type RunningRedis, startRedis } from "../_helpers/redis.ts";
import { ROOT, type RunningChild, startServer, systemNode } from "../_helpers/server.ts";

const SECRET = "e2e-redis-auth-secret-Hq3w8Ye5Rt1Uz7Kd";
const PASSWORD = "alice-Re5is-Pa55word-6120";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sockets = new Set<WebSocket>();

/** A client with headers (Origin, Cookie), remembered so after() can end it. */
async function openWs(url: string, headers: Record<string, string> = {}): Promise<Conn> {
  const conn = await openWsWith(url, { headers });
  sockets.add(conn.ws);
  return conn;
}

/** The status and body of an upgrade the server must refuse. */
async function refusedUpgrade(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  try {
    const c = await openWs(url, headers);
    c.ws.close();
    return assert.fail(`${url} was accepted`);
  } catch (err) {
    const { status, body } = err as { status?: number; body?: string };
    if (status === undefined) throw err;
    return { status, body: body ?? "" };
  }
}

/** A bounded wait for a socket to close. */
function closedWithin(c: Conn, ms: number): Promise<{ code: number; reason: string }> {
  return Promise.race([
    c.closed,
    sleep(ms).then(() => assert.fail(`the socket was still open after ${ms} ms`)),
  ]);
}

function post(
  server: RunningChild,
  path: string,
  headers: Record<string, string> = {},
  body?: unknown,
): Promise<Response> {
  return fetch(`${server.url}${path}`, {
    method: "POST",
    headers: {
      Origin: server.url,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
}

async function me(server: RunningChild, cookie: string): Promise<string | null> {
  const res = await fetch(`${server.url}/auth/me`, {
    headers: { cookie },
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(res.status, 200);
  return ((await res.json()) as { user: string | null }).user;
}

async function login(server: RunningChild): Promise<string> {
  const res = await post(server, "/auth/login", {}, { username: "alice", password: PASSWORD });
  assert.equal(res.status, 200, await res.clone().text());
  const cookie = res.headers.getSetCookie()[0]?.split(";")[0] ?? "";
  assert.match(cookie, /^shootawall_session=[\w-]+\.[\w-]+\.[\w-]+$/);
  return cookie;
}

async function ticketFrom(server: RunningChild, cookie: string): Promise<string> {
  const res = await post(server, "/auth/ticket", { cookie });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  const { ticket } = JSON.parse(text) as { ticket: string };
  assert.match(ticket, /^[\w-]{43}$/);
  return ticket;
}

/** Adds an account with scripts/users.ts, the password on stdin. */
function addUser(dataDir: string, name: string, password: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(systemNode(), [
      "--import",
      "tsx",
      "scripts/users.ts",
      "add",
      name,
      "--data-dir",
      dataDir,
    ], {
      cwd: ROOT,
      stdio: ["pipe", "ignore", "pipe"],
    });
    let err = "";
    child.stderr!.on("data", (d: Buffer) => (err += d));
    child.on(
      "exit",
      (code) => (code === 0 ? resolve() : reject(new Error(`users.ts add ${name} exited ${code}: ${err}`))),
    );
    child.stdin!.end(`${password}\n`);
  });
}

describe("AUTH=password across instances sharing Redis: A on node24, B on bun, C (started later) on deno", () => {
  let redis: RunningRedis;
  let dataDir: string;
  let env: Record<string, string>;
  let a: RunningChild;
  let b: RunningChild;
  let c: RunningChild | undefined;
  /** The session that is logged out in the middle of the suite. */
  let cookie: string;
  let bSocket: Conn;
  /** A ticket bought with `cookie` before its logout. */
  let leftover: string;

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "shootawall-redis-auth-e2e-"));
    [redis] = await Promise.all([startRedis({ durable: false }), addUser(dataDir, "alice", PASSWORD)]);
    env = {
      AUTH: "password",
      AUTH_SECRET: SECRET,
      DATA_DIR: dataDir,
      REDIS_URL: redis.url,
      REDIS_PREFIX: `e2eauth${Date.now().toString(36)}:`,
      REDIS_PRESENCE_TTL_S: "2",
      LOGIN_RATE_PER_MIN: "30",
    };
    [a, b] = await Promise.all([startServer("node24", env), startServer("bun", env)]);
  });

  after(async () => {
    for (const ws of sockets) ws.terminate();
    await Promise.all([a, b, c].map((s) => s?.stop(3000)));
    await redis?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("signs in on A; the cookie is good on B too", async () => {
    cookie = await login(a);
    assert.equal(await me(a, cookie), "alice");
    assert.equal(await me(b, cookie), "alice");
  });

  it("redeems a ticket bought on A once on B (welcome as alice); the same ticket on A then gets 401", async () => {
    const ticket = await ticketFrom(a, cookie);
    const conn = await openWs(`${b.wsUrl}/ws/lobby?ticket=${ticket}&name=mallory`, { Origin: b.url });
    assert.equal((await conn.next("welcome")).user, "alice");
    conn.ws.close();
    const replayA = await refusedUpgrade(`${a.wsUrl}/ws/lobby?ticket=${ticket}`, { Origin: a.url });
    assert.equal(replayA.status, 401);
    assert.match(replayA.body, /ticket is invalid, expired or already used/);
    assert.equal(
      (await refusedUpgrade(`${b.wsUrl}/ws/lobby?ticket=${ticket}`, { Origin: b.url })).status,
      401,
    );
  });

  it("connects on B with the cookie from A", async () => {
    bSocket = await openWs(`${b.wsUrl}/ws/bye`, { cookie, Origin: b.url });
    assert.equal((await bSocket.next("welcome")).user, "alice");
  });

  it('logs out on A: the session\'s socket on B closes with 1008 "logged out" within 3 s', async () => {
    leftover = await ticketFrom(b, cookie);
    const t0 = Date.now();
    const out = await post(a, "/auth/logout", { cookie });
    assert.equal(out.status, 200, await out.clone().text());
    assert.match(out.headers.getSetCookie()[0] ?? "", /^shootawall_session=;/, "the cookie is cleared");
    assert.deepEqual(await closedWithin(bSocket, 3000), { code: 1008, reason: "logged out" });
    console.log(`# B closed the logged-out session's socket ${Date.now() - t0} ms after the logout on A`);
  });

  it("then refuses the cookie on A and on B (upgrade 401, no ticket, /auth/me anonymous), and the ticket bought before the logout", async () => {
    for (const s of [a, b]) {
      const up = await refusedUpgrade(`${s.wsUrl}/ws/bye`, { cookie, Origin: s.url });
      assert.equal(up.status, 401, `${s.runtime}: ${up.body}`);
      assert.equal((await post(s, "/auth/ticket", { cookie })).status, 401, s.runtime);
      assert.equal(await me(s, cookie), null, s.runtime);
    }
    assert.equal(
      (await refusedUpgrade(`${a.wsUrl}/ws/bye?ticket=${leftover}`, { Origin: a.url })).status,
      401,
    );
  });

  it("refuses the cookie on an instance C started after the logout", async () => {
    c = await startServer("deno", env);
    const up = await refusedUpgrade(`${c.wsUrl}/ws/bye`, { cookie, Origin: c.url });
    assert.equal(up.status, 401, up.body);
    assert.equal(await me(c, cookie), null);
    // A fresh sign-in still works there.
    const fresh = await login(c);
    const conn = await openWs(`${c.wsUrl}/ws/bye`, { cookie: fresh, Origin: c.url });
    assert.equal((await conn.next("welcome")).user, "alice");
    conn.ws.close();
  });

  it('with Redis down: logout answers 503 and keeps the cookie, ticket issue 503, ticket redeem 503 "Server busy"', async () => {
    const kept = await login(a);
    const ticket = await ticketFrom(a, kept);
    await redis.kill9();
    // Both instances notice at once (the connection drops); give them a moment.
    await sleep(300);
    const out = await post(a, "/auth/logout", { cookie: kept });
    assert.equal(out.status, 503, await out.clone().text());
    assert.equal(out.headers.get("retry-after"), "5");
    assert.deepEqual(out.headers.getSetCookie(), [], "the cookie is kept so that the user can retry");
    assert.equal(await me(a, kept), "alice", "the session is still valid");
    assert.equal((await post(a, "/auth/ticket", { cookie: kept })).status, 503);
    const redeem = await refusedUpgrade(`${b.wsUrl}/ws/lobby?ticket=${ticket}`, { Origin: b.url });
    assert.equal(redeem.status, 503);
    assert.match(redeem.body, /Server busy: tickets cannot be checked right now/);
  });
});
