// Configuration from environment variables and command-line flags, with --help text.

import type { LogLevel } from "./core/deps.ts";

export interface Config {
  port: number;
  host: string;
  historyReplay: number;
  historyRetain: number;
  presenceGraceMs: number;
  maxText: number;
  maxFrameBytes: number;
  maxRooms: number;
  heartbeatMs: number;
  slowClientBytes: number;
  rateLimitPerS: number;
  rateLimitBurst: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  headersTimeoutMs: number;
  store: "file" | "memory" | "redis";
  dataDir: string;
  redisUrl: string;
  redisPrefix: string;
  redisPresenceTtlMs: number;
  fsync: "always" | "interval";
  auth: "open" | "password" | "jwt";
  authSecret: string;
  authAudience: string;
  authIssuer: string;
  jwksFile: string;
  jwksUrl: string;
  allowedOrigins: string;
  sessionTtlMs: number;
  ticketTtlMs: number;
  loginRatePerMin: number;
  denoHttp: "deno" | "node";
  logLevel: LogLevel;
}

interface Option {
  env: string;
  key: keyof Config;
  default: string;
  help: string;
  parse: (raw: string) => Config[keyof Config];
}

function int(min: number, max: number) {
  return (raw: string): number => {
    const n = Number(raw);
    if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new RangeError(`expected a whole number from ${min} to ${max}, got "${raw}"`);
    }
    return n;
  };
}

function decimal(min: number, max: number, what = "a number") {
  return (raw: string): number => {
    const n = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
      throw new RangeError(`expected ${what} from ${min} to ${max}, got "${raw}"`);
    }
    return n;
  };
}

function seconds(minS: number, maxS: number) {
  const parse = decimal(minS, maxS, "seconds");
  return (raw: string): number => Math.round(parse(raw) * 1000);
}

const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;

/** A free-text setting, taken as given (never echoed in an error: AUTH_SECRET is one). */
const text = (s: string): string => s;

function oneOf<T extends string>(values: readonly T[]) {
  return (raw: string): T => {
    if (!(values as readonly string[]).includes(raw)) {
      throw new RangeError(`expected one of ${values.join(", ")}, got "${raw}"`);
    }
    return raw as T;
  };
}

