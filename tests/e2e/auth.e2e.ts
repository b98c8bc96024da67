// Authentication and access against the real server on every runtime: the Origin rule (every
// mode), AUTH=jwt (bearer subprotocol, JWKS URL, tickets, live expiry and refresh) and
// AUTH=password (accounts made with scripts/users.ts, cookie sessions, logout, brute force,
// timing), and no secret in the logs at LOG_LEVEL=debug.
// Run: npm run build && node --import tsx --test --test-concurrency=1 tests/e2e/auth.e2e.ts

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair, SignJWT, UnsecuredJWT } from "jose";
import WebSocket from "ws";
import { mintToken } from "../../scripts/token.ts";
import { openWs } from "../_helpers/auth-ws.ts";
import { rawGet, rawRequest, UPGRADE_HEADERS } from "../_helpers/raw-http.ts";
import { ROOT, type RunningChild, selectedRuntimes, startServer, systemNode } from "../_helpers/server.ts";

const SECRET = "e2e-auth-secret-Zq8r1LmN4vB7xC2kP9sT";
const AUDIENCE = "shootawall-e2e";
const PASSWORDS = { alice: "alice-Pa55word-9471", carol: "carol-Pa55word-3306" };


/**
 * A refused upgrade's status and body, read up to its Content-Length (Deno and Bun keep the
 * connection open after a refusal; Node closes it).
 */
function refused(port: number, path: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; body: string; headers: Record<string, string> }>((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(rawGet(path, { ...UPGRADE_HEADERS, ...headers })));
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => done(), 3000);
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      const end = buf.indexOf("\r\n\r\n");
      const [statusLine = "", ...lines] = buf.subarray(0, end < 0 ? buf.length : end).toString("latin1").split("\r\n");
      const hs: Record<string, string> = {};
      for (const l of lines) hs[l.slice(0, l.indexOf(":")).trim().toLowerCase()] = l.slice(l.indexOf(":") + 1).trim();
      resolve({ status: Number(statusLine.split(" ")[1] ?? 0), headers: hs, body: end < 0 ? "" : buf.subarray(end + 4).toString("utf8") });
    };
    socket.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(buf.subarray(0, end).toString("latin1"))?.[1];
      if (buf.subarray(0, 12).toString("latin1").includes(" 101 ") || (length !== undefined && buf.length - end - 4 >= Number(length))) done();
    });
    socket.on("close", done);
    socket.on("error", (err) => (buf.length ? done() : reject(err)));
  });
}

/** An HTTP request from a chosen loopback address (per-IP limits), with its timing. */
function request(
  port: number,
  method: string,
  path: string,
  { body, headers = {}, from = "127.0.0.1" }: { body?: unknown; headers?: Record<string, string>; from?: string } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const t0 = performance.now();
    const req = http.request({
      host: "127.0.0.1",
      port,
      method,
      path,
      localAddress: from,
      agent: false,
      headers: { ...(data ? { "content-type": "application/json", "content-length": Buffer.byteLength(data) } : {}), ...headers },
    }, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, ms: performance.now() - t0 }));
    });
    req.on("error", reject);
    req.end(data);
  });
}

/** Adds an account with scripts/users.ts, the password on stdin (as a script or a person would pipe it). */
function addUser(dataDir: string, name: string, password: string, extra: string[] = []): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(systemNode(), ["--import", "tsx", "scripts/users.ts", "add", name, "--data-dir", dataDir, ...extra], {
      cwd: ROOT,
      stdio: ["pipe", "ignore", "pipe"],
    });
    let err = "";
    child.stderr!.on("data", (d: Buffer) => (err += d));
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`users.ts add ${name} exited ${code}: ${err}`))));
    child.stdin!.end(`${password}\n`);
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let dataDir: string;
let jwks: http.Server;
let jwksUrl: string;
let esKey: CryptoKey;
before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "shootawall-auth-e2e-"));
  await Promise.all([
    addUser(dataDir, "alice", PASSWORDS.alice),
    addUser(dataDir, "carol", PASSWORDS.carol, ["--rooms", "lobby"]),
  ]);
  // The application's key set, served on loopback as a JWKS URL would be.
  const pair = await generateKeyPair("ES256", { extractable: true });
  esKey = pair.privateKey;
  const body = JSON.stringify({ keys: [{ ...(await exportJWK(pair.publicKey)), kid: "app-1", alg: "ES256", use: "sig" }] });
  jwks = http.createServer((req, res) => {
    res.writeHead(req.url === "/jwks.json" ? 200 : 404, { "content-type": "application/json" });
    res.end(req.url === "/jwks.json" ? body : "{}");
  });
  await new Promise<void>((r) => jwks.listen(0, "127.0.0.1", r));
  jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
});
after(async () => {
  await new Promise((r) => jwks.close(r));
  rmSync(dataDir, { recursive: true, force: true });
});

