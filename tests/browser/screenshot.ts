// Makes docs/screenshot.png: a short conversation between three people, seen from bob's page. Run by hand:
//   npm run build && node --import tsx tests/browser/screenshot.ts [--dark] [--phone OUT.png]

import { chromium, type Browser, type Page } from "playwright-core";
import { join } from "node:path";
import { ROOT, startServer } from "../_helpers/server.ts";

const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

const args = process.argv.slice(2);
const dark = args.includes("--dark");
const phoneAt = args.indexOf("--phone");
const phoneOut = phoneAt >= 0 ? args[phoneAt + 1] : undefined;
const out = phoneOut ?? (args.find((a) => a.endsWith(".png")) ?? join(ROOT, "docs", "screenshot.png"));
const viewport = phoneOut ? { width: 390, height: 844 } : { width: 1200, height: 800 };
const ROOM = "weekend-trip";

const server = await startServer("node20");
let browser: Browser | undefined;
try {
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
  const open = async (name: string): Promise<Page> => {
    const context = await browser!.newContext({
      viewport,
      deviceScaleFactor: phoneOut ? 2 : 1,
      colorScheme: dark ? "dark" : "light",
    });
    const page = await context.newPage();
    await page.goto(`${server.url}/?room=${ROOM}&name=${name}`);
    await page.locator('#status[data-state="connected"]').waitFor({ timeout: 10_000 });
    return page;
  };
  const say = async (page: Page, text: string, viewer: Page) => {
    const before = await viewer.locator("#log .msg[data-seq]").count();
    await page.locator("#text").fill(text);
    await page.locator("#text").press("Enter");
    await viewer.waitForFunction((n) => document.querySelectorAll("#log .msg[data-seq]").length > n, before);
  };

  const alice = await open("alice");
  await say(alice, "Who's in for the lake cabin this weekend?", alice);
  await say(alice, "It sleeps six, and there are two kayaks.", alice);
  const bob = await open("bob");
  await say(bob, "Count me in! I can drive — room for three in the car.", bob);
  await say(alice, "Perfect. Leaving Friday around 5 pm?", bob);
  const carol = await open("Carol Diaz");
  await say(carol, "I'm in too!\nI'll bring board games and my famous chili.", bob);
  await say(bob, "Friday at 5 works. I'll pick you both up at the station.", bob);
  await bob.locator("#text").fill("Should we bring");
  await bob.locator("#text").focus();
  await bob.screenshot({ path: out, fullPage: Boolean(phoneOut) });
  console.log(`saved ${out}`);
  void carol;
} finally {
  await browser?.close();
  await server.stop();
}
