// RoomRegistry: rooms by name, opened from the store on demand, bounded in number. Portable.

import { Room, type RoomDeps, type RoomOptions } from "./room.ts";
import { MemoryStore } from "../storage/memory.ts";
import type { Store, StoreHealth } from "../storage/store.ts";

/** Room names: 1 to 64 of a-z, 0-9, "-" and "_". */
export const ROOM_NAME = /^[a-z0-9_-]{1,64}$/;

export const DEFAULT_ROOM = "lobby";

export function isValidRoomName(name: string): boolean {
  return ROOM_NAME.test(name);
}

/**
 * Keeps rooms, and their history, after everyone left. When `maxRooms` is
 * reached, the idle room inactive the longest is closed (its log stays in the
 * store; with the memory store its history, and so its epoch, is gone); when
 * no room is idle, no new room is opened.
 */
export class RoomRegistry {
  #rooms = new Map<string, Room>();
  #opening = new Map<string, Promise<Room | undefined>>();
  #opts: RoomOptions;
  #deps: RoomDeps;
  #maxRooms: number;
  #store: Store;

  constructor(opts: RoomOptions, deps: RoomDeps, maxRooms: number, store: Store = new MemoryStore()) {
    this.#opts = opts;
    this.#deps = deps;
    this.#maxRooms = maxRooms;
    this.#store = store;
  }

  get size(): number {
    return this.#rooms.size;
  }

  get connectionCount(): number {
    let n = 0;
    for (const room of this.#rooms.values()) n += room.connectionCount;
    return n;
  }

  /** The room named `name`, if it is open. */
  peek(name: string): Room | undefined {
    const room = this.#rooms.get(name);
    return room?.defunct ? undefined : room;
  }

  /**
   * The room named `name`, opened from the store if needed; undefined when the
   * room limit is reached. Rejects when the store cannot open the room's log.
   */
  get(name: string): Promise<Room | undefined> {
    if (!isValidRoomName(name)) {
      return Promise.reject(new TypeError(`Cannot open room: invalid name "${name}"`));
    }
    const existing = this.#rooms.get(name);
    if (existing && !existing.defunct) return Promise.resolve(existing);
    // A room whose shared history was reset has closed its connections and log: open it anew.
    if (existing) this.#rooms.delete(name);
    let opening = this.#opening.get(name);
    if (!opening) {
      opening = this.#open(name).finally(() => this.#opening.delete(name));
      this.#opening.set(name, opening);
    }
    return opening;
  }

  async #open(name: string): Promise<Room | undefined> {
    if (this.#rooms.size + this.#opening.size >= this.#maxRooms && !this.#evictOne()) return undefined;
    const { state, log } = await this.#store.open(name, () => this.#deps.ids.epoch());
    const room = new Room(name, this.#opts, this.#deps, state, log);
    this.#rooms.set(name, room);
    this.#deps.log.debug("room_opened", { room: name, epoch: room.epoch, seq: room.seq });
    return room;
  }

  /** The store's kind and health (a shared store can be unreachable for a while). */
  storeHealth(): StoreHealth & { kind: string } {
    return { kind: this.#store.kind, ...(this.#store.health?.() ?? { ok: true }) };
  }

  /** Closes every connection of every room. */
  closeAll(code: number, reason: string): void {
    for (const room of this.#rooms.values()) room.closeAll(code, reason);
  }

  /** Flushes every room's log and closes the store. */
  async closeStore(): Promise<void> {
    await Promise.all([...this.#rooms.values()].map((r) => r.closeLog()));
    await this.#store.close();
  }

  #evictOne(): boolean {
    let victim: Room | undefined;
    for (const room of this.#rooms.values()) {
      if (room.idle && (!victim || room.lastActive < victim.lastActive)) victim = room;
    }
    if (!victim) return false;
    this.#rooms.delete(victim.name);
    void victim.closeLog();
    this.#deps.log.info("room_evicted", { room: victim.name });
    return true;
  }
}
