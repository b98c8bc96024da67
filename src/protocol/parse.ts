// Parses and validates client frames with a schema: size first, then JSON, then shape. Portable.

import * as v from "valibot";
import { utf8Length } from "./encode.ts";
import type { ClientFrame, ErrorCode, Nonce } from "./messages.ts";

export interface ParseLimits {
  /** Longest chat text, in characters (Unicode code points). */
  maxText: number;
  /** Largest frame accepted, in bytes (UTF-8 for text). */
  maxFrameBytes: number;
}

export type ParseResult =
  | { ok: true; value: ClientFrame }
  | { ok: false; code: ErrorCode; message: string; nonce?: Nonce };

const FORBIDDEN_KEYS = new Set(["__proto__", "constructor", "prototype"]);

const NonceSchema = v.union([
  v.pipe(v.string(), v.minLength(1), v.maxLength(128)),
  v.pipe(v.number(), v.safeInteger()),
]);

const schemaCache = new Map<number, v.GenericSchema<unknown, ClientFrame>>();

function clientSchema(maxText: number): v.GenericSchema<unknown, ClientFrame> {
  let schema = schemaCache.get(maxText);
  if (schema) return schema;
  schema = v.variant("type", [
    v.strictObject({
      type: v.literal("message"),
      text: v.pipe(
        v.string("field \"text\" must be a string"),
        v.check((t) => t.trim().length > 0, "field \"text\" is empty"),
        v.check(
          (t) => codePoints(t, maxText + 1) <= maxText,
          `field "text" is longer than ${maxText} characters`,
        ),
      ),
      nonce: v.optional(NonceSchema),
    }),
    v.strictObject({ type: v.literal("ping") }),
    v.strictObject({
      type: v.literal("auth"),
      token: v.pipe(v.string("field \"token\" must be a string"), v.minLength(1, "field \"token\" is empty"), v.maxLength(8192, "field \"token\" is too long")),
    }),
  ]) as v.GenericSchema<unknown, ClientFrame>;
  schemaCache.set(maxText, schema);
  return schema;
}

/** Counts code points, stopping early once `stop` is reached. */
function codePoints(text: string, stop: number): number {
  let n = 0;
  for (let i = 0; i < text.length && n < stop; i++, n++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
  }
  return n;
}

/**
 * The size in bytes of a received frame, or of as much of it as it takes to
 * pass `limit` (a text frame's UTF-8 length is at least its UTF-16 length
 * and at most three times it, so most frames need no encoding).
 */
export function frameBytes(data: unknown, limit: number): number {
  if (typeof data === "string") {
    if (data.length > limit || data.length * 3 <= limit) return data.length;
    return utf8Length(data);
  }
  if (data instanceof ArrayBuffer) return data.byteLength;
  if (ArrayBuffer.isView(data)) return data.byteLength;
  if (typeof Blob !== "undefined" && data instanceof Blob) return data.size;
  return 0;
}

function fail(code: ErrorCode, message: string): ParseResult {
  return { ok: false, code, message };
}

/**
 * Turns a received frame into a {@link ClientFrame}, or says why not.
 * Binary frames, oversized frames, bad JSON, prototype keys, unknown types
 * and wrong fields all give an error result; nothing here throws.
 */
export function parseClientFrame(data: unknown, limits: ParseLimits): ParseResult {
  if (typeof data !== "string") {
    return fail("bad_request", "Cannot accept a binary frame: send JSON as a text frame");
  }
  if (data.length > limits.maxFrameBytes) {
    return fail("payload_too_large", `Cannot accept frame: larger than ${limits.maxFrameBytes} bytes`);
  }
  let raw: unknown;
  let forbidden: string | undefined;
  try {
    raw = JSON.parse(data, (key, value) => {
      if (FORBIDDEN_KEYS.has(key)) forbidden = key;
      return value;
    });
  } catch {
    return fail("bad_request", "Cannot parse frame: not valid JSON");
  }
  if (forbidden !== undefined) {
    return fail("bad_request", `Cannot accept frame: key "${forbidden}" is not allowed`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return fail("bad_request", "Cannot accept frame: expected a JSON object with a \"type\"");
  }
  const result = v.safeParse(clientSchema(limits.maxText), raw);
  if (result.success) return { ok: true, value: result.output };
  const failure = explain(result.issues[0], raw);
  // The client matches an error to its message by nonce when the frame carried a valid one.
  const nonce = (raw as { nonce?: unknown }).nonce;
  if (v.is(NonceSchema, nonce) && !failure.ok) failure.nonce = nonce;
  return failure;
}

function explain(issue: v.BaseIssue<unknown>, raw: object): ParseResult {
  const field = issue.path?.map((p) => String(p.key)).join(".");
  const tooLong = issue.type === "check" && issue.message.includes("longer than");
  if (tooLong) return fail("payload_too_large", `Cannot accept message: ${issue.message}`);
  const type = (raw as { type?: unknown }).type;
  if (issue.type === "variant" || (field === "type")) {
    return fail("bad_request", `Cannot accept frame: unknown type ${JSON.stringify(type) ?? "(missing)"}`);
  }
  if (issue.type === "strict_object") {
    return fail("bad_request", `Cannot accept frame: unexpected field "${field}"`);
  }
  const message = issue.message.startsWith("field") ? issue.message : `field "${field}" is invalid`;
  return fail("bad_request", `Cannot accept ${String(type)}: ${message}`);
}
