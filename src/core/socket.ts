// The slice of the WHATWG WebSocket the core needs, and close codes. Portable.

/**
 * What the Room needs from a socket. The WHATWG `WebSocket` (Deno), `ws`'s
 * `WebSocket` (Node) and Bun's `ServerWebSocket` all fit it as they are.
 */
export interface WebSocketLike {
  readonly readyState: number;
  /** Bytes queued but not yet sent, where the runtime reports it. */
  readonly bufferedAmount?: number;
  send(data: string): unknown;
  close(code?: number, reason?: string): void;
}

export const OPEN = 1;

/** Close codes of wire contract v1. */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  policy: 1008,
  tooBig: 1009,
  internal: 1011,
  overloaded: 1013,
} as const;

/**
 * Close a socket without ever throwing: a socket that is already closing or
 * broken is left alone (partyserver's closeQuietly).
 */
export function closeQuietly(socket: WebSocketLike, code: number, reason: string): void {
  try {
    if (socket.readyState <= OPEN) socket.close(code, reason);
  } catch {
    // The socket is already gone; nothing more to do.
  }
}
