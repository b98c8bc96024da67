// Rate limits on POST /auth/login, checked before any password work: every attempt costs a token
// from its client IP's bucket, every failed one a token from its account's bucket (unknown names
// included, so a 429 says nothing about which accounts exist). Past either: 429 with Retry-After.

interface Bucket {
  tokens: number;
  updated: number;
}

/** Keys remembered per kind; past this the least recently touched are forgotten. */
const MAX_KEYS = 10_000;

class Buckets {
  #map = new Map<string, Bucket>();
  constructor(readonly capacity: number, readonly refillMs: number, readonly now: () => number) {}

  #get(key: string): Bucket {
    const now = this.now();
    let b = this.#map.get(key);
    if (b) {
      this.#map.delete(key);
      b.tokens = Math.min(this.capacity, b.tokens + (now - b.updated) / this.refillMs);
      b.updated = now;
    } else {
      b = { tokens: this.capacity, updated: now };
      if (this.#map.size >= MAX_KEYS) this.#map.delete(this.#map.keys().next().value as string);
    }
    this.#map.set(key, b);
    return b;
  }

  /** Seconds until a token is available (0: one is available now). */
  wait(key: string): number {
    const b = this.#get(key);
    return b.tokens >= 1 ? 0 : Math.ceil(((1 - b.tokens) * this.refillMs) / 1000);
  }

  take(key: string): void {
    this.#get(key).tokens -= 1;
  }

  give(key: string): void {
    const b = this.#get(key);
    b.tokens = Math.min(this.capacity, b.tokens + 1);
  }
}

export type LimitVerdict = { ok: true } | { ok: false; scope: "ip" | "account"; retryAfterS: number };

export class LoginLimiter {
  #ip: Buckets;
  #account: Buckets;

  /**
   * `perMinute` attempts per minute per IP (burst of as many); `perMinute` failed attempts per
   * account, refilled over 15 minutes. 0 turns both off.
   */
  constructor(readonly perMinute: number, now: () => number = Date.now) {
    const n = Math.max(1, perMinute);
    this.#ip = new Buckets(n, 60_000 / n, now);
    this.#account = new Buckets(n, (15 * 60_000) / n, now);
  }

  /** Admits an attempt (and charges its IP and its account), or says how long to wait. */
  attempt(ip: string, account: string): LimitVerdict {
    if (this.perMinute <= 0) return { ok: true };
    const ipWait = this.#ip.wait(ip);
    if (ipWait > 0) return { ok: false, scope: "ip", retryAfterS: ipWait };
    const accountWait = this.#account.wait(account);
    if (accountWait > 0) return { ok: false, scope: "account", retryAfterS: accountWait };
    this.#ip.take(ip);
    this.#account.take(account);
    return { ok: true };
  }

  /** A successful login does not count against its account. */
  succeeded(account: string): void {
    if (this.perMinute > 0) this.#account.give(account);
  }
}
