/**
 * The breaking-point ramp: the fault's magnitude (ramp.steps), or the experiment's exposure
 * (split.percent as a list), rises step by step while the guardrails hold, and the report names the
 * tolerated limit (the last step that held, the first that broke), optionally refined by bisection.
 *
 * Statistics (say which, the issue asks): each step is a fresh run of evidence (a new analyzer; the
 * requests of an earlier step are not judged, by the runtime's runId) AND the run's alpha is split over
 * every step that may run (Bonferroni: alpha / (K + bisect + 1 for a plateau)), so P(any step trips | no
 * effect at any step) <= alpha for the whole ramp (union bound; each step's test is anytime-valid).
 * "Enough evidence that a step holds": `needed` canary requests without a breach, the count at which a
 * breach of the reference size is detected with 90% probability at the step's alpha (ramp-power.ts,
 * simulated; for latency guardrails too). Never just "no trip yet".
 *
 * Bisection (ramp.bisect: N): after a break between a step that held (lo) and one that broke (hi), up
 * to N more steps at the midpoint, each judged like any step (same `needed`, same alpha slice, counted
 * in the split above); a midpoint that holds raises lo, one that breaks lowers hi. The limit is the
 * final [lo, hi]. Then on_breach applies: rollback kills (cause guardrail, the break's evidence),
 * plateau stays at lo.
 *
 * Everything here runs on a timer or inside the analyzer's breach path; the request path only reads
 * the runtime's `fault`, `faultBuckets` and split buckets, which a step swaps.
 */
import type { ExperimentSpec } from '../config/schema.js';
import type { Fault } from '../faults/fault.js';
import { compileFault, rampIntensity } from '../faults/registry.js';
import type { ExperimentRuntime } from '../experiments/runtime.js';
import { analyzerConfig, splitSteps } from '../experiments/runtime.js';
import type { ExperimentTable } from '../experiments/table.js';
import { ExperimentAnalyzer, type AnalyzerConfig, type ArmBatch, type Breach } from '../stats/analyzer.js';
import { BUCKETS } from '../split/hash.js';
import { powerPlan, type PowerPlan } from './ramp-power.js';
import type { RampStepView, RampView } from './types.js';

type Arm = 'canary' | 'control';

/** The analyzer of one step: a breach goes to the ramp first (plateau or bisection may absorb it). */
class StepAnalyzer extends ExperimentAnalyzer {
  private readonly ramp: RampController;
  constructor(ramp: RampController, cfg: AnalyzerConfig) {
    super(cfg);
    this.ramp = ramp;
  }
  override record(arm: Arm, bad: boolean, timedOut: boolean, latencyMs: number, key?: number): Breach | null {
    const b = super.record(arm, bad, timedOut, latencyMs, key);
    return b !== null && this.ramp.breached(this, b) ? null : b;
  }
  /** A batch, judged as `record` judges one request: the ramp sees the breach first. */
  recordPooled(canary: ArmBatch, control: ArmBatch): Breach | null {
    const b = this.recordBatch(canary, control);
    return b !== null && this.ramp.breached(this, b) ? null : b;
  }
}

/**
 * `workers: N` (src/cluster): the workers' pooled outcomes of a step reach its ramp as one process's
 * requests do (plateau and bisection may absorb the breach); any other analyzer takes the batch as is.
 * A fleet's pool keeps calling recordBatch: its evaluator kills on the latched breach.
 */
export function recordPooled(a: ExperimentAnalyzer, canary: ArmBatch, control: ArmBatch): Breach | null {
  return a instanceof StepAnalyzer ? a.recordPooled(canary, control) : a.recordBatch(canary, control);
}

/** What one step changes on the runtime. */
type Apply = (rt: ExperimentRuntime) => void;

const DEFAULTS = { min_canary_per_step: 'auto', on_breach: 'rollback', bisect: 0 } as const;

/** Whether the experiment ramps at all: intensity steps, or exposure steps. */
export function hasRamp(spec: ExperimentSpec): boolean {
  return spec.ramp !== undefined || typeof spec.split.percent !== 'number';
}

