import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseClientFrame } from "../../src/protocol/parse.ts";

const LIMITS = { maxText: 4096, maxFrameBytes: 65536 };
const parse = (data: unknown) => parseClientFrame(data, LIMITS);

describe("parseClientFrame()", () => {
  it("accepts chat messages with and without a nonce, and pings", () => {
    assert.deepEqual(parse('{"type":"message","text":"hi"}'), { ok: true, value: { type: "message", text: "hi" } });
    assert.deepEqual(parse('{"type":"message","text":"hi","nonce":"abc"}'), {
      ok: true,
      value: { type: "message", text: "hi", nonce: "abc" },
    });
    assert.deepEqual(parse('{"type":"message","text":"hi","nonce":7}').ok, true);
    assert.deepEqual(parse('{"type":"ping"}'), { ok: true, value: { type: "ping" } });
  });

  it("counts text length in characters: 4096 emoji pass, 4097 do not", () => {
    assert.equal(parse(JSON.stringify({ type: "message", text: "😀".repeat(4096) })).ok, true);
    const long = parse(JSON.stringify({ type: "message", text: "a".repeat(4097) }));
    assert.equal(long.ok, false);
    assert.equal(!long.ok && long.code, "payload_too_large");
  });

  it("rejects a frame over the size limit before parsing it", () => {
    const r = parseClientFrame("x".repeat(101), { maxText: 10, maxFrameBytes: 100 });
    assert.equal(!r.ok && r.code, "payload_too_large");
  });

  const badCases: Array<[string, unknown]> = [
    ["binary data", new Uint8Array([1, 2])],
    ["not JSON", "{nope"],
    ["an array", "[]"],
    ["null", "null"],
    ["a number", "42"],
    ["a missing type", '{"text":"hi"}'],
    ["an unknown type", '{"type":"shout","text":"hi"}'],
    ["a non-string type", '{"type":5}'],
    ["a missing text", '{"type":"message"}'],
    ["a numeric text", '{"type":"message","text":1}'],
    ["an empty text", '{"type":"message","text":""}'],
    ["a blank text", '{"type":"message","text":" \\n\\t "}'],
    ["an unknown field", '{"type":"message","text":"hi","user":"root"}'],
    ["a __proto__ key", '{"type":"message","text":"hi","__proto__":{"admin":true}}'],
    ["a nested constructor key", '{"type":"message","text":"hi","nonce":{"constructor":1}}'],
    ["an empty nonce", '{"type":"message","text":"hi","nonce":""}'],
    ["a fractional nonce", '{"type":"message","text":"hi","nonce":1.5}'],
    ["an object nonce", '{"type":"message","text":"hi","nonce":{}}'],
    ["deep nesting", '{"type":"message","text":"hi","x":' + "[".repeat(5000) + "]".repeat(5000) + "}"],
  ];
  for (const [name, data] of badCases) {
    it(`rejects ${name} with bad_request and a readable message`, () => {
      const r = parse(data);
      assert.equal(r.ok, false);
      if (!r.ok) {
        assert.equal(r.code, "bad_request");
        assert.match(r.message, /^Cannot /);
      }
    });
  }

  it("keeps a valid nonce on the error, so the client can match it to its message", () => {
    const long = parse(JSON.stringify({ type: "message", text: "a".repeat(4097), nonce: "n-9" }));
    assert.equal(!long.ok && long.nonce, "n-9");
    const empty = parse(JSON.stringify({ type: "message", text: "", nonce: 12 }));
    assert.equal(!empty.ok && empty.nonce, 12);
    const badNonce = parse(JSON.stringify({ type: "message", text: "", nonce: {} }));
    assert.equal(!badNonce.ok && badNonce.nonce, undefined);
  });

  it("never pollutes Object.prototype", () => {
    parse('{"type":"message","text":"hi","__proto__":{"polluted":true}}');
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});
