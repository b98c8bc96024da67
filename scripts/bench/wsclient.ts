// A lean WebSocket client for the load generator: raw TCP (node:net), hand-written frame parser, no
// permessage-deflate, no per-frame allocation on the receive path. Reads land in one static buffer per
// thread (net's `onread`), so a delivery costs one read() and a scan for our marker, not a Buffer, a
// string and an event. Speaks ShootaWall's protocol (and the peers', which use the same frames) and,
// for the Socket.IO peer, Engine.IO v4 / Socket.IO v5 packets over `/socket.io/?EIO=4&transport=websocket`.

import net from "node:net";
import { randomFillSync } from "node:crypto";

export type Proto = "ours" | "sio";

/** Monotonic microseconds (CLOCK_MONOTONIC: the same clock in every worker thread). */
export function nowUs(): number {
  const t = process.hrtime();
  return t[0] * 1e6 + t[1] / 1e3;
}

/** A chat message as the generator sees it: marker `~id~sendTimeUs~senderIdx~` inside the text. */
export interface Delivery {
  id: number;
  sentUs: number;
  sender: number;
}

export interface ClientHandlers {
  /** First application frame: `welcome` (ours and the bare peers) or the Socket.IO namespace CONNECT. */
  ready(c: RawClient): void;
  /** A chat message carrying a marker, received at `atUs`. */
  delivery(c: RawClient, d: Delivery, atUs: number): void;
  /** The connection ended (or never opened): `why` says how. */
  closed(c: RawClient, why: string): void;
}

const READ_BUF = Buffer.allocUnsafe(256 * 1024);
const TILDE = 0x7e;
const CRLFCRLF = Buffer.from("\r\n\r\n");
const scratch: Delivery = { id: 0, sentUs: 0, sender: 0 };

export class RawClient {
  readonly idx: number;
  readonly proto: Proto;
  readonly sock: net.Socket;
  isReady = false;
  isClosed = false;
  /** Application frames (text) received, markers or not. */
  frames = 0;
  #h: ClientHandlers;
  #handshake = true;
  #carry: Buffer | null = null;

