// AUTH=password sessions: the cookie holds a JWT signed (HS256, jose) with a key derived from
// AUTH_SECRET for this one purpose. Logging out revokes the session id until its expiry.

import { base64url, jwtVerify, SignJWT } from "jose";
import type { Identity } from "./types.ts";

export const SESSION_COOKIE = "shootawall_session";
const AUDIENCE = "shootawall-session";

export interface SessionClaims {
  /** The account name. */
  sub: string;
  sid: string;
  /** Seconds since 1970. */
  exp: number;
  /** A fingerprint of the account's password hash: changing the password ends older sessions. */
  stamp: string;
}

/** A short fingerprint of a stored password hash. */
export async function passwordStamp(hash: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(hash));
  return base64url.encode(new Uint8Array(digest).slice(0, 9));
}

/** HMAC-SHA256(secret, label): a key for one purpose only, so session cookies and app tokens never mix. */
export async function deriveKey(secret: string, label: string): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(label)));
}

export class Sessions {
  readonly ttlMs: number;
  #key: Promise<Uint8Array>;
  #now: () => number;
  /** Revoked session ids and their expiry (seconds); pruned as they expire. */
  #revoked = new Map<string, number>();

  constructor(secret: string, ttlMs: number, now: () => number = Date.now) {
    this.ttlMs = ttlMs;
    this.#now = now;
    this.#key = deriveKey(secret, "shootawall session cookie v1");
  }

  /** A new signed session token for `sub`. */
  async issue(sub: string, stamp: string): Promise<{ token: string; claims: SessionClaims }> {
    const now = Math.floor(this.#now() / 1000);
    const claims: SessionClaims = {
      sub,
      sid: base64url.encode(crypto.getRandomValues(new Uint8Array(16))),
      exp: now + Math.max(1, Math.round(this.ttlMs / 1000)),
      stamp,
    };
    const token = await new SignJWT({ sid: claims.sid, stp: stamp })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setSubject(sub)
      .setAudience(AUDIENCE)
      .setIssuedAt(now)
      .setExpirationTime(claims.exp)
      .sign(await this.#key);
    return { token, claims };
  }

  /** The claims of a valid, unrevoked session token; undefined for anything else. */
  async verify(token: string | undefined): Promise<SessionClaims | undefined> {
    if (!token || token.length > 2048) return undefined;
    try {
      const { payload } = await jwtVerify(token, await this.#key, {
        algorithms: ["HS256"],
        audience: AUDIENCE,
        requiredClaims: ["exp", "sub"],
        currentDate: new Date(this.#now()),
      });
      const { sub, exp } = payload;
      const sid = (payload as { sid?: unknown }).sid;
      const stamp = (payload as { stp?: unknown }).stp;
      if (typeof sub !== "string" || typeof exp !== "number" || typeof sid !== "string" || typeof stamp !== "string") return undefined;
      if (this.#revoked.has(sid)) return undefined;
      return { sub, sid, exp, stamp };
    } catch {
      return undefined;
    }
  }

  isRevoked(sid: string): boolean {
    return this.#revoked.has(sid);
  }

  /** Ends a session for good (until it would have expired anyway). */
  revoke(claims: SessionClaims): void {
    this.markRevoked(claims.sid, claims.exp);
  }

  /** Records a logout made here or on another instance. */
  markRevoked(sid: string, exp: number): void {
    const now = this.#now() / 1000;
    for (const [old, e] of this.#revoked) if (e < now) this.#revoked.delete(old);
    if (exp >= now) this.#revoked.set(sid, exp);
  }

  /** The identity a session stands for. */
  static identity(claims: SessionClaims, rooms: readonly string[] | undefined, via: Identity["via"] = "cookie"): Identity {
    return { sub: claims.sub, user: claims.sub, rooms, exp: claims.exp, sid: claims.sid, via };
  }
}
