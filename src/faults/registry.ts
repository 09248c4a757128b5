/** Faults registered by kind: adding a fault is one module, one schema alternative and one line here. */
import type { FaultSpec } from '../config/schema.js';
import { abortFault, checkAbort } from './abort.js';
import type { Fault, FaultIssue, FaultKind, FaultSpecOf } from './fault.js';
import { checkLatency, latencyFault } from './latency.js';
import { resetFault } from './reset.js';
import { throttleFault } from './throttle.js';
import { checkTimeout, timeoutFault } from './timeout.js';
import { truncateFault } from './truncate.js';

interface Registered<K extends FaultKind> {
  /** Builds the fault from its config, once per experiment. */
  compile: (spec: FaultSpecOf<K>) => Fault;
  /** Rules between the fault's own fields, checked with the config (optional). */
  check?: (spec: FaultSpecOf<K>) => FaultIssue[];
}

/** Exhaustive: a schema alternative without a line here does not compile. */
const FAULTS: { readonly [K in FaultKind]: Registered<K> } = {
  latency: { compile: latencyFault, check: checkLatency },
  abort: { compile: abortFault, check: checkAbort },
  timeout: { compile: timeoutFault, check: checkTimeout },
  reset: { compile: resetFault },
  throttle: { compile: throttleFault },
  truncate: { compile: truncateFault },
};

/** The entry of a spec's kind (the mapped type above already checked each pairing). */
type AnyRegistered = { compile: (s: FaultSpec) => Fault; check?: (s: FaultSpec) => FaultIssue[] };
const entry = (spec: FaultSpec) => FAULTS[spec.kind] as unknown as AnyRegistered;

export function compileFault(spec: FaultSpec): Fault {
  return entry(spec).compile(spec);
}

export function faultIssues(spec: FaultSpec): FaultIssue[] {
  return entry(spec).check?.(spec) ?? [];
}
