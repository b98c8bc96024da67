// The storage interface every history backend implements (memory, append-only file; Redis later). Portable.

import type { ChatMessage } from "../protocol/messages.ts";

/** What a room's log holds when opened. */
export interface StoredRoom {
  /** The history lifetime: kept as long as the log is; new when the log is new or lost. */
  epoch: string;
  /** The last sequence number given (0 when none). */
  seq: number;
  /** Retained messages, oldest first, seq ascending, the last one's seq equal to `seq`. */
  messages: ChatMessage[];
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

export interface Store {
  /** A short name for logs and /healthz ("memory", "file"). */
  readonly kind: string;
  /** Opens the log of `room`, creating it (with `newEpoch()`) when there is none. */
  open(room: string, newEpoch: () => string): Promise<{ state: StoredRoom; log: RoomLog }>;
  /** Flushes and closes every open log. */
  close(): Promise<void>;
}

/** The error a log raises when it cannot store: the server answers `unavailable`. */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
}
