// In-memory store: nothing survives a restart, so every room starts with a new epoch. Portable.

import type { RoomLog, Store, StoredRoom } from "./store.ts";

const NOTHING: RoomLog = {
  append() {},
  close: () => Promise.resolve(),
};

export class MemoryStore implements Store {
  readonly kind = "memory";

  open(_room: string, newEpoch: () => string): Promise<{ state: StoredRoom; log: RoomLog }> {
    // The Room keeps the retained messages itself; a fresh room has none.
    return Promise.resolve({ state: { epoch: newEpoch(), seq: 0, messages: [] }, log: NOTHING });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
