import { OUTCOME_CLIENT_ABORT } from '../core/vocab.js';
import { compileDelay } from './distributions.js';
import type { Fault, FaultIssue, FaultSpecOf } from './fault.js';

/** Delay before forwarding (request leg) or before returning the upstream's response (response leg). */
export function latencyFault(spec: FaultSpecOf<'latency'>): Fault {
  const sample = compileDelay(spec);
  if (spec.leg === 'response') {
    return {
      kind: 'latency',
      judging: 'consequences',
      callerLeftDuringHold: OUTCOME_CLIENT_ABORT,
      responseFlag: 'DI',
      start: (t) => t.forward(),
      onResponseStart: (t) => {
        // A kill between the fault's start and the upstream's answer cancels the delay.
        if (t.exp !== null && t.exp.injecting) t.holdResponse(sample());
      },
      holdEnded: (t) => t.releaseResponse(),
    };
  }
  return {
    kind: 'latency',
    judging: 'consequences',
    callerLeftDuringHold: OUTCOME_CLIENT_ABORT,
    responseFlag: 'DI',
    start: (t) => t.hold(sample()),
    holdEnded: (t) => t.forward(),
  };
}

export function checkLatency(spec: FaultSpecOf<'latency'>): FaultIssue[] {
  const out: FaultIssue[] = [];
  const d = spec.distribution;
  if ((spec.ms === undefined) === (d === undefined))
    out.push({ path: [], message: 'latency needs exactly one of "ms" or "distribution"' });
  if (d?.type === 'uniform' && d.min > d.max)
    out.push({ path: ['distribution', 'max'], message: 'must be >= min' });
  if (d?.type === 'lognormal' && d.p99 < d.median)
    out.push({ path: ['distribution', 'p99'], message: 'must be >= median' });
  return out;
}
