import { GRPC_DEADLINE_EXCEEDED } from '../proxy/grpc-status.js';
import { OUTCOME_TIMEOUT } from '../experiments/runtime.js';
const BODY = 'injected fault: upstream timeout\n';
const HEADERS = { 'content-type': 'text/plain; charset=utf-8' };
/**
 * An unresponsive dependency: hold the request without using an upstream connection, then answer 504
 * (gRPC: DEADLINE_EXCEEDED at the caller's own deadline if that comes first), or with `hang` never
 * answer: the connection is dropped at `max_hold_ms` unless the client gives up first.
 */
export function timeoutFault(spec) {
    const holdMs = spec.hang ? spec.max_hold_ms : spec.ms;
    return {
        kind: 'timeout',
        start: (ex) => {
            const deadline = ex.grpcDeadlineMs();
            ex.hold(deadline >= 0 && deadline < holdMs ? deadline : holdMs);
        },
        holdEnded: (ex, released) => {
            if (released)
                ex.forward();
            else if (spec.hang)
                ex.resetClient(OUTCOME_TIMEOUT);
            else if (ex.isGrpc)
                ex.replyGrpcStatus(GRPC_DEADLINE_EXCEEDED, 'injected fault: deadline exceeded');
            else
                ex.replyInjected(504, HEADERS, BODY);
        },
    };
}
//# sourceMappingURL=timeout.js.map