  constructor(idx: number, opts: { host: string; port: number; path: string; localAddress?: string; proto: Proto }, h: ClientHandlers) {
    this.idx = idx;
    this.proto = opts.proto;
    this.#h = h;
    this.sock = net.connect({
      host: opts.host,
      port: opts.port,
      localAddress: opts.localAddress,
      noDelay: true,
      onread: { buffer: READ_BUF, callback: (n: number, buf: Buffer) => (this.#feed(buf, 0, n), true) },
    } as net.NetConnectOpts);
    this.sock.on("connect", () => {
      this.sock.write(
        `GET ${opts.path} HTTP/1.1\r\nHost: ${opts.host}:${opts.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    this.sock.on("error", (err) => this.#end(`error ${(err as NodeJS.ErrnoException).code ?? err.message}`));
    this.sock.on("close", () => this.#end("tcp closed"));
  }

  /** Sends one text frame (masked, as a client must). */
  sendText(text: string): void {
    const len = Buffer.byteLength(text);
    const hdr = len < 126 ? 2 : len < 65536 ? 4 : 10;
    const out = Buffer.allocUnsafe(hdr + 4 + len);
    out[0] = 0x81;
    if (hdr === 2) out[1] = 0x80 | len;
    else if (hdr === 4) (out[1] = 0x80 | 126), out.writeUInt16BE(len, 2);
    else (out[1] = 0x80 | 127), out.writeUInt32BE(0, 2), out.writeUInt32BE(len, 6);
    randomFillSync(out, hdr, 4);
    out.write(text, hdr + 4);
    maskInPlace(out, hdr + 4, hdr);
    this.sock.write(out);
  }

  /** Sends a chat message (ShootaWall frame, or a Socket.IO "message" event). */
  sendChat(text: string, nonce: number): void {
    const body = `{"type":"message","text":${JSON.stringify(text)},"nonce":${nonce}}`;
    this.sendText(this.proto === "sio" ? `42["message",${body}]` : body);
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.sock.destroy();
  }

  #end(why: string): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.sock.destroy();
    this.#h.closed(this, why);
  }

  #control(opcode: number, payload: Buffer): void {
    const out = Buffer.allocUnsafe(6 + payload.length);
    out[0] = 0x80 | opcode;
    out[1] = 0x80 | payload.length;
    randomFillSync(out, 2, 4);
    payload.copy(out, 6);
    maskInPlace(out, 6, 2);
    if (!this.sock.destroyed) this.sock.write(out);
  }

  #feed(buf: Buffer, start: number, end: number): void {
    if (this.#carry) {
      buf = Buffer.concat([this.#carry, buf.subarray(start, end)]);
      this.#carry = null;
      start = 0;
      end = buf.length;
    }
    if (this.#handshake) {
      const at = buf.subarray(start, end).indexOf(CRLFCRLF);
      if (at < 0) {
        this.#carry = Buffer.from(buf.subarray(start, end));
        return;
      }
      const head = buf.toString("latin1", start, start + at);
      if (!head.startsWith("HTTP/1.1 101")) {
        this.#end(`refused: ${head.split("\r\n")[0]}`);
        return;
      }
      this.#handshake = false;
      start += at + 4;
    }
    let atUs = 0;
    let i = start;
    while (end - i >= 2) {
      const b0 = buf[i]!;
      const b1 = buf[i + 1]!;
      let len = b1 & 0x7f;
      let p = i + 2;
      if (len === 126) {
        if (end - i < 4) break;
        len = buf.readUInt16BE(i + 2);
        p = i + 4;
      } else if (len === 127) {
        if (end - i < 10) break;
        len = buf.readUInt32BE(i + 6);
        p = i + 10;
      }
      if (p + len > end) break;
      const opcode = b0 & 0x0f;
      if (opcode === 1 || opcode === 2 || opcode === 0) {
        this.frames++;
        if (atUs === 0) atUs = nowUs();
        this.#text(buf, p, p + len, atUs);
      } else if (opcode === 9) {
        this.#control(0x0a, Buffer.from(buf.subarray(p, p + len)));
      } else if (opcode === 8) {
        this.#control(0x08, Buffer.from(buf.subarray(p, Math.min(p + 2, p + len))));
        this.#end(`closed by server ${len >= 2 ? buf.readUInt16BE(p) : ""}`.trim());
        return;
      }
      i = p + len;
    }
    if (i < end) this.#carry = Buffer.from(buf.subarray(i, end));
  }

  #text(buf: Buffer, p: number, end: number, atUs: number): void {
    if (this.proto === "sio") {
      const c0 = buf[p];
      if (c0 === 0x32 /* "2" ping */ && end - p === 1) return this.sendText("3");
      if (c0 === 0x30 /* "0" open */) return this.sendText("40");
      if (c0 !== 0x34 /* "4" message */) return;
      const c1 = buf[p + 1];
      if (c1 === 0x30 /* "40" connect */) {
        if (!this.isReady) (this.isReady = true), this.#h.ready(this);
        return;
      }
      // `42["message",{...}]`: an event named message
      if (c1 !== 0x32 || buf[p + 4] !== 0x6d) return;
    } else {
      if (!this.isReady) {
        this.isReady = true;
        this.#h.ready(this);
      }
      // `{"type":"message"...`: the 10th byte tells message from welcome/history/announce/ack/error/pong.
      if (buf[p + 9] !== 0x6d || buf[p] !== 0x7b) return;
    }
    let k = buf.indexOf(TILDE, p);
    if (k < 0 || k >= end) return;
    let id = 0, sent = 0, sender = 0, c = 0;
    for (k++; k < end && (c = buf[k]!) !== TILDE; k++) id = id * 10 + (c - 48);
    for (k++; k < end && (c = buf[k]!) !== TILDE; k++) sent = sent * 10 + (c - 48);
    for (k++; k < end && (c = buf[k]!) !== TILDE; k++) sender = sender * 10 + (c - 48);
    if (k >= end) return;
    scratch.id = id;
    scratch.sentUs = sent;
    scratch.sender = sender;
    this.#h.delivery(this, scratch, atUs);
  }
}

function maskInPlace(buf: Buffer, from: number, keyAt: number): void {
  const k0 = buf[keyAt]!, k1 = buf[keyAt + 1]!, k2 = buf[keyAt + 2]!, k3 = buf[keyAt + 3]!;
  for (let i = from, j = 0; i < buf.length; i++, j++) {
    const m = j & 3;
    buf[i] = buf[i]! ^ (m === 0 ? k0 : m === 1 ? k1 : m === 2 ? k2 : k3);
  }
}

/** The marker text of a message: `~id~sendUs~sender~` padded with x to `size` characters. */
export function markerText(id: number, sentUs: number, sender: number, size: number): string {
  const head = `~${id}~${Math.round(sentUs)}~${sender}~`;
  return head.length >= size ? head : head + "x".repeat(size - head.length);
}

/** 127.0.a.b for the n-th connection of the run: at most `perAddr` connections share a source address. */
export function sourceAddress(n: number, perAddr = 8000): string {
  const k = Math.floor(n / perAddr);
  return `127.0.${1 + Math.floor(k / 250)}.${2 + (k % 250)}`;
}

/** Log-bucketed latency histogram (about 2% resolution from 1 µs to 100 s). */
export const HIST_BUCKETS = 1000;
const HIST_K = 1 / Math.log(1.02);
export function histIndex(us: number): number {
  if (us < 1) return 0;
  const b = Math.floor(Math.log(us) * HIST_K);
  return b >= HIST_BUCKETS ? HIST_BUCKETS - 1 : b;
}
export function histValue(b: number): number {
  return Math.exp((b + 0.5) / HIST_K);
}
export function histPercentile(h: ArrayLike<number>, q: number): number {
  let total = 0;
  for (let i = 0; i < h.length; i++) total += h[i]!;
  if (total === 0) return NaN;
  const want = Math.max(1, Math.ceil(total * q));
  let seen = 0;
  for (let i = 0; i < h.length; i++) {
    seen += h[i]!;
    if (seen >= want) return histValue(i);
  }
  return histValue(h.length - 1);
}
