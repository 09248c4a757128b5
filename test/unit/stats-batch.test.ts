// The analyzer's batch API (fleet mode feeds pooled outcomes in batches): the evidence after a batch
// equals the per-request evidence at the same point, so batches are a subsequence of looks.
import { describe, expect, it } from 'vitest';
import { ExperimentAnalyzer, type ArmBatch, type GuardrailSpec } from '../../src/stats/analyzer.js';
import { LogHistogram } from '../../src/stats/histogram.js';
import { createPrng } from '../../src/stats/prng.js';

const ERR: GuardrailSpec = { metric: 'error_rate', maxIncrease: 0.01, maxRatio: 1.5 };
const TMO: GuardrailSpec = { metric: 'timeout_rate', maxIncrease: 0, maxRatio: 1 };
const LAT: GuardrailSpec = { metric: 'latency', quantile: 0.9, maxRatio: 1.2, maxIncreaseMs: 5 };

function emptyBatch(withLatency: boolean): ArmBatch {
  return {
    requests: 0,
    errors: 0,
    timeouts: 0,
    latency: withLatency ? new Float64Array(new LogHistogram().counts.length) : null,
  };
}

describe('stats/analyzer recordBatch', () => {
  it('rate guardrails: e-values after each batch equal the per-request e-values at that point', () => {
    const cfg = { alpha: 0.01, minSamples: 0, sticky: false, guardrails: [ERR, TMO] };
    const stream = new ExperimentAnalyzer(cfg);
    const batched = new ExperimentAnalyzer(cfg);
    const rnd = createPrng(7);
    for (let b = 0; b < 60; b++) {
      const size = 1 + Math.floor(rnd() * 400);
      const c = emptyBatch(false);
      const k = emptyBatch(false);
      for (let i = 0; i < size; i++) {
        const canary = rnd() < 0.5;
        const timedOut = rnd() < (canary ? 0.02 : 0.015);
        const bad = timedOut || rnd() < (canary ? 0.03 : 0.02);
        stream.record(canary ? 'canary' : 'control', bad, timedOut, 5);
        const arm = canary ? c : k;
        arm.requests++;
        if (bad) arm.errors++;
        if (timedOut) arm.timeouts++;
      }
      batched.recordBatch(c, k);
      const s = stream.states();
      const t = batched.states();
      for (let g = 0; g < 2; g++) {
        expect(t[g]!.eValue).toBeCloseTo(s[g]!.eValue, 6);
        expect(t[g]!.canary.counted).toBe(s[g]!.canary.counted);
        expect(t[g]!.control.samples).toBe(s[g]!.control.samples);
      }
    }
  });

  it('trips on a degraded canary, at the end of the batch that crosses', () => {
    const a = new ExperimentAnalyzer({ alpha: 0.01, minSamples: 10, sticky: false, guardrails: [ERR] });
    let breach = null;
    let batches = 0;
    while (breach === null && batches < 100) {
      batches++;
      breach = a.recordBatch(
        { requests: 100, errors: 10, timeouts: 0, latency: null },
        { requests: 100, errors: 1, timeouts: 0, latency: null },
      );
    }
    expect(breach).not.toBeNull();
    expect(breach!.samples.canary).toBe(batches * 100);
    expect(breach!.reason).toMatch(/^error_rate: canary 10\.0% vs control 1\.0%/);
    // latched
    expect(
      a.recordBatch(
        { requests: 1, errors: 1, timeouts: 0, latency: null },
        { requests: 1, errors: 0, timeouts: 0, latency: null },
      ),
    ).toBeNull();
  });

  it('latency: batches of histogram counts judge slow canaries and hold on A/A', () => {
    const mk = () =>
      new ExperimentAnalyzer({ alpha: 0.01, minSamples: 50, sticky: false, guardrails: [LAT] });
    const h = new LogHistogram();
    const run = (canaryFactor: number, seed: number): number => {
      const a = mk();
      const rnd = createPrng(seed);
      for (let b = 0; b < 200; b++) {
        const c = emptyBatch(true);
        const k = emptyBatch(true);
        for (let i = 0; i < 100; i++) {
          const canary = rnd() < 0.5;
          const lat = 20 * Math.exp(0.5 * Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(6.283 * rnd()));
          const arm = canary ? c : k;
          arm.requests++;
          const idx = h.bucketOf(canary ? lat * canaryFactor : lat);
          arm.latency![idx]! += 1;
        }
        if (a.recordBatch(c, k) !== null) return b;
      }
      return -1;
    };
    expect(run(2, 1)).toBeGreaterThanOrEqual(0);
    let falseTrips = 0;
    for (let s = 0; s < 20; s++) if (run(1, 100 + s) >= 0) falseTrips++;
    expect(falseTrips).toBeLessThanOrEqual(1);
  });

  it('LogHistogram.countAbove: exact above an edge, never more than the values above a cut', () => {
    const h = new LogHistogram();
    const counts = new Float64Array(h.counts.length);
    const vals = [0.05, 1, 2, 2.5, 10, 10.2, 99, 1e7];
    for (const v of vals) counts[h.bucketOf(v)]! += 1;
    const edge = h.edges[h.bucketOf(10)]!;
    expect(h.countAbove(counts, edge)).toBe(vals.filter((v) => v > edge).length);
    for (const cut of [0.5, 2.2, 10.1, 50, 1e6])
      expect(h.countAbove(counts, cut)).toBeLessThanOrEqual(vals.filter((v) => v > cut).length);
    expect(h.countAbove(counts, Infinity)).toBe(0);
    h.addCounts(counts);
    expect(h.total).toBe(vals.length);
  });
});
