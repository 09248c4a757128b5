import { OUTCOME_CLIENT_ABORT } from '../core/vocab.js';
import type { Fault, FaultSpecOf } from './fault.js';

/** Per-request state: body bytes still allowed through before the cut. */
interface Cut {
  left: number;
}

/**
 * A partial response that must not look complete: the head and the first `after_bytes` of the body,
 * then the connection is cut (HTTP/2: RST_STREAM). When the whole body would fit, the cut comes one
 * byte before its end (a Content-Length body) or before its terminating chunk / END_STREAM, so no
 * client can take it for a whole response.
 */
export function truncateFault(spec: FaultSpecOf<'truncate'>): Fault {
  const afterBytes = spec.after_bytes;
  return {
    kind: 'truncate',
    // The broken response is the fault itself.
    judging: 'skip',
    callerLeftDuringHold: OUTCOME_CLIENT_ABORT,
    responseFlag: 'FI',
    dropsRequest: false,
    fixedHoldMs: 0,
    start: (t) => {
      t.faultData = { left: afterBytes } satisfies Cut;
      t.forward();
    },
    onResponseStart: (t, _status, headers) => {
      const cut = t.faultData as Cut;
      const cl = headers['content-length'];
      const length = typeof cl === 'string' ? Number(cl) : NaN;
      if (length >= 0 && length <= cut.left) cut.left = length - 1;
      // An empty body with a Content-Length: even the head alone would be complete.
      if (cut.left < 0) t.breakResponse();
    },
    onResponseData: (t, chunk) => {
      const cut = t.faultData as Cut;
      if (chunk.length <= cut.left) {
        cut.left -= chunk.length;
        t.writeResponseData(chunk);
        return;
      }
      if (cut.left > 0) t.writeResponseData(chunk.subarray(0, cut.left));
      cut.left = 0;
      t.breakResponse();
    },
    onResponseEnd: (t) => t.breakResponse(),
    holdEnded: () => undefined,
  };
}
