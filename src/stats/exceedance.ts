// Latency exceedance e-process for one monitored quantile p (statistics.md §6.2; construction of
// research/sim/sim_latency.py "Method A"). T_p is control's p-quantile from PAST control requests
// only (a snapshot, refreshed on a schedule fixed by the control count so far), so it is predictable. A canary
// request is slow if L > maxRatio·T_p + a, a control request if L > T_p. Under H0 "canary latency is
// stochastically <= maxRatio·control + a at each moment", P(slow | canary) <= P(slow | control) for
// any predictable T, so P(label = canary | slow event) <= ρ: the conditional-label test with θ0 = ρ
// applies, with no i.i.d. or stationarity assumption (drifting load is fine).
//
// Two power choices differ from the Python reference's defaults; neither touches validity, which
// needs only θ0 = ρ, a fixed prior and a predictable T_p:
// - prior Beta(2, 2) truncated to [ρ, 1] instead of Beta(1, 1): exceedance labels under real slowdowns
//   sit at θ ≈ 0.55–0.8 (x1.5: ≈ 0.62 at p90), where Beta(2, 2) has more mass than the uniform prior;
// - warm-up max(20, 5/(1−p)) control samples (≈ 5 expected control exceedances) instead of
//   max(100, 10/(1−p)): any predictable T is valid, a rough early T only costs a little power, and
//   the p99 test starts after 500 control samples instead of 1,000.
// Refresh schedule (not a power/validity trade-off, only cost): the reference recomputes T_p every 200
// requests, so its test starts at the first block boundary AFTER the warm-up (up to 200 requests late;
// the demo scored 12 of 112 canary requests). Here T_p is computed the moment control reaches the
// warm-up count, then again after every ceil(n/8) new control samples (n = control samples at the last
// refresh; capped at REFRESH_MAX_STEP): about 30 refreshes up to n = 800, one per 100 control samples
// after. The schedule depends on the control count of past requests only, so T_p stays predictable; a
// refresh is one O(buckets) histogram scan, and a request pays one integer compare.
// `priorShape: 1, warmup: REFERENCE_WARMUP, refreshEvery: 200` reproduces the reference exactly
// (unit-tested trip indices).
import { ConditionalLabelTest } from './conditional-label.js';
import type { LogHistogram } from './histogram.js';
import type { SessionFilter } from './session-filter.js';

export interface ExceedanceOptions {
  quantile: number;
  /** 1 + g */
  maxRatio: number;
  /** a, in ms */
  maxIncreaseMs: number;
  alpha: number;
  /** canary share ρ among canary + control */
  rho?: number;
  /**
   * The reference's block schedule: recompute T_p every this many requests of either arm (200 in
   * research/sim). Unset (the default): at the warm-up's end, then every ceil(n/8) control samples.
   */
  refreshEvery?: number;
  /** symmetric Beta(k, k) prior truncated to [ρ, 1] (default 2; the reference uses 1) */
  priorShape?: number;
  /** warm-up: T_p is trusted after max(min, trunc(perTail/(1−p))) control samples */
  warmup?: { min: number; perTail: number };
}

/** Warm-up default: max(20, 5/(1−p)) control samples (p50: 20, p90: 50, p99: 499). */
export const DEFAULT_WARMUP = { min: 20, perTail: 5 } as const;
/** The reference's warm-up (research/sim/sim_latency.py): max(100, 10/(1−p)). */
export const REFERENCE_WARMUP = { min: 100, perTail: 10 } as const;

/** Largest gap, in new control samples, between two T_p refreshes of the default schedule. */
export const REFRESH_MAX_STEP = 100;

export class ExceedanceTest {
  readonly label: ConditionalLabelTest;
  readonly quantile: number;
  /** control samples needed before T_p is trusted (default max(20, 5/(1−p)); see the header) */
  readonly minControl: number;
  /** current threshold T_p (NaN until active) */
  thresholdMs = NaN;
  active = false;
  slowCanary = 0;
  slowControl = 0;
  /** requests judged against an active T_p, per arm */
  scoredCanary = 0;
  scoredControl = 0;
  /** requests (with a latency) seen before T_p was active: not scored, per arm */
  warmupCanary = 0;
  warmupControl = 0;
  private canaryCut = Infinity;
  /** default schedule: refresh when control.total reaches this (starts at minControl) */
  private nextRefreshAt: number;
  /** block schedule: requests since the last refresh; -1 = default schedule */
  private sinceRefresh = -1;
  private readonly refreshEvery: number;
  private readonly maxRatio: number;
  private readonly maxIncreaseMs: number;

