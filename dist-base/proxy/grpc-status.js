/** gRPC status codes (grpc/doc/statuscodes.md). */
export const GRPC_STATUS_NAMES = [
    'OK',
    'CANCELLED',
    'UNKNOWN',
    'INVALID_ARGUMENT',
    'DEADLINE_EXCEEDED',
    'NOT_FOUND',
    'ALREADY_EXISTS',
    'PERMISSION_DENIED',
    'RESOURCE_EXHAUSTED',
    'FAILED_PRECONDITION',
    'ABORTED',
    'OUT_OF_RANGE',
    'UNIMPLEMENTED',
    'INTERNAL',
    'UNAVAILABLE',
    'DATA_LOSS',
    'UNAUTHENTICATED',
];
export const GRPC_DEADLINE_EXCEEDED = 4;
export const GRPC_UNAVAILABLE = 14;
export function grpcStatusCode(v) {
    if (typeof v === 'number')
        return Number.isInteger(v) && v >= 0 && v <= 16 ? v : undefined;
    if (/^\d+$/.test(v))
        return grpcStatusCode(Number(v));
    const i = GRPC_STATUS_NAMES.indexOf(v.toUpperCase());
    return i >= 0 ? i : undefined;
}
//# sourceMappingURL=grpc-status.js.map