// Tickets from POST /auth/ticket: single use, short-lived (30 s by default), bound to the identity
// that asked for one, so that a program can put `?ticket=` in a URL without a long-lived secret
// ever landing in a URL or an access log. Kept in memory, keyed by their SHA-256; with a shared
// store (Redis), kept there instead, so that any instance redeems it, once.

import { base64url } from "jose";
import type { SharedAuthState } from "../../storage/store.ts";
import type { Identity } from "./types.ts";

/** Tickets outstanding at once; past this the oldest are dropped. */
export const MAX_TICKETS = 10_000;

async function digest(ticket: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(ticket));
  return base64url.encode(new Uint8Array(d));
}

export class TicketStore {
  readonly ttlMs: number;
  #now: () => number;
  #tickets = new Map<string, { identity: Identity; expires: number }>();
  #shared?: SharedAuthState;

  constructor(ttlMs: number, now: () => number = Date.now, shared?: SharedAuthState) {
    this.ttlMs = ttlMs;
    this.#now = now;
    this.#shared = shared;
  }

  get size(): number {
    return this.#tickets.size;
  }

  /** A new ticket (32 random bytes, base64url) for `identity`. */
  async issue(identity: Identity): Promise<string> {
    const ticket = base64url.encode(crypto.getRandomValues(new Uint8Array(32)));
    const key = await digest(ticket);
    const held: Identity = { ...identity, via: "ticket" };
    if (this.#shared) {
      await this.#shared.putTicket(key, JSON.stringify(held), this.ttlMs);
      return ticket;
    }
    const now = this.#now();
    for (const [old, t] of this.#tickets) {
      if (t.expires <= now || this.#tickets.size >= MAX_TICKETS) this.#tickets.delete(old);
      else break; // insertion order is expiry order
    }
    this.#tickets.set(key, { identity: held, expires: now + this.ttlMs });
    return ticket;
  }

  /** The identity behind a ticket, once: the ticket is gone after this call, valid or not. */
  async redeem(ticket: string): Promise<Identity | undefined> {
    if (ticket.length === 0 || ticket.length > 100) return undefined;
    const key = await digest(ticket);
    if (this.#shared) {
      const value = await this.#shared.takeTicket(key);
      return value === undefined ? undefined : JSON.parse(value) as Identity;
    }
    const entry = this.#tickets.get(key);
    if (!entry) return undefined;
    this.#tickets.delete(key);
    return entry.expires > this.#now() ? entry.identity : undefined;
  }
}
