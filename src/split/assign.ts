/**
 * The per-request decision: which experiment (if any) a request takes part in, in which arm, and whether
 * the fault starts at this hop. Untrusted points strip incoming `faultline.*` baggage (any spelling: see
 * baggage.ts) so no client can choose its own arm; trusted points honour an incoming assignment instead
 * of drawing. Written into the host's own per-request object (an Assignment), so the untouched path
 * allocates nothing.
 */
import { ARM_CANARY, ARM_CONTROL, type Arm } from '../core/vocab.js';
import { rawHeaderJoined } from '../core/raw-headers.js';
import type { Assignment, RequestView } from '../engine/target.js';
import type { ExperimentRuntime } from '../experiments/runtime.js';
import { matchesRequest } from './match.js';
import { assignmentFits, joinBaggage, mentionsFaultline, readAssignment, stripFaultline } from './baggage.js';

/** Where a request is decided: a proxy listener, or an in-process point. */
export interface DecidePoint {
  /** The listener's or point's name (an experiment's `inject_at` names the hops that inject). */
  readonly name: string;
  readonly trustAssignment: boolean;
  /** Experiment lookup for trusted incoming assignments. */
  readonly experimentsById: ReadonlyMap<string, ExperimentRuntime>;
}

export function assign(
  point: DecidePoint,
  candidates: readonly ExperimentRuntime[],
  view: RequestView,
  slot: Assignment,
): void {
  const raw = view.rawHeaders;
  // Every baggage line counts (RFC 9110 §5.3): a second line must not smuggle an assignment past the edge.
  const baggage = rawHeaderJoined(raw, 'baggage');
  const tagged = mentionsFaultline(baggage);
  if (tagged && point.trustAssignment) {
    honourIncoming(point, baggage as string, slot);
    return;
  }
  // The client's baggage as it will be forwarded: forged faultline members (any spelling) removed.
  const rest = baggage === undefined ? '' : tagged ? stripFaultline(baggage) : baggage;
  for (let i = 0; i < candidates.length; i++) {
    const exp = candidates[i] as ExperimentRuntime;
    if (!exp.assigning || !matchesRequest(exp.matcher, view.method, view.path, raw)) continue;
    // First match in config order owns the request, whatever its draw: every experiment's slice stays
    // exactly its percent of the requests it matches, and effects never mix.
    // No room for the assignment in the baggage: no arm, not counted (checked before the draw, so both
    // arms lose the same requests).
    if (!assignmentFits(exp.baggageMembers, rest)) break;
    const arm = exp.draw(raw);
    if (arm === 0) {
      // Matched but outside both arms: counted too, so an exposure ramp can show each arm's share.
      exp.assigned[0]! += 1;
      break;
    }
    slot.exp = exp;
    slot.arm = arm;
    slot.observe = true;
    slot.sessionKey = exp.lastKeyHash;
    slot.runId = exp.runId;
    exp.assigned[arm]! += 1;
    slot.baggageOut = joinBaggage(exp.baggageMembers[arm], rest);
    if (arm === ARM_CANARY && exp.injectHere) considerInjecting(slot, exp);
    return;
  }
  if (tagged) slot.baggageOut = rest;
}

/** A trusted hop: the arm was drawn upstream; inject here if the experiment injects downstream. */
function honourIncoming(point: DecidePoint, baggage: string, slot: Assignment): void {
  const incoming = readAssignment(baggage);
  if (incoming === null) return;
  const exp = point.experimentsById.get(incoming.experimentId);
  // Unknown, killed or expired here: forward untouched, never inject.
  if (exp === undefined || !exp.assigning) return;
  inherit(point, slot, exp, incoming.group === 'canary' ? ARM_CANARY : ARM_CONTROL, exp.runId);
}

/**
 * Take over an assignment drawn at an earlier hop (baggage at a trusted point, or the caller's own
 * in-process context): observed there, injected here if the experiment injects downstream (and names
 * this hop in `inject_at`, when it names any).
 */
export function inherit(
  point: DecidePoint,
  slot: Assignment,
  exp: ExperimentRuntime,
  arm: Arm,
  runId: number,
): void {
  slot.exp = exp;
  slot.arm = arm;
  slot.observe = false;
  slot.runId = runId;
  if (arm === ARM_CANARY && !exp.injectHere && (exp.injectAt === null || exp.injectAt.has(point.name)))
    considerInjecting(slot, exp);
}

function considerInjecting(slot: Assignment, exp: ExperimentRuntime): void {
  if (!exp.injecting || !exp.drawFault()) return;
  if (exp.activeFaults >= exp.maxActiveFaults) {
    exp.overflowCounter.inc();
    return;
  }
  slot.injectNow = true;
}
