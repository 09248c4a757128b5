import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import { ARM_HEADER, ArmStats, INJECTED_HEADER, classify, parseInjectedMark, splitMarks } from './arms.js';
import type { LoadOptions } from './args.js';

/**
 * Open-loop generator. Request i is due at start + i / rate whatever happened to earlier requests,
 * and its latency is measured from that due time, not from when a connection became free: a
 * closed loop (or an open loop that measures from the actual send) hides exactly the queueing a
 * slow proxy causes ("coordinated omission", Gil Tene).
 */
export type GeneratorOptions = Pick<
  LoadOptions,
  'target' | 'ratePerS' | 'durationMs' | 'concurrency' | 'method' | 'body' | 'headers' | 'experiment'
> & {
  /** After the last send, wait this long for stragglers before cancelling them (counted as errors). */
  readonly drainMs?: number;
  /** Requests due while this many are outstanding are dropped (counted, never silently lost). */
  readonly maxOutstanding?: number;
};

export interface GeneratorSnapshot {
  readonly elapsedMs: number;
  readonly sent: number;
  readonly completed: number;
  readonly inFlight: number;
  readonly dropped: number;
  readonly errors: number;
}

/** Per-request state; it is also the undici handler, so no closures are allocated per request. */
class Exchange implements Dispatcher.DispatchHandler {
  status = 0;
  injected: string | string[] | undefined = undefined;
  arm: string | string[] | undefined = undefined;
  constructor(
    readonly gen: LoadGenerator,
    readonly dueAt: number,
  ) {}
  // undici only treats a handler as the new-style API when onRequestStart exists.
  onRequestStart(): void {}
  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    this.status = statusCode;
    this.injected = headers[INJECTED_HEADER];
    this.arm = headers[ARM_HEADER];
  }
  onResponseData(): void {
    // Bodies are read and discarded; undici counts nothing for us, nor do we need it.
  }
  onResponseEnd(): void {
    this.gen.finish(this, false);
  }
  onResponseError(): void {
    this.gen.finish(this, true);
  }
}

export class LoadGenerator {
  /** Canary responses that carried the selected experiment's x-faultline-injected mark. */
  readonly canaryInjected = new ArmStats();
  /** Canary responses (by x-faultline-arm) without an injected mark. */
  readonly canaryPlain = new ArmStats();
  /** x-faultline-arm group=control (only ever filled when the hop sets `arm_header: true`). */
  readonly control = new ArmStats();
  /** Neither mark: not assigned, or assigned to control by a hop that does not set the arm header. */
  readonly untouched = new ArmStats();
  /** Responses that carried any x-faultline-arm mark: without one, control and untouched look alike. */
  armMarked = 0;
  /** Injected marks by experiment id, including ones not selected by --experiment. */
  readonly injectedBy = new Map<string, number>();
  sent = 0;
  completed = 0;
  dropped = 0;
  inFlight = 0;
  startedAt = 0;
  lastSendAt = 0;
  endedAt = 0;

  private readonly pool: Pool;
  private readonly total: number;
  private readonly intervalMs: number;
  private readonly path: string;
  private readonly maxOutstanding: number;
  private readonly drainMs: number;
  private timer: NodeJS.Timeout | undefined;
  private drainTimer: NodeJS.Timeout | undefined;
  private resolveDone: (() => void) | undefined;
  private readonly tickBound = (): void => this.tick();
  private readonly dispatchOpts: Dispatcher.DispatchOptions;

