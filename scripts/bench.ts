// ShootaWall benchmark against its peers (issue #6). One command:
//
//   node --import tsx scripts/bench.ts [--quick | --full] [--only=ours-node,ws-node,...] [--scenarios=fanout,idle,chatty,flat]
//   node --import tsx scripts/bench.ts --profile      # CPU profile of our Node server during fan-out
//
//   --quick  about 2 minutes: fan-out 200 receivers x 500 messages, idle N=1000, chatty 3 s, flat 100/1000
//   (none)   fan-out 1000 x 2000 (16 in flight), idle N=5000, chatty 100 clients 10 s, flat 100/5000
//   --full   the default plus idle N=20000 (about 10-15 minutes)
//   --workers=N  generator worker threads (default 2); --no-build skips `tsc -p tsconfig.build.json`
//   --chatty-rate=R  messages per second per chatty client (default 5: 100 clients -> 50k deliveries/s)
//   --repeat=K  fan-out runs per server, best CPU/delivery wins (default 2; 1 with --quick)
//   --out=FILE  write the JSON there instead (latest.json and docs/bench.svg untouched)
//   --fanout=RxM  fan-out size instead of the mode's (e.g. --profile --fanout=5000x200)
//   --report[=FILE]  print the table of a saved run (default: latest.json) and redraw docs/bench.svg
//   --quiet-wait=S  seconds per run to wait, in all, for other processes to go quiet (default 180; 20 quick)
// Also written: scripts/bench/results/<quick|default|full>.json. See scripts/bench/README.md.
//
// Our server on Node (dist/main.js), Deno and Bun (src/main.ts), and four peers (scripts/bench/peers/):
// a bare `ws` loop and Socket.IO 4.8 on Node, Bun's native pub/sub (server.publish), and a bare
// Deno.serve + Deno.upgradeWebSocket loop. Each scenario starts its server fresh, pinned with taskset to
// core 0; this process re-executes itself pinned to core 1 (with `ulimit -n` raised) and is the load
// generator: raw-socket WebSocket clients (scripts/bench/wsclient.ts) spread over worker threads
// (scripts/bench/worker.ts). Loopback only; every phase is bounded in time; only processes started
// here are stopped, by PID. Output: a table on stdout, scripts/bench/results/latest.json, docs/bench.svg.

import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { cpuPrecise, cpuSplit, killAllStarted, machineBusySeconds, openFilesLimit, rssKb, type ServerProcess, sleep, startProcess, which } from "./bench/proc.ts";
import { type ChattyResult, evaluateTargets, type FanoutResult, type IdleResult, renderSvg, renderTable, type Results, type ServerResult } from "./bench/report.ts";
import { HIST_BUCKETS, histPercentile, markerText, nowUs, type Proto, RawClient, sourceAddress } from "./bench/wsclient.ts";
import type { WorkerCommand, WorkerReply } from "./bench/worker.ts";
import { summariseProfile } from "./bench/profile.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
const option = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);

if (flag("help") || flag("h")) {
  const lines = readFileSync(SELF, "utf8").split("\n");
  console.log(lines.slice(0, lines.findIndex((l) => !l.startsWith("//"))).map((l) => l.slice(3)).join("\n"));
  process.exit(0);
}

// --report[=FILE]: print the table of a saved run (default latest.json) and redraw docs/bench.svg from it.
const REPORT = argv.find((a) => a === "--report" || a.startsWith("--report="));
if (REPORT) {
  const file = REPORT.includes("=") ? REPORT.slice("--report=".length) : "scripts/bench/results/latest.json";
  const saved = JSON.parse(readFileSync(join(ROOT, file), "utf8")) as Results;
  saved.targets = evaluateTargets(saved);
  console.log(renderTable(saved));
  if (!flag("no-svg")) writeFileSync(join(ROOT, "docs", "bench.svg"), renderSvg(saved));
  process.exit(0);
}

const QUICK = flag("quick");
const FULL = flag("full");
const PROFILE = flag("profile");
const CORES = os.cpus().length;
const TASKSET = which("taskset");
const PIN = TASKSET !== undefined && CORES >= 2;
const FD_NEED = 65536;

// ---------------------------------------------------------------------------------------------------
interface Sizes {
  fanout: { receivers: number; messages: number; inflight: number };
  idle: number[];
  chatty: { clients: number; durationMs: number; ratePerS: number };
  flat: { receivers: number; messages: number }[];
  textBytes: number;
  settleMs: number;
}

