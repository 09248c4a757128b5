// Latency exceedance e-process for one monitored quantile p (statistics.md §6.2; construction of
// research/sim/sim_latency.py "Method A"). T_p is control's p-quantile from PAST control requests
// only (snapshot refreshed every `refreshEvery` experiment requests), so it is predictable. A canary
// request is slow if L > maxRatio·T_p + a, a control request if L > T_p. Under H0 "canary latency is
// stochastically <= maxRatio·control + a at each moment", P(slow | canary) <= P(slow | control) for
// any predictable T, so P(label = canary | slow event) <= ρ: the conditional-label test with θ0 = ρ
// applies, with no i.i.d. or stationarity assumption (drifting load is fine).
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
  /** recompute T_p every this many requests (default 200, as in the reference) */
  refreshEvery?: number;
}

export class ExceedanceTest {
  readonly label: ConditionalLabelTest;
  readonly quantile: number;
  /** control samples needed before T_p is trusted: max(100, 10/(1−p)) (statistics.md §6.2) */
  readonly minControl: number;
  /** current threshold T_p (NaN until active) */
  thresholdMs = NaN;
  active = false;
  slowCanary = 0;
  slowControl = 0;
  private canaryCut = Infinity;
  private sinceRefresh = 0;
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
    this.refreshEvery = opts.refreshEvery ?? 200;
    // Math.trunc mirrors Python int(): 10/(1-0.99) is 999.99.. -> 999
    this.minControl = Math.max(100, Math.trunc(10 / (1 - p)));
    this.label = new ConditionalLabelTest(opts.rho ?? 0.5, opts.alpha);
  }

  /**
   * Score one request BEFORE its latency (if control) enters the control histogram.
   * Returns the latched "crossed" flag.
   */
  onRequest(isCanary: boolean, latencyMs: number, sessionKey: number | undefined): boolean {
    if (this.sinceRefresh === 0) this.refresh();
    if (++this.sinceRefresh >= this.refreshEvery) this.sinceRefresh = 0;
    if (!this.active) return this.label.crossed;
    const slow = isCanary ? latencyMs > this.canaryCut : latencyMs > this.thresholdMs;
    if (!slow) return this.label.crossed;
    if (this.filter !== null && sessionKey !== undefined && !this.filter.firstTime(sessionKey, isCanary)) {
      return this.label.crossed;
    }
    if (isCanary) this.slowCanary++;
    else this.slowControl++;
    return this.label.onBadEvent(isCanary);
  }

  private refresh(): void {
    if (this.control.total < this.minControl) return;
    this.active = true;
    this.thresholdMs = this.control.quantileUpper(this.quantile);
    this.canaryCut = this.maxRatio * this.thresholdMs + this.maxIncreaseMs;
  }
}