  constructor(readonly opts: GeneratorOptions) {
    this.total = Math.round((opts.ratePerS * opts.durationMs) / 1000);
    this.intervalMs = 1000 / opts.ratePerS;
    this.path = opts.target.pathname + opts.target.search;
    this.maxOutstanding = opts.maxOutstanding ?? Math.max(10_000, opts.concurrency * 4);
    this.drainMs = opts.drainMs ?? 10_000;
    this.pool = new Pool(opts.target.origin, {
      connections: opts.concurrency,
      pipelining: 1,
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.body && headers['content-type'] === undefined)
      headers['content-type'] = 'application/octet-stream';
    // One frozen option object shared by every request: the body Buffer is re-sent as is.
    this.dispatchOpts = Object.freeze({
      path: this.path,
      method: opts.method as Dispatcher.HttpMethod,
      headers,
      body: opts.body ?? null,
    });
  }

  get scheduled(): number {
    return this.total;
  }

  run(): Promise<void> {
    return new Promise((resolve) => {
      this.resolveDone = resolve;
      this.startedAt = performance.now();
      this.tick();
    });
  }

  snapshot(): GeneratorSnapshot {
    const now = this.endedAt || performance.now();
    return {
      elapsedMs: now - this.startedAt,
      sent: this.sent,
      completed: this.completed,
      inFlight: this.inFlight,
      dropped: this.dropped,
      errors:
        this.canaryInjected.errors + this.canaryPlain.errors + this.control.errors + this.untouched.errors,
    };
  }

  /** The four client-side buckets, merged: canary, and everything there is. */
  canary(): ArmStats {
    const c = new ArmStats();
    c.merge(this.canaryInjected);
    c.merge(this.canaryPlain);
    return c;
  }

  all(): ArmStats {
    const a = this.canary();
    a.merge(this.control);
    a.merge(this.untouched);
    return a;
  }

  private tick(): void {
    const now = performance.now();
    let i = this.sent + this.dropped;
    while (i < this.total) {
      const dueAt = this.startedAt + i * this.intervalMs;
      if (dueAt > now) break;
      this.fire(dueAt);
      i++;
    }
    if (i < this.total) {
      const wait = this.startedAt + i * this.intervalMs - performance.now();
      this.timer = setTimeout(this.tickBound, wait > 1 ? Math.floor(wait) : 0);
    } else {
      this.timer = undefined;
      this.drainTimer = setTimeout(() => void this.pool.destroy().catch(() => {}), this.drainMs);
      this.drainTimer.unref();
      this.maybeDone();
    }
  }

  private fire(dueAt: number): void {
    if (this.inFlight >= this.maxOutstanding) {
      this.dropped++;
      return;
    }
    this.sent++;
    this.lastSendAt = performance.now();
    this.inFlight++;
    const ex = new Exchange(this, dueAt);
    try {
      this.pool.dispatch(this.dispatchOpts, ex);
    } catch {
      this.finish(ex, true);
    }
  }

  finish(ex: Exchange, failed: boolean): void {
    const latencyUs = (performance.now() - ex.dueAt) * 1000;
    this.inFlight--;
    this.completed++;
    let arm = this.untouched;
    // Fast path: most responses carry no mark at all.
    if (ex.injected !== undefined || ex.arm !== undefined) {
      const injected = splitMarks(ex.injected);
      const seen = new Set<string>();
      for (const v of injected) {
        const { experiment } = parseInjectedMark(v);
        if (seen.has(experiment)) continue;
        seen.add(experiment);
        this.injectedBy.set(experiment, (this.injectedBy.get(experiment) ?? 0) + 1);
      }
      const c = classify(injected, splitMarks(ex.arm), this.opts.experiment);
      if (c.armMarked) this.armMarked++;
      if (c.arm === 'canary') arm = c.injected ? this.canaryInjected : this.canaryPlain;
      else if (c.arm === 'control') arm = this.control;
    }
    arm.record(latencyUs, ex.status, failed);
    this.maybeDone();
  }

  private maybeDone(): void {
    if (this.timer !== undefined || this.inFlight > 0 || this.sent + this.dropped < this.total) return;
    if (this.endedAt !== 0) return;
    this.endedAt = performance.now();
    if (this.drainTimer) clearTimeout(this.drainTimer);
    const resolve = this.resolveDone;
    void this.pool
      .close()
      .catch(() => {})
      .then(() => resolve?.());
  }

  /** Stop early (e.g. on SIGINT): cancels what is in flight; those count as transport errors. */
  async abort(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.dropped += this.total - this.sent - this.dropped;
    await this.pool.destroy().catch(() => {});
    this.maybeDone();
  }
}
