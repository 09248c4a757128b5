/**
 * Assignment propagation in W3C baggage (https://www.w3.org/TR/baggage/) through OpenTelemetry's
 * propagation API. Keys: `faultline.exp`, `faultline.group`. Only requests that carry or receive an
 * assignment pay for parsing; everything else is a substring check.
 */
import { ROOT_CONTEXT, propagation } from '@opentelemetry/api';
import { W3CBaggagePropagator } from '@opentelemetry/core';
export const BAGGAGE_EXP = 'faultline.exp';
export const BAGGAGE_GROUP = 'faultline.group';
const PREFIX = 'faultline.';
const propagator = new W3CBaggagePropagator();
const getter = {
    keys: () => ['baggage'],
    get: (c, key) => (key === 'baggage' ? c.baggage : undefined),
};
const setter = {
    set: (c, key, value) => {
        if (key === 'baggage')
            c.baggage = value;
    },
};
export function mentionsFaultline(header) {
    return header !== undefined && header.includes(PREFIX);
}
/** Reads an assignment from a baggage header (trusted hops only). */
export function readAssignment(header) {
    const bag = propagation.getBaggage(propagator.extract(ROOT_CONTEXT, { baggage: header }, getter));
    const exp = bag?.getEntry(BAGGAGE_EXP)?.value;
    const group = bag?.getEntry(BAGGAGE_GROUP)?.value;
    if (!exp || (group !== 'canary' && group !== 'control'))
        return null;
    return { experimentId: exp, group };
}
/**
 * The baggage header to forward: incoming entries kept except `faultline.*`, plus the assignment if
 * any. Returns '' when nothing remains.
 */
export function rewriteBaggage(header, assignment) {
    let bag = header
        ? propagation.getBaggage(propagator.extract(ROOT_CONTEXT, { baggage: header }, getter))
        : undefined;
    bag ??= propagation.createBaggage();
    for (const [key] of bag.getAllEntries())
        if (key.startsWith(PREFIX))
            bag = bag.removeEntry(key);
    if (assignment) {
        bag = bag.setEntry(BAGGAGE_EXP, { value: assignment.experimentId });
        bag = bag.setEntry(BAGGAGE_GROUP, { value: assignment.group });
    }
    const carrier = { baggage: undefined };
    propagator.inject(propagation.setBaggage(ROOT_CONTEXT, bag), carrier, setter);
    return carrier.baggage ?? '';
}
//# sourceMappingURL=baggage.js.map