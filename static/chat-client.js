// @ts-check
// ShootaWall client library: one room over one WHATWG WebSocket, and nothing lost.
//
// - Reconnects by itself: exponential backoff with full jitter (reset by each welcome), longer after
//   close 1008 (policy) and 1013 (overloaded); pings, and replaces a connection silent for too long.
// - Resumes: reconnects with `since=<last seq>&epoch=<epoch>` and delivers each room message exactly
//   once per epoch, in seq order (duplicates dropped by seq); reports a `gap` when messages were missed
//   or the room's history was lost (epoch changed).
// - Outbox: every message sent carries a nonce and stays in the outbox until the server acks it; after
//   each reconnect the outbox is sent again in order with the same nonces (the server acks a repeated
//   nonce without broadcasting it again, so each message is delivered exactly once).
// - Optional storage (localStorage or anything with getItem/setItem/removeItem) keeps the outbox, the
//   last seq and epoch, and optionally the latest messages, across page reloads and process restarts.
//
// A plain ES module with no build step and no DOM use beyond WebSocket, timers and crypto: the page
// imports it as it is, and Node 22+, Deno and Bun use it with their global WebSocket (on Node 20 pass
// `WebSocket` from the `ws` package). Types: chat-client.d.ts (re-exported by src/client/index.ts).
// Wire contract: docs/protocol.md.

const CONNECTING = 0;
const OPEN = 1;
const STORAGE_VERSION = 1;
const MAX_NONCE = 128;

/** Close codes the client reacts to (contract v1). */
export const CLOSE = Object.freeze({
  normal: 1000,
  goingAway: 1001,
  policy: 1008,
  tooBig: 1009,
  internal: 1011,
  overloaded: 1013,
  /** Ours: the connection was silent for longer than `deadAfterMs`. */
  noReply: 4000,
});

/** Error codes after which a message is kept in the outbox and sent again later. */
const RETRYABLE = new Set(["unavailable", "rate_limited"]);

/**
 * Which of our frames each error code (without a nonce) can answer. An unknown code is not pinned on
 * any message: it is only reported.
 * @type {Record<string, InFlight["kind"][]>}
 */
const ANSWERS = {
  rate_limited: ["ping", "message", "auth"],
  bad_request: ["message", "auth"],
  payload_too_large: ["message"],
  unavailable: ["message"],
  unauthorized: ["auth"],
};

const DEFAULTS = {
  backoff: { initialMs: 500, maxMs: 15_000, policyMs: 30_000, overloadedMs: 5_000 },
  retry: { unavailableMs: 1_000, rateLimitedMs: 2_000, maxMs: 30_000 },
  pingIntervalMs: 25_000,
  deadAfterMs: 60_000,
  checkEveryMs: 5_000,
  maxInFlight: 10,
  maxText: 4096,
  keepMessages: 0,
};

/** An error the server answered for one of our messages, or a message refused before sending. */
export class ChatClientError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {string} [nonce]
   */
  constructor(code, message, nonce) {
    super(message);
    this.name = "ChatClientError";
    /** @type {string} */
    this.code = code;
    /** @type {string | undefined} */
    this.nonce = nonce;
  }
}

/** @returns {string} a random nonce (UUID where available). */
function randomNonce() {
  const c = /** @type {any} */ (globalThis).crypto;
  if (c?.randomUUID) return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c?.getRandomValues) c.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** An event handler that does nothing. */
const ignore = () => {};

/** @param {unknown} x @returns {x is Record<string, any>} */
const isObject = (x) => typeof x === "object" && x !== null && !Array.isArray(x);
/** @param {unknown} n @returns {n is number} */
const isSeq = (n) => Number.isSafeInteger(n) && /** @type {number} */ (n) >= 0;

/** @param {unknown} m @returns {m is ChatMessage} */
function isChatMessage(m) {
  return isObject(m) && isSeq(m.seq) && m.seq > 0 && typeof m.user === "string" && typeof m.text === "string";
}

/** @param {unknown} e @returns {e is { nonce: string, text: string, createdAt: number, seq?: unknown, epoch?: unknown }} */
function isStoredEntry(e) {
  return isObject(e) && typeof e.nonce === "string" && e.nonce.length > 0 && e.nonce.length <= MAX_NONCE &&
    typeof e.text === "string" && typeof e.createdAt === "number";
}

// ---- types -------------------------------------------------------------------------------------
// Written here once, as JSDoc; chat-client.d.ts is generated from this file (see src/client/index.ts).

/**
 * A chat message as the server sends it (wire contract v1).
 * @typedef {object} ChatMessage
 * @property {"message"} type
 * @property {string} room
 * @property {number} seq 1, 2, 3, ... per room and epoch, no holes.
 * @property {string} user
 * @property {string} date ISO 8601 UTC, the server's time.
 * @property {string} text
 * @property {string | number} [nonce] The sender's nonce, when it gave one.
 */

/**
 * Where a delivered message came from.
 * @typedef {object} MessageOrigin
 * @property {boolean} fromHistory True when it came in the `history` frame (replay or resume), false when live.
 * @property {boolean} mine True when sent under the name this client has on the server.
 */

/**
 * A message as the client delivers it.
 * @typedef {ChatMessage & MessageOrigin} ClientMessage
 */

/**
 * @typedef {object} WelcomeFrame
 * @property {"welcome"} type
 * @property {string} room
 * @property {string} user The name the server gave this connection: use it, not the one asked for.
 * @property {string} epoch
 * @property {number} seq Last seq of the room when we joined.
 * @property {string[]} online
 */

/**
 * @typedef {object} AnnounceFrame
 * @property {"announce"} type
 * @property {"join" | "leave"} event
 * @property {string} room
 * @property {string} user
 * @property {string} date
 * @property {string} text
 */

/** @typedef {"idle" | "connecting" | "connected" | "reconnecting" | "closed"} ClientStatus */

/**
 * A message of the outbox: not yet acknowledged by the server.
 * @typedef {object} OutboxEntry
 * @property {string} nonce
 * @property {string} text
 * @property {number} createdAt When send() was called (ms since 1970, the client's clock).
 * @property {"queued" | "sending"} state queued: waiting for a connection (or a retry); sending: sent, answer awaited.
 * @property {number} attempts Times sent so far by this client.
 * @property {number} [seq] Set once its own echo was seen (the server has it); it stays until the ack.
 */

