// The page and its assets: read once from static/ at start, served from memory with ETags.
// node:fs/promises is used because Node, Deno and Bun all provide it unchanged.

import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export interface StaticFile {
  body: Uint8Array;
  type: string;
  etag: string;
}

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  mjs: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
  png: "image/png",
  ico: "image/x-icon",
  json: "application/json",
  txt: "text/plain; charset=utf-8",
  webmanifest: "application/manifest+json",
};

async function etagOf(body: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", body as Uint8Array<ArrayBuffer>));
  return `"${Array.from(digest.slice(0, 12), (b) => b.toString(16).padStart(2, "0")).join("")}"`;
}

/** Reads the top level of `dir` into a map from URL path ("/app.js") to file. */
export async function loadStaticFiles(dirUrl: URL): Promise<Map<string, StaticFile>> {
  const files = new Map<string, StaticFile>();
  const dir = fileURLToPath(dirUrl.href);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isFile() || entry.name.startsWith(".")) continue;
    const ext = entry.name.slice(entry.name.lastIndexOf(".") + 1).toLowerCase();
    const type = TYPES[ext];
    if (!type) continue;
    const body = new Uint8Array(await readFile(join(dir, entry.name)));
    files.set(`/${entry.name}`, { body, type, etag: await etagOf(body) });
  }
  const index = files.get("/index.html");
  if (index) files.set("/", index);
  return files;
}

/** Where the page lives, from src/ and from dist/ alike. */
export const STATIC_DIR = new URL("../../static/", import.meta.url);
