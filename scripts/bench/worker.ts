// Load-generator worker thread: holds a share of the receiving connections, counts deliveries per
// message and records send -> receive latency in a log histogram. Driven by scripts/bench.ts and
// scripts/bench-cluster.ts (through gen.ts). A fan-out with `check` also checks each receiver's
// deliveries (ids in order, none repeated, none missing) and keeps a histogram per connection group.

import { parentPort } from "node:worker_threads";
import { type Delivery, HIST_BUCKETS, histIndex, markerText, nowUs, type Proto, RawClient, sourceAddress } from "./wsclient.ts";

export type WorkerCommand =
  | { op: "connect"; host: string; port: number; path: string; proto: Proto; count: number; firstGlobal: number; clientBase: number; concurrency: number; timeoutMs: number; group?: number }
  | { op: "fanout"; total: number; measureFrom: number; check?: boolean }
  | { op: "chatty"; durationMs: number; ratePerS: number; size: number; senders: number }
  | { op: "stats" }
  | { op: "reset" }
  | { op: "close" };

export type WorkerReply =
  | { op: "connected"; ready: number; failed: number; reasons: Record<string, number> }
  | { op: "done"; ids: number[] }
  | { op: "chattySent"; sent: number }
  | {
    op: "stats";
    received: number;
    hist: number[];
    senderHist: number[] | null;
    live: number;
    closedDuringRun: number;
    reasons: Record<string, number>;
    /** Checked fan-out only: one histogram per connection group, and the delivery checks. */
    groupHists?: number[][] | null;
    check?: { outOfOrder: number; repeated: number; clientsShort: number; missing: number; clients: number } | null;
  }
  | { op: "closed" };

const port = parentPort!;
const post = (m: WorkerReply) => port.postMessage(m);

let clients: RawClient[] = [];
let mode: "idle" | "fanout" | "chatty" = "idle";
let counts = new Uint32Array(0);
let reported = new Uint8Array(0);
let target = 0;
let measureFrom = 0;
let hist = new Uint32Array(HIST_BUCKETS);
let senderHist: Uint32Array | null = null;
let senders = 0;
let received = 0;
let closedDuringRun = 0;
let reasons: Record<string, number> = {};
let pendingDone: number[] = [];
let flushScheduled = false;
// Checked fan-out: per client index, its group, the last id it got and how many ids it got.
let checking = false;
let groupOf = new Uint8Array(0);
let lastId = new Int32Array(0);
let gotIds = new Uint32Array(0);
let groupHists: Uint32Array[] = [];
let outOfOrder = 0;
let repeated = 0;
const growTo = (n: number) => {
  if (groupOf.length >= n) return;
  const g = new Uint8Array(Math.max(n, groupOf.length * 2));
  g.set(groupOf);
  groupOf = g;
};

const flushDone = () => {
  flushScheduled = false;
  if (pendingDone.length === 0) return;
  post({ op: "done", ids: pendingDone });
  pendingDone = [];
};
const markDone = (id: number) => {
  reported[id] = 1;
  pendingDone.push(id);
  if (!flushScheduled) (flushScheduled = true), setImmediate(flushDone);
};

const handlers = {
  ready: (_c: RawClient) => {},
  delivery(c: RawClient, d: Delivery, atUs: number) {
    if (mode === "fanout") {
      const id = d.id;
      if (id >= counts.length) return;
      if (id >= measureFrom) {
        const b = histIndex(atUs - d.sentUs);
        hist[b]!++;
        received++;
        if (checking) groupHists[groupOf[c.idx]!]![b]!++;
      }
      if (checking) {
        const last = lastId[c.idx]!;
        if (id < last) outOfOrder++;
        else if (id === last) repeated++;
        lastId[c.idx] = id;
        gotIds[c.idx]!++;
      }
      if (++counts[id]! >= target && reported[id] === 0) markDone(id);
    } else if (mode === "chatty") {
      const b = histIndex(atUs - d.sentUs);
      hist[b]!++;
      received++;
      if (senderHist && d.sender < senders) senderHist[d.sender * HIST_BUCKETS + b]!++;
    }
  },
  closed(c: RawClient, why: string) {
    reasons[why] = (reasons[why] ?? 0) + 1;
    if (!c.isReady) return;
    closedDuringRun++;
    if (mode === "fanout") {
      // One receiver fewer: messages every live receiver now has count as done.
      target--;
      for (let id = 0; id < counts.length; id++) if (reported[id] === 0 && counts[id]! >= target) markDone(id);
    }
  },
};

