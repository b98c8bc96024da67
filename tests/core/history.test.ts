import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { HistoryBuffer } from "../../src/core/history.ts";

describe("HistoryBuffer", () => {
  it("last() returns the newest items oldest first, bounded by capacity", () => {
    const h = new HistoryBuffer<number>(3);
    assert.deepEqual(h.last(5), []);
    for (let i = 1; i <= 7; i++) h.push(i);
    assert.equal(h.size, 3);
    assert.deepEqual(h.last(10), [5, 6, 7]);
    assert.deepEqual(h.last(2), [6, 7]);
    assert.deepEqual(h.last(0), []);
    assert.equal(h.first(), 5);
  });

  it("rejects a capacity that is not a positive integer", () => {
    assert.throws(() => new HistoryBuffer(0), RangeError);
    assert.throws(() => new HistoryBuffer(1.5), RangeError);
  });
});
