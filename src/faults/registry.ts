/** Faults registered by kind; adding a fault is one module and one line here. */
import type { FaultSpec } from '../config/schema.js';
import { abortFault } from './abort.js';
import type { Fault } from './fault.js';
import { latencyFault } from './latency.js';
import { resetFault } from './reset.js';
import { timeoutFault } from './timeout.js';

export function compileFault(spec: FaultSpec): Fault {
  switch (spec.kind) {
    case 'latency':
      return latencyFault(spec);
    case 'abort':
      return abortFault(spec);
    case 'timeout':
      return timeoutFault(spec);
    case 'reset':
      return resetFault();
  }
}
