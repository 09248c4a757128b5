import { performance, PerformanceObserver, type PerformanceObserverEntryList } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import type { EventLoopUtilization } from 'node:perf_hooks';
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import { ARM_HEADER, ArmStats, INJECTED_HEADER, MarkClassifier } from './arms.js';
import type { LoadOptions } from './args.js';
import { LatencyHistogram } from './histogram.js';

/**
 * Open-loop generator. Request i is due at start + i / rate whatever happened to earlier requests,
 * and its latency is measured from that due time, not from when it was actually sent or a
 * connection became free: a closed loop (or an open loop that measures from the actual send) hides
 * exactly the queueing a slow proxy causes ("coordinated omission", Gil Tene; wrk2 does the same).
 *
 * The schedule starts with an unrecorded warm-up at the same rate (wrk2's calibration period):
 * connections get opened and the JIT compiles undici's and our paths before the measured window, so
 * first-use costs are not reported as the target's tail. The schedule continues across the mark
 * without a gap; a request belongs to the window its due time falls in.
 *
 * The generator also watches itself: how late each send left against its due time (that lateness is
 * inside every latency it reports), its event-loop utilisation and CPU over the measured window.
 */
export type GeneratorOptions = Pick<
  LoadOptions,
  'target' | 'ratePerS' | 'durationMs' | 'concurrency' | 'method' | 'body' | 'headers' | 'experiment'
> & {
  /** Unrecorded warm-up before the measured window, at the same rate (default 0). */
  readonly warmupMs?: number;
  /** After the last send, wait this long for stragglers before cancelling them (counted as errors). */
  readonly drainMs?: number;
  /** Requests due while this many are outstanding are dropped (counted, never silently lost). */
  readonly maxOutstanding?: number;
  /** Pace sends with the worker clock (sub-ms); false: the 1 ms timer alone (default true). */
  readonly preciseClock?: boolean;
  /**
   * Never sleep: the event loop turns on setImmediate from the first send to the last response, so
   * sends and responses are handled without waiting for the scheduler to wake the process (a core is
   * spent on it; no clock thread). For VMs whose wake-ups are slow (bench/PROFILE.md: on this 2-core
   * VM, p99 3.6 -> 2.6 ms and max 13.0 -> 8.4 ms above a 5 ms upstream, medians of 5).
   */
  readonly busyPoll?: boolean;
};

export interface GeneratorSnapshot {
  readonly elapsedMs: number;
  /** Still in the warm-up: the counts below are the warm-up's. */
  readonly warmingUp: boolean;
  readonly sent: number;
  readonly completed: number;
  readonly inFlight: number;
  readonly dropped: number;
  readonly errors: number;
}

/** Warm-up outcomes: counted so nothing is silently lost, never in a latency figure. */
export interface WarmupCounts {
  scheduled: number;
  sent: number;
  completed: number;
  dropped: number;
  errors: number;
}

/** The generator's own health over the measured window. */
export interface GeneratorHealth {
  /** Measured window: its first due time to its end (last completion, or the drain's end). */
  readonly windowMs: number;
  /** Fraction of the window the event loop was busy (performance.eventLoopUtilization). */
  readonly eventLoopUtilization: number;
  /** Process CPU (user + system) over the window, in % of one core. */
  readonly cpuPct: number;
  /** The generator's garbage-collection pauses in the window: each one stalls every latency in flight. */
  readonly gcPauses: GcPauses;
}

export interface GcPauses {
  count: number;
  totalMs: number;
  maxMs: number;
}

