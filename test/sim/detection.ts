// Detection-suite helper: runs a scenario, checks quantile goals with the binomial rule, records a row.
import { expect } from 'vitest';
import type { AnalyzerConfig } from '../../src/stats/analyzer.js';
import { binomialBound, countAbove, runStream, summarize, type Outcome, type ResultRow } from './harness.js';

export interface DetectCase {
  name: string;
  seed: number;
  cfg: AnalyzerConfig;
  runs: number;
  horizonCanary: number;
  stream: (seed: number) => (t: number, o: Outcome) => void;
  /** [quantile, goal in canary requests] pairs; quantile 1 means "every run trips by goal" */
  goals: [number, number][];
  /** canary − control bad rate, for "mean excess bad requests before trip" */
  excessRate?: number;
  maxMeanExcess?: number;
  minTripFrac: number;
  reference: string;
}

export function runDetection(c: DetectCase, rows: ResultRow[]): void {
  const trips: number[] = [];
  for (let i = 0; i < c.runs; i++)
    trips.push(runStream(c.cfg, c.horizonCanary, c.stream(c.seed * 7919 + i)).canaryAtTrip);
  const s = summarize(trips);
  const checks = c.goals.map(([q, goal]) => {
    const above = countAbove(trips, goal);
    const allowed = q >= 1 ? 0 : binomialBound(1 - q, c.runs);
    return { q, goal, above, allowed, ok: above <= allowed };
  });
  // §8.2 "mean excess failed canary requests before trip": mean time-to-trip x (p_canary - p_control)
  const hit = trips.filter((x) => x >= 0);
  const meanExcess =
    c.excessRate === undefined || hit.length === 0
      ? undefined
      : (hit.reduce((a, b) => a + b, 0) / hit.length) * c.excessRate;
  const excessOk = c.maxMeanExcess === undefined || (meanExcess ?? Infinity) <= c.maxMeanExcess;
  const row: ResultRow = {
    scenario: c.name,
    seed: c.seed,
    runs: c.runs,
    horizonCanary: c.horizonCanary,
    kind: 'detection',
    rate: s.tripFrac,
    summary: s,
    goal:
      checks
        .map(
          (k) =>
            `${k.q >= 1 ? 'all' : `p${Math.round(k.q * 100)}`} ≤ ${k.goal} (${k.above} above, ≤ ${Math.floor(k.allowed)} allowed)`,
        )
        .join('; ') +
      (c.maxMeanExcess === undefined ? '' : `; mean excess ≤ ${c.maxMeanExcess}`) +
      `; tripped ≥ ${c.minTripFrac * 100} %`,
    reference: c.reference,
    pass: checks.every((k) => k.ok) && excessOk && s.tripFrac >= c.minTripFrac,
  };
  if (meanExcess !== undefined) row.meanExcessBad = meanExcess;
  rows.push(row);
  for (const k of checks) expect(k.above, `p${k.q * 100} <= ${k.goal}`).toBeLessThanOrEqual(k.allowed);
  expect(s.tripFrac).toBeGreaterThanOrEqual(c.minTripFrac);
  if (c.maxMeanExcess !== undefined) expect(meanExcess).toBeLessThanOrEqual(c.maxMeanExcess);
}
