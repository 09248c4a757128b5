/**
 * The breaking-point ramp: the fault's magnitude rises step by step while the guardrails hold, and the
 * report names the tolerated limit (the last step that held, the first that broke).
 *
 * Statistics (say which, the issue asks): each step is a fresh run of evidence (a new analyzer; the
 * requests of an earlier step are not judged, by the runtime's runId) AND the run's alpha is split over
 * the steps (Bonferroni: alpha / K, plus one slice for the plateau), so P(any step trips | no effect at
 * any step) <= alpha for the whole ramp (union bound; each step's test is anytime-valid). A step
 * advances only when it has `needed` canary requests without a breach: the count at which a breach of
 * the reference size is detected with 90% probability at the step's alpha (ramp-power.ts, simulated).
 *
 * Everything here runs on a timer or inside the analyzer's breach path; the request path only reads
 * the runtime's `fault` and `faultBuckets`, which a step swaps.
 */
import type { ExperimentSpec } from '../config/schema.js';
import type { Fault } from '../faults/fault.js';
import { compileFault, rampIntensity } from '../faults/registry.js';
import type { ExperimentRuntime } from '../experiments/runtime.js';
import { analyzerConfig } from '../experiments/runtime.js';
import type { ExperimentTable } from '../experiments/table.js';
import { ExperimentAnalyzer, type AnalyzerConfig, type Breach } from '../stats/analyzer.js';
import { BUCKETS } from '../split/hash.js';
import { powerPlan, type PowerPlan } from './ramp-power.js';
import type { RampStepView, RampView } from './types.js';

type Arm = 'canary' | 'control';

/** The analyzer of one step: a breach goes to the ramp first (plateau may absorb it). */
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
}

interface Step {
  fault: Fault;
  faultBuckets: number;
}

export class RampController {
  private readonly rt: ExperimentRuntime;
  private readonly table: ExperimentTable;
  private readonly spec: NonNullable<ExperimentSpec['ramp']>;
  private readonly steps: Step[];
  private readonly cfg: AnalyzerConfig;
  private readonly plan: PowerPlan;
  readonly view: RampView;
  private current = -1;
  private plateau = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(rt: ExperimentRuntime, table: ExperimentTable) {
    this.rt = rt;
    this.table = table;
    const spec = rt.spec.ramp!;
    this.spec = spec;
    this.steps = spec.steps.map((m) => stepFault(rt.spec, m));
    const slices = spec.steps.length + (spec.on_breach === 'plateau' ? 1 : 0);
    this.cfg = analyzerConfig(rt.spec, (1 - rt.spec.confidence) / slices);
    this.plan = powerPlan(
      this.cfg,
      spec.min_canary_per_step === 'auto' ? undefined : spec.min_canary_per_step,
    );
    const needed = Math.max(this.plan.needed, rt.spec.min_samples);
    this.view = {
      unit: unitOf(rt.spec),
      on_breach: spec.on_breach,
      power:
        this.plan.breach === null
          ? 'no power claim (latency guardrails only): a step advances after min_samples'
          : `power ${Math.round((this.plan.power ?? 0) * 100)}% at ${needed} canary requests for ${this.plan.breach} (simulated, alpha ${this.cfg.alpha.toPrecision(3)} per step)`,
      current: -1,
      held_up_to: null,
      broke_at: null,
      summary: 'not started',
      steps: spec.steps.map((m, i) => ({
        step: i,
        magnitude: m,
        status: 'pending',
        started_at: null,
        ended_at: null,
        canary: 0,
        control: 0,
        canary_bad: 0,
        needed,
        alpha: this.cfg.alpha,
        detail: '',
      })),
    };
    rt.ramp = this.view;
  }

