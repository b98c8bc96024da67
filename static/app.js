// ShootaWall page: joins a room over a WebSocket, shows the chat as plain text, and reconnects by itself.

const ROOM_RULE = /^[a-z0-9_-]{1,64}$/;
const BAD_NAME_CHARS = /[\p{Cc}\u202A-\u202E\u2066-\u2069\u200E\u200F\u061C]/u; // same rule as the server
const MAX_NAME = 32;
const MAX_TEXT = 4096;
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 15_000;
const PING_EVERY_MS = 25_000;
const DEAD_AFTER_MS = 60_000;
const CHECK_EVERY_MS = 5_000;
const GROUP_WINDOW_MS = 5 * 60_000;
const KEYS = { name: "shootawall.name", room: "shootawall.room" };
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
  room: "lobby", name: "",      // what we ask the server for
  me: null,                     // the name the server gave us
  shownRoom: null, epoch: null, // the log shows this room's epoch...
  seen: new Set(), lastSeq: 0,  // ...and these seqs of it (dedupe key: room + epoch + seq)
  online: [],
  pending: new Map(),           // nonce -> { nonce, text, el, sent, failed }
  ws: null, welcomed: false, everWelcomed: false,
  attempt: 0, retryTimer: 0, pinger: 0, checker: 0, lastHeard: 0,
};

// ---- small helpers -------------------------------------------------------

