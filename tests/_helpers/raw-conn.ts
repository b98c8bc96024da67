// One raw TCP exchange that tells how it ended (the server's reply, FIN, RST, or still open at the
// deadline) and when, for requests no HTTP client would send.

import net from "node:net";

export interface Exchange {
  /** The first line of the reply, "" if none. */
  statusLine: string;
  /** The HTTP status, 0 if the reply was not HTTP or there was none. */
  status: number;
  /** Every byte received. */
  reply: Buffer;
  /**
   * "end": the server closed (FIN); "reset": ECONNRESET/EPIPE; "open": still open at the deadline;
   * "replied": a complete response arrived and `untilReply` was set (the connection may have stayed open).
   */
  ended: "end" | "reset" | "error" | "open" | "replied";
  /** ms from connect to the end of the connection (or to the deadline when still open). */
  ms: number;
  /** ms from connect to the first reply byte, if any. */
  firstByteMs?: number;
  /** Bytes of the request written before the connection ended. */
  written: number;
}

export interface ExchangeOptions {
  /** Give up (and destroy the socket) after this long. */
  deadlineMs: number;
  /** Written piece by piece, `intervalMs` apart (slowloris); otherwise all at once. */
  intervalMs?: number;
  /** Source address (any 127.x.y.z works on Linux loopback). */
  localAddress?: string;
  /** Stop as soon as one complete response (head and Content-Length body) has arrived. */
  untilReply?: boolean;
}

/** True once `reply` holds a whole HTTP response head and its Content-Length body. */
function complete(reply: Buffer): boolean {
  const end = reply.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(reply.subarray(0, end).toString("latin1"));
  return reply.length - (end + 4) >= Number(length?.[1] ?? 0);
}

/** Connects, writes `pieces` (one by one when `intervalMs` is set), and reads until the server ends it. */
export function exchange(
  port: number,
  pieces: Array<string | Buffer>,
  opts: ExchangeOptions,
): Promise<Exchange> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: "127.0.0.1", localAddress: opts.localAddress });
    const chunks: Buffer[] = [];
    let started = Date.now();
    let firstByteMs: number | undefined;
    let written = 0;
    let done = false;
    let writer: NodeJS.Timeout | undefined;
    const finish = (ended: Exchange["ended"]) => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      clearTimeout(writer);
      const ms = Date.now() - started;
      socket.destroy();
      const reply = Buffer.concat(chunks);
      const firstLine = reply.subarray(0, Math.max(0, reply.indexOf("\r\n"))).toString("latin1");
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(firstLine);
      resolve({
        statusLine: firstLine,
        status: m ? Number(m[1]) : 0,
        reply,
        ended,
        ms,
        firstByteMs,
        written,
      });
    };
    const deadline = setTimeout(() => finish("open"), opts.deadlineMs);
    socket.on("data", (d: Buffer) => {
      firstByteMs ??= Date.now() - started;
      chunks.push(d);
      if (opts.untilReply && complete(Buffer.concat(chunks))) finish("replied");
    });
    socket.on("end", () => finish("end"));
    socket.on("close", () => finish("end"));
    socket.on(
      "error",
      (err: NodeJS.ErrnoException) =>
        finish(err.code === "ECONNRESET" || err.code === "EPIPE" ? "reset" : "error"),
    );
    socket.on("connect", () => {
      started = Date.now();
      if (opts.intervalMs === undefined) {
        for (const p of pieces) {
          socket.write(p, () => {});
          written += Buffer.byteLength(p);
        }
        return;
      }
      let i = 0;
      const step = () => {
        if (done || socket.destroyed || i >= pieces.length) return;
        const p = pieces[i++]!;
        socket.write(p, () => {});
        written += Buffer.byteLength(p);
        writer = setTimeout(step, opts.intervalMs);
      };
      step();
    });
  });
}

/**
 * GET `path` on a fresh connection with `Connection: close` (no pooled keep-alive connection that
 * the server may be closing at that very moment): status and body.
 */
export async function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  const r = await exchange(port, [`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`], {
    deadlineMs: 3000,
  });
  const end = r.reply.indexOf("\r\n\r\n");
  if (end < 0 || r.ended === "open") {
    throw new Error(
      `GET ${path}: no complete reply (${r.statusLine || "nothing"}, connection ${r.ended} after ${r.ms} ms)`,
    );
  }
  let body = r.reply.subarray(end + 4);
  if (/\r\ntransfer-encoding:\s*chunked/i.test(r.reply.subarray(0, end).toString("latin1"))) {
    const parts: Buffer[] = [];
    for (let at = 0; at < body.length;) {
      const eol = body.indexOf("\r\n", at);
      const size = parseInt(body.subarray(at, eol).toString("latin1"), 16);
      if (!(size > 0)) break;
      parts.push(body.subarray(eol + 2, eol + 2 + size));
      at = eol + 2 + size + 2;
    }
    body = Buffer.concat(parts);
  }
  return { status: r.status, body: body.toString("utf8") };
}

/** GET /healthz: status and parsed body. */
export async function health(
  port: number,
): Promise<{ status: number; body: { connections?: number; [k: string]: unknown } }> {
  const r = await httpGet(port, "/healthz");
  return { status: r.status, body: (r.status === 200 ? JSON.parse(r.body) : {}) as { connections?: number } };
}

/** The value of one unlabelled metric from /metrics. */
export async function metric(port: number, name: string): Promise<number | undefined> {
  const r = await httpGet(port, "/metrics");
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(r.body);
  return m ? Number(m[1]) : undefined;
}
