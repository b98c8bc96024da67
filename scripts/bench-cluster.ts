// ShootaWall scale-out benchmark: what fan-out costs once history, seqs and delivery go through Redis,
// within one instance and across instances. One command:
//
//   node --import tsx scripts/bench-cluster.ts [--runtime node|deno|bun] [--receivers 1000] [--messages 2000]
//                                              [--inflight 16] [--instances 3] [--quick]
//
//   --quick        under a minute: 500 receivers x 2000 messages, each run once (unless given)
//   (none)         1000 receivers x 2000 messages, 16 in flight, 3 instances, each run twice (1-2 minutes)
//   --repeat R     times each run is made, in rotation (default 2; 1 with --quick): the one with the most
//                  deliveries/s is the headline, every one is in the JSON
//   --runtime R    the runtime of every instance: node (dist/main.js, built first), deno or bun (src/main.ts)
//   --no-file      skip the file-store baseline (one instance, no Redis)
//   --durable-redis  Redis with AOF and `appendfsync always` (default: nothing on disk)
//   --workers N    generator worker threads (default 2); --no-build skips `tsc -p tsconfig.build.json`
//   --quiet-wait S seconds in all to wait for other processes to go quiet before starts (default 30; 10 quick)
// Flags take their value either as `--flag value` or `--flag=value`.
//
// Runs, each with fresh servers and a fresh redis-server (scripts/lib/redis-server.ts), in this order:
//   file   one instance, STORE=file (FSYNC=always, the default), no Redis: the baseline
//   redis1 one instance with REDIS_URL: 1 sender -> N receivers, all on that instance
//   redisN --instances instances sharing the Redis: the sender on instance 1, the receivers spread evenly
//          over all instances (so most deliveries cross Redis pub/sub)
// Each sends a warm-up (10%, at most 200) then M messages of 100 characters, at most K in flight: a message
// leaves the window once the sender has its ack (nonce = message id) and every receiver has it.
// Reported: deliveries/s, p50/p99 send -> delivery at the receivers, server CPU per delivery (all
// instances), Redis's CPU (/proc/PID/stat of redis-server) over the send phase, and the checks: every
// receiver got every message once and in order; every message acked once, seqs 1..total in send order;
// one watcher per instance (the sender on instance 1) saw contiguous seqs equal to the acked ones; no
// error frame; the servers' warn/error log lines. Servers run with RATE_LIMIT_PER_S=0 and
// MAX_CONNECTIONS_PER_IP=0 and nothing else changed. Instances and Redis are pinned to core 0, this
// generator to core 1 (as in scripts/bench.ts). Loopback only; bounded in time (a watchdog stops the
// run); every process started here is stopped by PID, on error too.
// Output: a table on stdout and scripts/bench/results/cluster-<runtime>.json.

