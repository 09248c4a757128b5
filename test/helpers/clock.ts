/** A fake clock for schedules and windows (src/experiments/scheduler.ts Clock): no real minutes pass. */
import type { Clock } from '../../src/experiments/scheduler.js';

export class FakeClock implements Clock {
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();
  constructor(public t: number) {}
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    this.timers.set(++this.seq, { at: this.t + ms, fn });
    return this.seq;
  }
  clearTimeout(h: unknown): void {
    this.timers.delete(h as number);
  }
  /** Fires every timer due up to `iso` in order; each may write state to disk, so let that settle. */
  async advanceTo(iso: string, settleMs = 60): Promise<void> {
    const target = Date.parse(iso);
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= target && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
      await new Promise((r) => setTimeout(r, settleMs));
    }
    this.t = target;
  }
}
