// Result types, the stdout table, the targets of issue #6 and the SVG chart (docs/bench.svg).

export interface FanoutResult {
  receivers: number;
  connectFailed: number;
  messages: number;
  inflight: number;
  deliveries: number;
  expected: number;
  wallS: number;
  deliveriesPerS: number;
  messagesPerS: number;
  p50Ms: number;
  p99Ms: number;
  /** Server CPU (utime + stime from /proc/<pid>/stat, 10 ms ticks) per delivery, in microseconds. */
  cpuUsPerDelivery: number;
  /** The same from the threads' schedstat (nanoseconds). */
  cpuUsPerDeliveryPrecise: number;
  serverCpuS: number;
  serverUtil: number;
  genUtil: number;
  /** Share of the generator's CPU spent in the kernel. */
  genSysShare: number;
  genCpuUsPerDelivery: number;
  serverSysShare: number;
  /** CPU the rest of the machine used during the phase, in cores (noise from other processes). */
  otherUtil: number;
  closedDuringRun: number;
  /** CPU/delivery of the measured phase cut in 5 chunks: min, median, max. */
  chunkCpuUsPerDelivery: { min: number; median: number; max: number };
  chunks: { deliveriesPerS: number; cpuUsPerDelivery: number; otherUtil: number }[];
  /** The measured phase on the generator's monotonic clock (microseconds). */
  windowUs: { from: number; to: number };
  /** Fan-out round (--repeat): in each round every server runs once, a ShootaWall server next to its peer. */
  round?: number;
}

export interface IdleResult {
  n: number;
  /** N asked for (n is smaller when the open-files limit forced it down). */
  requested?: number;
  ready: number;
  failed: number;
  failReasons: Record<string, number>;
  connectS: number;
  connectCpuUsPerConn: number;
  baselineKb: number;
  loadedKb: number;
  perConnKb: number;
  held: number;
  probeDelivered: number;
  probeComplete: boolean;
}

export interface ChattyResult {
  clients: number;
  ratePerS: number;
  durationS: number;
  sent: number;
  deliveries: number;
  expected: number;
  deliveriesPerS: number;
  p50Ms: number;
  p99Ms: number;
  senderMedianMinMs: number;
  senderMedianMaxMs: number;
  /** (slowest sender's median - fastest sender's median) / overall median. */
  fairnessSpread: number;
  senderMedianP10Ms: number;
  senderMedianP90Ms: number;
  /** Median latency of each sender's messages (over all receivers), by client index. */
  senderMediansMs: number[];
  cpuUsPerDelivery: number;
  serverUtil: number;
  genUtil: number;
  otherUtil: number;
}

export interface ServerResult {
  id: string;
  label: string;
  runtime: string;
  ours: boolean;
  /** The fan-out run with the least CPU/delivery (the headline). */
  fanout?: FanoutResult;
  /** Every fan-out run (--repeat). */
  fanoutRuns?: FanoutResult[];
  idle?: IdleResult[];
  chatty?: ChattyResult;
  /** The same chatty run at a fifth of the rate (1 message/s per client): the tail without queueing. */
  chattyLow?: ChattyResult;
  flat?: FanoutResult[];
  errors: string[];
}

export interface Target {
  target: string;
  value: string;
  pass: boolean | null;
}

export interface Results {
  meta: Record<string, unknown> & { durationS: number; mode: string; sizes: unknown };
  servers: Record<string, ServerResult>;
  targets: Target[];
}

export const pc = (x: number) => `${(x * 100).toFixed(0)}%`;
const cpu = (r?: ServerResult) => r?.fanout?.cpuUsPerDelivery;
export const ratio = (a?: number, b?: number) => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);
export const fx = (x: number | undefined, d = 2) => (x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(d));
const flatDelta = (r?: ServerResult) => {
  const f = r?.flat;
  if (!f || f.length < 2) return undefined;
  return f[f.length - 1]!.cpuUsPerDelivery / f[0]!.cpuUsPerDelivery - 1;
};
const idleAt = (r: ServerResult | undefined, n: number) => r?.idle?.find((x) => x.n === n);
const largestIdle = (r?: ServerResult) => r?.idle?.[r.idle.length - 1];

