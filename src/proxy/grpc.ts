/** gRPC over HTTP/2 details (grpc/doc/PROTOCOL-HTTP2.md): deadlines and status-to-outcome mapping. */
import type { Counter } from 'prom-client';
import { OUTCOME_ERROR, OUTCOME_OK, OUTCOME_TIMEOUT, type Outcome } from '../experiments/runtime.js';
import { GRPC_DEADLINE_EXCEEDED, GRPC_NO_STATUS_LABEL, GRPC_STATUS_NAMES } from './grpc-status.js';
import type { RouteRuntime } from './plan.js';

export const GRPC_OUTCOME_UNKNOWN = -1;

const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** `grpc-timeout` ("TimeoutValue TimeoutUnit", at most 8 digits) in ms; -1 when absent or malformed. */
export function grpcTimeoutMs(value: string | undefined): number {
  if (value === undefined || value.length < 2 || value.length > 9) return -1;
  const unit = UNIT_MS[value[value.length - 1] as string];
  const n = Number(value.slice(0, -1));
  if (unit === undefined || !Number.isInteger(n) || n < 0) return -1;
  return n * unit;
}

export { grpcMessageEncode } from '../core/vocab.js';

/** OK is ok, DEADLINE_EXCEEDED a timeout, every other code an error; unknown when no status arrived. */
export function grpcOutcome(status: number): Outcome | typeof GRPC_OUTCOME_UNKNOWN {
  if (status < 0) return GRPC_OUTCOME_UNKNOWN;
  if (status === 0) return OUTCOME_OK;
  if (status === GRPC_DEADLINE_EXCEEDED) return OUTCOME_TIMEOUT;
  return OUTCOME_ERROR;
}

/** Label children per route, resolved on first use: [0..16] by code, [17] for no status. */
const grpcCounters = new WeakMap<RouteRuntime, (Counter.Internal | undefined)[]>();

/** Counts one finished gRPC call by its final grpc-status (faultline_grpc_responses_total). */
export function countGrpcResponse(route: RouteRuntime, status: number): void {
  let row = grpcCounters.get(route);
  if (row === undefined) {
    row = [];
    grpcCounters.set(route, row);
  }
  const idx = status >= 0 && status < GRPC_STATUS_NAMES.length ? status : GRPC_STATUS_NAMES.length;
  let c = row[idx];
  if (c === undefined) {
    const label = idx < GRPC_STATUS_NAMES.length ? (GRPC_STATUS_NAMES[idx] as string) : GRPC_NO_STATUS_LABEL;
    c = route.metrics.grpcResponses.labels(route.listener, route.name, label);
    row[idx] = c;
  }
  c.inc();
}

export { grpcStatusClass } from '../core/vocab.js';
