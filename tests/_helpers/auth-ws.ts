// A `ws` client for tests that must send headers (Origin, Cookie) or offer subprotocols, and read
// a refused upgrade's status and body.

import WebSocket from "ws";

export interface Frame {
  type: string;
  [key: string]: unknown;
}

export interface Conn {
  ws: WebSocket;
  frames: Frame[];
  next(type: string, timeoutMs?: number): Promise<Frame>;
  closed: Promise<{ code: number; reason: string }>;
}

/** A `ws` client that can offer subprotocols and send headers (Origin, Cookie). */
export function openWs(url: string, opts: { protocols?: string[]; headers?: Record<string, string> } = {}): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts.protocols ?? [], { headers: opts.headers, handshakeTimeout: 5000 });
    const frames: Frame[] = [];
    let read = 0;
    const closed = new Promise<{ code: number; reason: string }>((res) =>
      ws.once("close", (code, reason) => res({ code, reason: reason.toString() }))
    );
    ws.on("message", (d) => frames.push(JSON.parse(d.toString()) as Frame));
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c));
      res.on("end", () => {
        reject(Object.assign(new Error(`HTTP ${res.statusCode}: ${body}`), { status: res.statusCode, body }));
        ws.terminate();
      });
    });
    ws.once("error", reject);
    ws.once("open", () =>
      resolve({
        ws,
        frames,
        closed,
        async next(type, timeoutMs = 5000) {
          const end = Date.now() + timeoutMs;
          for (;;) {
            while (read < frames.length) {
              const f = frames[read++]!;
              if (f.type === type) return f;
            }
            if (ws.readyState === WebSocket.CLOSED) throw new Error(`closed while waiting for ${type}`);
            if (Date.now() > end) throw new Error(`no ${type} within ${timeoutMs} ms: ${JSON.stringify(frames.slice(-3))}`);
            await new Promise((r) => setTimeout(r, 10));
          }
        },
      })
    );
  });
}
