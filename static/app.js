// ShootaWall page: joins a room through the client library (chat-client.js) and shows the chat as plain
// text. The library reconnects, resumes and keeps the outbox; this file only renders. The outbox, the
// last seq and epoch, and the latest messages are kept in localStorage per room and name, so a message
// typed while offline survives a reload and is delivered exactly once when the connection returns.
//
// Other scripts of the page (e.g. a login UI in auth.js) use the `page` export below:
//   import { page } from "./app.js";
//   page.setConnectHook(async () => ({ query: { token } }));  // added to every connection from now on
//   page.join(room, name);                                       // like the Join form

import { ChatClient } from "./chat-client.js";

const ROOM_RULE = /^[a-z0-9_-]{1,64}$/;
const BAD_NAME_CHARS = /[\p{Cc}\u202A-\u202E\u2066-\u2069\u200E\u200F\u061C]/u; // same rule as the server
const MAX_NAME = 32;
const MAX_TEXT = 4096;
const GROUP_WINDOW_MS = 5 * 60_000;
const KEEP_MESSAGES = 100; // shown again after a reload, before the server is even reached
const KEEP_ROOMS = 20; // rooms whose stored state is kept (those with unsent messages always are)
const KEYS = { name: "shootawall.name", room: "shootawall.room", client: "shootawall.client." };
const STATUS_TEXT = { connecting: "connecting…", connected: "connected", reconnecting: "reconnecting…", error: "error" };

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"), statusText: $("status-text"), roomLabel: $("room-label"),
  log: $("log"), jump: $("jump"), notice: $("notice"), noticeText: $("notice-text"), noticeClose: $("notice-close"),
  composer: $("composer"), text: $("text"), send: $("send"),
  joinForm: $("join-form"), name: $("name"), room: $("room"), formError: $("form-error"),
  online: $("online"), onlineCount: $("online-count"),
};

const state = {
  room: "lobby", name: "",  // what we ask the server for
  client: null,             // the ChatClient of this room and name
  unsubscribe: [],          // its listeners
  refused: false,           // the server refused us: stay in "error" until the user joins again
  welcomed: false,          // the server let us in at least once (so a failed connection is not a refusal)
  checking: false,          // a refusal check is running
  bySeq: new Map(),         // seq -> element, for the epoch shown
  pending: new Map(),       // nonce -> element of an own message not yet confirmed
  retrying: new Set(),      // nonces the server asked us to send again later
  online: [],
};

/** What each connection adds (e.g. a login token), set by other scripts through `page`. */
let connectHook = null;

// ---- small helpers -------------------------------------------------------

