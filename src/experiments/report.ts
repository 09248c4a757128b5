/**
 * The experiment report: hypothesis, timeline, arms, guardrail states and the verdict. The verdict is
 * `held` (ran its duration, no breach, enough data), `refuted` (a guardrail breached), `inconclusive`
 * (ended with too little data to judge), `aborted` (killed by hand) or `running`. The global guards
 * judge as their causes do: the error-rate guard refutes, the global max_duration ends like a duration.
 * Steady-state probes (src/probes) add two: `stopped` (a stop condition, a probe of the whole system,
 * broke during the run and killed it; not a canary-vs-control comparison, so not `refuted`) and
 * `not_started` (a `before` probe failed; the run never began). `after` results are appended to the reason.
 */
import type { RampView, SteadyStateView } from '../probes/types.js';
import type { GuardrailState } from '../stats/analyzer.js';
import { controlHealth, type ControlHealth } from './control-health.js';
import type { RunComparison, RunRecord } from './journal.js';
import { ARM_CANARY, ARM_CONTROL, type ArmCounts, type ExperimentRuntime } from './runtime.js';
import type { ExperimentEvent, Lifecycle } from './table.js';
import type { WindowStatus } from './windows.js';

export type Verdict =
  'held' | 'refuted' | 'inconclusive' | 'aborted' | 'running' | 'disabled' | 'stopped' | 'not_started';

export interface ExperimentView {
  id: string;
  hypothesis: string;
  state: string;
  inject: 'here' | 'downstream';
  /** Hops that inject a downstream experiment (null: every trusted hop). */
  inject_at: string[] | null;
  fault: unknown;
  split: { percent: number; sticky: string | null };
  started_at: string | null;
  ends_at: string | null;
  /** Scheduled experiments: when the next window opens (null: paused, or not scheduled). */
  next_start_at: string | null;
  /** Experiments with `windows:`: inside one now, closes_at / next_open_at (null without windows). */
  window: WindowStatus | null;
  ended_at: string | null;
  ended: { cause: string | null; reason: string | null; by: string | null } | null;
  active_faults: number;
  /** Counts at the hop that drew the arms (the observation point). */
  arms: { canary: ArmCounts; control: ArmCounts };
  /** Counts at every listener that saw the experiment's requests (splitting and injecting hops). */
  hops: Record<string, { canary: ArmCounts; control: ArmCounts }>;
  /** Requests assigned at this process's splitting hop (finished or not). */
  assigned: { canary: number; control: number };
  /** Steady-state probe results (before, during, after), or null without probes. */
  steady_state: SteadyStateView | null;
  /** Breaking-point ramp: steps, current step, the tolerated limit; null without a ramp. */
  ramp: RampView | null;
}

export interface ExperimentReport extends ExperimentView {
  verdict: Verdict;
  verdict_reason: string;
  /**
   * Why, in one stable word, when the verdict alone does not say: `control_unhealthy` (the control arm
   * itself was failing: no baseline, no `held`), `insufficient_data`; else null.
   */
  verdict_cause: 'control_unhealthy' | 'insufficient_data' | null;
  /** The control arm against its health bounds (src/experiments/control-health.ts). */
  control_health: ControlHealth;
  guardrails: GuardrailState[];
  evidence: unknown;
  timeline: ExperimentEvent[];
}

export function experimentView(rt: ExperimentRuntime, life: Lifecycle | undefined): ExperimentView {
  const ended = life?.endedAt ? { cause: life.cause, reason: life.reason, by: life.by } : null;
  return {
    id: rt.id,
    hypothesis: rt.spec.hypothesis,
    state: rt.state,
    inject: rt.spec.inject,
    inject_at: rt.spec.inject_at ? [...rt.spec.inject_at] : null,
    fault: rt.spec.fault,
    split: { percent: rt.splitPercent, sticky: rt.spec.split.sticky ?? null },
    started_at: life?.startedAt ?? null,
    ends_at: life?.endsAt ?? null,
    next_start_at: life?.nextStartAt ?? null,
    window: life?.window ?? null,
    ended_at: life?.endedAt ?? null,
    ended,
    active_faults: rt.activeFaults,
    arms: { canary: rt.armCounts(ARM_CANARY), control: rt.armCounts(ARM_CONTROL) },
    hops: rt.hopCounts(),
    assigned: { canary: rt.assigned[ARM_CANARY] ?? 0, control: rt.assigned[ARM_CONTROL] ?? 0 },
    steady_state: rt.steadyState,
    ramp: rt.ramp,
  };
}

