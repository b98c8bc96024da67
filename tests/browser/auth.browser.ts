// AUTH=password in real Chromium: the page shows a sign-in form, signs in, chats as the account,
// signs out, and the server closes the socket (1008 "logged out"). The session cookie is HttpOnly.
// Run: npm run build && node --import tsx --test tests/browser/auth.browser.ts

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { hashPassword } from "../../src/http/auth/passwords.ts";
import { usersPath, writeUsers } from "../../src/http/auth/users-file.ts";
import { startServer, type RunningChild } from "../_helpers/server.ts";

const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const WAIT = { timeout: 10_000 };
const PASSWORD = "browser-Pa55word-7731";
const ROOM = "auth-room";
/** Chromium's console line for a refused WebSocket: expected while signed out (the server answers 401). */
const WS_REFUSED = /^WebSocket connection to 'ws:\/\/127\.0\.0\.1:\d+\/ws\/[^']*' failed: /;

describe("sign-in page in Chromium (AUTH=password)", { timeout: 90_000 }, () => {
  let server: RunningChild | undefined;
  let browser: Browser | undefined;
  let dataDir: string;
  const problems: string[] = [];

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "shootawall-auth-browser-"));
    await writeUsers(usersPath(dataDir), {
      version: 1,
      users: { alice: { hash: await hashPassword(PASSWORD), created: new Date().toISOString() } },
    });
    server = await startServer("node20", {
      AUTH: "password",
      AUTH_SECRET: "browser-test-secret-0123456789abcdef",
      DATA_DIR: dataDir,
      STORE: "memory",
      PRESENCE_GRACE_S: "0",
    });
    browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await server?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function openPage(path: string): Promise<Page> {
    const context = await browser!.newContext({ viewport: { width: 1000, height: 700 } });
    await context.addInitScript(() => {
      document.addEventListener("securitypolicyviolation", (e) => console.error(`CSP violation: ${e.violatedDirective}`));
      // Every socket's close, kept in sessionStorage so that it survives the reload after signing out.
      const Native = WebSocket;
      globalThis.WebSocket = class extends Native {
        constructor(url: string | URL, protocols?: string | string[]) {
          super(url, protocols);
          this.addEventListener("close", (e) => {
            const seen = JSON.parse(sessionStorage.getItem("closes") ?? "[]") as string[];
            seen.push(`${e.code} ${e.reason}`);
            sessionStorage.setItem("closes", JSON.stringify(seen));
          });
        }
      };
    });
    const page = await context.newPage();
    page.on("console", (msg) => {
      if (msg.type() === "error" && !WS_REFUSED.test(msg.text())) problems.push(`console error: ${msg.text()}`);
    });
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    await page.goto(server!.url + path);
    return page;
  }

  it("signs in, chats as the account, signs out, and the socket closes", async () => {
    const page = await openPage(`/?room=${ROOM}&name=mallory`);
    // Signed out: the form is shown, the Account card says nobody is signed in.
    await page.locator("#login-form").waitFor({ state: "visible", ...WAIT });
    assert.equal(await page.locator("#signed-in").isVisible(), false);
    assert.equal(await page.evaluate(() => document.documentElement.dataset.auth), "signed-out");

    // A wrong password is refused with a readable message.
    await page.locator("#login-user").fill("alice");
    await page.locator("#login-password").fill("not-the-password");
    await page.locator("#login").click();
    await page.locator("#login-error", { hasText: "Wrong user name or password" }).waitFor(WAIT);

    await page.locator("#login-password").fill(PASSWORD);
    await Promise.all([page.waitForEvent("load", WAIT), page.locator("#login").click()]);
    await page.locator("#signed-in").waitFor({ state: "visible", ...WAIT });
    assert.equal(await page.locator("#auth-user").textContent(), "alice");
    assert.equal(await page.evaluate(() => document.cookie.includes("shootawall_session")), false, "the cookie is HttpOnly");

    // Connected as alice, whatever ?name= said.
    await page.locator('#status[data-state="connected"]').waitFor(WAIT);
    await page.waitForFunction(() =>
      [...document.querySelectorAll("#online li .who")].map((el) => el.textContent).join(",") === "alice", undefined, WAIT);
    await page.locator("#text").fill("hello as alice");
    await page.locator("#text").press("Enter");
    await page.waitForFunction(() =>
      [...document.querySelectorAll<HTMLElement>("#log .msg")].some((el) =>
        el.querySelector(".text")?.textContent === "hello as alice" && el.dataset.seq !== undefined), undefined, WAIT);

    // Sign out: the server closes the socket with 1008, and the page comes back signed out.
    await page.evaluate(() => sessionStorage.setItem("closes", "[]"));
    await Promise.all([page.waitForEvent("load", WAIT), page.locator("#logout").click()]);
    await page.locator("#login-form").waitFor({ state: "visible", ...WAIT });
    const closes = await page.evaluate(() => JSON.parse(sessionStorage.getItem("closes") ?? "[]") as string[]);
    assert.ok(closes.includes("1008 logged out"), `socket closes: ${JSON.stringify(closes)}`);
    const me = await page.evaluate(async () => (await fetch("/auth/me")).json());
    assert.deepEqual(me, { mode: "password", user: null });
    // The one wrong password above is the only refused request Chromium reports.
    const refusedLogin = "console error: Failed to load resource: the server responded with a status of 401 (Unauthorized)";
    assert.deepEqual(problems, [refusedLogin]);
  });
});
