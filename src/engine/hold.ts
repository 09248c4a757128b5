/**
 * Holds: a fault parks a request for a while (a delay, an unresponsive dependency, a pacing tick). The
 * engine keeps the count (max_active_faults), the set a kill releases, and the timer; every host shares
 * this code, so a kill lets every held request go the same way whatever the protocol.
 */
import type { ExperimentRuntime } from '../experiments/runtime.js';
import type { Arm } from '../core/vocab.js';
import type { FaultTarget } from './target.js';

/** A FaultTarget that can be held: the host keeps the timer in a field (no closure per hold). */
export interface HeldTarget extends FaultTarget {
  holdTimer: NodeJS.Timeout | null;
}

/** How a hold ended: it ran out, a kill let it go, or the host stopped it (the caller left, an error). */
export type HoldEnd = 'elapsed' | 'released' | 'cancelled';

/** Span events for holds (src/telemetry/tracing.ts), set on each runtime only when tracing is on. */
export interface HoldTracer {
  holdStarted(t: FaultTarget, ms: number): void;
  holdEnded(t: FaultTarget, how: HoldEnd): void;
}

export function startHold(t: HeldTarget, ms: number): void {
  const exp = t.exp as ExperimentRuntime;
  if (t.holdTimer !== null) cancelHold(t);
  exp.activeFaults++;
  exp.activeGauge.inc();
  exp.held.add(t);
  t.holdTimer = setTimeout(onHoldTimer, ms, t);
  if (exp.tracer !== null) exp.tracer.holdStarted(t, ms);
}

/** Stops a hold without running the fault; true when one was running. */
export function cancelHold(t: HeldTarget): boolean {
  return stopHold(t, 'cancelled');
}

function stopHold(t: HeldTarget, how: HoldEnd): boolean {
  if (t.holdTimer === null) return false;
  clearTimeout(t.holdTimer);
  t.holdTimer = null;
  const exp = t.exp as ExperimentRuntime;
  exp.activeFaults--;
  exp.activeGauge.dec();
  exp.held.delete(t);
  if (exp.tracer !== null) exp.tracer.holdEnded(t, how);
  return true;
}

/** The experiment was killed: let the hold go now (the fault forwards, answers or streams on). */
export function releaseHold(t: HeldTarget): void {
  if (stopHold(t, 'released')) t.exp?.fault.holdEnded(t, true);
}

function onHoldTimer(t: HeldTarget): void {
  if (stopHold(t, 'elapsed')) t.exp?.fault.holdEnded(t, false);
}

/**
 * The per-request state every host keeps for the engine: the assignment `decide` writes, the fault's
 * scratch space and the hold timer. Hosts whose per-request object has no other base class extend it.
 */
export abstract class TargetState {
  exp: ExperimentRuntime | null = null;
  arm: Arm = 0;
  observe = false;
  injectNow = false;
  injected = false;
  baggageOut: string | null = null;
  sessionKey = 0;
  runId = 0;
  faultData: unknown = null;
  holdTimer: NodeJS.Timeout | null = null;
}
