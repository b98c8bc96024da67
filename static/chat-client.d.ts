// GENERATED from chat-client.js by `node src/client/build-types.mjs`: edit the JSDoc there, not this file.
// Types of the ShootaWall client library, for TypeScript (src/client/index.ts re-exports them).
/** Close codes the client reacts to (contract v1). */
export declare const CLOSE: Readonly<{
    normal: 1000;
    goingAway: 1001;
    policy: 1008;
    tooBig: 1009;
    internal: 1011;
    overloaded: 1013;
    /** Ours: the connection was silent for longer than `deadAfterMs`. */
    noReply: 4000;
}>;
/** An error the server answered for one of our messages, or a message refused before sending. */
export declare class ChatClientError extends Error {
    /** @type {string} */
    code: string;
    /** @type {string | undefined} */
    nonce: string | undefined;
    /**
     * @param {string} code
     * @param {string} message
     * @param {string} [nonce]
     */
    constructor(code: string, message: string, nonce?: string);
}
export type ChatMessage = {
    type: "message";
    room: string;
    /**
     * 1, 2, 3, ... per room and epoch, no holes.
     */
    seq: number;
    user: string;
    /**
     * ISO 8601 UTC, the server's time.
     */
    date: string;
    text: string;
    /**
     * The sender's nonce, when it gave one.
     */
    nonce?: string | number;
};
export type MessageOrigin = {
    /**
     * True when it came in the `history` frame (replay or resume), false when live.
     */
    fromHistory: boolean;
    /**
     * True when sent under the name this client has on the server.
     */
    mine: boolean;
};
export type ClientMessage = ChatMessage & MessageOrigin;
export type WelcomeFrame = {
    type: "welcome";
    room: string;
    /**
     * The name the server gave this connection: use it, not the one asked for.
     */
    user: string;
    epoch: string;
    /**
     * Last seq of the room when we joined.
     */
    seq: number;
    online: string[];
};
export type AnnounceFrame = {
    type: "announce";
    event: "join" | "leave";
    room: string;
    user: string;
    date: string;
    text: string;
};
export type ClientStatus = "idle" | "connecting" | "connected" | "reconnecting" | "closed";
export type OutboxEntry = {
    nonce: string;
    text: string;
    /**
     * When send() was called (ms since 1970, the client's clock).
     */
    createdAt: number;
    /**
     * queued: waiting for a connection (or a retry); sending: sent, answer awaited.
     */
    state: "queued" | "sending";
    /**
     * Times sent so far by this client.
     */
    attempts: number;
    /**
     * Set once its own echo was seen (the server has it); it stays until the ack.
     */
    seq?: number;
};
export type StatusEvent = {
    status: ClientStatus;
    previous: ClientStatus;
    /**
     * Reconnect attempts since the last welcome.
     */
    attempt: number;
    /**
     * With "reconnecting": the delay before the next attempt.
     */
    retryInMs?: number;
};
export type HistoryEvent = {
    /**
     * The history's messages not delivered before, oldest first (each also
     * emitted as `message` right after).
     */
    messages: ClientMessage[];
    /**
     * The server's flag: no older message of this epoch exists.
     */
    complete: boolean;
    /**
     * True when this connection continues an epoch this client already knew.
     */
    resumed: boolean;
};
export type GapEvent = {
    /**
     * epoch: the room's history was lost (new epoch, seqs
     * restart): clear what you show. rewound: same epoch, but the server is behind what we saw: the same.
     * missed: messages `from`..`to` of this epoch will never be delivered (gone from the server's retention).
     */
    reason: "epoch" | "rewound" | "missed";
    epoch: string;
    previousEpoch: string | null;
    /**
     * Our last seq before the gap.
     */
    lastSeq: number;
    from: number;
    to: number;
    /**
     * True when everything delivered so far belongs to a history that is gone.
     */
    cleared: boolean;
};
export type AckEvent = {
    nonce: string;
    seq: number;
    text: string;
};
export type ErrorEvent = {
    /**
     * The server's code (bad_request, payload_too_large, rate_limited, unavailable,
     * unauthorized, ...), or connect_failed when no connection could even be attempted.
     */
    code: string;
    message: string;
    /**
     * The outbox message it was about, when there was one.
     */
    nonce?: string;
    text?: string;
    /**
     * True: the message stays in the outbox and is sent again. False: it was
     * dropped (or there was no message).
     */
    willRetry: boolean;
    retryInMs?: number;
};
export type DisconnectEvent = {
    /**
     * The close code (1006 when the connection failed or went silent).
     */
    code: number;
    reason: string;
    /**
     * Whether the socket had opened (false: the upgrade failed or was refused).
     */
    opened: boolean;
    /**
     * Whether the server had welcomed it.
     */
    welcomed: boolean;
    /**
     * Delay before the next attempt; absent when the client was closed.
     */
    retryInMs?: number;
};
export type ChatClientEvents = {
    status: StatusEvent;
    welcome: WelcomeFrame;
    /**
     * Before the history's messages are emitted one by one as `message`.
     */
    history: HistoryEvent;
    /**
     * Each message of the room once per epoch, in seq order.
     */
    message: ClientMessage;
    announce: AnnounceFrame;
    /**
     * Who is online (one entry per user), after welcome and after each announce.
     */
    presence: string[];
    gap: GapEvent;
    /**
     * An outbox message was stored by the server and left the outbox.
     */
    ack: AckEvent;
    error: ErrorEvent;
    /**
     * The outbox changed (added, sent, acked, dropped).
     */
    outbox: OutboxEntry[];
    /**
     * A connection ended (or failed to open).
     */
    disconnect: DisconnectEvent;
};
export type WebSocketLike = {
    readyState: number;
    send: (data: string) => void;
    close: (code?: number, reason?: string) => void;
    onopen: ((event: any) => void) | null;
    onmessage: ((event: {
        data: unknown;
    }) => void) | null;
    onclose: ((event: {
        code?: number;
        reason?: string;
    }) => void) | null;
    onerror: ((event: any) => void) | null;
};
export type WebSocketConstructorLike = new (url: string, protocols?: string | string[]) => WebSocketLike;
export type StorageLike = {
    getItem: (key: string) => string | null;
    setItem: (key: string, value: string) => void;
    removeItem: (key: string) => void;
};
export type Timers = {
    now: () => number;
    setTimeout: (fn: () => void, ms: number) => unknown;
    clearTimeout: (handle: unknown) => void;
};
export type ConnectExtras = {
    query?: Record<string, string | number>;
    protocols?: string | string[];
};
export type ChatClientOptions = {
    /**
     * The server's base URL (http, https, ws or wss; a path prefix is kept).
     * Default: location.href in a page.
     */
    url?: string | URL;
    /**
     * Default "lobby".
     */
    room?: string;
    /**
     * Nickname to ask for. Without it the server makes up a guest name, which the
     * client keeps for its later connections (and in storage).
     */
    name?: string;
    /**
     * Default: the global one (browsers, Node 22+, Deno, Bun).
     */
    WebSocket?: WebSocketConstructorLike;
    /**
     * Keeps the outbox, last seq, epoch and name (and `keepMessages`
     * messages) across reloads and restarts.
     */
    storage?: StorageLike;
    /**
     * Key in `storage`. Default "shootawall.client:<host>/<room>/<name>".
     */
    storageKey?: string;
    /**
     * Reconnect delays: full jitter under min(maxMs, initialMs * 2^attempt) (defaults 500 and 15000),
     * reset by each welcome; after close 1008 at least policyMs (30000), after 1013 at least overloadedMs
     * (5000), up to twice that.
     */
    backoff?: {
        initialMs?: number;
        maxMs?: number;
        policyMs?: number;
        overloadedMs?: number;
    };
    /**
     * Pause before
     * sending again after `unavailable` (1000) or `rate_limited` (2000), doubling per failure up to maxMs (30000).
     */
    retry?: {
        unavailableMs?: number;
        rateLimitedMs?: number;
        maxMs?: number;
    };
    /**
     * Ping period (0: never). Default 25000.
     */
    pingIntervalMs?: number;
    /**
     * A connection silent this long is replaced (0: never). Default 60000.
     */
    deadAfterMs?: number;
    /**
     * How often silence is checked. Default 5000.
     */
    checkEveryMs?: number;
    /**
     * Messages sent but not yet answered, at most. Default 10.
     */
    maxInFlight?: number;
    /**
     * Longest text send() accepts, in code points. Default 4096.
     */
    maxText?: number;
    /**
     * Latest messages kept in `messages` (and in storage). Default 0.
     */
    keepMessages?: number;
    /**
     * Called before each connection
     * attempt; may add query parameters or subprotocols (e.g. a token).
     */
    beforeConnect?: (info: {
        attempt: number;
        room: string;
        url: string;
    }) => ConnectExtras | void | Promise<ConnectExtras | void>;
    /**
     * For servers with AUTH=jwt: returns a current
     * token. It is called before each connection (the token then travels as the subprotocol
     * `bearer.<token>` after `shootawall.v1`) and again `refreshBeforeMs` before the token expires, to
     * send the fresh one over the open connection, so the server does not close it with 1008.
     */
    getToken?: () => string | Promise<string>;
    /**
     * How long before a token's `exp` it is refreshed. Default 30000.
     */
    refreshBeforeMs?: number;
    /**
     * For tests: clock and timers.
     */
    timers?: Timers;
    /**
     * For tests: randomness of the jitter.
     */
    random?: () => number;
    /**
     * For tests: nonces.
     */
    nonce?: () => string;
};
/**
 * One room of a ShootaWall server, over one WebSocket at a time: see the top of this file.
 */
