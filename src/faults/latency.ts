import type { FaultSpec } from '../config/schema.js';
import type { Exchange } from '../proxy/exchange.js';
import { compileDelay } from './distributions.js';
import type { Fault } from './fault.js';

type Spec = Extract<FaultSpec, { kind: 'latency' }>;

/** Delay before forwarding (request leg) or before returning the upstream's response (response leg). */
export function latencyFault(spec: Spec): Fault {
  const sample = compileDelay(spec);
  if (spec.leg === 'response') {
    return {
      kind: 'latency',
      start: (ex) => {
        ex.responseDelayMs = sample();
        ex.forward();
      },
      holdEnded: (ex) => ex.releaseResponse(),
    };
  }
  return {
    kind: 'latency',
    start: (ex: Exchange) => ex.hold(sample()),
    holdEnded: (ex: Exchange) => ex.forward(),
  };
}
