import { describe, expect, it } from 'vitest';
import { DEFAULT_BET_FRACTIONS, HTBettingTest } from '../../src/stats/betting.js';

// Deterministic LCG shared with the Python cross-check (research/sim/evalue_lib.py BettingMixture).
function lcgSequence(seed: number, n: number, pCanary: number, pControl: number): [boolean, boolean][] {
  let s = seed >>> 0;
  const next = (): number => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32;
  };
  const out: [boolean, boolean][] = [];
  for (let i = 0; i < n; i++) {
    const c = next() < 0.5;
    const u = next();
    out.push([c, u < (c ? pCanary : pControl)]);
  }
  return out;
}

describe('stats/betting HT mixture', () => {
  const seq = lcgSequence(2024, 6000, 0.06, 0.01);
  // Python reference: first index with ln E >= ln 200, and ln E after 100 / 1000 / 6000 requests.
  const ref = [
    {
      delta: 0,
      first: 893,
      at: { 100: 0.21020186168213684, 1000: 6.844460852671999, 6000: 29.68169691265688 },
    },
    {
      delta: 0.01,
      first: 1239,
      at: { 100: 0.12669611808497191, 1000: 4.504754575149035, 6000: 14.978442854358466 },
    },
    {
      delta: 0.02,
      first: 4845,
      at: { 100: 0.0513219299287971, 1000: 2.4385362293556705, 6000: 4.371358489894256 },
    },
  ];
  for (const r of ref) {
    it(`seed 2024, 1% -> 6%, delta=${r.delta}: trip index ${r.first} and ln E match Python`, () => {
      const t = new HTBettingTest(r.delta, 0.005);
      let first = -1;
      seq.forEach(([c, b], i) => {
        if (t.onRequest(c, b) && first < 0) first = i;
        const want = (r.at as Record<number, number>)[i + 1];
        if (want !== undefined) expect(t.logE()).toBeCloseTo(want, 9);
      });
      expect(first).toBe(r.first);
      expect(Math.exp(t.lnEAtCross)).toBeGreaterThanOrEqual(200);
    });
  }

  it('every bet factor 1 + lambda(Z - delta) is > 0 for all Z, delta, rho', () => {
    for (const rho of [0.1, 0.5, 0.9]) {
      for (const delta of [0, 0.01, 0.2, 0.99]) {
        const lamMax = 1 / (delta + 1 / (1 - rho));
        for (const f of DEFAULT_BET_FRACTIONS) {
          for (const z of [0, 1 / rho, -1 / (1 - rho)])
            expect(1 + f * lamMax * (z - delta)).toBeGreaterThan(0);
        }
        // and the implementation never produces a non-finite log-wealth, even after a long bad run
        const t = new HTBettingTest(delta, 0.005, rho);
        for (let i = 0; i < 10000; i++) t.onRequest(false, true);
        expect(Number.isFinite(t.logE())).toBe(true);
      }
    }
  });

  it('starts at E = 1; good requests never raise E when delta > 0', () => {
    const t = new HTBettingTest(0.01, 0.005);
    expect(t.logE()).toBe(0);
    let prev = 0;
    for (let i = 0; i < 100; i++) {
      t.onRequest(i % 2 === 0, false);
      expect(t.logE()).toBeLessThanOrEqual(prev);
      prev = t.logE();
    }
  });

  it('larger delta never trips earlier on the same sequence', () => {
    let prev = -1;
    for (const d of [0, 0.005, 0.01, 0.02, 0.04]) {
      const t = new HTBettingTest(d, 0.005);
      const i = seq.findIndex(([c, b]) => t.onRequest(c, b));
      const at = i < 0 ? Infinity : i;
      expect(at).toBeGreaterThanOrEqual(prev);
      prev = at;
    }
  });
});
