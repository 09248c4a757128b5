// ExperimentAnalyzer: the kill switch's statistics. Feeds every canary/control outcome to one
// anytime-valid test per guardrail and reports the first crossing (statistics.md §6). O(1) and
// allocation-free per record() (a Breach object is built once, when it trips).
import { LogHistogram } from './histogram.js';
import { ExceedanceTest } from './exceedance.js';
import { RateTest } from './rate-test.js';
import { SessionFilter } from './session-filter.js';

export type Arm = 'canary' | 'control';

export type GuardrailSpec =
  | { metric: 'error_rate'; maxIncrease: number; maxRatio: number }
  | { metric: 'timeout_rate'; maxIncrease: number; maxRatio: number }
  | { metric: 'latency'; quantile: number; maxRatio: number; maxIncreaseMs: number };

export interface AnalyzerConfig {
  /** 1 − confidence: P(an experiment without real degradation ever trips), all looks included */
  alpha: number;
  /** no decision before this many requests in EACH arm (delays only; validity does not need it) */
  minSamples: number;
  guardrails: readonly GuardrailSpec[];
  /** sticky assignment: count at most one bad event per session key per arm and guardrail */
  sticky: boolean;
  /** ρ = P(canary | in experiment), default 0.5 */
  canaryShare?: number;
}

/**
 * One arm's share of a batch: `errors` are the requests that were not OK (what `bad` means in record()),
 * `timeouts` those that timed out, `latency` the bucket counts (LogHistogram's default layout) of the
 * requests with a latency to judge; null when none or no latency guardrail.
 */
export interface ArmBatch {
  requests: number;
  errors: number;
  timeouts: number;
  latency: Float64Array | null;
}

export type GuardrailStatus = 'insufficient_data' | 'holding' | 'breached';

export interface ArmSummary {
  samples: number;
  /** bad events as recorded (errors / timeouts / slow requests), before per-session dedup */
  bad: number;
  /** bad / samples; latency guardrails: slow / scored */
  rate: number;
  /** bad events that entered the test (after per-session dedup when sticky) */
  counted: number;
  /** latency guardrails: this arm's quantile (ms) from its histogram; for control, T_p */
  quantileMs?: number;
  /** latency guardrails: requests judged against an active T_p (the denominator of `rate`) */
  scored?: number;
  /**
   * latency guardrails: requests not judged. `warmup`: they came before T_p was trusted; `excluded`:
   * no latency to judge (an injected delay at the observing hop with exclude_injected).
   */
  unscored?: { warmup: number; excluded: number };
}

export interface GuardrailState {
  index: number;
  metric: GuardrailSpec['metric'];
  quantile?: number;
  status: GuardrailStatus;
  /** current evidence (for a ratio AND margin rule: the weaker part, latched at its crossing) */
  eValue: number;
  /** 1 / alpha of this guardrail */
  threshold: number;
  alpha: number;
  canary: ArmSummary;
  control: ArmSummary;
  detail: string;
}

export interface Breach {
  guardrail: GuardrailState;
  samples: { canary: number; control: number };
  reason: string;
}

interface RateSlot {
  kind: 'rate';
  spec: Extract<GuardrailSpec, { metric: 'error_rate' | 'timeout_rate' }>;
  test: RateTest;
  alpha: number;
  canaryBad: number;
  controlBad: number;
}

interface LatencySlot {
  kind: 'latency';
  spec: Extract<GuardrailSpec, { metric: 'latency' }>;
  test: ExceedanceTest;
  alpha: number;
  canarySlowRaw: number;
  controlSlowRaw: number;
}

type Slot = RateSlot | LatencySlot;

/**
 * Per-guardrail α (Bonferroni, statistics.md §6.0): when both kinds exist, failure-rate guardrails
 * (error_rate, timeout_rate) share α/2 equally and latency guardrails (one per quantile) share the
 * other α/2 equally; when only one kind exists it gets all of α. The union bound keeps
 * P(any guardrail ever trips | no real degradation) <= α.
 */
export function splitAlpha(alpha: number, guardrails: readonly GuardrailSpec[]): number[] {
  const nLat = guardrails.filter((g) => g.metric === 'latency').length;
  const nFail = guardrails.length - nLat;
  const latBudget = nFail > 0 && nLat > 0 ? alpha / 2 : alpha;
  const failBudget = alpha - (nLat > 0 ? latBudget : 0);
  return guardrails.map((g) => (g.metric === 'latency' ? latBudget / nLat : failBudget / nFail));
}

