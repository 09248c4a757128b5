import { OUTCOME_CLIENT_ABORT, OUTCOME_RESET } from '../core/vocab.js';
import type { Fault } from './fault.js';

/** Drop the connection without a response (HTTP/2: RST_STREAM on that one stream only). */
export function resetFault(): Fault {
  return {
    kind: 'reset',
    judging: 'skip',
    callerLeftDuringHold: OUTCOME_CLIENT_ABORT,
    responseFlag: 'FI',
    dropsRequest: true,
    fixedHoldMs: 0,
    start: (t) => t.reset(OUTCOME_RESET),
    holdEnded: () => undefined,
  };
}