import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { startRedis, type RunningRedis } from "./lib/redis-server.ts";
import { type CheckStats, type ConnectResult, Gen, meter, quietWaiter, runWindow, since } from "./bench/gen.ts";
import { build, gitState, versions } from "./bench/meta.ts";
import { CLK_TCK, cpuPrecise, cpuSplit, killAllStarted, openFilesLimit, reexecPinned, type ServerProcess, sleep, startWithDataDir, which } from "./bench/proc.ts";
import { fx, pad, pc, ratio } from "./bench/report.ts";
import { histPercentile, markerText, nowUs, sourceAddress } from "./bench/wsclient.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
/** `--name=value` or `--name value`. */
const option = (name: string): string | undefined => {
  const eq = argv.find((a) => a.startsWith(`--${name}=`));
  if (eq) return eq.slice(name.length + 3);
  const at = argv.indexOf(`--${name}`);
  const next = at >= 0 ? argv[at + 1] : undefined;
  return next !== undefined && !next.startsWith("--") ? next : undefined;
};
const intOption = (name: string, fallback: number, min: number): number => {
  const raw = option(name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be an integer >= ${min}, got "${raw}"`);
    process.exit(2);
  }
  return n;
};

if (flag("help") || flag("h")) {
  const lines = readFileSync(SELF, "utf8").split("\n");
  console.log(lines.slice(0, lines.findIndex((l) => !l.startsWith("//"))).map((l) => l.slice(3)).join("\n"));
  process.exit(0);
}

const RUNTIMES = ["node", "deno", "bun"] as const;
type Runtime = (typeof RUNTIMES)[number];
const RUNTIME = (option("runtime") ?? "node") as Runtime;
if (!RUNTIMES.includes(RUNTIME)) {
  console.error(`--runtime must be one of ${RUNTIMES.join(", ")}, got "${RUNTIME}"`);
  process.exit(2);
}
const QUICK = flag("quick");
const RECEIVERS = intOption("receivers", QUICK ? 500 : 1000, 1);
const MESSAGES = intOption("messages", 2000, 1);
const REPEAT = intOption("repeat", QUICK ? 1 : 2, 1);
const INFLIGHT = intOption("inflight", 16, 1);
const INSTANCES = intOption("instances", 3, 2);
const WORKERS = intOption("workers", 2, 1);
const WITH_FILE = !flag("no-file");
const DURABLE_REDIS = flag("durable-redis");
const TEXT_BYTES = 100;
const CORES = os.cpus().length;
const PIN = which("taskset") !== undefined && CORES >= 2;
const FD_NEED = 65536;
/** The whole run stops (every process killed) past this: a bound, not an estimate. */
const HARD_LIMIT_MS = (QUICK ? 100 : 240) * 1000 + (REPEAT * RECEIVERS * MESSAGES) / 20;

const SERVER_CMD: Record<Runtime, { cmd: string; args: string[] }> = {
  node: { cmd: process.execPath, args: ["dist/main.js"] },
  deno: { cmd: join(ROOT, "node_modules", ".bin", "deno"), args: ["run", "--allow-net", "--allow-read", "--allow-write", "--allow-env", "src/main.ts"] },
  bun: { cmd: join(ROOT, "node_modules", ".bin", "bun"), args: ["run", "src/main.ts"] },
};
/**
 * Only the rate limit and the per-IP connection limit are lifted (every receiver comes from a few
 * loopback addresses); the store is named explicitly so that nothing in this shell's environment
 * (STORE, REDIS_URL, FSYNC) changes what is measured.
 */
const LIFTED = { RATE_LIMIT_PER_S: "0", MAX_CONNECTIONS_PER_IP: "0" };
const ROOM_PATH = "/ws/bench";

const quiet = quietWaiter(Number(option("quiet-wait") ?? (QUICK ? 10 : 30)) * 1000);
const started = performance.now();
const remainingMs = () => HARD_LIMIT_MS - (performance.now() - started);

// ---------------------------------------------------------------------------------------------------
// The sender (on instance 1) and one watcher per other instance: `ws` clients in this thread that parse
// every frame, so that seqs, acks and error frames are checked (the worker threads' lean clients only
// read the marker in the text).

interface WatcherReport {
  instance: number;
  /** Chat messages of this run seen (each id at most once counted). */
  got: number;
  /** Seqs skipped (a later seq arrived first), repeated, or lower than one already seen. */
  seqGaps: number;
  seqRepeated: number;
  seqBackwards: number;
  /** Ids whose seq here differs from the seq in the sender's ack. */
  seqMismatch: number;
  /** Ids delivered here more than once. */
  idRepeated: number;
}

class Watcher {
  readonly instance: number;
  readonly ws: WebSocket;
  readonly seqOf: Int32Array;
  /** Sender only: the seq each id was acked with. */
  readonly ackSeq: Int32Array | null;
  acked = 0;
  ackRepeated = 0;
  lastSeq = 0;
  got = 0;
  seqGaps = 0;
  seqRepeated = 0;
  seqBackwards = 0;
  idRepeated = 0;
  errors: Record<string, number> = {};
  errorSamples: string[] = [];
  /** runWindow's completion callback: acks report their id here. */
  onDone: (ids: number[]) => void = () => {};
  /** Rejects on the first error frame (sender) or an unexpected close. */
  readonly failure: Promise<never>;
  #fail!: (err: Error) => void;
  #closing = false;

  private constructor(instance: number, port: number, localAddress: string, total: number, sender: boolean, ready: (w: Watcher) => void, refused: (err: Error) => void) {
    this.instance = instance;
    this.seqOf = new Int32Array(total).fill(-1);
    this.ackSeq = sender ? new Int32Array(total).fill(-1) : null;
    this.failure = new Promise<never>((_, reject) => (this.#fail = reject));
    this.failure.catch(() => {});
    const name = sender ? "tx" : `watch${instance + 1}`;
    this.ws = new WebSocket(`ws://127.0.0.1:${port}${ROOM_PATH}?name=${name}`, { perMessageDeflate: false, localAddress });
    let welcomed = false;
    this.ws.on("message", (data: Buffer) => {
      let f: { type?: string; seq?: number; nonce?: unknown; text?: string; code?: string; message?: string };
      try {
        f = JSON.parse(data.toString("utf8"));
      } catch {
        return this.#error("unparsable", data.toString("utf8").slice(0, 200));
      }
      switch (f.type) {
        case "welcome":
          this.lastSeq = f.seq ?? 0;
          if (!welcomed) (welcomed = true), ready(this);
          return;
        case "message":
          return this.#message(f.seq ?? NaN, f.text ?? "");
        case "ack":
          return this.#ack(f.nonce, f.seq ?? NaN);
        case "error":
          return this.#error(f.code ?? "?", `${f.code}: ${f.message}${f.nonce !== undefined ? ` (nonce ${String(f.nonce)})` : ""}`);
      }
    });
    this.ws.on("error", (err) => (welcomed ? this.#fail(new Error(`${name}: ${err.message}`)) : refused(err)));
    this.ws.on("close", (code, reason) => {
      const why = new Error(`${name} on instance ${instance + 1}: closed by the server (${code} ${reason.toString()})`);
      if (!welcomed) refused(why);
      else if (!this.#closing) this.#fail(why);
    });
  }

  static open(instance: number, port: number, localAddress: string, total: number, sender: boolean): Promise<Watcher> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`watcher on instance ${instance + 1}: no welcome in 20 s`)), 20000);
      new Watcher(instance, port, localAddress, total, sender, (w) => (clearTimeout(timer), resolve(w)), (err) => (clearTimeout(timer), reject(err)));
    });
  }

  send(id: number): void {
    this.ws.send(JSON.stringify({ type: "message", text: markerText(id, nowUs(), 0, TEXT_BYTES), nonce: id }));
  }

  #message(seq: number, text: string): void {
    if (seq === this.lastSeq + 1) this.lastSeq = seq;
    else if (seq === this.lastSeq) this.seqRepeated++;
    else if (seq < this.lastSeq) this.seqBackwards++;
    else (this.seqGaps += seq - this.lastSeq - 1), (this.lastSeq = seq);
    const m = /^~(\d+)~/.exec(text);
    const id = m ? Number(m[1]) : -1;
    if (id < 0 || id >= this.seqOf.length) return;
    if (this.seqOf[id] !== -1) this.idRepeated++;
    else (this.seqOf[id] = seq), this.got++;
  }

  #ack(nonce: unknown, seq: number): void {
    if (!this.ackSeq || typeof nonce !== "number" || nonce < 0 || nonce >= this.ackSeq.length) return;
    if (this.ackSeq[nonce] !== -1) return void this.ackRepeated++;
    this.ackSeq[nonce] = seq;
    this.acked++;
    this.onDone([nonce]);
  }

  #error(code: string, detail: string): void {
    this.errors[code] = (this.errors[code] ?? 0) + 1;
    if (this.errorSamples.length < 5) this.errorSamples.push(detail);
    // A refused message never completes: stop the window now rather than at its timeout.
    this.#fail(new Error(`error frame on instance ${this.instance + 1}: ${detail}`));
  }

  report(ackSeq: Int32Array): WatcherReport {
    let seqMismatch = 0;
    for (let id = 0; id < ackSeq.length; id++) if (this.seqOf[id] !== -1 && this.seqOf[id] !== ackSeq[id]) seqMismatch++;
    const { instance, got, seqGaps, seqRepeated, seqBackwards, idRepeated } = this;
    return { instance: instance + 1, got, seqGaps, seqRepeated, seqBackwards, seqMismatch, idRepeated };
  }

  close(): void {
    this.#closing = true;
    this.ws.terminate();
  }
}

