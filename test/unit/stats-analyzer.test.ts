import { describe, expect, it } from 'vitest';
import { ExperimentAnalyzer, splitAlpha, type GuardrailSpec } from '../../src/stats/analyzer.js';

const ERR: GuardrailSpec = { metric: 'error_rate', maxIncrease: 0.01, maxRatio: 1.5 };
const LAT = (q: number): GuardrailSpec => ({
  metric: 'latency',
  quantile: q,
  maxRatio: 1.2,
  maxIncreaseMs: 10,
});

describe('stats/analyzer alpha split', () => {
  it('failures share alpha/2, latency quantiles the other alpha/2', () => {
    expect(splitAlpha(0.01, [ERR, LAT(0.5), LAT(0.9), LAT(0.99)])).toEqual([
      0.005,
      0.005 / 3,
      0.005 / 3,
      0.005 / 3,
    ]);
    const tm: GuardrailSpec = { metric: 'timeout_rate', maxIncrease: 0.01, maxRatio: 2 };
    expect(splitAlpha(0.01, [ERR, tm, LAT(0.99)])).toEqual([0.0025, 0.0025, 0.005]);
  });
  it('a single kind gets all of alpha', () => {
    expect(splitAlpha(0.01, [ERR])).toEqual([0.01]);
    expect(splitAlpha(0.01, [LAT(0.5), LAT(0.99)])).toEqual([0.005, 0.005]);
  });
});

