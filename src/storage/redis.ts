// Redis store: one chat across many instances. History, seq and epoch per room, shared nonce
// de-duplication, fan-out (pub/sub, gaps filled from the room's stream) and presence across instances.
//
// Keys per room (PREFIX = REDIS_PREFIX):
//   PREFIX room:NAME:meta    hash   epoch, seq (the last seq given)
//   PREFIX room:NAME:log     stream one entry per message, id "SEQ-0", field m = JSON [user, date, text, nonce?]
//   PREFIX room:NAME:n:KEY   string a stored (user, nonce)'s seq, expiring after the nonce window
//   PREFIX room:NAME:pe      zset   presence entries "USER\nINSTANCE", scored by their expiry (ms)
//   PREFIX room:NAME:pc      hash   USER -> how many instances list them
// Channel PREFIX room:NAME carries lines: "e EPOCH", "m SEQ BODY" (messages), "a [EVENT,MS,USER]" (announces).
// Every write is one Lua script, so seq assignment, de-duplication and publishing are atomic and in
// the same order for every subscriber.

import { Redis, type RedisOptions } from "ioredis";
import { redactUrl } from "../config.ts";
import { type Logger, TIMED_OUT, within } from "../core/deps.ts";
import { NONCE_WINDOW_MS } from "../core/nonces.ts";
import type { AnnounceFrame, ChatMessage, Nonce } from "../protocol/messages.ts";
import {
  type Draft,
  type SharedAuthState,
  type SharedLog,
  type SharedSink,
  type Store,
  type StoreHealth,
  StoreUnavailableError,
  type StoredRoom,
  type Submitted,
} from "./store.ts";