export function experimentReport(rt: ExperimentRuntime, life: Lifecycle | undefined): ExperimentReport {
  const guardrails = rt.analyzer.states();
  let [verdict, judged] = judge(rt, life, guardrails);
  let cause: ExperimentReport['verdict_cause'] = verdict === 'inconclusive' ? 'insufficient_data' : null;
  const health = controlHealth(rt);
  // A sick baseline: "canary no worse than control" proves nothing. Refuted stays refuted.
  if (health.status === 'unhealthy' && (verdict === 'held' || verdict === 'running')) {
    if (verdict === 'held') verdict = 'inconclusive';
    judged = `${health.detail}${verdict === 'running' ? ' so far' : ''}; not held (${judged})`;
    cause = 'control_unhealthy';
  }
  const why = judged + afterText(rt.steadyState) + rampText(rt.ramp);
  return {
    ...experimentView(rt, life),
    verdict,
    verdict_reason: why,
    verdict_cause: cause,
    control_health: health,
    guardrails,
    evidence: life?.evidence ?? null,
    timeline: life?.timeline ?? [],
  };
}

function judge(rt: ExperimentRuntime, life: Lifecycle | undefined, g: GuardrailState[]): [Verdict, string] {
  const insufficient = g.filter((s) => s.status === 'insufficient_data').map((s) => s.metric);
  switch (rt.state) {
    case 'killed':
      if (life?.cause === 'guardrail') return ['refuted', `guardrail breached: ${life.reason ?? ''}`];
      // Automatic guards: all traffic failing while the fault ran refutes the hypothesis; the global
      // time limit judges the evidence so far, as the end of the experiment's own duration does.
      if (life?.cause === 'global_error_rate')
        return ['refuted', `global error-rate guard tripped: ${life.reason ?? ''}`];
      if (life?.cause === 'duration') return judgeEnded(insufficient, life.reason ?? 'global max_duration');
      if (life?.cause === 'stop_condition')
        return ['stopped', `stop condition tripped: ${life.reason ?? ''}`];
      return [
        'aborted',
        `killed (${life?.cause ?? 'manual'}) by ${life?.by ?? 'operator'}: ${life?.reason ?? ''}`,
      ];
    case 'expired':
      return judgeEnded(insufficient, 'ran its duration');
    case 'disabled':
      return ['disabled', 'experiment is disabled'];
    case 'blocked':
      return ['not_started', life?.reason ?? 'steady state not met before the run'];
    case 'pending':
      return ['running', 'checking the steady state before the run starts'];
    default:
      return [
        'running',
        insufficient.length > 0
          ? `collecting data (${insufficient.join(', ')})`
          : 'all guardrails holding so far',
      ];
  }
}

/** "; after: api-up recovered in 3.1 s" for every probe with an after-check that finished. */
function afterText(s: SteadyStateView | null): string {
  const parts: string[] = [];
  for (const p of s?.probes ?? []) {
    const a = p.after;
    if (a === null) continue;
    if (a.status === 'recovered') parts.push(`${p.name} recovered in ${a.recovered_in_s} s`);
    else if (a.status === 'not_recovered')
      parts.push(`${p.name} did not recover (${a.last?.detail ?? 'no check'})`);
    else parts.push(`${p.name} being checked`);
  }
  return parts.length > 0 ? `; after: ${parts.join(', ')}` : '';
}

function rampText(r: RampView | null): string {
  return r === null ? '' : `; ramp: ${r.summary}`;
}

