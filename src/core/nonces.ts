// NonceWindow: which (user, nonce) pairs a room already stored, so a retried send is acked, not re-sent. Portable.

import type { Nonce } from "../protocol/messages.ts";

/** Nonces are remembered at least this long... */
export const NONCE_WINDOW_MS = 10 * 60 * 1000;
/** ...and at least this many per user while the user is active, */
export const NONCE_MIN_PER_USER = 1000;
/** ...but never more than this many per user (memory bound). */
export const NONCE_MAX_PER_USER = 10_000;

const keyOf = (nonce: Nonce) => (typeof nonce === "number" ? `n${nonce}` : `s${nonce}`);

interface Entry {
  seq: number;
  at: number;
}

export class NonceWindow {
  /** Users in order of their last recorded nonce, oldest first. */
  #users = new Map<string, { entries: Map<string, Entry>; lastAt: number }>();
  #records = 0;

  /** The seq stored for this user's nonce, if it is still remembered. */
  lookup(user: string, nonce: Nonce): number | undefined {
    return this.#users.get(user)?.entries.get(keyOf(nonce))?.seq;
  }

  record(user: string, nonce: Nonce, seq: number, at: number): void {
    let slot = this.#users.get(user);
    if (slot) this.#users.delete(user);
    else slot = { entries: new Map(), lastAt: at };
    slot.lastAt = Math.max(slot.lastAt, at);
    this.#users.set(user, slot);
    const entries = slot.entries;
    entries.set(keyOf(nonce), { seq, at });
    for (const [key, entry] of entries) {
      const over = entries.size > NONCE_MAX_PER_USER ||
        (entries.size > NONCE_MIN_PER_USER && at - entry.at > NONCE_WINDOW_MS);
      if (!over) break;
      entries.delete(key);
    }
    if (++this.#records % 1000 === 0) this.prune(at);
  }

  /** Forgets users whose newest nonce is older than the window. */
  prune(now: number): void {
    for (const [user, slot] of this.#users) {
      if (now - slot.lastAt <= NONCE_WINDOW_MS) break; // users are kept in order of last activity
      this.#users.delete(user);
    }
  }

  get users(): number {
    return this.#users.size;
  }
}
