// Checks a WebSocket upgrade request before any runtime sees it (Deno answers 101 to bad keys otherwise).

export type HandshakeResult =
  | { ok: true }
  | { ok: false; status: 400 | 426; message: string; headers?: Record<string, string> };

// 16 random bytes in base64 is 22 characters and "==".
const KEY = /^[A-Za-z0-9+/]{22}==$/;

function hasToken(header: string | undefined, token: string): boolean {
  if (!header) return false;
  // The usual single value needs no split.
  if (header.length === token.length) return header.toLowerCase() === token;
  return header.split(",").some((t) => t.trim().toLowerCase() === token);
}

/** RFC 6455 section 4.2.1 checks on the request headers. */
export function checkHandshake(headers: Headers): HandshakeResult {
  const upgrade = headers.get("upgrade");
  if (!hasToken(upgrade ?? undefined, "websocket")) {
    return {
      ok: false,
      status: 426,
      message: "Upgrade required: this endpoint speaks WebSocket only; connect with a WebSocket client",
      headers: { Upgrade: "websocket" },
    };
  }
  if (!hasToken(headers.get("connection") ?? undefined, "upgrade")) {
    return { ok: false, status: 400, message: "Bad handshake: the Connection header must include \"Upgrade\"" };
  }
  const version = headers.get("sec-websocket-version");
  if (version?.trim() !== "13") {
    return {
      ok: false,
      status: 426,
      message: "Bad handshake: Sec-WebSocket-Version must be 13",
      headers: { "Sec-WebSocket-Version": "13" },
    };
  }
  const key = headers.get("sec-websocket-key");
  if (!key || !KEY.test(key.trim())) {
    return { ok: false, status: 400, message: "Bad handshake: Sec-WebSocket-Key must be 16 bytes in base64" };
  }
  return { ok: true };
}