/**
 * @typedef {object} StatusEvent
 * @property {ClientStatus} status
 * @property {ClientStatus} previous
 * @property {number} attempt Reconnect attempts since the last welcome.
 * @property {number} [retryInMs] With "reconnecting": the delay before the next attempt.
 */

/**
 * @typedef {object} HistoryEvent
 * @property {ClientMessage[]} messages The history's messages not delivered before, oldest first (each also
 *   emitted as `message` right after).
 * @property {boolean} complete The server's flag: no older message of this epoch exists.
 * @property {boolean} resumed True when this connection continues an epoch this client already knew.
 */

/**
 * @typedef {object} GapEvent
 * @property {"epoch" | "rewound" | "missed"} reason epoch: the room's history was lost (new epoch, seqs
 *   restart): clear what you show. rewound: same epoch, but the server is behind what we saw: the same.
 *   missed: messages `from`..`to` of this epoch will never be delivered (gone from the server's retention).
 * @property {string} epoch
 * @property {string | null} previousEpoch
 * @property {number} lastSeq Our last seq before the gap.
 * @property {number} from
 * @property {number} to
 * @property {boolean} cleared True when everything delivered so far belongs to a history that is gone.
 */

/**
 * @typedef {object} AckEvent
 * @property {string} nonce
 * @property {number} seq
 * @property {string} text
 */

/**
 * @typedef {object} ErrorEvent
 * @property {string} code The server's code (bad_request, payload_too_large, rate_limited, unavailable,
 *   unauthorized, ...), or connect_failed when no connection could even be attempted.
 * @property {string} message
 * @property {string} [nonce] The outbox message it was about, when there was one.
 * @property {string} [text]
 * @property {boolean} willRetry True: the message stays in the outbox and is sent again. False: it was
 *   dropped (or there was no message).
 * @property {number} [retryInMs]
 */

/**
 * @typedef {object} DisconnectEvent
 * @property {number} code The close code (1006 when the connection failed or went silent).
 * @property {string} reason
 * @property {boolean} opened Whether the socket had opened (false: the upgrade failed or was refused).
 * @property {boolean} welcomed Whether the server had welcomed it.
 * @property {number} [retryInMs] Delay before the next attempt; absent when the client was closed.
 */

/**
 * What each event of `on()` carries.
 * @typedef {object} ChatClientEvents
 * @property {StatusEvent} status
 * @property {WelcomeFrame} welcome
 * @property {HistoryEvent} history Before the history's messages are emitted one by one as `message`.
 * @property {ClientMessage} message Each message of the room once per epoch, in seq order.
 * @property {AnnounceFrame} announce
 * @property {string[]} presence Who is online (one entry per user), after welcome and after each announce.
 * @property {GapEvent} gap
 * @property {AckEvent} ack An outbox message was stored by the server and left the outbox.
 * @property {ErrorEvent} error
 * @property {OutboxEntry[]} outbox The outbox changed (added, sent, acked, dropped).
 * @property {DisconnectEvent} disconnect A connection ended (or failed to open).
 */

/**
 * The slice of the WHATWG WebSocket the client uses.
 * @typedef {object} WebSocketLike
 * @property {number} readyState
 * @property {(data: string) => void} send
 * @property {(code?: number, reason?: string) => void} close
 * @property {((event: any) => void) | null} onopen
 * @property {((event: { data: unknown }) => void) | null} onmessage
 * @property {((event: { code?: number, reason?: string }) => void) | null} onclose
 * @property {((event: any) => void) | null} onerror
 */

/** @typedef {new (url: string, protocols?: string | string[]) => WebSocketLike} WebSocketConstructorLike */

/**
 * localStorage, or anything with the same three methods.
 * @typedef {object} StorageLike
 * @property {(key: string) => string | null} getItem
 * @property {(key: string, value: string) => void} setItem
 * @property {(key: string) => void} removeItem
 */

/**
 * @typedef {object} Timers
 * @property {() => number} now
 * @property {(fn: () => void, ms: number) => unknown} setTimeout
 * @property {(handle: unknown) => void} clearTimeout
 */

/**
 * What `beforeConnect` may add to a connection (e.g. a login token).
 * @typedef {object} ConnectExtras
 * @property {Record<string, string | number>} [query]
 * @property {string | string[]} [protocols]
 */

/**
 * @typedef {object} ChatClientOptions
 * @property {string | URL} [url] The server's base URL (http, https, ws or wss; a path prefix is kept).
 *   Default: location.href in a page.
 * @property {string} [room] Default "lobby".
 * @property {string} [name] Nickname to ask for. Without it the server makes up a guest name, which the
 *   client keeps for its later connections (and in storage).
 * @property {WebSocketConstructorLike} [WebSocket] Default: the global one (browsers, Node 22+, Deno, Bun).
 * @property {StorageLike} [storage] Keeps the outbox, last seq, epoch and name (and `keepMessages`
 *   messages) across reloads and restarts.
 * @property {string} [storageKey] Key in `storage`. Default "shootawall.client:<host>/<room>/<name>".
 * @property {{ initialMs?: number, maxMs?: number, policyMs?: number, overloadedMs?: number }} [backoff]
 *   Reconnect delays: full jitter under min(maxMs, initialMs * 2^attempt) (defaults 500 and 15000),
 *   reset by each welcome; after close 1008 at least policyMs (30000), after 1013 at least overloadedMs
 *   (5000), up to twice that.
 * @property {{ unavailableMs?: number, rateLimitedMs?: number, maxMs?: number }} [retry] Pause before
 *   sending again after `unavailable` (1000) or `rate_limited` (2000), doubling per failure up to maxMs (30000).
 * @property {number} [pingIntervalMs] Ping period (0: never). Default 25000.
 * @property {number} [deadAfterMs] A connection silent this long is replaced (0: never). Default 60000.
 * @property {number} [checkEveryMs] How often silence is checked. Default 5000.
 * @property {number} [maxInFlight] Messages sent but not yet answered, at most. Default 10.
 * @property {number} [maxText] Longest text send() accepts, in code points. Default 4096.
 * @property {number} [keepMessages] Latest messages kept in `messages` (and in storage). Default 0.
 * @property {(info: { attempt: number, room: string, url: string }) =>
 *   ConnectExtras | void | Promise<ConnectExtras | void>} [beforeConnect] Called before each connection
 *   attempt; may add query parameters or subprotocols (e.g. a token).
 * @property {() => string | Promise<string>} [getToken] For servers with AUTH=jwt: returns a current
 *   token. It is called before each connection (the token then travels as the subprotocol
 *   `bearer.<token>` after `shootawall.v1`) and again `refreshBeforeMs` before the token expires, to
 *   send the fresh one over the open connection, so the server does not close it with 1008.
 * @property {number} [refreshBeforeMs] How long before a token's `exp` it is refreshed. Default 30000.
 * @property {Timers} [timers] For tests: clock and timers.
 * @property {() => number} [random] For tests: randomness of the jitter.
 * @property {() => string} [nonce] For tests: nonces.
 */