const times = (v: number) => `${v.toFixed(2)}x`;
/** A chatty run's p99 over its p50. */
const tail = (c?: ChattyResult) => (c ? c.p99Ms / c.p50Ms : undefined);

const signed = (v: number) => `${v >= 0 ? "+" : ""}${(v * 100).toFixed(0)}%`;

/** Where flat CPU grew: the server's own (user) CPU per delivery and the kernel's (system) part. */
function flatSplit(f: ServerResult["flat"]): string {
  if (!f || f.length < 2 || f.some((y) => y.serverSysShare === undefined)) return "";
  const a = f[0]!, b = f[f.length - 1]!;
  const user = (y: typeof a) => y.cpuUsPerDelivery * (1 - y.serverSysShare!);
  const sys = (y: typeof a) => y.cpuUsPerDelivery * y.serverSysShare!;
  return ` (user ${signed(user(b) / user(a) - 1)}, kernel ${signed(sys(b) / sys(a) - 1)})`;
}

/**
 * CPU/delivery of `a` over `b` round by round: the two ran next to each other in each round, so drift of
 * the machine between rounds (seen here: 15% within minutes) cancels out. Undefined with fewer than 2 rounds.
 */
export function pairedRounds(a?: ServerResult, b?: ServerResult): { median: number; min: number; max: number; ratios: number[] } | undefined {
  const ratios: number[] = [];
  for (const x of a?.fanoutRuns ?? []) {
    const y = b?.fanoutRuns?.find((r) => r.round !== undefined && r.round === x.round);
    if (y && y.cpuUsPerDelivery > 0) ratios.push(x.cpuUsPerDelivery / y.cpuUsPerDelivery);
  }
  if (ratios.length < 2) return undefined;
  const sorted = [...ratios].sort((p, q) => p - q);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]!, ratios };
}

/** The CPU ratio a target is judged on: the median of the paired rounds, else the best runs' ratio. */
function cpuRatio(a?: ServerResult, b?: ServerResult): { v: number | undefined; show: string } {
  const best = ratio(cpu(a), cpu(b));
  const paired = pairedRounds(a, b);
  if (!paired) return { v: best, show: fx(best) + "x" };
  return {
    v: paired.median,
    show: `${times(paired.median)} (median of ${paired.ratios.length} paired rounds, ${fx(paired.min)}-${fx(paired.max)}; best runs ${fx(best)}x)`,
  };
}