const NOW_MS = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/** Lua scripts, run with EVALSHA (ioredis falls back to EVAL after a Redis restart emptied its cache). */
const SCRIPTS = {
  // KEYS meta, log, pc; ARGV newEpoch, retain -> {epoch, seq, entries newest first, online users}
  swOpen: `
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
end
local seq = redis.call('HGET', KEYS[1], 'seq')
return {epoch, seq, redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', tonumber(ARGV[2])), redis.call('HKEYS', KEYS[3])}`,
  // KEYS meta, log, nonce keys...; ARGV epoch, knownSeq, retain, nonceTtlS, channel, n, then per draft
  // (index of its nonce key in KEYS or 0, body) -> seqs (negative: a duplicate of that seq), or
  // {'reset', epoch} / {'behind', seq} when the room's history is not the one this instance knows.
  swSubmit: `
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if epoch ~= ARGV[1] then return {'reset', epoch or ''} end
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq'))
if seq < tonumber(ARGV[2]) then return {'behind', tostring(seq)} end
local out = {}
local lines = {'e ' .. ARGV[1]}
for i = 1, tonumber(ARGV[6]) do
  local k = tonumber(ARGV[5 + 2 * i])
  local body = ARGV[6 + 2 * i]
  local prev = false
  if k > 0 then prev = redis.call('GET', KEYS[k]) end
  if prev then
    out[i] = -tonumber(prev)
  else
    seq = seq + 1
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'm', body)
    if k > 0 then redis.call('SET', KEYS[k], seq, 'EX', ARGV[4]) end
    out[i] = seq
    lines[#lines + 1] = 'm ' .. seq .. ' ' .. body
  end
end
if #lines > 1 then
  redis.call('HSET', KEYS[1], 'seq', seq)
  redis.call('PUBLISH', ARGV[5], table.concat(lines, '\\n'))
end
return out`,
  // KEYS meta, log; ARGV epoch, retain, channel, then (seq, body) pairs with consecutive seqs.
  swAppend: `
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return redis.error_reply('ERR room epoch changed') end
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq'))
for i = 4, #ARGV, 2 do
  if tonumber(ARGV[i]) ~= seq + 1 + (i - 4) / 2 then return redis.error_reply('ERR seq out of order') end
end
local lines = {'e ' .. ARGV[1]}
for i = 4, #ARGV, 2 do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], ARGV[i] .. '-0', 'm', ARGV[i + 1])
  lines[#lines + 1] = 'm ' .. ARGV[i] .. ' ' .. ARGV[i + 1]
  seq = tonumber(ARGV[i])
end
redis.call('HSET', KEYS[1], 'seq', seq)
redis.call('PUBLISH', ARGV[3], table.concat(lines, '\\n'))
return seq`,
  // KEYS meta, log; ARGV observedEpoch, newEpoch, knownSeq: a new epoch whose seqs continue after
  // every seq anyone saw (the history lost acknowledged messages; their seqs are never given again).
  swRotate: `
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if epoch and epoch ~= ARGV[1] then return epoch end
local seq = math.max(tonumber(redis.call('HGET', KEYS[1], 'seq') or '0'), tonumber(ARGV[3]))
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'epoch', ARGV[2], 'seq', seq)
return ARGV[2]`,
  // KEYS pe, pc; ARGV member, user, ttlMs, channel: adds or refreshes an entry; announces a join
  // when it is the user's first entry on any instance.
  swArrive: `
${NOW_MS}
local added = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
if added == 1 and redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then
  redis.call('PUBLISH', ARGV[4], 'a ["join",' .. string.format('%d', now) .. ',' .. cjson.encode(ARGV[2]) .. ']')
end
return added`,
  // KEYS pe, pc; ARGV member, user, channel: removes an entry; announces a leave when it was the last.
  swDepart: `
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
  ${NOW_MS}
  redis.call('PUBLISH', ARGV[3], 'a ["leave",' .. string.format('%d', now) .. ',' .. cjson.encode(ARGV[2]) .. ']')
end
return 1`,
  // KEYS pe, pc; ARGV channel: removes expired entries (a crashed instance's), announcing leaves.
  swSweep: `
${NOW_MS}
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 500)
local lines = {}
for _, member in ipairs(gone) do
  redis.call('ZREM', KEYS[1], member)
  local user = string.match(member, '^(.*)\\n[^\\n]*$')
  if user and redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
    redis.call('HDEL', KEYS[2], user)
    lines[#lines + 1] = 'a ["leave",' .. string.format('%d', now) .. ',' .. cjson.encode(user) .. ']'
  end
end
if #lines > 0 then redis.call('PUBLISH', ARGV[1], table.concat(lines, '\\n')) end
return #gone`,
  // KEYS pe; ARGV graceMs, members...: entries expire after the grace period unless refreshed.
  swExpireSoon: `
${NOW_MS}
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
return #ARGV - 1`,
} as const;
type ScriptName = keyof typeof SCRIPTS;

export interface RedisStoreOptions {
  /** redis://[user:password@]host:port[/db] or rediss:// */
  url: string;
  /** Prepended to every key and channel. */
  prefix: string;
  /** Messages kept per room. */
  retain: number;
  /** How long a presence entry lives without a refresh (a crashed instance's users stay listed this long). */
  presenceTtlMs: number;
  /** A user's leave is announced this long after their last connection on a stopping instance. */
  presenceGraceMs: number;
  log: Logger;
  newEpoch: () => string;
  /** A write Redis has not answered after this long is answered `unavailable` (default 3000). */
  commandTimeoutMs?: number;
  /** Startup waits this long for Redis before serving degraded (default 5000). */
  connectTimeoutMs?: number;
  /** This instance's name in presence entries (random by default). */
  instance?: string;
}

/** Messages fetched per request when filling a gap or catching up. */
const FETCH_COUNT = 1000;
/** A stored message not seen on the channel after this long is fetched from the stream. */
const EXPECT_MS = 250;
/** Lines held while a gap is being filled; past this they are dropped and fetched again. */
const BACKLOG_MAX = 10_000;