  constructor(
    opts: ExceedanceOptions,
    private readonly control: LogHistogram,
    private readonly filter: SessionFilter | null = null,
  ) {
    const p = opts.quantile;
    if (!(p > 0 && p < 1)) throw new RangeError(`quantile must be in (0,1), got ${p}`);
    if (!(opts.maxRatio >= 1)) throw new RangeError(`maxRatio must be >= 1, got ${opts.maxRatio}`);
    if (!(opts.maxIncreaseMs >= 0)) throw new RangeError('maxIncreaseMs must be >= 0');
    this.quantile = p;
    this.maxRatio = opts.maxRatio;
    this.maxIncreaseMs = opts.maxIncreaseMs;
    const w = opts.warmup ?? DEFAULT_WARMUP;
    // Math.trunc mirrors Python int(): 10/(1-0.99) is 999.99.. -> 999
    this.minControl = Math.max(w.min, Math.trunc(w.perTail / (1 - p)));
    this.nextRefreshAt = this.minControl;
    this.refreshEvery = opts.refreshEvery ?? 0;
    if (opts.refreshEvery !== undefined) {
      if (!(Number.isInteger(opts.refreshEvery) && opts.refreshEvery >= 1))
        throw new RangeError(`refreshEvery must be an integer >= 1, got ${opts.refreshEvery}`);
      this.sinceRefresh = 0;
    }
    const k = opts.priorShape ?? 2;
    if (!(k > 0)) throw new RangeError(`priorShape must be > 0, got ${k}`);
    this.label = new ConditionalLabelTest(opts.rho ?? 0.5, opts.alpha, k, k);
  }

  /**
   * Score one request BEFORE its latency (if control) enters the control histogram.
   * Returns the latched "crossed" flag.
   */
  onRequest(isCanary: boolean, latencyMs: number, sessionKey: number | undefined): boolean {
    if (this.sinceRefresh < 0) {
      if (this.control.total >= this.nextRefreshAt) this.refresh();
    } else {
      if (this.sinceRefresh === 0) this.refresh();
      if (++this.sinceRefresh >= this.refreshEvery) this.sinceRefresh = 0;
    }
    if (!this.active) {
      if (isCanary) this.warmupCanary++;
      else this.warmupControl++;
      return this.label.crossed;
    }
    if (isCanary) this.scoredCanary++;
    else this.scoredControl++;
    const slow = isCanary ? latencyMs > this.canaryCut : latencyMs > this.thresholdMs;
    if (!slow) return this.label.crossed;
    if (this.filter !== null && sessionKey !== undefined && !this.filter.firstTime(sessionKey, isCanary)) {
      return this.label.crossed;
    }
    if (isCanary) this.slowCanary++;
    else this.slowControl++;
    return this.label.onBadEvent(isCanary);
  }

  /**
   * A batch of requests given as bucket counts in the control histogram's layout (null: none with a
   * latency). T_p is refreshed (on the same control-count schedule) only at the batch's start, so it
   * uses past batches only and stays predictable; every request of the batch is scored against it, the
   * slow ones counted from the buckets (control exactly, since T_p is an edge; canary conservatively,
   * see LogHistogram.countAbove), and the control batch enters the histogram after scoring. Sticky
   * (session-filtered) tests take single requests only. The caller adds `control` to the histogram.
   */
  onBatch(canary: ArrayLike<number> | null, control: ArrayLike<number> | null): boolean {
    if (this.filter !== null) throw new Error('ExceedanceTest.onBatch: sticky tests take single requests');
    const nC = canary === null ? 0 : sum(canary);
    const nK = control === null ? 0 : sum(control);
    if (nC + nK === 0) return this.label.crossed;
    if (this.sinceRefresh < 0) {
      if (this.control.total >= this.nextRefreshAt) this.refresh();
    } else this.refresh();
    if (!this.active) {
      this.warmupCanary += nC;
      this.warmupControl += nK;
      return this.label.crossed;
    }
    this.scoredCanary += nC;
    this.scoredControl += nK;
    const slowC = canary === null ? 0 : this.control.countAbove(canary, this.canaryCut);
    const slowK = control === null ? 0 : this.control.countAbove(control, this.thresholdMs);
    this.slowCanary += slowC;
    this.slowControl += slowK;
    return this.label.onBadEvents(slowC, slowK);
  }

  private refresh(): void {
    const n = this.control.total;
    if (n < this.minControl) return;
    // next refresh after ceil(n/8) more control samples, at least 1, at most REFRESH_MAX_STEP
    this.nextRefreshAt = n + Math.min(REFRESH_MAX_STEP, Math.max(1, Math.ceil(n / 8)));
    this.active = true;
    this.thresholdMs = this.control.quantileUpper(this.quantile);
    this.canaryCut = this.maxRatio * this.thresholdMs + this.maxIncreaseMs;
  }
}

function sum(a: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) n += a[i] ?? 0;
  return n;
}