function judgeEnded(insufficient: string[], how: string): [Verdict, string] {
  if (insufficient.length > 0)
    return ['inconclusive', `${how} without enough data for: ${insufficient.join(', ')}`];
  return ['held', `${how}; every guardrail held with enough data`];
}

/** Markdown for `faultline report <id>` (the admin adds `run` and `history` from the journal). */
export function reportMarkdown(r: ExperimentReport & { run?: number; history?: RunComparison }): string {
  const lines = [
    `# Experiment \`${r.id}\`: ${r.verdict.toUpperCase()}`,
    '',
    `**Hypothesis:** ${r.hypothesis}`,
    '',
    `**Verdict:** ${r.verdict}${r.verdict_cause ? ` (${r.verdict_cause})` : ''} - ${r.verdict_reason}`,
    '',
    ...historyLines(r.run, r.history),
    `Control health: ${r.control_health.status}: ${r.control_health.detail}.`,
    '',
    `State ${r.state}; fault \`${JSON.stringify(r.fault)}\` injected ${r.inject}; split ${r.split.percent}% canary + ${r.split.percent}% control${r.split.sticky ? ` (sticky ${r.split.sticky})` : ''}.`,
    `Started ${r.started_at ?? '-'}; ${r.ended_at ? `ended ${r.ended_at}` : `ends ${r.ends_at ?? 'when stopped'}`}.`,
    '',
    ...armsTable(r.arms),
    'Per hop (the splitting hop observes; a trusted downstream hop injects):',
    '',
    '| hop | canary requests | canary injected | control requests |',
    '|---|---|---|---|',
    ...Object.entries(r.hops).map(
      ([hop, h]) => `| ${hop} | ${h.canary.requests} | ${h.canary.injected} | ${h.control.requests} |`,
    ),
    '',
    ...guardrailsTable(r.guardrails),
    ...steadyStateMarkdown(r.steady_state),
    ...rampMarkdown(r.ramp),
    '## Timeline',
    '',
    ...r.timeline.map(
      (e) => `- ${e.at} ${e.type}${e.reason ? `: ${e.reason}` : ''}${e.by ? ` (by ${e.by})` : ''}`,
    ),
    '',
  ];
  return lines.join('\n');
}

function historyLines(run: number | undefined, h: RunComparison | undefined): string[] {
  if (h === undefined) return [];
  const flag = h.regression ? '**REGRESSION:** ' : h.changed ? '**Changed:** ' : '';
  const prev = h.previous.map((p) => `#${p.run} ${p.verdict}`).join(', ');
  return [`**Run ${run ?? '?'} vs. history:** ${flag}${h.summary}${prev ? ` (previous: ${prev})` : ''}`, ''];
}

/** Markdown for `faultline report <id> --run N`: a recorded run and how it compares with the ones before. */
export function runReportMarkdown(r: RunRecord & { history: RunComparison }): string {
  return [
    `# Experiment \`${r.experiment}\`, run ${r.run}: ${r.verdict.toUpperCase()}`,
    '',
    `**Hypothesis:** ${r.hypothesis}`,
    '',
    `**Verdict:** ${r.verdict} - ${r.verdict_reason}`,
    '',
    ...historyLines(r.run, r.history),
    `Started ${r.started_at ?? '-'} by ${r.started_by}; ended ${r.ended_at} by ${r.ended_by} (${r.state}${r.cause ? `, ${r.cause}` : ''}: ${r.reason}).`,
    `Fault \`${JSON.stringify(r.fault)}\`; split ${r.split_percent}%; config revision ${r.config_revision}, spec revision ${r.spec_revision}; replicas ${r.replicas}.`,
    '',
    ...armsTable(r.arms),
    ...guardrailsTable(r.guardrails),
  ].join('\n');
}