function encodeBody(d: Draft | ChatMessage): string {
  return JSON.stringify(d.nonce === undefined ? [d.user, d.date, d.text] : [d.user, d.date, d.text, d.nonce]);
}

function decodeMessage(room: string, seq: number, body: string): ChatMessage | undefined {
  try {
    const [user, date, text, nonce] = JSON.parse(body) as [string, string, string, Nonce?];
    const m: ChatMessage = { type: "message", room, seq, user, date, text };
    if (nonce !== undefined) m.nonce = nonce;
    return m;
  } catch {
    return undefined;
  }
}

function announceFrame(room: string, json: string): AnnounceFrame | undefined {
  try {
    const [event, ms, user] = JSON.parse(json) as ["join" | "leave", number, string];
    if ((event !== "join" && event !== "leave") || typeof user !== "string") return undefined;
    return {
      type: "announce",
      event,
      room,
      user,
      date: new Date(ms).toISOString(),
      text: event === "join" ? `${user} connected` : `${user} disconnected`,
    };
  } catch {
    return undefined;
  }
}

function nonceKey(nonce: Nonce, user: string): string {
  return `${typeof nonce === "number" ? "n" : "s"}${nonce}\u0000${user}`;
}

type StreamEntry = [id: string, fields: string[]];

/** `p`, or a StoreUnavailableError after `ms` (a subscribe waits for a reconnect otherwise). */
async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  const r = await within(p, ms);
  if (r === TIMED_OUT) throw new StoreUnavailableError(`Redis did not answer ${what} in ${ms} ms`);
  return r;
}

/** An error's message, for the reason of an `unavailable`. */
const reasonOf = (err: unknown): string => String((err as Error).message ?? err);

export class RedisStore implements Store {
  readonly kind = "redis";
  readonly instance: string;
  #opts: RedisStoreOptions;
  #cmd: Redis;
  #sub: Redis;
  #up = { cmd: false, sub: false };
  #wasUp = false;
  /** When Redis was last seen going away (or when the store was made, until it first connects). */
  #downSince = Date.now();
  /** Open logs by channel name. */
  #logs = new Map<string, RedisRoomLog>();
  #heartbeat?: ReturnType<typeof setInterval>;
  #closed = false;
  #authChannel: string;
  #commandTimeoutMs: number;
  #revokeListeners: ((sid: string, expS: number) => void)[] = [];

