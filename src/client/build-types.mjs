#!/usr/bin/env node
// Writes static/chat-client.d.ts from the JSDoc types of static/chat-client.js (the one source of truth),
// with tsc. `--check` only compares, and exits 1 when the committed file is stale.
// Usage: node src/client/build-types.mjs [--check]

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const TARGET = join(ROOT, "static", "chat-client.d.ts");
/** Types of chat-client.js that are not part of its API. */
const INTERNAL = ["Entry", "InFlight", "TimerName"];
const HEADER = `// GENERATED from chat-client.js by \`node src/client/build-types.mjs\`: edit the JSDoc there, not this file.
// Types of the ShootaWall client library, for TypeScript (src/client/index.ts re-exports them).
`;

export function generate() {
  const out = mkdtempSync(join(tmpdir(), "shootawall-types-"));
  try {
    execFileSync(join(ROOT, "node_modules", ".bin", "tsc"), ["-p", join(ROOT, "src", "client", "tsconfig.types.json"), "--outDir", out], {
      cwd: ROOT,
      stdio: ["ignore", "inherit", "inherit"],
    });
    const emitted = readFileSync(join(out, "chat-client.d.ts"), "utf8");
    // Top-level declarations start at column 0; drop the internal ones with their doc comments.
    const parts = emitted.split(/^(?=\/\*\*|export )/m);
    const kept = [];
    for (let i = 0; i < parts.length; i++) {
      const internal = (p) => INTERNAL.some((name) => p?.startsWith(`export type ${name} =`));
      if (internal(parts[i])) continue;
      if (parts[i].startsWith("/**") && internal(parts[i + 1])) continue;
      kept.push(parts[i]);
    }
    return HEADER + kept.join("");
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const fresh = generate();
  if (process.argv.includes("--check")) {
    let current = "";
    try {
      current = readFileSync(TARGET, "utf8");
    } catch { /* missing */ }
    if (current !== fresh) {
      console.error("static/chat-client.d.ts is stale: run node src/client/build-types.mjs");
      process.exit(1);
    }
    console.log("static/chat-client.d.ts is up to date");
  } else {
    writeFileSync(TARGET, fresh);
    console.log("wrote static/chat-client.d.ts");
  }
}
