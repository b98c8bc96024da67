// The benchmark report's judgement of CPU targets (scripts/bench/report.ts): ratios are paired round by
// round, so a machine that slows down between rounds does not decide a target.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { evaluateTargets, type FanoutResult, pairedRounds, type Results, type ServerResult } from "../../scripts/bench/report.ts";

function run(cpuUsPerDelivery: number, round?: number): FanoutResult {
  return { cpuUsPerDelivery, round } as FanoutResult;
}

function server(id: string, runs: FanoutResult[]): ServerResult {
  const best = runs.reduce((a, b) => (b.cpuUsPerDelivery < a.cpuUsPerDelivery ? b : a));
  return { id, label: id, runtime: "deno", ours: id.startsWith("ours"), fanout: best, fanoutRuns: runs, errors: [] };
}

function results(...servers: ServerResult[]): Results {
  return { meta: { durationS: 0, mode: "default", sizes: {} }, servers: Object.fromEntries(servers.map((s) => [s.id, s])), targets: [] };
}

const denoTarget = (res: Results) => evaluateTargets(res).find((t) => t.target === "Deno CPU/delivery <= 1.0x bare Deno")!;

describe("bench report: paired rounds", () => {
  it("divides run by run within a round and takes the median", () => {
    // The machine got slower in round 2 for both; ours is 0.9x of bare in rounds 1 and 2, 1.2x in round 3.
    const p = pairedRounds(server("ours-deno", [run(9, 1), run(18, 2), run(12, 3)]), server("deno-bare", [run(10, 1), run(20, 2), run(10, 3)]));
    assert.ok(p);
    assert.deepEqual(p.ratios.map((r) => Math.round(r * 100) / 100), [0.9, 0.9, 1.2]);
    assert.equal(Math.round(p.median * 100) / 100, 0.9);
    assert.equal(Math.round(p.min * 100) / 100, 0.9);
    assert.equal(Math.round(p.max * 100) / 100, 1.2);
  });

  it("pairs by round number, not by position, and needs two rounds", () => {
    // Ours lost its round-1 run: only round 2 pairs, which is not enough.
    assert.equal(pairedRounds(server("ours-deno", [run(9, 2)]), server("deno-bare", [run(10, 1), run(10, 2)])), undefined);
    // Runs without a round (older results) do not pair.
    assert.equal(pairedRounds(server("ours-deno", [run(9), run(9)]), server("deno-bare", [run(10), run(10)])), undefined);
  });

  it("judges the Deno target on the paired median, not on the best runs", () => {
    // Best runs: 8 vs 9 (0.89x, ours had the quieter moment), but in two rounds of three ours is 1.2x.
    const res = results(
      server("ours-deno", [run(8, 1), run(12, 2), run(12, 3)]),
      server("deno-bare", [run(9, 1), run(10, 2), run(10, 3)]),
    );
    const t = denoTarget(res);
    assert.equal(t.pass, false);
    assert.equal(t.value, "1.20x (median of 3 paired rounds, 0.89-1.20; best runs 0.89x)");
  });

  it("falls back to the best runs' ratio with a single round", () => {
    const t = denoTarget(results(server("ours-deno", [run(9, 1)]), server("deno-bare", [run(10, 1)])));
    assert.equal(t.pass, true);
    assert.equal(t.value, "0.90x");
  });
});

describe("bench report: chatty", () => {
  it("judges the chatty target on the full-rate run and shows the low-rate tail beside it", () => {
    const chatty = (p50Ms: number, p99Ms: number, ratePerS: number) => ({ p50Ms, p99Ms, ratePerS, deliveries: 1, expected: 1 }) as ServerResult["chatty"];
    const res = results({ ...server("ours-bun", [run(1, 1)]), chatty: chatty(1, 4, 5), chattyLow: chatty(1, 1.25, 1) });
    const t = evaluateTargets(res).find((x) => x.target.endsWith("chatty p99 <= 1.5x p50") && x.target.startsWith("ours-bun"))!;
    assert.equal(t.pass, false);
    assert.equal(t.value, "4.00x (at 1 message/s per client: 1.25x)");
  });
});
