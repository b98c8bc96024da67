// Who a connection is: the ?name= nickname, checked, or a generated guest name.

import type { IdSource } from "../core/deps.ts";

export const MAX_NAME_CHARS = 32;

// Control characters, plus bidirectional overrides that can disguise a name.
const FORBIDDEN = /[\p{Cc}\u202A-\u202E\u2066-\u2069\u200E\u200F\u061C]/u;

export type NameResult = { ok: true; name: string } | { ok: false; message: string };

/** Validates a nickname from `?name=`: trimmed, 1 to 32 characters, no control characters. */
export function checkName(raw: string | undefined, ids: IdSource): NameResult {
  if (raw === undefined) return { ok: true, name: `guest-${ids.guestSuffix()}` };
  const name = raw.trim();
  const length = [...name].length;
  if (length === 0) return { ok: false, message: "Cannot join: name is empty" };
  if (length > MAX_NAME_CHARS) {
    return { ok: false, message: `Cannot join: name is longer than ${MAX_NAME_CHARS} characters` };
  }
  if (FORBIDDEN.test(name)) return { ok: false, message: "Cannot join: name contains control characters" };
  return { ok: true, name };
}
