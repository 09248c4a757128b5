/**
 * A healthy baseline is part of every hypothesis: when the control arm itself fails (its error or
 * timeout rate above a bound), "the canary did no worse than control" says nothing, so a run that
 * would be `held` is `inconclusive` with cause `control_unhealthy` instead (seen: both arms at 25%
 * timeouts under host load, and the run said HELD). `refuted` stays refuted: a canary worse than an
 * already sick control is still worse.
 *
 * The bound, per metric: `control_health.max_error_rate` / `max_timeout_rate` when set; else what the
 * route's own steady state declares healthy (the `max` of the experiment's `traffic` error_rate probe:
 * it counts 5xx and unanswered requests, timeouts included); else 5%. Judged with a one-sided 95%
 * Wilson lower bound, so a handful of unlucky control requests does not flag a healthy service: the
 * control is unhealthy only when even the low end of its rate's interval is above the bound.
 */
import type { ExperimentRuntime } from './runtime.js';
import { ARM_CONTROL } from './runtime.js';

export const DEFAULT_CONTROL_MAX_RATE = 0.05;
/** One-sided 95%. */
const Z = 1.6448536269514722;

export interface ControlHealth {
  status: 'healthy' | 'unhealthy' | 'insufficient_data';
  /** Control requests judged (client aborts left out). */
  requests: number;
  /** Share of control requests that did not end OK (errors, timeouts, resets), as the guardrails count. */
  error_rate: number;
  timeout_rate: number;
  max_error_rate: number;
  max_timeout_rate: number;
  /** Where the bounds came from: "config", "steady_state:<probe>" or "default". */
  bound_source: string;
  min_requests: number;
  detail: string;
}

/** Lower end of the one-sided 95% Wilson score interval of k successes in n. */
export function wilsonLower(k: number, n: number): number {
  if (n <= 0) return 0;
  const p = k / n;
  const z2 = Z * Z;
  const centre = p + z2 / (2 * n);
  const margin = Z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return Math.max(0, (centre - margin) / (1 + z2 / n));
}

function bounds(rt: ExperimentRuntime): { err: number; timeout: number; source: string } {
  const own = rt.spec.control_health;
  const probe = rt.spec.steady_state.find(
    (p) => p.traffic !== undefined && p.traffic.metric === 'error_rate' && p.traffic.max !== undefined,
  );
  const derived = probe?.traffic?.max;
  const fallback = derived ?? DEFAULT_CONTROL_MAX_RATE;
  const source =
    own?.max_error_rate !== undefined && own.max_timeout_rate !== undefined
      ? 'config'
      : derived !== undefined
        ? `steady_state:${probe!.name}`
        : 'default';
  return {
    err: own?.max_error_rate ?? fallback,
    timeout: own?.max_timeout_rate ?? fallback,
    source,
  };
}

export function controlHealth(rt: ExperimentRuntime): ControlHealth {
  const c = rt.armCounts(ARM_CONTROL);
  const n = c.requests - c.client_abort;
  const bad = c.error + c.timeout + c.reset;
  const b = bounds(rt);
  const min = rt.spec.control_health?.min_requests ?? rt.spec.min_samples;
  const errorRate = n > 0 ? bad / n : 0;
  const timeoutRate = n > 0 ? c.timeout / n : 0;
  const base = {
    requests: n,
    error_rate: errorRate,
    timeout_rate: timeoutRate,
    max_error_rate: b.err,
    max_timeout_rate: b.timeout,
    bound_source: b.source,
    min_requests: min,
  };
  const pct = (x: number) => `${Number((x * 100).toPrecision(3))}%`;
  if (n < min)
    return {
      ...base,
      status: 'insufficient_data',
      detail: `${n} control requests, fewer than ${min}: control health not judged`,
    };
  const why: string[] = [];
  if (wilsonLower(bad, n) > b.err) why.push(`error rate ${pct(errorRate)} (${bad}/${n}) above ${pct(b.err)}`);
  if (wilsonLower(c.timeout, n) > b.timeout)
    why.push(`timeout rate ${pct(timeoutRate)} (${c.timeout}/${n}) above ${pct(b.timeout)}`);
  if (why.length > 0)
    return {
      ...base,
      status: 'unhealthy',
      detail: `control arm unhealthy: ${why.join(', ')} (bound from ${b.source}, 95% lower bound)`,
    };
  return {
    ...base,
    status: 'healthy',
    detail: `control error rate ${pct(errorRate)}, timeout rate ${pct(timeoutRate)} (bounds ${pct(b.err)} / ${pct(b.timeout)} from ${b.source})`,
  };
}
