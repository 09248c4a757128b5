import { OUTCOME_CLIENT_ABORT } from '../core/vocab.js';
import type { FaultTarget } from '../engine/target.js';
import type { Fault, FaultIssue, FaultSpecOf, Intensity } from './fault.js';

/** Pacing tick: the body goes out in slices of a tenth of a second's worth, so it flows, not bursts. */
const TICKS_PER_S = 10;

/** Per-request state, allocated only for requests the fault was injected into. */
interface Pacing {
  chunk: Buffer | null;
  offset: number;
  ending: boolean;
  /** The experiment was killed: the rest of the body goes out unpaced. */
  free: boolean;
}

/**
 * The response body at `bytes_per_s` (a slow feature store, a congested link): the head goes out at
 * once, the body in paced slices; the upstream is paused meanwhile, so memory stays one chunk.
 */
export function throttleFault(spec: FaultSpecOf<'throttle'>): Fault {
  const rate = spec.bytes_per_s;
  const sliceBytes = Math.max(1, Math.floor(rate / TICKS_PER_S));

  function sendSlice(t: FaultTarget, p: Pacing): void {
    const chunk = p.chunk as Buffer;
    const end = Math.min(chunk.length, p.offset + sliceBytes);
    const n = end - p.offset;
    t.writeResponseData(p.offset === 0 && end === chunk.length ? chunk : chunk.subarray(p.offset, end));
    p.offset = end;
    t.hold((n * 1000) / rate);
  }

  return {
    kind: 'throttle',
    // The body's pace is the fault; the errors and timeouts it provokes downstream are consequences.
    judging: 'consequences',
    callerLeftDuringHold: OUTCOME_CLIENT_ABORT,
    responseFlag: 'DI',
    dropsRequest: false,
    fixedHoldMs: 0,
    start: (t) => {
      t.faultData = { chunk: null, offset: 0, ending: false, free: false } satisfies Pacing;
      t.forward();
    },
    onResponseData: (t, chunk) => {
      const p = t.faultData as Pacing;
      if (p.free) {
        t.writeResponseData(chunk);
        return;
      }
      t.pauseResponse();
      p.chunk = chunk;
      p.offset = 0;
      sendSlice(t, p);
    },
    onResponseEnd: (t) => {
      const p = t.faultData as Pacing;
      if (p.chunk === null) t.endResponse();
      else p.ending = true;
    },
    holdEnded: (t, released) => {
      const p = t.faultData as Pacing;
      const chunk = p.chunk;
      if (chunk === null) return;
      if (released) {
        p.free = true;
        if (p.offset < chunk.length) t.writeResponseData(chunk.subarray(p.offset));
        p.offset = chunk.length;
      }
      if (p.offset < chunk.length) return sendSlice(t, p);
      p.chunk = null;
      if (p.ending) t.endResponse();
      else t.resumeResponse();
    },
  };
}

/** A throttle ramp steps the bandwidth down: less is more intense. */
export const throttleIntensity: Intensity<'throttle'> = {
  unit: 'bytes/s',
  decreasing: true,
  at: (spec, m) => ({ ...spec, bytes_per_s: m }),
  check: (_spec, steps): FaultIssue[] =>
    steps.some((s) => !Number.isInteger(s) || s < 1)
      ? [{ path: ['steps'], message: 'throttle steps are bytes_per_s: whole numbers >= 1' }]
      : [],
};
