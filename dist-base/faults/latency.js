import { compileDelay } from './distributions.js';
/** Delay before forwarding (request leg) or before returning the upstream's response (response leg). */
export function latencyFault(spec) {
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
        start: (ex) => ex.hold(sample()),
        holdEnded: (ex) => ex.forward(),
    };
}
//# sourceMappingURL=latency.js.map