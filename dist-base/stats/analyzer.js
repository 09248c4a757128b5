// ExperimentAnalyzer: the kill switch's statistics. Feeds every canary/control outcome to one
// anytime-valid test per guardrail and reports the first crossing (statistics.md §6). O(1) and
// allocation-free per record() (a Breach object is built once, when it trips).
import { LogHistogram } from './histogram.js';
import { ExceedanceTest } from './exceedance.js';
import { RateTest } from './rate-test.js';
import { SessionFilter } from './session-filter.js';
/**
 * Per-guardrail α (Bonferroni, statistics.md §6.0): when both kinds exist, failure-rate guardrails
 * (error_rate, timeout_rate) share α/2 equally and latency guardrails (one per quantile) share the
 * other α/2 equally; when only one kind exists it gets all of α. The union bound keeps
 * P(any guardrail ever trips | no real degradation) <= α.
 */
export function splitAlpha(alpha, guardrails) {
    const nLat = guardrails.filter((g) => g.metric === 'latency').length;
    const nFail = guardrails.length - nLat;
    const latBudget = nFail > 0 && nLat > 0 ? alpha / 2 : alpha;
    const failBudget = alpha - (nLat > 0 ? latBudget : 0);
    return guardrails.map((g) => (g.metric === 'latency' ? latBudget / nLat : failBudget / nFail));
}
export class ExperimentAnalyzer {
    slots;
    minSamples;
    controlHist;
    canaryHist;
    nCanary = 0;
    nControl = 0;
    breach = null;
    constructor(cfg) {
        if (!(cfg.alpha > 0 && cfg.alpha < 1))
            throw new RangeError(`alpha must be in (0,1), got ${cfg.alpha}`);
        if (cfg.guardrails.length === 0)
            throw new RangeError('at least one guardrail is required');
        const rho = cfg.canaryShare ?? 0.5;
        if (!(rho > 0 && rho < 1))
            throw new RangeError(`canaryShare must be in (0,1), got ${rho}`);
        this.minSamples = Math.max(0, cfg.minSamples);
        const alphas = splitAlpha(cfg.alpha, cfg.guardrails);
        const hasLatency = cfg.guardrails.some((g) => g.metric === 'latency');
        // one control histogram feeds every latency quantile; the canary one is for reports only
        this.controlHist = hasLatency ? new LogHistogram() : null;
        this.canaryHist = hasLatency ? new LogHistogram() : null;
        this.slots = cfg.guardrails.map((spec, i) => {
            const alpha = alphas[i] ?? cfg.alpha;
            const filter = cfg.sticky ? new SessionFilter() : null;
            if (spec.metric === 'latency') {
                const hist = this.controlHist ?? new LogHistogram();
                const test = new ExceedanceTest({ ...spec, alpha, rho }, hist, filter);
                return { kind: 'latency', spec, test, alpha, canarySlowRaw: 0, controlSlowRaw: 0 };
            }
            const test = new RateTest(spec.maxIncrease, spec.maxRatio, alpha, rho, filter);
            return { kind: 'rate', spec, test, alpha, canaryBad: 0, controlBad: 0 };
        });
    }
    /**
     * Record one finished canary/control request. Returns a Breach the first time any guardrail
     * crosses (with >= minSamples in each arm), else null; the decision is latched.
     */
    record(arm, bad, timedOut, latencyMs, sessionKey) {
        const isCanary = arm === 'canary';
        if (isCanary)
            this.nCanary++;
        else
            this.nControl++;
        const hasLatency = latencyMs >= 0 && latencyMs < Infinity;
        let crossed = -1;
        for (let i = 0; i < this.slots.length; i++) {
            const s = this.slots[i];
            if (s === undefined)
                continue;
            let c;
            if (s.kind === 'rate') {
                const b = s.spec.metric === 'error_rate' ? bad : timedOut;
                if (b) {
                    if (isCanary)
                        s.canaryBad++;
                    else
                        s.controlBad++;
                }
                c = s.test.onRequest(isCanary, b, sessionKey);
            }
            else {
                if (!hasLatency)
                    continue;
                c = s.test.onRequest(isCanary, latencyMs, sessionKey);
            }
            if (c && crossed < 0)
                crossed = i;
        }
        // the control latency enters the histogram only after it was scored (T_p uses the past only)
        if (hasLatency) {
            if (isCanary)
                this.canaryHist?.add(latencyMs);
            else
                this.controlHist?.add(latencyMs);
        }
        if (crossed < 0 || this.breach !== null || !this.enoughSamples())
            return null;
        const state = this.stateOf(crossed);
        this.breach = {
            guardrail: state,
            samples: { canary: this.nCanary, control: this.nControl },
            reason: this.reasonFor(state),
        };
        return this.breach;
    }
    /** The latched breach, if any. */
    breached() {
        return this.breach;
    }
    states() {
        return this.slots.map((_, i) => this.stateOf(i));
    }
    samples() {
        return { canary: this.nCanary, control: this.nControl };
    }
    enoughSamples() {
        return this.nCanary >= this.minSamples && this.nControl >= this.minSamples;
    }
    stateOf(index) {
        const s = this.slots[index];
        if (s === undefined)
            throw new RangeError(`no guardrail ${index}`);
        const ready = this.enoughSamples();
        const threshold = 1 / s.alpha;
        if (s.kind === 'rate') {
            const t = s.test;
            const status = !ready ? 'insufficient_data' : t.crossed ? 'breached' : 'holding';
            const canary = armSummary(this.nCanary, s.canaryBad, t.canaryBadCounted);
            const control = armSummary(this.nControl, s.controlBad, t.controlBadCounted);
            const parts = [];
            if (t.ratio !== null)
                parts.push(`ratio e=${fmtE(Math.exp(t.ratio.logE()))}${t.ratio.crossed ? ' (crossed)' : ''}`);
            if (t.abs !== null)
                parts.push(`margin e=${fmtE(Math.exp(t.abs.logE()))}${t.abs.crossed ? ' (crossed)' : ''}`);
            return {
                index,
                metric: s.spec.metric,
                status,
                eValue: Math.exp(t.logE()),
                threshold,
                alpha: s.alpha,
                canary,
                control,
                detail: `${parts.join(', ')}; counted bad events canary ${canary.counted}, control ${control.counted}`,
            };
        }
        const t = s.test;
        const status = !ready
            ? 'insufficient_data'
            : t.label.crossed
                ? 'breached'
                : t.active
                    ? 'holding'
                    : 'insufficient_data';
        const q = t.quantile;
        const canary = armSummary(this.nCanary, t.slowCanary, t.slowCanary);
        const control = armSummary(this.nControl, t.slowControl, t.slowControl);
        const cq = this.canaryHist?.quantileUpper(q) ?? NaN;
        if (!Number.isNaN(cq))
            canary.quantileMs = cq;
        if (t.active)
            control.quantileMs = t.thresholdMs;
        return {
            index,
            metric: 'latency',
            quantile: q,
            status,
            eValue: Math.exp(Math.max(t.label.logE(), t.label.lnEAtCross)),
            threshold,
            alpha: s.alpha,
            canary,
            control,
            detail: t.active
                ? `slow = canary > ${fmtMs(s.spec.maxRatio * t.thresholdMs + s.spec.maxIncreaseMs)}, control > ${fmtMs(t.thresholdMs)}; slow events canary ${t.slowCanary}, control ${t.slowControl}`
                : `waiting for ${t.minControl} control samples before T_p is trusted`,
        };
    }
    reasonFor(g) {
        const s = this.slots[g.index];
        const ev = `e=${fmtE(g.eValue)} >= ${fmtE(g.threshold)}`;
        if (s === undefined)
            return ev;
        if (s.kind === 'rate') {
            const lim = [];
            if (s.test.abs !== null)
                lim.push(`+${fmtNum(s.spec.maxIncrease * 100)}pp`);
            if (s.test.ratio !== null && s.spec.maxRatio > 1)
                lim.push(`x${fmtNum(s.spec.maxRatio)}`);
            const limit = lim.length > 0 ? `limit ${lim.join(' and ')}` : 'limit: any increase';
            return `${g.metric}: canary ${fmtPct(g.canary.rate)} vs control ${fmtPct(g.control.rate)} (${limit}), ${ev}`;
        }
        const p = `p${fmtNum(s.spec.quantile * 100)}`;
        return (`latency ${p}: canary ${fmtMs(g.canary.quantileMs ?? NaN)} vs control ${fmtMs(g.control.quantileMs ?? NaN)} ` +
            `(limit x${fmtNum(s.spec.maxRatio)} +${fmtNum(s.spec.maxIncreaseMs)}ms), ` +
            `slow canary ${g.canary.counted} vs control ${g.control.counted}, ${ev}`);
    }
}
function armSummary(samples, bad, counted) {
    return { samples, bad, rate: samples > 0 ? bad / samples : 0, counted };
}
function fmtNum(x) {
    return String(Number(x.toPrecision(4)));
}
function fmtPct(x) {
    return `${(x * 100).toFixed(1)}%`;
}
function fmtMs(x) {
    if (!Number.isFinite(x))
        return String(x);
    return x >= 100 ? `${Math.round(x)}ms` : `${x.toFixed(1)}ms`;
}
function fmtE(x) {
    if (!Number.isFinite(x))
        return String(x);
    if (x >= 1e6 || (x > 0 && x < 1e-3))
        return x.toExponential(2);
    return x >= 100 ? String(Math.round(x)) : String(Number(x.toPrecision(3)));
}
//# sourceMappingURL=analyzer.js.map