// Serialises server frames. Portable.

import type { ServerFrame } from "./messages.ts";

/** One JSON text per frame; callers encode a broadcast once and reuse the string. */
export function encodeFrame(frame: ServerFrame): string {
  return JSON.stringify(frame);
}

/** UTF-8 length of a string without encoding it (a lone surrogate counts as U+FFFD, as TextEncoder does). */
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) i++, n += 2;
    else n += 2;
  }
  return n;
}
