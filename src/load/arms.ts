import { LatencyHistogram } from './histogram.js';

/** Response header a Faultline hop sets on injected replies: `<experiment-id>; fault=<kind>`. */
export const INJECTED_HEADER = 'x-faultline-injected';

export interface InjectedMark {
  readonly experiment: string;
  readonly fault: string | undefined;
}

export function parseInjectedMark(value: string): InjectedMark {
  const semi = value.indexOf(';');
  const experiment = (semi < 0 ? value : value.slice(0, semi)).trim();
  const m = semi < 0 ? null : /(?:^|;)\s*fault=([^;\s]+)/.exec(value.slice(semi));
  return { experiment, fault: m?.[1] };
}

/**
 * Outcomes of one arm. An error is a transport failure or a 5xx: injected aborts are counted as
 * errors on purpose, because the report answers "what did the caller see".
 */
export class ArmStats {
  readonly latency = new LatencyHistogram();
  count = 0;
  errors = 0;
  transportErrors = 0;
  /** index 0 = transport error, 1..5 = status class 1xx..5xx */
  readonly byClass = new Uint32Array(6);

  record(latencyUs: number, status: number, failed: boolean): void {
    this.count++;
    this.latency.record(latencyUs);
    const cls = failed ? 0 : Math.min(5, Math.max(1, Math.floor(status / 100)));
    this.byClass[cls] = (this.byClass[cls] ?? 0) + 1;
    if (failed) this.transportErrors++;
    if (failed || status >= 500) this.errors++;
  }

  merge(other: ArmStats): void {
    this.count += other.count;
    this.errors += other.errors;
    this.transportErrors += other.transportErrors;
    for (let i = 0; i < this.byClass.length; i++)
      this.byClass[i] = (this.byClass[i] ?? 0) + (other.byClass[i] ?? 0);
    this.latency.merge(other.latency);
  }
}

export interface ArmSummary {
  count: number;
  errors: number;
  errorRate: number;
  transportErrors: number;
  status: { '1xx': number; '2xx': number; '3xx': number; '4xx': number; '5xx': number };
  latencyMs: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
}

const round3 = (x: number): number => (Number.isFinite(x) ? Math.round(x * 1000) / 1000 : Number.NaN);

export function summarizeArm(arm: ArmStats): ArmSummary {
  const h = arm.latency;
  const ms = (us: number): number => round3(us / 1000);
  return {
    count: arm.count,
    errors: arm.errors,
    errorRate: arm.count === 0 ? 0 : arm.errors / arm.count,
    transportErrors: arm.transportErrors,
    status: {
      '1xx': arm.byClass[1] ?? 0,
      '2xx': arm.byClass[2] ?? 0,
      '3xx': arm.byClass[3] ?? 0,
      '4xx': arm.byClass[4] ?? 0,
      '5xx': arm.byClass[5] ?? 0,
    },
    latencyMs: {
      p50: ms(h.quantileUs(0.5)),
      p90: ms(h.quantileUs(0.9)),
      p99: ms(h.quantileUs(0.99)),
      p999: ms(h.quantileUs(0.999)),
      max: ms(h.count === 0 ? Number.NaN : h.maxUs),
      mean: ms(h.meanUs()),
    },
  };
}
