import { abortFault } from './abort.js';
import { latencyFault } from './latency.js';
import { resetFault } from './reset.js';
import { timeoutFault } from './timeout.js';
export function compileFault(spec) {
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
//# sourceMappingURL=registry.js.map