// ---------------------------------------------------------------------------------------------------

interface RunSpec {
  id: "file" | "redis1" | "redisN";
  label: string;
  instances: number;
  redis: boolean;
}

interface RunResult {
  id: string;
  label: string;
  /** Which repetition of this run (1..--repeat). */
  repetition: number;
  store: "file" | "redis";
  instances: number;
  receivers: number;
  receiversPerInstance: number[];
  connectFailed: number;
  messages: number;
  warmup: number;
  inflight: number;
  deliveries: number;
  expected: number;
  wallS: number;
  deliveriesPerS: number;
  messagesPerS: number;
  p50Ms: number;
  p99Ms: number;
  /** Receivers' latency per instance (instance 1 holds the sender). */
  byInstance: { instance: number; receivers: number; p50Ms: number; p99Ms: number }[];
  /** All instances' utime + stime over the send phase, and per delivery. */
  serverCpuS: number;
  serverCpuUsPerDelivery: number;
  serverCpuSByInstance: number[];
  /** The same from the threads' schedstat (nanoseconds, finer than the 10 ms ticks of /proc/PID/stat). */
  serverCpuPreciseSByInstance: number[];
  serverUtil: number;
  /** redis-server's utime + stime over the send phase (null without Redis). */
  redis: null | { cpuS: number; cpuPreciseS: number; userS: number; sysS: number; util: number; cpuUsPerDelivery: number; commands: number; commandsPerMessage: number };
  /** Servers and Redis together, per delivery. */
  totalCpuUsPerDelivery: number;
  genUtil: number;
  otherUtil: number;
  checks: {
    receivers: CheckStats | null;
    closedDuringRun: number;
    acked: number;
    ackRepeated: number;
    /** Ids whose acked seq is not id + 1 (a fresh room and one sender: seqs follow send order from 1). */
    seqNotSendOrder: number;
    watchers: WatcherReport[];
    errorFrames: Record<string, number>;
    errorSamples: string[];
    serverLog: Record<string, number>;
    serverLogSamples: string[];
  };
  problems: string[];
}

