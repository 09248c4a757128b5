import { describe, expect, it } from 'vitest';
import { ExperimentAnalyzer } from '../../src/stats/analyzer.js';
import {
  ExceedanceTest,
  REFERENCE_WARMUP,
  REFRESH_MAX_STEP,
  type ExceedanceOptions,
} from '../../src/stats/exceedance.js';
import { LogHistogram } from '../../src/stats/histogram.js';

describe('stats/histogram', () => {
  it('default buckets span 0.1 ms .. 10 min at 1 % resolution', () => {
    const h = new LogHistogram();
    expect(h.edges[0]).toBeCloseTo(0.1, 12);
    expect(h.edges.length).toBe(1569);
    expect(h.edges[h.edges.length - 1]).toBeLessThan(600_000);
    expect(h.edges[h.edges.length - 1]! * 1.01).toBeGreaterThanOrEqual(600_000);
  });

  it('bucketOf is numpy searchsorted(left) on the edges', () => {
    const h = new LogHistogram({ minMs: 1, maxMs: 1e5, growth: 1.01 });
    expect(h.edges.length).toBe(1158); // len(EDGES) in research/sim/sim_latency.py
    for (const v of [0, 0.5, 1, 1.0000001, 37.3, 99.99, 1e4, 99_999, 1e6]) {
      const b = h.bucketOf(v);
      let want = 0;
      while (want < h.edges.length && h.edges[want]! < v) want++;
      expect(b).toBe(want);
    }
    for (let i = 0; i < h.edges.length; i += 97) expect(h.bucketOf(h.edges[i]!)).toBe(i);
  });

  it('quantileUpper is within one bucket above the exact quantile', () => {
    const h = new LogHistogram();
    for (let i = 1; i <= 1000; i++) h.add(i);
    for (const p of [0.5, 0.9, 0.99]) {
      const q = h.quantileUpper(p);
      expect(q).toBeGreaterThanOrEqual(p * 1000);
      expect(q).toBeLessThanOrEqual(p * 1000 * 1.0101);
    }
    expect(new LogHistogram().quantileUpper(0.5)).toBeNaN();
  });
});

