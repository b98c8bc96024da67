// A fake WHATWG-like socket: records what is sent, scripted readyState, throws on demand.

import type { WebSocketLike } from "../../src/core/socket.ts";

export class FakeSocket implements WebSocketLike {
  readyState = 1;
  bufferedAmount = 0;
  sent: string[] = [];
  closedWith: { code?: number; reason?: string } | undefined;
  /** When set, send() throws this error. */
  failWith: Error | undefined;

  send(data: string): void {
    if (this.failWith) throw this.failWith;
    this.sent.push(data);
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  /** Every frame sent so far, parsed. */
  frames(): Array<Record<string, any>> {
    return this.sent.map((s) => JSON.parse(s));
  }

  /** Parsed frames of one type. */
  ofType(type: string): Array<Record<string, any>> {
    return this.frames().filter((f) => f.type === type);
  }

  clear(): void {
    this.sent = [];
  }
}
