// Clock, id source and logger the core depends on, plus system defaults. Portable.

/** An opaque timer handle from {@link Clock.setTimeout}. */
export type TimerHandle = unknown;

/** Time as the core sees it: injected so tests can drive it by hand. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** Identifiers: injected so tests get predictable ones. */
export interface IdSource {
  /** An id for a room's history lifetime (the `epoch`). */
  epoch(): string;
  /** Four lowercase hex characters for a generated `guest-xxxx` name. */
  guestSuffix(): string;
}

export type LogLevel = "debug" | "info" | "warn" | "error";

/** Structured logger: one event name plus flat fields. Never pass message text or secrets. */
export interface Logger {
  debug(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
  error(event: string, fields?: Record<string, unknown>): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (handle) =>
    globalThis.clearTimeout(handle as Parameters<typeof globalThis.clearTimeout>[0]),
};

function randomHex(bytes: number): string {
  const buf = new Uint8Array(bytes);
  crypto.getRandomValues(buf);
  return Array.from(buf, (b) => b.toString(16).padStart(2, "0")).join("");
}

export const randomIds: IdSource = {
  epoch: () => randomHex(8),
  guestSuffix: () => randomHex(2),
};

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** A JSON-lines logger writing to the console (stdout for info and below, stderr above). */
export function jsonLogger(level: LogLevel = "info", base: Record<string, unknown> = {}): Logger {
  const min = LEVELS[level];
  const write = (lvl: LogLevel, event: string, fields?: Record<string, unknown>) => {
    if (LEVELS[lvl] < min) return;
    const line = JSON.stringify({
      time: new Date().toISOString(),
      level: lvl,
      msg: event,
      ...base,
      ...fields,
    });
    if (LEVELS[lvl] >= LEVELS.warn) console.error(line);
    else console.log(line);
  };
  return {
    debug: (e, f) => write("debug", e, f),
    info: (e, f) => write("info", e, f),
    warn: (e, f) => write("warn", e, f),
    error: (e, f) => write("error", e, f),
  };
}

/** A logger that drops everything (tests). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

/** What {@link within} gives when the time ran out. */
export const TIMED_OUT: unique symbol = Symbol("timed out");

/** `p`'s value, or TIMED_OUT after `ms`; the timer is cleared either way (`p` itself keeps running). */
export function within<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: ReturnType<typeof globalThis.setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<typeof TIMED_OUT>((resolve) => (timer = globalThis.setTimeout(resolve, ms, TIMED_OUT))),
  ]).finally(() => globalThis.clearTimeout(timer));
}
