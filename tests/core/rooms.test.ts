import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { silentLogger } from "../../src/core/deps.ts";
import { isValidRoomName, RoomRegistry } from "../../src/core/rooms.ts";
import { FakeClock, sequentialIds } from "../_helpers/fake-clock.ts";
import { FakeSocket } from "../_helpers/fake-socket.ts";

const OPTS = { historyReplay: 10, historyRetain: 100, presenceGraceMs: 0, limits: { maxText: 100, maxFrameBytes: 1000 } };

describe("RoomRegistry", () => {
  it("gives the same room for the same name and keeps rooms apart", async () => {
    const clock = new FakeClock();
    const reg = new RoomRegistry(OPTS, { clock, ids: sequentialIds(), log: silentLogger }, 10);
    const [a, again] = await Promise.all([reg.get("a"), reg.get("a")]);
    assert.ok(a);
    assert.equal(again, a);
    assert.equal(await reg.get("a"), a);
    const b = (await reg.get("b"))!;
    assert.notEqual(a.epoch, b.epoch);
    const sa = new FakeSocket();
    const sb = new FakeSocket();
    const ca = a.join(sa, "x");
    b.join(sb, "y");
    a.receive(ca, JSON.stringify({ type: "message", text: "only a" }));
    assert.equal(sa.ofType("message").length, 1);
    assert.equal(sb.ofType("message").length, 0);
    assert.equal(reg.connectionCount, 2);
  });

  it("forgets the longest-idle empty room at the limit, and refuses when none is idle", async () => {
    const clock = new FakeClock();
    const reg = new RoomRegistry(OPTS, { clock, ids: sequentialIds(), log: silentLogger }, 2);
    const r1 = (await reg.get("r1"))!;
    clock.advance(10);
    const r2 = (await reg.get("r2"))!;
    r2.join(new FakeSocket(), "u");
    const r3 = await reg.get("r3");
    assert.ok(r3);
    assert.equal(reg.peek("r1"), undefined);
    assert.notEqual(r3, r1);
    r3.join(new FakeSocket(), "v");
    assert.equal(await reg.get("r4"), undefined);
    assert.equal(reg.size, 2);
  });

  it("rejects invalid room names", async () => {
    const reg = new RoomRegistry(OPTS, { clock: new FakeClock(), ids: sequentialIds(), log: silentLogger }, 2);
    await assert.rejects(reg.get("Bad"), TypeError);
    for (const ok of ["lobby", "a", "a-b_c9", "x".repeat(64)]) assert.ok(isValidRoomName(ok), ok);
    for (const bad of ["", "A", "x".repeat(65), "a b", "a/b", "é", "a.b"]) assert.ok(!isValidRoomName(bad), bad);
  });
});
