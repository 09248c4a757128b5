import { GRPC_DEADLINE_EXCEEDED, OUTCOME_TIMEOUT } from '../core/vocab.js';
import type { Fault, FaultIssue, FaultSpecOf } from './fault.js';

const BODY = 'injected fault: upstream timeout\n';
const HEADERS = { 'content-type': 'text/plain; charset=utf-8' };

/**
 * An unresponsive dependency: hold the request without using an upstream connection, then answer 504
 * (gRPC: DEADLINE_EXCEEDED at the caller's own deadline if that comes first), or with `hang` never
 * answer: the connection is dropped at `max_hold_ms` unless the client gives up first.
 */
export function timeoutFault(spec: FaultSpecOf<'timeout'>): Fault {
  const holdMs = spec.hang ? spec.max_hold_ms : spec.ms;
  return {
    kind: 'timeout',
    judging: 'skip',
    // A caller that gives up while its request is held saw exactly what the fault simulates.
    callerLeftDuringHold: OUTCOME_TIMEOUT,
    responseFlag: 'FI',
    dropsRequest: spec.hang,
    fixedHoldMs: holdMs,
    start: (t) => {
      const deadline = t.callerDeadlineMs();
      t.hold(deadline >= 0 && deadline < holdMs ? deadline : holdMs);
    },
    holdEnded: (t, released) => {
      if (released) t.forward();
      else if (spec.hang) t.reset(OUTCOME_TIMEOUT);
      else if (t.isGrpc) t.replyGrpcStatus(GRPC_DEADLINE_EXCEEDED, 'injected fault: deadline exceeded');
      else t.reply(504, HEADERS, BODY);
    },
  };
}

export function checkTimeout(spec: FaultSpecOf<'timeout'>): FaultIssue[] {
  return spec.hang && spec.max_hold_ms < 1 ? [{ path: ['max_hold_ms'], message: 'must be positive' }] : [];
}
