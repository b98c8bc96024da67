// RFC 6455 frames by hand (encode with or without a mask, parse what a server sends), and a raw
// WebSocket connection over node:net that sends whatever bytes a test wants after the handshake.

import { randomBytes } from "node:crypto";
import net from "node:net";

export const Opcode = {
  continuation: 0x0,
  text: 0x1,
  binary: 0x2,
  close: 0x8,
  ping: 0x9,
  pong: 0xa,
} as const;

export interface FrameSpec {
  opcode: number;
  payload?: Buffer | string;
  fin?: boolean;
  /** RSV1..RSV3 as a 3-bit number (RSV1 = 0b100). */
  rsv?: number;
  /** true: a random mask (what a client must send); a Buffer: that 4-byte mask; false: unmasked. */
  mask?: boolean | Buffer;
  /** Claimed payload length in the header, when it should differ from the payload actually given. */
  declaredLength?: number;
}

/** One frame as bytes on the wire. */
export function encodeFrame(spec: FrameSpec): Buffer {
  const payload = typeof spec.payload === "string"
    ? Buffer.from(spec.payload, "utf8")
    : (spec.payload ?? Buffer.alloc(0));
  const length = spec.declaredLength ?? payload.length;
  const mask = spec.mask === false ? undefined : Buffer.isBuffer(spec.mask) ? spec.mask : randomBytes(4);
  const head: number[] = [
    ((spec.fin ?? true) ? 0x80 : 0) | (((spec.rsv ?? 0) & 0b111) << 4) | (spec.opcode & 0x0f),
  ];
  const maskBit = mask ? 0x80 : 0;
  let ext: Buffer;
  if (length < 126) {
    head.push(maskBit | length);
    ext = Buffer.alloc(0);
  } else if (length < 0x10000) {
    head.push(maskBit | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(length);
  } else {
    head.push(maskBit | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(BigInt(length));
  }
  const body = Buffer.from(payload);
  if (mask) { for (let i = 0; i < body.length; i++) body[i] = body[i]! ^ mask[i & 3]!; }
  return Buffer.concat([Buffer.from(head), ext, mask ?? Buffer.alloc(0), body]);
}

export interface ParsedFrame {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** Splits a byte stream into frames; keeps an incomplete tail for the next push. */
export class FrameParser {
  #buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): ParsedFrame[] {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
    const out: ParsedFrame[] = [];
    for (;;) {
      const b = this.#buf;
      if (b.length < 2) break;
      const masked = (b[1]! & 0x80) !== 0;
      let len = b[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      const maskKey = masked ? b.subarray(off, off + 4) : undefined;
      if (masked) off += 4;
      if (b.length < off + len) break;
      const payload = Buffer.from(b.subarray(off, off + len));
      if (maskKey) { for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ maskKey[i & 3]!; }
      out.push({
        fin: (b[0]! & 0x80) !== 0,
        rsv: (b[0]! >> 4) & 0b111,
        opcode: b[0]! & 0x0f,
        masked,
        payload,
      });
      this.#buf = b.subarray(off + len);
    }
    return out;
  }
}

/** The status code of a close frame (1005 when it has none). */
export function closeCodeOf(frame: ParsedFrame): number {
  return frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005;
}

export function closeReasonOf(frame: ParsedFrame): string {
  return frame.payload.length > 2 ? frame.payload.subarray(2).toString("utf8") : "";
}

export interface RawWsOptions {
  /** Path and query, e.g. "/ws/room?name=x". */
  path: string;
  localAddress?: string;
  timeoutMs?: number;
}

export interface CloseObservation {
  /** Close code of the first close frame the server sent, or null if none came. */
  code: number | null;
  reason: string;
  /** How the TCP connection ended: "end" (FIN), "reset" (ECONNRESET), "open" (still open at the deadline). */
  tcp: "end" | "reset" | "error" | "open";
  /** ms from `since` to the close frame (or TCP end when no close frame came). */
  ms: number;
}

/** A WebSocket connection whose client side is written by hand. */
export class RawWs {
  readonly socket: net.Socket;
  readonly frames: ParsedFrame[] = [];
  statusLine = "";
  headers: Record<string, string> = {};
  /** Set once the TCP connection ended (FIN, RST or error), with the time. */
  ended: { how: "end" | "reset" | "error"; at: number } | undefined;
  closeFrameAt: number | undefined;
  #parser = new FrameParser();
  #head: Buffer = Buffer.alloc(0);
  #upgraded = false;
  #waiters = new Set<() => void>();

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.on("end", () => this.#end("end"));
    socket.on("close", () => this.#end("end"));
    socket.on(
      "error",
      (err: NodeJS.ErrnoException) => this.#end(err.code === "ECONNRESET" ? "reset" : "error"),
    );
  }

  /** Connects, sends a valid upgrade request, and waits for the 101 (rejects on anything else). */
  static async open(port: number, opts: RawWsOptions): Promise<RawWs> {
    const socket = net.connect({ port, host: "127.0.0.1", localAddress: opts.localAddress });
    const raw = new RawWs(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    socket.write(
      `GET ${opts.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    const ok = await raw.waitUntil(() => raw.#upgraded || raw.ended !== undefined, opts.timeoutMs ?? 5000);
    if (!ok || !raw.#upgraded) {
      socket.destroy();
      throw new Error(
        `raw upgrade failed: ${raw.statusLine || raw.#head.toString("latin1").slice(0, 200) || "no reply"}`,
      );
    }
    if (!/^HTTP\/1\.1 101 /.test(raw.statusLine)) {
      socket.destroy();
      throw new Error(`raw upgrade answered ${raw.statusLine}`);
    }
    return raw;
  }

  #onData(chunk: Buffer): void {
    if (!this.#upgraded) {
      this.#head = Buffer.concat([this.#head, chunk]);
      const end = this.#head.indexOf("\r\n\r\n");
      if (end < 0) return;
      const [status = "", ...lines] = this.#head.subarray(0, end).toString("latin1").split("\r\n");
      this.statusLine = status;
      for (const line of lines) {
        const i = line.indexOf(":");
        if (i > 0) this.headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      this.#upgraded = true;
      chunk = this.#head.subarray(end + 4);
      if (!chunk.length) return this.#wake();
    }
    for (const f of this.#parser.push(chunk)) {
      this.frames.push(f);
      if (f.opcode === Opcode.close && this.closeFrameAt === undefined) this.closeFrameAt = Date.now();
    }
    this.#wake();
  }

  #end(how: "end" | "reset" | "error"): void {
    if (!this.ended) this.ended = { how, at: Date.now() };
    this.#wake();
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Resolves true once `cond()` holds, false after `timeoutMs`. */
  waitUntil(cond: () => boolean, timeoutMs: number): Promise<boolean> {
    if (cond()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = () => {
        if (!cond()) return;
        done(true);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      const done = (v: boolean) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve(v);
      };
      this.#waiters.add(check);
    });
  }

  /** Text frames received so far, parsed as JSON where possible. */
  texts(): Array<{ type?: string; [k: string]: unknown }> {
    return this.frames.filter((f) => f.opcode === Opcode.text).map((f) => {
      try {
        return JSON.parse(f.payload.toString("utf8")) as { type?: string };
      } catch {
        return { type: "(not json)", raw: f.payload.toString("utf8") };
      }
    });
  }

  /** Waits for a text frame of JSON `type`. */
  waitForType(type: string, timeoutMs = 5000): Promise<boolean> {
    return this.waitUntil(() => this.texts().some((t) => t.type === type), timeoutMs);
  }

  write(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes, () => {});
  }

  send(spec: FrameSpec): void {
    this.write(encodeFrame(spec));
  }

  /**
   * Waits up to `timeoutMs` for the server to end the connection (close frame and/or TCP close);
   * returns what it saw. Answers a server close frame with an echo, as a client should.
   */
  async observeClose(since: number, timeoutMs = 5000): Promise<CloseObservation> {
    // Once a close frame came, allow a short while for the TCP close that should follow.
    await this.waitUntil(() => this.ended !== undefined || this.closeFrameAt !== undefined, timeoutMs);
    const close = this.frames.find((f) => f.opcode === Opcode.close);
    if (close && !this.ended) {
      this.send({ opcode: Opcode.close, payload: close.payload.subarray(0, 2), mask: true });
      await this.waitUntil(() => this.ended !== undefined, 2000);
    }
    return {
      code: close ? closeCodeOf(close) : null,
      reason: close ? closeReasonOf(close) : "",
      tcp: this.ended?.how ?? "open",
      ms: (this.closeFrameAt ?? this.ended?.at ?? Date.now()) - since,
    };
  }

  destroy(): void {
    this.socket.destroy();
  }
}