function serverEnv(spec: RunSpec, redis: RunningRedis | undefined): Record<string, string> {
  const env: Record<string, string> = { ...LIFTED, DENO_NO_UPDATE_CHECK: "1" };
  if (redis) Object.assign(env, { STORE: "redis", REDIS_URL: redis.url });
  else Object.assign(env, { STORE: "file", FSYNC: "always", REDIS_URL: "" });
  return env;
}

/** Counts the server's warn and error log lines (JSON lines) by event, keeping a few samples. */
function watchLog(srv: ServerProcess, instance: number, counts: Record<string, number>, samples: string[]): void {
  let partial = "";
  const onData = (chunk: Buffer) => {
    const lines = (partial + chunk.toString("utf8")).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      const level = /"level":"(warn|error)"/.exec(line)?.[1] ?? (/^\s*(error|Error|Uncaught|panic)/.test(line) ? "error" : undefined);
      if (!level) continue;
      const msg = /"msg":"([^"]*)"/.exec(line)?.[1] ?? line.slice(0, 60);
      const key = `${level} ${msg}`;
      counts[key] = (counts[key] ?? 0) + 1;
      if (samples.length < 8) samples.push(`instance ${instance + 1}: ${line.slice(0, 300)}`);
    }
  };
  srv.proc.stdout!.on("data", onData);
  srv.proc.stderr!.on("data", onData);
}

function pinToServerCore(pid: number): void {
  if (!PIN) return;
  const r = spawnSync("taskset", ["-a", "-p", "-c", "0", String(pid)], { encoding: "utf8" });
  if (r.status !== 0) console.warn(`WARNING: could not pin redis-server (PID ${pid}) to core 0: ${(r.stderr || "").trim()}`);
}

const redisCommands = async (redis: RunningRedis): Promise<number> => {
  const info = await redis.cli("INFO", "stats");
  return Number(/total_commands_processed:(\d+)/.exec(info)?.[1] ?? NaN);
};

