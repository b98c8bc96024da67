// The auth building blocks on their own: passwords, the users file, room patterns, the Origin
// rule, subprotocols, token verification, sessions, tickets, login limits, live expiry.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair, type JSONWebKeySet, SignJWT, UnsecuredJWT } from "jose";
import { LiveAccess, type LiveHost } from "../../src/http/auth/live.ts";
import { LoginLimiter } from "../../src/http/auth/login-limit.ts";
import { checkOrigin, parseAllowedOrigins } from "../../src/http/auth/origin.ts";
import { hashPassword, parseHash, PBKDF2_ITERATIONS, timingSafeEqual, verifyPassword } from "../../src/http/auth/passwords.ts";
import { checkRoomList, parseRoomList, roomAllowed } from "../../src/http/auth/rooms.ts";
import { Sessions } from "../../src/http/auth/session.ts";
import { bearerToken, offeredProtocols, selectSubprotocol } from "../../src/http/auth/subprotocol.ts";
import { TicketStore } from "../../src/http/auth/tickets.ts";
import { TokenVerifier } from "../../src/http/auth/tokens.ts";
import type { Identity } from "../../src/http/auth/types.ts";
import { readUsers, UsersCache, usersPath, writeUsers } from "../../src/http/auth/users-file.ts";
import { mintToken } from "../../scripts/token.ts";

const SECRET = "unit-test-secret-0123456789-abcdefghij";
const now = () => Math.floor(Date.now() / 1000);

describe("passwords (PBKDF2-SHA256 via Web Crypto)", () => {
  it("hashes with a random salt and 600,000 iterations, and verifies", async () => {
    const a = await hashPassword("correct horse battery");
    const b = await hashPassword("correct horse battery");
    assert.notEqual(a, b, "salted");
    assert.match(a, /^pbkdf2-sha256\$600000\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    assert.equal(PBKDF2_ITERATIONS, 600_000);
    assert.equal(parseHash(a)?.iterations, 600_000);
    assert.equal(await verifyPassword("correct horse battery", a), true);
    assert.equal(await verifyPassword("correct horse batterY", a), false);
    assert.equal(await verifyPassword("", a), false);
  });

  it("treats composed and decomposed Unicode the same, and refuses hashes that are not ours", async () => {
    const h = await hashPassword("caf\u00e9-caf\u00e9", 1000);
    assert.equal(await verifyPassword("cafe\u0301-cafe\u0301", h), true);
    for (const bad of ["", "plain", "md5$1$a$b", "pbkdf2-sha256$10$AAAAAAAAAAAAAAAAAAAAAA$AAAA", `${h}$extra`]) {
      assert.equal(parseHash(bad), undefined, bad);
      assert.equal(await verifyPassword("x", bad), false);
    }
  });

  it("compares bytes without stopping at the first difference", () => {
    assert.equal(timingSafeEqual(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3])), true);
    assert.equal(timingSafeEqual(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 4])), false);
    assert.equal(timingSafeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2, 0])), false);
  });
});

