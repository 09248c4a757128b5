import { describe, expect, it } from 'vitest';
import {
  BoundaryTable,
  ConditionalLabelTest,
  conditionalLabelLogE,
  thetaForRatio,
} from '../../src/stats/conditional-label.js';

// Reference: research/sim/evalue_lib.py cond_beta_boundary / cond_beta_log_e (numpy + scipy),
// run once; values below are hard-coded from its output.
const ALPHA = 0.005;

function sum(t: BoundaryTable, nMax: number): number {
  let s = 0;
  for (let n = 0; n <= nMax; n++) s += t.at(n);
  return s;
}

describe('stats/conditional-label boundary tables (Python reference)', () => {
  const cases = [
    {
      R: 1,
      first: 11,
      head: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 11, 12, 13, 14, 14, 15, 16, 17, 17, 18],
      at: { 100: 69, 1000: 563, 5000: 2647, 10000: 5212, 20000: 10306 },
      sum: 104013460,
    },
    {
      R: 1.5,
      first: 14,
      head: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 14, 15, 16, 17, 18, 19, 19],
      at: { 100: 78, 1000: 661, 5000: 3142, 10000: 6205, 20000: 12296 },
      sum: 123879736,
    },
    {
      R: 2,
      first: 18,
      head: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 18, 19, 20],
      at: { 100: 83, 1000: 724, 5000: 3469, 10000: 6862, 20000: 13616 },
      sum: 137030857,
    },
  ];
  for (const c of cases) {
    it(`theta0 for R=${c.R}, alpha=0.005, a=b=1: first trip at N=S=${c.first}, table identical to N=20000`, () => {
      const t = new BoundaryTable(thetaForRatio(c.R, 0.5), ALPHA);
      expect(t.firstPossibleTrip()).toBe(c.first);
      expect(t.at(c.first)).toBe(c.first);
      expect(t.at(c.first - 1)).toBe(c.first); // impossible (N+1) just before
      for (let n = 0; n < c.head.length; n++) expect(t.at(n)).toBe(c.head[n]);
      for (const [n, v] of Object.entries(c.at)) expect(t.at(Number(n))).toBe(v);
      expect(sum(t, 20000)).toBe(c.sum);
    });
  }

  it('latency table (theta0=1/2, alpha=0.005/3) identical to N=200000', () => {
    const t = new BoundaryTable(0.5, ALPHA / 3);
    expect([100, 1000, 10000, 100000, 200000].map((n) => t.at(n))).toEqual([70, 567, 5225, 50750, 101077]);
    expect(sum(t, 200000)).toBe(10141538813);
  });

  it('s*(N+1) - s*(N) is 0 or 1 and s* > theta0*N', () => {
    for (const R of [1, 1.5, 2, 3]) {
      const th = thetaForRatio(R, 0.5);
      const t = new BoundaryTable(th, 0.001);
      for (let n = 0; n < 5000; n++) {
        const d = t.at(n + 1) - t.at(n);
        expect(d === 0 || d === 1).toBe(true);
        expect(t.at(n)).toBeGreaterThan(th * n);
      }
    }
  });

  it('boundary is exactly the e-value crossing: lnE(s*-1) < ln(1/alpha) <= lnE(s*)', () => {
    const th = 0.6;
    const t = new BoundaryTable(th, ALPHA);
    const thr = Math.log(1 / ALPHA);
    for (const n of [14, 50, 333, 2000]) {
      const s = t.at(n);
      expect(conditionalLabelLogE(s, n, th)).toBeGreaterThanOrEqual(thr);
      expect(conditionalLabelLogE(s - 1, n, th)).toBeLessThan(thr);
    }
  });
});

