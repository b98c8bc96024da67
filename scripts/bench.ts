// ShootaWall benchmark against its peers (issue #6). One command:
//
//   node --import tsx scripts/bench.ts [--quick | --full] [--only=ours-node,ws-node,...] [--scenarios=fanout,idle,chatty,chatty-low,flat]
//   node --import tsx scripts/bench.ts --profile      # CPU profile of our Node server during fan-out
//   node --import tsx scripts/bench.ts --profile=ID   # the same for another Node or Deno server (ours-deno, deno-bare, ws-node, ...)
//
//   --quick  about 4 minutes: fan-out 200 receivers x 500 messages, idle N=1000, chatty 3 s, flat 100/1000
//   (none)   fan-out 1000 x 2000 (16 in flight), idle N=5000, chatty 100 clients 10 s, flat 100/5000
//   --full   the default plus idle N=20000, 3 fan-out rounds (about 20-25 minutes)
//   --workers=N  generator worker threads (default 2); --no-build skips `tsc -p tsconfig.build.json`
//   --chatty-rate=R  messages per second per chatty client (default 5: 100 clients -> 50k deliveries/s);
//               chatty-low runs the same at a fifth of it (the latency tail without queueing)
//   --repeat=K  fan-out rounds (default 2; 3 with --full; 1 with --quick): each server once per round, next to
//               its peer; CPU ratios are judged round by round (median), each server's headline is its best run
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

import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { killAllStarted, openFilesLimit, reexecPinned, rssKb, type ServerProcess, sleep, startWithDataDir, which } from "./bench/proc.ts";
import { type ChattyResult, evaluateTargets, type FanoutResult, type IdleResult, renderSvg, renderTable, type Results, type ServerResult } from "./bench/report.ts";
import { HIST_BUCKETS, histPercentile, markerText, nowUs, type Proto, type RawClient } from "./bench/wsclient.ts";
import { connectOne as connectTarget, type ConnectResult, Gen, meter as meterPids, quietWaiter, runWindow as runIds, since as sincePids } from "./bench/gen.ts";
import { build, gitState, versions } from "./bench/meta.ts";
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
const PROFILE_ID = flag("profile") ? "ours-node" : option("profile");
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
const REPEAT = Math.max(1, Number(option("repeat") ?? (QUICK ? 1 : FULL ? 3 : 2)));
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
  // DENO_HTTP=node: the same source on Deno through node:http and ws (the Node adapter), for comparison.
  { id: "ours-deno-node", label: "ShootaWall Deno node:http", runtime: "deno", ours: true, proto: "ours", cmd: DENO, args: ["run", "--allow-net", "--allow-read", "--allow-env", "--allow-write", "src/main.ts"], env: { ...OURS_ENV, DENO_HTTP: "node" } },
  { id: "ours-bun", label: "ShootaWall Bun", runtime: "bun", ours: true, proto: "ours", cmd: BUN, args: ["run", "src/main.ts"], env: OURS_ENV },
  { id: "ours-node-file", label: "ShootaWall Node+file", runtime: "node", ours: true, proto: "ours", cmd: NODE, args: ["dist/main.js"], env: { ...OURS_ENV, STORE: "file", FSYNC: "always" }, scenarios: ["fanout", "chatty", "chatty-low"] },
  { id: "ws-node", label: "bare ws (Node)", runtime: "node", ours: false, proto: "ours", cmd: NODE, args: ["scripts/bench/peers/ws-node.mjs"] },
  { id: "sio-node", label: "Socket.IO (Node)", runtime: "node", ours: false, proto: "sio", cmd: NODE, args: ["scripts/bench/peers/socketio-node.mjs"] },
  { id: "bun-native", label: "Bun publish", runtime: "bun", ours: false, proto: "ours", cmd: BUN, args: ["run", "scripts/bench/peers/bun-native.ts"] },
  { id: "deno-bare", label: "bare Deno", runtime: "deno", ours: false, proto: "ours", cmd: DENO, args: ["run", "--allow-net", "--allow-env", "scripts/bench/peers/deno-bare.ts"], env: { DENO_NO_UPDATE_CHECK: "1" } },
];

/** Fan-out order within a round: each ShootaWall server right next to the peer it is compared with. */
const FANOUT_ORDER = ["ours-node", "ws-node", "sio-node", "ours-node-file", "ours-deno", "deno-bare", "ours-deno-node", "ours-bun", "bun-native"];

function wsPath(spec: ServerSpec, name: string): string {
  return spec.proto === "sio" ? `/socket.io/?EIO=4&transport=websocket&name=${name}` : `/ws/bench?name=${name}`;
}

// ---------------------------------------------------------------------------------------------------
// Generator: worker threads holding the receiving connections (scripts/bench/gen.ts); this thread is
// the fan-out sender.

/** Opens `count` connections to `srv` spread over the workers; `{n}` in the name becomes the client index. */
function connectTo(gen: Gen, srv: ServerProcess, spec: ServerSpec, count: number, name: string): Promise<ConnectResult> {
  return gen.connect({ port: srv.port, path: wsPath(spec, name), proto: spec.proto }, count);
}

