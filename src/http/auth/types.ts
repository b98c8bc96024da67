// Who a connection is once authentication is on, and the auth settings. Shared by the auth pieces.

import type { Config } from "../../config.ts";

export type AuthMode = Config["auth"];

export const AUTH_MODES: readonly AuthMode[] = ["open", "password", "jwt"];

/** A verified identity: from a session cookie, a bearer token or a ticket. */
export interface Identity {
  /** The stable user id: the token's `sub`, or the account name. */
  sub: string;
  /** The name shown in every frame (welcome, message, announce, online). */
  user: string;
  /** Room names or patterns this identity may join; undefined means every room. */
  rooms?: readonly string[];
  /** When the credential behind it ends, in seconds since 1970 (a connection is closed then). */
  exp?: number;
  /** The login session behind it (password mode), so that logging out closes its sockets. */
  sid?: string;
  /** How the proof arrived. */
  via: "cookie" | "bearer" | "ticket";
}

/** The settings the auth pieces read (a slice of the server's Config). */
export type AuthSettings = Pick<
  Config,
  | "auth"
  | "authSecret"
  | "authAudience"
  | "authIssuer"
  | "jwksFile"
  | "jwksUrl"
  | "allowedOrigins"
  | "dataDir"
  | "sessionTtlMs"
  | "ticketTtlMs"
  | "loginRatePerMin"
>;

/** AUTH_SECRET must be at least this long (256 bits of ASCII, RFC 7518's minimum for HS256). */
export const MIN_SECRET_CHARS = 32;
