// The Origin rule, in every mode: a browser may open a socket (or post to /auth/*) only from an
// allowed origin; this is what stops cross-site WebSocket hijacking. No Origin header: a program,
// judged by its credentials alone.

/** ALLOWED_ORIGINS ("https://a.example, http://localhost:3000") -> normalised origins; "" -> [] (same origin). */
export function parseAllowedOrigins(raw: string): string[] | Error {
  const out: string[] = [];
  for (const entry of raw.split(",").map((s) => s.trim()).filter(Boolean)) {
    let url: URL;
    try {
      url = new URL(entry);
    } catch {
      return new Error(`"${entry}" is not an origin like https://chat.example.com`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      return new Error(`"${entry}" is not an http(s) origin`);
    }
    if (url.pathname !== "/" || url.search || url.hash || url.username || url.password) {
      return new Error(`"${entry}" is not an origin: give scheme, host and port only`);
    }
    out.push(url.origin);
  }
  return out;
}

export interface RequestPlace {
  /** The request's own URL (its scheme, and host when there is no Host header). */
  url: string;
  /** The Host header. */
  host?: string;
  /** X-Forwarded-Proto, from a TLS-terminating proxy. */
  forwardedProto?: string;
}

export type OriginVerdict = { ok: true } | { ok: false; message: string };

/**
 * Judges a request's Origin header. With no allowed list, the origin must be the request's own
 * (same host and port as the Host header, same scheme as the request or its X-Forwarded-Proto).
 */
export function checkOrigin(origin: string | undefined, allowed: readonly string[], place: RequestPlace): OriginVerdict {
  if (origin === undefined) return { ok: true };
  const refused = {
    ok: false as const,
    message: `Forbidden: origin ${JSON.stringify(origin.slice(0, 200))} is not allowed to connect (see ALLOWED_ORIGINS)`,
  };
  let o: URL;
  try {
    o = new URL(origin);
  } catch {
    return refused; // includes "null" (sandboxed frames, file: pages)
  }
  if (o.protocol !== "http:" && o.protocol !== "https:") return refused;
  if (allowed.length > 0) return allowed.includes(o.origin) ? { ok: true } : refused;
  let self: URL;
  try {
    self = new URL(place.url);
    if (place.host) self = new URL(`${self.protocol}//${place.host}`);
  } catch {
    return refused;
  }
  const schemes = new Set([self.protocol]);
  const fwd = place.forwardedProto?.split(",")[0]?.trim().toLowerCase();
  if (fwd === "https" || fwd === "http") schemes.add(`${fwd}:`);
  const selfHost = (proto: string) => new URL(`${proto}//${self.host}`).host; // default ports normalised
  return schemes.has(o.protocol) && o.host === selfHost(o.protocol) ? { ok: true } : refused;
}
