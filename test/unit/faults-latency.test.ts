// The latency fault's contract with its host: a 0 ms delay (an A/A run, a ramp's first step) takes no
// hold at all, so canary requests are not held for Node's 1 ms minimum timer and a loop turn.
import { describe, expect, it } from 'vitest';
import { compileFault } from '../../src/faults/registry.js';
import type { FaultTarget } from '../../src/engine/target.js';

function target(): { t: FaultTarget; calls: string[] } {
  const calls: string[] = [];
  const t = {
    exp: { injecting: true },
    hold: (ms: number) => calls.push(`hold ${ms}`),
    holdResponse: (ms: number) => calls.push(`holdResponse ${ms}`),
    forward: () => calls.push('forward'),
  } as unknown as FaultTarget;
  return { t, calls };
}

describe('latency fault', () => {
  it('holds the request for its delay, then forwards', () => {
    const f = compileFault({ kind: 'latency', ms: 250 } as never);
    const { t, calls } = target();
    f.start(t);
    expect(calls).toEqual(['hold 250']);
    f.holdEnded(t, false);
    expect(calls).toEqual(['hold 250', 'forward']);
  });

  it('forwards at once for 0 ms: no hold', () => {
    const f = compileFault({ kind: 'latency', ms: 0 } as never);
    const { t, calls } = target();
    f.start(t);
    expect(calls).toEqual(['forward']);
  });

  it('response leg: holds the response for its delay; none for 0 ms', () => {
    for (const [ms, want] of [
      [40, ['forward', 'holdResponse 40']],
      [0, ['forward']],
    ] as const) {
      const f = compileFault({ kind: 'latency', ms, leg: 'response' } as never);
      const { t, calls } = target();
      f.start(t);
      f.onResponseStart?.(t, 200, {});
      expect(calls).toEqual(want);
    }
  });
});
