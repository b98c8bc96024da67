// Protocol-level heartbeat for runtimes that do not drop silent peers themselves (Node's ws; Bun, whose
// own idleTimeout only ticks in steps of several seconds). Deno uses its built-in idleTimeout instead.

export interface HeartbeatOptions<S extends object> {
  /** The heartbeat interval: a peer silent for about one interval is terminated. */
  intervalMs: number;
  ping(socket: S): void;
  terminate(socket: S): void;
}

/**
 * Every half interval, each tracked socket that answered the previous ping
 * (a pong, which browsers send even from background tabs) is pinged again;
 * one that did not is terminated. A frozen or half-open peer is therefore
 * gone within one interval of its last pong.
 */
export class Heartbeat<S extends object> {
  #answered = new Map<S, boolean>();
  #killed = new WeakSet<S>();
  #timer: ReturnType<typeof setInterval>;
  #opts: HeartbeatOptions<S>;

  constructor(opts: HeartbeatOptions<S>) {
    this.#opts = opts;
    this.#timer = setInterval(() => this.#sweep(), Math.max(250, opts.intervalMs / 2));
    (this.#timer as { unref?: () => void }).unref?.();
  }

  add(socket: S): void {
    this.#answered.set(socket, true);
  }

  delete(socket: S): void {
    this.#answered.delete(socket);
  }

  /** A pong (or any sign of life) arrived. */
  alive(socket: S): void {
    if (this.#answered.has(socket)) this.#answered.set(socket, true);
  }

  /** True when the heartbeat terminated this socket. */
  killed(socket: S): boolean {
    return this.#killed.has(socket);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #sweep(): void {
    for (const [socket, answered] of this.#answered) {
      if (!answered) {
        this.#answered.delete(socket);
        this.#killed.add(socket);
        try {
          this.#opts.terminate(socket);
        } catch {
          // Already gone.
        }
        continue;
      }
      this.#answered.set(socket, false);
      try {
        this.#opts.ping(socket);
      } catch {
        // Closing already; its close event removes it.
      }
    }
  }
}
