// Token buckets for frames per connection and per user. Portable.

import type { Clock } from "./deps.ts";

export interface RateLimit {
  /** Tokens added per second; 0 turns limiting off. */
  perSecond: number;
  /** Bucket size: how many frames may come at once. */
  burst: number;
}

/** A token bucket refilled continuously from the injected clock. */
export class TokenBucket {
  #tokens: number;
  #last: number;
  #limit: RateLimit;
  #clock: Clock;

  constructor(limit: RateLimit, clock: Clock) {
    this.#limit = limit;
    this.#clock = clock;
    this.#tokens = limit.burst;
    this.#last = clock.now();
  }

  /** Takes one token; false when the bucket is empty. */
  take(): boolean {
    const now = this.#clock.now();
    const elapsed = Math.max(0, now - this.#last) / 1000;
    this.#last = now;
    this.#tokens = Math.min(this.#limit.burst, this.#tokens + elapsed * this.#limit.perSecond);
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

/**
 * One bucket per user, shared by all their connections in every room. Entries
 * live while the user has a connection, so the map is bounded by connections.
 */
export class UserBuckets {
  #entries = new Map<string, { bucket: TokenBucket; refs: number }>();
  #limit: RateLimit;
  #clock: Clock;

  constructor(limit: RateLimit, clock: Clock) {
    this.#limit = limit;
    this.#clock = clock;
  }

  get enabled(): boolean {
    return this.#limit.perSecond > 0;
  }

  get limit(): RateLimit {
    return this.#limit;
  }

  /** A connection of `user` opened: returns the user's shared bucket. */
  acquire(user: string): TokenBucket {
    let entry = this.#entries.get(user);
    if (!entry) {
      entry = { bucket: new TokenBucket(this.#limit, this.#clock), refs: 0 };
      this.#entries.set(user, entry);
    }
    entry.refs++;
    return entry.bucket;
  }

  /** A connection of `user` closed. */
  release(user: string): void {
    const entry = this.#entries.get(user);
    if (entry && --entry.refs <= 0) this.#entries.delete(user);
  }

  get size(): number {
    return this.#entries.size;
  }
}