async function run(gen: Gen, spec: RunSpec): Promise<RunResult> {
  await quiet.wait();
  const servers: ServerProcess[] = [];
  const watchers: Watcher[] = [];
  let redis: RunningRedis | undefined;
  const serverLog: Record<string, number> = {};
  const serverLogSamples: string[] = [];
  try {
    if (spec.redis) {
      redis = await startRedis({ durable: DURABLE_REDIS });
      pinToServerCore(redis.proc.pid!);
    }
    const { cmd, args } = SERVER_CMD[RUNTIME];
    for (let i = 0; i < spec.instances; i++) {
      const srv = await startWithDataDir(cmd, args, { cwd: ROOT, env: serverEnv(spec, redis), core: PIN ? 0 : undefined, dataDir: true });
      servers.push(srv);
      watchLog(srv, i, serverLog, serverLogSamples);
    }
    // Receivers: spread evenly over the instances (the first ones get the remainder), tagged by instance.
    const perInstance = servers.map((_, i) => Math.floor(RECEIVERS / spec.instances) + (i < RECEIVERS % spec.instances ? 1 : 0));
    const conns: ConnectResult[] = [];
    let base = 0;
    for (let i = 0; i < servers.length; i++) {
      conns.push(await gen.connect({ port: servers[i]!.port, path: `${ROOM_PATH}?name=rx`, proto: "ours" }, perInstance[i]!, { clientBase: base, group: i }));
      base += perInstance[i]!;
    }
    const ready = conns.reduce((a, c) => a + c.ready, 0);
    const failed = conns.reduce((a, c) => a + c.failed, 0);
    if (ready === 0) throw new Error(`no receiver connected: ${JSON.stringify(conns.map((c) => c.reasons))}`);
    const activeWorkers = gen.workers.filter((_, w) => conns.some((c) => c.perWorker[w]! > 0)).length;

    const warm = Math.min(200, Math.ceil(MESSAGES * 0.1));
    const total = warm + MESSAGES;
    const sender = await Watcher.open(0, servers[0]!.port, sourceAddress(gen.connSerial++), total, true);
    watchers.push(sender);
    for (let i = 1; i < servers.length; i++) watchers.push(await Watcher.open(i, servers[i]!.port, sourceAddress(gen.connSerial++), total, false));
    await sleep(300);

    gen.tell({ op: "fanout", total, measureFrom: warm, check: true });
    const doneCount = new Uint8Array(total);
    // Done = every worker holding receivers has it, and the sender has its ack.
    const need = activeWorkers + 1;
    const budget = (n: number) => Math.max(1000, Math.min(30000 + (n * ready) / 20, remainingMs() - 15000));
    const failures = Promise.race(watchers.map((w) => w.failure));
    failures.catch(() => {});
    const send = (id: number) => sender.send(id);
    await Promise.race([runWindow(gen, send, need, doneCount, 0, warm, INFLIGHT, budget(warm), undefined, [sender]), failures]);
    gen.tell({ op: "reset" });
    const commands0 = redis ? await redisCommands(redis) : 0;
    await sleep(50);

    const pids = servers.map((s) => s.pid);
    const redisPid = redis?.proc.pid;
    const all = redisPid !== undefined ? [...pids, redisPid] : pids;
    const cpu0 = all.map((pid) => cpuSplit(pid));
    const precise0 = all.map((pid) => cpuPrecise(pid));
    const m0 = meter(all);
    await Promise.race([runWindow(gen, send, need, doneCount, warm, total, INFLIGHT, budget(MESSAGES), undefined, [sender]), failures]);
    const u = since(all, m0);
    const cpu1 = all.map((pid) => cpuSplit(pid));
    const preciseS = all.map((pid, i) => cpuPrecise(pid) - precise0[i]!);
    const cpuS = cpu1.map((c, i) => c.user + c.sys - cpu0[i]!.user - cpu0[i]!.sys);
    const commands1 = redis ? await redisCommands(redis) : 0;

    // Watchers on other instances may still be reading the last frames.
    const until = performance.now() + 2000;
    while (watchers.some((w) => w.got < total) && performance.now() < until) await sleep(20);
    const st = await gen.stats();
    const ackSeq = sender.ackSeq!;
    let seqNotSendOrder = 0;
    for (let id = 0; id < total; id++) if (ackSeq[id] !== id + 1) seqNotSendOrder++;
    const errorFrames: Record<string, number> = {};
    const errorSamples: string[] = [];
    for (const w of watchers) {
      for (const [k, v] of Object.entries(w.errors)) errorFrames[k] = (errorFrames[k] ?? 0) + v;
      errorSamples.push(...w.errorSamples);
    }
    const deliveries = st.received;
    const serverCpuSByInstance = cpuS.slice(0, pids.length);
    const serverCpuS = serverCpuSByInstance.reduce((a, b) => a + b, 0);
    const redisCpuS = redisPid !== undefined ? cpuS[pids.length]! : 0;
    const result: RunResult = {
      id: spec.id,
      label: spec.label,
      repetition: 1,
      store: spec.redis ? "redis" : "file",
      instances: spec.instances,
      receivers: ready,
      receiversPerInstance: conns.map((c) => c.ready),
      connectFailed: failed,
      messages: MESSAGES,
      warmup: warm,
      inflight: INFLIGHT,
      deliveries,
      expected: MESSAGES * ready,
      wallS: u.wallS,
      deliveriesPerS: deliveries / u.wallS,
      messagesPerS: MESSAGES / u.wallS,
      p50Ms: histPercentile(st.hist, 0.5) / 1000,
      p99Ms: histPercentile(st.hist, 0.99) / 1000,
      byInstance: (st.groupHists ?? []).map((h, i) => ({ instance: i + 1, receivers: conns[i]?.ready ?? 0, p50Ms: histPercentile(h, 0.5) / 1000, p99Ms: histPercentile(h, 0.99) / 1000 })),
      serverCpuS,
      serverCpuUsPerDelivery: (serverCpuS * 1e6) / deliveries,
      serverCpuSByInstance,
      serverCpuPreciseSByInstance: preciseS.slice(0, pids.length),
      serverUtil: serverCpuS / u.wallS,
      redis: redisPid === undefined ? null : {
        cpuS: redisCpuS,
        cpuPreciseS: preciseS[pids.length]!,
        userS: cpu1[pids.length]!.user - cpu0[pids.length]!.user,
        sysS: cpu1[pids.length]!.sys - cpu0[pids.length]!.sys,
        util: redisCpuS / u.wallS,
        cpuUsPerDelivery: (redisCpuS * 1e6) / deliveries,
        commands: commands1 - commands0,
        commandsPerMessage: (commands1 - commands0) / MESSAGES,
      },
      totalCpuUsPerDelivery: ((serverCpuS + redisCpuS) * 1e6) / deliveries,
      genUtil: u.genUtil,
      otherUtil: u.otherUtil,
      checks: {
        receivers: st.check,
        closedDuringRun: st.closedDuringRun,
        acked: sender.acked,
        ackRepeated: sender.ackRepeated,
        seqNotSendOrder,
        watchers: watchers.map((w) => w.report(ackSeq)),
        errorFrames,
        errorSamples,
        serverLog,
        serverLogSamples,
      },
      problems: [],
    };
    result.problems = problemsOf(result, total);
    return result;
  } catch (err) {
    const log = serverLogSamples.length ? `\nserver log: ${serverLogSamples.join("\n")}` : "";
    const tails = servers.map((s, i) => `instance ${i + 1} output tail:\n  ${s.output.slice(-5).join("\n  ")}`).join("\n");
    throw new Error(`${(err as Error).message}${log}\n${tails}${redis ? `\nredis log tail:\n  ${redis.log().split("\n").slice(-5).join("\n  ")}` : ""}`);
  } finally {
    for (const w of watchers) w.close();
    await Promise.all(servers.map((s) => s.stop()));
    await redis?.stop();
    await gen.closeAll();
  }
}

