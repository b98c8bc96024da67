// A local ShootaWall cluster on one machine, to try Redis scale-out by hand: it starts a redis-server
// (unless --redis-url points at one), one ShootaWall instance per listed runtime, each on its own free
// loopback port with REDIS_URL set (STORE unset, HOST 127.0.0.1), and a round-robin TCP load balancer
// without sticky sessions in front of them, then prints which URL to open. Every new connection (page
// load, WebSocket) may land on a different instance, so two tabs on the balancer URL exercise the
// cross-instance fan-out, history and presence. Ctrl-C (or SIGTERM) stops the balancer, then the
// instances, then the redis-server it started, each by PID. For a node instance dist/ is rebuilt first
// when it is missing or older than src/. Usage:
//
//   node --import tsx scripts/cluster.ts [--instances node,deno,bun] [--port 8080] [--host 127.0.0.1]
//                                        [--redis-url redis://HOST:PORT] [--durable] [--redis-dir DIR]
//
//   --instances  runtimes, one instance each, repeats allowed (node,node,bun): node (the machine's Node,
//                dist/main.js), node24, deno, deno-node (Deno with DENO_HTTP=node), bun. Default node,deno,bun
//   --port       the balancer's port (default 8080; 0 = a free port); --host its address (default 127.0.0.1)
//   --redis-url  use this Redis instead of starting one (--durable and --redis-dir then do nothing)
//   --durable    the started redis-server keeps an AOF with appendfsync always (default: memory only)
//   --redis-dir  its folder, kept after exit (default: a temporary folder, removed on exit)
// Other settings (AUTH, REDIS_PREFIX, LOG_LEVEL, ...) pass through the environment to every instance.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type Backend, type BalancerEvent, type RunningBalancer, startBalancer } from "./lib/balancer.ts";
import { freePort, redisCommand, type RunningRedis, startRedis } from "./lib/redis-server.ts";
import { ROOT, runtimeCommand, type ServerRuntime } from "../tests/_helpers/server.ts";

const RUNTIMES: Record<string, ServerRuntime> = {
  node: "node20",
  node20: "node20",
  node24: "node24",
  deno: "deno",
  "deno-node": "deno-node",
  bun: "bun",
};
const READY_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 8_000;

interface Instance {
  name: string;
  runtime: ServerRuntime;
  port: number;
  url: string;
  proc: ChildProcess;
  /** Last lines printed, for a failed start. */
  tail: string[];
  /** What /healthz said when it came up. */
  health?: { status?: string; store?: string };
  exited?: string;
}

function usage(): string {
  return [
    "usage: node --import tsx scripts/cluster.ts [--instances node,deno,bun] [--port 8080] [--host 127.0.0.1]",
    "                                            [--redis-url URL] [--durable] [--redis-dir DIR]",
    `runtimes: ${Object.keys(RUNTIMES).join(", ")}`,
  ].join("\n");
}

function fail(message: string): never {
  console.error(`cluster: ${message}`);
  process.exit(2);
}