/** One connection in this thread (the fan-out sender); resolves once the server greeted it. */
function connectOne(gen: Gen, srv: ServerProcess, spec: ServerSpec, name: string): Promise<RawClient> {
  return connectTarget(gen, { port: srv.port, path: wsPath(spec, name), proto: spec.proto });
}

const meter = (srv: ServerProcess) => meterPids([srv.pid]);
/** CPU used since `m`: the server's, the generator's, and the rest of the machine's (noise). */
const since = (srv: ServerProcess, m: ReturnType<typeof meter>) => sincePids([srv.pid], m);

/**
 * Other processes share this 2-core machine (test suites, browsers). Before each server start, wait
 * until the machine is quiet (under 15% of a core busy over half a second), within a budget per run.
 */
const quiet = quietWaiter(Number(option("quiet-wait") ?? (QUICK ? 20 : 180)) * 1000);

async function startServer(spec: ServerSpec, runtimeArgs: string[] = []): Promise<ServerProcess> {
  await quiet.wait();
  // Runtime flags go before the script on Node, after `run` on Deno.
  const args = spec.runtime === "node" ? [...runtimeArgs, ...spec.args] : spec.runtime === "deno" ? [spec.args[0]!, ...runtimeArgs, ...spec.args.slice(1)] : spec.args;
  // Our server gets a fresh temporary DATA_DIR (file store, users): nothing is written into the repo.
  return startWithDataDir(spec.cmd, args, { cwd: ROOT, env: { ...spec.env }, core: PIN ? 0 : undefined, dataDir: spec.ours });
}

/** Sends ids [from, to) with at most `inflight` outstanding; an id is done when every worker says so. */
function runWindow(gen: Gen, sender: RawClient, activeWorkers: number, doneCount: Uint8Array, from: number, to: number, inflight: number, textBytes: number, timeoutMs: number, onProgress?: (completed: number) => void): Promise<void> {
  return runIds(gen, (id) => sender.sendChat(markerText(id, nowUs(), 0, textBytes), id), activeWorkers, doneCount, from, to, inflight, timeoutMs, onProgress);
}