export class RampController {
  private readonly rt: ExperimentRuntime;
  private readonly table: ExperimentTable;
  private readonly onBreach: 'rollback' | 'plateau';
  private readonly bisectMax: number;
  /** Aligned with view.steps (bisection steps are appended to both). */
  private readonly applies: Apply[];
  private readonly stepAt: (m: number) => Apply;
  /** Larger is more intense (false for a throttle: fewer bytes per second is harsher). */
  private readonly increasing: boolean;
  private readonly cfg: AnalyzerConfig;
  private readonly plan: PowerPlan;
  private readonly needed: number;
  private readonly planned: number;
  readonly view: RampView;
  private current = -1;
  private plateau = false;
  /** While bisecting: the last magnitude that held and the first that broke. */
  private bisecting: { lo: number; hi: number; left: number; breach: Breach } | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** rt.assigned when the current step began. */
  private assignedAt = [0, 0, 0];

  constructor(rt: ExperimentRuntime, table: ExperimentTable) {
    this.rt = rt;
    this.table = table;
    const spec = rt.spec.ramp ?? DEFAULTS;
    this.onBreach = spec.on_breach;
    this.bisectMax = spec.bisect;
    const exposure = typeof rt.spec.split.percent !== 'number';
    const magnitudes = exposure ? splitSteps(rt.spec) : (rt.spec.ramp?.steps ?? []);
    this.planned = magnitudes.length;
    if (exposure) {
      this.increasing = true;
      this.stepAt = (m) => (r) => r.setSplit(m);
    } else {
      this.increasing = !rampIntensity(rt.spec.fault).decreasing;
      this.stepAt = (m) => {
        const s = stepFault(rt.spec, m);
        return (r) => {
          r.fault = s.fault;
          r.faultBuckets = s.faultBuckets;
        };
      };
    }
    this.applies = magnitudes.map(this.stepAt);
    // Every step that may run gets a slice: the planned ones, the bisection ones, the plateau.
    const slices = magnitudes.length + this.bisectMax + (spec.on_breach === 'plateau' ? 1 : 0);
    this.cfg = analyzerConfig(rt.spec, (1 - rt.spec.confidence) / slices);
    this.plan = powerPlan(
      this.cfg,
      spec.min_canary_per_step === 'auto' ? undefined : spec.min_canary_per_step,
    );
    this.needed = Math.max(this.plan.needed, rt.spec.min_samples);
    this.view = {
      kind: exposure ? 'exposure' : 'intensity',
      unit: exposure ? '% exposure' : unitOf(rt.spec),
      on_breach: spec.on_breach,
      bisect: this.bisectMax,
      bisected: 0,
      power:
        this.plan.breach === null
          ? 'no power claim: a step advances after min_samples'
          : `power ${Math.round((this.plan.power ?? 0) * 100)}% at ${this.needed} canary requests for ${this.plan.breach} (simulated, alpha ${this.cfg.alpha.toPrecision(3)} per step)`,
      current: -1,
      held_up_to: null,
      broke_at: null,
      summary: 'not started',
      steps: magnitudes.map((m, i) => this.stepView(i, m, false)),
    };
    rt.ramp = this.view;
  }

  private stepView(i: number, m: number, bisect: boolean): RampStepView {
    return {
      step: i,
      magnitude: m,
      status: 'pending',
      started_at: null,
      ended_at: null,
      canary: 0,
      control: 0,
      canary_bad: 0,
      needed: this.needed,
      alpha: this.cfg.alpha,
      bisect,
      assigned: { canary: 0, control: 0, none: 0 },
      detail: '',
    };
  }

  /** A run started: step 0, fresh. */
  start(): void {
    this.stopTimer();
    this.plateau = false;
    this.bisecting = null;
    this.current = -1;
    // Bisection steps of an earlier run go.
    this.view.steps.length = this.planned;
    this.applies.length = this.planned;
    for (let i = 0; i < this.planned; i++)
      this.view.steps[i] = this.stepView(i, (this.view.steps[i] as RampStepView).magnitude, false);
    Object.assign(this.view, { held_up_to: null, broke_at: null, bisected: 0 });
    this.enter(0);
    // Advancing is checked off the request path, 20 times a second.
    this.timer = setInterval(() => this.tick(), 50);
    this.timer.unref();
  }