function options() {
  let parsed;
  try {
    parsed = parseArgs({
      args: process.argv.slice(2),
      options: {
        instances: { type: "string", default: "node,deno,bun" },
        port: { type: "string", default: "8080" },
        host: { type: "string", default: "127.0.0.1" },
        "redis-url": { type: "string" },
        durable: { type: "boolean", default: false },
        "redis-dir": { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    fail(`${(err as Error).message}\n${usage()}`);
  }
  const v = parsed.values;
  if (v.help) {
    console.log(usage());
    process.exit(0);
  }
  const names = v.instances.split(",").map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) fail(`--instances is empty\n${usage()}`);
  for (const n of names) if (!(n in RUNTIMES)) fail(`unknown runtime "${n}"\n${usage()}`);
  const port = Number(v.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port must be 0-65535, not "${v.port}"`);
  if (v["redis-url"] && (v.durable || v["redis-dir"])) {
    console.warn("cluster: --redis-url given, so --durable and --redis-dir do nothing");
  }
  return { names, port, host: v.host, redisUrl: v["redis-url"], durable: v.durable, redisDir: v["redis-dir"] };
}

/** Newest modification time of any file under `dir`. */
function newestMtime(dir: string): number {
  let newest = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    newest = Math.max(newest, st.isDirectory() ? newestMtime(p) : st.mtimeMs);
  }
  return newest;
}

/** `npm run build` (tsc -p tsconfig.build.json) when dist/main.js is missing or older than src/. */
function buildIfStale(): void {
  const main = join(ROOT, "dist", "main.js");
  if (existsSync(main) && statSync(main).mtimeMs >= newestMtime(join(ROOT, "src"))) return;
  console.log("cluster: building dist/ for Node (tsc -p tsconfig.build.json) ...");
  const r = spawnSync(join(ROOT, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.build.json"], { cwd: ROOT, stdio: "inherit" });
  if (r.status !== 0) fail(`the build failed (exit ${r.status ?? r.signal}); fix it or leave node out of --instances`);
}

/** Prints a child's output line by line with a prefix; keeps the last 50 lines. */
function forward(inst: Instance, stream: NodeJS.ReadableStream, to: NodeJS.WriteStream): void {
  let partial = "";
  stream.on("data", (chunk: Buffer) => {
    const lines = (partial + chunk.toString("utf8")).split("\n");
    partial = (lines.pop() ?? "").slice(-65536);
    for (const line of lines) {
      if (!line) continue;
      to.write(`${inst.name.padEnd(9)}| ${line}\n`);
      inst.tail.push(line);
      if (inst.tail.length > 50) inst.tail.shift();
    }
  });
}

async function startInstance(name: string, runtime: ServerRuntime, redisUrl: string): Promise<Instance> {
  const { cmd, args } = runtimeCommand(runtime);
  const port = await freePort();
  const env: Record<string, string | undefined> = {
    ...process.env,
    HOST: "127.0.0.1",
    PORT: String(port),
    REDIS_URL: redisUrl,
    ...(runtime === "deno-node" ? { DENO_HTTP: "node" } : {}),
  };
  delete env.STORE;
  // Its own process group: a Ctrl-C in the terminal reaches only this launcher, which then stops the
  // instances before redis (instead of everything at once).
  const proc = spawn(cmd, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  const inst: Instance = { name, runtime, port, url: `http://127.0.0.1:${port}/`, proc, tail: [] };
  started.add(proc);
  proc.once("error", (err) => (inst.exited ??= `could not start: ${err.message}`));
  proc.once("exit", (code, signal) => {
    started.delete(proc);
    inst.exited ??= signal ? `signal ${signal}` : `exit code ${code}`;
    if (!stopping && inst.health) {
      console.error(`cluster: the ${name} instance (pid ${proc.pid}) stopped (${inst.exited}); the balancer skips it now`);
    }
  });
  forward(inst, proc.stdout!, process.stdout);
  forward(inst, proc.stderr!, process.stderr);
  // Up when /healthz answers at all (503 "degraded" means up but Redis unreachable: shown in the table).
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (inst.exited) throw new Error(`the ${name} instance stopped (${inst.exited}) before it was up:\n${inst.tail.join("\n")}`);
    try {
      const res = await fetch(`${inst.url}healthz`, { signal: AbortSignal.timeout(1000) });
      inst.health = await res.json().catch(() => ({ status: `HTTP ${res.status}` })) as Instance["health"];
      return inst;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) {
      throw new Error(`the ${name} instance did not answer /healthz in ${READY_TIMEOUT_MS / 1000} s:\n${inst.tail.join("\n")}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

// ---- lifecycle -----------------------------------------------------------------------------------

const started = new Set<ChildProcess>();
let instances: Instance[] = [];
let redis: RunningRedis | undefined;
let balancer: RunningBalancer | undefined;
let stopping = false;

process.once("exit", () => {
  // Whatever happened, no instance outlives us (the redis launcher does the same for redis-server).
  for (const proc of started) proc.kill("SIGKILL");
});

async function stopChild(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) return;
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  proc.kill("SIGTERM");
  const timer = setTimeout(() => proc.kill("SIGKILL"), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

async function shutdown(code: number): Promise<never> {
  if (stopping) {
    // A second Ctrl-C: no more waiting.
    for (const proc of started) proc.kill("SIGKILL");
    await redis?.kill9();
    process.exit(code || 1);
  }
  stopping = true;
  console.log("\ncluster: stopping the balancer, the instances, then redis ...");
  await balancer?.close();
  await Promise.all(instances.map((i) => stopChild(i.proc)));
  for (const proc of started) await stopChild(proc); // instances still starting
  await redis?.stop();
  console.log("cluster: stopped");
  process.exit(code);
}

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => void shutdown(0));
}

// ---- main ----------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const opts = options();
  if (opts.names.some((n) => RUNTIMES[n] === "node20" || RUNTIMES[n] === "node24")) buildIfStale();

  let redisUrl = opts.redisUrl;
  if (!redisUrl) {
    redis = await startRedis({
      durable: opts.durable,
      ownProcessGroup: true,
      ...(opts.redisDir ? { dir: opts.redisDir } : {}),
    });
    redisUrl = redis.url;
  }

  const counts = new Map<string, number>();
  instances = await Promise.all(opts.names.map((n) => {
    const k = (counts.get(n) ?? 0) + 1;
    counts.set(n, k);
    const label = opts.names.filter((x) => x === n).length > 1 ? `${n}#${k}` : n;
    return startInstance(label, RUNTIMES[n]!, redisUrl);
  }));

  // Tell about a dead backend at most once per 10 s each, not once per connection.
  const lastTold = new Map<string, number>();
  const onEvent = (e: BalancerEvent) => {
    const key = e.type === "skipped" ? `${e.backend.port}` : e.type;
    if (Date.now() - (lastTold.get(key) ?? 0) < 10_000) return;
    lastTold.set(key, Date.now());
    if (e.type === "skipped") {
      const inst = instances.find((i) => i.port === e.backend.port);
      console.error(`cluster: ${inst?.name ?? e.backend.port} refused a connection (${e.error}); skipped`);
    } else if (e.type === "unrouted") console.error("cluster: no instance accepted a connection; closed it");
    else console.error(`cluster: balancer: ${e.error}`);
  };
  const backends: Backend[] = instances.map((i) => ({ host: "127.0.0.1", port: i.port }));
  try {
    balancer = await startBalancer({ backends, port: opts.port, host: opts.host, onEvent });
  } catch (err) {
    console.error(`cluster: the balancer cannot listen on ${opts.host}:${opts.port}: ${(err as Error).message}`);
    await shutdown(1);
  }

  const shownHost = opts.host === "0.0.0.0" || opts.host === "::" ? "127.0.0.1" : opts.host;
  const lbUrl = `http://${shownHost.includes(":") ? `[${shownHost}]` : shownHost}:${balancer!.port}/`;
  const rows: string[][] = [
    ["balancer", lbUrl, `open this: round-robin over ${instances.length} instance(s), no sticky sessions`],
    ...instances.map((i) => [
      i.name,
      i.url,
      `pid ${i.proc.pid}, ${i.runtime}, healthz ${i.health?.status ?? "?"}, store ${i.health?.store ?? "?"}`,
    ]),
    redis
      ? [
        "redis",
        redis.url,
        `pid ${redis.proc.pid}, ${redis.durable ? "durable (AOF, appendfsync always)" : "not durable (memory only)"}, ` +
        (opts.redisDir ? `data in ${redis.dir}` : "temporary folder removed on exit"),
      ]
      : ["redis", redisUrl, "given with --redis-url (not started or stopped here)"],
  ];
  const w0 = Math.max(...rows.map((r) => r[0]!.length));
  const w1 = Math.max(...rows.map((r) => r[1]!.length));
  console.log("\nShootaWall cluster is up\n");
  for (const r of rows) console.log(`  ${r[0]!.padEnd(w0)}  ${r[1]!.padEnd(w1)}  ${r[2]}`);
  const notRedis = instances.filter((i) => i.health?.store !== undefined && i.health.store !== "redis");
  if (notRedis.length) {
    console.log(`\n  warning: ${notRedis.map((i) => i.name).join(", ")} report store "${notRedis[0]!.health!.store}", not redis`);
  }
  if (redis) {
    const clients = await redisCommand(redis.port, ["CLIENT", "LIST"]).catch(() => "");
    const n = typeof clients === "string" ? clients.split("\n").filter(Boolean).length - 1 : 0;
    if (n <= 0) console.log("\n  warning: no instance is connected to redis yet");
  }
  console.log("\nCtrl-C stops everything.\n");
}

main().catch(async (err) => {
  if (stopping) return; // a Ctrl-C during startup: that shutdown is already under way
  console.error(`cluster: ${(err as Error).message}`);
  await shutdown(1);
});