  /** A run started: step 0, fresh. */
  start(): void {
    this.stopTimer();
    this.plateau = false;
    this.current = -1;
    for (const s of this.view.steps)
      Object.assign(s, {
        status: 'pending',
        started_at: null,
        ended_at: null,
        canary: 0,
        control: 0,
        canary_bad: 0,
        detail: '',
      });
    Object.assign(this.view, { held_up_to: null, broke_at: null });
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
    const step = this.steps[i] as Step;
    const rt = this.rt;
    rt.fault = step.fault;
    rt.faultBuckets = step.faultBuckets;
    rt.analyzer = new StepAnalyzer(this, this.cfg);
    // Outcomes of requests assigned under the previous step are not judged under this one.
    rt.runId++;
    this.current = i;
    this.view.current = i;
    const v = this.view.steps[i] as RampStepView;
    if (!plateau) Object.assign(v, { status: 'running', started_at: new Date().toISOString() });
    this.summarize();
    this.table.note({
      type: 'ramp_step',
      experiment: rt.id,
      reason: plateau
        ? `plateau: back to step ${i} (${v.magnitude} ${this.view.unit}) for the rest of the run`
        : `step ${i}: ${v.magnitude} ${this.view.unit}`,
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
  }

  private tick(): void {
    if (!this.rt.assigning || this.plateau) return;
    this.refresh();
    const v = this.view.steps[this.current] as RampStepView;
    if (v.status !== 'running' || v.canary < v.needed || this.rt.analyzer.breached() !== null) return;
    v.status = 'held';
    v.ended_at = new Date().toISOString();
    v.detail = `held with ${v.canary} canary / ${v.control} control requests`;
    this.view.held_up_to = v.magnitude;
    if (this.current + 1 < this.steps.length) this.enter(this.current + 1);
    else {
      // Every step held: the limit is beyond the ramp; stay at the last step until the run ends.
      this.stopTimer();
      this.summarize();
    }
  }

  /** Called from the step's analyzer on a breach: true when the ramp absorbs it (plateau). */
  breached(a: ExperimentAnalyzer, b: Breach): boolean {
    if (a !== this.rt.analyzer) return false;
    if (this.plateau) return false;
    this.refresh();
    const v = this.view.steps[this.current] as RampStepView;
    v.status = 'broke';
    v.ended_at = new Date().toISOString();
    v.detail = b.reason;
    this.view.broke_at = v.magnitude;
    const last = this.current - 1;
    if (this.spec.on_breach === 'plateau' && last >= 0) {
      this.plateau = true;
      this.stopTimer();
      (this.view.steps[last] as RampStepView).status = 'plateau';
      this.enter(last, true);
      return true;
    }
    this.summarize();
    return false;
  }

  private summarize(): void {
    const v = this.view;
    const u = v.unit;
    const held = v.held_up_to;
    const broke = v.steps.find((s) => s.status === 'broke');
    const n = v.steps[0]?.needed ?? 0;
    const parts: string[] = [];
    if (held !== null) parts.push(`held up to ${held} ${u} (${n} canary requests per step; ${v.power})`);
    else if (broke) parts.push('no step held');
    if (broke) parts.push(`broke at ${broke.magnitude} ${u} (${broke.detail})`);
    if (this.plateau) parts.push(`plateau at ${held} ${u}`);
    if (parts.length === 0) {
      const cur = v.steps[this.current];
      parts.push(cur ? `at step ${cur.step} (${cur.magnitude} ${u}), ${cur.status}` : 'not started');
    } else if (!broke && held === v.steps[v.steps.length - 1]?.magnitude)
      parts.push('every step held: the limit is beyond the ramp');
    v.summary = parts.join(', ');
  }
}

function unitOf(spec: ExperimentSpec): string {
  return rampIntensity(spec.fault).unit;
}

/** The fault of one step: same kind, this intensity (declared by the fault; else its percent). */
function stepFault(spec: ExperimentSpec, m: number): Step {
  const stepped = rampIntensity(spec.fault).stepSpec(m);
  return { fault: compileFault(stepped), faultBuckets: Math.round((stepped.percent * BUCKETS) / 100) };
}
