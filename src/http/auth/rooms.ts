// Which rooms an identity may join: exact room names or patterns with "*" (e.g. "team-*", "*").

/** A room name or a pattern: 1 to 64 of a-z, 0-9, "-", "_" and "*". */
export const ROOM_PATTERN = /^[a-z0-9_*-]{1,64}$/;

/** At most this many entries in a `rooms` list. */
export const MAX_ROOM_PATTERNS = 100;

const compiled = new Map<string, RegExp>();

function toRegExp(pattern: string): RegExp {
  let re = compiled.get(pattern);
  if (!re) {
    // Only a-z 0-9 - _ and * can appear, so nothing else needs escaping.
    re = new RegExp(`^${pattern.replaceAll("*", "[a-z0-9_-]*")}$`);
    if (compiled.size > 1000) compiled.clear();
    compiled.set(pattern, re);
  }
  return re;
}

/** True when `room` matches one of `patterns`; no list at all means every room. */
export function roomAllowed(patterns: readonly string[] | undefined, room: string): boolean {
  if (patterns === undefined) return true;
  return patterns.some((p) => p === room || (p.includes("*") && ROOM_PATTERN.test(p) && toRegExp(p).test(room)));
}

/** Checks a `rooms` list from a token or the users file; returns it, or a message saying what is wrong. */
export function checkRoomList(value: unknown): readonly string[] | string {
  if (!Array.isArray(value)) return "must be an array of room names or patterns";
  if (value.length > MAX_ROOM_PATTERNS) return `has more than ${MAX_ROOM_PATTERNS} entries`;
  for (const p of value) {
    if (typeof p !== "string" || !ROOM_PATTERN.test(p)) {
      return "entries must be 1 to 64 of a-z, 0-9, \"-\", \"_\" and \"*\"";
    }
  }
  return value as string[];
}

/** "lobby, team-*" -> ["lobby", "team-*"]; a message when an entry is invalid. */
export function parseRoomList(raw: string): readonly string[] | string {
  return checkRoomList(raw.split(",").map((s) => s.trim()).filter(Boolean));
}
