// AUTH=jwt: tokens issued by the user's own application, verified with jose. HS256 with
// AUTH_SECRET, RS256/ES256 with keys from a JWKS file or URL; nothing else (alg "none" included)
// is accepted. Claims: sub (user id), name (display name), exp (required), rooms (optional).

import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  type JSONWebKeySet,
  type JWSHeaderParameters,
  type JWTPayload,
  jwtVerify,
} from "jose";
import { checkName } from "../identity.ts";
import { checkRoomList } from "./rooms.ts";
import type { Identity } from "./types.ts";

/** Longest token accepted (a JWT with a long rooms list is still far below this). */
export const MAX_TOKEN_CHARS = 8192;
/** Longest `sub` accepted. */
export const MAX_SUB_CHARS = 256;
/** Clock skew tolerated on exp and nbf, in seconds. */
export const CLOCK_TOLERANCE_S = 5;

export interface TokenVerifierOptions {
  /** HS256 shared secret (AUTH_SECRET). */
  secret?: string;
  /** A parsed JWKS (JWKS_FILE) for RS256/ES256. */
  jwks?: JSONWebKeySet;
  /** A JWKS URL (JWKS_URL), fetched and cached by jose. */
  jwksUrl?: string;
  audience?: string;
  issuer?: string;
  /** Milliseconds since 1970 (tests). */
  now?: () => number;
}

export type TokenResult = { ok: true; identity: Identity } | { ok: false; reason: string };

type KeyResolver = (header: JWSHeaderParameters) => Promise<CryptoKey | Uint8Array> | CryptoKey | Uint8Array;

/** Why a token was refused, in words fit for a 401 body (never the token itself). */
export function describeJoseError(err: unknown): string {
  if (err instanceof errors.JWTExpired) return "token expired";
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === "nbf") return "token not yet valid";
    if (err.claim === "aud") return "token is for another audience";
    if (err.claim === "iss") return "token is from another issuer";
    if (err.reason === "missing") return `token has no "${err.claim}" claim`;
    return `token claim "${err.claim}" is invalid`;
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return "token algorithm not allowed";
  if (err instanceof errors.JWSSignatureVerificationFailed) return "token signature is invalid";
  if (err instanceof errors.JWKSNoMatchingKey) return "token signed with an unknown key";
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid) return "token keys unavailable";
  if (err instanceof errors.JOSEError) return "token is malformed";
  return "token could not be verified";
}

/** The identity a verified token's claims describe, or why they do not describe one. */
export function identityFromClaims(payload: JWTPayload, via: Identity["via"]): Identity | string {
  const sub = payload.sub;
  if (typeof sub !== "string" || sub.length === 0 || sub.length > MAX_SUB_CHARS) {
    return `token claim "sub" must be a string of 1 to ${MAX_SUB_CHARS} characters`;
  }
  if (typeof payload.exp !== "number") return 'token has no "exp" claim';
  const rawName = (payload as { name?: unknown }).name;
  if (rawName !== undefined && typeof rawName !== "string") return 'token claim "name" must be a string';
  const name = checkName(rawName ?? sub, { epoch: () => "", guestSuffix: () => "" });
  if (!name.ok) return `token claim "${rawName === undefined ? "sub" : "name"}" is not a usable display name`;
  const identity: Identity = { sub, user: name.name, exp: payload.exp, via };
  const rawRooms = (payload as { rooms?: unknown }).rooms;
  if (rawRooms !== undefined) {
    const rooms = checkRoomList(rawRooms);
    if (typeof rooms === "string") return `token claim "rooms" ${rooms}`;
    identity.rooms = rooms;
  }
  return identity;
}

/** Verifies application tokens. */
export class TokenVerifier {
  readonly algorithms: string[];
  #resolve: KeyResolver;
  #opts: TokenVerifierOptions;

  constructor(opts: TokenVerifierOptions) {
    this.#opts = opts;
    const hmac = opts.secret ? new TextEncoder().encode(opts.secret) : undefined;
    const sets = [
      ...(opts.jwks ? [createLocalJWKSet(opts.jwks)] : []),
      ...(opts.jwksUrl ? [createRemoteJWKSet(new URL(opts.jwksUrl), { timeoutDuration: 5000, cooldownDuration: 30_000 })] : []),
    ];
    this.algorithms = [...(hmac ? ["HS256"] : []), ...(sets.length ? ["RS256", "ES256"] : [])];
    if (this.algorithms.length === 0) throw new Error("a token verifier needs AUTH_SECRET, JWKS_FILE or JWKS_URL");
    this.#resolve = async (header) => {
      // jose has already checked header.alg against `algorithms`.
      if (header.alg === "HS256") return hmac as Uint8Array;
      let last: unknown;
      for (const set of sets) {
        try {
          return await set(header as never);
        } catch (err) {
          last = err;
        }
      }
      throw last;
    };
  }

  async verify(token: string, via: Identity["via"] = "bearer"): Promise<TokenResult> {
    if (token.length === 0 || token.length > MAX_TOKEN_CHARS) return { ok: false, reason: "token is malformed" };
    try {
      const { payload } = await jwtVerify(token, this.#resolve as never, {
        algorithms: this.algorithms,
        audience: this.#opts.audience || undefined,
        issuer: this.#opts.issuer || undefined,
        requiredClaims: ["exp", "sub"],
        clockTolerance: CLOCK_TOLERANCE_S,
        currentDate: this.#opts.now ? new Date(this.#opts.now()) : undefined,
      });
      const identity = identityFromClaims(payload, via);
      return typeof identity === "string" ? { ok: false, reason: identity } : { ok: true, identity };
    } catch (err) {
      return { ok: false, reason: describeJoseError(err) };
    }
  }
}
