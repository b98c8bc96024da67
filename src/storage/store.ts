// The storage interface every history backend implements (memory, append-only file, Redis). Portable.

import type { AnnounceFrame, ChatMessage } from "../protocol/messages.ts";

/** What a room's log holds when opened. */
export interface StoredRoom {
  /** The history lifetime: kept as long as the log is; new when the log is new or lost. */
  epoch: string;
  /** The last sequence number given (0 when none). */
  seq: number;
  /** Retained messages, oldest first, seq ascending, the last one's seq equal to `seq`. */
  messages: ChatMessage[];
  /** Users online on any instance (a shared store only). */
  online?: string[];
}

/** One room's append-only log. */
export interface RoomLog {
  /**
   * Stores `messages` (consecutive seqs following the last stored one). Returns
   * nothing when they are stored at once (memory), or a promise that resolves
   * once they are as durable as the policy promises, and rejects when they
   * could not be stored: then none of them is kept, and the next append may
   * try again with the same seqs.
   */
  append(messages: ChatMessage[]): void | Promise<void>;
  /** Flushes what is pending and releases the log. */
  close(): Promise<void>;
}

/** A message before a shared log gives it its seq. */
export type Draft = Omit<ChatMessage, "seq">;

/** What a shared log did with one draft. */
export interface Submitted {
  seq: number;
  /** True when the same (user, nonce) was already stored: nothing new was stored or published. */
  duplicate: boolean;
}

/** What a shared log hands its room. */
export interface SharedSink {
  /** Stored messages, each once, in seq order without gaps: this instance's and every other's. */
  messages(messages: ChatMessage[]): void;
  /** A join or leave, decided once for all instances. */
  announce(frame: AnnounceFrame): void;
  /** The room's history was lost or replaced (a new epoch): the room must start over. */
  reset(reason: string): void;
}

/**
 * A room's log shared by several server instances (Redis): the store assigns
 * seqs, de-duplicates nonces, fans messages out to every instance's room and
 * keeps presence across instances.
 */
export interface SharedLog extends RoomLog {
  readonly shared: true;
  /**
   * Stores drafts in order; resolves once stored with each one's seq. The stored
   * messages come back through the sink like everyone else's. Rejects when the
   * store could not confirm (StoreUnavailableError; a retry with the same nonce is
   * safe); when the room must start over, the sink's reset() has been called too.
   */
  submit(drafts: Draft[]): Promise<Submitted[]>;
  /** Starts delivery to `sink` of what follows the state `open()` returned. */
  listen(sink: SharedSink): void;
  /** `user`'s first connection to this room on this instance. */
  arrive(user: string): void;
  /** `user`'s last connection here is gone (after the grace period). */
  depart(user: string): void;
}

export function isShared(log: RoomLog): log is SharedLog {
  return (log as Partial<SharedLog>).shared === true;
}

/** How the store is doing, for /healthz and /metrics. */
export interface StoreHealth {
  ok: boolean;
  /** Short facts to show (never secrets). */
  detail?: Record<string, string | number | boolean>;
}

/**
 * Sign-in state every instance must agree on (a shared store only): single-use tickets and
 * logouts, so that a ticket bought on one instance works once on any, and a logout counts on all.
 */
export interface SharedAuthState {
  putTicket(key: string, value: string, ttlMs: number): Promise<void>;
  /** The ticket's value, removed for every instance; undefined when unknown or expired. */
  takeTicket(key: string): Promise<string | undefined>;
  /** Records a logout until `expS` (seconds since 1970) and tells every instance. */
  revoke(sid: string, expS: number): Promise<void>;
  /**
   * `cb` hears of every logout recorded by any instance: as it happens, and again whenever the
   * store (re)connects. Resolves once the logouts already recorded have been heard (rejects when
   * they could not be read; they are read again when the store reconnects).
   */
  onRevoke(cb: (sid: string, expS: number) => void): Promise<void>;
}

export interface Store {
  /** A short name for logs and /healthz ("memory", "file", "redis"). */
  readonly kind: string;
  /** Present when several instances share this store. */
  sharedAuth?(): SharedAuthState;
  /** Absent: always healthy. */
  health?(): StoreHealth;
  /** Opens the log of `room`, creating it (with `newEpoch()`) when there is none. */
  open(room: string, newEpoch: () => string): Promise<{ state: StoredRoom; log: RoomLog }>;
  /** Flushes and closes every open log. */
  close(): Promise<void>;
}

/** The error a log raises when it cannot store: the server answers `unavailable`. */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
}