/** Per-request state; it is also the undici handler, so no closures are allocated per request. */
class Exchange implements Dispatcher.DispatchHandler {
  status = 0;
  injected: string | string[] | undefined = undefined;
  arm: string | string[] | undefined = undefined;
  constructor(
    readonly gen: LoadGenerator,
    readonly dueAt: number,
    readonly measured: boolean,
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

/**
 * The send timer's period. One repeating 1 ms timer drives every send: each tick sends all that is
 * due, so a late tick catches up at once instead of drifting (as a chain of per-request timeouts
 * would), and at 2,000 req/s it costs 1,000 wake-ups a second rather than 2,000 timers. Node's timers
 * have 1 ms resolution: sends leave up to ~1 ms after their due time, and that is in the latencies
 * (measured from the due time), as it is in wrk2's.
 */
const TICK_MS = 1;

/**
 * The pacing clock: a worker thread that sleeps in Atomics.wait, which takes fractional milliseconds,
 * until each due time and then wakes the generator's loop with a message (a libuv async handle: no
 * 1 ms rounding). Without it, sends leave on the 1 ms timer, up to ~1 ms late (p50 ~0.5 ms), and that
 * lateness is in every latency. At most one wake-up is outstanding (a shared flag the generator
 * clears), so a busy generator is not flooded with messages; the 1 ms timer stays as the backstop.
 * The worker computes due times on the shared wall clock (timeOrigin + now) because each thread's
 * performance.now() has its own origin.
 */
const CLOCK_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { performance } = require('node:perf_hooks');
const { startAbs, intervalMs, count, flag } = workerData;
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const start = startAbs - performance.timeOrigin;
for (let i = 0; i < count; i++) {
  const due = start + i * intervalMs;
  for (;;) {
    const wait = due - performance.now();
    if (wait <= 0) break;
    Atomics.wait(sleeper, 0, 0, wait);
  }
  if (Atomics.load(flag, 0) === 2) break;
  if (Atomics.compareExchange(flag, 0, 0, 1) === 0) parentPort.postMessage(0);
}
`;

export class LoadGenerator {
  /** Canary responses that carried the selected experiment's x-faultline-injected mark. */
  readonly canaryInjected = new ArmStats();
  /** Canary responses (by x-faultline-arm) without an injected mark. */
  readonly canaryPlain = new ArmStats();
  /** x-faultline-arm group=control (only ever filled when the hop sets `arm_header: true`). */
  readonly control = new ArmStats();
  /** Neither mark: not assigned, or assigned to control by a hop that does not set the arm header. */
  readonly untouched = new ArmStats();
  /** Actual send time - due time of measured sends, in µs. */
  readonly lateness = new LatencyHistogram();
  /** Responses that carried any x-faultline-arm mark: without one, control and untouched look alike. */
  armMarked = 0;
  /** Injected marks by experiment id, including ones not selected by --experiment. */
  readonly injectedBy = new Map<string, number>();
  readonly warmup: WarmupCounts;
  /** Measured window only (warm-up requests are in `warmup`). */
  sent = 0;
  completed = 0;
  dropped = 0;
  /** Everything outstanding, warm-up included. */
  inFlight = 0;
  /** Schedule origin: the warm-up's first due time. */
  startedAt = 0;
  /** The measured window's first due time (startedAt when there is no warm-up). */
  measureStartAt = 0;
  lastSendAt = 0;
  endedAt = 0;
  /** Called once, when the first measured request is sent. */
  onMeasureStart: (() => void) | undefined = undefined;

  private readonly pool: Pool;
  private readonly total: number;
  private readonly intervalMs: number;
  private readonly maxOutstanding: number;
  private readonly drainMs: number;
  private readonly classifier: MarkClassifier;
  /** Next schedule index (warm-up first: 0 .. warmup.scheduled - 1). */
  private next = 0;
  private timer: NodeJS.Timeout | undefined;
  private drainTimer: NodeJS.Timeout | undefined;
  private resolveDone: (() => void) | undefined;
  private readonly tickBound = (): void => this.tick();
  private readonly dispatchOpts: Dispatcher.DispatchOptions;
  private eluAtMark: EventLoopUtilization | undefined;
  private cpuAtMark: NodeJS.CpuUsage | undefined;
  private healthAtEnd: GeneratorHealth | undefined;
  private clock: Worker | undefined;
  /** 0 idle, 1 a wake-up is on its way, 2 stop. */
  private readonly clockFlag = new Int32Array(new SharedArrayBuffer(4));
  /** GC pauses that started in the measured window (filled by an observer from its start). */
  private readonly gcPauses: GcPauses = { count: 0, totalMs: 0, maxMs: 0 };
  private gcObserver: PerformanceObserver | undefined;
  private readonly onGc = (list: PerformanceObserverEntryList): void => {
    for (const e of list.getEntries()) {
      if (e.startTime < this.measureStartAt || (this.endedAt !== 0 && e.startTime > this.endedAt)) continue;
      this.gcPauses.count++;
      this.gcPauses.totalMs += e.duration;
      if (e.duration > this.gcPauses.maxMs) this.gcPauses.maxMs = e.duration;
    }
  };
  /** Busy-poll: set from run() until the run ends (maybeDone) or is aborted. */
  private spinning = false;
  private readonly spinBound = (): void => {
    if (!this.spinning) return;
    if (this.timer !== undefined) this.tick();
    setImmediate(this.spinBound);
  };
  private readonly onClock = (): void => {
    Atomics.store(this.clockFlag, 0, 0);
    this.tick();
  };

  constructor(readonly opts: GeneratorOptions) {
    this.total = Math.round((opts.ratePerS * opts.durationMs) / 1000);
    const warm = Math.round((opts.ratePerS * (opts.warmupMs ?? 0)) / 1000);
    this.warmup = { scheduled: warm, sent: 0, completed: 0, dropped: 0, errors: 0 };
    this.intervalMs = 1000 / opts.ratePerS;
    this.maxOutstanding = opts.maxOutstanding ?? Math.max(10_000, opts.concurrency * 4);
    this.drainMs = opts.drainMs ?? 10_000;
    this.classifier = new MarkClassifier(opts.experiment);
    // First calls cost ~0.2 ms (lazy set-up): pay them here, not at the measured window's mark.
    performance.eventLoopUtilization();
    process.cpuUsage();
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
      path: opts.target.pathname + opts.target.search,
      method: opts.method as Dispatcher.HttpMethod,
      headers,
      body: opts.body ?? null,
    });
  }

  /** Measured requests on the schedule. */
  get scheduled(): number {
    return this.total;
  }

  run(): Promise<void> {
    return new Promise((resolve) => {
      this.resolveDone = resolve;
      this.startedAt = performance.now();
      this.measureStartAt = this.startedAt + this.warmup.scheduled * this.intervalMs;
      this.timer = setInterval(this.tickBound, TICK_MS);
      if (this.opts.busyPoll === true) {
        this.spinning = true;
        setImmediate(this.spinBound);
      } else if (this.opts.preciseClock !== false) this.startClock();
      this.tick();
    });
  }

  snapshot(): GeneratorSnapshot {
    const now = this.endedAt || performance.now();
    const warmingUp = this.next < this.warmup.scheduled;
    const w = this.warmup;
    return {
      elapsedMs: now - (warmingUp ? this.startedAt : this.measureStartAt),
      warmingUp,
      sent: warmingUp ? w.sent : this.sent,
      completed: warmingUp ? w.completed : this.completed,
      inFlight: this.inFlight,
      dropped: warmingUp ? w.dropped : this.dropped,
      errors: warmingUp
        ? w.errors
        : this.canaryInjected.errors + this.canaryPlain.errors + this.control.errors + this.untouched.errors,
    };
  }

  /** Event-loop utilisation and CPU over the measured window (final once the run has ended). */
  health(): GeneratorHealth {
    if (this.healthAtEnd) return this.healthAtEnd;
    if (!this.eluAtMark || !this.cpuAtMark)
      return { windowMs: 0, eventLoopUtilization: 0, cpuPct: 0, gcPauses: this.gcPauses };
    const elu = performance.eventLoopUtilization(this.eluAtMark);
    const cpu = process.cpuUsage(this.cpuAtMark);
    const windowMs = (this.endedAt || performance.now()) - this.measureStartAt;
    return {
      windowMs,
      eventLoopUtilization: elu.utilization,
      cpuPct: windowMs > 0 ? ((cpu.user + cpu.system) / 1000 / windowMs) * 100 : 0,
      // The live object: GC entries reach the observer a tick after the pause, so the last ones land
      // after the window closes (the observer stops once the pool has closed).
      gcPauses: this.gcPauses,
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
    const end = this.warmup.scheduled + this.total;
    const now = performance.now();
    let i = this.next;
    while (i < end) {
      const dueAt = this.startedAt + i * this.intervalMs;
      if (dueAt > now) break;
      this.fire(dueAt, i >= this.warmup.scheduled);
      i++;
    }
    this.next = i;
    if (i < end || this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.stopClock();
    this.drainTimer = setTimeout(() => void this.pool.destroy().catch(() => {}), this.drainMs);
    this.drainTimer.unref();
    this.maybeDone();
  }

  private fire(dueAt: number, measured: boolean): void {
    if (measured && this.eluAtMark === undefined) this.mark();
    if (this.inFlight >= this.maxOutstanding) {
      if (measured) this.dropped++;
      else this.warmup.dropped++;
      return;
    }
    const sentAt = performance.now();
    if (measured) {
      this.sent++;
      this.lastSendAt = sentAt;
      this.lateness.record((sentAt - dueAt) * 1000);
    } else this.warmup.sent++;
    this.inFlight++;
    const ex = new Exchange(this, dueAt, measured);
    try {
      this.pool.dispatch(this.dispatchOpts, ex);
    } catch {
      this.finish(ex, true);
    }
  }

  private startClock(): void {
    const count = this.warmup.scheduled + this.total;
    const w = new Worker(CLOCK_SOURCE, {
      eval: true,
      workerData: {
        startAbs: performance.timeOrigin + this.startedAt,
        intervalMs: this.intervalMs,
        count,
        flag: this.clockFlag,
      },
    });
    w.on('message', this.onClock);
    // A clock that fails leaves the 1 ms timer in charge: sends are then up to ~1 ms later.
    w.on('error', () => {});
    w.unref();
    this.clock = w;
  }

  private stopClock(): void {
    Atomics.store(this.clockFlag, 0, 2);
    if (this.clock) void this.clock.terminate().catch(() => {});
    this.clock = undefined;
  }

  private mark(): void {
    this.eluAtMark = performance.eventLoopUtilization();
    this.cpuAtMark = process.cpuUsage();
    this.gcObserver = new PerformanceObserver(this.onGc);
    this.gcObserver.observe({ entryTypes: ['gc'] });
    this.onMeasureStart?.();
  }

  finish(ex: Exchange, failed: boolean): void {
    // Completion time - due time: the send's lateness and any queueing in the pool included.
    const latencyUs = (performance.now() - ex.dueAt) * 1000;
    this.inFlight--;
    if (!ex.measured) {
      this.warmup.completed++;
      if (failed || ex.status >= 500) this.warmup.errors++;
      this.maybeDone();
      return;
    }
    this.completed++;
    let arm = this.untouched;
    // Fast path: most responses carry no mark at all; marked ones are classified once per distinct
    // header value (a Faultline hop writes a handful of distinct values), so no per-response parsing.
    if (ex.injected !== undefined || ex.arm !== undefined) {
      const c = this.classifier.classify(ex.injected, ex.arm);
      for (let k = 0; k < c.experiments.length; k++) {
        const id = c.experiments[k] as string;
        this.injectedBy.set(id, (this.injectedBy.get(id) ?? 0) + 1);
      }
      if (c.armMarked) this.armMarked++;
      if (c.arm === 'canary') arm = c.injected ? this.canaryInjected : this.canaryPlain;
      else if (c.arm === 'control') arm = this.control;
    }
    arm.record(latencyUs, ex.status, failed);
    this.maybeDone();
  }

  private maybeDone(): void {
    if (this.timer !== undefined || this.inFlight > 0) return;
    if (this.next < this.warmup.scheduled + this.total) return;
    if (this.endedAt !== 0) return;
    this.endedAt = performance.now();
    this.spinning = false;
    this.healthAtEnd = this.health();
    if (this.drainTimer) clearTimeout(this.drainTimer);
    const resolve = this.resolveDone;
    void this.pool
      .close()
      .catch(() => {})
      .then(() => {
        this.gcObserver?.disconnect();
        resolve?.();
      });
  }

  /** Stop early (e.g. on SIGINT): cancels what is in flight; those count as transport errors. */
  async abort(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.spinning = false;
    this.stopClock();
    const end = this.warmup.scheduled + this.total;
    const warmLeft = Math.max(0, this.warmup.scheduled - this.next);
    this.warmup.dropped += warmLeft;
    this.dropped += end - Math.max(this.next, this.warmup.scheduled);
    this.next = end;
    await this.pool.destroy().catch(() => {});
    this.maybeDone();
  }
}