describe("users file", () => {
  it("is written atomically with mode 0600, read back, and noticed when it changes", async () => {
    const dir = await mkdtemp(join(tmpdir(), "shootawall-users-"));
    try {
      const path = usersPath(join(dir, "data"));
      assert.deepEqual(Object.keys((await readUsers(path)).users), [], "a missing file is empty");
      const hash = await hashPassword("password-1", 1000);
      await writeUsers(path, { version: 1, users: { ana: { hash, created: "2026-01-01T00:00:00.000Z", rooms: ["lobby"] } } });
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      assert.deepEqual(await readdir(join(dir, "data")), ["users.json"], "no temporary file left");
      const cache = new UsersCache(path);
      assert.equal(await cache.load(), 1);
      assert.deepEqual((await cache.get("ana"))?.rooms, ["lobby"]);
      assert.equal(await cache.get("constructor"), undefined);
      assert.equal(await cache.get("__proto__"), undefined);
      await new Promise((r) => setTimeout(r, 20));
      await writeUsers(path, { version: 1, users: { bo: { hash, created: "2026-01-01T00:00:00.000Z" } } });
      assert.equal(await cache.get("ana"), undefined);
      assert.ok(await cache.get("bo"));
      await writeFile(path, "{not json");
      await assert.rejects(readUsers(path), /not valid JSON/);
      assert.ok(await cache.get("bo"), "a broken file keeps the last good copy");
      await writeFile(path, JSON.stringify({ version: 1, users: { "Bad Name": { hash } } }));
      await assert.rejects(readUsers(path), /not a valid user name/);
      assert.equal(JSON.parse(await readFile(path, "utf8")).version, 1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("room patterns", () => {
  it("allows exact names and * patterns, and every room without a list", () => {
    assert.equal(roomAllowed(undefined, "any"), true);
    assert.equal(roomAllowed(["lobby"], "lobby"), true);
    assert.equal(roomAllowed(["lobby"], "lobby2"), false);
    assert.equal(roomAllowed(["team-*"], "team-red"), true);
    assert.equal(roomAllowed(["team-*"], "team-"), true);
    assert.equal(roomAllowed(["team-*"], "teams"), false);
    assert.equal(roomAllowed(["*"], "whatever_1"), true);
    assert.equal(roomAllowed([], "lobby"), false);
    assert.equal(roomAllowed(["*-ops"], "dev-ops"), true);
    assert.equal(roomAllowed(["a.b*"], "a.bc"), false, "no regular expression syntax");
  });

  it("checks lists", () => {
    assert.deepEqual(parseRoomList(" lobby , team-* "), ["lobby", "team-*"]);
    assert.equal(typeof checkRoomList("lobby"), "string");
    assert.equal(typeof checkRoomList(["Lobby"]), "string");
    assert.equal(typeof checkRoomList([1]), "string");
    assert.equal(typeof checkRoomList(new Array(101).fill("a")), "string");
  });
});

describe("Origin rule", () => {
  const place = { url: "http://127.0.0.1:8080/ws", host: "127.0.0.1:8080" };
  it("allows no Origin (a program) and the server's own origin by default", () => {
    assert.equal(checkOrigin(undefined, [], place).ok, true);
    assert.equal(checkOrigin("http://127.0.0.1:8080", [], place).ok, true);
    assert.equal(checkOrigin("http://chat.example:80", [], { url: "http://x/", host: "chat.example" }).ok, true);
  });

  it("refuses another host, port or scheme, null and junk", () => {
    for (const o of ["http://127.0.0.1:8081", "https://127.0.0.1:8080", "http://evil.example", "null", "file://", "chrome-extension://abc", "x"]) {
      const v = checkOrigin(o, [], place);
      assert.equal(v.ok, false, o);
      if (!v.ok) assert.match(v.message, /^Forbidden: origin .* is not allowed/);
    }
  });

  it("accepts https pages behind a TLS proxy (X-Forwarded-Proto) and an explicit list", () => {
    assert.equal(checkOrigin("https://chat.example", [], { url: "http://chat.example/ws", host: "chat.example", forwardedProto: "https" }).ok, true);
    const allowed = parseAllowedOrigins("https://app.example, http://localhost:3000/");
    assert.ok(Array.isArray(allowed));
    assert.deepEqual(allowed, ["https://app.example", "http://localhost:3000"]);
    assert.equal(checkOrigin("https://app.example", allowed as string[], place).ok, true);
    assert.equal(checkOrigin("http://127.0.0.1:8080", allowed as string[], place).ok, false, "the list replaces same-origin");
    assert.ok(parseAllowedOrigins("ftp://x") instanceof Error);
    assert.ok(parseAllowedOrigins("https://x/path") instanceof Error);
    assert.ok(parseAllowedOrigins("not a url") instanceof Error);
  });
});

describe("subprotocols", () => {
  it("answers shootawall.v1 when offered, else the first non-bearer entry, never a token", () => {
    assert.equal(selectSubprotocol(offeredProtocols("shootawall.v1, bearer.abc")), "shootawall.v1");
    assert.equal(selectSubprotocol(offeredProtocols("bearer.abc,shootawall.v1")), "shootawall.v1");
    assert.equal(selectSubprotocol(offeredProtocols("a, shootawall.v1")), "shootawall.v1");
    assert.equal(selectSubprotocol(offeredProtocols("a,b")), "a");
    assert.equal(selectSubprotocol(offeredProtocols("bearer.abc")), undefined);
    assert.equal(selectSubprotocol(offeredProtocols(undefined)), undefined);
    assert.equal(bearerToken(offeredProtocols("shootawall.v1, bearer.x.y.z")), "x.y.z");
    assert.equal(bearerToken(offeredProtocols("shootawall.v1")), undefined);
    assert.equal(bearerToken(offeredProtocols("bearer.a, bearer.b")), null);
  });
});

describe("TokenVerifier (jose)", () => {
  const hs = new TokenVerifier({ secret: SECRET, audience: "shootawall" });
  const mint = (o: Partial<Parameters<typeof mintToken>[0]> = {}) =>
    mintToken({ sub: "u1", name: "Ana", aud: "shootawall", key: { secret: SECRET }, ...o });

  it("accepts a good HS256 token: sub, name, exp and rooms become the identity", async () => {
    const r = await hs.verify(await mint({ rooms: ["lobby", "team-*"] }));
    assert.ok(r.ok, r.ok ? "" : r.reason);
    assert.equal(r.identity.sub, "u1");
    assert.equal(r.identity.user, "Ana");
    assert.deepEqual(r.identity.rooms, ["lobby", "team-*"]);
    assert.ok(Math.abs(r.identity.exp! - (now() + 3600)) <= 2);
    const noName = await hs.verify(await mint({ name: undefined }));
    assert.ok(noName.ok && noName.identity.user === "u1", "the name defaults to sub");
  });

  it("refuses a forged signature, alg none, expired, not-yet-valid, wrong-audience and exp-less tokens", async () => {
    const cases: Array<[string, Promise<string>, RegExp]> = [
      ["forged signature", mint({ key: { secret: `${SECRET}-other` } }), /signature is invalid/],
      ["alg none", Promise.resolve(new UnsecuredJWT({ sub: "u1", aud: "shootawall" }).setExpirationTime("1h").encode()), /algorithm not allowed|malformed/],
      ["expired", mint({ ttl: -60 }), /expired/],
      ["not yet valid", mint({ nbf: 600 }), /not yet valid/],
      ["wrong audience", mint({ aud: "another-app" }), /another audience/],
      ["no audience", mint({ aud: undefined }), /audience|"aud"/],
      ["no exp", new SignJWT({ aud: "shootawall" }).setProtectedHeader({ alg: "HS256" }).setSubject("u1").sign(new TextEncoder().encode(SECRET)), /"exp"/],
      ["HS512", new SignJWT({ aud: "shootawall" }).setProtectedHeader({ alg: "HS512" }).setSubject("u1").setExpirationTime("1h").sign(new TextEncoder().encode(SECRET)), /algorithm not allowed/],
      ["garbage", Promise.resolve("not.a.token"), /malformed/],
      ["a name with control characters", mint({ name: "a\u0007b" }), /display name/],
      ["a bad rooms claim", mint({ rooms: ["Lobby!"] }), /"rooms"/],
    ];
    for (const [label, token, reason] of cases) {
      const r = await hs.verify(await token);
      assert.equal(r.ok, false, label);
      if (!r.ok) assert.match(r.reason, reason, label);
    }
  });

  it("checks the issuer when one is set", async () => {
    const v = new TokenVerifier({ secret: SECRET, issuer: "https://app.example" });
    assert.equal((await v.verify(await mint({ iss: "https://app.example" }))).ok, true);
    const r = await v.verify(await mint({ iss: "https://other.example" }));
    assert.ok(!r.ok && /another issuer/.test(r.reason));
  });

  it("verifies RS256 and ES256 tokens from a JWKS, and only those", async () => {
    const es = await generateKeyPair("ES256", { extractable: true });
    const rs = await generateKeyPair("RS256", { extractable: true });
    const other = await generateKeyPair("ES256", { extractable: true });
    const jwks: JSONWebKeySet = {
      keys: [
        { ...(await exportJWK(es.publicKey)), kid: "es", alg: "ES256" },
        { ...(await exportJWK(rs.publicKey)), kid: "rs", alg: "RS256" },
      ],
    };
    const v = new TokenVerifier({ jwks });
    assert.deepEqual(v.algorithms, ["RS256", "ES256"]);
    const sign = (alg: string, key: CryptoKey, kid: string) =>
      new SignJWT({ name: "Kim" }).setProtectedHeader({ alg, kid }).setSubject("k1").setExpirationTime("5m").sign(key);
    assert.equal((await v.verify(await sign("ES256", es.privateKey, "es"))).ok, true);
    assert.equal((await v.verify(await sign("RS256", rs.privateKey, "rs"))).ok, true);
    const unknown = await v.verify(await sign("ES256", other.privateKey, "es"));
    assert.ok(!unknown.ok && /signature is invalid/.test(unknown.reason));
    const hsOnly = await v.verify(await mint());
    assert.ok(!hsOnly.ok && /algorithm not allowed/.test(hsOnly.reason), "no HS256 without AUTH_SECRET");
  });
});

describe("sessions", () => {
  it("signs a session the app cannot mistake for a token, and refuses it tampered, revoked or expired", async () => {
    let t = Date.now();
    const s = new Sessions(SECRET, 60_000, () => t);
    const { token, claims } = await s.issue("ana", "stamp1");
    assert.equal((await s.verify(token))?.sub, "ana");
    const [h, p, sig] = token.split(".") as [string, string, string];
    const forgedPayload = btoa(JSON.stringify({ sub: "root", sid: claims.sid, stp: "stamp1", exp: claims.exp, aud: "shootawall-session" }))
      .replace(/=+$/, "").replaceAll("+", "-").replaceAll("/", "_");
    for (const tampered of [`${h}.${forgedPayload}.${sig}`, `${h}.${p}.${sig.slice(0, -2)}${sig.endsWith("AA") ? "BB" : "AA"}`, `${token}x`, "", "a.b.c"]) {
      assert.equal(await s.verify(tampered), undefined, tampered);
    }
    assert.equal((await new TokenVerifier({ secret: SECRET }).verify(token)).ok, false, "a session cookie is not an app token");
    s.revoke(claims);
    assert.equal(await s.verify(token), undefined);
    const second = await s.issue("ana", "stamp1");
    t += 61_000;
    assert.equal(await s.verify(second.token), undefined, "expired");
  });
});

describe("tickets", () => {
  const who: Identity = { sub: "u1", user: "Ana", via: "bearer", exp: now() + 60 };
  it("are single use", async () => {
    const store = new TicketStore(30_000);
    const ticket = await store.issue(who);
    assert.match(ticket, /^[A-Za-z0-9_-]{43}$/);
    assert.equal((await store.redeem(ticket))?.user, "Ana");
    assert.equal(await store.redeem(ticket), undefined, "replayed");
    assert.equal(await store.redeem("made-up"), undefined);
  });

  it("expire after their lifetime", async () => {
    let t = 1_000_000;
    const store = new TicketStore(30_000, () => t);
    const ticket = await store.issue(who);
    t += 30_001;
    assert.equal(await store.redeem(ticket), undefined);
    await store.issue(who);
    t += 40_000;
    await store.issue(who);
    assert.equal(store.size, 1, "expired tickets are dropped");
  });
});

describe("login limits", () => {
  it("limits attempts per IP, then failures per account across IPs, with a Retry-After", () => {
    let t = 0;
    const limit = new LoginLimiter(3, () => t);
    for (let i = 0; i < 3; i++) assert.ok(limit.attempt("1.1.1.1", `a${i}`).ok);
    const ip = limit.attempt("1.1.1.1", "a9");
    assert.deepEqual(ip, { ok: false, scope: "ip", retryAfterS: 20 });
    t += 20_000;
    assert.ok(limit.attempt("1.1.1.1", "a9").ok, "refilled");
    for (let i = 0; i < 3; i++) assert.ok(limit.attempt(`2.2.2.${i}`, "victim").ok);
    const acct = limit.attempt("3.3.3.3", "victim");
    assert.equal(acct.ok, false);
    if (!acct.ok) assert.equal(acct.scope, "account");
    limit.succeeded("victim");
    assert.ok(limit.attempt("3.3.3.4", "victim").ok, "a success gives its token back");
    assert.ok(new LoginLimiter(0).attempt("x", "y").ok, "0 = off");
  });
});

describe("LiveAccess", () => {
  function host(verify: (token: string) => Identity | string): LiveHost & { tracked: number } {
    const h = {
      tracked: 0,
      refresh: (token: string) => {
        const r = verify(token);
        return Promise.resolve(typeof r === "string" ? { ok: false as const, message: r } : { ok: true as const, identity: r });
      },
      track: () => void h.tracked++,
      untrack: () => void h.tracked--,
      now: () => Date.now(),
    };
    return h;
  }
  const control = () => {
    const log: Array<Record<string, unknown>> = [];
    return {
      log,
      ctl: {
        close: (code: number, reason: string, why: string) => void log.push({ close: code, reason, why }),
        send: (frame: Record<string, unknown>) => void log.push(frame),
      },
    };
  };

  it("closes with 1008 \"token expired\" at exp, unless a fresh token for the same user came in time", async () => {
    const soon = Date.now() / 1000 + 0.15;
    const a = new LiveAccess({ sub: "u1", user: "Ana", exp: soon, via: "bearer" }, "lobby", host(() => "x"));
    const ca = control();
    a.start(ca.ctl);
    const b = new LiveAccess({ sub: "u1", user: "Ana", exp: soon, via: "bearer" }, "lobby",
      host((tok) => tok === "fresh" ? { sub: "u1", user: "Ana", exp: now() + 60, via: "bearer" } : tok === "other" ? { sub: "u2", user: "Bo", exp: now() + 60, via: "bearer" } : "token expired"));
    const cb = control();
    b.start(cb.ctl);
    await b.refresh("other");
    await b.refresh("stale");
    await b.refresh("fresh");
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(ca.log, [{ close: 1008, reason: "token expired", why: "token_expired" }]);
    assert.equal(cb.log.length, 3);
    assert.match(String(cb.log[0]!.message), /another user/);
    assert.match(String(cb.log[1]!.message), /Cannot accept auth: token expired/);
    assert.equal(cb.log[2]!.type, "auth_ok");
    assert.ok(Math.abs(Number(cb.log[2]!.exp) - (now() + 60)) <= 2);
    b.stop();
  });

  it("refuses a fresh token that no longer allows the room, and closes a logged-out session", async () => {
    const h = host(() => ({ sub: "u1", user: "Ana", exp: now() + 60, rooms: ["elsewhere"], via: "bearer" }));
    const a = new LiveAccess({ sub: "u1", user: "Ana", exp: now() + 60, sid: "s1", via: "cookie" }, "lobby", h);
    const c = control();
    a.start(c.ctl);
    assert.equal(h.tracked, 1);
    await a.refresh("x");
    assert.match(String(c.log[0]!.message), /does not allow room "lobby"/);
    a.revoke();
    assert.deepEqual(c.log[1], { close: 1008, reason: "logged out", why: "logged_out" });
    assert.equal(h.tracked, 0);
  });
});

describe("the auth frame", () => {
  it("parses {type:auth, token} and nothing else", async () => {
    const { parseClientFrame } = await import("../../src/protocol/parse.ts");
    const limits = { maxText: 100, maxFrameBytes: 65536 };
    assert.deepEqual(parseClientFrame('{"type":"auth","token":"a.b.c"}', limits), { ok: true, value: { type: "auth", token: "a.b.c" } });
    for (const bad of ['{"type":"auth"}', '{"type":"auth","token":""}', '{"type":"auth","token":1}', '{"type":"auth","token":"x","user":"root"}']) {
      const r = parseClientFrame(bad, limits);
      assert.equal(r.ok, false, bad);
      if (!r.ok) assert.equal(r.code, "bad_request", bad);
    }
    const long = parseClientFrame(JSON.stringify({ type: "auth", token: "x".repeat(8193) }), limits);
    assert.ok(!long.ok && /too long/.test(long.message));
  });
});
