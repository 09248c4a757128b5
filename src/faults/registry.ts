/** Faults registered by kind: adding a fault is one module, one schema alternative and one line here. */
import type { FaultSpec } from '../config/schema.js';
import { abortFault } from './abort.js';
import type { Fault, FaultKind, FaultSpecOf } from './fault.js';
import { latencyFault } from './latency.js';
import { resetFault } from './reset.js';
import { throttleFault } from './throttle.js';
import { timeoutFault } from './timeout.js';
import { truncateFault } from './truncate.js';

/** Exhaustive: a schema alternative without a line here does not compile. */
const FAULTS: { readonly [K in FaultKind]: (spec: FaultSpecOf<K>) => Fault } = {
  latency: latencyFault,
  abort: abortFault,
  timeout: timeoutFault,
  reset: resetFault,
  throttle: throttleFault,
  truncate: truncateFault,
};

export function compileFault(spec: FaultSpec): Fault {
  return (FAULTS[spec.kind] as (s: FaultSpec) => Fault)(spec);
}