/** Every check that failed, in words. */
function problemsOf(r: RunResult, total: number): string[] {
  const out: string[] = [];
  const c = r.checks;
  if (r.connectFailed) out.push(`${r.connectFailed} receivers could not connect`);
  if (r.deliveries !== r.expected) out.push(`measured deliveries ${r.deliveries} != expected ${r.expected}`);
  if (c.receivers) {
    if (c.receivers.missing) out.push(`${c.receivers.clientsShort} receivers lack ${c.receivers.missing} deliveries in all`);
    if (c.receivers.outOfOrder) out.push(`${c.receivers.outOfOrder} deliveries arrived after a later message (out of order)`);
    if (c.receivers.repeated) out.push(`${c.receivers.repeated} deliveries repeated the previous message`);
  }
  if (c.closedDuringRun) out.push(`${c.closedDuringRun} receivers were closed during the run`);
  if (c.acked !== total) out.push(`${total - c.acked} of ${total} messages never acked`);
  if (c.ackRepeated) out.push(`${c.ackRepeated} acks repeated`);
  if (c.seqNotSendOrder) out.push(`${c.seqNotSendOrder} messages acked with a seq other than their send position (expected 1..${total})`);
  for (const w of c.watchers) {
    const bad = [
      w.got < total ? `${total - w.got} messages missing` : "",
      w.seqGaps ? `${w.seqGaps} seqs skipped` : "",
      w.seqRepeated ? `${w.seqRepeated} seqs repeated` : "",
      w.seqBackwards ? `${w.seqBackwards} seqs went backwards` : "",
      w.seqMismatch ? `${w.seqMismatch} seqs differ from the ack's` : "",
      w.idRepeated ? `${w.idRepeated} messages delivered twice` : "",
    ].filter(Boolean);
    if (bad.length) out.push(`watcher on instance ${w.instance}: ${bad.join(", ")}`);
  }
  for (const [k, v] of Object.entries(c.errorFrames)) out.push(`${v} error frames "${k}"`);
  for (const [k, v] of Object.entries(c.serverLog)) out.push(`server log: ${v} x ${k}`);
  return out;
}