const CHATTY_RATE = Number(option("chatty-rate") ?? 5);
const REPEAT = Math.max(1, Number(option("repeat") ?? (QUICK ? 1 : 2)));
const SIZES: Sizes = QUICK
  ? {
    fanout: { receivers: 200, messages: 500, inflight: 16 },
    idle: [1000],
    chatty: { clients: 100, durationMs: 3000, ratePerS: CHATTY_RATE },
    flat: [{ receivers: 100, messages: 1500 }, { receivers: 1000, messages: 150 }],
    textBytes: 100,
    settleMs: 800,
  }
  : {
    fanout: { receivers: 1000, messages: 2000, inflight: 16 },
    idle: FULL ? [5000, 20000] : [5000],
    chatty: { clients: 100, durationMs: 10000, ratePerS: CHATTY_RATE },
    flat: [{ receivers: 100, messages: 10000 }, { receivers: 5000, messages: 200 }],
    textBytes: 100,
    settleMs: 2000,
  };

// --fanout=RxM overrides the fan-out size (e.g. --profile --fanout=5000x200).
const FANOUT_OPT = /^(\d+)x(\d+)$/.exec(option("fanout") ?? "");
if (FANOUT_OPT) SIZES.fanout = { ...SIZES.fanout, receivers: Number(FANOUT_OPT[1]), messages: Number(FANOUT_OPT[2]) };

interface ServerSpec {
  id: string;
  label: string;
  runtime: "node" | "deno" | "bun";
  ours: boolean;
  proto: Proto;
  cmd: string;
  args: string[];
  env?: Record<string, string>;
  /** Scenarios this server runs (default: all selected). */
  scenarios?: string[];
}

const NODE = process.execPath;
const DENO = join(ROOT, "node_modules", ".bin", "deno");
const BUN = join(ROOT, "node_modules", ".bin", "bun");
// Our server keeps messages in memory for the comparison (the peers keep nothing); "ours-node-file"
// adds the durable file store (fsync always, the default) on Node, in a temporary DATA_DIR.
const OURS_ENV = {
  STORE: "memory",
  LOG_LEVEL: "warn",
  RATE_LIMIT_PER_S: "0",
  MAX_CONNECTIONS_PER_IP: "0",
  MAX_CONNECTIONS: "0",
  DENO_NO_UPDATE_CHECK: "1",
};
const SERVERS: ServerSpec[] = [
  { id: "ours-node", label: "ShootaWall Node", runtime: "node", ours: true, proto: "ours", cmd: NODE, args: ["dist/main.js"], env: OURS_ENV },
  { id: "ours-deno", label: "ShootaWall Deno", runtime: "deno", ours: true, proto: "ours", cmd: DENO, args: ["run", "--allow-net", "--allow-read", "--allow-env", "--allow-write", "src/main.ts"], env: OURS_ENV },
  { id: "ours-bun", label: "ShootaWall Bun", runtime: "bun", ours: true, proto: "ours", cmd: BUN, args: ["run", "src/main.ts"], env: OURS_ENV },
  { id: "ours-node-file", label: "ShootaWall Node+file", runtime: "node", ours: true, proto: "ours", cmd: NODE, args: ["dist/main.js"], env: { ...OURS_ENV, STORE: "file", FSYNC: "always" }, scenarios: ["fanout", "chatty"] },
  { id: "ws-node", label: "bare ws (Node)", runtime: "node", ours: false, proto: "ours", cmd: NODE, args: ["scripts/bench/peers/ws-node.mjs"] },
  { id: "sio-node", label: "Socket.IO (Node)", runtime: "node", ours: false, proto: "sio", cmd: NODE, args: ["scripts/bench/peers/socketio-node.mjs"] },
  { id: "bun-native", label: "Bun publish", runtime: "bun", ours: false, proto: "ours", cmd: BUN, args: ["run", "scripts/bench/peers/bun-native.ts"] },
  { id: "deno-bare", label: "bare Deno", runtime: "deno", ours: false, proto: "ours", cmd: DENO, args: ["run", "--allow-net", "--allow-env", "scripts/bench/peers/deno-bare.ts"], env: { DENO_NO_UPDATE_CHECK: "1" } },
];

function wsPath(spec: ServerSpec, name: string): string {
  return spec.proto === "sio" ? `/socket.io/?EIO=4&transport=websocket&name=${name}` : `/ws/bench?name=${name}`;
}

// ---------------------------------------------------------------------------------------------------
// Generator: worker threads holding the receiving connections; this thread is the fan-out sender.

class Gen {
  workers: Worker[] = [];
  #waiting = new Map<Worker, Map<string, (m: WorkerReply) => void>>();
  onDone: (ids: number[]) => void = () => {};
  /** Connections made in this run so far: picks the source address 127.0.a.b of the next one. */
  connSerial = 0;

