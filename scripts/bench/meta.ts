// What a benchmark result records about the run: runtime and package versions, the git state, and the
// build of dist/ that `node dist/main.js` runs.

import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** Node (this process), Deno and Bun (node_modules/.bin) and the given packages' versions. */
export function versions(root: string, packages: string[]): Record<string, string> {
  const v = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    return (r.stdout || r.stderr || "").split("\n")[0]!.trim();
  };
  const pkg = (name: string) => {
    try {
      return JSON.parse(readFileSync(join(root, "node_modules", name, "package.json"), "utf8")).version as string;
    } catch {
      return "?";
    }
  };
  const out: Record<string, string> = {
    node: process.version,
    deno: v(join(root, "node_modules", ".bin", "deno"), ["--version"]),
    bun: v(join(root, "node_modules", ".bin", "bun"), ["--version"]),
  };
  for (const name of packages) out[name] = pkg(name);
  return out;
}

/** HEAD's short hash and how many files under src/ differ from it. */
export function gitState(root: string): { commit: string; dirtyFiles: number } {
  const head = spawnSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root, encoding: "utf8" }).stdout?.trim() ?? "?";
  const dirty = spawnSync("git", ["status", "--porcelain", "src"], { cwd: root, encoding: "utf8" }).stdout ?? "";
  return { commit: head, dirtyFiles: dirty.split("\n").filter(Boolean).length };
}

/** `tsc -p tsconfig.build.json` (dist/ for Node); on failure the existing dist/ is used, and said so. */
export function build(root: string): string {
  const r = spawnSync(join(root, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.build.json"], { cwd: root, encoding: "utf8" });
  return r.status === 0 ? "built" : `build failed (using the existing dist/): ${(r.stdout + r.stderr).split("\n").slice(0, 5).join(" | ")}`;
}