// Internal types (left out of chat-client.d.ts by src/client/build-types.mjs).
/**
 * @typedef {{ nonce: string, text: string, createdAt: number, state: "queued" | "sending",
 *   attempts: number, seq?: number, epoch?: string }} Entry
 * @typedef {{ kind: "ping" } | { kind: "message", nonce: string }
 *   | { kind: "auth", resolve: (exp: number) => void, reject: (err: Error) => void }} InFlight
 * @typedef {"retry" | "ping" | "check" | "sendRetry" | "refresh"} TimerName
 */

/**
 * The `exp` claim of a JWT (seconds since 1970), read without verifying it (the server verifies);
 * 0 when the token is not a JWT or has no `exp`.
 * @param {string} token
 */
function tokenExp(token) {
  try {
    const part = token.split(".")[1] ?? "";
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
    const exp = JSON.parse(json).exp;
    return typeof exp === "number" && Number.isFinite(exp) ? exp : 0;
  } catch {
    return 0;
  }
}

/**
 * One room of a ShootaWall server, over one WebSocket at a time: see the top of this file.
 */
export class ChatClient {
  /** @type {Required<Pick<ChatClientOptions, "pingIntervalMs" | "deadAfterMs" | "checkEveryMs" | "maxInFlight" | "maxText" | "keepMessages">> & { backoff: typeof DEFAULTS.backoff, retry: typeof DEFAULTS.retry }} */
  #o;
  /** @type {ChatClientOptions} */
  #opts;
  /** @type {URL} */
  #base;
  /** @type {WebSocketConstructorLike} */
  #WS;
  /** @type {Timers} */
  #t;
  /** @type {() => number} */
  #random;
  /** @type {() => string} */
  #newNonce;
  /** @type {StorageLike | undefined} */
  #storage;
  /** @type {string} */
  #key;
  /** @type {Map<string, Set<(payload: any) => void>>} */
  #listeners = new Map();

  /** @type {ClientStatus} */
  #status = "idle";
  /** @type {WebSocketLike | null} */
  #ws = null;
  #connectToken = 0;
  /** The `exp` (seconds) of the token the current connection carries, when `getToken` is used. */
  #tokenExp = 0;
  #welcomed = false;
  #historyDone = false;
  #welcomeSeq = 0;
  /** True when this connection continues the epoch we already knew (so seqs tell what we missed). */
  #resuming = false;
  #everConnected = false;
  #closedByUser = true;
  /** Consecutive connections closed between welcome and history (a resume too big to deliver?). */
  #resumeFailures = 0;

  /** @type {string | null} */
  #user = null;
  /** @type {string[]} */
  #online = [];
  /** @type {string | null} */
  #epoch = null;
  #lastSeq = 0;
  /** @type {ChatMessage[]} */
  #messages = [];

  /** @type {Entry[]} */
  #outbox = [];
  /** Nonces this client has held: storage entries of other tabs are the ones not in here. */
  #known = new Set();
  /** @type {Map<string, { resolve: (seq: number) => void, reject: (err: Error) => void }>} */
  #waiters = new Map();
  /** Frames sent on the current socket still waiting for their answer, oldest first. @type {InFlight[]} */
  #inflight = [];

  #attempt = 0;
  /** @type {Map<TimerName, unknown>} */
  #timers = new Map();
  #sendFailures = 0;
  #lastHeard = 0;
  #dirty = false;

