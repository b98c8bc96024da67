// Sends raw bytes over TCP (node:net) and collects the reply: for handshakes no WebSocket client would send.

import net from "node:net";

export interface RawReply {
  statusLine: string;
  status: number;
  headers: Record<string, string>;
  /** Everything after the header block (may include WebSocket frames). */
  rest: Buffer;
}

/** Writes `request` and reads until the peer closes or `waitMs` passes. */
export function rawRequest(port: number, request: string | Buffer, waitMs = 1500): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(request));
    const chunks: Buffer[] = [];
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      const all = Buffer.concat(chunks);
      const end = all.indexOf("\r\n\r\n");
      const head = (end >= 0 ? all.subarray(0, end) : all).toString("latin1");
      const [statusLine = "", ...lines] = head.split("\r\n");
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const i = line.indexOf(":");
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({
        statusLine,
        status: Number(statusLine.split(" ")[1] ?? 0),
        headers,
        rest: end >= 0 ? all.subarray(end + 4) : Buffer.alloc(0),
      });
    };
    const timer = setTimeout(finish, waitMs);
    socket.on("data", (d) => chunks.push(d));
    socket.on("end", finish);
    socket.on("close", finish);
    socket.on("error", (err) => {
      clearTimeout(timer);
      if (chunks.length) finish();
      else reject(err);
    });
  });
}

/** A GET with the given headers (Host added), as raw text. */
export function rawGet(path: string, headers: Record<string, string>): string {
  const lines = [`GET ${path} HTTP/1.1`, "Host: 127.0.0.1"];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  return `${lines.join("\r\n")}\r\n\r\n`;
}

export const UPGRADE_HEADERS = {
  Upgrade: "websocket",
  Connection: "Upgrade",
  "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
  "Sec-WebSocket-Version": "13",
};

/**
 * Completes a WebSocket handshake over raw TCP, then stops reading for good:
 * a peer whose receive window fills up, as a stalled client would. (A `ws`
 * client cannot do this: it resumes its socket whenever it has parsed data.)
 */
export function openStalledSocket(port: number, path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(rawGet(path, UPGRADE_HEADERS)));
    socket.setNoDelay(true);
    socket.once("data", (d: Buffer) => {
      if (!d.toString("latin1").startsWith("HTTP/1.1 101")) {
        socket.destroy();
        reject(new Error(`upgrade refused: ${d.toString("latin1").split("\r\n")[0]}`));
        return;
      }
      socket.pause();
      resolve(socket);
    });
    socket.on("error", () => {});
  });
}
