import { describe, expect, it } from 'vitest';
import { ExceedanceTest, REFERENCE_WARMUP, type ExceedanceOptions } from '../../src/stats/exceedance.js';
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
  // the reference design: uniform prior on [1/2, 1], warm-up max(100, 10/(1-p))
  const REFERENCE: Partial<ExceedanceOptions> = { priorShape: 1, warmup: REFERENCE_WARMUP };
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
});
