// RoomRegistry: rooms by name, created on demand, bounded in number. Portable.

import { Room, type RoomDeps, type RoomOptions } from "./room.ts";

/** Room names: 1 to 64 of a-z, 0-9, "-" and "_". */
export const ROOM_NAME = /^[a-z0-9_-]{1,64}$/;

export const DEFAULT_ROOM = "lobby";

export function isValidRoomName(name: string): boolean {
  return ROOM_NAME.test(name);
}

/**
 * Keeps rooms, and their history, after everyone left. When `maxRooms` is
 * reached, the idle room inactive the longest is forgotten (its epoch then
 * changes if it is created again); when no room is idle, no new room is made.
 */
export class RoomRegistry {
  #rooms = new Map<string, Room>();
  #opts: RoomOptions;
  #deps: RoomDeps;
  #maxRooms: number;

  constructor(opts: RoomOptions, deps: RoomDeps, maxRooms: number) {
    this.#opts = opts;
    this.#deps = deps;
    this.#maxRooms = maxRooms;
  }

  get size(): number {
    return this.#rooms.size;
  }

  get connectionCount(): number {
    let n = 0;
    for (const room of this.#rooms.values()) n += room.connectionCount;
    return n;
  }

  /** The room named `name`, if it exists. */
  peek(name: string): Room | undefined {
    return this.#rooms.get(name);
  }

  /** The room named `name`, made if needed; undefined when the room limit is reached. */
  get(name: string): Room | undefined {
    if (!isValidRoomName(name)) {
      throw new TypeError(`Cannot open room: invalid name "${name}"`);
    }
    const existing = this.#rooms.get(name);
    if (existing) return existing;
    if (this.#rooms.size >= this.#maxRooms && !this.#evictOne()) return undefined;
    const room = new Room(name, this.#opts, this.#deps);
    this.#rooms.set(name, room);
    this.#deps.log.debug("room_created", { room: name, epoch: room.epoch });
    return room;
  }

  /** Closes every connection of every room. */
  closeAll(code: number, reason: string): void {
    for (const room of this.#rooms.values()) room.closeAll(code, reason);
  }

  #evictOne(): boolean {
    let victim: Room | undefined;
    for (const room of this.#rooms.values()) {
      if (room.idle && (!victim || room.lastActive < victim.lastActive)) victim = room;
    }
    if (!victim) return false;
    this.#rooms.delete(victim.name);
    this.#deps.log.info("room_evicted", { room: victim.name });
    return true;
  }
}
