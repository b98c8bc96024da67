// Starting, measuring and stopping one server process: a free port, CPU time and RSS from /proc, pinning
// with taskset. Only processes started here are ever signalled, by their PID.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import { join } from "node:path";

export const CLK_TCK = (() => {
  const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

export function which(cmd: string): string | undefined {
  const r = spawnSync("bash", ["-c", `command -v ${cmd}`], { encoding: "utf8" });
  const p = r.stdout?.trim();
  return r.status === 0 && p ? p : undefined;
}

/** utime + stime of a process (all its threads, live ones and exited ones), in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state): utime is field 14, stime field 15.
  return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
}

/** utime and stime of a process, in seconds. */
export function cpuSplit(pid: number): { user: number; sys: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: Number(rest[11]) / CLK_TCK, sys: Number(rest[12]) / CLK_TCK };
}

/**
 * On-CPU time of every live thread of a process, in seconds, from /proc/<pid>/task/<tid>/schedstat
 * (nanoseconds: much finer than the 10 ms ticks of /proc/<pid>/stat, used for short chunks).
 */
export function cpuPrecise(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    } catch { /* thread gone */ }
  }
  return ns / 1e9;
}

/** CPU time the whole machine spent busy (not idle, not iowait), in seconds, from /proc/stat. */
export function machineBusySeconds(): number {
  const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal guest guest_nice: guest time is already in user.
  const busy = cpu[0]! + cpu[1]! + cpu[2]! + cpu[5]! + cpu[6]! + cpu[7]!;
  return busy / CLK_TCK;
}

/** Resident set size in kB (VmRSS). */
export function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : NaN;
}

export function openFilesLimit(pid: number | "self"): number {
  const m = /Max open files\s+(\d+|unlimited)/.exec(readFileSync(`/proc/${pid}/limits`, "utf8"));
  return !m ? NaN : m[1] === "unlimited" ? Infinity : Number(m[1]);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface ServerProcess {
  pid: number;
  port: number;
  proc: ChildProcess;
  output: string[];
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

const running = new Set<ChildProcess>();
/** Kills (by PID) every server this run started and did not stop yet. */
export function killAllStarted(): void {
  for (const p of running) {
    try {
      if (p.pid) process.kill(p.pid, "SIGKILL");
    } catch { /* already gone */ }
  }
}

/**
 * Starts `cmd args` pinned to `core` (taskset execs, so the PID is the runtime's own), on a free port
 * given through PORT/HOST, and waits until it accepts TCP connections.
 */
export async function startProcess(
  cmd: string,
  args: string[],
  opts: { cwd: string; env: Record<string, string>; core?: number; timeoutMs?: number },
): Promise<ServerProcess> {
  const port = await freePort();
  const taskset = opts.core !== undefined ? which("taskset") : undefined;
  const [file, argv] = taskset ? [taskset, ["-c", String(opts.core), cmd, ...args]] : [cmd, args];
  const proc = spawn(file, argv, {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env, PORT: String(port), HOST: "127.0.0.1", NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(proc);
  const output: string[] = [];
  const keep = (chunk: Buffer) => {
    for (const line of chunk.toString().split("\n")) {
      if (!line) continue;
      output.push(line.length > 400 ? line.slice(0, 400) + "..." : line);
      if (output.length > 60) output.shift();
    }
  };
  proc.stdout!.on("data", keep);
  proc.stderr!.on("data", keep);
  let exited = false;
  const gone = new Promise<void>((resolve) =>
    proc.once("exit", () => {
      exited = true;
      running.delete(proc);
      resolve();
    })
  );
  const deadline = Date.now() + (opts.timeoutMs ?? 30000);
  for (;;) {
    if (exited) throw new Error(`${cmd} exited before listening:\n${output.join("\n")}`);
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`${cmd} did not listen on ${port} in time:\n${output.join("\n")}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port }, () => (s.destroy(), resolve(true)));
      s.once("error", () => resolve(false));
    });
    if (ok) break;
    await sleep(50);
  }
  const pid = proc.pid!;
  // taskset has exec'd the runtime by now: make sure the PID we measure is not a wrapper.
  const comm = existsSync(`/proc/${pid}/comm`) ? readFileSync(`/proc/${pid}/comm`, "utf8").trim() : "?";
  if (comm === "taskset" || comm === "bash" || comm === "npx" || comm === "npm") {
    throw new Error(`PID ${pid} is ${comm}, not the runtime`);
  }
  return {
    pid,
    port,
    proc,
    output,
    async stop(graceMs = 4000) {
      if (exited) return;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => !exited && proc.kill("SIGKILL"), graceMs);
      await gone;
      clearTimeout(timer);
    },
  };
}

/**
 * startProcess with a fresh temporary DATA_DIR (file store, users) when `dataDir` is set: nothing is
 * written into the repo, and stop() removes the folder.
 */
export async function startWithDataDir(
  cmd: string,
  args: string[],
  opts: { cwd: string; env: Record<string, string>; core?: number; dataDir: boolean },
): Promise<ServerProcess> {
  const dataDir = opts.dataDir ? mkdtempSync(join(os.tmpdir(), "shootawall-bench-")) : undefined;
  const env = { ...opts.env, ...(dataDir ? { DATA_DIR: dataDir } : {}) };
  const srv = await startProcess(cmd, args, { cwd: opts.cwd, env, core: opts.core }).catch((err) => {
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

/**
 * A benchmark re-executes itself pinned to core 1 (when `pin`) with `ulimit -n` raised to `fdNeed` (or
 * the hard limit); children inherit both. Returns true in the re-executed process (run the benchmark),
 * false in the first one (which forwards SIGINT/SIGTERM to the child and exits with its code).
 */
export function reexecPinned(self: string, argv: string[], opts: { pin: boolean; fdNeed: number }): boolean {
  if (process.env.BENCH_PINNED) return true;
  const script = `ulimit -n ${opts.fdNeed} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec ${opts.pin ? "taskset -c 1 " : ""}"$0" "$@"`;
  const child = spawn("bash", ["-c", script, process.execPath, ...process.execArgv, self, ...argv], {
    stdio: "inherit",
    env: { ...process.env, BENCH_PINNED: "1" },
  });
  for (const s of ["SIGINT", "SIGTERM"] as const) process.on(s, () => child.pid && process.kill(child.pid, s));
  child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
  return false;
}