/** Makes an element with a class and text; text always goes in as text, never as HTML. */
function h(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

/** localStorage, or nothing when the browser blocks it. */
function storage() {
  try {
    const s = globalThis.localStorage;
    s.getItem(KEYS.name);
    return s;
  } catch {
    return undefined;
  }
}

function load(key) {
  try { return localStorage.getItem(key) ?? ""; } catch { return ""; } // storage may be blocked
}

function save(key, value) {
  try { value ? localStorage.setItem(key, value) : localStorage.removeItem(key); } catch { /* ignore */ }
}

/** Forgets the stored state of rooms not visited for long; never one with unsent messages. */
function pruneStoredRooms() {
  const s = storage();
  if (!s) return;
  try {
    const rooms = [];
    for (let i = 0; i < s.length; i++) {
      const key = s.key(i);
      if (!key?.startsWith(KEYS.client)) continue;
      let saved;
      try { saved = JSON.parse(s.getItem(key) ?? ""); } catch { saved = null; }
      if (!saved?.outbox?.length) rooms.push({ key, savedAt: Number(saved?.savedAt) || 0 });
    }
    rooms.sort((a, b) => b.savedAt - a.savedAt);
    for (const { key } of rooms.slice(KEEP_ROOMS)) s.removeItem(key);
  } catch { /* ignore */ }
}

function checkRoom(raw) {
  const room = String(raw).trim().toLowerCase();
  return ROOM_RULE.test(room) ? { room } : { error: "Room names are 1 to 64 characters: a–z, 0–9, “-” and “_”." };
}

function checkName(raw) {
  const name = String(raw).trim();
  if ([...name].length > MAX_NAME) return { error: `Nicknames are at most ${MAX_NAME} characters.` };
  if (BAD_NAME_CHARS.test(name)) return { error: "Nicknames cannot contain control characters." };
  return { name };
}

/** A stable colour (one of 12 CSS hues) from a name. */
function hueOf(name) {
  let hash = 2166136261;
  for (const ch of name) hash = Math.imul(hash ^ ch.codePointAt(0), 16777619);
  return (hash >>> 0) % 12;
}

function initials(name) {
  const words = name.split(/[\s._-]+/).filter(Boolean);
  const letters = (words.length > 1 ? [words[0], words[1]] : [name]).map((w) => [...w][0] ?? "");
  return letters.join("").toUpperCase() || "?";
}

function avatar(name) {
  const el = h("span", `avatar hue-${hueOf(name)}`, initials(name));
  el.setAttribute("aria-hidden", "true");
  return el;
}

function timeEl(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h("time", "time", "");
  const el = h("time", "time", date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  el.dateTime = iso;
  el.title = date.toLocaleString([], { dateStyle: "full", timeStyle: "medium" });
  return el;
}

const me = () => state.client?.user ?? null;

// ---- status, notices, scrolling -------------------------------------------

function setStatus(name, detail = "") {
  ui.status.dataset.state = name;
  ui.statusText.textContent = STATUS_TEXT[name];
  ui.status.title = detail;
  ui.send.disabled = name === "error";
}

function showNotice(text) {
  ui.noticeText.textContent = text;
  ui.notice.hidden = false;
}

function hideNotice() {
  ui.notice.hidden = true;
}

function atBottom() {
  return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 48;
}

function scrollToBottom() {
  ui.log.scrollTop = ui.log.scrollHeight;
  ui.jump.hidden = true;
}

/** Appends (or moves) an entry to the end of the log, grouping runs of one user's messages. */
function place(el, { stick = false } = {}) {
  const follow = stick || atBottom();
  const prev = ui.log.lastElementChild === el ? el.previousElementSibling : ui.log.lastElementChild;
  const sameRun = prev?.classList.contains("msg") && el.classList.contains("msg") &&
    !el.classList.contains("pending") && !el.classList.contains("failed") &&
    prev.dataset.user === el.dataset.user &&
    prev.classList.contains("history") === el.classList.contains("history") &&
    Number(el.dataset.time) - Number(prev.dataset.time) < GROUP_WINDOW_MS;
  el.classList.toggle("cont", Boolean(sameRun));
  if (ui.log.lastElementChild !== el) ui.log.append(el); // a move would be read out again
  if (follow) scrollToBottom();
  else ui.jump.hidden = false;
}

/** Empties the log; own messages still on their way stay (at the end). */
function clearLog() {
  const keep = [...state.pending.values()];
  ui.log.replaceChildren();
  state.bySeq.clear();
  ui.jump.hidden = true;
  for (const el of keep) place(el);
}

function addLine(className, text) {
  const el = h("div", className);
  el.append(h("span", "", text));
  place(el);
  return el;
}

// ---- rendering -------------------------------------------------------------

function renderMessage({ user, text, date, seq }, { mine = false, history = false, pending = false } = {}) {
  const el = h("div", "msg");
  el.classList.toggle("mine", mine);
  el.classList.toggle("history", history);
  el.classList.toggle("pending", pending);
  if (seq !== undefined) el.dataset.seq = String(seq);
  el.dataset.user = user;
  el.dataset.time = String(Date.parse(date));
  const bubble = h("div", "bubble");
  const meta = h("p", "meta");
  meta.append(h("span", "author", user), timeEl(date));
  if (history) meta.append(h("span", "tag", "earlier"));
  if (pending) meta.append(h("span", "tag state", "sending…"));
  bubble.append(meta, h("p", "text", text));
  el.append(avatar(user), bubble);
  return el;
}

/** Shows a message of the room once (by seq), or turns our own pending copy into it. */
function showMessage(m, { history = false } = {}) {
  if (state.bySeq.has(m.seq)) return;
  const own = m.mine && m.nonce !== undefined ? state.pending.get(String(m.nonce)) : undefined;
  if (own) return confirmPending(String(m.nonce), m.seq, m.date);
  const el = renderMessage(m, { mine: m.mine ?? m.user === me(), history });
  state.bySeq.set(m.seq, el);
  place(el);
}

function renderOnline() {
  const self = me();
  const users = [...state.online].sort((a, b) => a === self ? -1 : b === self ? 1 : a.localeCompare(b));
  ui.online.replaceChildren(...users.map((user) => {
    const li = h("li", user === self ? "me" : "");
    li.append(avatar(user), h("span", "who", user));
    if (user === self) li.append(h("span", "you", "(you)"));
    return li;
  }));
  ui.onlineCount.textContent = String(users.length);
}

// ---- own messages: pending until their echo or ack -------------------------

function setPendingLabel(el, label, { failed = false, queued = false } = {}) {
  el.classList.toggle("failed", failed);
  el.classList.toggle("queued", queued);
  const tag = el.querySelector(".state");
  if (tag) tag.textContent = label;
  el.querySelector(".retry")?.remove();
  if (failed) {
    const retry = h("button", "retry", "Retry");
    retry.type = "button";
    retry.addEventListener("click", () => resend(el));
    el.querySelector(".bubble").append(retry);
  }
}

/** Labels every pending message from the outbox: sent, waiting for a connection, or retrying. */
function refreshPending(entries = state.client?.pending ?? []) {
  for (const e of entries) {
    const el = state.pending.get(e.nonce);
    if (!el || el.classList.contains("failed")) continue;
    if (e.state === "sending") state.retrying.delete(e.nonce);
    if (e.state === "sending") setPendingLabel(el, "sending…");
    else if (!state.client.connected) setPendingLabel(el, "waiting for connection…", { queued: true });
    else setPendingLabel(el, state.retrying.has(e.nonce) ? "will retry…" : "sending…", { queued: true });
  }
}

function addPending(nonce, text, date) {
  const el = renderMessage({ user: me() ?? (state.name || "you"), text, date }, { mine: true, pending: true });
  el.dataset.nonce = nonce;
  state.pending.set(nonce, el);
  place(el, { stick: true });
  return el;
}

function submitMessage() {
  const text = ui.text.value;
  if (!text.trim()) return;
  if ([...text].length > MAX_TEXT) return showNotice(`Messages are at most ${MAX_TEXT} characters.`);
  if (state.refused || !state.client) return showNotice("Not connected: join a room first.");
  let sent;
  try {
    sent = state.client.send(text);
  } catch (err) {
    return showNotice(err.message);
  }
  addPending(sent.nonce, text, new Date().toISOString());
  ui.text.value = "";
  refreshPending();
}

/** The Retry button of a message the server refused: sends its text again, as a new message. */
function resend(el) {
  const text = el.querySelector(".text")?.textContent ?? "";
  let sent;
  try {
    sent = state.client.send(text);
  } catch (err) {
    return showNotice(err.message);
  }
  state.pending.delete(el.dataset.nonce);
  el.dataset.nonce = sent.nonce;
  state.pending.set(sent.nonce, el);
  setPendingLabel(el, "sending…");
  place(el, { stick: true });
  refreshPending();
}

function confirmPending(nonce, seq, date) {
  const el = state.pending.get(nonce);
  if (!el) return;
  state.pending.delete(nonce);
  state.retrying.delete(nonce);
  el.classList.remove("pending", "failed", "queued");
  el.querySelector(".state")?.remove();
  el.querySelector(".retry")?.remove();
  delete el.dataset.nonce;
  if (state.bySeq.has(seq)) return el.remove(); // shown already (a reload between echo and ack)
  el.dataset.seq = String(seq);
  state.bySeq.set(seq, el);
  if (date) {
    el.dataset.time = String(Date.parse(date));
    el.querySelector("time")?.replaceWith(timeEl(date));
  }
  place(el); // moves it after messages that were sent before it
}

// ---- the client's events ---------------------------------------------------

function onStatus({ status, retryInMs }) {
  if (state.refused || !STATUS_TEXT[status]) return;
  const detail = retryInMs === undefined ? "" : `next try in ${Math.ceil(retryInMs / 1000)} s`;
  setStatus(status, detail);
  refreshPending();
}

function onWelcome(f) {
  state.welcomed = true;
  if (!state.name) ui.name.placeholder = f.user;
  for (const el of state.pending.values()) {
    el.dataset.user = f.user;
    el.querySelector(".author").textContent = f.user;
  }
}

function onPresence(online) {
  state.online = online;
  renderOnline();
}

function onGap(gap) {
  if (gap.cleared) {
    const hadLog = state.bySeq.size > 0;
    clearLog();
    if (hadLog) addLine("note", "The room was restarted on the server; earlier messages are gone.");
  } else {
    const n = gap.to - gap.from + 1;
    addLine("note", `${n} message${n === 1 ? " was" : "s were"} missed while you were away: the server no longer has ${n === 1 ? "it" : "them"}.`);
  }
}

function onHistory({ messages }) {
  if (!messages.some((m) => !state.bySeq.has(m.seq))) return;
  addLine("divider", state.bySeq.size ? "while you were away" : "earlier messages");
}

function onMessage(m) {
  showMessage(m, { history: m.fromHistory });
}

function onAck({ nonce, seq }) {
  confirmPending(nonce, seq);
}

function onAnnounce(f) {
  const self = f.user === me() && f.event === "join";
  const line = addLine(`announce ${f.event}`, self ? `You joined #${f.room}` : f.text);
  line.append(timeEl(f.date));
}

function onError(e) {
  if (e.code !== "connect_failed") showNotice(`The server said: ${e.message}`);
  const el = e.nonce === undefined ? undefined : state.pending.get(e.nonce);
  if (!el) return;
  if (e.willRetry) {
    state.retrying.add(e.nonce);
    refreshPending();
  } else {
    setPendingLabel(el, "not sent", { failed: true });
  }
}

function onDisconnect({ code, reason, opened }) {
  if (code === 1008 || code === 1009) showNotice(`The server closed the connection: ${reason || `code ${code}`}.`);
  if (!opened && !state.welcomed) void checkRefusal();
  refreshPending();
}

/** The upgrade failed before we ever got in: if the server is up, it refused us (bad room or name, busy). */
async function checkRefusal() {
  if (state.checking) return;
  state.checking = true;
  const client = state.client;
  let up = false;
  try { up = (await fetch(new URL("healthz", document.baseURI), { cache: "no-store" })).ok; } catch { /* down */ }
  state.checking = false;
  if (client !== state.client || state.welcomed || !up) return; // joined again, got in, or the server is down
  client.close();
  state.refused = true;
  setStatus("error", "the server refused the connection");
  showNotice(`Could not join #${state.room}: the server refused the connection. ` +
    "Check the room name and nickname, then press Join to try again (the server may also be busy).");
}

// ---- joining ---------------------------------------------------------------

function leave() {
  for (const off of state.unsubscribe) off();
  state.unsubscribe = [];
  state.client?.close();
  state.client = null;
}

function join(room, name) {
  leave();
  Object.assign(state, { room, name, refused: false, welcomed: false, online: [] });
  state.pending.clear();
  state.retrying.clear();
  ui.log.replaceChildren();
  state.bySeq.clear();
  ui.jump.hidden = true;
  renderOnline();
  hideNotice();
  ui.roomLabel.textContent = room;
  document.title = `#${room} · ShootaWall`;
  history.replaceState(null, "", `?room=${encodeURIComponent(room)}`);

  const client = new ChatClient({
    url: new URL(".", document.baseURI).href,
    room,
    name: name || undefined,
    storage: storage(),
    storageKey: `${KEYS.client}${room}.${name}`,
    keepMessages: KEEP_MESSAGES,
    maxText: MAX_TEXT,
    beforeConnect: (info) => connectHook?.(info),
  });
  state.client = client;

  // What this browser kept of the room: the latest messages, then its own messages not yet sent.
  const kept = client.messages;
  if (kept.length) addLine("divider", "earlier messages");
  for (const m of kept) showMessage({ ...m, mine: m.user === client.user }, { history: true });
  for (const e of client.pending) {
    if (e.seq === undefined || !state.bySeq.has(e.seq)) addPending(e.nonce, e.text, new Date(e.createdAt).toISOString());
  }

  const on = (type, fn) => state.unsubscribe.push(client.on(type, fn));
  on("status", onStatus);
  on("welcome", onWelcome);
  on("presence", onPresence);
  on("gap", onGap);
  on("history", onHistory);
  on("message", onMessage);
  on("ack", onAck);
  on("announce", onAnnounce);
  on("error", onError);
  on("outbox", refreshPending);
  on("disconnect", onDisconnect);
  setStatus("connecting");
  client.connect();
  refreshPending();
}

// ---- wiring ----------------------------------------------------------------

function showFormError(message, field) {
  ui.formError.textContent = message ?? "";
  ui.formError.hidden = !message;
  for (const input of [ui.name, ui.room]) {
    if (input === field) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
  field?.focus();
}

ui.joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const room = checkRoom(ui.room.value || "lobby");
  const name = checkName(ui.name.value);
  if (room.error) return showFormError(room.error, ui.room);
  if (name.error) return showFormError(name.error, ui.name);
  showFormError(null);
  ui.room.value = room.room;
  ui.name.value = name.name;
  save(KEYS.room, room.room);
  save(KEYS.name, name.name);
  const unchanged = room.room === state.room && name.name === state.name && state.client?.connected;
  if (!unchanged) join(room.room, name.name);
  ui.text.focus();
});

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  submitMessage();
  ui.text.focus();
});

