/** Faults registered by kind: adding a fault is one module, one schema alternative and one line here. */
import type { FaultSpec } from '../config/schema.js';
import { abortFault, checkAbort } from './abort.js';
import type { Fault, FaultIssue, FaultKind, FaultSpecOf, Intensity } from './fault.js';
import { checkLatency, latencyFault, latencyIntensity } from './latency.js';
import { resetFault } from './reset.js';
import { throttleFault, throttleIntensity } from './throttle.js';
import { checkTimeout, timeoutFault } from './timeout.js';
import { truncateFault } from './truncate.js';

interface Registered<K extends FaultKind> {
  /** Builds the fault from its config, once per experiment. */
  compile: (spec: FaultSpecOf<K>) => Fault;
  /** Rules between the fault's own fields, checked with the config (optional). */
  check?: (spec: FaultSpecOf<K>) => FaultIssue[];
  /** What a ramp steps (optional; default: the fault percent). */
  intensity?: Intensity<K>;
}

/** Exhaustive: a schema alternative without a line here does not compile. */
const FAULTS: { readonly [K in FaultKind]: Registered<K> } = {
  latency: { compile: latencyFault, check: checkLatency, intensity: latencyIntensity },
  abort: { compile: abortFault, check: checkAbort },
  timeout: { compile: timeoutFault, check: checkTimeout },
  reset: { compile: resetFault },
  throttle: { compile: throttleFault, intensity: throttleIntensity },
  truncate: { compile: truncateFault },
};

/** The entry of a spec's kind (the mapped type above already checked each pairing). */
type AnyRegistered = {
  compile: (s: FaultSpec) => Fault;
  check?: (s: FaultSpec) => FaultIssue[];
  intensity?: Intensity<FaultKind>;
};
const entry = (spec: FaultSpec) => FAULTS[spec.kind] as unknown as AnyRegistered;

export function compileFault(spec: FaultSpec): Fault {
  return entry(spec).compile(spec);
}

export function faultIssues(spec: FaultSpec): FaultIssue[] {
  return entry(spec).check?.(spec) ?? [];
}

/** Without an intensity of its own, a fault ramps the share of canary requests that get it. */
const PERCENT: Intensity<FaultKind> = {
  unit: '% of canary',
  decreasing: false,
  at: (spec, m) => ({ ...spec, percent: m }),
  check: (spec, steps) =>
    steps.some((s) => !(s > 0 && s <= 100))
      ? [{ path: ['steps'], message: `${spec.kind} steps are fault percents: each in (0, 100]` }]
      : [],
};

/** The ramp view of a fault: its unit, the spec and fault percent of a step, and the steps' issues. */
export function rampIntensity(spec: FaultSpec): {
  unit: string;
  decreasing: boolean;
  stepSpec(m: number): FaultSpec;
  issues(steps: readonly number[]): FaultIssue[];
} {
  const own = entry(spec).intensity;
  const i = (own ?? PERCENT) as unknown as Intensity<FaultKind> & {
    at(s: FaultSpec, m: number): FaultSpec;
    check(s: FaultSpec, steps: readonly number[]): FaultIssue[];
  };
  return {
    unit: i.unit,
    decreasing: i.decreasing,
    stepSpec: (m) => i.at(spec, m),
    issues: (steps) => i.check(spec, steps),
  };
}
