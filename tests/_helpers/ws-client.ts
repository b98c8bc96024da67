// A test WebSocket client (the `ws` package, so it runs on Node 20 too) that queues frames for reading in order.

import WebSocket from "ws";

export interface Frame {
  type: string;
  [key: string]: unknown;
}

export interface TestClient {
  ws: WebSocket;
  /** Every parsed frame received so far, in order. */
  frames: Frame[];
  /** The next unread frame (of `type`, skipping others when given); rejects after `timeoutMs`. */
  next(type?: string, timeoutMs?: number): Promise<Frame>;
  /** Resolves true if no unread frame (of `type`) arrives within `ms`. */
  quiet(ms: number, type?: string): Promise<boolean>;
  send(frame: unknown): void;
  sendRaw(data: string | Buffer, binary?: boolean): void;
  /** Resolves with the close code once the socket is closed. */
  closed: Promise<{ code: number; reason: string }>;
  close(code?: number): Promise<{ code: number; reason: string }>;
}

export interface ConnectResult {
  status: number;
  body: string;
}

/** Opens a socket and waits for it to be open (rejects with the HTTP status if refused). */
export function connect(url: string, options: WebSocket.ClientOptions = {}): Promise<TestClient> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { handshakeTimeout: 5000, ...options });
    const frames: Frame[] = [];
    let read = 0;
    let wake: (() => void) | undefined;
    const closed = new Promise<{ code: number; reason: string }>((res) =>
      ws.once("close", (code, reason) => {
        res({ code, reason: reason.toString() });
        wake?.();
      })
    );
    ws.on("message", (data, isBinary) => {
      if (isBinary) frames.push({ type: "(binary)" });
      else {
        // A frame that is not JSON is recorded (and fails the test that reads it) instead of throwing here.
        try {
          frames.push(JSON.parse(data.toString()) as Frame);
        } catch {
          frames.push({ type: "(not json)", raw: data.toString() });
        }
      }
      wake?.();
    });
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => reject(Object.assign(new Error(`HTTP ${res.statusCode}: ${body}`), { status: res.statusCode, body })));
    });
    ws.once("error", (err) => reject(err));
    ws.once("open", () => {
      const take = (type?: string): Frame | undefined => {
        while (read < frames.length) {
          const f = frames[read++]!;
          if (!type || f.type === type) return f;
        }
        return undefined;
      };
      const client: TestClient = {
        ws,
        frames,
        async next(type, timeoutMs = 5000) {
          const deadline = Date.now() + timeoutMs;
          for (;;) {
            const f = take(type);
            if (f) return f;
            if (ws.readyState === WebSocket.CLOSED) throw new Error(`socket closed while waiting for ${type ?? "a frame"}`);
            const left = deadline - Date.now();
            if (left <= 0) throw new Error(`no ${type ?? "frame"} within ${timeoutMs} ms; got ${JSON.stringify(frames.slice(-5))}`);
            await new Promise<void>((r) => {
              const t = setTimeout(r, left);
              wake = () => {
                clearTimeout(t);
                r();
              };
            });
          }
        },
        async quiet(ms, type) {
          const before = read;
          await new Promise((r) => setTimeout(r, ms));
          const unread = frames.slice(before);
          return !unread.some((f) => !type || f.type === type);
        },
        send(frame) {
          ws.send(JSON.stringify(frame));
        },
        sendRaw(data, binary = false) {
          ws.send(data, { binary });
        },
        closed,
        close(code = 1000) {
          if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(code);
          return closed;
        },
      };
      resolve(client);
    });
  });
}
