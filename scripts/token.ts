// Mints a token for AUTH=jwt, for local use and tests (your own application mints them in production).
//
//   AUTH_SECRET=... npx tsx scripts/token.ts --sub u42 --name Ana [--rooms "lobby,team-*"] [--ttl 3600]
//       [--aud AUDIENCE] [--iss ISSUER] [--nbf SECONDS]       HS256 with AUTH_SECRET
//   npx tsx scripts/token.ts --jwk private.jwk.json --sub u42 ...                    RS256/ES256 with a private JWK
//   npx tsx scripts/token.ts keygen --alg ES256 --out private.jwk.json --jwks jwks.json   a key pair for JWKS_FILE
//
// The token goes to stdout and nowhere else. Runs on Node (tsx), Deno and Bun alike.

import { exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from "jose";
import { readFile, writeFile } from "node:fs/promises";
import { parseRoomList } from "../src/http/auth/rooms.ts";
import { MIN_SECRET_CHARS } from "../src/http/auth/types.ts";

const USAGE = `Usage:
  AUTH_SECRET=... token.ts --sub ID [--name NAME] [--rooms "lobby,team-*"] [--ttl SECONDS] [--aud A] [--iss I] [--nbf SECONDS]
  token.ts --jwk PRIVATE_JWK_FILE --sub ID [...]        sign RS256/ES256 (alg from the JWK, or --alg)
  token.ts keygen [--alg ES256|RS256] --out PRIVATE_JWK_FILE --jwks PUBLIC_JWKS_FILE`;

export interface MintOptions {
  sub: string;
  name?: string;
  rooms?: readonly string[];
  /** Seconds from now until exp (default 3600). */
  ttl?: number;
  /** Seconds from now until nbf (default: no nbf). */
  nbf?: number;
  aud?: string;
  iss?: string;
  /** HS256 secret, or a private key with its alg. */
  key: { secret: string } | { jwk: JWK; alg: "RS256" | "ES256" };
  /** Seconds since 1970 (tests). */
  now?: number;
}

/** Builds and signs a token. */
export async function mintToken(o: MintOptions): Promise<string> {
  const now = o.now ?? Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {};
  if (o.name !== undefined) claims.name = o.name;
  if (o.rooms !== undefined) claims.rooms = o.rooms;
  const alg = "secret" in o.key ? "HS256" : o.key.alg;
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg, typ: "JWT", ...("jwk" in o.key && o.key.jwk.kid ? { kid: o.key.jwk.kid } : {}) })
    .setSubject(o.sub)
    .setIssuedAt(now)
    .setExpirationTime(now + (o.ttl ?? 3600));
  if (o.nbf !== undefined) jwt.setNotBefore(now + o.nbf);
  if (o.aud) jwt.setAudience(o.aud);
  if (o.iss) jwt.setIssuer(o.iss);
  const key = "secret" in o.key ? new TextEncoder().encode(o.key.secret) : await importJWK(o.key.jwk, alg);
  return jwt.sign(key);
}

function fail(message: string): never {
  console.error(`token: ${message}\n${USAGE}`);
  process.exit(2);
}

function flags(argv: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("--")) fail(`unexpected argument "${arg}"`);
    const eq = arg.indexOf("=");
    if (eq > 0) out.set(arg.slice(2, eq), arg.slice(eq + 1));
    else {
      const value = argv[++i];
      if (value === undefined) fail(`${arg} needs a value`);
      out.set(arg.slice(2), value);
    }
  }
  return out;
}

async function keygen(f: Map<string, string>): Promise<void> {
  const alg = (f.get("alg") ?? "ES256") as "ES256" | "RS256";
  if (alg !== "ES256" && alg !== "RS256") fail("--alg must be ES256 or RS256");
  const out = f.get("out");
  const jwksOut = f.get("jwks");
  if (!out || !jwksOut) fail("keygen needs --out and --jwks");
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const kid = crypto.randomUUID();
  const priv = { ...(await exportJWK(privateKey)), alg, kid, use: "sig" };
  const pub = { ...(await exportJWK(publicKey)), alg, kid, use: "sig" };
  await writeFile(out, `${JSON.stringify(priv, null, 2)}\n`, { mode: 0o600 });
  await writeFile(jwksOut, `${JSON.stringify({ keys: [pub] }, null, 2)}\n`);
  console.error(`token: wrote the private key to ${out} (keep it secret) and the public JWKS to ${jwksOut}`);
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === "--help" || argv[0] === "-h") return void console.log(USAGE);
  if (argv[0] === "keygen") return keygen(flags(argv.slice(1)));
  const f = flags(argv);
  const known = new Set(["sub", "name", "rooms", "ttl", "nbf", "aud", "iss", "jwk", "alg"]);
  for (const k of f.keys()) if (!known.has(k)) fail(`unknown option --${k}`);
  const sub = f.get("sub");
  if (!sub) fail("--sub is required");
  const num = (k: string) => {
    const v = f.get(k);
    if (v === undefined) return undefined;
    if (!/^-?\d+$/.test(v)) fail(`--${k} must be a whole number of seconds`);
    return Number(v);
  };
  let rooms: readonly string[] | undefined;
  if (f.has("rooms")) {
    const parsed = parseRoomList(f.get("rooms")!);
    if (typeof parsed === "string") fail(`--rooms: ${parsed}`);
    rooms = parsed;
  }
  let key: MintOptions["key"];
  const jwkFile = f.get("jwk");
  if (jwkFile) {
    const jwk = JSON.parse(await readFile(jwkFile, "utf8")) as JWK;
    const alg = (f.get("alg") ?? jwk.alg) as "RS256" | "ES256" | undefined;
    if (alg !== "RS256" && alg !== "ES256") fail("the JWK needs \"alg\": RS256 or ES256 (or give --alg)");
    key = { jwk, alg };
  } else {
    const secret = process.env.AUTH_SECRET ?? "";
    if (secret.length < MIN_SECRET_CHARS) fail(`set AUTH_SECRET (${MIN_SECRET_CHARS}+ characters) in the environment, or give --jwk`);
    key = { secret };
  }
  const token = await mintToken({
    sub,
    name: f.get("name"),
    rooms,
    ttl: num("ttl"),
    nbf: num("nbf"),
    aud: f.get("aud") ?? (process.env.AUTH_AUDIENCE || undefined),
    iss: f.get("iss") ?? (process.env.AUTH_ISSUER || undefined),
    key,
  });
  console.log(token);
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("/token.ts")) {
  await main(process.argv.slice(2));
}
