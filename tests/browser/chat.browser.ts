// The page in real Chromium against our Node server: chat both ways, text stays text, dedupe, heartbeat, reconnect,
// nothing lost (offline outbox across a reload, resume after a drop), CSP.
// Run: npm run build && node --import tsx --test tests/browser/chat.browser.ts

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { startServer, type RunningChild } from "../_helpers/server.ts";

const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const ROOM = "test-room";
const WAIT = { timeout: 10_000 };
const XSS = "<img src=x onerror=alert(1)>";
/** Chromium's console line for a refused WebSocket; expected only while the server is down or refusing. */
const WS_FAILURE = /^WebSocket connection to 'ws:\/\/127\.0\.0\.1:\d+\/ws\/[a-z0-9_-]+(\?name=[^']*)?' failed: /;
/** Chromium's console line for a failed fetch (the page's /healthz check while the server is down). */
const FETCH_FAILURE = /^Failed to load resource: net::ERR_(CONNECTION_REFUSED|FAILED|INTERNET_DISCONNECTED)/;

interface MessageInfo { seq: string | undefined; text: string | null; classes: string[] }
interface Hooks { __sockets: WebSocket[]; __sent: string[]; __dropPings: boolean; __events: string[] }

describe("chat page in Chromium", { timeout: 120_000 }, () => {
  let server: RunningChild | undefined;
  let browser: Browser | undefined;
  /** Console errors, page errors, CSP violations and failed HTTP responses, from every page. */
  const problems: string[] = [];
  const dialogs: string[] = [];
  let wsFailuresExpected = false;
  let alice: Page;
  let bob: Page;

  /** The main server's history, so that a restart on it can keep its epoch. */
  const dataDir = mkdtempSync(join(tmpdir(), "shootawall-browser-"));

  before(async () => {
    server = await startServer("node20", { DATA_DIR: dataDir });
    browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await server?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  /**
   * A page in its own browser context (own localStorage), watched for errors and dialogs. With `offlineCache`,
   * the page's files are kept as they load and served from that copy while the server is down (as a
   * service worker or a browser's offline cache would), so the page can be reloaded during an outage.
   */
  async function openPage(
    label: string,
    path: string,
    { base = server!.url, fakeClock = false, offlineCache = false } = {},
  ): Promise<Page> {
    // A page served from that copy counts as public to Chromium's Local Network Access checks, which would
    // then block its socket to 127.0.0.1: let it, as the real page (served by the server itself) is.
    const context = await browser!.newContext({
      viewport: { width: 1000, height: 700 },
      permissions: offlineCache ? ["local-network-access"] : [],
    });
    if (offlineCache) {
      const origin = new URL(base).origin;
      const cache = new Map<string, { status: number; headers: Record<string, string>; body: Buffer }>();
      await context.route((url) => url.origin === origin && !url.pathname.startsWith("/ws"), async (route) => {
        const { pathname } = new URL(route.request().url());
        try {
          const response = await route.fetch();
          if (response.status() === 200 && pathname !== "/healthz") {
            cache.set(pathname, { status: 200, headers: response.headers(), body: await response.body() });
          }
          await route.fulfill({ response });
        } catch {
          const copy = cache.get(pathname);
          if (copy) await route.fulfill(copy);
          else await route.abort("connectionrefused");
        }
      });
    }
    await context.addInitScript(() => {
      document.addEventListener("securitypolicyviolation", (e) =>
        console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`));
      // Test hooks: the page's sockets (to drop one), what it sent, and a switch to swallow its pings.
      const Native = WebSocket;
      const hooks = globalThis as unknown as Hooks;
      hooks.__sockets = [];
      hooks.__sent = [];
      hooks.__dropPings = false;
      hooks.__events = [];
      globalThis.WebSocket = class extends Native {
        constructor(url: string | URL, protocols?: string | string[]) {
          super(url, protocols);
          hooks.__sockets.push(this);
          const n = hooks.__sockets.length;
          this.addEventListener("message", (e) => hooks.__events.push(`${n} ${Date.now()} in ${String(e.data).slice(0, 40)}`));
          this.addEventListener("close", (e) => hooks.__events.push(`${n} ${Date.now()} close ${e.code}`));
        }
        override send(data: Parameters<WebSocket["send"]>[0]) {
          const isPing = typeof data === "string" && data.includes('"type":"ping"');
          if (typeof data === "string") hooks.__sent.push(data);
          hooks.__events.push(`${hooks.__sockets.indexOf(this) + 1} ${Date.now()} out ${String(data).slice(0, 40)}`);
          if (!(isPing && hooks.__dropPings)) super.send(data);
        }
      };
    });
    const page = await context.newPage();
    if (fakeClock) await page.clock.install();
    page.on("console", (msg) => {
      if (msg.type() !== "error") return;
      if (wsFailuresExpected && (WS_FAILURE.test(msg.text()) || FETCH_FAILURE.test(msg.text()))) return;
      problems.push(`${label} console error: ${msg.text()}`);
    });
    page.on("pageerror", (err) => problems.push(`${label} page error: ${err.message}`));
    page.on("response", (res) => {
      if (res.status() >= 400) problems.push(`${label} HTTP ${res.status()} for ${res.url()}`);
    });
    page.on("dialog", (dialog) => {
      dialogs.push(`${label}: ${dialog.type()} ${dialog.message()}`);
      void dialog.dismiss();
    });
    await page.goto(base + path);
    return page;
  }

  const statusIs = (page: Page, state: string, timeout = WAIT.timeout) =>
    page.locator(`#status[data-state="${state}"]`).waitFor({ timeout });

  async function send(page: Page, text: string): Promise<void> {
    await page.locator("#text").fill(text);
    await page.locator("#text").press("Enter");
  }

  /** Waits for a confirmed (seq-numbered) message with exactly this text, mine or not. */
  function waitForMessage(page: Page, text: string, mine: boolean) {
    return page.waitForFunction(([t, m]) =>
      [...document.querySelectorAll<HTMLElement>("#log .msg")].some((el) =>
        el.querySelector(".text")?.textContent === t && el.classList.contains("mine") === m &&
        el.dataset.seq !== undefined && !el.classList.contains("pending")), [text, mine] as const, WAIT);
  }

  function messages(page: Page): Promise<MessageInfo[]> {
    return page.$$eval("#log .msg", (els) => els.map((el) => ({
      seq: (el as HTMLElement).dataset.seq,
      text: el.querySelector(".text")?.textContent ?? null,
      classes: [...el.classList],
    })));
  }

  function waitForOnline(page: Page, users: string[]) {
    const want = [...users].sort();
    return page.waitForFunction((w) => {
      const shown = [...document.querySelectorAll("#online li .who")].map((el) => el.textContent ?? "").sort();
      return document.querySelectorAll("#online li").length === w.length && shown.join("\n") === w.join("\n");
    }, want, WAIT);
  }

  async function assertNoDuplicates(page: Page): Promise<void> {
    const seqs = (await messages(page)).map((m) => m.seq);
    assert.ok(seqs.every((s) => s !== undefined), `every message is confirmed: ${JSON.stringify(seqs)}`);
    assert.equal(new Set(seqs).size, seqs.length, `no seq shown twice: ${JSON.stringify(seqs)}`);
  }

  it("lets two users chat both ways and shows who is online", { timeout: 30_000 }, async () => {
    alice = await openPage("alice", `/?room=${ROOM}&name=alice`);
    await statusIs(alice, "connected");
    assert.equal(await alice.locator("#room-label").textContent(), ROOM);

    // bob uses the form instead of the URL.
    bob = await openPage("bob", "/");
    await statusIs(bob, "connected");
    await bob.locator("#name").fill("bob");
    await bob.locator("#room").fill(ROOM);
    await bob.locator("#join").click();
    await bob.locator("#room-label").filter({ hasText: ROOM }).waitFor(WAIT);
    await statusIs(bob, "connected");

    await waitForOnline(alice, ["alice", "bob"]);
    await waitForOnline(bob, ["alice", "bob"]);
    await alice.locator("#log .announce", { hasText: "bob connected" }).waitFor(WAIT);

    await send(alice, "hello from alice");
    await waitForMessage(bob, "hello from alice", false);
    await waitForMessage(alice, "hello from alice", true);

    const multiLine = "hi alice, bob here\n  second line keeps its spaces";
    await send(bob, multiLine);
    await waitForMessage(alice, multiLine, false);
    await waitForMessage(bob, multiLine, true);

    for (const page of [alice, bob]) {
      const shown = await messages(page);
      assert.deepEqual(shown.map((m) => m.text), ["hello from alice", multiLine]);
      await assertNoDuplicates(page);
    }
    assert.equal(await alice.locator("#log .msg.mine").count(), 1);
    assert.equal(await bob.locator("#log .msg.mine").count(), 1);
    // Shift+Enter adds a newline instead of sending.
    await alice.locator("#text").fill("draft");
    await alice.locator("#text").press("Shift+Enter");
    assert.equal(await alice.locator("#text").inputValue(), "draft\n");
    await alice.locator("#text").fill("");
  });

  it("shows markup as literal text, live and in history", { timeout: 30_000 }, async () => {
    await send(alice, XSS);
    await waitForMessage(bob, XSS, false);
    await waitForMessage(alice, XSS, true);
    const text = await bob.locator("#log .msg:not(.mine) .text").last().textContent();
    assert.equal(text, XSS);

    // A newcomer gets it replayed from history, marked as such.
    const carol = await openPage("carol", `/?room=${ROOM}&name=carol`);
    await statusIs(carol, "connected");
    await waitForMessage(carol, XSS, false);
    assert.equal(await carol.locator("#log .divider").count(), 1);
    const replayed = await messages(carol);
    assert.deepEqual(replayed.map((m) => m.text), ["hello from alice", "hi alice, bob here\n  second line keeps its spaces", XSS]);
    assert.ok(replayed.every((m) => m.classes.includes("history") && !m.classes.includes("mine")));
    await waitForOnline(bob, ["alice", "bob", "carol"]);

    for (const page of [alice, bob, carol]) {
      assert.equal(await page.locator("#log img").count(), 0, "no <img> inside the log");
    }
    assert.deepEqual(dialogs, [], "no dialog opened");

    // carol leaves: announced after the server's grace period, and the online lists follow.
    await carol.context().close();
    await bob.locator("#log .announce", { hasText: "carol disconnected" }).waitFor(WAIT);
    await waitForOnline(bob, ["alice", "bob"]);
    await waitForOnline(alice, ["alice", "bob"]);
  });

  it("does not render a message twice after its socket drops", { timeout: 30_000 }, async () => {
    const before = (await messages(alice)).length;
    await alice.evaluate(() => (globalThis as unknown as Hooks).__sockets.at(-1)?.close());
    await statusIs(alice, "connected"); // the drop itself may be too brief to observe
    await alice.waitForFunction(() => (globalThis as unknown as Hooks).__sockets.length >= 2, null, WAIT);
    await statusIs(alice, "connected");
    await send(bob, "did you miss me?");
    await waitForMessage(alice, "did you miss me?", false);
    assert.equal((await messages(alice)).length, before + 1);
    await assertNoDuplicates(alice);
    assert.equal(await alice.locator("#log .announce", { hasText: "alice disconnected" }).count(), 0,
      "a quick reconnect is not announced");
  });

  it("shows the server's error frames in a dismissible notice", { timeout: 30_000 }, async () => {
    await alice.evaluate(() => (globalThis as unknown as Hooks).__sockets.at(-1)?.send("not json"));
    await alice.locator("#notice", { hasText: "not valid JSON" }).waitFor(WAIT);
    await alice.locator("#notice-close").click();
    await alice.locator("#notice").waitFor({ state: "hidden", ...WAIT });
    await statusIs(alice, "connected");
  });

  it("pings every 25 s and replaces a connection silent for 60 s", { timeout: 30_000 }, async () => {
    const hank = await openPage("hank", "/?room=beat&name=hank", { fakeClock: true });
    await statusIs(hank, "connected");
    // (No named functions inside evaluate: tsx would wrap them in a helper the page does not have.)
    const probe = () => hank.evaluate(() => {
      const hooks = globalThis as unknown as Hooks;
      return {
        sockets: hooks.__sockets.length,
        firstOpen: hooks.__sockets[0]?.readyState === 1,
        pings: hooks.__events.filter((e) => e.includes(' out {"type":"ping"}')).length,
        pongs: hooks.__events.filter((e) => e.includes(' in {"type":"pong"}')).length,
        events: hooks.__events.join("\n"),
      };
    });
    /** The page's clock is fake but the network is not: give the server's pongs real time to arrive. */
    const awaitPongs = async () => {
      const deadline = Date.now() + 5_000;
      while ((await probe()).pongs < (await probe()).pings) {
        if (Date.now() > deadline) assert.fail(`no pong:\n${(await probe()).events}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    // Margins of a few seconds: the fake clock also flows with real time between these calls.
    await hank.clock.runFor(20_000);
    assert.equal((await probe()).pings, 0);
    await hank.clock.runFor(10_000);
    assert.equal((await probe()).pings, 1);
    await awaitPongs();
    await hank.clock.runFor(50_000);
    assert.equal((await probe()).pings, 3);
    await awaitPongs();
    assert.equal((await probe()).sockets, 1, "answered pings keep the connection");

    await hank.evaluate(() => { (globalThis as unknown as Hooks).__dropPings = true; });
    await hank.clock.runFor(55_000);
    const alive = await probe();
    assert.equal(alive.sockets, 1, `not dead after 55 s of silence:\n${alive.events}`);
    await hank.clock.runFor(15_000);
    await hank.evaluate(() => { (globalThis as unknown as Hooks).__dropPings = false; });
    await hank.clock.runFor(1_000); // past the first backoff delay (at most 0.5 s)
    const replaced = await probe();
    assert.equal(replaced.sockets, 2, `a new socket after 70 s of silence:\n${replaced.events}`);
    assert.equal(replaced.firstOpen, false, "the silent socket is closed");
    await statusIs(hank, "connected");
    await hank.context().close();
  });

  it("validates the room client-side and explains a refused connection", { timeout: 30_000 }, async () => {
    const bad = await openPage("bad-room", "/?room=No%20Spaces&name=dora");
    await statusIs(bad, "error");
    assert.match(await bad.locator("#form-error").textContent() ?? "", /a–z/);
    await bad.context().close();

    // A server that holds one room refuses a second one with 503 while the first is in use.
    const busy = await startServer("node20", { MAX_ROOMS: "1" });
    wsFailuresExpected = true;
    try {
      const first = await openPage("busy-1", "/?room=one&name=erin", { base: busy.url });
      await statusIs(first, "connected");
      const second = await openPage("busy-2", "/?room=two&name=finn", { base: busy.url });
      await statusIs(second, "error");
      assert.match(await second.locator("#notice").textContent() ?? "", /refused/);
      assert.ok(await second.locator("#notice").isVisible());
      await first.context().close();
      await second.context().close();
    } finally {
      wsFailuresExpected = false;
      await busy.stop();
    }
  });

  it("delivers a message typed offline exactly once, even after a reload while the server is down", { timeout: 90_000 }, async () => {
    const room = "offline-room";
    const dana = await openPage("dana", `/?room=${room}&name=dana`, { offlineCache: true });
    const eve = await openPage("eve", `/?room=${room}&name=eve`);
    await statusIs(dana, "connected");
    await statusIs(eve, "connected");
    await send(dana, "before the outage");
    await waitForMessage(eve, "before the outage", false);
    await waitForMessage(dana, "before the outage", true);

    const port = server!.port;
    wsFailuresExpected = true;
    try {
      await server!.stop();
      await statusIs(dana, "reconnecting");
      await send(dana, "typed offline");
      const pending = (page: Page) => page.locator("#log .msg.mine.pending", { hasText: "typed offline" });
      await pending(dana).waitFor(WAIT);
      assert.match(await pending(dana).locator(".state").textContent() ?? "", /waiting for connection/);

      await dana.reload();
      // Back from the page's copy: what it had shown, and the message still waiting.
      await pending(dana).waitFor(WAIT);
      assert.match(await pending(dana).locator(".state").textContent() ?? "", /waiting for connection/);
      assert.deepEqual((await messages(dana)).map((m) => m.text), ["before the outage", "typed offline"]);
      await statusIs(dana, "reconnecting");
      await dana.waitForTimeout(1_000); // a few failed attempts while down: nothing sent, nothing lost

      server = await startServer("node20", { PORT: String(port), DATA_DIR: dataDir });
      await statusIs(dana, "connected", 20_000);
      await statusIs(eve, "connected", 20_000);
    } finally {
      wsFailuresExpected = false;
    }
    await waitForMessage(eve, "typed offline", false);
    await waitForMessage(dana, "typed offline", true);
    await dana.waitForTimeout(500); // room for a duplicate to show up, if there were one
    for (const page of [dana, eve]) {
      assert.deepEqual((await messages(page)).map((m) => m.text), ["before the outage", "typed offline"]);
      await assertNoDuplicates(page);
    }
    assert.equal(await dana.locator("#log .msg.pending").count(), 0, "the pending mark is gone");
    const outbox = await dana.evaluate(() => JSON.parse(localStorage.getItem("shootawall.client.offline-room.dana") ?? "{}").outbox);
    assert.deepEqual(outbox, [], "the stored outbox is empty");
    await dana.context().close();
    await eve.context().close();
  });

  it("gives a page that reconnects exactly the messages it missed", { timeout: 60_000 }, async () => {
    const room = "resume-room";
    const frank = await openPage("frank", `/?room=${room}&name=frank`);
    const gina = await openPage("gina", `/?room=${room}&name=gina`);
    await statusIs(frank, "connected");
    await statusIs(gina, "connected");
    await send(gina, "while frank is here");
    await waitForMessage(frank, "while frank is here", false);

    // frank's network goes away (his socket with it); gina says more than a newcomer's replay holds.
    const missed = Array.from({ length: 15 }, (_, i) => `missed ${i + 1}`);
    wsFailuresExpected = true;
    try {
      await frank.context().setOffline(true);
      await frank.evaluate(() => (globalThis as unknown as Hooks).__sockets.at(-1)?.close());
      await statusIs(frank, "reconnecting");
      for (const text of missed) {
        await send(gina, text);
        await waitForMessage(gina, text, true);
      }
      await frank.waitForTimeout(500);
      await frank.context().setOffline(false);
      await statusIs(frank, "connected", 20_000);
    } finally {
      wsFailuresExpected = false;
    }
    await waitForMessage(frank, missed.at(-1)!, false);
    await frank.waitForTimeout(300);
    const shown = await messages(frank);
    assert.deepEqual(shown.map((m) => m.text), ["while frank is here", ...missed], "none missing, none doubled, in order");
    const seqs = shown.map((m) => Number(m.seq));
    assert.deepEqual(seqs, seqs.map((_, i) => seqs[0]! + i), "consecutive seqs");
    assert.deepEqual(shown.slice(1).map((m) => m.classes.includes("history")), missed.map(() => true));
    assert.equal(await frank.locator("#log .divider", { hasText: "while you were away" }).count(), 1);
    assert.equal(await frank.locator("#log .note").count(), 0, "no gap reported");
    await frank.context().close();
    await gina.context().close();
  });

  it("reconnects by itself when the server restarts", { timeout: 60_000 }, async () => {
    const port = server!.port;
    wsFailuresExpected = true;
    try {
      await server!.stop();
      await statusIs(alice, "reconnecting");
      await statusIs(bob, "reconnecting");
      server = await startServer("node20", { PORT: String(port) });
      await statusIs(alice, "connected", 20_000);
      await statusIs(bob, "connected", 20_000);
    } finally {
      wsFailuresExpected = false;
    }
    await waitForOnline(alice, ["alice", "bob"]);
    await send(alice, "back again");
    await waitForMessage(bob, "back again", false);
    await waitForMessage(alice, "back again", true);
    await send(bob, "welcome back");
    await waitForMessage(alice, "welcome back", false);
    // The restarted server has a new epoch: the old log is replaced, nothing is doubled.
    for (const page of [alice, bob]) {
      assert.deepEqual((await messages(page)).map((m) => m.text), ["back again", "welcome back"]);
      await assertNoDuplicates(page);
    }
  });

  it("logs no console errors, page errors or CSP violations", () => {
    assert.deepEqual(problems, []);
  });
});