describe('stats/analyzer decisions', () => {
  it('zero-tolerance error guardrail trips on the 11th canary error in a row (alpha 0.005), not before', () => {
    const a = new ExperimentAnalyzer({
      alpha: 0.005,
      minSamples: 0,
      sticky: false,
      guardrails: [{ metric: 'error_rate', maxIncrease: 0, maxRatio: 1 }],
    });
    for (let i = 0; i < 10; i++) expect(a.record('canary', true, false, 5)).toBeNull();
    const b = a.record('canary', true, false, 5);
    expect(b).not.toBeNull();
    expect(b?.guardrail.status).toBe('breached');
    expect(b?.guardrail.eValue).toBeGreaterThanOrEqual(200);
    expect(b?.samples).toEqual({ canary: 11, control: 0 });
    expect(b?.reason).toMatch(
      /^error_rate: canary 100\.0% vs control 0\.0% \(limit: any increase\), e=\d+ >= 200$/,
    );
    // latched: never reported twice
    expect(a.record('canary', true, false, 5)).toBeNull();
    expect(a.breached()).toBe(b);
  });

  it('minSamples delays the decision until both arms have enough requests', () => {
    const a = new ExperimentAnalyzer({
      alpha: 0.005,
      minSamples: 50,
      sticky: false,
      guardrails: [{ metric: 'error_rate', maxIncrease: 0, maxRatio: 1 }],
    });
    for (let i = 0; i < 30; i++) expect(a.record('canary', true, false, 5)).toBeNull();
    expect(a.states()[0]?.status).toBe('insufficient_data');
    expect(a.states()[0]?.eValue).toBeGreaterThan(200); // evidence keeps accumulating
    for (let i = 0; i < 20; i++) expect(a.record('control', false, false, 5)).toBeNull();
    for (let i = 0; i < 29; i++) expect(a.record('control', false, false, 5)).toBeNull();
    expect(a.record('control', false, false, 5)).toBeNull(); // control at 50, canary at 30
    for (let i = 0; i < 19; i++) expect(a.record('canary', false, false, 5)).toBeNull();
    const b = a.record('canary', false, false, 5);
    expect(b?.samples).toEqual({ canary: 50, control: 50 });
  });

  it('default AND rule reports both limits and needs both parts', () => {
    const a = new ExperimentAnalyzer({ alpha: 0.01, minSamples: 10, sticky: false, guardrails: [ERR] });
    let b = null;
    let i = 0;
    // canary 30 % errors, control 0 %: deterministic pattern
    while (b === null && i < 10000) {
      b = a.record('canary', i % 10 < 3, false, 5) ?? a.record('control', false, false, 5);
      i++;
    }
    expect(b).not.toBeNull();
    expect(b?.reason).toMatch(
      /^error_rate: canary \d+\.\d% vs control 0\.0% \(limit \+1pp and x1\.5\), e=\d+ >= 100$/,
    );
    const st = a.states()[0];
    expect(st?.detail).toContain('ratio e=');
    expect(st?.detail).toContain('margin e=');
  });

  it('timeout_rate looks at timedOut only', () => {
    const a = new ExperimentAnalyzer({
      alpha: 0.005,
      minSamples: 0,
      sticky: false,
      guardrails: [{ metric: 'timeout_rate', maxIncrease: 0, maxRatio: 1 }],
    });
    for (let i = 0; i < 50; i++) expect(a.record('canary', true, false, 5)).toBeNull();
    let b = null;
    for (let i = 0; i < 11 && b === null; i++) b = a.record('canary', false, true, 5);
    expect(b?.guardrail.metric).toBe('timeout_rate');
    expect(b?.guardrail.canary.bad).toBe(11);
  });

  it('sticky: repeated errors of one session count once per arm', () => {
    const mk = (sticky: boolean): ExperimentAnalyzer =>
      new ExperimentAnalyzer({
        alpha: 0.005,
        minSamples: 0,
        sticky,
        guardrails: [{ metric: 'error_rate', maxIncrease: 0, maxRatio: 1 }],
      });
    const s = mk(true);
    const r = mk(false);
    for (let i = 0; i < 100; i++) {
      expect(s.record('canary', true, false, 5, 0xdeadbeef)).toBeNull();
      r.record('canary', true, false, 5, 0xdeadbeef);
    }
    expect(s.states()[0]?.canary.counted).toBe(1);
    expect(s.states()[0]?.canary.bad).toBe(100);
    expect(r.breached()).not.toBeNull();
    // eleven different sessions do trip
    let b = null;
    for (let k = 1; k <= 11 && b === null; k++) b = s.record('canary', true, false, 5, k * 7919);
    expect(b).not.toBeNull();
  });

  it('latency: insufficient until control quantile is trusted, then trips on a 2x canary', () => {
    const a = new ExperimentAnalyzer({ alpha: 0.01, minSamples: 20, sticky: false, guardrails: [LAT(0.5)] });
    expect(a.states()[0]?.status).toBe('insufficient_data');
    let b = null;
    let i = 0;
    for (; b === null && i < 20000; i++) {
      const base = 50 + ((i * 37) % 100); // 50..149 ms, deterministic
      b = a.record(i % 2 === 0 ? 'canary' : 'control', false, false, i % 2 === 0 ? 2 * base : base);
      // T_p is trusted from the request after the 20th control sample on (the warm-up of p50), not
      // at the next 200-request block boundary
      if (i === 39) expect(a.states()[0]?.status).toBe('insufficient_data');
      if (i === 40) expect(a.states()[0]?.status).not.toBe('insufficient_data');
    }
    expect(b).not.toBeNull();
    expect(b?.reason).toMatch(
      /^latency p50: canary \d+ms vs control \d+(\.\d)?ms \(limit x1\.2 \+10ms\), slow canary \d+\/\d+ vs control \d+\/\d+ scored, e=/,
    );
    expect(b?.guardrail.quantile).toBe(0.5);
  });

  it('A/A deterministic stream never trips and reports holding', () => {
    const a = new ExperimentAnalyzer({
      alpha: 0.01,
      minSamples: 100,
      sticky: false,
      guardrails: [ERR, LAT(0.5), LAT(0.99)],
    });
    for (let i = 0; i < 20000; i++) {
      const lat = 10 + ((i * 7919) % 1000) / 10;
      expect(a.record(i % 2 === 0 ? 'canary' : 'control', i % 100 < 2, false, lat)).toBeNull();
    }
    expect(a.states().map((s) => s.status)).toEqual(['holding', 'holding', 'holding']);
    expect(a.samples()).toEqual({ canary: 10000, control: 10000 });
  });

  it('rejects invalid configs', () => {
    expect(
      () => new ExperimentAnalyzer({ alpha: 0, minSamples: 0, sticky: false, guardrails: [ERR] }),
    ).toThrow();
    expect(
      () => new ExperimentAnalyzer({ alpha: 0.01, minSamples: 0, sticky: false, guardrails: [] }),
    ).toThrow();
    expect(
      () =>
        new ExperimentAnalyzer({
          alpha: 0.01,
          minSamples: 0,
          sticky: false,
          guardrails: [{ metric: 'error_rate', maxIncrease: 0.01, maxRatio: 0.5 }],
        }),
    ).toThrow();
  });
});
