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
] as const;

export const GRPC_DEADLINE_EXCEEDED = 4;
export const GRPC_UNAVAILABLE = 14;

export function grpcStatusCode(v: string | number): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 && v <= 16 ? v : undefined;
  if (/^\d+$/.test(v)) return grpcStatusCode(Number(v));
  const i = (GRPC_STATUS_NAMES as readonly string[]).indexOf(v.toUpperCase());
  return i >= 0 ? i : undefined;
}

/** Label of a call that ended without any grpc-status (stream reset, caller cancelled). */
export const GRPC_NO_STATUS_LABEL = 'none';

/**
 * grpc_code label values of faultline_requests_total and faultline_experiment_responses_total,
 * indexed by grpcCodeIndex(): "" for a request that is not a gRPC call (Prometheus reads an empty
 * label as an absent one, so HTTP series look as they did), the final grpc-status name, or "none"
 * when a gRPC call ended without a status (reset, cancelled, a reply without grpc-status).
 */
export const GRPC_CODE_LABELS: readonly string[] = ['', ...GRPC_STATUS_NAMES, GRPC_NO_STATUS_LABEL];

/** Index into GRPC_CODE_LABELS: 0 not gRPC, 1 + code, or the last slot for "none". */
export function grpcCodeIndex(isGrpc: boolean, status: number): number {
  if (!isGrpc) return 0;
  return status >= 0 && status < GRPC_STATUS_NAMES.length ? status + 1 : GRPC_STATUS_NAMES.length + 1;
}