  /** The run ended (killed, expired): the step being collected says so. */
  end(): void {
    this.stopTimer();
    this.refresh();
    const s = this.view.steps[this.current];
    if (s !== undefined && s.status === 'running') {
      s.status = 'ended';
      s.ended_at = new Date().toISOString();
      s.detail ||= `ended with ${s.canary} of ${s.needed} canary requests`;
    }
    this.summarize();
  }

  stop(): void {
    this.stopTimer();
  }

  private stopTimer(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private enter(i: number, plateau = false): void {
    const rt = this.rt;
    (this.applies[i] as Apply)(rt);
    rt.analyzer = new StepAnalyzer(this, this.cfg);
    // Outcomes of requests assigned under the previous step are not judged under this one.
    rt.runId++;
    this.current = i;
    this.view.current = i;
    this.assignedAt = [rt.assigned[0] ?? 0, rt.assigned[1] ?? 0, rt.assigned[2] ?? 0];
    const v = this.view.steps[i] as RampStepView;
    if (!plateau) Object.assign(v, { status: 'running', started_at: new Date().toISOString() });
    this.summarize();
    this.table.note({
      type: 'ramp_step',
      experiment: rt.id,
      reason: plateau
        ? `plateau: back to step ${i} (${v.magnitude} ${this.view.unit}) for the rest of the run`
        : `${v.bisect ? 'bisection ' : ''}step ${i}: ${v.magnitude} ${this.view.unit}`,
    });
  }

  private refresh(): void {
    if (this.plateau) return;
    const v = this.view.steps[this.current];
    if (v === undefined) return;
    const n = this.rt.analyzer.samples();
    v.canary = n.canary;
    v.control = n.control;
    const rate = this.rt.analyzer.states().find((g) => g.metric !== 'latency');
    v.canary_bad = rate?.canary.bad ?? 0;
    const a = this.rt.assigned;
    v.assigned = {
      none: (a[0] ?? 0) - (this.assignedAt[0] as number),
      canary: (a[1] ?? 0) - (this.assignedAt[1] as number),
      control: (a[2] ?? 0) - (this.assignedAt[2] as number),
    };
  }

  private tick(): void {
    if (!this.rt.assigning || this.plateau) return;
    this.refresh();
    const v = this.view.steps[this.current] as RampStepView;
    if (v.status !== 'running' || v.canary < v.needed || this.rt.analyzer.breached() !== null) return;
    v.status = 'held';
    v.ended_at = new Date().toISOString();
    v.detail = `held with ${v.canary} canary / ${v.control} control requests`;
    if (this.view.held_up_to === null || this.harsher(v.magnitude, this.view.held_up_to))
      this.view.held_up_to = v.magnitude;
    const b = this.bisecting;
    if (b !== null) {
      b.lo = v.magnitude;
      this.nextBisection();
    } else if (this.current + 1 < this.planned) this.enter(this.current + 1);
    else {
      // Every step held: the limit is beyond the ramp; stay at the last step until the run ends.
      this.stopTimer();
      this.summarize();
    }
  }

  /** Called from the step's analyzer on a breach: true when the ramp absorbs it (plateau, bisection). */
  breached(a: ExperimentAnalyzer, b: Breach): boolean {
    if (a !== this.rt.analyzer) return false;
    if (this.plateau) return false;
    this.refresh();
    const v = this.view.steps[this.current] as RampStepView;
    v.status = 'broke';
    v.ended_at = new Date().toISOString();
    v.detail = b.reason;
    if (this.view.broke_at === null || this.harsher(this.view.broke_at, v.magnitude))
      this.view.broke_at = v.magnitude;
    const held = this.view.held_up_to;
    if (this.bisecting !== null) {
      this.bisecting.hi = v.magnitude;
      this.bisecting.breach = b;
      return this.nextBisection();
    }
    if (this.bisectMax > 0 && held !== null) {
      this.bisecting = { lo: held, hi: v.magnitude, left: this.bisectMax, breach: b };
      return this.nextBisection();
    }
    return this.settle(b);
  }

  /** The next midpoint, or the end of the bisection. True: the breach that led here is absorbed. */
  private nextBisection(): boolean {
    const b = this.bisecting as NonNullable<RampController['bisecting']>;
    const mid = midpoint(b.lo, b.hi);
    if (b.left <= 0 || mid === null) {
      this.stopTimer();
      return this.finishBisection(b.breach);
    }
    b.left--;
    this.view.bisected++;
    const i = this.view.steps.length;
    this.view.steps.push(this.stepView(i, mid, true));
    this.applies.push(this.stepAt(mid));
    this.enter(i);
    return true;
  }

  /** Bisection done: on_breach decides, as for a break without bisection. */
  private finishBisection(b: Breach): boolean {
    const absorbed = this.settle(b);
    if (!absorbed) {
      // Reached from the timer (a midpoint held last) there is no analyzer breach to return: kill here.
      const reason = `ramp broke at ${this.view.broke_at} ${this.view.unit} (refined by bisection): ${b.reason}`;
      this.table.kill(this.rt.id, 'guardrail', reason, 'guardrail', { ...b, at: new Date().toISOString() });
    }
    // Either way the analyzer's breach is handled here (killed above, or absorbed by a plateau).
    return true;
  }

  /** A break with no (more) bisection: plateau at the last step that held (true), or rollback (false). */
  private settle(b: Breach): boolean {
    void b;
    this.stopTimer();
    const lo = this.view.held_up_to;
    if (this.onBreach === 'plateau' && lo !== null) {
      const i = this.view.steps.findIndex((s) => s.magnitude === lo && s.status === 'held');
      this.plateau = true;
      (this.view.steps[i] as RampStepView).status = 'plateau';
      this.enter(i, true);
      return true;
    }
    this.summarize();
    return false;
  }

  private harsher(a: number, b: number): boolean {
    return this.increasing ? a > b : a < b;
  }

  private summarize(): void {
    const v = this.view;
    const u = v.unit;
    const held = v.held_up_to;
    const broke = [...v.steps].reverse().find((s) => s.status === 'broke' && s.magnitude === v.broke_at);
    const parts: string[] = [];
    if (held !== null)
      parts.push(`held up to ${held} ${u} (${this.needed} canary requests per step; ${v.power})`);
    else if (broke) parts.push('no step held');
    if (broke) parts.push(`broke at ${broke.magnitude} ${u} (${broke.detail})`);
    if (v.bisected > 0) parts.push(`limit refined by ${v.bisected} bisection step(s)`);
    if (this.plateau) parts.push(`plateau at ${held} ${u}`);
    if (parts.length === 0) {
      const cur = v.steps[this.current];
      parts.push(cur ? `at step ${cur.step} (${cur.magnitude} ${u}), ${cur.status}` : 'not started');
    } else if (!broke && held === v.steps[this.planned - 1]?.magnitude)
      parts.push('every step held: the limit is beyond the ramp');
    v.summary = parts.join(', ');
  }
}

/**
 * Halfway between two magnitudes on the grid the values allow (whole numbers when both ends are whole,
 * else hundredths: draws and percents have 0.01 resolution); null when nothing lies strictly between.
 */
export function midpoint(lo: number, hi: number): number | null {
  const grid = Number.isInteger(lo) && Number.isInteger(hi) ? 1 : 100;
  const mid = Math.round(((lo + hi) / 2) * grid) / grid;
  return mid === lo || mid === hi ? null : mid;
}

/**
 * The magnitude of the intensity step in force (null: no intensity ramp, or not started): what a
 * worker of `workers: N` needs to serve the step the primary's ramp chose (src/cluster).
 */
export function currentIntensity(rt: ExperimentRuntime): number | null {
  const v = rt.ramp;
  if (v === null || v.kind !== 'intensity' || v.current < 0) return null;
  return v.steps[v.current]?.magnitude ?? null;
}

function unitOf(spec: ExperimentSpec): string {
  return rampIntensity(spec.fault).unit;
}

/** The fault of one step: same kind, this intensity (declared by the fault; else its percent). */
export function stepFault(spec: ExperimentSpec, m: number): { fault: Fault; faultBuckets: number } {
  const stepped = rampIntensity(spec.fault).stepSpec(m);
  return { fault: compileFault(stepped), faultBuckets: Math.round((stepped.percent * BUCKETS) / 100) };
}