/** Makes an element with a class and text; text always goes in as text, never as HTML. */
function h(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function load(key) {
  try { return localStorage.getItem(key) ?? ""; } catch { return ""; } // storage may be blocked
}

function save(key, value) {
  try { value ? localStorage.setItem(key, value) : localStorage.removeItem(key); } catch { /* ignore */ }
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

function newNonce() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
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

function clearLog() {
  ui.log.replaceChildren();
  state.seen.clear();
  state.lastSeq = 0;
  ui.jump.hidden = true;
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

function renderOnline() {
  const users = [...state.online].sort((a, b) =>
    a === state.me ? -1 : b === state.me ? 1 : a.localeCompare(b));
  ui.online.replaceChildren(...users.map((user) => {
    const li = h("li", user === state.me ? "me" : "");
    li.append(avatar(user), h("span", "who", user));
    if (user === state.me) li.append(h("span", "you", "(you)"));
    return li;
  }));
  ui.onlineCount.textContent = String(users.length);
}

// ---- own messages: pending until echo or ack -------------------------------

function setPendingState(p, label, failed = false) {
  p.failed = failed;
  p.el.classList.toggle("failed", failed);
  const tag = p.el.querySelector(".state");
  if (tag) tag.textContent = label;
  p.el.querySelector(".retry")?.remove();
  if (failed) {
    const retry = h("button", "retry", "Retry");
    retry.type = "button";
    retry.addEventListener("click", () => trySend(p));
    p.el.querySelector(".bubble").append(retry);
  }
}

function trySend(p) {
  if (state.welcomed && state.ws?.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify({ type: "message", text: p.text, nonce: p.nonce }));
    p.sent = true;
    setPendingState(p, "sending…");
  } else {
    p.sent = false;
    setPendingState(p, "waiting for connection…");
  }
}

function submitMessage() {
  const text = ui.text.value;
  if (!text.trim()) return;
  if ([...text].length > MAX_TEXT) return showNotice(`Messages are at most ${MAX_TEXT} characters.`);
  if (ui.status.dataset.state === "error") return showNotice("Not connected: join a room first.");
  const nonce = newNonce();
  const el = renderMessage({ user: state.me ?? (state.name || "you"), text, date: new Date().toISOString() },
    { mine: true, pending: true });
  const p = { nonce, text, el, sent: false, failed: false };
  state.pending.set(nonce, p);
  place(el, { stick: true });
  ui.text.value = "";
  trySend(p);
}

function confirmPending(p, seq, date) {
  state.pending.delete(p.nonce);
  p.el.classList.remove("pending", "failed");
  p.el.querySelector(".state")?.remove();
  p.el.querySelector(".retry")?.remove();
  p.el.dataset.seq = String(seq);
  if (date) {
    p.el.dataset.time = String(Date.parse(date));
    p.el.querySelector("time")?.replaceWith(timeEl(date));
  }
  state.seen.add(seq);
  state.lastSeq = Math.max(state.lastSeq, seq);
  place(p.el); // moves it after messages that were sent before it
}

// ---- frames from the server ------------------------------------------------

function onWelcome(f) {
  if (f.room !== state.shownRoom || f.epoch !== state.epoch) {
    const restarted = state.epoch !== null && f.room === state.shownRoom;
    clearLog();
    state.shownRoom = f.room;
    state.epoch = f.epoch;
    if (restarted) addLine("note", "The room was restarted on the server; earlier messages are gone.");
    for (const p of state.pending.values()) place(p.el); // unsent messages stay on screen
  }
  state.me = f.user;
  state.welcomed = state.everWelcomed = true;
  state.attempt = 0;
  state.online = [...new Set(f.online)];
  renderOnline();
  if (!state.name) ui.name.placeholder = f.user;
  for (const p of state.pending.values()) {
    p.el.dataset.user = f.user;
    p.el.querySelector(".author").textContent = f.user;
  }
  setStatus("connected");
}

function onHistory(f) {
  const before = state.lastSeq;
  const fresh = state.seen.size === 0;
  const missed = f.messages.filter((m) => !state.seen.has(m.seq));
  if (missed.length) addLine("divider", fresh ? "earlier messages" : "while you were away");
  for (const m of missed) onChat(m, true);
  // Own messages in flight when the old socket died: resend when the replay proves they never arrived.
  const covered = f.complete || (f.messages[0]?.seq ?? Infinity) <= before + 1;
  for (const p of state.pending.values()) {
    if (p.failed) continue; // the user decides with its Retry button
    if (!p.sent || covered) trySend(p);
    else setPendingState(p, "not confirmed", true);
  }
}

function onChat(m, fromHistory = false) {
  if (m.room !== state.shownRoom || state.seen.has(m.seq)) return;
  const p = m.user === state.me && m.nonce !== undefined ? state.pending.get(m.nonce) : undefined;
  if (p) return confirmPending(p, m.seq, m.date);
  state.seen.add(m.seq);
  state.lastSeq = Math.max(state.lastSeq, m.seq);
  place(renderMessage(m, { mine: m.user === state.me, history: fromHistory }));
}

function onAck(f) {
  const p = state.pending.get(f.nonce);
  if (p) confirmPending(p, f.seq);
}

function onAnnounce(f) {
  if (f.room !== state.shownRoom) return;
  if (f.event === "join" && !state.online.includes(f.user)) state.online.push(f.user);
  if (f.event === "leave") state.online = state.online.filter((u) => u !== f.user);
  renderOnline();
  const self = f.user === state.me && f.event === "join";
  const line = addLine(`announce ${f.event}`, self ? `You joined #${f.room}` : f.text);
  line.append(timeEl(f.date));
}

function onServerError(f) {
  showNotice(`The server said: ${f.message}`);
  // Frames are answered in order, so the error belongs to the oldest message still in flight.
  const p = [...state.pending.values()].find((x) => x.sent && !x.failed);
  if (p) setPendingState(p, "not sent", true);
}

function onFrame(data) {
  let f;
  try { f = JSON.parse(data); } catch { return; }
  if (!f || typeof f !== "object") return;
  switch (f.type) {
    case "welcome": return onWelcome(f);
    case "history": return onHistory(f);
    case "message": return onChat(f);
    case "announce": return onAnnounce(f);
    case "ack": return onAck(f);
    case "error": return onServerError(f);
    default: return; // "pong" and anything newer: lastHeard is already updated
  }
}

// ---- the connection --------------------------------------------------------

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = state.name ? `?name=${encodeURIComponent(state.name)}` : "";
  return `${scheme}//${location.host}/ws/${encodeURIComponent(state.room)}${query}`;
}

function connect() {
  clearTimeout(state.retryTimer);
  setStatus(state.everWelcomed || state.attempt > 0 ? "reconnecting" : "connecting");
  const ws = new WebSocket(socketUrl());
  let opened = false;
  state.ws = ws;
  state.welcomed = false;
  ws.onopen = () => {
    opened = true;
    state.lastHeard = Date.now();
    stopHeartbeat();
    state.pinger = setInterval(() => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "ping" }));
    }, PING_EVERY_MS);
    state.checker = setInterval(checkAlive, CHECK_EVERY_MS);
  };
  ws.onmessage = (event) => {
    if (ws !== state.ws) return;
    state.lastHeard = Date.now();
    onFrame(event.data);
  };
  ws.onclose = (event) => {
    if (ws === state.ws) onDisconnect(event.code, event.reason, opened);
  };
}