describe('stats/conditional-label e-value', () => {
  it('lnE matches the Python reference', () => {
    expect(conditionalLabelLogE(20, 30, 0.5)).toBeCloseTo(0.7993493489809831, 10);
    expect(conditionalLabelLogE(100, 150, 0.6)).toBeCloseTo(-0.05695744750524767, 10);
    expect(conditionalLabelLogE(3, 50, 0.5)).toBeCloseTo(-3.8094274130921306, 10);
  });

  it('lnE equals numerical quadrature of the truncated-prior integral', () => {
    // Simpson's rule on [theta0, 1] of (t/th)^S ((1-t)/(1-th))^(N-S) / (1-th) (uniform prior, a=b=1)
    const quad = (S: number, N: number, th: number): number => {
      const m = 20000;
      const h = (1 - th) / m;
      let acc = 0;
      for (let i = 0; i <= m; i++) {
        const x = th + i * h;
        const f = Math.exp(S * Math.log(x / th) + (N - S) * Math.log((1 - x) / (1 - th)));
        acc += (i === 0 || i === m ? 1 : i % 2 === 1 ? 4 : 2) * (Number.isFinite(f) ? f : 0);
      }
      return Math.log((acc * h) / 3 / (1 - th));
    };
    for (const [S, N, th] of [
      [5, 8, 0.5],
      [12, 15, 0.6],
      [40, 60, 0.5],
      [70, 100, 2 / 3],
    ] as const) {
      expect(conditionalLabelLogE(S, N, th)).toBeCloseTo(quad(S, N, th), 8);
    }
  });

  it('E >= 0 (finite log), a canary event never lowers E, a control event never raises it', () => {
    for (const th of [0.5, 0.6, 2 / 3]) {
      for (let N = 0; N < 120; N += 7) {
        for (let S = 0; S <= N; S++) {
          const e = conditionalLabelLogE(S, N, th);
          expect(Number.isNaN(e)).toBe(false);
          expect(conditionalLabelLogE(S + 1, N + 1, th)).toBeGreaterThanOrEqual(e - 1e-12);
          expect(conditionalLabelLogE(S, N + 1, th)).toBeLessThanOrEqual(e + 1e-12);
        }
      }
    }
  });

  it('streaming test trips on the 11th consecutive canary bad event (R=1) and latches', () => {
    const t = new ConditionalLabelTest(0.5, ALPHA);
    for (let i = 1; i <= 10; i++) expect(t.onBadEvent(true)).toBe(false);
    expect(t.onBadEvent(true)).toBe(true);
    expect(Math.exp(t.lnEAtCross)).toBeGreaterThanOrEqual(1 / ALPHA);
    for (let i = 0; i < 100; i++) expect(t.onBadEvent(false)).toBe(true);
  });

  it('fixed sequence: canary,canary,control repeated trips at the Python index', () => {
    // Python: labels = [1,1,0]*k; first n with S_n >= s*(n) using cond_beta_boundary(.., 0.5, 0.005)
    const idx = (th: number): number => {
      const t = new ConditionalLabelTest(th, ALPHA);
      for (let i = 0; i < 100000; i++) if (t.onBadEvent(i % 3 !== 2)) return i;
      return -1;
    };
    expect(idx(0.5)).toBe(112);
    expect(idx(0.6)).toBe(778);
    expect(idx(thetaForRatio(2, 0.5))).toBe(-1); // 2/3 canary share is exactly the R=2 null: never
  });

  it('larger R never trips earlier on the same sequence', () => {
    let seed = 12345;
    const labels: boolean[] = [];
    for (let i = 0; i < 5000; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      labels.push(seed / 2 ** 32 < 0.68);
    }
    let prev = -1;
    const trips: number[] = [];
    for (const R of [1, 1.2, 1.5, 1.8, 2]) {
      const t = new ConditionalLabelTest(thetaForRatio(R, 0.5), ALPHA);
      const i = labels.findIndex((l) => t.onBadEvent(l));
      const at = i < 0 ? Infinity : i;
      expect(at).toBeGreaterThanOrEqual(prev);
      prev = at;
      trips.push(at);
    }
    expect(trips[0]).toBeLessThan(1000); // the sequence is informative at R=1
  });
});