export declare class ChatClient {
    #private;
    /**
     * A client for one room; nothing happens until `connect()` (except reading `storage`).
     * @param {ChatClientOptions} opts
     */
    constructor(opts: ChatClientOptions);
    /** The room's name. @returns {string} */
    get room(): string;
    /** idle (before connect), connecting, connected, reconnecting or closed. @returns {ClientStatus} */
    get status(): ClientStatus;
    /** True between a welcome and the end of that connection. @returns {boolean} */
    get connected(): boolean;
    /** The name the server gave us (null before the first welcome, unless stored). @returns {string | null} */
    get user(): string | null;
    /** The epoch of the room's history we know (null before the first welcome, unless stored). @returns {string | null} */
    get epoch(): string | null;
    /** The last seq delivered (or accounted for by a gap) in this epoch. @returns {number} */
    get lastSeq(): number;
    /** Who is online, one entry per user. @returns {string[]} */
    get online(): string[];
    /** The outbox: messages not yet acknowledged, oldest first. @returns {OutboxEntry[]} */
    get pending(): OutboxEntry[];
    /** The latest `keepMessages` messages of this epoch (restored from storage at start), oldest first. @returns {ChatMessage[]} */
    get messages(): ChatMessage[];
    /** The URL the next connection will use (without what `beforeConnect` adds). */
    get url(): string;
    /**
     * Listens to an event (see ChatClientEvents); returns the function that stops listening.
     * @template {keyof ChatClientEvents} K
     * @param {K} type
     * @param {(payload: ChatClientEvents[K]) => void} fn
     * @returns {() => void}
     */
    on<K extends keyof ChatClientEvents>(type: K, fn: (payload: ChatClientEvents[K]) => void): () => void;
    /**
     * Stops listening.
     * @template {keyof ChatClientEvents} K
     * @param {K} type
     * @param {(payload: ChatClientEvents[K]) => void} fn
     */
    off<K extends keyof ChatClientEvents>(type: K, fn: (payload: ChatClientEvents[K]) => void): void;
    /** Starts connecting (and reconnecting until `close()`). Does nothing when already started. */
    connect(): void;
    /** Connects now instead of waiting for the backoff delay (e.g. when the network comes back). */
    retryNow(): void;
    /**
     * Closes the connection and stops reconnecting. The outbox is kept (and stored): `connect()` again,
     * or a new client with the same storage, sends it.
     */
    close(): void;
    /**
     * Queues a chat message and sends it as soon as the connection allows. Throws a RangeError for an
     * empty or too long text. `acked` resolves with the message's seq once the server stored it, and
     * rejects with a ChatClientError when the server refuses it for good (bad_request, payload_too_large).
     * @param {string} text
     * @returns {{ nonce: string, acked: Promise<number> }}
     */
    send(text: string): {
        nonce: string;
        acked: Promise<number>;
    };
    /**
     * Sends a fresh token on the open connection (`{"type":"auth"}`, for servers with AUTH=jwt) so it
     * lasts longer. Resolves with the new expiry (seconds since 1970) on `auth_ok`; rejects with a
     * ChatClientError (unauthorized, bad_request, closed, not_connected) otherwise. For new connections,
     * give the token through `beforeConnect`.
     * @param {string} token
     * @returns {Promise<number>}
     */
    authenticate(token: string): Promise<number>;
}