/** Every setting: its env var, flag (derived), default and meaning. */
export const OPTIONS: readonly Option[] = [
  { env: "PORT", key: "port", default: "8080", help: "TCP port to listen on (0 picks a free one)", parse: int(0, 65535) },
  { env: "HOST", key: "host", default: "0.0.0.0", help: "Address to listen on", parse: (s) => {
    if (!/^[0-9a-zA-Z.:\-\[\]]+$/.test(s)) throw new RangeError(`expected a host name or address, got "${s}"`);
    return s;
  } },
  { env: "HISTORY_REPLAY", key: "historyReplay", default: "10", help: "Recent messages a newcomer receives", parse: int(0, 1000) },
  { env: "HISTORY_RETAIN", key: "historyRetain", default: "1000", help: "Messages each room keeps", parse: int(1, 100000) },
  { env: "PRESENCE_GRACE_S", key: "presenceGraceMs", default: "3", help: "Seconds a user's last tab may be gone before their leave is announced", parse: seconds(0, 3600) },
  { env: "MAX_TEXT", key: "maxText", default: "4096", help: "Longest chat text, in characters", parse: int(1, 16384) },
  { env: "MAX_FRAME_BYTES", key: "maxFrameBytes", default: "65536", help: "Largest WebSocket frame accepted; larger closes with 1009", parse: int(1024, 16777216) },
  { env: "MAX_ROOMS", key: "maxRooms", default: "10000", help: "Rooms kept in memory; the oldest empty room is forgotten past this", parse: int(1, 1000000) },
  { env: "HEARTBEAT_S", key: "heartbeatMs", default: "15", help: "Protocol ping interval; a peer silent for 2 intervals is dropped", parse: seconds(1, 3600) },
  { env: "SLOW_CLIENT_BYTES", key: "slowClientBytes", default: "1048576", help: "Close with 1013 a client with more than this many bytes waiting to be sent (0 = never)", parse: int(0, 1073741824) },
  { env: "RATE_LIMIT_PER_S", key: "rateLimitPerS", default: "10", help: "Frames per second per connection and per user (0 = no limit)", parse: decimal(0, 1000000) },
  { env: "RATE_LIMIT_BURST", key: "rateLimitBurst", default: "30", help: "Frames a connection or user may send at once", parse: int(1, 1000000) },
  { env: "MAX_CONNECTIONS", key: "maxConnections", default: "20000", help: "Open WebSocket connections in all; past it upgrades get 503 (0 = no limit)", parse: int(0, 10000000) },
  { env: "MAX_CONNECTIONS_PER_IP", key: "maxConnectionsPerIp", default: "200", help: "Open WebSocket connections per client IP; past it upgrades get 429 (0 = no limit)", parse: int(0, 10000000) },
  { env: "HEADERS_TIMEOUT_S", key: "headersTimeoutMs", default: "10", help: "Time a client has to send its request headers (slowloris bound; Node only, see README)", parse: seconds(1, 3600) },
  { env: "STORE", key: "store", default: "file", help: "file: an append-only log per room in DATA_DIR; memory: nothing kept across restarts (also --memory); redis: shared by every instance using REDIS_URL (the default when REDIS_URL is set)", parse: oneOf(["file", "memory", "redis"]) },
  { env: "DATA_DIR", key: "dataDir", default: "./data", help: "Where the file store keeps its logs", parse: (s) => {
    if (s.trim() === "" || s.includes("\0")) throw new RangeError(`expected a directory, got "${s}"`);
    return s;
  } },
  { env: "REDIS_URL", key: "redisUrl", default: "", help: "redis://[user:password@]host:port[/db] (or rediss://): run as one of many instances sharing history, fan-out and presence", parse: (s) => {
    if (s !== "" && !/^rediss?:\/\/[^\s]+$/.test(s)) throw new RangeError("expected redis://host:port or rediss://host:port");
    return s;
  } },
  { env: "REDIS_PREFIX", key: "redisPrefix", default: "shootawall:", help: "Prefix of every Redis key and channel (deployments sharing one Redis need different ones)", parse: text },
  { env: "REDIS_PRESENCE_TTL_S", key: "redisPresenceTtlMs", default: "15", help: "Seconds a stopped or crashed instance's users stay listed online (instances refresh theirs every third of it)", parse: seconds(1, 3600) },
  { env: "FSYNC", key: "fsync", default: "always", help: "always: ack once on disk; interval: ack once written, synced within 1 s", parse: oneOf(["always", "interval"]) },
  { env: "AUTH", key: "auth", default: "open", help: "Who may connect: open (nicknames), password (accounts in DATA_DIR/users.json) or jwt (tokens from your app)", parse: oneOf(["open", "password", "jwt"]) },
  { env: "AUTH_SECRET", key: "authSecret", default: "", help: "32+ characters that sign session cookies (password) and HS256 tokens (jwt); set it in the environment, not as a flag", parse: text },
  { env: "AUTH_AUDIENCE", key: "authAudience", default: "", help: "The aud claim jwt tokens must carry (empty: not checked)", parse: text },
  { env: "AUTH_ISSUER", key: "authIssuer", default: "", help: "The iss claim jwt tokens must carry (empty: not checked)", parse: text },
  { env: "JWKS_FILE", key: "jwksFile", default: "", help: "JSON Web Key Set file with the public keys of RS256/ES256 jwt tokens", parse: text },
  { env: "JWKS_URL", key: "jwksUrl", default: "", help: "URL of a JSON Web Key Set with the public keys of RS256/ES256 jwt tokens (fetched and cached)", parse: text },
  { env: "ALLOWED_ORIGINS", key: "allowedOrigins", default: "", help: "Comma list of origins whose pages may connect, in every mode (empty: this server's own origin)", parse: text },
  { env: "SESSION_TTL_S", key: "sessionTtlMs", default: "43200", help: "Seconds a sign-in session lasts (password); its sockets close with 1008 then", parse: seconds(60, 31536000) },
  { env: "TICKET_TTL_S", key: "ticketTtlMs", default: "30", help: "Seconds a single-use ?ticket= from POST /auth/ticket stays valid", parse: seconds(1, 300) },
  { env: "LOGIN_RATE_PER_MIN", key: "loginRatePerMin", default: "10", help: "Sign-in attempts per minute per IP, and failed ones per account per 15 min; past it 429 (0 = no limit)", parse: int(0, 100000) },
  { env: "DENO_HTTP", key: "denoHttp", default: "deno", help: "On Deno: deno = Deno.serve; node = node:http with ws, which bounds slow headers, refuses unmasked frames and caps frame size while reading", parse: oneOf(["deno", "node"]) },
  { env: "LOG_LEVEL", key: "logLevel", default: "info", help: "debug, info, warn or error", parse: (s) => {
    if (!(LOG_LEVELS as readonly string[]).includes(s)) throw new RangeError(`expected one of ${LOG_LEVELS.join(", ")}, got "${s}"`);
    return s as LogLevel;
  } },
];

