import { OUTCOME_CLIENT_ABORT } from '../core/vocab.js';
import { compileDelay } from './distributions.js';
import type { Fault, FaultIssue, FaultSpecOf, Intensity } from './fault.js';

/** Delay before forwarding (request leg) or before returning the upstream's response (response leg). */
export function latencyFault(spec: FaultSpecOf<'latency'>): Fault {
  const sample = compileDelay(spec);
  if (spec.leg === 'response') {
    return {
      kind: 'latency',
      judging: 'consequences',
      callerLeftDuringHold: OUTCOME_CLIENT_ABORT,
      responseFlag: 'DI',
      dropsRequest: false,
      fixedHoldMs: 0,
      start: (t) => t.forward(),
      onResponseStart: (t) => {
        // A kill between the fault's start and the upstream's answer cancels the delay.
        if (t.exp === null || !t.exp.injecting) return;
        const ms = sample();
        if (ms > 0) t.holdResponse(ms);
      },
      holdEnded: (t) => t.releaseResponse(),
    };
  }
  return {
    kind: 'latency',
    judging: 'consequences',
    callerLeftDuringHold: OUTCOME_CLIENT_ABORT,
    responseFlag: 'DI',
    dropsRequest: false,
    fixedHoldMs: spec.ms ?? 0,
    // No hold for 0 ms (an A/A run, a ramp's first step): a timer would add Node's 1 ms minimum
    // and a loop turn to every canary request of a fault meant to change nothing.
    start: (t) => {
      const ms = sample();
      if (ms > 0) t.hold(ms);
      else t.forward();
    },
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

/** A latency ramp steps the fixed delay, in ms. */
export const latencyIntensity: Intensity<'latency'> = {
  unit: 'ms',
  decreasing: false,
  at: (spec, m) => ({ ...spec, ms: m }),
  check: (spec, steps) => {
    const out: FaultIssue[] = [];
    if (spec.ms === undefined)
      out.push({ path: [], message: 'a latency ramp needs the fault\'s "ms" (not a distribution)' });
    if (steps.some((s) => s > 600_000))
      out.push({ path: ['steps'], message: 'latency steps must be at most 600000 ms' });
    return out;
  },
};
