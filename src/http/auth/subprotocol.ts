// WebSocket subprotocols: clients offer "shootawall.v1" and may carry a bearer token as
// "bearer.<token>" (browsers can set nothing else on a WebSocket handshake). The server answers
// "shootawall.v1" when offered, and never echoes a bearer entry.

export const PROTOCOL = "shootawall.v1";
export const BEARER_PREFIX = "bearer.";

/** The Sec-WebSocket-Protocol header as a list. */
export function offeredProtocols(header: string | null | undefined): string[] {
  if (!header) return [];
  return header.split(",").map((s) => s.trim()).filter(Boolean);
}

/** What the server answers: shootawall.v1 when offered, else the first offered entry that is not a bearer token. */
export function selectSubprotocol(offered: readonly string[]): string | undefined {
  if (offered.includes(PROTOCOL)) return PROTOCOL;
  return offered.find((p) => !p.toLowerCase().startsWith(BEARER_PREFIX));
}

/** The bearer token among the offered protocols, if any (undefined: none; null: more than one). */
export function bearerToken(offered: readonly string[]): string | null | undefined {
  const tokens = offered.filter((p) => p.toLowerCase().startsWith(BEARER_PREFIX));
  if (tokens.length > 1) return null;
  return tokens[0]?.slice(BEARER_PREFIX.length);
}