async function fanout(gen: Gen, spec: ServerSpec, receivers: number, messages: number, inflight: number, opts: { runtimeArgs?: string[] } = {}): Promise<FanoutResult> {
  const srv = await startServer(spec, opts.runtimeArgs);
  try {
    const conn = await connectTo(gen, srv, spec, receivers, "rx");
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
    const warm = await connectTo(gen, srv, spec, 20, "rx");
    await gen.closeAll();
    if (warm.ready === 0) throw new Error(`no warm-up connection: ${JSON.stringify(warm.reasons)}`);
    await sleep(SIZES.settleMs);
    const baseKb = await sampleRss(srv);
    const m0 = meter(srv);
    const conn = await connectTo(gen, srv, spec, n, "rx");
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

async function chatty(gen: Gen, spec: ServerSpec, ratePerS = SIZES.chatty.ratePerS): Promise<ChattyResult> {
  const { clients, durationMs } = SIZES.chatty;
  const srv = await startServer(spec);
  try {
    const conn = await connectTo(gen, srv, spec, clients, "c{n}");
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

async function profileRun(gen: Gen): Promise<void> {
  const dir = join(ROOT, "scripts", "bench", "results", "profile");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const spec = SERVERS.find((s) => s.id === PROFILE_ID);
  if (!spec || (spec.runtime !== "node" && spec.runtime !== "deno")) {
    throw new Error(`--profile=${PROFILE_ID}: not a Node or Deno server (${SERVERS.filter((s) => s.runtime !== "bun").map((s) => s.id).join(", ")})`);
  }
  const f = SIZES.fanout;
  console.log(`profiling ${spec.label}: fan-out ${f.receivers} x ${f.messages} under --cpu-prof ...`);
  const r = await fanout(gen, spec, f.receivers, f.messages, f.inflight, { runtimeArgs: ["--cpu-prof", `--cpu-prof-dir=${dir}`] });
  console.log(`(profiled run: ${Math.round(r.deliveriesPerS)} deliveries/s, ${r.cpuUsPerDelivery.toFixed(2)} us CPU/delivery, profiler overhead included)`);
  const file = readdirSync(dir).find((n) => n.endsWith(".cpuprofile"));
  if (!file) throw new Error("no .cpuprofile written");
  // Only the samples of the measured send phase (V8's profile clock and ours are both CLOCK_MONOTONIC).
  const summary = summariseProfile(JSON.parse(readFileSync(join(dir, file), "utf8")), ROOT, r.windowUs);
  const name = spec.id === "ours-node" ? "profile.json" : `profile-${spec.id}.json`;
  writeFileSync(join(ROOT, "scripts", "bench", "results", name), JSON.stringify({ date: new Date().toISOString(), git: gitState(ROOT), server: spec.id, run: r, ...summary }, null, 2) + "\n");
  console.log(summary.text);
  console.log(`\nraw profile: scripts/bench/results/profile/${file}; summary: scripts/bench/results/${name}`);
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const fds = openFilesLimit("self");
  if (!PIN) console.warn(`WARNING: not pinning (taskset ${TASKSET ? "found" : "missing"}, ${CORES} cores): numbers are noisier`);
  if (fds < 30000) console.warn(`WARNING: open files limit is ${fds}; large connection counts will fail (run as a user who may raise ulimit -n)`);
  if (!flag("no-build") && (!option("only") || option("only")!.includes("ours-node") || PROFILE_ID === "ours-node")) console.log(build(ROOT));
  const gen = new Gen(Number(option("workers") ?? 2));
  process.on("SIGINT", () => (killAllStarted(), process.exit(130)));
  try {
    if (PROFILE_ID !== undefined) return await profileRun(gen);
    const only = option("only")?.split(",");
    const chosen = option("scenarios")?.split(",") ?? ["fanout", "idle", "chatty", "chatty-low", "flat"];
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
        versions: versions(ROOT, ["ws", "socket.io", "hono"]),
        git: gitState(ROOT),
        durationS: 0,
      },
      servers: {},
      targets: [],
    };
    const scenariosOf = (spec: ServerSpec) => chosen.filter((x) => !spec.scenarios || spec.scenarios.includes(x));
    const attempt = async <T>(spec: ServerSpec, what: string, fn: () => Promise<T>): Promise<T | undefined> => {
      const t = performance.now();
      process.stdout.write(`${spec.label.padEnd(18)} ${what.padEnd(26)} `);
      try {
        const out = await fn();
        console.log(`ok in ${((performance.now() - t) / 1000).toFixed(1)} s  ${brief(out)}`);
        return out;
      } catch (err) {
        const msg = (err as Error).message.split("\n").slice(0, 4).join(" | ");
        console.log(`FAILED: ${msg}`);
        results.servers[spec.id]!.errors.push(`${what}: ${msg}`);
        return undefined;
      }
    };
    for (const spec of servers) {
      if (scenariosOf(spec).length === 0) continue;
      results.servers[spec.id] = { id: spec.id, label: spec.label, runtime: spec.runtime, ours: spec.ours, errors: [] };
    }
    const f = SIZES.fanout;
    // Fan-out runs REPEAT rounds. In each round every server runs once, each ShootaWall server next to
    // its peer (FANOUT_ORDER), and every other round in reverse order, so the machine's drift (other
    // processes come and go) hits both sides of a pair alike; the report gives the ratio round by round.
    // The headline of each server is its run with the least CPU/delivery; every run is in the JSON.
    const fanoutServers = servers.filter((spec) => scenariosOf(spec).includes("fanout"))
      .sort((a, b) => FANOUT_ORDER.indexOf(a.id) - FANOUT_ORDER.indexOf(b.id));
    for (let k = 1; k <= REPEAT; k++) {
      for (const spec of k % 2 === 1 ? fanoutServers : [...fanoutServers].reverse()) {
        const x = await attempt(spec, `fan-out ${f.receivers}x${f.messages}${REPEAT > 1 ? ` #${k}` : ""}`, () => fanout(gen, spec, f.receivers, f.messages, f.inflight));
        if (!x) continue;
        const run = { ...x, round: k };
        const r = results.servers[spec.id]!;
        (r.fanoutRuns ??= []).push(run);
        if (!r.fanout || run.cpuUsPerDelivery < r.fanout.cpuUsPerDelivery) r.fanout = run;
      }
    }
    for (const spec of servers) {
      const r = results.servers[spec.id];
      if (!r) continue;
      const scenarios = scenariosOf(spec);
      if (scenarios.includes("idle")) {
        r.idle = [];
        for (const want of SIZES.idle) {
          // A process cannot hold more sockets than its open-files limit: clamp, and say so.
          const n = Math.min(want, fds - 100);
          if (n < want) console.log(`NOTE: idle N=${want} clamped to ${n}: open files limit ${fds} (ulimit -n could not be raised)`);
          const x = await attempt(spec, `idle N=${n}`, () => idle(gen, spec, n));
          if (x) r.idle.push({ ...x, requested: want });
        }
      }
      if (scenarios.includes("chatty")) r.chatty = await attempt(spec, `chatty ${SIZES.chatty.clients} clients`, () => chatty(gen, spec));
      if (scenarios.includes("chatty-low")) {
        const rate = SIZES.chatty.ratePerS / 5;
        r.chattyLow = await attempt(spec, `chatty ${SIZES.chatty.clients} clients at ${rate}/s`, () => chatty(gen, spec, rate));
      }
      if (scenarios.includes("flat")) {
        r.flat = [];
        for (const x of SIZES.flat) {
          const y = await attempt(spec, `flat ${x.receivers}x${x.messages}`, () => fanout(gen, spec, x.receivers, x.messages, f.inflight));
          if (y) r.flat.push(y);
        }
      }
    }
    results.meta.durationS = (performance.now() - t0) / 1000;
    results.meta.quietWaitS = Math.round(quiet.waitedMs / 100) / 10;
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
if (reexecPinned(SELF, argv, { pin: PIN, fdNeed: FD_NEED })) {
  await main().catch((err) => {
    console.error(err);
    killAllStarted();
    process.exit(1);
  });
}