function renderTable(runs: RunResult[], all: RunResult[], errors: { id: string; label: string; error: string }[], ratios: Ratios | null): string {
  const head = ["run", "inst", "receivers", "deliv/s", "p50 ms", "p99 ms", "srv us/deliv", "redis CPU s", "redis us/deliv", "total us/deliv", "srv CPU", "redis CPU", "gen CPU", "others", "checks"];
  const rows = [head];
  for (const r of runs) {
    rows.push([
      r.label,
      String(r.instances),
      r.receiversPerInstance.join("+"),
      Math.round(r.deliveriesPerS).toLocaleString("en-US"),
      fx(r.p50Ms),
      fx(r.p99Ms),
      fx(r.serverCpuUsPerDelivery),
      r.redis ? fx(r.redis.cpuS) : "-",
      r.redis ? fx(r.redis.cpuUsPerDelivery) : "-",
      fx(r.totalCpuUsPerDelivery),
      pc(r.serverUtil),
      r.redis ? pc(r.redis.util) : "-",
      pc(r.genUtil),
      pc(r.otherUtil),
      r.problems.length ? `${r.problems.length} FAILED` : "ok",
    ]);
  }
  for (const e of errors) rows.push([e.label, ...head.slice(1, -1).map(() => "-"), "ERROR"]);
  const lines = [
    `cluster fan-out on ${RUNTIME}: 1 sender -> ${RECEIVERS} receivers, ${MESSAGES} messages of ${TEXT_BYTES} characters, ${INFLIGHT} in flight` +
      ` (ack + every receiver), ${INSTANCES} instances sharing one Redis${DURABLE_REDIS ? " (AOF, fsync always)" : " (nothing on disk)"}`,
    PIN ? "instances and redis-server pinned to core 0, the generator to core 1: cross-instance shares one core, so its throughput reflects total CPU cost" : "not pinned",
    pad(rows),
  ];
  if (ratios) {
    lines.push(
      "",
      `cross-instance / single instance (Redis): throughput ${fx(ratios.throughput)}x, p99 ${fx(ratios.p99)}x, p50 ${fx(ratios.p50)}x, ` +
        `server CPU/delivery ${fx(ratios.serverCpuPerDelivery)}x, servers+Redis CPU/delivery ${fx(ratios.totalCpuPerDelivery)}x`,
    );
    if (ratios.redisVsFileThroughput !== undefined) lines.push(`single instance Redis / file store: throughput ${fx(ratios.redisVsFileThroughput)}x, p99 ${fx(ratios.redisVsFileP99)}x`);
  }
  for (const r of runs) {
    if (r.redis) lines.push(`${r.label}: Redis CPU ${fx(r.redis.cpuS)} s over ${fx(r.wallS)} s (${pc(r.redis.util)} of a core; user ${fx(r.redis.userS)} s, sys ${fx(r.redis.sysS)} s), ${fx(r.redis.commandsPerMessage, 1)} commands/message`);
    if (r.byInstance.length > 1) lines.push(`  latency by instance: ${r.byInstance.map((b) => `#${b.instance}${b.instance === 1 ? " (sender's)" : ""} ${b.receivers} rx p50 ${fx(b.p50Ms)} p99 ${fx(b.p99Ms)} ms`).join("; ")}`);
    if (r.instances > 1) lines.push(`  server CPU by instance: ${r.serverCpuSByInstance.map((s) => `${fx(s)} s`).join(", ")}`);
  }
  const warnings: string[] = [];
  for (const r of all) {
    const label = `${r.label}${REPEAT > 1 ? ` #${r.repetition}` : ""}`;
    for (const p of r.problems) warnings.push(`PROBLEM: ${label}: ${p}`);
    for (const s of r.checks.errorSamples) warnings.push(`  error frame: ${s}`);
    for (const s of r.checks.serverLogSamples) warnings.push(`  ${s}`);
    if (r.genUtil > 0.9) warnings.push(`WARNING: ${label}: the generator used ${pc(r.genUtil)} of its core: deliveries/s may be a lower bound`);
    if (r.otherUtil > 0.15) warnings.push(`WARNING: ${label}: other processes used ${pc(r.otherUtil)} of a core: numbers disturbed`);
  }
  for (const e of errors) warnings.push(`ERROR: ${e.label}: ${e.error}`);
  const failedRuns = all.filter((r) => r.problems.length > 0).length;
  lines.push(
    "",
    failedRuns === 0 && errors.length === 0
      ? `checks passed in all ${all.length} runs: every receiver got every message once and in order; every message acked once, seqs 1..n in send order; each instance's watcher saw the same contiguous seqs; no error frame, no warn/error log line`
      : `checks FAILED in ${failedRuns} of ${all.length} runs${errors.length ? `, ${errors.length} runs did not finish` : ""} (details below)`,
  );
  if (warnings.length) lines.push(...warnings);
  return lines.join("\n");
}

interface Ratios {
  throughput?: number;
  p99?: number;
  p50?: number;
  serverCpuPerDelivery?: number;
  totalCpuPerDelivery?: number;
  redisVsFileThroughput?: number;
  redisVsFileP99?: number;
}

async function main(): Promise<number> {
  const fds = openFilesLimit("self");
  if (!PIN) console.warn(`WARNING: not pinning (taskset ${which("taskset") ? "found" : "missing"}, ${CORES} cores): numbers are noisier`);
  if (fds < RECEIVERS + 200) console.warn(`WARNING: open files limit is ${fds}; ${RECEIVERS} receivers may not all connect`);
  if (RUNTIME === "node" && !flag("no-build")) console.log(build(ROOT));
  const watchdog = setTimeout(() => {
    console.error(`\nTIME LIMIT: the run passed ${Math.round(HARD_LIMIT_MS / 1000)} s; stopping every process it started`);
    killAllStarted();
    process.exit(3); // redis-server.ts SIGKILLs its redis-servers on exit
  }, HARD_LIMIT_MS);
  const gen = new Gen(WORKERS);
  process.on("SIGINT", () => (killAllStarted(), process.exit(130)));
  process.on("SIGTERM", () => (killAllStarted(), process.exit(143)));
  const specs: RunSpec[] = [
    ...(WITH_FILE ? [{ id: "file", label: "file store, 1 instance", instances: 1, redis: false } as RunSpec] : []),
    { id: "redis1", label: "Redis, 1 instance", instances: 1, redis: true },
    { id: "redisN", label: `Redis, ${INSTANCES} instances`, instances: INSTANCES, redis: true },
  ];
  const all: RunResult[] = [];
  const errors: { id: string; label: string; error: string }[] = [];
  try {
    for (let k = 1; k <= REPEAT; k++) for (const spec of specs) {
      const t = performance.now();
      process.stdout.write(`${(spec.label + (REPEAT > 1 ? ` #${k}` : "")).padEnd(27)} `);
      try {
        const r = await run(gen, spec);
        r.repetition = k;
        all.push(r);
        console.log(`ok in ${((performance.now() - t) / 1000).toFixed(1)} s  ${Math.round(r.deliveriesPerS)}/s p50 ${fx(r.p50Ms)} ms p99 ${fx(r.p99Ms)} ms` +
          ` srv ${fx(r.serverCpuUsPerDelivery)} us/deliv${r.redis ? ` redis ${fx(r.redis.cpuS)} s` : ""}${r.problems.length ? `  ${r.problems.length} PROBLEMS` : ""}`);
      } catch (err) {
        const msg = (err as Error).message;
        console.log(`FAILED: ${msg.split("\n")[0]}`);
        errors.push({ id: spec.id, label: `${spec.label}${REPEAT > 1 ? ` #${k}` : ""}`, error: msg.split("\n").slice(0, 20).join("\n") });
      }
    }
  } finally {
    await gen.terminate();
    killAllStarted();
    clearTimeout(watchdog);
  }
  // The headline of each run: its repetition with the most deliveries/s (every one is in the JSON).
  const runs = specs.flatMap((s) => {
    const mine = all.filter((r) => r.id === s.id);
    return mine.length ? [mine.reduce((a, b) => (b.deliveriesPerS > a.deliveriesPerS ? b : a))] : [];
  });
  const byId = (id: string) => runs.find((r) => r.id === id);
  const single = byId("redis1"), cross = byId("redisN"), file = byId("file");
  const ratios: Ratios | null = single || cross
    ? {
      throughput: ratio(cross?.deliveriesPerS, single?.deliveriesPerS),
      p99: ratio(cross?.p99Ms, single?.p99Ms),
      p50: ratio(cross?.p50Ms, single?.p50Ms),
      serverCpuPerDelivery: ratio(cross?.serverCpuUsPerDelivery, single?.serverCpuUsPerDelivery),
      totalCpuPerDelivery: ratio(cross?.totalCpuUsPerDelivery, single?.totalCpuUsPerDelivery),
      redisVsFileThroughput: ratio(single?.deliveriesPerS, file?.deliveriesPerS),
      redisVsFileP99: ratio(single?.p99Ms, file?.p99Ms),
    }
    : null;
  const results = {
    meta: {
      date: new Date().toISOString(),
      mode: QUICK ? "quick" : "default",
      command: `node --import tsx scripts/bench-cluster.ts ${argv.join(" ")}`.trim(),
      runtime: RUNTIME,
      sizes: { receivers: RECEIVERS, messages: MESSAGES, inflight: INFLIGHT, instances: INSTANCES, textBytes: TEXT_BYTES, repeat: REPEAT },
      serverEnv: LIFTED,
      redis: { durable: DURABLE_REDIS, version: spawnSync(process.env.REDIS_SERVER_BIN ?? "redis-server", ["--version"], { encoding: "utf8" }).stdout?.trim() ?? "?" },
      pinned: PIN ? { servers: 0, redis: 0, generator: 1 } : null,
      cores: CORES,
      cpu: os.cpus()[0]?.model ?? "?",
      clockTicksPerS: CLK_TCK,
      generatorWorkers: WORKERS,
      versions: versions(ROOT, ["ioredis", "hono", "ws"]),
      git: gitState(ROOT),
      durationS: (performance.now() - started) / 1000,
      quietWaitS: Math.round(quiet.waitedMs / 100) / 10,
      loadAverage: os.loadavg(),
    },
    runs: Object.fromEntries(runs.map((r) => [r.id, r])),
    repetitions: REPEAT > 1 ? Object.fromEntries(specs.map((s) => [s.id, all.filter((r) => r.id === s.id)])) : undefined,
    ratios,
    errors,
  };
  const outDir = join(ROOT, "scripts", "bench", "results");
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, `cluster-${RUNTIME}.json`), JSON.stringify(results, null, 2) + "\n");
  console.log("\n" + renderTable(runs, all, errors, ratios));
  console.log(`\nwrote scripts/bench/results/cluster-${RUNTIME}.json in ${results.meta.durationS.toFixed(0)} s (${results.meta.quietWaitS} s of it waiting for a quiet machine)`);
  return errors.length > 0 || all.some((r) => r.problems.length > 0) ? 1 : 0;
}

// Re-exec pinned to core 1 with a raised file-descriptor limit (children inherit it).
if (reexecPinned(SELF, argv, { pin: PIN, fdNeed: FD_NEED })) {
  await main().then(
    (code) => process.exit(code),
    (err) => {
      console.error(err);
      killAllStarted();
      process.exit(1);
    },
  );
}
