// HistoryBuffer: a fixed-capacity ring of recent items, oldest first. Portable.

/** Keeps the last `capacity` items pushed; memory never grows past that. */
export class HistoryBuffer<T> {
  readonly capacity: number;
  #items: (T | undefined)[];
  #start = 0;
  #size = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`Cannot create history: capacity must be a positive integer, got "${capacity}"`);
    }
    this.capacity = capacity;
    this.#items = new Array(capacity);
  }

  get size(): number {
    return this.#size;
  }

  push(item: T): void {
    const end = (this.#start + this.#size) % this.capacity;
    this.#items[end] = item;
    if (this.#size < this.capacity) this.#size++;
    else this.#start = (this.#start + 1) % this.capacity;
  }

  /** The last `n` items (all when `n` exceeds the size), oldest first. */
  last(n: number): T[] {
    const count = Math.max(0, Math.min(n, this.#size));
    const out: T[] = new Array(count);
    const from = this.#size - count;
    for (let i = 0; i < count; i++) {
      out[i] = this.#items[(this.#start + from + i) % this.capacity] as T;
    }
    return out;
  }

  /** The oldest item still kept, if any. */
  first(): T | undefined {
    return this.#size === 0 ? undefined : this.#items[this.#start];
  }
}