/** Any frame (pong included) proves the link is alive; 60 s of silence means it is dead. */
function checkAlive() {
  if (!state.ws || Date.now() - state.lastHeard <= DEAD_AFTER_MS) return;
  dropSocket(4000, "no pong");
  onDisconnect(1006, "no reply from the server", true);
}

function stopHeartbeat() {
  clearInterval(state.pinger);
  clearInterval(state.checker);
}

/** Forgets the current socket without reacting to its close. */
function dropSocket(code = 1000, reason = "") {
  clearTimeout(state.retryTimer);
  stopHeartbeat();
  const ws = state.ws;
  state.ws = null;
  state.welcomed = false;
  if (!ws) return;
  ws.onopen = ws.onmessage = ws.onclose = null;
  if (ws.readyState === WebSocket.OPEN) ws.close(code, reason);
  else if (ws.readyState === WebSocket.CONNECTING) ws.onopen = () => ws.close(code, reason);
}

function onDisconnect(code, reason, opened) {
  stopHeartbeat();
  state.ws = null;
  state.welcomed = false;
  if (code === 1008 || code === 1009) showNotice(`The server closed the connection: ${reason || `code ${code}`}.`);
  for (const p of state.pending.values()) if (!p.sent) setPendingState(p, "waiting for connection…");
  if (!opened && !state.everWelcomed) return void checkRefusal();
  scheduleReconnect();
}

/** The upgrade failed before we ever got in: if the server is up, it refused us (bad room or name, busy). */
async function checkRefusal() {
  let up = false;
  try { up = (await fetch("/healthz", { cache: "no-store" })).ok; } catch { /* server down */ }
  if (state.ws) return; // the user joined again meanwhile
  if (!up) return scheduleReconnect();
  setStatus("error", "the server refused the connection");
  showNotice(`Could not join #${state.room}: the server refused the connection. ` +
    "Check the room name and nickname, then press Join to try again (the server may also be busy).");
}

function scheduleReconnect() {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(state.attempt, 10));
  const delay = Math.round(Math.random() * ceiling); // full jitter
  state.attempt++;
  setStatus("reconnecting", `next try in ${Math.ceil(delay / 1000)} s`);
  clearTimeout(state.retryTimer);
  state.retryTimer = setTimeout(connect, delay);
}

function join(room, name) {
  dropSocket(1000, "switching room");
  Object.assign(state, { room, name, me: null, shownRoom: null, epoch: null, online: [], attempt: 0, everWelcomed: false });
  state.pending.clear();
  clearLog();
  renderOnline();
  hideNotice();
  ui.roomLabel.textContent = room;
  document.title = `#${room} · ShootaWall`;
  history.replaceState(null, "", `?room=${encodeURIComponent(room)}`);
  connect();
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
  const unchanged = room.room === state.room && name.name === state.name && state.welcomed;
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
window.addEventListener("online", () => { if (!state.ws && ui.status.dataset.state === "reconnecting") connect(); });

function start() {
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
  join(room.room, name.name);
}

start();
