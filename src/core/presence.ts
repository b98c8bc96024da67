// Presence: who is in a room, one entry per user however many tabs, with a leave grace period. Portable.

import type { Clock, TimerHandle } from "./deps.ts";

interface Entry {
  connections: number;
  leaveTimer?: TimerHandle;
}

/**
 * Counts each user's connections. A user is "online" from their first
 * connection until `graceMs` after their last one closed without a new one.
 */
export class Presence {
  #users = new Map<string, Entry>();
  #clock: Clock;
  #graceMs: number;

  constructor(clock: Clock, graceMs: number) {
    this.#clock = clock;
    this.#graceMs = graceMs;
  }

  /** Adds a connection for `user`; true when the user was not online before. */
  add(user: string): boolean {
    const entry = this.#users.get(user);
    if (entry) {
      if (entry.leaveTimer !== undefined) {
        this.#clock.clearTimeout(entry.leaveTimer);
        entry.leaveTimer = undefined;
      }
      entry.connections++;
      return false;
    }
    this.#users.set(user, { connections: 1 });
    return true;
  }

  /**
   * Removes a connection of `user`. When it was the last one, `onGone` runs
   * after the grace period unless the user came back meanwhile.
   */
  remove(user: string, onGone: () => void): void {
    const entry = this.#users.get(user);
    if (!entry || entry.connections === 0) return;
    entry.connections--;
    if (entry.connections > 0) return;
    const gone = () => {
      this.#users.delete(user);
      onGone();
    };
    if (this.#graceMs <= 0) gone();
    else entry.leaveTimer = this.#clock.setTimeout(gone, this.#graceMs);
  }

  /** Users online, in order of arrival. */
  list(): string[] {
    return [...this.#users.keys()];
  }

  get size(): number {
    return this.#users.size;
  }

  /** True while a leave is pending or a connection is open. */
  has(user: string): boolean {
    return this.#users.has(user);
  }

  /** Cancels every pending leave (shutdown). */
  clear(): void {
    for (const entry of this.#users.values()) {
      if (entry.leaveTimer !== undefined) this.#clock.clearTimeout(entry.leaveTimer);
    }
    this.#users.clear();
  }
}
