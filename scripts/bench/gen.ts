// The load generator's main-thread side, shared by scripts/bench.ts and scripts/bench-cluster.ts:
// worker threads holding the receiving connections (Gen), the fan-out sender's window (runWindow), CPU
// accounting of a phase (meter/since) and the wait for a quiet machine before a server starts.

import { Worker } from "node:worker_threads";
import { cpuPrecise, cpuSplit, machineBusySeconds, sleep } from "./proc.ts";
import type { WorkerCommand, WorkerReply } from "./worker.ts";
import { HIST_BUCKETS, type Proto, RawClient, sourceAddress } from "./wsclient.ts";

/** Where connections go: a server's port, the request path (`{n}` becomes the client index), the protocol. */
export interface ConnectTarget {
  host?: string;
  port: number;
  path: string;
  proto: Proto;
}

export interface ConnectResult {
  ready: number;
  failed: number;
  reasons: Record<string, number>;
  perWorker: number[];
  ms: number;
}

/** Delivery checks of a fan-out run started with `check: true` (summed over the workers). */
export interface CheckStats {
  /** Deliveries whose id was below the previous one the same receiver got. */
  outOfOrder: number;
  /** Deliveries of the id the same receiver got just before. */
  repeated: number;
  /** Live receivers that did not get every id of the run, and the deliveries they lack. */
  clientsShort: number;
  missing: number;
  /** Live receivers checked. */
  clients: number;
}

export class Gen {
  workers: Worker[] = [];
  #waiting = new Map<Worker, Map<string, (m: WorkerReply) => void>>();
  onDone: (ids: number[]) => void = () => {};
  /** Connections made in this run so far: picks the source address 127.0.a.b of the next one. */
  connSerial = 0;

  constructor(n: number) {
    for (let i = 0; i < n; i++) {
      const w = new Worker(new URL("./worker-boot.mjs", import.meta.url), { execArgv: [] });
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

  /**
   * Opens `count` connections spread over the workers. Client indexes start at `clientBase` (default 0);
   * `group` tags them (per-group latency histograms of a checked fan-out).
   */
  async connect(target: ConnectTarget, count: number, opts: { clientBase?: number; group?: number } = {}): Promise<ConnectResult> {
    const started = performance.now();
    const per = this.workers.map((_, i) => Math.floor(count / this.workers.length) + (i < count % this.workers.length ? 1 : 0));
    let base = opts.clientBase ?? 0;
    const replies = await Promise.all(this.workers.map((w, i) => {
      const cmd: WorkerCommand = {
        op: "connect", host: target.host ?? "127.0.0.1", port: target.port, path: target.path, proto: target.proto,
        count: per[i]!, firstGlobal: this.connSerial, clientBase: base, concurrency: 64, timeoutMs: 20000,
        ...(opts.group !== undefined ? { group: opts.group } : {}),
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
    let groupHists: number[][] | null = null;
    let check: CheckStats | null = null;
    for (const s of all) {
      for (let i = 0; i < HIST_BUCKETS; i++) hist[i]! += s.hist[i]!;
      if (s.senderHist) {
        senderHist ??= new Array<number>(s.senderHist.length).fill(0);
        for (let i = 0; i < s.senderHist.length; i++) senderHist[i]! += s.senderHist[i]!;
      }
      if (s.groupHists) {
        groupHists ??= [];
        s.groupHists.forEach((h, g) => {
          const into = (groupHists![g] ??= new Array<number>(HIST_BUCKETS).fill(0));
          for (let i = 0; i < HIST_BUCKETS; i++) into[i]! += h[i] ?? 0;
        });
      }
      if (s.check) {
        check ??= { outOfOrder: 0, repeated: 0, clientsShort: 0, missing: 0, clients: 0 };
        for (const k of Object.keys(check) as (keyof CheckStats)[]) check[k] += s.check[k];
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
      groupHists,
      check,
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
export function connectOne(gen: Gen, target: ConnectTarget): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("sender did not connect in 20 s")), 20000);
    new RawClient(-1, { host: target.host ?? "127.0.0.1", port: target.port, path: target.path, proto: target.proto, localAddress: sourceAddress(gen.connSerial++) }, {
      ready: (c) => (clearTimeout(timer), resolve(c)),
      delivery: () => {},
      closed: (_c, why) => (clearTimeout(timer), reject(new Error(`sender: ${why}`))),
    });
  });
}

/**
 * Sends ids [from, to) through `send` with at most `inflight` outstanding; an id is done once it was
 * reported `need` times (each worker with receivers reports it once; `extra` sources, such as a sender
 * counting acks, report through their own `onDone`).
 */
export function runWindow(
  gen: Gen,
  send: (id: number) => void,
  need: number,
  doneCount: Uint8Array,
  from: number,
  to: number,
  inflight: number,
  timeoutMs: number,
  onProgress?: (completed: number) => void,
  extra: { onDone: (ids: number[]) => void }[] = [],
): Promise<void> {
  return new Promise((resolve, reject) => {
    let next = from, outstanding = 0, completed = 0;
    const timer = setTimeout(() => reject(new Error(`fan-out stalled: ${completed}/${to - from} messages complete after ${timeoutMs} ms`)), timeoutMs);
    const pump = () => {
      while (outstanding < inflight && next < to) {
        send(next);
        next++;
        outstanding++;
      }
    };
    const onDone = (ids: number[]) => {
      for (const id of ids) {
        if (id < from || id >= to) continue;
        if (++doneCount[id]! !== need) continue;
        outstanding--;
        completed++;
        onProgress?.(completed);
      }
      if (completed === to - from) {
        clearTimeout(timer);
        gen.onDone = () => {};
        for (const x of extra) x.onDone = () => {};
        resolve();
      } else pump();
    };
    gen.onDone = onDone;
    for (const x of extra) x.onDone = onDone;
    pump();
  });
}

export interface Meter {
  t: number;
  server: { user: number; sys: number };
  serverPrecise: number;
  gen: NodeJS.CpuUsage;
  machine: number;
}

/** CPU counters now: the server processes' (summed), this process's (the generator) and the machine's. */
export function meter(pids: number[]): Meter {
  const server = { user: 0, sys: 0 };
  let serverPrecise = 0;
  for (const pid of pids) {
    const s = cpuSplit(pid);
    server.user += s.user;
    server.sys += s.sys;
    serverPrecise += cpuPrecise(pid);
  }
  return { t: performance.now(), server, serverPrecise, gen: process.cpuUsage(), machine: machineBusySeconds() };
}

/** CPU used since `m`: the servers', the generator's, and the rest of the machine's (noise). */
export function since(pids: number[], m: Meter) {
  const now = meter(pids);
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
 * Other processes may share the machine (test suites, browsers). wait() returns once the machine is
 * quiet (under 15% of a core busy over half a second), or at once when the budget for the run is spent.
 */
export function quietWaiter(budgetMs: number): { wait(): Promise<void>; readonly waitedMs: number } {
  let budget = budgetMs;
  let waited = 0;
  return {
    async wait() {
      const started = performance.now();
      while (budget > 0) {
        const b0 = machineBusySeconds(), t0 = performance.now();
        await sleep(500);
        const busy = (machineBusySeconds() - b0) / ((performance.now() - t0) / 1000);
        if (busy < 0.15) break;
        budget -= performance.now() - t0;
      }
      waited += performance.now() - started;
    },
    get waitedMs() {
      return waited;
    },
  };
}
