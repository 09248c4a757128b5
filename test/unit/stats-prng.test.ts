import { describe, expect, it } from 'vitest';
import { createPrng, gaussian } from '../../src/stats/prng.js';

describe('stats/prng', () => {
  it('seed 42: deterministic, in [0,1), roughly uniform', () => {
    const a = createPrng(42);
    const b = createPrng(42);
    const bins = new Array<number>(10).fill(0);
    const n = 200_000;
    let mismatches = 0;
    let outOfRange = 0;
    for (let i = 0; i < n; i++) {
      const x = a();
      if (b() !== x) mismatches++;
      if (!(x >= 0 && x < 1)) outOfRange++;
      const k = Math.floor(x * 10);
      bins[k] = (bins[k] ?? 0) + 1;
    }
    expect([mismatches, outOfRange]).toEqual([0, 0]);
    // chi-square with 9 dof: 99.9 % quantile is 27.9
    const chi = bins.reduce((acc, c) => acc + (c - n / 10) ** 2 / (n / 10), 0);
    expect(chi).toBeLessThan(27.9);
  });

  it('different seeds give different streams', () => {
    const a = createPrng(1);
    const b = createPrng(2);
    let same = 0;
    for (let i = 0; i < 1000; i++) if (a() === b()) same++;
    expect(same).toBeLessThan(3);
  });

  it('seed 7: gaussian has mean 0 and variance 1', () => {
    const r = createPrng(7);
    let s = 0;
    let s2 = 0;
    const n = 100_000;
    for (let i = 0; i < n; i++) {
      const z = gaussian(r);
      s += z;
      s2 += z * z;
    }
    expect(Math.abs(s / n)).toBeLessThan(0.015);
    expect(Math.abs(s2 / n - 1)).toBeLessThan(0.02);
  });
});
