// Starts a real `redis-server` (Debian's, on PATH; REDIS_SERVER_BIN overrides) on a free loopback port
// in a fresh temporary folder, for the tests (tests/_helpers/redis.ts re-exports this) and for
// scripts/cluster.ts. Durable: AOF with fsync on every write, so a SIGKILL loses nothing acknowledged.
// Not durable: nothing on disk at all, so a restart starts empty. Only node: modules, so it can be
// imported on Node (tsx), Deno and Bun. Every process started here is SIGKILLed by PID when this
// process exits; a temporary folder made here is removed on stop() and at exit, never on restart().

import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export interface RedisOptions {
  /** AOF on, `appendfsync always` (default false: no AOF, no RDB snapshots). */
  durable?: boolean;
  /** Default: a free loopback port. */
  port?: number;
  /** Default: a fresh temporary folder, removed by stop(). A given folder is made if missing, never removed. */
  dir?: string;
  /** How long to wait for PING -> PONG (default 10 s). */
  readyTimeoutMs?: number;
  /**
   * Run it in its own process group, so that a Ctrl-C in the terminal reaches only us and we choose
   * when to stop it (scripts/cluster.ts). Default false: it gets the terminal's Ctrl-C with us.
   */
  ownProcessGroup?: boolean;
}

export interface RunningRedis {
  port: number;
  /** redis://127.0.0.1:PORT */
  url: string;
  dir: string;
  durable: boolean;
  proc: ChildProcess;
  /** The server's last log lines (stdout and stderr, at most 200). */
  log(): string;
  /** SIGTERM, wait for the exit (SIGKILL after 10 s), then remove the folder if it was made here. */
  stop(): Promise<void>;
  /** SIGKILL (a crash), wait for the exit. Keeps the folder: restart() to recover, stop() to clean up. */
  kill9(): Promise<void>;
  /**
   * Same port, folder and durability; SIGTERMs this process first if it is still running. After
   * stop() on a given folder the data comes back (durable); on a temporary one it starts empty.
   */
  restart(): Promise<RunningRedis>;
  /**
   * One command over a raw RESP connection. Errors reject; the reply is returned as redis-cli --raw
   * prints it: strings as they are, integers in decimal, nil as "", arrays one element per line.
   */
  cli(...args: string[]): Promise<string>;
}

const LOG_LINES = 200;
const live = new Set<ChildProcess>();
const ownedDirs = new Set<string>();
process.once("exit", () => {
  for (const proc of live) proc.kill("SIGKILL");
  for (const dir of ownedDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch { /* best effort at exit */ }
  }
});

/** A port that was free on 127.0.0.1 a moment ago. */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error("no port"))));
    });
  });
}

// ---- a tiny RESP2 client -------------------------------------------------------------------------

export type RespValue = string | number | null | RespValue[];

export class RespError extends Error {}

/** Encodes one command as a RESP array of bulk strings. */
export function encodeCommand(args: string[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.from(a, "utf8");
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}

/**
 * Parses one reply starting at `pos`: [value, next position], or undefined when more bytes are needed.
 * Error replies come back as RespError values (not thrown) so that arrays can hold them.
 */
export function parseReply(buf: Buffer, pos = 0): [RespValue | RespError, number] | undefined {
  const eol = buf.indexOf("\r\n", pos);
  if (eol < 0) return undefined;
  const type = String.fromCharCode(buf[pos]!);
  const line = buf.toString("utf8", pos + 1, eol);
  const next = eol + 2;
  switch (type) {
    case "+":
      return [line, next];
    case "-":
      return [new RespError(line), next];
    case ":":
      return [Number(line), next];
    case "$": {
      const len = Number(line);
      if (len < 0) return [null, next];
      if (buf.length < next + len + 2) return undefined;
      return [buf.toString("utf8", next, next + len), next + len + 2];
    }
    case "*": {
      const count = Number(line);
      if (count < 0) return [null, next];
      const items: RespValue[] = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const r = parseReply(buf, at);
        if (!r) return undefined;
        if (r[0] instanceof RespError) throw r[0];
        items.push(r[0]);
        at = r[1];
      }
      return [items, at];
    }
    default:
      throw new Error(`not a RESP reply: ${JSON.stringify(buf.toString("utf8", pos, Math.min(buf.length, pos + 40)))}`);
  }
}

/** Sends one command on a fresh connection and resolves with its reply (rejects on an error reply). */
export function redisCommand(port: number, args: string[], timeoutMs = 5000, host = "127.0.0.1"): Promise<RespValue> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host });
    let buf = Buffer.alloc(0);
    const done = (err: Error | undefined, value?: RespValue) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(value ?? null);
    };
    const timer = setTimeout(() => done(new Error(`redis ${args[0]} on port ${port}: no reply in ${timeoutMs} ms`)), timeoutMs);
    sock.once("connect", () => sock.write(encodeCommand(args)));
    sock.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      try {
        const r = parseReply(buf);
        if (!r) return;
        if (r[0] instanceof RespError) done(r[0]);
        else done(undefined, r[0]);
      } catch (err) {
        done(err as Error);
      }
    });
    sock.once("error", (err) => done(err));
    sock.once("close", () => done(new Error(`redis ${args[0]} on port ${port}: connection closed before a reply`)));
  });
}