  private constructor(opts: RedisStoreOptions) {
    this.#opts = opts;
    this.#commandTimeoutMs = opts.commandTimeoutMs ?? 3000;
    this.instance = opts.instance ?? crypto.randomUUID().slice(0, 13);
    const common: RedisOptions = {
      connectionName: `shootawall:${this.instance}`,
      // Exponential backoff with jitter, at most 3 s between attempts; never gives up.
      retryStrategy: (times) => Math.min(3000, 100 * 2 ** Math.min(times, 5)) * (0.5 + Math.random() / 2),
      connectTimeout: 3000,
      lazyConnect: true,
    };
    // Writes fail at once while Redis is away (the client hears `unavailable`) and are never
    // re-sent behind its back after a reconnect: a retry is the client's, with its nonce.
    this.#cmd = new Redis(opts.url, {
      ...common,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: this.#commandTimeoutMs,
      enableAutoPipelining: true,
    });
    this.#sub = new Redis(opts.url, { ...common, autoResubscribe: true, maxRetriesPerRequest: null });
    for (const script of Object.keys(SCRIPTS) as ScriptName[]) this.#cmd.defineCommand(script, { lua: SCRIPTS[script] });
    this.#watch(this.#cmd, "cmd");
    this.#watch(this.#sub, "sub");
    this.#authChannel = this.#authKey("revoked");
    this.#sub.on("message", (channel: string, payload: string) => {
      if (channel === this.#authChannel) this.#revoked(payload);
      else this.#logs.get(channel)?.receive(payload);
    });
  }

  /** Connects (waiting up to connectTimeoutMs; past it the store starts degraded and keeps trying). */
  static async connect(opts: RedisStoreOptions): Promise<RedisStore> {
    const store = new RedisStore(opts);
    const wait = opts.connectTimeoutMs ?? 5000;
    await within(Promise.allSettled([store.#cmd.connect(), store.#sub.connect()]), wait);
    if (!store.#ready) opts.log.warn("redis_unreachable", { url: redactUrl(opts.url), note: "serving degraded; retrying" });
    const every = Math.max(200, Math.floor(opts.presenceTtlMs / 3));
    store.#heartbeat = setInterval(() => store.#refresh(), every);
    return store;
  }

  get #ready(): boolean {
    return this.#up.cmd && this.#up.sub;
  }

  health(): StoreHealth {
    return {
      ok: this.#ready,
      detail: {
        redis: this.#ready ? "up" : "down",
        ...(this.#ready ? {} : { redis_down_s: Math.round((Date.now() - this.#downSince) / 1000) }),
        instance: this.instance,
      },
    };
  }

  #watch(client: Redis, which: "cmd" | "sub"): void {
    let lastError = "";
    client.on("ready", () => {
      this.#up[which] = true;
      if (this.#ready) void this.#onUp();
    });
    client.on("close", () => {
      if (!this.#up[which]) return;
      this.#up[which] = false;
      if (this.#wasUp) {
        this.#wasUp = false;
        this.#downSince = Date.now();
        if (!this.#closed) this.#opts.log.warn("redis_down", { url: redactUrl(this.#opts.url) });
      }
    });
    client.on("error", (err: Error) => {
      // Logged once per kind of failure, not on every reconnect attempt.
      const message = String(err.message ?? err);
      if (message !== lastError && !this.#closed) this.#opts.log.warn("redis_error", { client: which, error: message });
      lastError = message;
    });
  }

  /** Both connections are up (again): resubscribe, catch every room up, restore presence. */
  async #onUp(): Promise<void> {
    if (this.#wasUp) return;
    this.#wasUp = true;
    this.#opts.log.info("redis_up", { url: redactUrl(this.#opts.url), instance: this.instance });
    const channels = [...this.#logs.keys(), ...(this.#revokeListeners.length > 0 ? [this.#authChannel] : [])];
    if (channels.length === 0) return;
    try {
      await this.#sub.subscribe(...channels);
    } catch (err) {
      this.#opts.log.warn("redis_resubscribe_failed", { error: String(err) });
    }
    for (const log of this.#logs.values()) log.recover();
    void this.#loadRevoked();
  }

  /** Tickets and logouts for every instance. */
  sharedAuth(): SharedAuthState {
    const key = (k: string) => this.#authKey(k);
    const unavailable = (err: unknown) => new StoreUnavailableError(`Redis: ${reasonOf(err)}`);
    return {
      putTicket: async (k, value, ttlMs) => {
        await this.#cmd.set(key(`ticket:${k}`), value, "PX", ttlMs).catch((err) => Promise.reject(unavailable(err)));
      },
      takeTicket: async (k) => {
        const value = await this.#cmd.getdel(key(`ticket:${k}`)).catch((err) => Promise.reject(unavailable(err)));
        return value ?? undefined;
      },
      revoke: async (sid, expS) => {
        await this.#cmd.multi()
          .zremrangebyscore(key("revoked"), "-inf", Math.floor(Date.now() / 1000))
          .zadd(key("revoked"), expS, sid)
          .publish(this.#authChannel, `${sid} ${expS}`)
          .exec()
          .then((replies) => {
            const failed = replies?.find(([err]) => err);
            if (!replies || failed) throw failed?.[0] ?? new Error("transaction aborted");
          })
          .catch((err) => Promise.reject(unavailable(err)));
      },
      onRevoke: async (cb) => {
        this.#revokeListeners.push(cb);
        if (!this.#ready) throw unavailable("Redis is unreachable");
        // Subscribed first, then the recorded ones read: no logout falls in between.
        await this.#subscribe(this.#authChannel);
        if (!await this.#loadRevoked()) throw unavailable("cannot read the recorded logouts");
      },
    };
  }

  /** Subscribes, waiting at most the command timeout (else it would wait for a reconnect). */
  async #subscribe(channel: string): Promise<void> {
    await withTimeout(this.#sub.subscribe(channel), this.#commandTimeoutMs, "subscribe");
  }

  /** A sign-in key (tickets, the revoked set); the logout channel has the revoked set's name. */
  #authKey(k: string): string {
    return `${this.#opts.prefix}auth:${k}`;
  }

  #revoked(payload: string): void {
    const [sid, exp] = payload.split(" ");
    if (!sid || !exp) return;
    for (const cb of this.#revokeListeners) cb(sid, Number(exp));
  }

  /** Logouts made while this instance was away (or before it started); false when unreadable. */
  async #loadRevoked(): Promise<boolean> {
    if (this.#revokeListeners.length === 0 || !this.#ready) return false;
    try {
      const flat = await this.#cmd.zrangebyscore(this.#authKey("revoked"), Math.floor(Date.now() / 1000), "+inf", "WITHSCORES");
      for (let i = 0; i + 1 < flat.length; i += 2) {
        for (const cb of this.#revokeListeners) cb(flat[i] as string, Number(flat[i + 1]));
      }
      return true;
    } catch (err) {
      this.#opts.log.warn("redis_revocations_unreadable", { error: String(err) });
      return false;
    }
  }

  /** Heartbeat: refresh this instance's presence entries and expire other instances' stale ones. */
  #refresh(): void {
    if (!this.#ready) return;
    for (const log of this.#logs.values()) log.refresh();
  }

  run(name: ScriptName, keys: string[], args: (string | number)[]): Promise<unknown> {
    const fn = (this.#cmd as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[name] as (
      ...a: unknown[]
    ) => Promise<unknown>;
    return fn.call(this.#cmd, keys.length, ...keys, ...args);
  }

  get cmd(): Redis {
    return this.#cmd;
  }

  get opts(): RedisStoreOptions {
    return this.#opts;
  }

  key(room: string, suffix: string): string {
    return `${this.#opts.prefix}room:${room}:${suffix}`;
  }

  channel(room: string): string {
    return `${this.#opts.prefix}room:${room}`;
  }

  async open(room: string, newEpoch: () => string): Promise<{ state: StoredRoom; log: RedisRoomLog }> {
    if (this.#closed) throw new StoreUnavailableError("Cannot open room: the store is closed");
    if (!this.#ready) throw new StoreUnavailableError("Cannot open room: Redis is unreachable");
    const channel = this.channel(room);
    const log = new RedisRoomLog(this, room, channel, newEpoch);
    const previous = this.#logs.get(channel);
    this.#logs.set(channel, log);
    previous?.detach();
    try {
      // Subscribed before the state is read, so nothing published in between is missed.
      await this.#subscribe(channel);
      const [epoch, seq, entries, online] = await this.run("swOpen", [
        this.key(room, "meta"),
        this.key(room, "log"),
        this.key(room, "pc"),
      ], [newEpoch(), this.#opts.retain]) as [string, string, StreamEntry[], string[]];
      const messages: ChatMessage[] = [];
      for (const [id, fields] of entries.reverse()) {
        const m = decodeMessage(room, parseInt(id, 10), fields[1] ?? "");
        if (m) messages.push(m);
      }
      const state: StoredRoom = { epoch, seq: Number(seq), messages, online };
      log.start(state);
      return { state, log };
    } catch (err) {
      log.detach();
      if (this.#logs.get(channel) === log) {
        this.#logs.delete(channel);
        void this.#sub.unsubscribe(channel).catch(() => {});
      }
      throw err instanceof StoreUnavailableError ? err : new StoreUnavailableError(`Cannot open room: ${String(err)}`);
    }
  }

  /** Called by a closing log. */
  release(channel: string, log: RedisRoomLog): void {
    if (this.#logs.get(channel) !== log) return;
    this.#logs.delete(channel);
    if (this.#ready) void this.#sub.unsubscribe(channel).catch(() => {});
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    await Promise.all([...this.#logs.values()].map((log) => log.close()));
    this.#closed = true;
    await Promise.allSettled([this.#cmd.quit(), this.#sub.quit()]);
    this.#cmd.disconnect();
    this.#sub.disconnect();
  }
}

/** One room's shared log on this instance. */
export class RedisRoomLog implements SharedLog {
  readonly shared = true;
  #store: RedisStore;
  #room: string;
  #channel: string;
  #newEpoch: () => string;
  #keys: { meta: string; log: string; pe: string; pc: string };
  #epoch = "";
  /** The last seq delivered to the sink. */
  #seq = 0;
  #sink?: SharedSink;
  /** Lines received before the sink listens, or while a gap is being filled. */
  #backlog: string[] = [];
  #started = false;
  #fetching = false;
  #retry?: ReturnType<typeof setTimeout>;
  #expect?: ReturnType<typeof setTimeout>;
  /** Users who arrived through this instance and have not departed. */
  #here = new Set<string>();
  #closed = false;
  #detached = false;

  constructor(store: RedisStore, room: string, channel: string, newEpoch: () => string) {
    this.#store = store;
    this.#room = room;
    this.#channel = channel;
    this.#newEpoch = newEpoch;
    this.#keys = { meta: store.key(room, "meta"), log: store.key(room, "log"), pe: store.key(room, "pe"), pc: store.key(room, "pc") };
  }

  start(state: StoredRoom): void {
    this.#epoch = state.epoch;
    this.#seq = state.seq;
    this.#started = true;
    // Entries of crashed instances are cleared when a room opens, not only on the heartbeat.
    this.#sweep();
  }

  listen(sink: SharedSink): void {
    this.#sink = sink;
    this.#drain();
  }

  /** A payload from the room's channel. */
  receive(payload: string): void {
    if (this.#detached) return;
    const lines = payload.split("\n");
    if (!this.#sink || !this.#started || this.#fetching || this.#backlog.length > 0) {
      this.#hold(lines);
      return;
    }
    this.#process(lines);
  }

  #hold(lines: string[]): void {
    if (this.#backlog.length + lines.length > BACKLOG_MAX) {
      // Messages are fetched again from the stream; only announces in between are lost.
      this.#backlog = [];
      this.#catchUp();
      return;
    }
    for (const line of lines) this.#backlog.push(line);
  }

  #drain(): void {
    if (!this.#sink || !this.#started || this.#fetching || this.#backlog.length === 0) return;
    const lines = this.#backlog;
    this.#backlog = [];
    this.#process(lines);
  }

  /** Delivers lines in order; at a gap, holds the rest and fetches the missing messages first. */
  #process(lines: string[]): void {
    const sink = this.#sink as SharedSink;
    let batch: ChatMessage[] = [];
    const flush = () => {
      if (batch.length > 0) sink.messages(batch);
      batch = [];
    };
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] as string;
      if (this.#closed) return;
      if (line.startsWith("e ")) {
        if (line.slice(2) !== this.#epoch) {
          flush();
          this.#reset(`epoch changed to ${line.slice(2)}`);
          return;
        }
      } else if (line.startsWith("m ")) {
        const space = line.indexOf(" ", 2);
        const seq = Number(line.slice(2, space));
        if (seq <= this.#seq) continue;
        if (seq > this.#seq + 1) {
          flush();
          this.#backlog = lines.slice(i);
          this.#catchUp();
          return;
        }
        const m = decodeMessage(this.#room, seq, line.slice(space + 1));
        if (!m) continue;
        this.#seq = seq;
        batch.push(m);
      } else if (line.startsWith("a ")) {
        flush();
        const frame = announceFrame(this.#room, line.slice(2));
        if (frame) sink.announce(frame);
      }
    }
    flush();
  }

  /** Fetches what follows the last delivered seq from the stream (gap, missed publish, reconnect). */
  #catchUp(): void {
    if (this.#fetching || this.#closed || !this.#started) return;
    this.#fetching = true;
    void this.#fetchAll().then(
      (ok) => {
        this.#fetching = false;
        if (ok) this.#drain();
      },
      (err: unknown) => {
        this.#fetching = false;
        this.#store.opts.log.warn("redis_catch_up_failed", { room: this.#room, error: String(err) });
        // Retried shortly, and again whenever Redis comes back.
        if (!this.#closed && this.#retry === undefined) {
          this.#retry = setTimeout(() => {
            this.#retry = undefined;
            this.#catchUp();
          }, 1000);
        }
      },
    );
  }

  /** True when caught up; false when the room was reset instead. */
  async #fetchAll(): Promise<boolean> {
    const cmd = this.#store.cmd;
    for (let round = 0; round < 1000 && !this.#closed; round++) {
      const [[, meta], [, entries]] = await cmd.multi()
        .hmget(this.#keys.meta, "epoch", "seq")
        .xrange(this.#keys.log, `${this.#seq + 1}-0`, "+", "COUNT", FETCH_COUNT)
        .exec() as [[unknown, [string | null, string | null]], [unknown, StreamEntry[]]];
      const [epoch, seqText] = meta;
      if (epoch !== this.#epoch) {
        this.#reset(epoch === null ? "history lost (Redis came back empty)" : `epoch changed to ${epoch}`);
        return false;
      }
      const top = Number(seqText);
      if (top < this.#seq) {
        await this.#rotate(`Redis lost messages (seq ${top} < ${this.#seq})`);
        return false;
      }
      const batch: ChatMessage[] = [];
      for (const [id, fields] of entries) {
        const seq = parseInt(id, 10);
        if (seq <= this.#seq) continue;
        if (seq !== this.#seq + 1) {
          this.#reset(`messages ${this.#seq + 1}..${seq - 1} were trimmed before this instance saw them`);
          return false;
        }
        const m = decodeMessage(this.#room, seq, fields[1] ?? "");
        if (!m) continue;
        this.#seq = seq;
        batch.push(m);
      }
      if (batch.length > 0 && this.#sink) this.#sink.messages(batch);
      if (this.#seq >= top || entries.length === 0) return true;
    }
    return true;
  }

  async submit(drafts: Draft[]): Promise<Submitted[]> {
    if (this.#closed) throw new StoreUnavailableError("Cannot store: the room is closed");
    const keys = [this.#keys.meta, this.#keys.log];
    const args: (string | number)[] = [
      this.#epoch,
      this.#seq,
      this.#store.opts.retain,
      Math.ceil(NONCE_WINDOW_MS / 1000),
      this.#channel,
      drafts.length,
    ];
    for (const d of drafts) {
      if (d.nonce === undefined) args.push(0);
      else args.push(keys.push(this.#store.key(this.#room, `n:${nonceKey(d.nonce, d.user)}`)));
      args.push(encodeBody(d));
    }
    let reply: unknown[];
    try {
      reply = await this.#store.run("swSubmit", keys, args) as unknown[];
    } catch (err) {
      throw new StoreUnavailableError(`Cannot store: ${reasonOf(err)}`);
    }
    if (reply[0] === "reset") {
      this.#reset(reply[1] ? `epoch changed to ${reply[1]}` : "history lost (Redis came back empty)");
      throw new StoreUnavailableError("Cannot store: the room's history was reset");
    }
    if (reply[0] === "behind") {
      await this.#rotate(`Redis lost messages (seq ${reply[1]} < ${this.#seq})`).catch(() => {});
      throw new StoreUnavailableError("Cannot store: the room's history was reset");
    }
    const results = (reply as number[]).map((n) => n < 0 ? { seq: -n, duplicate: true } : { seq: n, duplicate: false });
    const upTo = Math.max(0, ...results.map((r) => r.seq));
    if (upTo > this.#seq && this.#expect === undefined) {
      // Normally the channel brings them within a millisecond; a lost publish is fetched instead.
      this.#expect = setTimeout(() => {
        this.#expect = undefined;
        if (this.#seq < upTo) this.#catchUp();
      }, EXPECT_MS);
    }
    return results;
  }

  /** Plain appends with seqs chosen by the caller (a single writer); published like submitted ones. */
  async append(messages: ChatMessage[]): Promise<void> {
    if (messages.length === 0) return;
    const args: (string | number)[] = [this.#epoch, this.#store.opts.retain, this.#channel];
    for (const m of messages) args.push(m.seq, encodeBody(m));
    try {
      await this.#store.run("swAppend", [this.#keys.meta, this.#keys.log], args);
    } catch (err) {
      throw new StoreUnavailableError(`Cannot store: ${reasonOf(err)}`);
    }
  }

  arrive(user: string): void {
    this.#here.add(user);
    this.#arrive(user);
  }

  #arrive(user: string): void {
    const { pe, pc } = this.#keys;
    this.#store.run("swArrive", [pe, pc], [this.#member(user), user, this.#store.opts.presenceTtlMs, this.#channel])
      // Redis away: the heartbeat adds the entry (and announces the join) once it is back.
      .catch((err) => this.#store.opts.log.debug("presence_failed", { room: this.#room, error: String(err) }));
  }

  depart(user: string): void {
    if (!this.#here.delete(user)) return;
    const { pe, pc } = this.#keys;
    this.#store.run("swDepart", [pe, pc], [this.#member(user), user, this.#channel])
      // Redis away: the entry expires and another instance (or this one) announces the leave.
      .catch((err) => this.#store.opts.log.debug("presence_failed", { room: this.#room, error: String(err) }));
  }

  #member(user: string): string {
    return `${user}\n${this.#store.instance}`;
  }

  #sweep(): void {
    const { pe, pc } = this.#keys;
    this.#store.run("swSweep", [pe, pc], [this.#channel]).catch(() => {});
  }

  /** Heartbeat: keeps this instance's entries alive and clears expired ones. */
  refresh(): void {
    if (this.#closed || !this.#started) return;
    for (const user of this.#here) this.#arrive(user);
    this.#sweep();
  }

  /** Redis is back: fetch what was missed (or find the history reset) and restore presence. */
  recover(): void {
    if (this.#closed || !this.#started) return;
    this.#catchUp();
    this.refresh();
  }

  /** The history lost acknowledged messages: a new epoch, so nobody resumes across the hole. */
  async #rotate(why: string): Promise<void> {
    await this.#store.run("swRotate", [this.#keys.meta, this.#keys.log], [this.#epoch, this.#newEpoch(), this.#seq]);
    this.#reset(why);
  }

  #reset(why: string): void {
    if (this.#closed) return;
    this.#store.opts.log.warn("redis_room_reset", { room: this.#room, why });
    const sink = this.#sink;
    if (sink) sink.reset(why);
    else void this.close();
  }

  /** A newer log took over this room's channel on this instance: stop delivering. */
  detach(): void {
    this.#detached = true;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#detached = true;
    if (this.#retry !== undefined) clearTimeout(this.#retry);
    if (this.#expect !== undefined) clearTimeout(this.#expect);
    this.#store.release(this.#channel, this);
    // Users still here (the instance is stopping) are announced gone after the grace period,
    // unless they reconnected to another instance meanwhile.
    if (this.#here.size > 0) {
      const members = [...this.#here].map((u) => this.#member(u));
      this.#here.clear();
      await this.#store.run("swExpireSoon", [this.#keys.pe], [this.#store.opts.presenceGraceMs, ...members]).catch(() => {});
    }
  }
}
