/**
 * Seeded simulation of a latency-only ramp (src/probes/ramp.ts, ramp-power.ts): the per-step power
 * claim holds for a latency guardrail. A K-step ramp at alpha / K per step, no effect at steps before
 * `at`, the stated reference breach from step `at` on ((1 + 2(R − 1))·L + 2a against control's L,
 * lognormal): the ramp must pass the clean steps and detect the breach AT that step within `needed`
 * canary requests in >= 90% of runs, on seeds other than the ones that computed `needed`. And with
 * the canary exactly at the tolerance at every step (R·L + a, the worst null), the whole ramp trips in
 * at most alpha of the runs. CI mode: p90 only, 200 / 150 runs (a few seconds); `npm run sim:report`
 * (SIM_LONG=1): p50, p90 and p99, 1000 runs each.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { LATENCY_MEDIAN_MS, powerPlan, referenceLatency } from '../../src/probes/ramp-power.js';
import { ExperimentAnalyzer, type AnalyzerConfig, type GuardrailSpec } from '../../src/stats/analyzer.js';
import { createPrng, gaussian } from '../../src/stats/prng.js';
import { LONG, TIMEOUT, binomialBound, publish, type ResultRow } from './harness.js';

const ALPHA = 0.01;
const K = 5;
const AT = 3;
const QUANTILES = LONG ? [0.5, 0.9, 0.99] : [0.9];
const DETECT_RUNS = LONG ? 1000 : 200;
const NULL_RUNS = LONG ? 1000 : 150;
const rows: ResultRow[] = [];
const started = performance.now();

type Latency = Extract<GuardrailSpec, { metric: 'latency' }>;

/**
 * One ramp: K steps, a fresh analyzer each, fed until `needed` canary requests (then it advances).
 * Returns the step that tripped and the canary count there, or null when every step held.
 */
function ramp(
  seed: number,
  cfg: AnalyzerConfig,
  needed: number,
  canary: (step: number, l: number) => number,
): { step: number; n: number } | null {
  const rnd = createPrng(seed);
  for (let step = 0; step < K; step++) {
    const a = new ExperimentAnalyzer(cfg);
    let n = 0;
    while (n < needed) {
      const isCanary = rnd() < 0.5;
      const l = LATENCY_MEDIAN_MS * Math.exp(0.6 * gaussian(rnd));
      if (isCanary) n++;
      const ms = isCanary ? canary(step, l) : l;
      if (a.record(isCanary ? 'canary' : 'control', false, false, ms) !== null) return { step, n };
    }
  }
  return null;
}

for (const q of QUANTILES) {
  const g: Latency = { metric: 'latency', quantile: q, maxRatio: 1.2, maxIncreaseMs: 10 };
  const cfg: AnalyzerConfig = { alpha: ALPHA / K, minSamples: 20, guardrails: [g], sticky: false };
  const plan = powerPlan(cfg, undefined);

  describe(`latency-only ramp, p${q * 100} x1.2 + 10 ms (${LONG ? 'long' : 'CI'} mode)`, () => {
    it('states a power claim: 90% at `needed` for the reference breach', () => {
      expect(plan.breach).toBe(`latency p${q * 100} x1.4 + 20 ms (lognormal, median 100 ms)`);
      expect(plan.power).toBeGreaterThanOrEqual(0.9);
      expect(plan.needed).toBeGreaterThan(cfg.minSamples);
    });

    it(
      `the breach from step ${AT} on is detected at that step within \`needed\` in >= 90% of runs`,
      { timeout: TIMEOUT },
      () => {
        let atStep = 0;
        let early = 0;
        for (let s = 0; s < DETECT_RUNS; s++) {
          const r = ramp(0xa11ce + s, cfg, plan.needed, (step, l) =>
            step >= AT ? referenceLatency(g, l) : l,
          );
          if (r !== null && r.step === AT) atStep++;
          else if (r !== null && r.step < AT) early++;
        }
        const power = atStep / DETECT_RUNS;
        // 90% claim: allow three binomial sd of sampling noise below it.
        const floor = 0.9 - 3 * Math.sqrt((0.9 * 0.1) / DETECT_RUNS);
        rows.push({
          scenario: `ramp ${K} steps, latency p${q * 100}: reference breach from step ${AT}, detected at that step within ${plan.needed}`,
          seed: 0xa11ce,
          runs: DETECT_RUNS,
          horizonCanary: plan.needed,
          kind: 'detection',
          rate: power,
          goal: `>= 90% (floor ${(floor * 100).toFixed(1)}%); ${early} tripped earlier`,
          pass: power >= floor,
        });
        console.log(
          `ramp latency p${q * 100}: detected at step ${AT} in ${atStep}/${DETECT_RUNS} runs (needed ${plan.needed}); ${early} earlier`,
        );
        expect(power).toBeGreaterThanOrEqual(floor);
      },
    );

    it(
      `canary at the tolerance (1.2 L + 10 ms) at every step: whole-ramp trips <= alpha (${ALPHA})`,
      { timeout: TIMEOUT },
      () => {
        let trips = 0;
        for (let s = 0; s < NULL_RUNS; s++)
          if (ramp(0xb0b + s, cfg, plan.needed, (_step, l) => 1.2 * l + 10) !== null) trips++;
        const bound = binomialBound(ALPHA, NULL_RUNS);
        rows.push({
          scenario: `ramp ${K} steps, latency p${q * 100}: worst null (1.2 L + 10 ms) at every step`,
          seed: 0xb0b,
          runs: NULL_RUNS,
          horizonCanary: plan.needed * K,
          kind: 'false_trips',
          rate: trips / NULL_RUNS,
          alpha: ALPHA,
          bound,
          pass: trips <= bound,
        });
        expect(trips).toBeLessThanOrEqual(bound);
      },
    );
  });
}

afterAll(() => publish('ramp-latency', rows, (performance.now() - started) / 1000));