/** A reply as `redis-cli --raw` prints it. */
export function formatReply(v: RespValue): string {
  if (v === null) return "";
  if (Array.isArray(v)) return v.map(formatReply).join("\n");
  return String(v);
}

// ---- the server ----------------------------------------------------------------------------------

export async function startRedis(opts: RedisOptions = {}): Promise<RunningRedis> {
  const durable = opts.durable ?? false;
  const ownDir = opts.dir === undefined;
  const dir = opts.dir === undefined ? mkdtempSync(join(tmpdir(), "shootawall-redis-")) : resolve(opts.dir);
  // A free port can be taken by someone else before redis binds it: try a few when we chose it.
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? await freePort();
    try {
      return await launch({
        port,
        dir,
        durable,
        ownDir,
        readyTimeoutMs: opts.readyTimeoutMs ?? 10_000,
        detached: opts.ownProcessGroup ?? false,
      });
    } catch (err) {
      const portTaken = /Address already in use/i.test(String(err));
      if (opts.port !== undefined || !portTaken || attempt >= 3) {
        if (ownDir) removeDir(dir);
        throw err;
      }
    }
  }
}

function removeDir(dir: string): void {
  ownedDirs.delete(dir);
  rmSync(dir, { recursive: true, force: true });
}

interface LaunchSpec {
  port: number;
  dir: string;
  durable: boolean;
  ownDir: boolean;
  readyTimeoutMs: number;
  detached: boolean;
}

async function launch(spec: LaunchSpec): Promise<RunningRedis> {
  const { port, dir, durable, ownDir } = spec;
  // Also after stop() removed our own folder: a restart() then starts empty, in a folder made again.
  mkdirSync(dir, { recursive: true });
  if (ownDir) ownedDirs.add(dir);
  const args = [
    "--bind", "127.0.0.1",
    "--port", String(port),
    "--dir", dir,
    "--daemonize", "no",
    "--save", "",
    ...(durable ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]),
  ];
  const proc = spawn(process.env.REDIS_SERVER_BIN ?? "redis-server", args, {
    stdio: ["ignore", "pipe", "pipe"],
    detached: spec.detached,
  });
  live.add(proc);
  const lines: string[] = [];
  let partial = "";
  const onData = (chunk: Buffer) => {
    const text = partial + chunk.toString("utf8");
    const parts = text.split("\n");
    partial = (parts.pop() ?? "").slice(-4096);
    for (const line of parts) if (line) lines.push(line);
    if (lines.length > LOG_LINES) lines.splice(0, lines.length - LOG_LINES);
  };
  proc.stdout!.on("data", onData);
  proc.stderr!.on("data", onData);
  const log = () => [...lines, ...(partial ? [partial] : [])].join("\n");

  let exitInfo: string | undefined;
  let spawnError: Error | undefined;
  const exited = new Promise<void>((resolve) => {
    proc.once("error", (err) => {
      spawnError = err;
      // A process that never started emits no "exit".
      if (proc.pid === undefined) {
        live.delete(proc);
        exitInfo = "not started";
        resolve();
      }
    });
    proc.once("exit", (code, signal) => {
      live.delete(proc);
      exitInfo = signal ? `signal ${signal}` : `code ${code}`;
      resolve();
    });
  });

  // Ready when PING answers PONG (LOADING while it replays the AOF); give up after readyTimeoutMs.
  const deadline = Date.now() + spec.readyTimeoutMs;
  for (;;) {
    if (exitInfo !== undefined) {
      const why = spawnError && (spawnError as NodeJS.ErrnoException).code === "ENOENT"
        ? "redis-server is not on PATH (Debian: apt-get install redis-server)"
        : `redis-server exited (${exitInfo}) before accepting connections`;
      throw new Error(`${why}${spawnError ? `: ${spawnError.message}` : ""}\n${log()}`);
    }
    const pong = await redisCommand(port, ["PING"], 1000).catch(() => undefined);
    // The port answered, but is it our process? Another server may hold the port (ours then exits).
    if (pong === "PONG") {
      const info = await redisCommand(port, ["INFO", "server"], 1000).catch(() => "");
      if (typeof info === "string" && info.includes(`process_id:${proc.pid}\r\n`)) break;
    }
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      await exited;
      throw new Error(`redis-server on port ${port} did not answer PING in ${spec.readyTimeoutMs} ms:\n${log()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  const signalAndWait = async (signal: NodeJS.Signals, graceMs: number) => {
    if (exitInfo !== undefined) return;
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
  };

  const running: RunningRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    durable,
    proc,
    log,
    async stop() {
      await signalAndWait("SIGTERM", 10_000);
      if (ownDir) removeDir(dir);
    },
    async kill9() {
      await signalAndWait("SIGKILL", 10_000);
    },
    async restart() {
      await signalAndWait("SIGTERM", 10_000);
      return launch(spec);
    },
    async cli(...cmd: string[]) {
      return formatReply(await redisCommand(port, cmd));
    },
  };
  return running;
}
