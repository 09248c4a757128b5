// Fleet pooling (issue 13): one request stream split over N replicas, each writing its cumulative counts
// every flush interval at its own phase, one evaluator reading them at its own phase and feeding the
// deltas to ExperimentAnalyzer.recordBatch (what src/fleet does). Fleet-wide false trips must stay
// <= alpha and detection, in total canary requests, within 10 % of one replica. Common random numbers:
// run r sees the same stream for every N; only the replica split and the flush phases differ.
import { describe, expect, it } from 'vitest';
import { ExperimentAnalyzer, type ArmBatch, type GuardrailSpec } from '../../src/stats/analyzer.js';
import { createPrng } from '../../src/stats/prng.js';
import { LONG, TIMEOUT, binomialBound } from './harness.js';
import { DEFAULT_ERRORS, ZERO_TOLERANCE } from './scenarios.js';

const ALPHA = 0.01;
const RUNS = LONG ? 2000 : 150;
/** Experiment requests (both arms) per flush interval, fleet-wide: ~1,000 rps x 10 % x 200 ms / 4 */
const PER_INTERVAL = 50;
const NS = LONG ? [1, 3, 10, 30] : [1, 3, 10];

interface Acc {
  n: [number, number];
  bad: [number, number];
}
const acc = (): Acc => ({ n: [0, 0], bad: [0, 0] });
const batch = (a: Acc, arm: 0 | 1): ArmBatch => ({
  requests: a.n[arm],
  errors: a.bad[arm],
  timeouts: 0,
  latency: null,
});

/** Canary requests the evaluator had consumed when it tripped; -1 if it did not within the horizon. */
function runFleet(
  guardrail: GuardrailSpec,
  n: number,
  seed: number,
  pCanary: number,
  pControl: number,
  horizonCanary: number,
): number {
  const a = new ExperimentAnalyzer({ alpha: ALPHA, minSamples: 100, sticky: false, guardrails: [guardrail] });
  const stream = createPrng(seed);
  const split = createPrng(seed ^ 0x5bd1e995 ^ n);
  // Phases in [0, 1) of the interval: replica j flushes at phase[j] + k, the evaluator reads at ev + k.
  const phase = Array.from({ length: n }, () => split());
  const ev = split();
  const unflushed = Array.from({ length: n }, acc);
  const flushed = Array.from({ length: n }, acc);
  let canary = 0;
  for (let i = 0; canary < horizonCanary; i++) {
    const t = (i + 0.5) / PER_INTERVAL;
    const k = Math.floor(t);
    const frac = t - k;
    // Events between the previous request and this one, in time order: flushes, then the read.
    const prev = (i - 0.5) / PER_INTERVAL;
    const pFrac = prev - Math.floor(prev);
    const crossed = (x: number) => (Math.floor(prev) === k ? pFrac < x && x <= frac : x <= frac || pFrac < x);
    for (let j = 0; j < n; j++)
      if (crossed(phase[j]!)) {
        const u = unflushed[j]!;
        const f = flushed[j]!;
        for (const arm of [0, 1] as const) {
          f.n[arm] += u.n[arm];
          f.bad[arm] += u.bad[arm];
        }
        unflushed[j] = acc();
      }
    if (crossed(ev)) {
      const sum = acc();
      for (let j = 0; j < n; j++) {
        const f = flushed[j]!;
        for (const arm of [0, 1] as const) {
          sum.n[arm] += f.n[arm];
          sum.bad[arm] += f.bad[arm];
        }
        flushed[j] = acc();
      }
      if (sum.n[0] + sum.n[1] > 0 && a.recordBatch(batch(sum, 0), batch(sum, 1)) !== null)
        return a.samples().canary;
    }
    const isCanary = stream() < 0.5;
    const bad = stream() < (isCanary ? pCanary : pControl);
    const replica = Math.floor(split() * n);
    const u = unflushed[replica]!;
    const arm = isCanary ? 0 : 1;
    u.n[arm] += 1;
    if (bad) u.bad[arm] += 1;
    if (isCanary) canary++;
  }
  return -1;
}

function median(xs: number[]): number {
  const s = xs.map((x) => (x < 0 ? Infinity : x)).sort((p, q) => p - q);
  return s[Math.floor(s.length / 2)]!;
}

describe('sim: fleet pooling over N replicas', () => {
  it(
    'A/A (1 % both arms, zero tolerance, the null boundary): fleet-wide false trips <= alpha for every N',
    () => {
      const horizon = LONG ? 50_000 : 10_000;
      for (const n of NS) {
        let trips = 0;
        for (let r = 0; r < RUNS; r++)
          if (runFleet(ZERO_TOLERANCE, n, 9000 + r, 0.01, 0.01, horizon) >= 0) trips++;
        console.log(`fleet null N=${n}: ${trips}/${RUNS} false trips (alpha ${ALPHA})`);
        expect(trips).toBeLessThanOrEqual(binomialBound(ALPHA, RUNS));
      }
    },
    TIMEOUT,
  );

  it(
    'detection 1 % -> 6 % errors: median canary requests to trip within 10 % of N = 1',
    () => {
      const med = new Map<number, number>();
      for (const n of NS) {
        const trips: number[] = [];
        for (let r = 0; r < RUNS; r++) trips.push(runFleet(DEFAULT_ERRORS, n, 7000 + r, 0.06, 0.01, 20_000));
        expect(trips.filter((x) => x < 0).length).toBe(0);
        med.set(n, median(trips));
      }
      const base = med.get(1)!;
      console.log(
        `fleet detection medians (canary requests): ${[...med].map(([n, m]) => `N=${n}: ${m}`).join(', ')}`,
      );
      for (const [, m] of med) expect(Math.abs(m - base) / base).toBeLessThanOrEqual(0.1);
    },
    TIMEOUT,
  );
});
