import { LatencyHistogram } from './histogram.js';

/** Response header a Faultline hop sets on injected replies: `<experiment-id>; fault=<kind>`. */
export const INJECTED_HEADER = 'x-faultline-injected';
/**
 * Response header a Faultline hop sets (config `arm_header: true`) on every response to a request
 * it assigned to an experiment arm, injected or not: `<experiment-id>; group=canary|control`.
 */
export const ARM_HEADER = 'x-faultline-arm';

export interface InjectedMark {
  readonly experiment: string;
  readonly fault: string | undefined;
}

export interface ArmMark {
  readonly experiment: string;
  readonly group: string | undefined;
}

const FAULT_RE = /(?:^|;)\s*fault=([^;\s]+)/;
const GROUP_RE = /(?:^|;)\s*group=([^;\s]+)/;

function param(value: string, semi: number, re: RegExp): string | undefined {
  return semi < 0 ? undefined : re.exec(value.slice(semi))?.[1];
}

export function parseInjectedMark(value: string): InjectedMark {
  const semi = value.indexOf(';');
  const experiment = (semi < 0 ? value : value.slice(0, semi)).trim();
  return { experiment, fault: param(value, semi, FAULT_RE) };
}

export function parseArmMark(value: string): ArmMark {
  const semi = value.indexOf(';');
  const experiment = (semi < 0 ? value : value.slice(0, semi)).trim();
  return { experiment, group: param(value, semi, GROUP_RE)?.toLowerCase() };
}

/**
 * A header may arrive repeated (one per hop or experiment: an array) or folded into one
 * comma-separated line; either way this returns one entry per mark.
 */
export function splitMarks(header: string | string[] | undefined): string[] {
  if (header === undefined) return [];
  const out: string[] = [];
  for (const line of Array.isArray(header) ? header : [header]) {
    for (const part of line.split(',')) {
      const t = part.trim();
      if (t !== '') out.push(t);
    }
  }
  return out;
}

export type ArmName = 'canary' | 'control' | 'untouched';

export interface Classification {
  readonly arm: ArmName;
  /** The response carried an x-faultline-injected mark of a selected experiment. */
  readonly injected: boolean;
  /** The response carried any x-faultline-arm mark (of any experiment). */
  readonly armMarked: boolean;
}

/**
 * canary: a selected experiment's `x-faultline-arm: ...; group=canary`, or its injected mark;
 * control: its `group=control` (and no canary evidence); untouched: neither. `experiment`
 * undefined selects every experiment.
 */
export function classify(
  injected: readonly string[],
  arm: readonly string[],
  experiment: string | undefined,
): Classification {
  let isInjected = false;
  for (const v of injected) {
    const m = parseInjectedMark(v);
    if (experiment === undefined || m.experiment === experiment) isInjected = true;
  }
  let canary = isInjected;
  let control = false;
  for (const v of arm) {
    const m = parseArmMark(v);
    if (experiment !== undefined && m.experiment !== experiment) continue;
    if (m.group === 'canary') canary = true;
    else if (m.group === 'control') control = true;
  }
  return {
    arm: canary ? 'canary' : control ? 'control' : 'untouched',
    injected: isInjected,
    armMarked: arm.length > 0,
  };
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

/** One response's marks, classified: what `finish` needs, shared between equal header values. */
export interface MarkClass extends Classification {
  /** Distinct experiments named by x-faultline-injected marks (any experiment, for `injectedBy`). */
  readonly experiments: readonly string[];
}

/** More distinct header pairs than this is not a Faultline hop's output; stop caching then. */
const MAX_CACHED = 1024;

const headerKey = (h: string | string[] | undefined): string =>
  h === undefined ? '' : Array.isArray(h) ? h.join('\n') : h;

/**
 * classify() memoised per (x-faultline-injected, x-faultline-arm) value pair. A Faultline hop writes a
 * few distinct values (experiment id, fault kind, group), so after the first of each the generator's
 * response path is two map lookups instead of splitting, regex matching and allocating per response.
 */
export class MarkClassifier {
  private readonly cache = new Map<string, Map<string, MarkClass>>();
  private size = 0;
  constructor(private readonly experiment: string | undefined) {}

  classify(injected: string | string[] | undefined, arm: string | string[] | undefined): MarkClass {
    const ik = headerKey(injected);
    const ak = headerKey(arm);
    let byArm = this.cache.get(ik);
    const hit = byArm?.get(ak);
    if (hit !== undefined) return hit;
    const marks = splitMarks(injected);
    const experiments = [...new Set(marks.map((v) => parseInjectedMark(v).experiment))];
    const c: MarkClass = { ...classify(marks, splitMarks(arm), this.experiment), experiments };
    if (this.size < MAX_CACHED) {
      if (byArm === undefined) this.cache.set(ik, (byArm = new Map()));
      byArm.set(ak, c);
      this.size++;
    }
    return c;
  }
}