ui.text.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submitMessage();
  }
});

ui.log.addEventListener("scroll", () => { if (atBottom()) ui.jump.hidden = true; });
ui.jump.addEventListener("click", () => { scrollToBottom(); ui.log.focus(); });
ui.noticeClose.addEventListener("click", () => { hideNotice(); ui.text.focus(); });
ui.notice.addEventListener("keydown", (event) => { if (event.key === "Escape") hideNotice(); });
window.addEventListener("online", () => state.client?.retryNow());

async function start() {
  pruneStoredRooms();
  const params = new URLSearchParams(location.search);
  const room = checkRoom(params.get("room") ?? (load(KEYS.room) || "lobby"));
  const name = checkName(params.get("name") ?? load(KEYS.name));
  ui.room.value = room.room ?? params.get("room") ?? "";
  ui.name.value = name.name ?? params.get("name") ?? "";
  if (room.error || name.error) {
    ui.roomLabel.textContent = ui.room.value;
    setStatus("error", "invalid room or nickname");
    showNotice("Cannot join: fix the room name or nickname, then press Join.");
    return showFormError(room.error ?? name.error, room.error ? ui.room : ui.name);
  }
  if (params.has("room")) save(KEYS.room, room.room);
  if (params.has("name")) save(KEYS.name, name.name);
  // With sign-in on (auth.js), wait to know who we are: signed out, there is nothing to connect as.
  const auth = await /** @type {any} */ (globalThis).shootawallAuth?.catch?.(() => undefined);
  if (auth && auth.mode !== "open" && !auth.user) {
    ui.roomLabel.textContent = room.room;
    setStatus("error", "signed out");
    return;
  }
  join(room.room, name.name);
}

/** For other scripts of the page (e.g. auth.js): see the top of this file. */
export const page = {
  /** Joins a room as a name (empty: a guest name), like the Join form. */
  join(room, name = "") {
    const r = checkRoom(room);
    const n = checkName(name);
    if (r.error || n.error) throw new RangeError(r.error ?? n.error);
    ui.room.value = r.room;
    ui.name.value = n.name;
    join(r.room, n.name);
  },
  /**
   * Sets a function called before every connection attempt; it may return (or resolve to)
   * `{ query, protocols }` to add, e.g. a login token. Applies from the next connection on.
   */
  setConnectHook(fn) {
    connectHook = typeof fn === "function" ? fn : null;
  },
  /** The current ChatClient (events, outbox, status), or null. */
  get client() {
    return state.client;
  },
  get room() {
    return state.room;
  },
  get name() {
    return state.name;
  },
};

void start();
