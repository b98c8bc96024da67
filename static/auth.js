// Sign-in for servers started with AUTH=password: shows who is signed in, a sign-in form, and
// "Sign out". The session lives in an HttpOnly cookie that this script never sees; the chat's
// WebSocket carries it by itself (same origin). In AUTH=open this script shows nothing.
//
// For the chat code: `globalThis.shootawallAuth` is a promise of {mode, user} ("open" | "password"
// | "jwt", the signed-in account or null). A chat script may wait for it and, when mode is not
// "open" and user is null, not connect at all. A "shootawall:auth" event on window says the same
// whenever it changes.

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** @returns {Promise<{mode: string, user: string | null}>} */
async function whoAmI() {
  try {
    const res = await fetch("/auth/me", { cache: "no-store", credentials: "same-origin" });
    if (res.ok) return await res.json();
  } catch {
    // the server is unreachable: the chat code reports that
  }
  return { mode: "open", user: null };
}

const state = whoAmI();
globalThis.shootawallAuth = state;

function announce(detail) {
  document.documentElement.dataset.auth = detail.mode === "open" ? "open" : detail.user ? "signed-in" : "signed-out";
  window.dispatchEvent(new CustomEvent("shootawall:auth", { detail }));
}

/** The server's error text from a JSON answer, or a fallback. */
async function errorText(res, fallback) {
  try {
    const body = await res.json();
    if (typeof body?.error === "string") return body.error;
  } catch {
    // not JSON
  }
  return fallback;
}

function render({ mode, user }) {
  const card = $("auth-card");
  if (!card) return;
  card.hidden = mode === "open";
  $("login-form").hidden = mode !== "password" || Boolean(user);
  $("signed-in").hidden = !user;
  $("auth-user").textContent = user ?? "";
  const note = $("auth-note");
  note.hidden = mode !== "jwt";
  note.textContent = mode === "jwt" ? "This server takes sign-in tokens from your own application; this page cannot sign you in." : "";
  const nickname = /** @type {HTMLInputElement | null} */ (document.getElementById("name"));
  if (nickname && mode !== "open") {
    // With accounts, the server names you after your account, whatever the nickname field says.
    nickname.readOnly = true;
    nickname.value = user ?? "";
    nickname.placeholder = user ? "" : "sign in first";
  }
}

async function signIn(event) {
  event.preventDefault();
  const form = /** @type {HTMLFormElement} */ (event.currentTarget);
  const error = $("login-error");
  const button = /** @type {HTMLButtonElement} */ ($("login"));
  const username = /** @type {HTMLInputElement} */ ($("login-user")).value.trim();
  const password = /** @type {HTMLInputElement} */ ($("login-password")).value;
  if (!username || !password) {
    error.textContent = "Enter your user name and password.";
    error.hidden = false;
    return;
  }
  button.disabled = true;
  error.hidden = true;
  try {
    const res = await fetch("/auth/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    if (res.ok) {
      form.reset();
      // A fresh page connects with the new session cookie.
      location.reload();
      return;
    }
    error.textContent = await errorText(res, `Sign-in failed (HTTP ${res.status}).`);
  } catch {
    error.textContent = "Cannot reach the server; try again.";
  }
  error.hidden = false;
  button.disabled = false;
}

async function signOut() {
  const button = /** @type {HTMLButtonElement} */ ($("logout"));
  button.disabled = true;
  try {
    // The server closes this session's sockets (1008 "logged out") before it answers.
    await fetch("/auth/logout", { method: "POST", credentials: "same-origin" });
  } catch {
    // signed out or not, start afresh
  }
  const detail = { mode: "password", user: null };
  render(detail);
  announce(detail);
  setTimeout(() => location.reload(), 300);
}

state.then((detail) => {
  render(detail);
  announce(detail);
  $("login-form")?.addEventListener("submit", signIn);
  $("logout")?.addEventListener("click", signOut);
});
