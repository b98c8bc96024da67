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
  { env: "LOG_LEVEL", key: "logLevel", default: "info", help: "debug, info, warn or error", parse: (s) => {
    if (!(LOG_LEVELS as readonly string[]).includes(s)) throw new RangeError(`expected one of ${LOG_LEVELS.join(", ")}, got "${s}"`);
    return s as LogLevel;
  } },
];

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
  return { kind: "config", config: config as unknown as Config };
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
    "  --help, -h  print this text",
  ].join("\n");
}