export function evaluateTargets(res: Results): Target[] {
  const s = res.servers;
  const out: Target[] = [];
  const add = (target: string, v: number | undefined, pass: (v: number) => boolean, show: (v: number) => string) =>
    out.push({ target, value: v === undefined ? "not measured" : show(v), pass: v === undefined ? null : pass(v) });
  const addCpu = (target: string, a: string, b: string, limit: number) => {
    const r = cpuRatio(s[a], s[b]);
    add(target, r.v, (v) => v <= limit, () => r.show);
  };
  addCpu("Node CPU/delivery <= 0.5x bare ws", "ours-node", "ws-node", 0.5);
  addCpu("Bun CPU/delivery <= 1.2x Bun publish", "ours-bun", "bun-native", 1.2);
  addCpu("Deno CPU/delivery <= 1.0x bare Deno", "ours-deno", "deno-bare", 1.0);
  addCpu("Deno with DENO_HTTP=node: CPU/delivery <= 1.0x bare Deno", "ours-deno-node", "deno-bare", 1.0);
  const kb = (v: number) => `${v.toFixed(2)} kB`;
  const bareDenoIdle = largestIdle(s["deno-bare"]);
  for (const id of ["ours-deno", "ours-deno-node"]) {
    const mine = largestIdle(s[id]);
    const same = mine && bareDenoIdle && mine.n === bareDenoIdle.n ? bareDenoIdle : undefined;
    add(
      `${s[id]?.label ?? id}: idle memory/conn <= bare Deno's (N=${mine?.n ?? "-"}${same ? `, bare ${same.perConnKb.toFixed(2)} kB` : ""})`,
      same ? mine!.perConnKb / same.perConnKb : undefined,
      (v) => v <= 1.0,
      times,
    );
  }
  add(`Node idle memory/conn <= 10 kB (N=${largestIdle(s["ours-node"])?.n ?? "-"})`, largestIdle(s["ours-node"])?.perConnKb, (v) => v <= 10, kb);
  add(`Bun idle memory/conn <= 4 kB (N=${largestIdle(s["ours-bun"])?.n ?? "-"})`, largestIdle(s["ours-bun"])?.perConnKb, (v) => v <= 4, kb);
  for (const id of ["ours-node", "ours-deno", "ours-bun"]) {
    const r = s[id]?.idle?.find((x) => (x.requested ?? x.n) === 20000);
    const clamped = r !== undefined && r.n < 20000;
    out.push({
      target: `${s[id]?.label ?? id}: 20000 concurrent connections held`,
      value: !r
        ? "not measured (needs --full)"
        : `${r.held} of ${r.n} held, ${r.probeDelivered} got the probe broadcast` +
          (clamped ? ` (N clamped to ${r.n}: the open-files limit here is below 20000 + overhead)` : ""),
      pass: !r ? null : clamped ? null : r.held >= 20000 && r.probeDelivered >= 20000,
    });
  }
  for (const id of ["ours-node", "ours-deno", "ours-bun"]) {
    const f = s[id]?.flat;
    add(
      `${s[id]?.label ?? id}: CPU/delivery flat within 15% (${f?.map((y) => y.receivers).join(" -> ") ?? "-"} receivers)`,
      flatDelta(s[id]),
      (v) => Math.abs(v) <= 0.15,
      (v) => signed(v) + flatSplit(f),
    );
  }
  for (const id of ["ours-node", "ours-deno", "ours-bun"]) {
    const low = s[id]?.chattyLow;
    const lowText = low ? ` (at ${low.ratePerS} message/s per client: ${times(tail(low)!)})` : "";
    add(`${s[id]?.label ?? id}: chatty p99 <= 1.5x p50`, tail(s[id]?.chatty), (v) => v <= 1.5, (v) => times(v) + lowText);
  }
  return out;
}

export function pad(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ")).join("\n");
}

