/**
 * How much evidence a ramp step needs before it may advance, found by seeded simulation of the real
 * analyzer (src/stats), not a formula: the canary count at which a breach of the reference size is
 * detected in 90% of simulated runs at the step's alpha. The reference breach of a rate guardrail
 * (max_increase Δ, max_ratio R) over a baseline p0 is p1 = max(p0 + 2Δ, 2·R·p0): twice the tolerated
 * margin, so beyond both parts of the "ratio > R AND difference > Δ" rule. The reference breach of a
 * latency guardrail (canary <= R·control + a at its quantile) doubles the tolerated margin the same
 * way: every canary request takes (1 + 2(R − 1))·L + 2a where control takes L, with L lognormal
 * (median 100 ms, σ 0.6: the latency simulations' model, test/sim/scenarios.ts). The claim is about
 * that shape; a breach on a few requests only (a slow tail) needs more canary requests than this.
 */
import { ExperimentAnalyzer, type AnalyzerConfig, type GuardrailSpec } from '../stats/analyzer.js';
import { createPrng, gaussian } from '../stats/prng.js';

export const POWER_TARGET = 0.9;
/** Baseline error/timeout rate assumed for the reference breach. */
export const BASELINE_RATE = 0.01;
const RUNS = 200;
const MAX_CANARY = 20_000;

export interface PowerPlan {
  /** Canary requests per step (the 90th percentile of detection counts), or min_samples. */
  needed: number;
  /** The reference breach the claim is about, e.g. "error_rate 1% -> 3%". */
  breach: string | null;
  /** Simulated detection probability at `needed` (>= 0.9 when auto). */
  power: number | null;
}

const cache = new Map<string, PowerPlan>();

type RateSpec = Extract<GuardrailSpec, { metric: 'error_rate' | 'timeout_rate' }>;
type LatencySpec = Extract<GuardrailSpec, { metric: 'latency' }>;

/** Median and log-sd of the control latency the latency reference breach is simulated on. */
export const LATENCY_MEDIAN_MS = 100;
const LATENCY_SIGMA = 0.6;

/** The reference canary latency for control latency L: twice the tolerated margin over it. */
export function referenceLatency(g: LatencySpec, l: number): number {
  return (1 + 2 * (g.maxRatio - 1)) * l + 2 * g.maxIncreaseMs;
}

function describeLatency(g: LatencySpec): string {
  const r = Number((1 + 2 * (g.maxRatio - 1)).toPrecision(3));
  return `latency p${Number((g.quantile * 100).toPrecision(4))} x${r}${g.maxIncreaseMs > 0 ? ` + ${Number((2 * g.maxIncreaseMs).toPrecision(4))} ms` : ''} (lognormal, median ${LATENCY_MEDIAN_MS} ms)`;
}

/**
 * Detection canary counts of `runs` simulated runs where every canary request is the latency
 * reference breach of `g` (MAX_CANARY + 1: not detected).
 */
export function latencyDetectionCounts(
  cfg: AnalyzerConfig,
  g: LatencySpec,
  runs: number,
  seed: number,
  canaryLatency: (l: number, rnd: () => number) => number = (l) => referenceLatency(g, l),
): number[] {
  const rnd = createPrng(seed);
  const out: number[] = [];
  for (let r = 0; r < runs; r++) {
    const a = new ExperimentAnalyzer(cfg);
    let n = 0;
    let hit = MAX_CANARY + 1;
    while (n < MAX_CANARY) {
      const canary = rnd() < 0.5;
      const l = LATENCY_MEDIAN_MS * Math.exp(LATENCY_SIGMA * gaussian(rnd));
      if (canary) n++;
      const ms = canary ? canaryLatency(l, rnd) : l;
      if (a.record(canary ? 'canary' : 'control', false, false, ms) !== null) {
        hit = n;
        break;
      }
    }
    out.push(hit);
  }
  return out;
}

function countsOf(cfg: AnalyzerConfig, g: GuardrailSpec, runs: number, seed: number): number[] {
  return g.metric === 'latency'
    ? latencyDetectionCounts(cfg, g, runs, seed)
    : detectionCounts(cfg, g, runs, seed);
}

export function referenceRate(g: RateSpec, p0 = BASELINE_RATE): number {
  return Math.min(0.99, Math.max(p0 + 2 * g.maxIncrease, 2 * g.maxRatio * p0));
}

/**
 * Detection canary counts of `runs` simulated runs where the canary's `g.metric` rate is the reference
 * breach and control sits at the baseline (MAX_CANARY + 1: not detected).
 */
export function detectionCounts(cfg: AnalyzerConfig, g: RateSpec, runs: number, seed: number): number[] {
  const rnd = createPrng(seed);
  const p1 = referenceRate(g);
  const timeout = g.metric === 'timeout_rate';
  const out: number[] = [];
  for (let r = 0; r < runs; r++) {
    const a = new ExperimentAnalyzer(cfg);
    let n = 0;
    let hit = MAX_CANARY + 1;
    while (n < MAX_CANARY) {
      const canary = rnd() < 0.5;
      const bad = rnd() < (canary ? p1 : BASELINE_RATE);
      if (canary) n++;
      if (a.record(canary ? 'canary' : 'control', bad && !timeout, bad && timeout, -1) !== null) {
        hit = n;
        break;
      }
    }
    out.push(hit);
  }
  return out;
}

/** `fixed`: an explicit min_canary_per_step (its power is reported); undefined: auto. */
export function powerPlan(cfg: AnalyzerConfig, fixed: number | undefined, seed = 0x5eed): PowerPlan {
  const key = JSON.stringify([cfg, fixed, seed]);
  const hit = cache.get(key);
  if (hit) return hit;
  const all = cfg.guardrails;
  let plan: PowerPlan;
  if (all.length === 0) plan = { needed: fixed ?? cfg.minSamples, breach: null, power: null };
  else {
    let needed = cfg.minSamples;
    let power = 1;
    const names: string[] = [];
    const counted = all.map((g) => countsOf(cfg, g, RUNS, seed).sort((x, y) => x - y));
    all.forEach((g, i) => {
      const counts = counted[i] as number[];
      const n90 = counts[Math.ceil(POWER_TARGET * RUNS) - 1] as number;
      needed = Math.max(needed, Math.min(n90, MAX_CANARY));
      names.push(
        g.metric === 'latency'
          ? describeLatency(g)
          : `${g.metric} ${pct(BASELINE_RATE)} -> ${pct(referenceRate(g))}`,
      );
    });
    if (fixed !== undefined) needed = fixed;
    // Each guardrail's claim, at the count the step waits for (the weakest one is reported).
    for (const counts of counted) power = Math.min(power, counts.filter((c) => c <= needed).length / RUNS);
    plan = { needed, breach: names.join(', '), power };
  }
  cache.set(key, plan);
  return plan;
}

function pct(p: number): string {
  return `${Number((p * 100).toPrecision(3))}%`;
}
