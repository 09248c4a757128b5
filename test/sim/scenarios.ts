// Traffic generators for the simulations (statistics.md §7; research/sim/*.py): per-request
// randomisation with ρ = ½, optional 20× error bursts, lognormal latency with drifting load.
import { createPrng, gaussian } from '../../src/stats/prng.js';
import type { GuardrailSpec } from '../../src/stats/analyzer.js';
import type { Outcome } from './harness.js';

export const ZERO_TOLERANCE: GuardrailSpec = { metric: 'error_rate', maxIncrease: 0, maxRatio: 1 };
export const DEFAULT_ERRORS: GuardrailSpec = { metric: 'error_rate', maxIncrease: 0.01, maxRatio: 1.5 };
export const LATENCY_GUARDRAILS: GuardrailSpec[] = [0.5, 0.9, 0.99].map((q) => ({
  metric: 'latency',
  quantile: q,
  maxRatio: 1.2,
  maxIncreaseMs: 10,
}));

/** Both arms' error rates ×20 for 500 requests every 10k, starting at 3k (sim_errors.py `bursty`). */
export function burstMultiplier(t: number): number {
  return t >= 3000 && (t - 3000) % 10000 < 500 ? 20 : 1;
}

/** Error-rate stream: canary rate pc, control rate pk, both scaled by `mult(t)`. */
export function errorStream(
  seed: number,
  pc: number,
  pk: number,
  mult: (t: number) => number = () => 1,
): (t: number, o: Outcome) => void {
  const r = createPrng(seed);
  return (t, o) => {
    const c = r() < 0.5;
    o.arm = c ? 'canary' : 'control';
    o.bad = r() < Math.min(1, (c ? pc : pk) * mult(t));
    o.latencyMs = 1;
  };
}

/** Load multiplier: flat, or 1 + 0.5 sin(2πt/20k) with ×3 spikes for 500 of every 10k requests. */
export function loadMultiplier(kind: 'flat' | 'drifting', t: number): number {
  if (kind === 'flat') return 1;
  let m = 1 + 0.5 * Math.sin((2 * Math.PI * t) / 20000);
  if (t >= 3000 && (t - 3000) % 10000 < 500) m *= 3;
  return m;
}

export type CanaryLatency = 'AA' | 'null_boundary' | 'x1.5' | 'x2' | '+300ms_on_20pct' | '+1000ms_on_3pct';

/** Latency stream as in sim_latency.py: lognormal (median 100 ms, σ = 0.6) × load, canary transformed. */
export function latencyStream(
  seed: number,
  kind: CanaryLatency,
  load: 'flat' | 'drifting',
): (t: number, o: Outcome) => void {
  const r = createPrng(seed);
  return (t, o) => {
    const c = r() < 0.5;
    const base = 100 * Math.exp(0.6 * gaussian(r)) * loadMultiplier(load, t);
    o.arm = c ? 'canary' : 'control';
    o.bad = false;
    if (!c) {
      o.latencyMs = base;
      return;
    }
    switch (kind) {
      case 'AA':
        o.latencyMs = base;
        break;
      case 'null_boundary':
        o.latencyMs = 1.2 * base + 10;
        break;
      case 'x1.5':
        o.latencyMs = 1.5 * base;
        break;
      case 'x2':
        o.latencyMs = 2 * base;
        break;
      case '+300ms_on_20pct':
        o.latencyMs = base + (r() < 0.2 ? 300 : 0);
        break;
      case '+1000ms_on_3pct':
        o.latencyMs = base + (r() < 0.03 ? 1000 : 0);
        break;
    }
  };
}