/** Every secret the tests used must be absent from the server's output. */
function assertNoSecrets(server: RunningChild, secrets: Iterable<string>): void {
  const output = server.output.join("\n");
  assert.ok(server.output.some((l) => l.includes('"level":"debug"')), "the server logged at debug level");
  for (const s of secrets) {
    assert.ok(s.length >= 8);
    assert.ok(!output.includes(s), `a secret was logged: ${s.slice(0, 12)}…`);
  }
}

for (const runtime of selectedRuntimes()) {
  describe(`AUTH=open on ${runtime}`, () => {
    let server: RunningChild;
    before(async () => {
      server = await startServer(runtime, { STORE: "memory" });
    });
    after(async () => {
      await server.stop();
    });

    it("refuses a foreign Origin with 403 and a readable body; the own origin and no Origin connect", async () => {
      const foreign = await refused(server.port, "/ws?name=ana", { Origin: "https://evil.example" });
      assert.equal(foreign.status, 403);
      assert.match(foreign.body, /^Forbidden: origin "https:\/\/evil\.example" is not allowed to connect/);
      const own = await openWs(`${server.wsUrl}/ws?name=ana`, { headers: { Origin: server.url } });
      assert.equal((await own.next("welcome")).user, "ana");
      own.ws.close();
      const program = await openWs(`${server.wsUrl}/ws?name=bot`);
      program.ws.close();
    });

    it("answers shootawall.v1 when offered, wherever it is in the list, and never a bearer entry", async () => {
      const c = await openWs(`${server.wsUrl}/ws`, { protocols: ["other", "shootawall.v1"] });
      assert.equal(c.ws.protocol, "shootawall.v1");
      c.ws.close();
      const bare = await refused(server.port, "/ws", { "Sec-WebSocket-Protocol": "bearer.abc.def.ghi" });
      assert.equal(bare.status, 400);
      assert.match(bare.body, /offer "shootawall\.v1"/);
      const ok = await rawRequest(server.port, rawGet("/ws", { ...UPGRADE_HEADERS, "Sec-WebSocket-Protocol": "shootawall.v1, bearer.abc" }), 800);
      assert.equal(ok.status, 101);
      assert.equal(ok.headers["sec-websocket-protocol"], "shootawall.v1");
    });
  });

  describe(`AUTH=jwt on ${runtime}`, () => {
    let server: RunningChild;
    const secrets = new Set<string>([SECRET]);
    const mint = async (o: Partial<Parameters<typeof mintToken>[0]> = {}) => {
      const t = await mintToken({ sub: "u-100", name: "Ana", aud: AUDIENCE, key: { secret: SECRET }, ...o });
      secrets.add(t);
      return t;
    };
    const bearer = (token: string) => ["shootawall.v1", `bearer.${token}`];
    before(async () => {
      server = await startServer(runtime, {
        STORE: "memory",
        AUTH: "jwt",
        AUTH_SECRET: SECRET,
        AUTH_AUDIENCE: AUDIENCE,
        JWKS_URL: jwksUrl,
        TICKET_TTL_S: "1",
        LOG_LEVEL: "debug",
      });
    });
    after(async () => {
      await server.stop();
    });

    it("connects with a bearer token in Sec-WebSocket-Protocol, answers shootawall.v1, and names the user from the token", async () => {
      const c = await openWs(`${server.wsUrl}/ws?name=mallory`, { protocols: bearer(await mint()) });
      assert.equal(c.ws.protocol, "shootawall.v1");
      assert.equal((await c.next("welcome")).user, "Ana");
      c.ws.send(JSON.stringify({ type: "message", text: "hello", nonce: "n1" }));
      const m = await c.next("message");
      assert.equal(m.user, "Ana");
      c.ws.close();
    });

    it("verifies ES256 tokens against the JWKS URL", async () => {
      const token = await new SignJWT({ name: "Kim" }).setProtectedHeader({ alg: "ES256", kid: "app-1" })
        .setSubject("k-7").setAudience(AUDIENCE).setExpirationTime("5m").sign(esKey);
      secrets.add(token);
      const c = await openWs(`${server.wsUrl}/ws`, { protocols: bearer(token) });
      assert.equal((await c.next("welcome")).user, "Kim");
      c.ws.close();
    });

    it("refuses forged, alg none, expired, not-yet-valid and wrong-audience tokens with 401 and a reason", async () => {
      const none = new UnsecuredJWT({ sub: "u-100", aud: AUDIENCE }).setExpirationTime("1h").encode();
      secrets.add(none);
      const cases: Array<[string, string, RegExp]> = [
        ["forged", await mint({ key: { secret: `${SECRET}-forged` } }), /signature is invalid/],
        ["alg none", none, /algorithm not allowed|malformed/],
        ["expired", await mint({ ttl: -120 }), /token expired/],
        ["not yet valid", await mint({ nbf: 3600 }), /not yet valid/],
        ["wrong audience", await mint({ aud: "another-app" }), /another audience/],
      ];
      for (const [label, token, reason] of cases) {
        const r = await refused(server.port, "/ws", { "Sec-WebSocket-Protocol": bearer(token).join(", ") });
        assert.equal(r.status, 401, label);
        assert.match(r.body, /^Unauthorized: /, label);
        assert.match(r.body, reason, label);
        assert.equal(r.headers["sec-websocket-protocol"], undefined, label);
      }
      const nothing = await refused(server.port, "/ws");
      assert.equal(nothing.status, 401);
    });

    it("refuses a room outside the token's rooms, and a foreign Origin with a valid token, with 403", async () => {
      const token = await mint({ rooms: ["team-*"] });
      const c = await openWs(`${server.wsUrl}/ws/team-blue`, { protocols: bearer(token) });
      c.ws.close();
      const room = await refused(server.port, "/ws/lobby", { "Sec-WebSocket-Protocol": bearer(token).join(", ") });
      assert.equal(room.status, 403);
      assert.match(room.body, /^Forbidden: Ana may not join room "lobby"/);
      const origin = await refused(server.port, "/ws/team-blue", { "Sec-WebSocket-Protocol": bearer(token).join(", "), Origin: "https://evil.example" });
      assert.equal(origin.status, 403);
      assert.match(origin.body, /^Forbidden: origin/);
    });

    it("takes a single-use ticket from POST /auth/ticket; a replayed or expired one gets 401", async () => {
      const getTicket = async () => {
        const res = await request(server.port, "POST", "/auth/ticket", { headers: { authorization: `Bearer ${await mint()}` } });
        assert.equal(res.status, 200, res.body);
        const { ticket } = JSON.parse(res.body) as { ticket: string };
        secrets.add(ticket);
        return ticket;
      };
      const ticket = await getTicket();
      const c = await openWs(`${server.wsUrl}/ws?ticket=${ticket}`);
      assert.equal((await c.next("welcome")).user, "Ana");
      c.ws.close();
      const replay = await refused(server.port, `/ws?ticket=${ticket}`);
      assert.equal(replay.status, 401);
      assert.match(replay.body, /ticket is invalid, expired or already used/);
      const stale = await getTicket();
      await sleep(1200); // TICKET_TTL_S=1 here (30 by default)
      assert.equal((await refused(server.port, `/ws?ticket=${stale}`)).status, 401);
    });

    it("closes a connection whose token expires with 1008, unless a fresh token came in an auth frame", async () => {
      const dying = await openWs(`${server.wsUrl}/ws/exp`, { protocols: bearer(await mint({ ttl: 2 })) });
      const renewed = await openWs(`${server.wsUrl}/ws/exp`, { protocols: bearer(await mint({ ttl: 2 })) });
      await dying.next("welcome");
      await renewed.next("welcome");
      renewed.ws.send(JSON.stringify({ type: "auth", token: await mint({ ttl: 4 }) }));
      renewed.ws.send(JSON.stringify({ type: "auth", token: await mint({ sub: "someone-else", ttl: 60 }) }));
      const ok = await renewed.next("auth_ok");
      // exp is whole seconds: the fresh token's is at least 3 s away, the first one's at most 2 s.
      assert.ok(Number(ok.exp) > Date.now() / 1000 + 2.5, `auth_ok exp ${ok.exp}`);
      const err = await renewed.next("error");
      assert.equal(err.code, "unauthorized");
      const t0 = Date.now();
      const closed = await dying.closed;
      assert.deepEqual(closed, { code: 1008, reason: "token expired" });
      assert.ok(Date.now() - t0 < 3500);
      await sleep(300);
      assert.equal(renewed.ws.readyState, WebSocket.OPEN, "the renewed connection outlived its first token");
      assert.deepEqual(await renewed.closed, { code: 1008, reason: "token expired" }, "and closes at the fresh token's exp");
    });

    it("logs no token, ticket or secret at LOG_LEVEL=debug", () => {
      assertNoSecrets(server, secrets);
    });
  });

  describe(`AUTH=password on ${runtime}`, () => {
    let server: RunningChild;
    const secrets = new Set<string>([SECRET, ...Object.values(PASSWORDS)]);
    const login = (username: string, password: string, from = "127.0.0.1", headers: Record<string, string> = {}) => {
      secrets.add(password);
      return request(server.port, "POST", "/auth/login", { body: { username, password }, from, headers });
    };
    const cookieOf = (res: { headers: http.IncomingHttpHeaders }) => {
      const c = res.headers["set-cookie"]?.[0]?.split(";")[0] ?? "";
      if (c) secrets.add(c.slice(c.indexOf("=") + 1));
      return c;
    };
    before(async () => {
      server = await startServer(runtime, {
        STORE: "memory",
        AUTH: "password",
        AUTH_SECRET: SECRET,
        DATA_DIR: dataDir,
        LOGIN_RATE_PER_MIN: "20",
        LOG_LEVEL: "debug",
      });
    });
    after(async () => {
      await server.stop();
    });

    it("signs in with a session cookie and connects as that account, from its own origin", async () => {
      const wrong = await login("alice", "not-the-password");
      assert.equal(wrong.status, 401);
      const res = await login("alice", PASSWORDS.alice);
      assert.equal(res.status, 200, res.body);
      const setCookie = res.headers["set-cookie"]?.[0] ?? "";
      assert.match(setCookie, /^shootawall_session=[\w-]+\.[\w-]+\.[\w-]+; Max-Age=\d+; Path=\/; HttpOnly; SameSite=Lax$/);
      const cookie = cookieOf(res);
      const me = await request(server.port, "GET", "/auth/me", { headers: { cookie } });
      assert.deepEqual(JSON.parse(me.body).user, "alice");
      const c = await openWs(`${server.wsUrl}/ws?name=mallory`, { headers: { cookie, Origin: server.url } });
      const welcome = await c.next("welcome");
      assert.equal(welcome.user, "alice");
      assert.deepEqual(welcome.online, ["alice"]);
      c.ws.close();
    });

    it("refuses no cookie and a tampered cookie with 401, a foreign Origin with a valid cookie and a room outside the account's with 403", async () => {
      const cookie = cookieOf(await login("carol", PASSWORDS.carol));
      assert.equal((await refused(server.port, "/ws")).status, 401);
      const tampered = cookie.slice(0, -3) + (cookie.endsWith("AAA") ? "BBB" : "AAA");
      const bad = await refused(server.port, "/ws", { Cookie: tampered });
      assert.equal(bad.status, 401);
      assert.match(bad.body, /^Unauthorized: the session is invalid or expired/);
      const foreign = await refused(server.port, "/ws", { Cookie: cookie, Origin: "https://evil.example" });
      assert.equal(foreign.status, 403);
      assert.match(foreign.body, /^Forbidden: origin/);
      const room = await refused(server.port, "/ws/elsewhere", { Cookie: cookie });
      assert.equal(room.status, 403);
      const c = await openWs(`${server.wsUrl}/ws`, { headers: { cookie } });
      c.ws.close();
    });

    it("logs out: the session's socket closes with 1008, and neither the cookie nor its ticket work again", async () => {
      const cookie = cookieOf(await login("alice", PASSWORDS.alice));
      const c = await openWs(`${server.wsUrl}/ws/bye`, { headers: { cookie, Origin: server.url } });
      await c.next("welcome");
      const t = await request(server.port, "POST", "/auth/ticket", { headers: { cookie } });
      const { ticket } = JSON.parse(t.body) as { ticket: string };
      secrets.add(ticket);
      const out = await request(server.port, "POST", "/auth/logout", { headers: { cookie, Origin: server.url } });
      assert.equal(out.status, 200);
      assert.deepEqual(await c.closed, { code: 1008, reason: "logged out" });
      assert.equal((await refused(server.port, "/ws", { Cookie: cookie })).status, 401);
      assert.equal((await refused(server.port, `/ws?ticket=${ticket}`)).status, 401);
    });

    it("answers a brute force with 429 and Retry-After", async () => {
      let last = 0;
      let retryAfter: string | string[] | undefined;
      for (let i = 0; i < 25 && last !== 429; i++) {
        const r = await login("carol", `guess-${i}-xxxx`, "127.0.0.2");
        last = r.status;
        retryAfter = r.headers["retry-after"];
      }
      assert.equal(last, 429);
      assert.ok(Number(retryAfter) >= 1, `Retry-After: ${retryAfter}`);
    });

    it("takes as long for an unknown user as for a wrong password (within noise)", async () => {
      const wrong: number[] = [];
      const unknown: number[] = [];
      await login("nobody-at-all", "warm-up-xxxx", "127.0.0.3");
      for (let i = 0; i < 8; i++) {
        // Alternated, so that a burst of load elsewhere on the machine hits both alike.
        const a = await login("alice", `wrong-${i}-xxxx`, "127.0.0.3");
        const b = await login(`nobody-${i}`, `wrong-${i}-xxxx`, "127.0.0.3");
        assert.equal(a.status, 401);
        assert.equal(b.status, 401);
        assert.equal(a.body, b.body);
        wrong.push(a.ms);
        unknown.push(b.ms);
      }
      // Pairs taken back to back see the same load: the median of their differences cancels it.
      // Skipping PBKDF2 for unknown users would make that difference the whole hash time (~100%).
      const diff = median(wrong.map((w, i) => w - unknown[i]!));
      const [mw, mu] = [median(wrong), median(unknown)];
      console.log(`# ${runtime}: sign-in time, wrong password ${mw.toFixed(1)} ms, unknown user ${mu.toFixed(1)} ms (medians), median pair difference ${diff.toFixed(1)} ms`);
      assert.ok(mw > 20 && mu > 20, "PBKDF2 runs for both");
      assert.ok(Math.abs(diff) <= Math.max(25, 0.3 * Math.max(mw, mu)), `wrong password ${mw.toFixed(1)} ms, unknown user ${mu.toFixed(1)} ms, difference ${diff.toFixed(1)} ms`);
    });

    it("logs no password, cookie, ticket or secret at LOG_LEVEL=debug", () => {
      assertNoSecrets(server, secrets);
    });
  });
}
