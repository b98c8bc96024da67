// Counters and a histogram for /metrics, kept off the per-socket path: one update per broadcast. Portable.

/** Reasons a connection left, for `shootawall_closes_total`. */
export type CloseReason =
  | "client"
  | "heartbeat"
  | "slow_consumer"
  | "rate_limit"
  | "too_big"
  | "send_failed"
  | "error"
  | "shutdown"
  | "token_expired"
  | "logged_out"
  | "reset";

/** Fixed-bucket histogram (cumulative counts rendered at scrape time). */
export class Histogram {
  readonly bounds: readonly number[];
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Array(bounds.length).fill(0);
  }

  observe(value: number): void {
    this.sum += value;
    this.count++;
    for (let i = 0; i < this.bounds.length; i++) {
      if (value <= (this.bounds[i] as number)) {
        this.counts[i] = (this.counts[i] as number) + 1;
        return;
      }
    }
  }
}

/** Everything the server counts. Gauges (connections, rooms) are read from the registry at scrape time. */
export class Metrics {
  /** Frames received from clients (any kind). */
  framesIn = 0;
  /** Chat messages accepted and broadcast. */
  messagesIn = 0;
  /** Frames delivered to sockets (a broadcast to n sockets counts n). */
  framesOut = 0;
  /** Bytes handed to sockets (UTF-8). */
  bytesOut = 0;
  /** Error frames sent, by code. */
  errors = new Map<string, number>();
  /** Connections closed, by reason. */
  closes = new Map<string, number>();
  /** Upgrades refused before the WebSocket existed, by reason. */
  rejectedUpgrades = new Map<string, number>();
  /** Seconds one broadcast took to hand a frame to every socket of a room. */
  fanout = new Histogram([0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1]);

  static bump(map: Map<string, number>, key: string, by = 1): void {
    map.set(key, (map.get(key) ?? 0) + by);
  }
}
