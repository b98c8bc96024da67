// Sign-in state shared through Redis (RedisStore.sharedAuth()) against a real redis-server: single-use
// tickets that any instance redeems once, logouts every instance hears (as they happen, when it
// connects later, and when Redis comes back), and what happens while Redis is down. Two or more
// stores on one prefix stand for instances. Runs on every runtime.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { TicketStore } from "../../src/http/auth/tickets.ts";
import type { Identity } from "../../src/http/auth/types.ts";
import { RedisStore, type RedisStoreOptions } from "../../src/storage/redis.ts";
import { StoreUnavailableError } from "../../src/storage/store.ts";
import { type RunningRedis, startRedis } from "../_helpers/redis.ts";
import { connectStore, freshPrefix as prefixFor, newEpoch, until } from "../_helpers/redis-store.ts";

const freshPrefix = () => prefixFor("ta");
const nowS = () => Math.floor(Date.now() / 1000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every store made here, closed in after() whatever a test did. */
const opened = new Set<RedisStore>();

async function store(
  redis: RunningRedis,
  prefix: string,
  extra: Partial<RedisStoreOptions> = {},
): Promise<RedisStore> {
  const s = await connectStore(redis, prefix, extra);
  opened.add(s);
  return s;
}

async function closeAll(): Promise<void> {
  await Promise.all([...opened].map((s) => s.close().catch(() => {})));
  opened.clear();
}

/** What an onRevoke listener heard, as "sid exp" pairs; `loaded` settles once the recorded ones were read. */
function listen(s: RedisStore): Map<string, number> & { loaded: Promise<void> } {
  const heard = new Map<string, number>();
  const loaded = s.sharedAuth().onRevoke((sid, exp) => heard.set(sid, exp));
  loaded.catch(() => {});
  return Object.assign(heard, { loaded });
}

describe("RedisStore.sharedAuth: tickets and logouts shared by instances", () => {
  let redis: RunningRedis;
  before(async () => {
    redis = await startRedis({ durable: false });
  });
  after(async () => {
    await closeAll();
    await redis.stop();
  });

  it("a ticket put on A is taken once on B; a second take on either instance finds nothing", async () => {
    const prefix = freshPrefix();
    const [a, b] = await Promise.all([store(redis, prefix), store(redis, prefix)]);
    await a.sharedAuth().putTicket("k1", '{"sub":"alice"}', 30_000);
    assert.equal(await b.sharedAuth().takeTicket("k1"), '{"sub":"alice"}');
    assert.equal(await b.sharedAuth().takeTicket("k1"), undefined);
    assert.equal(await a.sharedAuth().takeTicket("k1"), undefined);
    assert.equal(await a.sharedAuth().takeTicket("never-put"), undefined);
  });

  it("lets exactly one of many instances racing for one ticket have it", async () => {
    const prefix = freshPrefix();
    const stores = await Promise.all([store(redis, prefix), store(redis, prefix), store(redis, prefix)]);
    await stores[0]!.sharedAuth().putTicket("race", "v", 30_000);
    const got = await Promise.all(
      stores.flatMap((s) => [s.sharedAuth().takeTicket("race"), s.sharedAuth().takeTicket("race")]),
    );
    assert.deepEqual(got.filter((v) => v !== undefined), ["v"]);
  });

  it("keeps tickets apart between prefixes (deployments sharing one Redis)", async () => {
    const [a, other] = await Promise.all([store(redis, freshPrefix()), store(redis, freshPrefix())]);
    await a.sharedAuth().putTicket("same-key", "mine", 30_000);
    assert.equal(await other.sharedAuth().takeTicket("same-key"), undefined);
    assert.equal(await a.sharedAuth().takeTicket("same-key"), "mine");
  });

  it("expires a ticket after its TTL: taking it then finds nothing", async () => {
    const prefix = freshPrefix();
    const [a, b] = await Promise.all([store(redis, prefix), store(redis, prefix)]);
    await a.sharedAuth().putTicket("short", "v", 150);
    await a.sharedAuth().putTicket("long", "w", 30_000);
    const pttl = Number(await redis.cli("PTTL", `${prefix}auth:ticket:short`));
    assert.ok(pttl > 0 && pttl <= 150, `PTTL ${pttl}`);
    await sleep(400);
    assert.equal(await b.sharedAuth().takeTicket("short"), undefined);
    assert.equal(await b.sharedAuth().takeTicket("long"), "w", "a ticket within its TTL still works");
  });

  it("tells B's onRevoke listener of a logout made on A, with its expiry; A's own listener hears it too", async () => {
    const prefix = freshPrefix();
    const [a, b] = await Promise.all([store(redis, prefix), store(redis, prefix)]);
    const heardA = listen(a);
    const heardB = listen(b);
    // The subscription is made in the background: give it a moment to be in place.
    await sleep(200);
    const exp = nowS() + 3600;
    await a.sharedAuth().revoke("sid-1", exp);
    await until("B hears sid-1", () => heardB.has("sid-1"), 3000);
    assert.equal(heardB.get("sid-1"), exp);
    await until("A hears sid-1", () => heardA.has("sid-1"), 3000);
    assert.equal(heardA.get("sid-1"), exp);
  });

  it("gives a store connected later the logouts still in force when it listens, and not the expired ones", async () => {
    const prefix = freshPrefix();
    const a = await store(redis, prefix);
    const longExp = nowS() + 3600;
    await a.sharedAuth().revoke("sid-valid", longExp);
    await a.sharedAuth().revoke("sid-short", nowS() + 1);
    await a.sharedAuth().revoke("sid-past", nowS() - 60);
    // sid-short's expiry goes by.
    await sleep(2100);
    const late = await store(redis, prefix);
    const heard = listen(late);
    await heard.loaded;
    assert.deepEqual([...heard], [["sid-valid", longExp]], "known once onRevoke resolves");
    // A logout made after it connected reaches it live.
    await a.sharedAuth().revoke("sid-after", longExp);
    await until("the late store hears sid-after", () => heard.has("sid-after"), 3000);
  });

  it("drops expired logouts from Redis when the next one is recorded", async () => {
    const prefix = freshPrefix();
    const a = await store(redis, prefix);
    await a.sharedAuth().revoke("old", nowS() - 5);
    await a.sharedAuth().revoke("new", nowS() + 3600);
    const members = (await redis.cli("ZRANGE", `${prefix}auth:revoked`, "0", "-1")).split("\n").filter(
      Boolean,
    );
    assert.deepEqual(members, ["new"]);
  });

  it("reloads the logouts when Redis comes back after its connection dropped, and hears new ones again", async () => {
    const prefix = freshPrefix();
    const [a, b] = await Promise.all([
      store(redis, prefix, { instance: `A-${prefix}` }),
      store(redis, prefix, { instance: `B-${prefix}` }),
    ]);
    const heard = listen(b);
    await sleep(200);
    // A logout that B never heard of (as if it happened while B was cut off from Redis).
    const exp = nowS() + 3600;
    await redis.cli("ZADD", `${prefix}auth:revoked`, String(exp), "sid-missed");
    await sleep(100);
    assert.equal(heard.has("sid-missed"), false);
    // Drop B's connections, as a network blip would; B reconnects by itself.
    const list = await redis.cli("CLIENT", "LIST");
    const ids = list.split("\n").filter((l) => l.includes(`name=shootawall:B-${prefix} `)).map((l) =>
      /\bid=(\d+)/.exec(l)![1]!
    );
    assert.equal(ids.length, 2, `B's two connections in ${list}`);
    for (const id of ids) await redis.cli("CLIENT", "KILL", "ID", id);
    await until("B reloads sid-missed", () => heard.get("sid-missed") === exp, 8000);
    await until("B healthy", () => b.health().ok, 8000);
    await a.sharedAuth().revoke("sid-later", exp);
    await until("B hears sid-later after resubscribing", () => heard.has("sid-later"), 5000);
  });

  it("goes through TicketStore: issued on A, redeemed on B as a ticket identity, then never again on A", async () => {
    const prefix = freshPrefix();
    const [a, b] = await Promise.all([store(redis, prefix), store(redis, prefix)]);
    const ta = new TicketStore(30_000, Date.now, a.sharedAuth());
    const tb = new TicketStore(30_000, Date.now, b.sharedAuth());
    const identity: Identity = {
      sub: "alice",
      user: "alice",
      rooms: ["lobby", "team-*"],
      exp: nowS() + 600,
      sid: "sid-t",
      via: "cookie",
    };
    const ticket = await ta.issue(identity);
    assert.match(ticket, /^[A-Za-z0-9_-]{43}$/);
    const keys = await redis.cli("KEYS", `${prefix}auth:ticket:*`);
    assert.equal(keys.includes(ticket), false, "Redis holds the ticket's digest, not the ticket");
    assert.equal(ta.size, 0, "nothing is kept in A's memory");
    assert.deepEqual(await tb.redeem(ticket), { ...identity, via: "ticket" });
    assert.equal(await ta.redeem(ticket), undefined);
    assert.equal(await tb.redeem(ticket), undefined);
    assert.equal(await tb.redeem(""), undefined);
    assert.equal(await tb.redeem("x".repeat(101)), undefined);
  });

  it("refuses TicketStore tickets past their TTL on the other instance", async () => {
    const prefix = freshPrefix();
    const [a, b] = await Promise.all([store(redis, prefix), store(redis, prefix)]);
    const ticket = await new TicketStore(150, Date.now, a.sharedAuth()).issue({
      sub: "bob",
      user: "bob",
      via: "cookie",
    });
    await sleep(400);
    assert.equal(await new TicketStore(150, Date.now, b.sharedAuth()).redeem(ticket), undefined);
  });
});

describe("RedisStore.sharedAuth while Redis is down", () => {
  let own: RunningRedis;
  before(async () => {
    own = await startRedis({ durable: false });
  });
  after(async () => {
    await closeAll();
    await own.stop().catch(() => {});
  });

  it("rejects putTicket, takeTicket and revoke with StoreUnavailableError, and works again once Redis is back", async () => {
    const prefix = freshPrefix();
    const [a, b] = await Promise.all([
      store(own, prefix, { commandTimeoutMs: 1000 }),
      store(own, prefix, { commandTimeoutMs: 1000 }),
    ]);
    const heard = listen(b);
    await a.sharedAuth().putTicket("before", "v", 30_000);
    await own.kill9();
    await until("A degraded", () => !a.health().ok, 5000);
    await assert.rejects(a.sharedAuth().putTicket("during", "v", 30_000), StoreUnavailableError);
    await assert.rejects(b.sharedAuth().takeTicket("before"), StoreUnavailableError);
    await assert.rejects(a.sharedAuth().revoke("sid-down", nowS() + 3600), StoreUnavailableError);
    const t = new TicketStore(30_000, Date.now, a.sharedAuth());
    await assert.rejects(t.issue({ sub: "alice", user: "alice", via: "cookie" }), StoreUnavailableError);
    await assert.rejects(t.redeem("some-ticket"), StoreUnavailableError);
    assert.equal(heard.has("sid-down"), false, "a refused logout is announced to nobody");

    own = await own.restart();
    await until("A and B healthy again", () => a.health().ok && b.health().ok, 10_000);
    // This Redis kept nothing: the ticket put before the crash is gone, and new ones work.
    assert.equal(await b.sharedAuth().takeTicket("before"), undefined);
    await a.sharedAuth().putTicket("after", "w", 30_000);
    assert.equal(await b.sharedAuth().takeTicket("after"), "w");
    await a.sharedAuth().revoke("sid-up", nowS() + 3600);
    await until("B hears sid-up", () => heard.has("sid-up"), 5000);
  });

  it("rejects the same calls on a store that started while Redis was unreachable", async () => {
    await own.kill9();
    try {
      const a = await store(own, freshPrefix(), { connectTimeoutMs: 300, commandTimeoutMs: 1000 });
      assert.equal(a.health().ok, false);
      const heard = listen(a);
      await assert.rejects(heard.loaded, StoreUnavailableError, "the recorded logouts cannot be known yet");
      await assert.rejects(a.sharedAuth().putTicket("k", "v", 30_000), StoreUnavailableError);
      await assert.rejects(a.sharedAuth().takeTicket("k"), StoreUnavailableError);
      await assert.rejects(a.sharedAuth().revoke("s", nowS() + 3600), StoreUnavailableError);
      assert.equal(heard.size, 0);
    } finally {
      own = await own.restart();
    }
  });
});
