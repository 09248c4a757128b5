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

export function startHold(t: HeldTarget, ms: number): void {
  const exp = t.exp as ExperimentRuntime;
  if (t.holdTimer !== null) cancelHold(t);
  exp.activeFaults++;
  exp.activeGauge.inc();
  exp.held.add(t);
  t.holdTimer = setTimeout(onHoldTimer, ms, t);
}

/** Stops a hold without running the fault; true when one was running. */
export function cancelHold(t: HeldTarget): boolean {
  if (t.holdTimer === null) return false;
  clearTimeout(t.holdTimer);
  t.holdTimer = null;
  const exp = t.exp as ExperimentRuntime;
  exp.activeFaults--;
  exp.activeGauge.dec();
  exp.held.delete(t);
  return true;
}

/** The experiment was killed: let the hold go now (the fault forwards, answers or streams on). */
export function releaseHold(t: HeldTarget): void {
  if (cancelHold(t)) t.exp?.fault.holdEnded(t, true);
}

function onHoldTimer(t: HeldTarget): void {
  if (cancelHold(t)) t.exp?.fault.holdEnded(t, false);
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
