// Chromium answers the server's protocol pings by itself, so a quiet page, even in a background tab,
// is never dropped by the heartbeat; the server's metrics confirm no heartbeat close happened.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { chromium, type Browser } from "playwright-core";
import { startServer, type RunningChild } from "../_helpers/server.ts";

const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

describe("heartbeat in Chromium", { timeout: 60_000 }, () => {
  let server: RunningChild | undefined;
  let browser: Browser | undefined;

  before(async () => {
    server = await startServer("node20", { HEARTBEAT_S: "1" });
    browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
  });
  after(async () => {
    await browser?.close().catch(() => {});
    await server?.stop();
  });

  it("keeps a background tab connected across many heartbeats", async () => {
    const context = await browser!.newContext();
    const page = await context.newPage();
    await page.goto(`${server!.url}/?room=heartbeat&name=sleepy`);
    await page.locator('#status[data-state="connected"]').waitFor({ timeout: 10_000 });
    // Another tab in front: the chat tab is now hidden, as a background tab would be.
    const front = await context.newPage();
    await front.goto(`${server!.url}/healthz`);
    await front.bringToFront();
    await new Promise((r) => setTimeout(r, 4500));
    const state = await page.locator("#status").getAttribute("data-state");
    assert.equal(state, "connected");
    const metrics = await (await fetch(`${server!.url}/metrics`)).text();
    assert.match(metrics, /^shootawall_closes_total\{reason="heartbeat"\} 0$/m);
    assert.match(metrics, /^shootawall_connections 1$/m);
    await context.close();
  });
});
