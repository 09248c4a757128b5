/**
 * Seeded simulation of the ramp's statistics (src/probes/ramp.ts, ramp-power.ts): with no effect at any
 * step, a K-step ramp with alpha split over the steps trips (at any step) in at most alpha of the runs;
 * the per-step power claim holds (the reference breach is detected within `needed` canary requests in
 * >= 90% of runs, checked with seeds other than the ones that computed `needed`).
 */
import { describe, expect, it } from 'vitest';
import { BASELINE_RATE, detectionCounts, powerPlan } from '../../src/probes/ramp-power.js';
import { ExperimentAnalyzer, type AnalyzerConfig } from '../../src/stats/analyzer.js';
import { createPrng } from '../../src/stats/prng.js';

const ALPHA = 0.05;
const K = 5;
const guardrail = { metric: 'error_rate', maxIncrease: 0.05, maxRatio: 1.5 } as const;
const cfg: AnalyzerConfig = { alpha: ALPHA / K, minSamples: 20, guardrails: [guardrail], sticky: false };

/** One ramp under no effect: K steps, each a fresh analyzer fed until `needed` canary requests. */
function nullRampTrips(seed: number, needed: number, alphaPerStep: number): boolean {
  const rnd = createPrng(seed);
  for (let step = 0; step < K; step++) {
    const a = new ExperimentAnalyzer({ ...cfg, alpha: alphaPerStep });
    let n = 0;
    while (n < needed) {
      const canary = rnd() < 0.5;
      if (canary) n++;
      // Same error rate in both arms at every step: any trip is a false one.
      if (a.record(canary ? 'canary' : 'control', rnd() < 0.1, false, -1) !== null) return true;
    }
  }
  return false;
}

describe('ramp statistics (seeded simulation)', () => {
  const plan = powerPlan(cfg, undefined);

  it('states its power claim: 90% at `needed` for the reference breach', () => {
    expect(plan.breach).toBe(`error_rate ${BASELINE_RATE * 100}% -> 11%`);
    expect(plan.power).toBeGreaterThanOrEqual(0.9);
    expect(plan.needed).toBeGreaterThan(cfg.minSamples);
  });

  it('the power claim holds on fresh seeds', () => {
    const counts = detectionCounts(cfg, guardrail, 400, 0xbeef);
    const power = counts.filter((c) => c <= plan.needed).length / counts.length;
    // 400 runs: the 90% claim's sampling sd is 1.5 pp.
    expect(power).toBeGreaterThanOrEqual(0.86);
  });

  it(`no effect at any of ${K} steps: whole-run false trips <= alpha (${ALPHA})`, () => {
    const runs = 600;
    let trips = 0;
    for (let s = 1; s <= runs; s++) if (nullRampTrips(s, plan.needed, ALPHA / K)) trips++;
    // alpha plus three binomial sd (0.05 over 600 runs: sd 0.9 pp).
    expect(trips / runs).toBeLessThanOrEqual(ALPHA + 3 * Math.sqrt((ALPHA * (1 - ALPHA)) / runs));
    console.log(
      `ramp null simulation: ${trips}/${runs} runs tripped (alpha ${ALPHA}, ${K} steps, ${plan.needed} canary per step)`,
    );
  });
});
