import { OUTCOME_ERROR, OUTCOME_OK, OUTCOME_TIMEOUT } from '../experiments/runtime.js';
import { GRPC_DEADLINE_EXCEEDED, GRPC_STATUS_NAMES } from './grpc-status.js';
export const GRPC_OUTCOME_UNKNOWN = -1;
const UNIT_MS = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
/** `grpc-timeout` ("TimeoutValue TimeoutUnit", at most 8 digits) in ms; -1 when absent or malformed. */
export function grpcTimeoutMs(value) {
    if (value === undefined || value.length < 2 || value.length > 9)
        return -1;
    const unit = UNIT_MS[value[value.length - 1]];
    const n = Number(value.slice(0, -1));
    if (unit === undefined || !Number.isInteger(n) || n < 0)
        return -1;
    return n * unit;
}
/**
 * grpc-message value: percent-encoded UTF-8, where only bytes outside 0x20-0x7E and '%' itself are
 * encoded (PROTOCOL-HTTP2.md, "Responses"); clients decode exactly that, so encodeURIComponent's
 * extra escapes (':', '/', ...) would show up verbatim.
 */
export function grpcMessageEncode(message) {
    let plain = true;
    for (let i = 0; i < message.length; i++) {
        const c = message.charCodeAt(i);
        if (c < 0x20 || c > 0x7e || c === 0x25) {
            plain = false;
            break;
        }
    }
    if (plain)
        return message;
    let out = '';
    for (const byte of Buffer.from(message, 'utf8'))
        out +=
            byte < 0x20 || byte > 0x7e || byte === 0x25
                ? `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
                : String.fromCharCode(byte);
    return out;
}
/** OK is ok, DEADLINE_EXCEEDED a timeout, every other code an error; unknown when no status arrived. */
export function grpcOutcome(status) {
    if (status < 0)
        return GRPC_OUTCOME_UNKNOWN;
    if (status === 0)
        return OUTCOME_OK;
    if (status === GRPC_DEADLINE_EXCEEDED)
        return OUTCOME_TIMEOUT;
    return OUTCOME_ERROR;
}
/** Label of a call that ended without any grpc-status (stream reset, caller cancelled). */
const NO_STATUS = 'none';
/** Label children per route, resolved on first use: [0..16] by code, [17] for no status. */
const grpcCounters = new WeakMap();
/** Counts one finished gRPC call by its final grpc-status (faultline_grpc_responses_total). */
export function countGrpcResponse(route, status) {
    let row = grpcCounters.get(route);
    if (row === undefined) {
        row = [];
        grpcCounters.set(route, row);
    }
    const idx = status >= 0 && status < GRPC_STATUS_NAMES.length ? status : GRPC_STATUS_NAMES.length;
    let c = row[idx];
    if (c === undefined) {
        const label = idx < GRPC_STATUS_NAMES.length ? GRPC_STATUS_NAMES[idx] : NO_STATUS;
        c = route.metrics.grpcResponses.labels(route.listener, route.name, label);
        row[idx] = c;
    }
    c.inc();
}
//# sourceMappingURL=grpc.js.map