function connect(cmd: Extract<WorkerCommand, { op: "connect" }>): void {
  let started = 0, settled = 0, ready = 0, failed = 0;
  const local: Record<string, number> = {};
  const done = () => {
    if (settled === cmd.count) post({ op: "connected", ready, failed, reasons: local });
  };
  const startOne = () => {
    if (started >= cmd.count) return;
    const n = started++;
    let finished = false;
    const finish = (ok: boolean, why?: string) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      settled++;
      if (ok) ready++;
      else (failed++, (local[why ?? "?"] = (local[why ?? "?"] ?? 0) + 1));
      startOne();
      done();
    };
    const c = new RawClient(
      cmd.clientBase + n,
      { host: cmd.host, port: cmd.port, path: cmd.path.replace("{n}", String(cmd.clientBase + n)), proto: cmd.proto, localAddress: sourceAddress(cmd.firstGlobal + n) },
      {
        ready: (cl) => (handlers.ready(cl), finish(true)),
        delivery: handlers.delivery,
        closed: (cl, why) => (finish(false, why), handlers.closed(cl, why)),
      },
    );
    const timer = setTimeout(() => (finish(false, "connect timeout"), c.close()), cmd.timeoutMs);
    clients.push(c);
    if (cmd.group !== undefined) {
      growTo(c.idx + 1);
      groupOf[c.idx] = cmd.group;
    }
  };
  if (cmd.count === 0) return done();
  for (let i = 0; i < Math.min(cmd.concurrency, cmd.count); i++) startOne();
}

function chatty(cmd: Extract<WorkerCommand, { op: "chatty" }>): void {
  mode = "chatty";
  senders = cmd.senders;
  senderHist = new Uint32Array(cmd.senders * HIST_BUCKETS);
  const intervalMs = 1000 / cmd.ratePerS;
  const deadline = performance.now() + cmd.durationMs;
  let sent = 0, running = 0;
  for (const c of clients) {
    if (c.isClosed) continue;
    running++;
    let nonce = 0;
    let next = performance.now() + Math.random() * intervalMs;
    const tick = () => {
      if (c.isClosed || performance.now() >= deadline) {
        if (--running === 0) post({ op: "chattySent", sent });
        return;
      }
      c.sendChat(markerText(nonce, nowUs(), c.idx, cmd.size), nonce);
      nonce++;
      sent++;
      next += intervalMs;
      setTimeout(tick, Math.max(0, next - performance.now()));
    };
    setTimeout(tick, Math.max(0, next - performance.now()));
  }
  if (running === 0) post({ op: "chattySent", sent });
}

function checkStats() {
  let clientsShort = 0, missing = 0, checked = 0;
  for (const c of clients) {
    if (!c.isReady || c.isClosed) continue;
    checked++;
    const got = gotIds[c.idx] ?? 0;
    if (got < counts.length) (clientsShort++, (missing += counts.length - got));
  }
  return { outOfOrder, repeated, clientsShort, missing, clients: checked };
}

port.on("message", (cmd: WorkerCommand) => {
  switch (cmd.op) {
    case "connect":
      connect(cmd);
      break;
    case "fanout":
      mode = "fanout";
      counts = new Uint32Array(cmd.total);
      reported = new Uint8Array(cmd.total);
      measureFrom = cmd.measureFrom;
      target = clients.filter((c) => c.isReady && !c.isClosed).length;
      checking = cmd.check === true;
      if (checking) {
        const size = clients.reduce((a, c) => Math.max(a, c.idx + 1), 0);
        growTo(size);
        lastId = new Int32Array(size).fill(-1);
        gotIds = new Uint32Array(size);
        groupHists = Array.from({ length: Math.max(0, ...clients.map((c) => groupOf[c.idx]!)) + 1 }, () => new Uint32Array(HIST_BUCKETS));
        outOfOrder = 0;
        repeated = 0;
      }
      break;
    case "chatty":
      chatty(cmd);
      break;
    case "reset":
      hist = new Uint32Array(HIST_BUCKETS);
      for (const h of groupHists) h.fill(0);
      received = 0;
      closedDuringRun = 0;
      reasons = {};
      break;
    case "stats":
      post({
        op: "stats",
        received,
        hist: Array.from(hist),
        senderHist: senderHist ? Array.from(senderHist) : null,
        live: clients.filter((c) => c.isReady && !c.isClosed).length,
        closedDuringRun,
        reasons,
        ...(checking ? { groupHists: groupHists.map((h) => Array.from(h)), check: checkStats() } : {}),
      });
      break;
    case "close":
      mode = "idle";
      checking = false;
      groupOf = new Uint8Array(0);
      groupHists = [];
      hist = new Uint32Array(HIST_BUCKETS);
      received = 0;
      closedDuringRun = 0;
      reasons = {};
      for (const c of clients) c.close();
      clients = [];
      senderHist = null;
      post({ op: "closed" });
      break;
  }
});