  constructor(n: number) {
    for (let i = 0; i < n; i++) {
      const w = new Worker(new URL("./bench/worker-boot.mjs", import.meta.url), { execArgv: [] });
      this.#waiting.set(w, new Map());
      w.on("message", (m: WorkerReply) => {
        if (m.op === "done") return this.onDone(m.ids);
        const waiter = this.#waiting.get(w)!.get(m.op);
        if (waiter) this.#waiting.get(w)!.delete(m.op), waiter(m);
      });
      w.on("error", (err) => console.error("worker error:", err));
      this.workers.push(w);
    }
  }

  ask<T extends WorkerReply["op"]>(w: Worker, cmd: WorkerCommand, reply: T, timeoutMs = 120000): Promise<Extract<WorkerReply, { op: T }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker did not answer ${cmd.op} in ${timeoutMs} ms`)), timeoutMs);
      this.#waiting.get(w)!.set(reply, (m) => (clearTimeout(timer), resolve(m as Extract<WorkerReply, { op: T }>)));
      w.postMessage(cmd);
    });
  }

  tell(cmd: WorkerCommand): void {
    for (const w of this.workers) w.postMessage(cmd);
  }

  /** Opens `count` connections spread over the workers; `{n}` in the path becomes the client index. */
  async connect(srv: ServerProcess, spec: ServerSpec, count: number, name: string): Promise<{ ready: number; failed: number; reasons: Record<string, number>; perWorker: number[]; ms: number }> {
    const started = performance.now();
    const per = this.workers.map((_, i) => Math.floor(count / this.workers.length) + (i < count % this.workers.length ? 1 : 0));
    let base = 0;
    const replies = await Promise.all(this.workers.map((w, i) => {
      const cmd: WorkerCommand = {
        op: "connect", host: "127.0.0.1", port: srv.port, path: wsPath(spec, name), proto: spec.proto,
        count: per[i]!, firstGlobal: this.connSerial, clientBase: base, concurrency: 64, timeoutMs: 20000,
      };
      this.connSerial += per[i]!;
      base += per[i]!;
      return this.ask(w, cmd, "connected", 180000);
    }));
    const reasons: Record<string, number> = {};
    for (const r of replies) for (const [k, v] of Object.entries(r.reasons)) reasons[k] = (reasons[k] ?? 0) + v;
    return {
      ready: replies.reduce((a, r) => a + r.ready, 0),
      failed: replies.reduce((a, r) => a + r.failed, 0),
      reasons,
      perWorker: replies.map((r) => r.ready),
      ms: performance.now() - started,
    };
  }

  async stats() {
    const all = await Promise.all(this.workers.map((w) => this.ask(w, { op: "stats" }, "stats")));
    const hist = new Array<number>(HIST_BUCKETS).fill(0);
    let senderHist: number[] | null = null;
    for (const s of all) {
      for (let i = 0; i < HIST_BUCKETS; i++) hist[i]! += s.hist[i]!;
      if (s.senderHist) {
        senderHist ??= new Array<number>(s.senderHist.length).fill(0);
        for (let i = 0; i < s.senderHist.length; i++) senderHist[i]! += s.senderHist[i]!;
      }
    }
    const reasons: Record<string, number> = {};
    for (const s of all) for (const [k, v] of Object.entries(s.reasons)) reasons[k] = (reasons[k] ?? 0) + v;
    return {
      received: all.reduce((a, s) => a + s.received, 0),
      live: all.reduce((a, s) => a + s.live, 0),
      closedDuringRun: all.reduce((a, s) => a + s.closedDuringRun, 0),
      hist,
      senderHist,
      reasons,
    };
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.workers.map((w) => this.ask(w, { op: "close" }, "closed")));
  }

  async terminate(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** One connection in this thread (the fan-out sender); resolves once the server greeted it. */
function connectOne(gen: Gen, srv: ServerProcess, spec: ServerSpec, name: string): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("sender did not connect in 20 s")), 20000);
    new RawClient(-1, { host: "127.0.0.1", port: srv.port, path: wsPath(spec, name), proto: spec.proto, localAddress: sourceAddress(gen.connSerial++) }, {
      ready: (c) => (clearTimeout(timer), resolve(c)),
      delivery: () => {},
      closed: (_c, why) => (clearTimeout(timer), reject(new Error(`sender: ${why}`))),
    });
  });
}

interface Meter {
  t: number;
  server: { user: number; sys: number };
  serverPrecise: number;
  gen: NodeJS.CpuUsage;
  machine: number;
}
const meter = (srv: ServerProcess): Meter => ({ t: performance.now(), server: cpuSplit(srv.pid), serverPrecise: cpuPrecise(srv.pid), gen: process.cpuUsage(), machine: machineBusySeconds() });
/** CPU used since `m`: the server's, the generator's, and the rest of the machine's (noise). */
function since(srv: ServerProcess, m: Meter) {
  const now = meter(srv);
  const wallS = (now.t - m.t) / 1000;
  const serverSysS = now.server.sys - m.server.sys;
  const serverCpuS = now.server.user - m.server.user + serverSysS;
  const machineS = now.machine - m.machine;
  const genUserS = (now.gen.user - m.gen.user) / 1e6;
  const genSysS = (now.gen.system - m.gen.system) / 1e6;
  const genCpuS = genUserS + genSysS;
  const otherS = Math.max(0, machineS - serverCpuS - genCpuS);
  return {
    wallS, serverCpuS, genCpuS, serverCpuPreciseS: now.serverPrecise - m.serverPrecise, serverUtil: serverCpuS / wallS, genUtil: genCpuS / wallS,
    serverSysShare: serverSysS / serverCpuS, genSysShare: genSysS / genCpuS, otherUtil: otherS / wallS,
  };
}

/**
 * Other processes share this 2-core machine (test suites, browsers). Before each server start, wait
 * until the machine is quiet (under 15% of a core busy over half a second), within a budget per run.
 */
let quietBudgetMs = Number(option("quiet-wait") ?? (QUICK ? 20 : 180)) * 1000;
let quietWaitedMs = 0;
async function waitQuiet(): Promise<void> {
  const started = performance.now();
  while (quietBudgetMs > 0) {
    const b0 = machineBusySeconds(), t0 = performance.now();
    await sleep(500);
    const busy = (machineBusySeconds() - b0) / ((performance.now() - t0) / 1000);
    if (busy < 0.15) break;
    quietBudgetMs -= performance.now() - t0;
  }
  quietWaitedMs += performance.now() - started;
}

async function startServer(spec: ServerSpec, extraNodeArgs: string[] = []): Promise<ServerProcess> {
  await waitQuiet();
  const args = spec.runtime === "node" ? [...extraNodeArgs, ...spec.args] : spec.args;
  // Our server gets a fresh temporary DATA_DIR (file store, users): nothing is written into the repo.
  const dataDir = spec.ours ? mkdtempSync(join(os.tmpdir(), "shootawall-bench-")) : undefined;
  const env = { ...spec.env, ...(dataDir ? { DATA_DIR: dataDir } : {}) };
  const srv = await startProcess(spec.cmd, args, { cwd: ROOT, env, core: PIN ? 0 : undefined }).catch((err) => {
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    throw err;
  });
  const stop = srv.stop.bind(srv);
  srv.stop = async (graceMs?: number) => {
    await stop(graceMs);
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  };
  return srv;
}

/** Sends ids [from, to) with at most `inflight` outstanding; an id is done when every worker says so. */
function runWindow(gen: Gen, sender: RawClient, activeWorkers: number, doneCount: Uint8Array, from: number, to: number, inflight: number, textBytes: number, timeoutMs: number, onProgress?: (completed: number) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let next = from, outstanding = 0, completed = 0;
    const timer = setTimeout(() => reject(new Error(`fan-out stalled: ${completed}/${to - from} messages complete after ${timeoutMs} ms`)), timeoutMs);
    const pump = () => {
      while (outstanding < inflight && next < to) {
        sender.sendChat(markerText(next, nowUs(), 0, textBytes), next);
        next++;
        outstanding++;
      }
    };
    gen.onDone = (ids) => {
      for (const id of ids) {
        if (id < from || id >= to) continue;
        if (++doneCount[id]! !== activeWorkers) continue;
        outstanding--;
        completed++;
        onProgress?.(completed);
      }
      if (completed === to - from) {
        clearTimeout(timer);
        gen.onDone = () => {};
        resolve();
      } else pump();
    };
    pump();
  });
}

async function fanout(gen: Gen, spec: ServerSpec, receivers: number, messages: number, inflight: number, opts: { extraNodeArgs?: string[] } = {}): Promise<FanoutResult> {
  const srv = await startServer(spec, opts.extraNodeArgs);
  try {
    const conn = await gen.connect(srv, spec, receivers, "rx");
    if (conn.ready === 0) throw new Error(`no receiver connected: ${JSON.stringify(conn.reasons)}`);
    const sender = await connectOne(gen, srv, spec, "tx");
    await sleep(300);
    const warm = Math.min(200, Math.ceil(messages * 0.1));
    const total = warm + messages;
    gen.tell({ op: "fanout", total, measureFrom: warm });
    const active = conn.perWorker.filter((n) => n > 0).length;
    const doneCount = new Uint8Array(total);
    const budget = (n: number) => 30000 + (n * conn.ready) / 20; // 20 deliveries/ms at worst
    await runWindow(gen, sender, active, doneCount, 0, warm, inflight, SIZES.textBytes, budget(warm));
    gen.tell({ op: "reset" });
    await sleep(50);
    const m0 = meter(srv);
    const fromUs = nowUs();
    // The measured phase in 5 chunks too: their spread shows how steady (or disturbed) the run was.
    const chunks: { deliveriesPerS: number; cpuUsPerDelivery: number; otherUtil: number }[] = [];
    const perChunk = Math.ceil(messages / 5);
    let chunkStart = m0, chunkFrom = 0;
    const progress = (completed: number) => {
      if (completed - chunkFrom < perChunk && completed !== messages) return;
      const c = since(srv, chunkStart);
      const d = (completed - chunkFrom) * conn.ready;
      chunks.push({ deliveriesPerS: d / c.wallS, cpuUsPerDelivery: (c.serverCpuPreciseS * 1e6) / d, otherUtil: c.otherUtil });
      chunkStart = meter(srv);
      chunkFrom = completed;
    };
    await runWindow(gen, sender, active, doneCount, warm, total, inflight, SIZES.textBytes, budget(messages), progress);
    const u = since(srv, m0);
    const toUs = nowUs();
    const cpus = chunks.map((c) => c.cpuUsPerDelivery).sort((a, b) => a - b);
    const st = await gen.stats();
    sender.close();
    const deliveries = st.received;
    return {
      receivers: conn.ready,
      connectFailed: conn.failed,
      messages,
      inflight,
      deliveries,
      expected: messages * conn.ready,
      wallS: u.wallS,
      deliveriesPerS: deliveries / u.wallS,
      messagesPerS: messages / u.wallS,
      p50Ms: histPercentile(st.hist, 0.5) / 1000,
      p99Ms: histPercentile(st.hist, 0.99) / 1000,
      cpuUsPerDelivery: (u.serverCpuS * 1e6) / deliveries,
      cpuUsPerDeliveryPrecise: (u.serverCpuPreciseS * 1e6) / deliveries,
      serverCpuS: u.serverCpuS,
      serverUtil: u.serverUtil,
      genUtil: u.genUtil,
      genSysShare: u.genSysShare,
      serverSysShare: u.serverSysShare,
      otherUtil: u.otherUtil,
      genCpuUsPerDelivery: (u.genCpuS * 1e6) / deliveries,
      closedDuringRun: st.closedDuringRun,
      chunkCpuUsPerDelivery: { min: cpus[0]!, median: cpus[Math.floor(cpus.length / 2)]!, max: cpus[cpus.length - 1]! },
      chunks,
      windowUs: { from: fromUs, to: toUs },
    };
  } finally {
    await srv.stop();
    await gen.closeAll();
  }
}

async function idle(gen: Gen, spec: ServerSpec, n: number): Promise<IdleResult> {
  const srv = await startServer(spec);
  try {
    // Warm the connection path (lazy module loads, JIT) so the baseline holds no first-use costs.
    const warm = await gen.connect(srv, spec, 20, "rx");
    await gen.closeAll();
    if (warm.ready === 0) throw new Error(`no warm-up connection: ${JSON.stringify(warm.reasons)}`);
    await sleep(SIZES.settleMs);
    const baseKb = await sampleRss(srv);
    const m0 = meter(srv);
    const conn = await gen.connect(srv, spec, n, "rx");
    const connectCpu = since(srv, m0);
    await sleep(SIZES.settleMs);
    const loadedKb = await sampleRss(srv);
    await sleep(QUICK ? 500 : 3000);
    // Still held and alive: one broadcast must reach every connection.
    const sender = await connectOne(gen, srv, spec, "tx");
    gen.tell({ op: "fanout", total: 1, measureFrom: 0 });
    const doneCount = new Uint8Array(1);
    const active = conn.perWorker.filter((x) => x > 0).length;
    let probeOk = true;
    await runWindow(gen, sender, active, doneCount, 0, 1, 1, SIZES.textBytes, 60000).catch(() => (probeOk = false));
    const st = await gen.stats();
    sender.close();
    return {
      n,
      ready: conn.ready,
      failed: conn.failed,
      failReasons: conn.reasons,
      connectS: conn.ms / 1000,
      connectCpuUsPerConn: (connectCpu.serverCpuS * 1e6) / Math.max(1, conn.ready),
      baselineKb: baseKb,
      loadedKb,
      perConnKb: (loadedKb - baseKb) / Math.max(1, conn.ready),
      held: st.live,
      probeDelivered: st.received,
      probeComplete: probeOk,
    };
  } finally {
    await srv.stop(8000);
    await gen.closeAll();
  }
}

async function sampleRss(srv: ServerProcess): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < 3; i++) {
    xs.push(rssKb(srv.pid));
    await sleep(200);
  }
  return xs.sort((a, b) => a - b)[1]!;
}

async function chatty(gen: Gen, spec: ServerSpec): Promise<ChattyResult> {
  const { clients, durationMs, ratePerS } = SIZES.chatty;
  const srv = await startServer(spec);
  try {
    const conn = await gen.connect(srv, spec, clients, "c{n}");
    await sleep(700);
    gen.tell({ op: "reset" });
    const m0 = meter(srv);
    const sentReplies = await Promise.all(gen.workers.map((w) => gen.ask(w, { op: "chatty", durationMs, ratePerS, size: SIZES.textBytes, senders: clients }, "chattySent", durationMs + 30000)));
    const sent = sentReplies.reduce((a, r) => a + r.sent, 0);
    const expected = sent * conn.ready;
    let st = await gen.stats();
    const drainUntil = performance.now() + 10000;
    while (st.received < expected && performance.now() < drainUntil) {
      await sleep(100);
      st = await gen.stats();
    }
    const u = since(srv, m0);
    const medians: number[] = [];
    if (st.senderHist) {
      for (let s = 0; s < clients; s++) {
        const h = st.senderHist.slice(s * HIST_BUCKETS, (s + 1) * HIST_BUCKETS);
        const p = histPercentile(h, 0.5);
        if (Number.isFinite(p)) medians.push(p / 1000);
      }
    }
    const byClient = medians.slice();
    medians.sort((a, b) => a - b);
    const p50 = histPercentile(st.hist, 0.5) / 1000;
    return {
      clients: conn.ready,
      ratePerS,
      durationS: durationMs / 1000,
      sent,
      deliveries: st.received,
      expected,
      deliveriesPerS: st.received / u.wallS,
      p50Ms: p50,
      p99Ms: histPercentile(st.hist, 0.99) / 1000,
      senderMedianMinMs: medians[0] ?? NaN,
      senderMedianMaxMs: medians[medians.length - 1] ?? NaN,
      fairnessSpread: medians.length ? (medians[medians.length - 1]! - medians[0]!) / p50 : NaN,
      senderMedianP10Ms: medians[Math.floor(medians.length * 0.1)] ?? NaN,
      senderMedianP90Ms: medians[Math.floor(medians.length * 0.9)] ?? NaN,
      senderMediansMs: byClient.map((x) => Math.round(x * 1000) / 1000),
      cpuUsPerDelivery: (u.serverCpuS * 1e6) / st.received,
      serverUtil: u.serverUtil,
      genUtil: u.genUtil,
      otherUtil: u.otherUtil,
    };
  } finally {
    await srv.stop();
    await gen.closeAll();
  }
}

function versions(): Record<string, string> {
  const v = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    return (r.stdout || r.stderr || "").split("\n")[0]!.trim();
  };
  const pkg = (name: string) => {
    try {
      return JSON.parse(readFileSync(join(ROOT, "node_modules", name, "package.json"), "utf8")).version as string;
    } catch {
      return "?";
    }
  };
  return {
    node: process.version,
    deno: v(DENO, ["--version"]),
    bun: v(BUN, ["--version"]),
    ws: pkg("ws"),
    "socket.io": pkg("socket.io"),
    hono: pkg("hono"),
  };
}

function gitState(): { commit: string; dirtyFiles: number } {
  const head = spawnSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT, encoding: "utf8" }).stdout?.trim() ?? "?";
  const dirty = spawnSync("git", ["status", "--porcelain", "src"], { cwd: ROOT, encoding: "utf8" }).stdout ?? "";
  return { commit: head, dirtyFiles: dirty.split("\n").filter(Boolean).length };
}

function build(): string {
  const r = spawnSync(join(ROOT, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.build.json"], { cwd: ROOT, encoding: "utf8" });
  return r.status === 0 ? "built" : `build failed (using the existing dist/): ${(r.stdout + r.stderr).split("\n").slice(0, 5).join(" | ")}`;
}

async function profileRun(gen: Gen): Promise<void> {
  const dir = join(ROOT, "scripts", "bench", "results", "profile");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const spec = SERVERS.find((s) => s.id === "ours-node")!;
  const f = SIZES.fanout;
  console.log(`profiling ${spec.label}: fan-out ${f.receivers} x ${f.messages} under --cpu-prof ...`);
  const r = await fanout(gen, spec, f.receivers, f.messages, f.inflight, { extraNodeArgs: ["--cpu-prof", `--cpu-prof-dir=${dir}`] });
  console.log(`(profiled run: ${Math.round(r.deliveriesPerS)} deliveries/s, ${r.cpuUsPerDelivery.toFixed(2)} us CPU/delivery, profiler overhead included)`);
  const file = readdirSync(dir).find((n) => n.endsWith(".cpuprofile"));
  if (!file) throw new Error("no .cpuprofile written");
  // Only the samples of the measured send phase (V8's profile clock and ours are both CLOCK_MONOTONIC).
  const summary = summariseProfile(JSON.parse(readFileSync(join(dir, file), "utf8")), ROOT, r.windowUs);
  writeFileSync(join(ROOT, "scripts", "bench", "results", "profile.json"), JSON.stringify({ date: new Date().toISOString(), git: gitState(), run: r, ...summary }, null, 2) + "\n");
  console.log(summary.text);
  console.log(`\nraw profile: scripts/bench/results/profile/${file}; summary: scripts/bench/results/profile.json`);
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const fds = openFilesLimit("self");
  if (!PIN) console.warn(`WARNING: not pinning (taskset ${TASKSET ? "found" : "missing"}, ${CORES} cores): numbers are noisier`);
  if (fds < 30000) console.warn(`WARNING: open files limit is ${fds}; large connection counts will fail (run as a user who may raise ulimit -n)`);
  if (!flag("no-build") && (!option("only") || option("only")!.includes("ours-node") || PROFILE)) console.log(build());
  const gen = new Gen(Number(option("workers") ?? 2));
  process.on("SIGINT", () => (killAllStarted(), process.exit(130)));
  try {
    if (PROFILE) return await profileRun(gen);
    const only = option("only")?.split(",");
    const chosen = option("scenarios")?.split(",") ?? ["fanout", "idle", "chatty", "flat"];
    const servers = SERVERS.filter((s) => !only || only.includes(s.id));
    const results: Results = {
      meta: {
        date: new Date().toISOString(),
        mode: QUICK ? "quick" : FULL ? "full" : "default",
        command: `node --import tsx scripts/bench.ts ${argv.join(" ")}`.trim(),
        sizes: SIZES,
        pinned: PIN ? { server: 0, generator: 1 } : null,
        cores: CORES,
        cpu: os.cpus()[0]?.model ?? "?",
        openFilesLimit: fds,
        generatorWorkers: gen.workers.length,
        loadAverageAtStart: os.loadavg(),
        versions: versions(),
        git: gitState(),
        durationS: 0,
      },
      servers: {},
      targets: [],
    };
    for (const spec of servers) {
      const scenarios = chosen.filter((x) => !spec.scenarios || spec.scenarios.includes(x));
      if (scenarios.length === 0) continue;
      const r: ServerResult = { id: spec.id, label: spec.label, runtime: spec.runtime, ours: spec.ours, errors: [] };
      results.servers[spec.id] = r;
      const attempt = async <T>(what: string, fn: () => Promise<T>): Promise<T | undefined> => {
        const t = performance.now();
        process.stdout.write(`${spec.label.padEnd(18)} ${what.padEnd(26)} `);
        try {
          const out = await fn();
          console.log(`ok in ${((performance.now() - t) / 1000).toFixed(1)} s  ${brief(out)}`);
          return out;
        } catch (err) {
          const msg = (err as Error).message.split("\n").slice(0, 4).join(" | ");
          console.log(`FAILED: ${msg}`);
          r.errors.push(`${what}: ${msg}`);
          return undefined;
        }
      };
      const f = SIZES.fanout;
      // Fan-out runs REPEAT times, first and last in the server's block (other processes on the machine
      // come and go); the headline is the run with the least CPU/delivery, every run is in the JSON.
      const fanoutRuns: FanoutResult[] = [];
      const fanoutOnce = async (k: number) => {
        const x = await attempt(`fan-out ${f.receivers}x${f.messages}${REPEAT > 1 ? ` #${k}` : ""}`, () => fanout(gen, spec, f.receivers, f.messages, f.inflight));
        if (x) fanoutRuns.push(x);
      };
      if (scenarios.includes("fanout")) await fanoutOnce(1);
      if (scenarios.includes("idle")) {
        r.idle = [];
        for (const want of SIZES.idle) {
          // A process cannot hold more sockets than its open-files limit: clamp, and say so.
          const n = Math.min(want, fds - 100);
          if (n < want) console.log(`NOTE: idle N=${want} clamped to ${n}: open files limit ${fds} (ulimit -n could not be raised)`);
          const x = await attempt(`idle N=${n}`, () => idle(gen, spec, n));
          if (x) r.idle.push({ ...x, requested: want });
        }
      }
      if (scenarios.includes("chatty")) r.chatty = await attempt(`chatty ${SIZES.chatty.clients} clients`, () => chatty(gen, spec));
      if (scenarios.includes("flat")) {
        r.flat = [];
        for (const x of SIZES.flat) {
          const y = await attempt(`flat ${x.receivers}x${x.messages}`, () => fanout(gen, spec, x.receivers, x.messages, f.inflight));
          if (y) r.flat.push(y);
        }
      }
      if (scenarios.includes("fanout")) for (let k = 2; k <= REPEAT; k++) await fanoutOnce(k);
      if (fanoutRuns.length) {
        r.fanout = fanoutRuns.reduce((a, b) => (b.cpuUsPerDelivery < a.cpuUsPerDelivery ? b : a));
        r.fanoutRuns = fanoutRuns;
      }
    }
    results.meta.durationS = (performance.now() - t0) / 1000;
    results.meta.quietWaitS = Math.round(quietWaitedMs / 100) / 10;
    results.meta.loadAverageAtEnd = os.loadavg();
    results.targets = evaluateTargets(results);
    const outDir = join(ROOT, "scripts", "bench", "results");
    mkdirSync(outDir, { recursive: true });
    const json = JSON.stringify(results, null, 2) + "\n";
    const wrote: string[] = [];
    const out = option("out");
    if (out) {
      // A partial or experimental run: its JSON where asked, latest.json and the chart left alone.
      writeFileSync(join(ROOT, out), json);
      wrote.push(out);
    } else {
      writeFileSync(join(outDir, "latest.json"), json);
      writeFileSync(join(outDir, `${results.meta.mode}.json`), json);
      mkdirSync(join(ROOT, "docs"), { recursive: true });
      writeFileSync(join(ROOT, "docs", "bench.svg"), renderSvg(results));
      wrote.push("scripts/bench/results/latest.json", `scripts/bench/results/${results.meta.mode}.json`, "docs/bench.svg");
    }
    console.log("\n" + renderTable(results));
    console.log(`\nwrote ${wrote.join(", ")} in ${results.meta.durationS.toFixed(0)} s (${results.meta.quietWaitS} s of it waiting for a quiet machine)`);
  } finally {
    await gen.terminate();
    killAllStarted();
  }
}

function brief(x: unknown): string {
  const o = x as Record<string, number>;
  if ("deliveriesPerS" in o && "cpuUsPerDelivery" in o && "receivers" in o) {
    return `${Math.round(o.deliveriesPerS!)}/s p50 ${o.p50Ms!.toFixed(2)} ms p99 ${o.p99Ms!.toFixed(2)} ms cpu ${o.cpuUsPerDelivery!.toFixed(2)} us/deliv server ${(o.serverUtil! * 100).toFixed(0)}% (${(o.serverSysShare! * 100).toFixed(0)}% sys) gen ${(o.genUtil! * 100).toFixed(0)}% (${o.genCpuUsPerDelivery!.toFixed(2)} us/deliv, ${(o.genSysShare! * 100).toFixed(0)}% sys) others ${(o.otherUtil! * 100).toFixed(0)}%`;
  }
  if ("perConnKb" in o) return `${o.ready}/${o.n} up in ${o.connectS!.toFixed(1)} s, ${o.perConnKb!.toFixed(2)} kB/conn, held ${o.held}, probe ${o.probeDelivered}`;
  if ("fairnessSpread" in o) return `${o.deliveries}/${o.expected} p50 ${o.p50Ms!.toFixed(2)} ms p99 ${o.p99Ms!.toFixed(2)} ms spread ${o.fairnessSpread!.toFixed(2)} cpu ${o.cpuUsPerDelivery!.toFixed(2)} us/deliv server ${(o.serverUtil! * 100).toFixed(0)}% gen ${(o.genUtil! * 100).toFixed(0)}% others ${(o.otherUtil! * 100).toFixed(0)}%`;
  return "";
}

// ---------------------------------------------------------------------------------------------------
// Re-exec pinned to core 1 with a raised file-descriptor limit (children inherit it).
if (!process.env.BENCH_PINNED) {
  const script = `ulimit -n ${FD_NEED} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec ${PIN ? "taskset -c 1 " : ""}"$0" "$@"`;
  const child = spawn("bash", ["-c", script, process.execPath, ...process.execArgv, SELF, ...argv], {
    stdio: "inherit",
    env: { ...process.env, BENCH_PINNED: "1" },
  });
  for (const s of ["SIGINT", "SIGTERM"] as const) process.on(s, () => child.pid && process.kill(child.pid, s));
  child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
} else {
  await main().catch((err) => {
    console.error(err);
    killAllStarted();
    process.exit(1);
  });
}
