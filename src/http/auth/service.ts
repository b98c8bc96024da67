// Authentication and access: which origin may connect, as whom, to which room. Built once at
// start from the settings (createAuth), then used by the app: the /auth/* routes and the check
// on every WebSocket upgrade. No secret, password, cookie, token or ticket is ever logged.

import type { Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import type { JSONWebKeySet } from "jose";
import { readFile } from "node:fs/promises";
import { type Logger, within } from "../../core/deps.ts";
import type { SharedAuthState } from "../../storage/store.ts";
import { LiveAccess, type LiveHost } from "./live.ts";
import { LoginLimiter } from "./login-limit.ts";
import { checkOrigin, parseAllowedOrigins } from "./origin.ts";
import { hashPassword, MAX_PASSWORD_CHARS, verifyPassword } from "./passwords.ts";
import { roomAllowed } from "./rooms.ts";
import { passwordStamp, SESSION_COOKIE, type SessionClaims, Sessions } from "./session.ts";
import { bearerToken, offeredProtocols, PROTOCOL } from "./subprotocol.ts";
import { TicketStore } from "./tickets.ts";
import { TokenVerifier } from "./tokens.ts";
import { type AuthMode, type AuthSettings, type Identity, MIN_SECRET_CHARS } from "./types.ts";
import { normaliseUsername, UsersCache, usersPath } from "./users-file.ts";

export type UpgradeVerdict =
  | { ok: true; identity?: Identity }
  | { ok: false; status: 400 | 401 | 403 | 503; reason: string; message: string };

export interface AuthDeps {
  log: Logger;
  /** Tickets and logouts shared with the other instances (Redis); absent: kept in this process. */
  shared?: SharedAuthState;
  /** Milliseconds since 1970 (tests). */
  now?: () => number;
}

interface Parts {
  mode: AuthMode;
  origins: string[];
  tokens?: TokenVerifier;
  sessions?: Sessions;
  users?: UsersCache;
  ticketTtlMs: number;
  loginRatePerMin: number;
}

const NO_STORE = { "Cache-Control": "no-store" };

/** Builds the auth service from the settings, or says (for a start-up error, exit 2) what is wrong. */
export async function createAuth(
  settings: AuthSettings,
  deps: AuthDeps,
): Promise<{ ok: true; auth: AuthService } | { ok: false; message: string }> {
  const fail = (message: string) => ({ ok: false as const, message: `Cannot start: ${message}` });
  const origins = parseAllowedOrigins(settings.allowedOrigins);
  if (origins instanceof Error) return fail(`ALLOWED_ORIGINS is invalid: ${origins.message}`);
  const parts: Parts = {
    mode: settings.auth,
    origins,
    ticketTtlMs: settings.ticketTtlMs,
    loginRatePerMin: settings.loginRatePerMin,
  };
  const secret = settings.authSecret;
  const secretHint = "e.g. AUTH_SECRET=$(openssl rand -base64 32)";
  if (settings.auth !== "open" && secret !== "" && secret.length < MIN_SECRET_CHARS) {
    return fail(`AUTH_SECRET is too short: use ${MIN_SECRET_CHARS} or more characters (${secretHint})`);
  }
  if (settings.auth === "password") {
    if (secret === "") {
      return fail(`AUTH=password needs AUTH_SECRET (${MIN_SECRET_CHARS}+ characters; it signs the session cookies), ${secretHint}`);
    }
    parts.sessions = new Sessions(secret, settings.sessionTtlMs, deps.now);
    parts.users = new UsersCache(usersPath(settings.dataDir));
    try {
      const n = await parts.users.load();
      if (n === 0) deps.log.warn("no_users", { hint: "add an account: npm run users -- add NAME" });
    } catch (err) {
      return fail(`cannot read the users file: ${(err as Error).message}`);
    }
  }
  if (settings.auth === "jwt") {
    let jwks: JSONWebKeySet | undefined;
    if (settings.jwksFile) {
      try {
        jwks = JSON.parse(await readFile(settings.jwksFile, "utf8")) as JSONWebKeySet;
        if (!Array.isArray(jwks?.keys)) throw new Error('expected {"keys":[...]}');
      } catch (err) {
        return fail(`JWKS_FILE cannot be used: ${(err as Error).message}`);
      }
    }
    if (settings.jwksUrl && !/^https?:\/\//.test(settings.jwksUrl)) return fail("JWKS_URL must be an http(s) URL");
    if (!secret && !jwks && !settings.jwksUrl) {
      return fail(`AUTH=jwt needs AUTH_SECRET (HS256 tokens, ${MIN_SECRET_CHARS}+ characters) or JWKS_FILE / JWKS_URL (RS256, ES256 keys)`);
    }
    try {
      parts.tokens = new TokenVerifier({
        secret: secret || undefined,
        jwks,
        jwksUrl: settings.jwksUrl || undefined,
        audience: settings.authAudience || undefined,
        issuer: settings.authIssuer || undefined,
        now: deps.now,
      });
    } catch (err) {
      return fail(`the token keys cannot be used: ${(err as Error).message}`);
    }
  }
  const auth = new AuthService(parts, deps);
  if (parts.mode === "password") await auth.ready();
  return { ok: true, auth };
}

export class AuthService {
  readonly mode: AuthMode;
  #p: Parts;
  #log: Logger;
  #now: () => number;
  #tickets: TicketStore;
  #limiter: LoginLimiter;
  #dummyHash?: Promise<string>;
  #live = new Map<string, Set<LiveAccess>>();
  #host: LiveHost;
  #shared?: SharedAuthState;
  /** Settles once the logouts other instances recorded are known (shared state only). */
  #revocations?: Promise<void>;

  /** Open mode with the default Origin rule (same origin): what the app uses when given no auth. */
  static open(log: Logger): AuthService {
    return new AuthService({ mode: "open", origins: [], ticketTtlMs: 30_000, loginRatePerMin: 0 }, { log });
  }

  constructor(parts: Parts, deps: AuthDeps) {
    this.mode = parts.mode;
    this.#p = parts;
    this.#log = deps.log;
    this.#now = deps.now ?? Date.now;
    this.#tickets = new TicketStore(parts.ticketTtlMs, this.#now, deps.shared);
    this.#shared = deps.shared;
    const sessions = parts.sessions;
    if (sessions && deps.shared) {
      // A logout on any instance closes this session's sockets here too.
      this.#revocations = deps.shared.onRevoke((sid, exp) => {
        sessions.markRevoked(sid, exp);
        for (const l of [...(this.#live.get(sid) ?? [])]) l.revoke();
      });
    }
    this.#limiter = new LoginLimiter(parts.loginRatePerMin, this.#now);
    if (parts.mode === "password") {
      // An unknown user's login runs PBKDF2 against this, so that it takes as long as a wrong password.
      this.#dummyHash = hashPassword(crypto.getRandomValues(new Uint32Array(4)).join("-"));
    }
    this.#host = {
      refresh: async (token) => {
        if (!this.#p.tokens) return { ok: false, message: "this server uses sign-in sessions, not tokens" };
        const r = await this.#p.tokens.verify(token, "bearer");
        return r.ok ? r : { ok: false, message: r.reason };
      },
      track: (sid, live) => {
        let set = this.#live.get(sid);
        if (!set) this.#live.set(sid, (set = new Set()));
        set.add(live);
      },
      untrack: (sid, live) => {
        const set = this.#live.get(sid);
        if (set?.delete(live) && set.size === 0) this.#live.delete(sid);
      },
      now: () => this.#now(),
    };
  }

  /**
   * Resolves once start-up work is done: the dummy hash, and the logouts recorded by other
   * instances (waited for at most 5 s; with Redis away they are read when it comes back, and
   * until then no room can be opened here anyway).
   */
  async ready(): Promise<void> {
    await this.#dummyHash;
    if (this.#revocations) {
      const known = await within(this.#revocations.then(() => true, () => false), 5000);
      if (known !== true) this.#log.warn("revocations_unknown", { note: "logouts of other instances are read once Redis answers" });
    }
  }

  /** The Origin rule for this request. */
  checkOrigin(c: Context): { ok: true } | { ok: false; message: string } {
    return checkOrigin(c.req.header("origin"), this.#p.origins, {
      url: c.req.url,
      host: c.req.header("host"),
      forwardedProto: c.req.header("x-forwarded-proto"),
    });
  }

  /**
   * Judges a WebSocket upgrade to `room` before it happens: the subprotocol offer, the Origin,
   * then (auth on) the credentials (ticket, bearer token or session cookie) and the room.
   */
  async admitUpgrade(c: Context, room: string): Promise<UpgradeVerdict> {
    const offered = offeredProtocols(c.req.header("sec-websocket-protocol"));
    const bearer = bearerToken(offered);
    if (bearer === null) return refuse(400, "bad_protocol", "Bad handshake: offer at most one bearer token");
    if (bearer !== undefined && !offered.includes(PROTOCOL)) {
      return refuse(400, "bad_protocol", `Bad handshake: offer "${PROTOCOL}" along with the bearer token`);
    }
    const origin = this.checkOrigin(c);
    if (!origin.ok) return refuse(403, "bad_origin", origin.message);
    if (this.mode === "open") return { ok: true };

    let identity: Identity | undefined;
    const ticket = c.req.query("ticket");
    if (ticket !== undefined) {
      try {
        identity = await this.#tickets.redeem(ticket);
      } catch {
        return refuse(503, "store_unavailable", "Server busy: tickets cannot be checked right now; try again later");
      }
      if (identity?.sid && !this.#sessionStillValid(identity)) identity = undefined;
      if (!identity) return refuse(401, "bad_ticket", "Unauthorized: the ticket is invalid, expired or already used");
    } else if (bearer !== undefined) {
      if (!this.#p.tokens) {
        return refuse(401, "bad_credentials", "Unauthorized: this server uses sign-in sessions (POST /auth/login), not bearer tokens");
      }
      const r = await this.#p.tokens.verify(bearer, "bearer");
      if (!r.ok) return refuse(401, "bad_token", `Unauthorized: ${r.reason}`);
      identity = r.identity;
    } else if (this.#p.sessions) {
      const cookie = getCookie(c, SESSION_COOKIE);
      if (cookie === undefined) return refuse(401, "no_credentials", "Unauthorized: sign in first (POST /auth/login)");
      identity = await this.#sessionIdentity(cookie);
      if (!identity) return refuse(401, "bad_session", "Unauthorized: the session is invalid or expired; sign in again");
    } else {
      return refuse(
        401,
        "no_credentials",
        `Unauthorized: send a token (Sec-WebSocket-Protocol: ${PROTOCOL}, bearer.<token>) or a ?ticket= from POST /auth/ticket`,
      );
    }
    if (!roomAllowed(identity.rooms, room)) {
      return refuse(403, "room_forbidden", `Forbidden: ${identity.user} may not join room "${room}"`);
    }
    return { ok: true, identity };
  }

  /** The per-connection watcher for an authenticated connection (undefined in open mode). */
  live(identity: Identity | undefined, room: string): LiveAccess | undefined {
    return identity ? new LiveAccess(identity, room, this.#host) : undefined;
  }

  /** Adds GET /auth/me and, when auth is on, POST /auth/login, /auth/logout, /auth/ticket. */
  mount(app: Hono<any>, clientIp: (c: Context) => string): void {
    app.get("/auth/me", async (c) => {
      const claims = this.#p.sessions ? await this.#session(getCookie(c, SESSION_COOKIE)) : undefined;
      return c.json({ mode: this.mode, user: claims?.sub ?? null, ...(claims ? { exp: claims.exp } : {}) }, 200, NO_STORE);
    });
    if (this.mode === "open") return;

    const limit = bodyLimit({
      maxSize: 8 * 1024,
      onError: (c) => c.json({ error: "Request body too large" }, 413, NO_STORE),
    });
    // Cookie-carrying POSTs from a browser must come from an allowed origin (CSRF).
    const originGuard = async (c: Context, next: () => Promise<void>) => {
      const origin = this.checkOrigin(c);
      if (!origin.ok) return c.json({ error: origin.message }, 403, NO_STORE);
      await next();
    };

    if (this.#p.sessions) {
      app.post("/auth/login", originGuard, limit, (c) => this.#login(c, clientIp(c)));
      app.post("/auth/logout", originGuard, limit, async (c) => {
        const claims = await this.#session(getCookie(c, SESSION_COOKIE));
        if (claims && this.#shared) {
          // Every instance must hear of it; until Redis confirms, the cookie stays so the user can retry.
          try {
            await this.#shared.revoke(claims.sid, claims.exp);
          } catch {
            return c.json({ error: "Cannot log out everywhere right now; try again" }, 503, { ...NO_STORE, "Retry-After": "5" });
          }
        }
        deleteCookie(c, SESSION_COOKIE, { path: "/", secure: isHttps(c) });
        if (claims) {
          this.#p.sessions!.revoke(claims);
          const live = [...(this.#live.get(claims.sid) ?? [])];
          for (const l of live) l.revoke();
          this.#log.info("logout", { user: claims.sub, closed: live.length });
        }
        return c.json({ user: null }, 200, NO_STORE);
      });
    }

    app.post("/auth/ticket", originGuard, limit, async (c) => {
      let identity: Identity | undefined;
      if (this.#p.sessions) {
        const cookie = getCookie(c, SESSION_COOKIE);
        identity = cookie === undefined ? undefined : await this.#sessionIdentity(cookie);
        if (!identity) return c.json({ error: "Unauthorized: sign in first (POST /auth/login)" }, 401, NO_STORE);
      } else {
        const m = /^Bearer[ ]+(\S+)\s*$/i.exec(c.req.header("authorization") ?? "");
        if (!m) return c.json({ error: "Unauthorized: send Authorization: Bearer <token>" }, 401, { ...NO_STORE, "WWW-Authenticate": "Bearer" });
        const r = await this.#p.tokens!.verify(m[1]!, "bearer");
        if (!r.ok) return c.json({ error: `Unauthorized: ${r.reason}` }, 401, { ...NO_STORE, "WWW-Authenticate": 'Bearer error="invalid_token"' });
        identity = r.identity;
      }
      let ticket: string;
      try {
        ticket = await this.#tickets.issue(identity);
      } catch {
        return c.json({ error: "Server busy: cannot issue a ticket right now; try again" }, 503, { ...NO_STORE, "Retry-After": "5" });
      }
      this.#log.debug("ticket_issued", { user: identity.user });
      return c.json({ ticket, expires_in: Math.round(this.#tickets.ttlMs / 1000) }, 200, NO_STORE);
    });
  }

  async #login(c: Context, ip: string): Promise<Response> {
    const body = await readCredentials(c);
    if (typeof body === "string") return c.json({ error: body }, 400, NO_STORE);
    const account = normaliseUsername(body.username);
    const verdict = this.#limiter.attempt(ip, account);
    if (!verdict.ok) {
      this.#log.warn("login_rate_limited", { scope: verdict.scope });
      return c.json(
        { error: `Too many sign-in attempts; try again in ${verdict.retryAfterS} s` },
        429,
        { ...NO_STORE, "Retry-After": String(verdict.retryAfterS) },
      );
    }
    // Unknown user or wrong password: the same work, the same answer.
    const record = await this.#p.users!.get(account);
    const hash = record?.hash ?? (await this.#dummyHash!);
    const match = await verifyPassword(body.password, hash);
    if (!record || !match) {
      this.#log.info("login_failed", {});
      return c.json({ error: "Wrong user name or password" }, 401, NO_STORE);
    }
    this.#limiter.succeeded(account);
    const { token, claims } = await this.#p.sessions!.issue(account, await passwordStamp(record.hash));
    setCookie(c, SESSION_COOKIE, token, {
      path: "/",
      httpOnly: true,
      sameSite: "Lax",
      secure: isHttps(c),
      // The token was signed just now with this lifetime (reading the clock again here could
      // give one second less when a second boundary passed while signing).
      maxAge: Math.max(1, Math.round(this.#p.sessions!.ttlMs / 1000)),
    });
    this.#log.info("login", { user: account });
    return c.json({ user: account, exp: claims.exp }, 200, NO_STORE);
  }

  /** A valid session whose account still exists with the same password. */
  async #session(cookie: string | undefined): Promise<SessionClaims | undefined> {
    const claims = await this.#p.sessions?.verify(cookie);
    if (!claims) return undefined;
    const record = await this.#p.users!.get(claims.sub);
    if (!record || (await passwordStamp(record.hash)) !== claims.stamp) return undefined;
    return claims;
  }

  async #sessionIdentity(cookie: string): Promise<Identity | undefined> {
    const claims = await this.#session(cookie);
    if (!claims) return undefined;
    const record = await this.#p.users!.get(claims.sub);
    return Sessions.identity(claims, record?.rooms);
  }

  /** A ticket bought with a session is void once that session is logged out. */
  #sessionStillValid(identity: Identity): boolean {
    return identity.sid === undefined || !this.#p.sessions?.isRevoked(identity.sid);
  }
}

function refuse(status: 400 | 401 | 403 | 503, reason: string, message: string): UpgradeVerdict {
  return { ok: false, status, reason, message };
}

function isHttps(c: Context): boolean {
  return c.req.url.startsWith("https:") || c.req.header("x-forwarded-proto")?.split(",")[0]?.trim().toLowerCase() === "https";
}

/** {username, password} from a JSON or form body; a message when they are missing or malformed. */
async function readCredentials(c: Context): Promise<{ username: string; password: string } | string> {
  const type = c.req.header("content-type")?.toLowerCase() ?? "";
  let body: unknown;
  try {
    if (type.startsWith("application/json")) body = await c.req.json();
    else if (type.startsWith("application/x-www-form-urlencoded") || type.startsWith("multipart/form-data")) {
      body = await c.req.parseBody();
    } else return "Send the user name and password as JSON or a form";
  } catch {
    return "Cannot read the request body";
  }
  const { username, password } = (body ?? {}) as { username?: unknown; password?: unknown };
  if (typeof username !== "string" || typeof password !== "string" || username.trim() === "" || password === "") {
    return "Give a username and a password";
  }
  if (username.length > 64 || password.length > MAX_PASSWORD_CHARS) return "The user name or password is too long";
  return { username, password };
}
