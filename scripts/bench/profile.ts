// Summarises a V8 .cpuprofile (node --cpu-prof, deno run --cpu-prof): self time per function and per area, and inclusive
// time of ShootaWall's own functions.

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileRow {
  fn: string;
  where: string;
  area: string;
  selfMs: number;
  selfPct: number;
}

/** Our own code: dist/ on Node, src/ (run as TypeScript) on Deno. */
const OURS = /\/(?:dist|src)\/(.*)$/;

function area(url: string, fn: string): string {
  if (fn === "(garbage collector)") return "GC";
  if (fn === "(program)" || fn === "(idle)" || fn === "(root)") return fn;
  if (!url) return "V8/native builtins";
  if (url.includes("/node_modules/ws/")) return "ws";
  if (url.includes("/node_modules/@hono/")) return "@hono/node-server";
  if (url.includes("/node_modules/hono/")) return "hono";
  if (url.includes("/node_modules/valibot/")) return "valibot";
  if (url.includes("/node_modules/")) return "other packages";
  if (url.startsWith("node:")) return "Node internals";
  if (url.startsWith("ext:")) return "Deno internals";
  const m = OURS.exec(url);
  if (m) return `ShootaWall ${m[1]}`;
  return url;
}

function where(url: string, line: number, root: string): string {
  const rootUrl = "file://" + root;
  let u = url.startsWith(rootUrl) ? url.slice(rootUrl.length) : url;
  u = u.replace(/^.*\/node_modules\//, "");
  return u ? `${u}:${line + 1}` : "";
}

/** `window` (monotonic microseconds) keeps only the samples taken in it, when any are. */
export function summariseProfile(p: CpuProfile, root: string, window?: { from: number; to: number }) {
  const byId = new Map<number, ProfileNode>();
  for (const n of p.nodes) byId.set(n.id, n);
  const collect = (inWindow: boolean) => {
    const self = new Map<number, number>();
    let t = p.startTime;
    for (let i = 0; i < p.samples.length; i++) {
      t += p.timeDeltas[i] ?? 0;
      if (inWindow && window && (t < window.from || t > window.to)) continue;
      const dt = p.timeDeltas[i + 1] ?? 0;
      self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + dt);
    }
    return self;
  };
  let self = collect(true);
  const windowed = window !== undefined && self.size > 0;
  if (!windowed) self = collect(false);
  let total = 0;
  for (const v of self.values()) total += v;
  const idle = [...self.entries()].filter(([id]) => byId.get(id)!.callFrame.functionName === "(idle)").reduce((a, [, v]) => a + v, 0);
  const busy = total - idle;

  const fnSelf = new Map<string, { fn: string; where: string; area: string; us: number }>();
  const areaSelf = new Map<string, number>();
  for (const [id, us] of self) {
    const cf = byId.get(id)!.callFrame;
    if (cf.functionName === "(idle)") continue;
    const key = `${cf.functionName}|${cf.url}|${cf.lineNumber}`;
    const row = fnSelf.get(key) ?? { fn: cf.functionName || "(anonymous)", where: where(cf.url, cf.lineNumber, root), area: area(cf.url, cf.functionName), us: 0 };
    row.us += us;
    fnSelf.set(key, row);
    areaSelf.set(row.area, (areaSelf.get(row.area) ?? 0) + us);
  }

  // Inclusive time of our own functions (each function counted once per stack).
  const inclusive = new Map<string, number>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  for (const [id, us] of self) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)!.callFrame;
      if (!area(cf.url, cf.functionName).startsWith("ShootaWall ")) continue;
      const key = `${cf.functionName || "(anonymous)"} ${where(cf.url, cf.lineNumber, root)}`;
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + us);
    }
  }

  const pct = (us: number) => (100 * us) / busy;
  const top: ProfileRow[] = [...fnSelf.values()].sort((a, b) => b.us - a.us).slice(0, 25)
    .map((r) => ({ fn: r.fn, where: r.where, area: r.area, selfMs: r.us / 1000, selfPct: pct(r.us) }));
  const areas = [...areaSelf.entries()].sort((a, b) => b[1] - a[1]).map(([a, us]) => ({ area: a, selfMs: us / 1000, selfPct: pct(us) }));
  const ours = [...inclusive.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([fn, us]) => ({ fn, inclusiveMs: us / 1000, inclusivePct: pct(us) }));

  const lines = [
    `profile: ${(total / 1e6).toFixed(2)} s sampled ${windowed ? "during the measured send phase" : "over the whole process life (connects included)"}, ${(busy / 1e6).toFixed(2)} s busy (percentages are of busy time)`,
    "",
    "top self time:",
    ...top.map((r) => `  ${r.selfPct.toFixed(1).padStart(5)}%  ${r.fn.padEnd(34)} ${r.area.padEnd(28)} ${r.where}`),
    "",
    "self time by area:",
    ...areas.map((a) => `  ${a.selfPct.toFixed(1).padStart(5)}%  ${a.area}`),
    "",
    "ShootaWall functions, inclusive time:",
    ...ours.map((o) => `  ${o.inclusivePct.toFixed(1).padStart(5)}%  ${o.fn}`),
  ];
  return { window: windowed ? "send phase" : "whole process", busyMs: busy / 1000, top, areas, ours, text: lines.join("\n") };
}
