// Serialises server frames. Portable.

import type { ServerFrame } from "./messages.ts";

/** One JSON text per frame; callers encode a broadcast once and reuse the string. */
export function encodeFrame(frame: ServerFrame): string {
  return JSON.stringify(frame);
}
