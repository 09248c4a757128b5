import { OUTCOME_CLIENT_ABORT } from '../core/vocab.js';
import type { Fault, FaultIssue, FaultSpecOf } from './fault.js';

/**
 * Answer without contacting the upstream: an HTTP status, or for gRPC calls a trailers-only response
 * (HTTP 200 + grpc-status, per the gRPC HTTP/2 protocol spec) when `grpc_status` is set.
 */
export function abortFault(spec: FaultSpecOf<'abort'>): Fault {
  const status = spec.status ?? 503;
  const body =
    spec.body ?? (spec.message !== undefined ? `${spec.message}\n` : `injected fault: HTTP ${status}\n`);
  // Lower-cased once here: HTTP/2 refuses a response naming one field twice in two cases
  // (Content-Type and content-type), and HTTP/1.1 would send both.
  const headers: Record<string, string> = { 'content-type': 'text/plain; charset=utf-8' };
  for (const k in spec.headers) headers[k.toLowerCase()] = spec.headers[k] as string;
  const grpcStatus = spec.grpc_status;
  const grpcMessage = spec.message ?? 'injected fault';
  return {
    kind: 'abort',
    judging: 'skip',
    callerLeftDuringHold: OUTCOME_CLIENT_ABORT,
    responseFlag: 'FI',
    dropsRequest: false,
    fixedHoldMs: 0,
    start: (t) => {
      if (grpcStatus !== undefined && t.isGrpc) t.replyGrpcStatus(grpcStatus, grpcMessage);
      else t.reply(status, headers, body);
    },
    holdEnded: () => undefined,
  };
}

export function checkAbort(spec: FaultSpecOf<'abort'>): FaultIssue[] {
  return spec.status === undefined && spec.grpc_status === undefined
    ? [{ path: [], message: 'abort needs "status" (HTTP) and/or "grpc_status"' }]
    : [];
}