/** A URL without its password, for logs and /healthz. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(invalid URL)";
  }
}

/** `HISTORY_REPLAY` -> `--history-replay`. */
export function flagName(env: string): string {
  return `--${env.toLowerCase().replaceAll("_", "-")}`;
}

export type ConfigResult =
  | { kind: "config"; config: Config }
  | { kind: "help"; text: string }
  | { kind: "error"; message: string };

/** Reads settings: flags win over environment variables, which win over defaults. */
export function parseConfig(env: Record<string, string | undefined>, argv: readonly string[]): ConfigResult {
  const raw = new Map<string, string>();
  for (const opt of OPTIONS) {
    const value = env[opt.env];
    if (value !== undefined && value !== "") raw.set(opt.env, value);
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--help" || arg === "-h") return { kind: "help", text: helpText() };
    if (arg === "--memory") {
      raw.set("STORE", "memory");
      continue;
    }
    const [flag, inline] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const opt = OPTIONS.find((o) => flagName(o.env) === flag);
    if (!opt) return { kind: "error", message: `Cannot start: unknown option "${arg}" (see --help)` };
    const value = inline ?? argv[++i];
    if (value === undefined) return { kind: "error", message: `Cannot start: option "${flag}" needs a value` };
    raw.set(opt.env, value);
  }
  const config = {} as Record<keyof Config, unknown>;
  for (const opt of OPTIONS) {
    const value = raw.get(opt.env) ?? opt.default;
    try {
      config[opt.key] = opt.parse(value);
    } catch (err) {
      return { kind: "error", message: `Cannot start: ${opt.env} is invalid: ${(err as Error).message}` };
    }
  }
  const result = config as unknown as Config;
  // REDIS_URL alone selects the Redis store; a store that cannot use it is a mistake worth stopping for.
  if (result.redisUrl !== "" && !raw.has("STORE")) result.store = "redis";
  if (result.store === "redis" && result.redisUrl === "") {
    return { kind: "error", message: "Cannot start: STORE=redis needs REDIS_URL" };
  }
  if (result.store !== "redis" && result.redisUrl !== "") {
    return { kind: "error", message: `Cannot start: REDIS_URL is set but STORE=${result.store}; unset one of them` };
  }
  return { kind: "config", config: result };
}

/** The configuration table printed by --help (and shown in the README). */
export function helpText(): string {
  const rows = OPTIONS.map((o) => [o.env, flagName(o.env), o.default, o.help]);
  const head = ["env var", "flag", "default", "meaning"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i] as number)).join("  ").trimEnd();
  return [
    "ShootaWall: a real-time chat wall over WebSockets.",
    "",
    "Usage: deno task start | bun run src/main.ts | node dist/main.js  [flags]",
    "Each setting comes from its flag, else its environment variable, else the default.",
    "",
    line(head),
    ...rows.map(line),
    "  --memory    same as STORE=memory",
    "  --help, -h  print this text",
  ].join("\n");
}