function armsTable(arms: { canary: ArmCounts; control: ArmCounts }): string[] {
  const pct = (n: number, d: number) => (d > 0 ? `${((100 * n) / d).toFixed(2)}%` : '-');
  const arm = (name: string, a: ArmCounts) =>
    `| ${name} | ${a.requests} | ${pct(a.error, a.requests)} | ${pct(a.timeout, a.requests)} | ${pct(a.reset, a.requests)} | ${a.injected} |`;
  return [
    '## Arms',
    '',
    '| group | requests | errors | timeouts | resets | injected |',
    '|---|---|---|---|---|---|',
    arm('canary', arms.canary),
    arm('control', arms.control),
    '',
  ];
}

/** The guardrails table (live reports and recorded runs; a recorded run's numbers come back from JSON). */
function guardrailsTable(guardrails: readonly GuardrailState[]): string[] {
  return [
    '## Guardrails',
    '',
    '| metric | status | e-value | threshold | canary | control | detail |',
    '|---|---|---|---|---|---|---|',
    ...guardrails.map(
      (g) =>
        `| ${g.metric}${g.quantile !== undefined ? ` p${Number((g.quantile * 100).toPrecision(6))}` : ''} | ${g.status} | ${Number(g.eValue).toPrecision(3)} | ${Number(g.threshold).toPrecision(3)} | ${describeArm(g.canary)} | ${describeArm(g.control)} | ${g.detail} |`,
    ),
    '',
  ];
}

function steadyStateMarkdown(s: SteadyStateView | null): string[] {
  if (s === null) return [];
  const res = (x: { ok: boolean; error: boolean; detail: string; at: string } | null) =>
    x === null ? '-' : `${x.ok ? 'held' : x.error ? 'error' : 'FAILED'}: ${x.detail} (${x.at})`;
  return [
    '## Steady state',
    '',
    '| probe | kind | before | during (checks / breaches / errors, last) | after |',
    '|---|---|---|---|---|',
    ...s.probes.map((p) => {
      const d = p.during;
      const during = p.when.includes('during')
        ? `${d.checks} / ${d.breaches} / ${d.errors}, ${res(d.last)}`
        : '-';
      const a = p.after;
      const after =
        a === null
          ? '-'
          : a.status === 'recovered'
            ? `recovered in ${a.recovered_in_s} s`
            : a.status === 'not_recovered'
              ? `did not recover: ${res(a.last)}`
              : a.status;
      return `| ${p.name} | ${p.kind} | ${res(p.before)} | ${during} | ${after} |`;
    }),
    '',
  ];
}

function rampMarkdown(r: RampView | null): string[] {
  if (r === null) return [];
  return [
    '## Ramp',
    '',
    `${r.summary}`,
    '',
    `| step | ${r.unit} | status | canary | control | needed | alpha | detail |`,
    '|---|---|---|---|---|---|---|---|',
    ...r.steps.map(
      (s) =>
        `| ${s.step} | ${s.magnitude} | ${s.status} | ${s.canary} | ${s.control} | ${s.needed} | ${s.alpha.toPrecision(3)} | ${s.detail} |`,
    ),
    '',
  ];
}

function describeArm(a: GuardrailState['canary']): string {
  const q =
    a.quantileMs !== undefined && Number.isFinite(a.quantileMs) ? `, q=${a.quantileMs.toFixed(1)}ms` : '';
  if (a.scored === undefined) return `${a.bad}/${a.samples} (${(a.rate * 100).toFixed(2)}%)${q}`;
  // Latency: the slow share is of the scored requests only; say how many were not judged and why,
  // so a short run does not read as "10% slow" when 90% were never compared with T_p.
  const slow = a.scored > 0 ? `slow ${a.bad}/${a.scored} (${(a.rate * 100).toFixed(2)}%)` : 'slow -';
  const warm =
    a.unscored !== undefined && a.unscored.warmup > 0 ? `, unscored (warm-up) ${a.unscored.warmup}` : '';
  const excl =
    a.unscored !== undefined && a.unscored.excluded > 0
      ? `, unscored (injected, excluded) ${a.unscored.excluded}`
      : '';
  return `${slow}, scored ${a.scored}/${a.samples}${warm}${excl}${q}`;
}