describe('stats/exceedance', () => {
  // Same LCG sequence as the Python cross-check (sim_latency.py Method A, one replicate, seed 77):
  // base = 20 + 400 u^2 ms, canary x1.5, guardrail x1.2 + 10 ms, alpha 0.005/3 per quantile.
  function run(p: number, opts: Partial<ExceedanceOptions> = REFERENCE): { index: number; canary: number } {
    let s = 77;
    const next = (): number => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s / 2 ** 32;
    };
    const hist = new LogHistogram({ minMs: 1, maxMs: 1e5, growth: 1.01 });
    const t = new ExceedanceTest(
      { quantile: p, maxRatio: 1.2, maxIncreaseMs: 10, alpha: 0.005 / 3, ...opts },
      hist,
    );
    let canary = 0;
    for (let i = 0; i < 40000; i++) {
      const c = next() < 0.5;
      const u = next();
      const base = 20 + 400 * u * u;
      const L = c ? base * 1.5 : base;
      if (c) canary++;
      if (t.onRequest(c, L, undefined)) return { index: i, canary };
      if (!c) hist.add(L);
    }
    return { index: -1, canary };
  }
  // the reference design: uniform prior on [1/2, 1], warm-up max(100, 10/(1-p)), T_p every 200 requests
  const REFERENCE: Partial<ExceedanceOptions> = {
    priorShape: 1,
    warmup: REFERENCE_WARMUP,
    refreshEvery: 200,
  };
  it('seed 77: trip indices match the Python reference for p50/p90/p99', () => {
    expect(run(0.5)).toEqual({ index: 9106, canary: 4658 });
    expect(run(0.9)).toEqual({ index: 747, canary: 407 });
    expect(run(0.99)).toEqual({ index: 2360, canary: 1218 });
  });

  it('defaults (Beta(2,2) prior, warm-up max(20, 5/(1-p))) catch the same x1.5 slowdown', () => {
    // power is compared in test/sim (many runs); one replicate only has to trip
    for (const p of [0.5, 0.9, 0.99]) expect(run(p, {}).index).toBeGreaterThanOrEqual(0);
    const t = new ExceedanceTest(
      { quantile: 0.9, maxRatio: 1.2, maxIncreaseMs: 10, alpha: 0.001 },
      new LogHistogram(),
    );
    expect([t.label.a, t.label.b]).toEqual([2, 2]);
    expect(t.minControl).toBe(50); // trunc(5 / (1 - 0.9)) = trunc(50.000..1)
  });

  it('inactive until the warm-up: max(100, 10/(1-p)) in the reference, max(20, 5/(1-p)) by default', () => {
    const dflt = (q: number): number =>
      new ExceedanceTest({ quantile: q, maxRatio: 1.2, maxIncreaseMs: 10, alpha: 0.001 }, new LogHistogram())
        .minControl;
    expect([dflt(0.5), dflt(0.99)]).toEqual([20, 499]);
    const hist = new LogHistogram();
    const t = new ExceedanceTest(
      { quantile: 0.99, maxRatio: 1.2, maxIncreaseMs: 10, alpha: 0.001, warmup: REFERENCE_WARMUP },
      hist,
    );
    expect(t.minControl).toBe(999);
    for (let i = 0; i < 998; i++) {
      t.onRequest(false, 100, undefined);
      hist.add(100);
    }
    for (let i = 0; i < 400; i++) t.onRequest(true, 1e6, undefined);
    expect(t.active).toBe(false);
    expect(t.label.n).toBe(0);
  });

  it('canary counts as slow only above maxRatio*T + a; control above T', () => {
    const hist = new LogHistogram();
    for (let i = 0; i < 200; i++) hist.add(100);
    const t = new ExceedanceTest({ quantile: 0.5, maxRatio: 1.2, maxIncreaseMs: 10, alpha: 0.001 }, hist);
    t.onRequest(true, 1.2 * t.thresholdMs + 10, undefined); // first call activates; exactly at the cut
    expect(t.thresholdMs).toBeGreaterThanOrEqual(100);
    expect(t.slowCanary).toBe(0);
    t.onRequest(true, 1.2 * t.thresholdMs + 10.001, undefined);
    t.onRequest(false, t.thresholdMs, undefined);
    t.onRequest(false, t.thresholdMs + 0.001, undefined);
    expect([t.slowCanary, t.slowControl]).toEqual([1, 1]);
  });

  it('T_p is active from the first request after the warm-up, then refreshed every ceil(n/8) control samples', () => {
    const hist = new LogHistogram();
    const t = new ExceedanceTest({ quantile: 0.9, maxRatio: 1.2, maxIncreaseMs: 10, alpha: 0.001 }, hist);
    const refreshedAt: number[] = [];
    let last = NaN;
    for (let i = 0; i < 2000; i++) {
      t.onRequest(true, 5, undefined);
      // predictable: the state before the control request is all the test may use
      t.onRequest(false, 1 + i, undefined);
      if (i === 49) expect(t.active).toBe(false); // 49 control samples when it was scored
      if (i === 50) expect(t.active).toBe(true);
      if (t.thresholdMs !== last && !Number.isNaN(t.thresholdMs)) refreshedAt.push(hist.total);
      last = t.thresholdMs;
      hist.add(1 + i); // the analyzer adds control only after scoring it
    }
    expect(refreshedAt[0]).toBe(50);
    const steps = refreshedAt.slice(1).map((n, i) => n - (refreshedAt[i] as number));
    // ceil(50/8) = 7, growing with n, capped at REFRESH_MAX_STEP
    expect(steps[0]).toBe(7);
    expect(Math.max(...steps)).toBe(REFRESH_MAX_STEP);
    expect(refreshedAt.length).toBeLessThan(45);
    expect(t.warmupCanary).toBe(50);
    expect(t.warmupControl).toBe(50);
    expect(t.scoredCanary).toBe(1950);
    expect(t.scoredControl).toBe(1950);
  });

  it('demo symptom: every canary 300 ms late, fast control: all canary requests after the warm-up are scored', () => {
    // config/demo.yaml: error_rate + latency p90 (x1.2 + 10 ms), confidence 0.99, min_samples 100.
    // The old 200-request refresh scored 12 of 112 canary requests and reported "12/112 (10.71%)".
    const a = new ExperimentAnalyzer({
      alpha: 0.01,
      minSamples: 100,
      sticky: false,
      guardrails: [
        { metric: 'error_rate', maxIncrease: 0.01, maxRatio: 1.5 },
        { metric: 'latency', quantile: 0.9, maxRatio: 1.2, maxIncreaseMs: 10 },
      ],
    });
    let breach = null;
    for (let i = 0; i < 224 && breach === null; i++) {
      const jitter = (i * 7) % 5; // 0..4 ms
      const canary = i % 2 === 0;
      breach = a.record(canary ? 'canary' : 'control', false, false, canary ? 310 + jitter : 10 + jitter);
    }
    const lat = a.states()[1]!;
    // the warm-up is 50 control samples: 50 canary requests came before T_p was trusted
    expect(lat.canary.unscored).toEqual({ warmup: 50, excluded: 0 });
    expect(lat.canary.scored).toBe(a.samples().canary - 50);
    expect(lat.canary.bad).toBe(lat.canary.scored);
    expect(lat.canary.rate).toBe(1);
    expect(lat.control.scored).toBe(a.samples().control - 50);
    expect(breach).not.toBeNull();
    expect(breach?.samples).toEqual({ canary: 100, control: 100 });
    expect(breach?.reason).toMatch(/slow canary 50\/50 vs control \d+\/50 scored/);
  });
});
