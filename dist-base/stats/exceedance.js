// Latency exceedance e-process for one monitored quantile p (statistics.md §6.2; construction of
// research/sim/sim_latency.py "Method A"). T_p is control's p-quantile from PAST control requests
// only (snapshot refreshed every `refreshEvery` experiment requests), so it is predictable. A canary
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
// `priorShape: 1, warmup: REFERENCE_WARMUP` reproduces the reference exactly (unit-tested trip indices).
import { ConditionalLabelTest } from './conditional-label.js';
/** Warm-up default: max(20, 5/(1−p)) control samples (p50: 20, p90: 50, p99: 499). */
export const DEFAULT_WARMUP = { min: 20, perTail: 5 };
/** The reference's warm-up (research/sim/sim_latency.py): max(100, 10/(1−p)). */
export const REFERENCE_WARMUP = { min: 100, perTail: 10 };
export class ExceedanceTest {
    control;
    filter;
    label;
    quantile;
    /** control samples needed before T_p is trusted (default max(20, 5/(1−p)); see the header) */
    minControl;
    /** current threshold T_p (NaN until active) */
    thresholdMs = NaN;
    active = false;
    slowCanary = 0;
    slowControl = 0;
    canaryCut = Infinity;
    sinceRefresh = 0;
    refreshEvery;
    maxRatio;
    maxIncreaseMs;
    constructor(opts, control, filter = null) {
        this.control = control;
        this.filter = filter;
        const p = opts.quantile;
        if (!(p > 0 && p < 1))
            throw new RangeError(`quantile must be in (0,1), got ${p}`);
        if (!(opts.maxRatio >= 1))
            throw new RangeError(`maxRatio must be >= 1, got ${opts.maxRatio}`);
        if (!(opts.maxIncreaseMs >= 0))
            throw new RangeError('maxIncreaseMs must be >= 0');
        this.quantile = p;
        this.maxRatio = opts.maxRatio;
        this.maxIncreaseMs = opts.maxIncreaseMs;
        this.refreshEvery = opts.refreshEvery ?? 200;
        const w = opts.warmup ?? DEFAULT_WARMUP;
        // Math.trunc mirrors Python int(): 10/(1-0.99) is 999.99.. -> 999
        this.minControl = Math.max(w.min, Math.trunc(w.perTail / (1 - p)));
        const k = opts.priorShape ?? 2;
        if (!(k > 0))
            throw new RangeError(`priorShape must be > 0, got ${k}`);
        this.label = new ConditionalLabelTest(opts.rho ?? 0.5, opts.alpha, k, k);
    }
    /**
     * Score one request BEFORE its latency (if control) enters the control histogram.
     * Returns the latched "crossed" flag.
     */
    onRequest(isCanary, latencyMs, sessionKey) {
        if (this.sinceRefresh === 0)
            this.refresh();
        if (++this.sinceRefresh >= this.refreshEvery)
            this.sinceRefresh = 0;
        if (!this.active)
            return this.label.crossed;
        const slow = isCanary ? latencyMs > this.canaryCut : latencyMs > this.thresholdMs;
        if (!slow)
            return this.label.crossed;
        if (this.filter !== null && sessionKey !== undefined && !this.filter.firstTime(sessionKey, isCanary)) {
            return this.label.crossed;
        }
        if (isCanary)
            this.slowCanary++;
        else
            this.slowControl++;
        return this.label.onBadEvent(isCanary);
    }
    refresh() {
        if (this.control.total < this.minControl)
            return;
        this.active = true;
        this.thresholdMs = this.control.quantileUpper(this.quantile);
        this.canaryCut = this.maxRatio * this.thresholdMs + this.maxIncreaseMs;
    }
}
//# sourceMappingURL=exceedance.js.map