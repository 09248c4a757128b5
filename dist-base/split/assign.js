/**
 * The per-request decision: which experiment (if any) a request takes part in, in which arm, and whether
 * the fault starts at this hop. Untrusted listeners strip incoming `faultline.*` baggage so no client
 * can choose its own arm; trusted listeners honour an incoming assignment instead of drawing.
 */
import { ARM_CANARY, ARM_CONTROL, GROUP_NAMES, } from '../experiments/runtime.js';
import { rawHeaderJoined } from '../proxy/raw-headers.js';
import { matchesRequest } from './match.js';
import { mentionsFaultline, readAssignment, rewriteBaggage } from './baggage.js';
export function assign(ex) {
    const raw = ex.req.rawHeaders;
    // Every baggage line counts (RFC 9110 §5.3): a second line must not smuggle an assignment past the edge.
    const baggage = rawHeaderJoined(raw, 'baggage');
    const tagged = mentionsFaultline(baggage);
    if (tagged && ex.plan.trustAssignment) {
        honourIncoming(ex, baggage);
        return;
    }
    const candidates = ex.route.experiments;
    for (let i = 0; i < candidates.length; i++) {
        const exp = candidates[i];
        if (!exp.assigning || !matchesRequest(exp.matcher, ex.req.method ?? '', ex.req.url ?? '', raw))
            continue;
        // First match in config order owns the request, whatever its draw: every experiment's slice stays
        // exactly its percent of the requests it matches, and effects never mix.
        const arm = exp.draw(raw);
        if (arm === 0)
            break;
        ex.exp = exp;
        ex.arm = arm;
        ex.observe = true;
        ex.sessionKey = exp.lastKeyHash;
        ex.runId = exp.runId;
        exp.assigned[arm] += 1;
        ex.baggageOut = rewriteBaggage(baggage, { experimentId: exp.id, group: GROUP_NAMES[arm] });
        if (arm === ARM_CANARY && exp.injectHere)
            considerInjecting(ex, exp);
        return;
    }
    if (tagged)
        ex.baggageOut = rewriteBaggage(baggage, null);
}
/** A trusted hop: the arm was drawn upstream; inject here if the experiment injects downstream. */
function honourIncoming(ex, baggage) {
    const incoming = readAssignment(baggage);
    if (incoming === null)
        return;
    const exp = ex.plan.experimentsById.get(incoming.experimentId);
    // Unknown, killed or expired here: forward untouched, never inject.
    if (exp === undefined || !exp.assigning)
        return;
    const arm = incoming.group === 'canary' ? ARM_CANARY : ARM_CONTROL;
    ex.exp = exp;
    ex.arm = arm;
    ex.observe = false;
    ex.runId = exp.runId;
    if (arm === ARM_CANARY && !exp.injectHere)
        considerInjecting(ex, exp);
}
function considerInjecting(ex, exp) {
    if (!exp.injecting || !exp.drawFault())
        return;
    if (exp.activeFaults >= exp.maxActiveFaults) {
        exp.overflowCounter.inc();
        return;
    }
    ex.injectNow = true;
}
//# sourceMappingURL=assign.js.map