export class ExperimentAnalyzer {
  private readonly slots: Slot[];
  private readonly minSamples: number;
  private readonly controlHist: LogHistogram | null;
  private readonly canaryHist: LogHistogram | null;
  private nCanary = 0;
  private nControl = 0;
  private breach: Breach | null = null;

  constructor(cfg: AnalyzerConfig) {
    if (!(cfg.alpha > 0 && cfg.alpha < 1)) throw new RangeError(`alpha must be in (0,1), got ${cfg.alpha}`);
    if (cfg.guardrails.length === 0) throw new RangeError('at least one guardrail is required');
    const rho = cfg.canaryShare ?? 0.5;
    if (!(rho > 0 && rho < 1)) throw new RangeError(`canaryShare must be in (0,1), got ${rho}`);
    this.minSamples = Math.max(0, cfg.minSamples);
    const alphas = splitAlpha(cfg.alpha, cfg.guardrails);
    const hasLatency = cfg.guardrails.some((g) => g.metric === 'latency');
    // one control histogram feeds every latency quantile; the canary one is for reports only
    this.controlHist = hasLatency ? new LogHistogram() : null;
    this.canaryHist = hasLatency ? new LogHistogram() : null;
    this.slots = cfg.guardrails.map((spec, i): Slot => {
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
  record(arm: Arm, bad: boolean, timedOut: boolean, latencyMs: number, sessionKey?: number): Breach | null {
    const isCanary = arm === 'canary';
    if (isCanary) this.nCanary++;
    else this.nControl++;
    const hasLatency = latencyMs >= 0 && latencyMs < Infinity;
    let crossed = -1;
    for (let i = 0; i < this.slots.length; i++) {
      const s = this.slots[i];
      if (s === undefined) continue;
      let c: boolean;
      if (s.kind === 'rate') {
        const b = s.spec.metric === 'error_rate' ? bad : timedOut;
        if (b) {
          if (isCanary) s.canaryBad++;
          else s.controlBad++;
        }
        c = s.test.onRequest(isCanary, b, sessionKey);
      } else {
        if (!hasLatency) continue;
        c = s.test.onRequest(isCanary, latencyMs, sessionKey);
      }
      if (c && crossed < 0) crossed = i;
    }
    // the control latency enters the histogram only after it was scored (T_p uses the past only)
    if (hasLatency) {
      if (isCanary) this.canaryHist?.add(latencyMs);
      else this.controlHist?.add(latencyMs);
    }
    if (crossed < 0 || this.breach !== null || !this.enoughSamples()) return null;
    const state = this.stateOf(crossed);
    this.breach = {
      guardrail: state,
      samples: { canary: this.nCanary, control: this.nControl },
      reason: this.reasonFor(state),
    };
    return this.breach;
  }

  /**
   * Record a batch of finished requests (a fleet's pooled outcomes since the last batch). Every test's
   * evidence after the batch equals the per-request evidence at the same point (counts commute; the
   * latency test's T_p is refreshed at batch starts), so judging batches is judging a subsequence of
   * looks: the same alpha, detection later by at most one batch. Sticky experiments only with
   * `sessionsDeduped` (bad counts already one per session and arm: the fleet's bitmap) and rate
   * guardrails (a latency test's per-session dedup needs each request's latency at its time).
   */
  recordBatch(canary: ArmBatch, control: ArmBatch, sessionsDeduped = false): Breach | null {
    this.nCanary += canary.requests;
    this.nControl += control.requests;
    let crossed = -1;
    for (let i = 0; i < this.slots.length; i++) {
      const s = this.slots[i];
      if (s === undefined) continue;
      let c: boolean;
      if (s.kind === 'rate') {
        const err = s.spec.metric === 'error_rate';
        const cb = err ? canary.errors : canary.timeouts;
        const kb = err ? control.errors : control.timeouts;
        s.canaryBad += cb;
        s.controlBad += kb;
        c = s.test.onBatch(canary.requests, cb, control.requests, kb, sessionsDeduped);
      } else c = s.test.onBatch(canary.latency, control.latency);
      if (c && crossed < 0) crossed = i;
    }
    if (canary.latency !== null) this.canaryHist?.addCounts(canary.latency);
    if (control.latency !== null) this.controlHist?.addCounts(control.latency);
    return this.judge(crossed);
  }

  /** Latches a breach when guardrail `crossed` (-1: none) crossed with enough samples. */
  private judge(crossed: number): Breach | null {
    if (crossed < 0 || this.breach !== null || !this.enoughSamples()) return null;
    const state = this.stateOf(crossed);
    this.breach = {
      guardrail: state,
      samples: { canary: this.nCanary, control: this.nControl },
      reason: this.reasonFor(state),
    };
    return this.breach;
  }

  /** The latched breach, if any. */
  breached(): Breach | null {
    return this.breach;
  }

  states(): GuardrailState[] {
    return this.slots.map((_, i) => this.stateOf(i));
  }

  samples(): { canary: number; control: number } {
    return { canary: this.nCanary, control: this.nControl };
  }

  private enoughSamples(): boolean {
    return this.nCanary >= this.minSamples && this.nControl >= this.minSamples;
  }

  private stateOf(index: number): GuardrailState {
    const s = this.slots[index];
    if (s === undefined) throw new RangeError(`no guardrail ${index}`);
    const ready = this.enoughSamples();
    const threshold = 1 / s.alpha;
    if (s.kind === 'rate') {
      const t = s.test;
      const status: GuardrailStatus = !ready ? 'insufficient_data' : t.crossed ? 'breached' : 'holding';
      const canary = armSummary(this.nCanary, s.canaryBad, t.canaryBadCounted);
      const control = armSummary(this.nControl, s.controlBad, t.controlBadCounted);
      const parts: string[] = [];
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
    const status: GuardrailStatus = !ready
      ? 'insufficient_data'
      : t.label.crossed
        ? 'breached'
        : t.active
          ? 'holding'
          : 'insufficient_data';
    const q = t.quantile;
    const canary = latencySummary(this.nCanary, t.slowCanary, t.scoredCanary, t.warmupCanary);
    const control = latencySummary(this.nControl, t.slowControl, t.scoredControl, t.warmupControl);
    const cq = this.canaryHist?.quantileUpper(q) ?? NaN;
    if (!Number.isNaN(cq)) canary.quantileMs = cq;
    if (t.active) control.quantileMs = t.thresholdMs;
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
        : `waiting for ${t.minControl} control samples before T_p is trusted (have ${this.controlHist?.total ?? 0})`,
    };
  }

  private reasonFor(g: GuardrailState): string {
    const s = this.slots[g.index];
    const ev = `e=${fmtE(g.eValue)} >= ${fmtE(g.threshold)}`;
    if (s === undefined) return ev;
    if (s.kind === 'rate') {
      const lim: string[] = [];
      if (s.test.abs !== null) lim.push(`+${fmtNum(s.spec.maxIncrease * 100)}pp`);
      if (s.test.ratio !== null && s.spec.maxRatio > 1) lim.push(`x${fmtNum(s.spec.maxRatio)}`);
      const limit = lim.length > 0 ? `limit ${lim.join(' and ')}` : 'limit: any increase';
      return `${g.metric}: canary ${fmtPct(g.canary.rate)} vs control ${fmtPct(g.control.rate)} (${limit}), ${ev}`;
    }
    const p = `p${fmtNum(s.spec.quantile * 100)}`;
    return (
      `latency ${p}: canary ${fmtMs(g.canary.quantileMs ?? NaN)} vs control ${fmtMs(g.control.quantileMs ?? NaN)} ` +
      `(limit x${fmtNum(s.spec.maxRatio)} +${fmtNum(s.spec.maxIncreaseMs)}ms), ` +
      `slow canary ${g.canary.counted}/${g.canary.scored ?? 0} vs control ${g.control.counted}/${g.control.scored ?? 0} scored, ${ev}`
    );
  }
}

function armSummary(samples: number, bad: number, counted: number): ArmSummary {
  return { samples, bad, rate: samples > 0 ? bad / samples : 0, counted };
}

/** Latency arm: the rate is over scored requests, not all samples (warm-up ones were never judged). */
function latencySummary(samples: number, slow: number, scored: number, warmup: number): ArmSummary {
  return {
    samples,
    bad: slow,
    rate: scored > 0 ? slow / scored : 0,
    counted: slow,
    scored,
    unscored: { warmup, excluded: Math.max(0, samples - scored - warmup) },
  };
}

function fmtNum(x: number): string {
  return String(Number(x.toPrecision(4)));
}

function fmtPct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

function fmtMs(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  return x >= 100 ? `${Math.round(x)}ms` : `${x.toFixed(1)}ms`;
}

function fmtE(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x >= 1e6 || (x > 0 && x < 1e-3)) return x.toExponential(2);
  return x >= 100 ? String(Math.round(x)) : String(Number(x.toPrecision(3)));
}