  /**
   * A client for one room; nothing happens until `connect()` (except reading `storage`).
   * @param {ChatClientOptions} opts
   */
  constructor(opts) {
    if (!isObject(opts)) throw new TypeError("ChatClient: options are required");
    this.#opts = opts;
    const WS = opts.WebSocket ?? /** @type {any} */ (globalThis).WebSocket;
    if (typeof WS !== "function") {
      throw new TypeError("ChatClient: no WebSocket here; pass options.WebSocket (e.g. the ws package's)");
    }
    this.#WS = WS;
    const base = opts.url ?? /** @type {any} */ (globalThis).location?.href;
    if (!base) throw new TypeError("ChatClient: options.url is required");
    this.#base = new URL(String(base));
    if (!["http:", "https:", "ws:", "wss:"].includes(this.#base.protocol)) {
      throw new TypeError(`ChatClient: unsupported URL scheme ${this.#base.protocol}`);
    }
    if (opts.room !== undefined && (typeof opts.room !== "string" || opts.room === "")) {
      throw new TypeError("ChatClient: options.room must be a non-empty string");
    }
    this.#o = {
      pingIntervalMs: opts.pingIntervalMs ?? DEFAULTS.pingIntervalMs,
      deadAfterMs: opts.deadAfterMs ?? DEFAULTS.deadAfterMs,
      checkEveryMs: opts.checkEveryMs ?? DEFAULTS.checkEveryMs,
      maxInFlight: Math.max(1, opts.maxInFlight ?? DEFAULTS.maxInFlight),
      maxText: opts.maxText ?? DEFAULTS.maxText,
      keepMessages: Math.max(0, opts.keepMessages ?? DEFAULTS.keepMessages),
      backoff: { ...DEFAULTS.backoff, ...opts.backoff },
      retry: { ...DEFAULTS.retry, ...opts.retry },
    };
    this.#t = opts.timers ?? {
      now: () => Date.now(),
      setTimeout: (fn, ms) => setTimeout(fn, ms),
      clearTimeout: (h) => clearTimeout(/** @type {any} */ (h)),
    };
    this.#random = opts.random ?? Math.random;
    this.#newNonce = opts.nonce ?? randomNonce;
    this.#storage = opts.storage ?? undefined;
    this.#key = opts.storageKey ?? `shootawall.client:${this.#base.host}/${this.room}/${opts.name ?? ""}`;
    this.#load();
  }

  // ---- public state ---------------------------------------------------------------------------

  /** The room's name. @returns {string} */
  get room() {
    return this.#opts.room ?? "lobby";
  }

  /** idle (before connect), connecting, connected, reconnecting or closed. @returns {ClientStatus} */
  get status() {
    return this.#status;
  }

  /** True between a welcome and the end of that connection. @returns {boolean} */
  get connected() {
    return this.#welcomed;
  }

  /** The name the server gave us (null before the first welcome, unless stored). @returns {string | null} */
  get user() {
    return this.#user;
  }

  /** The epoch of the room's history we know (null before the first welcome, unless stored). @returns {string | null} */
  get epoch() {
    return this.#epoch;
  }

  /** The last seq delivered (or accounted for by a gap) in this epoch. @returns {number} */
  get lastSeq() {
    return this.#lastSeq;
  }

  /** Who is online, one entry per user. @returns {string[]} */
  get online() {
    return [...this.#online];
  }

  /** The outbox: messages not yet acknowledged, oldest first. @returns {OutboxEntry[]} */
  get pending() {
    return this.#outbox.map((e) => this.#snapshot(e));
  }

  /** The latest `keepMessages` messages of this epoch (restored from storage at start), oldest first. @returns {ChatMessage[]} */
  get messages() {
    return this.#messages.map((m) => ({ ...m }));
  }

  /** The URL the next connection will use (without what `beforeConnect` adds). */
  get url() {
    return this.#url(undefined);
  }

  // ---- events ----------------------------------------------------------------------------------

  /**
   * Listens to an event (see ChatClientEvents); returns the function that stops listening.
   * @template {keyof ChatClientEvents} K
   * @param {K} type
   * @param {(payload: ChatClientEvents[K]) => void} fn
   * @returns {() => void}
   */
  on(type, fn) {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, set = new Set());
    set.add(fn);
    return () => this.off(type, fn);
  }

  /**
   * Stops listening.
   * @template {keyof ChatClientEvents} K
   * @param {K} type
   * @param {(payload: ChatClientEvents[K]) => void} fn
   */
  off(type, fn) {
    this.#listeners.get(type)?.delete(fn);
  }

  /**
   * @template {keyof ChatClientEvents} K
   * @param {K} type
   * @param {ChatClientEvents[K]} payload
   */
  #emit(type, payload) {
    const set = this.#listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(payload);
      } catch (err) {
        // A listener's bug must not break the connection: report it like an uncaught error.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  // ---- connecting ------------------------------------------------------------------------------

  /** Starts connecting (and reconnecting until `close()`). Does nothing when already started. */
  connect() {
    if (!this.#closedByUser) return;
    this.#closedByUser = false;
    this.#attempt = 0;
    this.#open();
  }

  /** Connects now instead of waiting for the backoff delay (e.g. when the network comes back). */
  retryNow() {
    if (this.#closedByUser || this.#ws || !this.#timers.has("retry")) return;
    this.#open();
  }

  /**
   * Closes the connection and stops reconnecting. The outbox is kept (and stored): `connect()` again,
   * or a new client with the same storage, sends it.
   */
  close() {
    this.#closedByUser = true;
    this.#connectToken++;
    this.#clearTimer("retry");
    this.#clearTimer("sendRetry");
    this.#dropSocket(CLOSE.normal, "bye");
    this.#socketGone();
    this.#setStatus("closed");
    this.#persist();
  }

  #open() {
    this.#clearTimer("retry");
    const token = ++this.#connectToken;
    this.#setStatus(this.#everConnected || this.#attempt > 0 ? "reconnecting" : "connecting");
    /** @param {unknown} err */
    const failed = (err) => {
      if (token !== this.#connectToken) return;
      this.#emit("error", {
        code: "connect_failed",
        message: `Cannot connect: ${err instanceof Error ? err.message : String(err)}`,
        willRetry: true,
      });
      this.#scheduleReconnect(1006, "", false);
    };
    /** @param {ConnectExtras | void | undefined} extras */
    const go = (extras) => {
      if (token !== this.#connectToken || this.#closedByUser) return;
      try {
        this.#attach(new this.#WS(this.#url(extras ?? undefined), extras?.protocols));
      } catch (err) {
        failed(err);
      }
    };
    let extras;
    try {
      extras = this.#opts.beforeConnect?.({ attempt: this.#attempt, room: this.room, url: this.#url(undefined) });
      if (this.#opts.getToken) extras = this.#withToken(extras);
    } catch (err) {
      return failed(err);
    }
    if (extras && typeof (/** @type {any} */ (extras)).then === "function") {
      /** @type {Promise<ConnectExtras | void>} */ (extras).then(go, failed);
    } else go(/** @type {ConnectExtras | void} */ (extras));
  }

  /**
   * Adds `getToken()`'s token to what `beforeConnect` gave, as the `shootawall.v1, bearer.<token>`
   * subprotocols.
   * @param {ConnectExtras | void | Promise<ConnectExtras | void>} extras
   * @returns {Promise<ConnectExtras>}
   */
  async #withToken(extras) {
    const given = (await extras) ?? {};
    const token = await /** @type {() => string | Promise<string>} */ (this.#opts.getToken)();
    this.#tokenExp = tokenExp(token);
    const more = given.protocols === undefined ? [] : Array.isArray(given.protocols) ? given.protocols : [given.protocols];
    return { ...given, protocols: ["shootawall.v1", `bearer.${token}`, ...more.filter((p) => p !== "shootawall.v1")] };
  }

  /** Schedules sending a fresh token `refreshBeforeMs` before the current one expires. */
  #scheduleRefresh() {
    this.#clearTimer("refresh");
    if (!this.#opts.getToken || !this.#tokenExp) return;
    const before = this.#opts.refreshBeforeMs ?? 30_000;
    const wait = Math.max(1000, this.#tokenExp * 1000 - before - this.#t.now());
    this.#setTimer("refresh", () => void this.#refresh(), wait);
  }

  async #refresh() {
    try {
      const token = await /** @type {() => string | Promise<string>} */ (this.#opts.getToken)();
      this.#tokenExp = await this.authenticate(token);
      this.#scheduleRefresh();
    } catch (err) {
      this.#emit("error", { code: "refresh_failed", message: `Cannot refresh the token: ${err instanceof Error ? err.message : String(err)}`, willRetry: true });
      // Try again a little later, while the old token still holds.
      this.#setTimer("refresh", () => void this.#refresh(), 5000);
    }
  }

  /** @param {ConnectExtras | undefined} extras */
  #url(extras) {
    const u = new URL(this.#base.href);
    u.protocol = u.protocol === "https:" || u.protocol === "wss:" ? "wss:" : "ws:";
    u.pathname = `${u.pathname.replace(/\/+$/, "")}/ws/${encodeURIComponent(this.room)}`;
    u.hash = "";
    /** @type {[string, string][]} */
    const query = [];
    const name = this.#opts.name || this.#user; // a guest keeps the name the server gave it
    if (name) query.push(["name", name]);
    if (this.#epoch !== null && this.#resumeFailures < 2) {
      query.push(["since", String(this.#lastSeq)], ["epoch", this.#epoch]);
    }
    for (const [k, v] of Object.entries(extras?.query ?? {})) query.push([k, String(v)]);
    u.search = query.length ? `?${query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&")}` : "";
    return u.href;
  }

  /** @param {WebSocketLike} ws */
  #attach(ws) {
    this.#ws = ws;
    this.#welcomed = false;
    this.#historyDone = false;
    this.#inflight = [];
    let opened = false;
    ws.onopen = () => {
      if (ws !== this.#ws) return;
      opened = true;
      this.#lastHeard = this.#t.now();
      this.#startHeartbeat();
    };
    ws.onmessage = (event) => {
      if (ws !== this.#ws) return;
      this.#lastHeard = this.#t.now();
      this.#onData(event.data);
    };
    ws.onclose = (event) => {
      if (ws !== this.#ws) return;
      this.#onSocketClosed(event.code ?? 1006, event.reason ?? "", opened);
    };
    ws.onerror = ignore; // a close event follows
  }

  /**
   * Forgets the current socket without reacting to its close, and closes it.
   * @param {number} [code]
   * @param {string} [reason]
   */
  #dropSocket(code = 1000, reason = "") {
    const ws = this.#ws;
    this.#ws = null;
    this.#stopHeartbeat();
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    // Keep an error handler: the ws package on Node throws an error event nobody handles, and a
    // socket dropped while connecting can still fail (connection refused) after this.
    ws.onerror = ignore;
    try {
      if (ws.readyState === OPEN) ws.close(code, reason);
      // Closing a socket that is still connecting makes browsers log an error: close it once open.
      else if (ws.readyState === CONNECTING) ws.onopen = () => ws.close(code, reason);
    } catch { /* already gone */ }
  }

  /** What every lost connection resets: in-flight messages go back to the queue. */
  #socketGone() {
    const wasWelcomed = this.#welcomed;
    this.#welcomed = false;
    this.#historyDone = false;
    for (const x of this.#inflight) {
      if (x.kind === "auth") x.reject(new ChatClientError("closed", "The connection closed before the server answered"));
    }
    this.#inflight = [];
    let changed = false;
    for (const e of this.#outbox) {
      if (e.state === "sending") {
        e.state = "queued";
        changed = true;
      }
    }
    if (changed) this.#emitOutbox();
    return wasWelcomed;
  }

  /**
   * @param {number} code
   * @param {string} reason
   * @param {boolean} opened
   */
  #onSocketClosed(code, reason, opened) {
    this.#stopHeartbeat();
    this.#ws = null;
    if (this.#welcomed && !this.#historyDone) this.#resumeFailures++;
    // 1009: one of our frames was too big; sending it again would only repeat this. Drop the largest.
    if (code === CLOSE.tooBig) this.#dropLargestInFlight();
    const welcomed = this.#socketGone();
    this.#scheduleReconnect(code, reason, opened, welcomed);
    this.#persist();
  }

  #dropLargestInFlight() {
    /** @type {Entry | undefined} */
    let largest;
    for (const f of this.#inflight) {
      if (f.kind !== "message") continue;
      const e = this.#outbox.find((x) => x.nonce === f.nonce);
      if (e && (!largest || e.text.length > largest.text.length)) largest = e;
    }
    if (largest) this.#fail(largest, "payload_too_large", "The server closed the connection: message too big (1009)");
  }

  /**
   * @param {number} code
   * @param {string} reason
   * @param {boolean} opened
   * @param {boolean} [welcomed]
   */
  #scheduleReconnect(code, reason, opened, welcomed = false) {
    const delay = this.#nextDelay(code, reason);
    if (!this.#closedByUser) {
      this.#setTimer("retry", () => this.#open(), delay);
      this.#setStatus("reconnecting", delay);
    }
    this.#emit("disconnect", { code, reason, opened, welcomed, retryInMs: this.#closedByUser ? undefined : delay });
  }

  /**
   * Full jitter over an exponential ceiling; close codes 1008 and 1013 impose a longer floor, except a
   * 1008 for an expired credential ("token expired", "session expired"): `beforeConnect` may bring a
   * fresh one at once.
   * @param {number} code
   * @param {string} reason
   */
  #nextDelay(code, reason) {
    const b = this.#o.backoff;
    const ceiling = Math.min(b.maxMs, b.initialMs * 2 ** Math.min(this.#attempt, 30));
    let delay = this.#random() * ceiling;
    const expired = /\bexpired\b/i.test(reason);
    if (code === CLOSE.policy && !expired) delay = Math.max(delay, b.policyMs * (1 + this.#random()));
    if (code === CLOSE.overloaded) delay = Math.max(delay, b.overloadedMs * (1 + this.#random()));
    this.#attempt++;
    return Math.round(delay);
  }

  /**
   * @param {ClientStatus} status
   * @param {number} [retryInMs]
   */
  #setStatus(status, retryInMs) {
    const previous = this.#status;
    if (previous === status && retryInMs === undefined) return;
    this.#status = status;
    this.#emit("status", { status, previous, attempt: this.#attempt, retryInMs });
  }

  // ---- heartbeat -------------------------------------------------------------------------------

  #startHeartbeat() {
    this.#stopHeartbeat();
    const ping = () => {
      this.#setTimer("ping", ping, this.#o.pingIntervalMs);
      const ws = this.#ws;
      if (ws?.readyState !== OPEN) return;
      try {
        ws.send('{"type":"ping"}');
        this.#inflight.push({ kind: "ping" });
      } catch { /* the close event follows */ }
    };
    const check = () => {
      this.#setTimer("check", check, this.#o.checkEveryMs);
      if (this.#ws && this.#t.now() - this.#lastHeard > this.#o.deadAfterMs) {
        // Any frame (pong included) proves the link is alive; this much silence means it is dead.
        this.#dropSocket(CLOSE.noReply, "no reply");
        this.#onSocketClosed(1006, "no reply from the server", true);
      }
    };
    if (this.#o.pingIntervalMs > 0) this.#setTimer("ping", ping, this.#o.pingIntervalMs);
    if (this.#o.deadAfterMs > 0) this.#setTimer("check", check, this.#o.checkEveryMs);
  }

  #stopHeartbeat() {
    this.#clearTimer("ping");
    this.#clearTimer("check");
    this.#clearTimer("refresh");
  }

  /** @param {TimerName} which */
  #clearTimer(which) {
    const handle = this.#timers.get(which);
    if (handle !== undefined) this.#t.clearTimeout(handle);
    this.#timers.delete(which);
  }

  /** @param {TimerName} which @param {() => void} fn @param {number} ms */
  #setTimer(which, fn, ms) {
    this.#clearTimer(which);
    this.#timers.set(which, this.#t.setTimeout(() => {
      this.#timers.delete(which);
      fn();
    }, ms));
  }

  // ---- frames from the server ------------------------------------------------------------------

  /** @param {unknown} data */
  #onData(data) {
    let text = data;
    if (typeof text !== "string") {
      if (text instanceof ArrayBuffer || ArrayBuffer.isView(text)) {
        try {
          text = new TextDecoder().decode(/** @type {ArrayBuffer} */ (text));
        } catch {
          return;
        }
      } else return;
    }
    let f;
    try {
      f = JSON.parse(/** @type {string} */ (text));
    } catch {
      return;
    }
    if (!isObject(f)) return;
    switch (f.type) {
      case "welcome":
        this.#onWelcome(f);
        this.#scheduleRefresh();
        break;
      case "history":
        this.#onHistory(f);
        break;
      case "message":
        if (isChatMessage(f)) this.#deliver(/** @type {ChatMessage} */ (f), false);
        break;
      case "announce":
        this.#onAnnounce(f);
        break;
      case "ack":
        this.#onAck(f);
        break;
      case "error":
        this.#onError(f);
        break;
      case "auth_ok": {
        const i = this.#inflight.findIndex((x) => x.kind === "auth");
        const frame = i >= 0 ? this.#inflight.splice(i, 1)[0] : undefined;
        if (frame?.kind === "auth") frame.resolve(typeof f.exp === "number" ? f.exp : 0);
        break;
      }
      case "pong": {
        const i = this.#inflight.findIndex((x) => x.kind === "ping");
        if (i >= 0) this.#inflight.splice(i, 1);
        break;
      }
      default:
        break; // newer frame types: ignored, as the contract asks
    }
    if (this.#dirty) this.#persist();
  }

  /** @param {Record<string, any>} f */
  #onWelcome(f) {
    const epoch = typeof f.epoch === "string" ? f.epoch : null;
    const seq = isSeq(f.seq) ? f.seq : 0;
    const previous = this.#epoch;
    // Same epoch but fewer messages than we saw: the server lost its tail; treat it as a new history.
    const rewound = previous !== null && previous === epoch && seq < this.#lastSeq;
    if (previous !== null && epoch !== null && (previous !== epoch || rewound)) {
      const lost = this.#lastSeq;
      this.#epoch = epoch;
      this.#lastSeq = 0;
      this.#messages = [];
      this.#settleDeliveredIn(previous);
      this.#dirty = true;
      this.#emit("gap", {
        reason: rewound ? "rewound" : "epoch",
        epoch,
        previousEpoch: previous,
        lastSeq: lost,
        from: 1,
        to: seq,
        cleared: true,
      });
    } else if (previous === null && epoch !== null) {
      this.#epoch = epoch;
      this.#dirty = true;
    }
    this.#resuming = previous !== null && previous === epoch && !rewound;
    if (typeof f.user === "string" && f.user !== this.#user) {
      this.#user = f.user;
      this.#dirty = true;
    }
    this.#online = Array.isArray(f.online) ? [...new Set(f.online.filter((u) => typeof u === "string"))] : [];
    this.#welcomeSeq = seq;
    this.#welcomed = true;
    this.#historyDone = false;
    this.#everConnected = true;
    this.#attempt = 0;
    this.#clearTimer("sendRetry"); // a new connection is the next retry
    this.#emit("welcome", /** @type {any} */ (f));
    this.#emit("presence", [...this.#online]);
    this.#setStatus("connected");
  }

  /**
   * Outbox entries already seen delivered in an epoch that is gone are done: their history went with it.
   * @param {string} epoch
   */
  #settleDeliveredIn(epoch) {
    for (const e of [...this.#outbox]) {
      if (e.seq !== undefined && e.epoch === epoch) this.#complete(e, e.seq);
    }
  }

  /** @param {Record<string, any>} f */
  #onHistory(f) {
    const all = Array.isArray(f.messages) ? f.messages.filter(isChatMessage) : [];
    all.sort((a, b) => a.seq - b.seq);
    const fresh = all.filter((m) => m.seq > this.#lastSeq);
    const resumed = this.#resuming;
    // Seqs have no holes: anything between our last seq and the first one replayed was missed.
    const firstNew = fresh[0]?.seq ?? this.#welcomeSeq + 1;
    if (resumed && firstNew > this.#lastSeq + 1) {
      this.#emit("gap", {
        reason: "missed",
        epoch: /** @type {string} */ (this.#epoch),
        previousEpoch: this.#epoch,
        lastSeq: this.#lastSeq,
        from: this.#lastSeq + 1,
        to: firstNew - 1,
        cleared: false,
      });
    }
    this.#emit("history", {
      messages: fresh.map((m) => this.#view(m, true)),
      complete: f.complete === true,
      resumed,
    });
    for (const m of fresh) this.#deliver(m, true);
    if (this.#welcomeSeq > this.#lastSeq) {
      this.#lastSeq = this.#welcomeSeq; // the rest of the epoch is accounted for (reported as a gap)
      this.#dirty = true;
    }
    this.#historyDone = true;
    this.#resumeFailures = 0;
    this.#flush();
  }

  /**
   * @param {ChatMessage} m
   * @param {boolean} fromHistory
   * @returns {ClientMessage}
   */
  #view(m, fromHistory) {
    return { ...m, fromHistory, mine: m.user === this.#user };
  }

  /**
   * Delivers a message once: anything at or below the last seq of this epoch was delivered already.
   * @param {ChatMessage} m
   * @param {boolean} fromHistory
   */
  #deliver(m, fromHistory) {
    if (m.seq <= this.#lastSeq) return;
    if (!fromHistory && this.#historyDone && m.seq > this.#lastSeq + 1) {
      this.#emit("gap", {
        reason: "missed",
        epoch: /** @type {string} */ (this.#epoch),
        previousEpoch: this.#epoch,
        lastSeq: this.#lastSeq,
        from: this.#lastSeq + 1,
        to: m.seq - 1,
        cleared: false,
      });
    }
    this.#lastSeq = m.seq;
    this.#dirty = true;
    if (this.#o.keepMessages > 0) {
      this.#messages.push(m);
      if (this.#messages.length > this.#o.keepMessages) this.#messages.splice(0, this.#messages.length - this.#o.keepMessages);
    }
    const view = this.#view(m, fromHistory);
    const entry = view.mine && m.nonce !== undefined ? this.#outbox.find((e) => e.nonce === String(m.nonce)) : undefined;
    if (entry && entry.seq === undefined) {
      entry.seq = m.seq;
      entry.epoch = this.#epoch ?? undefined;
    }
    this.#emit("message", view);
    // Replayed history is read from the server's store: the message is there, no need to send it again.
    if (entry && fromHistory) this.#complete(entry, m.seq);
  }

  /** @param {Record<string, any>} f */
  #onAnnounce(f) {
    if (typeof f.user !== "string") return;
    if (f.event === "join" && !this.#online.includes(f.user)) this.#online.push(f.user);
    if (f.event === "leave") this.#online = this.#online.filter((u) => u !== f.user);
    this.#emit("announce", /** @type {any} */ (f));
    this.#emit("presence", [...this.#online]);
  }

  /** @param {Record<string, any>} f */
  #onAck(f) {
    if (!isSeq(f.seq) || f.nonce === undefined) return;
    const nonce = String(f.nonce);
    const i = this.#inflight.findIndex((x) => x.kind === "message" && x.nonce === nonce);
    if (i >= 0) {
      // Frames are answered in order: pings before this message whose pongs never came are stale.
      this.#inflight = this.#inflight.filter((x, j) => j > i || (j < i && x.kind !== "ping"));
    }
    const entry = this.#outbox.find((e) => e.nonce === nonce);
    this.#sendFailures = 0;
    if (entry) this.#complete(entry, f.seq);
    this.#flush();
  }

  /** Removes a delivered entry from the outbox. @param {Entry} entry @param {number} seq */
  #complete(entry, seq) {
    const i = this.#outbox.indexOf(entry);
    if (i < 0) return;
    this.#outbox.splice(i, 1);
    this.#dirty = true;
    const waiter = this.#waiters.get(entry.nonce);
    this.#waiters.delete(entry.nonce);
    waiter?.resolve(seq);
    this.#emit("ack", { nonce: entry.nonce, seq, text: entry.text });
    this.#emitOutbox();
  }

  /** Drops an entry that can never succeed and reports it. @param {Entry} entry @param {string} code @param {string} message */
  #fail(entry, code, message) {
    const i = this.#outbox.indexOf(entry);
    if (i < 0) return;
    this.#outbox.splice(i, 1);
    this.#dirty = true;
    const waiter = this.#waiters.get(entry.nonce);
    this.#waiters.delete(entry.nonce);
    waiter?.reject(new ChatClientError(code, message, entry.nonce));
    this.#emit("error", { code, message, nonce: entry.nonce, text: entry.text, willRetry: false });
    this.#emitOutbox();
  }

  /** @param {Record<string, any>} f */
  #onError(f) {
    const code = typeof f.code === "string" ? f.code : "unknown";
    const message = typeof f.message === "string" ? f.message : code;
    // Which frame is this about? An error with a nonce says so. Otherwise: the server answers a
    // connection's frames in order with one ack, pong or error each, so it is the oldest unanswered
    // frame that can get this code (only rate_limited can answer a ping; auth answers come later).
    let i = -1;
    if (f.nonce !== undefined) {
      i = this.#inflight.findIndex((x) => x.kind === "message" && x.nonce === String(f.nonce));
    } else {
      const kinds = ANSWERS[code] ?? [];
      i = this.#inflight.findIndex((x) => kinds.includes(x.kind));
    }
    const frame = i >= 0 ? this.#inflight.splice(i, 1)[0] : undefined;
    if (frame?.kind === "auth") {
      frame.reject(new ChatClientError(code, message));
      this.#emit("error", { code, message, willRetry: false });
      return;
    }
    const nonce = f.nonce !== undefined ? String(f.nonce) : frame?.kind === "message" ? frame.nonce : undefined;
    const entry = nonce === undefined ? undefined : this.#outbox.find((e) => e.nonce === nonce);
    if (!entry) {
      this.#emit("error", { code, message, willRetry: false });
      return;
    }
    if (!RETRYABLE.has(code)) return this.#fail(entry, code, message);
    entry.state = "queued";
    const retryInMs = this.#pauseSending(code);
    this.#emit("error", { code, message, nonce: entry.nonce, text: entry.text, willRetry: true, retryInMs });
    this.#emitOutbox();
  }

  /** Stops sending for a while after unavailable or rate_limited, growing with each failure. @param {string} code */
  #pauseSending(code) {
    const r = this.#o.retry;
    const base = code === "rate_limited" ? r.rateLimitedMs : r.unavailableMs;
    const ceiling = Math.min(r.maxMs, base * 2 ** Math.min(this.#sendFailures, 30));
    this.#sendFailures++;
    const delay = Math.round(ceiling / 2 + this.#random() * ceiling / 2); // equal jitter: never hammer
    this.#setTimer("sendRetry", () => this.#flush(), delay);
    return delay;
  }

  // ---- sending ---------------------------------------------------------------------------------

  /**
   * Queues a chat message and sends it as soon as the connection allows. Throws a RangeError for an
   * empty or too long text. `acked` resolves with the message's seq once the server stored it, and
   * rejects with a ChatClientError when the server refuses it for good (bad_request, payload_too_large).
   * @param {string} text
   * @returns {{ nonce: string, acked: Promise<number> }}
   */
  send(text) {
    if (typeof text !== "string" || text.trim() === "") throw new RangeError("ChatClient.send: empty message");
    if ([...text].length > this.#o.maxText) {
      throw new RangeError(`ChatClient.send: messages are at most ${this.#o.maxText} characters`);
    }
    const nonce = String(this.#newNonce()).slice(0, MAX_NONCE);
    /** @type {Entry} */
    const entry = { nonce, text, createdAt: this.#t.now(), state: "queued", attempts: 0 };
    /** @type {Promise<number>} */
    const acked = new Promise((resolve, reject) => this.#waiters.set(nonce, { resolve, reject }));
    acked.catch(() => {}); // a refusal is also reported as an "error" event: never an unhandled rejection
    this.#outbox.push(entry);
    this.#known.add(nonce);
    this.#persist(); // before sending: a reload right now must not lose it
    this.#emitOutbox();
    this.#flush();
    return { nonce, acked };
  }

  /**
   * Sends a fresh token on the open connection (`{"type":"auth"}`, for servers with AUTH=jwt) so it
   * lasts longer. Resolves with the new expiry (seconds since 1970) on `auth_ok`; rejects with a
   * ChatClientError (unauthorized, bad_request, closed, not_connected) otherwise. For new connections,
   * give the token through `beforeConnect`.
   * @param {string} token
   * @returns {Promise<number>}
   */
  authenticate(token) {
    const ws = this.#ws;
    if (!ws || !this.#welcomed || ws.readyState !== OPEN) {
      return Promise.reject(new ChatClientError("not_connected", "Not connected"));
    }
    return new Promise((resolve, reject) => {
      try {
        ws.send(JSON.stringify({ type: "auth", token }));
      } catch (err) {
        return reject(new ChatClientError("closed", String(err)));
      }
      this.#inflight.push({ kind: "auth", resolve, reject });
    });
  }

  /** Sends queued entries, oldest first, keeping at most `maxInFlight` unanswered. */
  #flush() {
    const ws = this.#ws;
    if (!ws || !this.#welcomed || !this.#historyDone || ws.readyState !== OPEN) return;
    if (this.#timers.has("sendRetry")) return; // paused after unavailable or rate_limited
    let inFlight = this.#inflight.filter((x) => x.kind === "message").length;
    let changed = false;
    for (const e of this.#outbox) {
      if (inFlight >= this.#o.maxInFlight) break;
      if (e.state !== "queued") continue;
      try {
        ws.send(JSON.stringify({ type: "message", text: e.text, nonce: e.nonce }));
      } catch {
        break; // the close event follows
      }
      e.state = "sending";
      e.attempts++;
      this.#inflight.push({ kind: "message", nonce: e.nonce });
      inFlight++;
      changed = true;
    }
    if (changed) this.#emitOutbox();
  }

  /** @param {Entry} e @returns {OutboxEntry} */
  #snapshot(e) {
    /** @type {OutboxEntry} */
    const out = { nonce: e.nonce, text: e.text, createdAt: e.createdAt, state: e.state, attempts: e.attempts };
    if (e.seq !== undefined) out.seq = e.seq;
    return out;
  }

  #emitOutbox() {
    this.#emit("outbox", this.#outbox.map((e) => this.#snapshot(e)));
  }

  // ---- storage ---------------------------------------------------------------------------------

  #load() {
    const s = this.#read();
    if (!s) return;
    if (typeof s.epoch === "string") this.#epoch = s.epoch;
    if (this.#epoch !== null && isSeq(s.lastSeq)) this.#lastSeq = s.lastSeq;
    if (typeof s.user === "string" && s.user) this.#user = s.user;
    if (Array.isArray(s.outbox)) {
      for (const e of s.outbox) {
        if (!isStoredEntry(e) || this.#known.has(e.nonce)) continue;
        /** @type {Entry} */
        const entry = { nonce: e.nonce, text: e.text, createdAt: e.createdAt, state: "queued", attempts: 0 };
        if (isSeq(e.seq) && typeof e.epoch === "string") {
          entry.seq = e.seq;
          entry.epoch = e.epoch;
        }
        this.#outbox.push(entry);
        this.#known.add(e.nonce);
      }
    }
    if (this.#o.keepMessages > 0 && Array.isArray(s.messages) && this.#epoch !== null) {
      this.#messages = s.messages.filter(isChatMessage).filter((m) => m.seq <= this.#lastSeq)
        .slice(-this.#o.keepMessages);
    }
  }

  /** @returns {Record<string, any> | undefined} */
  #read() {
    if (!this.#storage) return undefined;
    try {
      const raw = this.#storage.getItem(this.#key);
      const s = raw ? JSON.parse(raw) : undefined;
      return isObject(s) && s.v === STORAGE_VERSION ? s : undefined;
    } catch {
      return undefined;
    }
  }

  #persist() {
    this.#dirty = false;
    if (!this.#storage) return;
    // Another tab with the same key may have queued messages of its own: keep them in storage.
    const stored = this.#read();
    const others = Array.isArray(stored?.outbox)
      ? stored.outbox.filter((e) => isStoredEntry(e) && !this.#known.has(e.nonce))
      : [];
    const outbox = [
      ...this.#outbox.map((e) => {
        /** @type {Record<string, unknown>} */
        const out = { nonce: e.nonce, text: e.text, createdAt: e.createdAt };
        if (e.seq !== undefined) Object.assign(out, { seq: e.seq, epoch: e.epoch });
        return out;
      }),
      ...others,
    ].sort((a, b) => /** @type {number} */ (a.createdAt) - /** @type {number} */ (b.createdAt));
    const state = {
      v: STORAGE_VERSION,
      epoch: this.#epoch,
      lastSeq: this.#lastSeq,
      user: this.#user,
      savedAt: this.#t.now(),
      outbox,
      messages: this.#o.keepMessages > 0 ? this.#messages : undefined,
    };
    try {
      this.#storage.setItem(this.#key, JSON.stringify(state));
    } catch {
      // Full (or blocked): the outbox matters more than the cached messages.
      try {
        this.#storage.setItem(this.#key, JSON.stringify({ ...state, messages: undefined }));
      } catch { /* nothing more we can do */ }
    }
  }
}