export function renderTable(res: Results): string {
  const s = res.servers;
  const ws = s["ws-node"];
  const idleNs = [...new Set(Object.values(s).flatMap((r) => r.idle?.map((x) => x.n) ?? []))].sort((a, b) => a - b);
  const flatNs = Object.values(s).find((r) => r.flat?.length)?.flat?.map((f) => f.receivers) ?? [];
  const fo = Object.values(s).find((r) => r.fanout)?.fanout;
  const head = [
    "server",
    "deliv/s",
    "p50 ms",
    "p99 ms",
    "CPU us/deliv",
    "chunks min-max",
    "vs ws",
    "srv CPU",
    "gen CPU",
    ...idleNs.map((n) => `kB/conn@${n}`),
    ...idleNs.map((n) => `held@${n}`),
    "chat p50",
    "chat p99",
    "p99/p50",
    "p99/p50 low",
    "fair spread",
    ...flatNs.map((n) => `us/deliv@${n}`),
    "flat delta",
  ];
  const rows = [head];
  for (const r of Object.values(s)) {
    const f = r.fanout;
    const c = r.chatty;
    const d = flatDelta(r);
    rows.push([
      (r.ours ? "* " : "  ") + r.label,
      f ? Math.round(f.deliveriesPerS).toLocaleString("en-US") : "-",
      fx(f?.p50Ms),
      fx(f?.p99Ms),
      fx(f?.cpuUsPerDelivery),
      f ? `${fx(f.chunkCpuUsPerDelivery.min)}-${fx(f.chunkCpuUsPerDelivery.max)}` : "-",
      fx(ratio(cpu(r), cpu(ws))),
      f ? `${(f.serverUtil * 100).toFixed(0)}%` : "-",
      f ? `${(f.genUtil * 100).toFixed(0)}%` : "-",
      ...idleNs.map((n) => fx(idleAt(r, n)?.perConnKb)),
      ...idleNs.map((n) => {
        const x = idleAt(r, n);
        return x ? `${x.held}${x.probeComplete ? "" : "!"}` : "-";
      }),
      fx(c?.p50Ms),
      fx(c?.p99Ms),
      fx(tail(c)),
      fx(tail(r.chattyLow)),
      fx(c?.fairnessSpread),
      ...flatNs.map((n) => fx(r.flat?.find((y) => y.receivers === n)?.cpuUsPerDelivery)),
      d === undefined ? "-" : `${d >= 0 ? "+" : ""}${(d * 100).toFixed(0)}%`,
    ]);
  }
  const lines = [
    `fan-out: 1 sender -> ${fo?.receivers ?? "?"} receivers, ${fo?.messages ?? "?"} messages, ${fo?.inflight ?? "?"} in flight (* = ShootaWall)`,
    pad(rows),
    "",
    "pairs (CPU/delivery in fan-out; < 1 means ShootaWall uses less CPU):",
  ];
  const pair = (a: string, b: string) => {
    const v = ratio(cpu(s[a]), cpu(s[b]));
    if (v === undefined) return;
    const paired = pairedRounds(s[a], s[b]);
    const rounds = paired ? `; round by round ${paired.ratios.map((r) => r.toFixed(2)).join(", ")}, median ${paired.median.toFixed(2)}x` : "";
    lines.push(`  ${s[a]!.label} / ${s[b]!.label}: best runs ${v.toFixed(2)}x (deliveries/s ${fx(ratio(s[a]!.fanout!.deliveriesPerS, s[b]!.fanout!.deliveriesPerS))}x)${rounds}`);
  };
  pair("ours-node", "ws-node");
  pair("ours-node-file", "ours-node");
  pair("ours-node", "sio-node");
  pair("ours-bun", "bun-native");
  pair("ours-deno", "deno-bare");
  pair("ours-deno-node", "deno-bare");
  lines.push("", "targets (issue #6):");
  for (const t of res.targets) lines.push(`  [${t.pass === null ? " -- " : t.pass ? "PASS" : "FAIL"}] ${t.target}: ${t.value}`);
  const warnings: string[] = [];
  for (const r of Object.values(s)) {
    for (const f of [r.fanout, ...(r.flat ?? [])]) {
      if (!f) continue;
      const what = `${r.label} ${f.receivers}x${f.messages}`;
      if (f.genUtil > 0.9) {
        warnings.push(
          f.serverUtil < 0.9
            ? `WARNING: generator saturated (${pc(f.genUtil)} of its core) while the server used ${pc(f.serverUtil)}: ${what} is generator-bound, its deliveries/s is a lower bound (CPU/delivery stays valid)`
            : `WARNING: generator at ${pc(f.genUtil)} of its core on ${what}; the server was saturated too (${pc(f.serverUtil)}), so the server is still the bottleneck`,
        );
      }
      if (f.otherUtil > 0.15) warnings.push(`WARNING: other processes used ${pc(f.otherUtil)} of a core during ${what}: numbers disturbed`);
    }
    for (const [name, c] of [["chatty", r.chatty], ["chatty-low", r.chattyLow]] as const) {
      if (!c) continue;
      if (c.genUtil > 0.9) warnings.push(`WARNING: the load generator saturated its core on ${r.label} ${name}`);
      if (c.otherUtil > 0.15) warnings.push(`WARNING: other processes used ${pc(c.otherUtil)} of a core during ${r.label} ${name}: latencies disturbed`);
      if (c.deliveries < c.expected) warnings.push(`WARNING: ${r.label} ${name} lost ${c.expected - c.deliveries} deliveries`);
    }
    for (const e of r.errors) warnings.push(`ERROR: ${r.label}: ${e}`);
  }
  if (warnings.length) lines.push("", ...warnings);
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------------
// SVG: one panel per metric, a horizontal bar per server. Hand-written, no chart library.

const esc = (t: string) => t.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function renderSvg(res: Results): string {
  const servers = Object.values(res.servers);
  const panels: { title: string; better: string; value: (r: ServerResult) => number | undefined; unit: string; digits: number }[] = [
    { title: "Fan-out throughput", better: "higher is better", value: (r) => r.fanout?.deliveriesPerS, unit: "deliveries/s", digits: 0 },
    { title: "Server CPU per delivery", better: "lower is better", value: (r) => r.fanout?.cpuUsPerDelivery, unit: "\u00b5s", digits: 2 },
    { title: "Fan-out latency p99", better: "lower is better", value: (r) => r.fanout?.p99Ms, unit: "ms", digits: 1 },
    { title: "Idle memory per connection", better: "lower is better", value: (r) => largestIdle(r)?.perConnKb, unit: "kB", digits: 2 },
    { title: "Chatty latency p99 (100 clients)", better: "lower is better", value: (r) => r.chatty?.p99Ms, unit: "ms", digits: 2 },
  ];
  const W = 920, labelW = 190, barMax = 560, rowH = 20, panelGap = 34, top = 58;
  const panelH = servers.length * rowH + 28;
  const H = top + panels.length * (panelH + panelGap) + 10;
  const fo = servers.find((r) => r.fanout)?.fanout;
  const idleN = servers.map((r) => largestIdle(r)?.n).find((n) => n !== undefined);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="16" y="24" font-size="16" font-weight="600" fill="#111">ShootaWall vs peers (${esc(String(res.meta.mode))} run, ${esc(String(res.meta.date).slice(0, 10))})</text>`);
  out.push(`<text x="16" y="42" fill="#555">fan-out 1 -&gt; ${fo?.receivers ?? "?"} receivers, ${fo?.messages ?? "?"} msgs, 16 in flight; idle N=${idleN ?? "?"}; server pinned to core 0, generator to core 1. Orange = ShootaWall.</text>`);
  let y = top;
  for (const p of panels) {
    const vals = servers.map((r) => p.value(r));
    const max = Math.max(...vals.filter((v): v is number => v !== undefined && Number.isFinite(v)), 1e-9);
    out.push(`<text x="16" y="${y + 12}" font-weight="600" fill="#111">${esc(p.title)} <tspan font-weight="400" fill="#777">(${esc(p.unit)}, ${p.better})</tspan></text>`);
    servers.forEach((r, i) => {
      const v = vals[i];
      const yy = y + 22 + i * rowH;
      out.push(`<text x="${labelW - 6}" y="${yy + 13}" text-anchor="end" fill="#222">${esc(r.label)}</text>`);
      if (v === undefined || !Number.isFinite(v)) {
        out.push(`<text x="${labelW + 4}" y="${yy + 13}" fill="#999">not measured</text>`);
        return;
      }
      const w = Math.max(1, (v / max) * barMax);
      out.push(`<rect x="${labelW}" y="${yy + 2}" width="${w.toFixed(1)}" height="${rowH - 5}" rx="2" fill="${r.ours ? "#f28c28" : "#5b7fa6"}"/>`);
      const text = p.digits === 0 ? Math.round(v).toLocaleString("en-US") : v.toFixed(p.digits);
      out.push(`<text x="${(labelW + w + 5).toFixed(1)}" y="${yy + 13}" fill="#222">${esc(text)}</text>`);
    });
    y += panelH + panelGap;
  }
  const git = res.meta.git as { commit?: string; dirtyFiles?: number } | undefined;
  const tree = git?.commit ? `tree ${git.commit}${git.dirtyFiles ? ` + ${git.dirtyFiles} modified files in src/` : ""}; ` : "";
  out.push(`<text x="16" y="${H - 14}" fill="#777">${esc(tree)}numbers in scripts/bench/results/latest.json; made by node --import tsx scripts/bench.ts</text>`);
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
