// The storage contract: one suite every backend runs (memory, file; Redis later).

import { it } from "node:test";
import assert from "node:assert/strict";
import type { ChatMessage } from "../../src/protocol/messages.ts";
import type { Store } from "../../src/storage/store.ts";

export interface ContractOptions {
  /** A new store over the same data as `previous` (a restart), or a fresh one. */
  makeStore(): Promise<Store> | Store;
  /** True when history survives a restart (a new store over the same data). */
  durable: boolean;
  retain: number;
}

let epochs = 0;
const newEpoch = () => `epoch${++epochs}`;

export function message(seq: number, extra: Partial<ChatMessage> = {}): ChatMessage {
  return { type: "message", room: "r", seq, user: "u", date: new Date(1_700_000_000_000 + seq).toISOString(), text: `m${seq}`, ...extra };
}

/** Registers the contract tests for one backend. */
export function storeContract(opts: ContractOptions): void {
  it("open() of a new room gives a new epoch, seq 0 and no messages", async () => {
    const store = await opts.makeStore();
    const { state, log } = await store.open("fresh", newEpoch);
    assert.match(state.epoch, /^epoch\d+$/);
    assert.equal(state.seq, 0);
    assert.deepEqual(state.messages, []);
    await log.close();
    await store.close();
  });

  it("append() accepts consecutive batches", async () => {
    const store = await opts.makeStore();
    const { log } = await store.open("batches", newEpoch);
    await log.append([message(1), message(2)]);
    await log.append([message(3)]);
    await log.close();
    await store.close();
  });

  it(opts.durable ? "a restart keeps epoch, seq and retained messages in order" : "a restart starts over with a new epoch", async () => {
    const first = await opts.makeStore();
    const a = await first.open("restart", newEpoch);
    await a.log.append([message(1, { nonce: "n1" }), message(2)]);
    await a.log.append([message(3, { text: "héllo \"quoted\"\nline" })]);
    await a.log.close();
    await first.close();
    const second = await opts.makeStore();
    const b = await second.open("restart", newEpoch);
    if (opts.durable) {
      assert.equal(b.state.epoch, a.state.epoch);
      assert.equal(b.state.seq, 3);
      assert.deepEqual(b.state.messages.map((m) => m.seq), [1, 2, 3]);
      assert.equal(b.state.messages[0]!.nonce, "n1");
      assert.equal(b.state.messages[2]!.text, "héllo \"quoted\"\nline");
    } else {
      assert.notEqual(b.state.epoch, a.state.epoch);
      assert.equal(b.state.seq, 0);
    }
    await b.log.close();
    await second.close();
  });

  it("rooms are kept apart", async () => {
    const store = await opts.makeStore();
    const x = await store.open("apart-x", newEpoch);
    const y = await store.open("apart-y", newEpoch);
    await x.log.append([message(1)]);
    assert.notEqual(x.state.epoch, y.state.epoch);
    await x.log.close();
    await y.log.close();
    await store.close();
    if (!opts.durable) return;
    const again = await opts.makeStore();
    assert.equal((await again.open("apart-y", newEpoch)).state.seq, 0);
    assert.equal((await again.open("apart-x", newEpoch)).state.seq, 1);
    await again.close();
  });

  if (opts.durable) {
    it("keeps the retained messages and the seq across compaction", async () => {
      const store = await opts.makeStore();
      const { log } = await store.open("compact", newEpoch);
      const total = opts.retain * 3 + 7;
      for (let seq = 1; seq <= total; seq++) await log.append([message(seq)]);
      await log.close();
      await store.close();
      const again = await opts.makeStore();
      const { state } = await again.open("compact", newEpoch);
      assert.equal(state.seq, total);
      assert.equal(state.messages.length, opts.retain);
      assert.equal(state.messages.at(-1)!.seq, total);
      assert.equal(state.messages[0]!.seq, total - opts.retain + 1);
      await again.close();
    });
  }
}
