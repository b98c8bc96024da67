// Password hashing with PBKDF2-HMAC-SHA256 through Web Crypto (the same code on Node, Deno and Bun).
// Stored as "pbkdf2-sha256$<iterations>$<salt, base64url>$<key, base64url>": 600,000 iterations
// (OWASP's figure for PBKDF2-HMAC-SHA256), a 16-byte random salt, a 32-byte derived key.

import { base64url } from "jose";

export const PBKDF2_ITERATIONS = 600_000;
export const SALT_BYTES = 16;
export const KEY_BYTES = 32;
const SCHEME = "pbkdf2-sha256";

/** Passwords are 8 to 1024 characters (the upper bound keeps a login request small). */
export const MIN_PASSWORD_CHARS = 8;
export const MAX_PASSWORD_CHARS = 1024;

const utf8 = new TextEncoder();

interface ParsedHash {
  iterations: number;
  salt: Uint8Array;
  key: Uint8Array;
}

async function derive(password: string, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  const material = await crypto.subtle.importKey(
    "raw",
    utf8.encode(password.normalize("NFC")) as Uint8Array<ArrayBuffer>,
    "PBKDF2",
    false,
    ["deriveBits"],
  );
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt: salt as Uint8Array<ArrayBuffer>, iterations },
    material,
    KEY_BYTES * 8,
  );
  return new Uint8Array(bits);
}

/** A new salted hash of `password`. */
export async function hashPassword(password: string, iterations = PBKDF2_ITERATIONS): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(SALT_BYTES));
  const key = await derive(password, salt, iterations);
  return `${SCHEME}$${iterations}$${base64url.encode(salt)}$${base64url.encode(key)}`;
}

/** Parses a stored hash; undefined when it is not one of ours. */
export function parseHash(encoded: string): ParsedHash | undefined {
  const [scheme, iter, salt, key, ...rest] = encoded.split("$");
  if (scheme !== SCHEME || rest.length > 0 || !iter || !salt || !key || !/^\d{1,9}$/.test(iter)) return undefined;
  const iterations = Number(iter);
  if (iterations < 1000) return undefined;
  try {
    const parsed = { iterations, salt: base64url.decode(salt), key: base64url.decode(key) };
    return parsed.key.byteLength === KEY_BYTES && parsed.salt.byteLength >= 8 ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** Compares two byte strings in time that depends only on their length. */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.byteLength ^ b.byteLength;
  const n = Math.max(a.byteLength, b.byteLength);
  for (let i = 0; i < n; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

/** True when `password` matches the stored hash (always runs the full derivation). */
export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const parsed = parseHash(encoded);
  if (!parsed) return false;
  const key = await derive(password, parsed.salt, parsed.iterations);
  return timingSafeEqual(key, parsed.key);
}

/** Says what is wrong with a new password, or undefined when it is acceptable. */
export function checkNewPassword(password: string): string | undefined {
  const n = [...password].length;
  if (n < MIN_PASSWORD_CHARS) return `a password needs at least ${MIN_PASSWORD_CHARS} characters`;
  if (n > MAX_PASSWORD_CHARS) return `a password has at most ${MAX_PASSWORD_CHARS} characters`;
  return undefined;
}
