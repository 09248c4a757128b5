/**
 * The deploy-gate document (`GET /experiments/{id}/verdict`): small and flat so that Argo Rollouts'
 * `web` metric provider reads it with `jsonPath: "{$.score}"` and Flagger's webhook gate reads the
 * HTTP status. Score: 1 passing (held, or running with no guardrail breached), 0 refuted, 0.5 no
 * verdict to act on (inconclusive, aborted, disabled, waiting for its first run): in Argo a value
 * matching neither successCondition `result == 1` nor failureCondition `result == 0` is Inconclusive,
 * which pauses the rollout for a human, the right answer to "we do not know".
 * Status: 200 passing, 409 refuted, 503 no verdict. A control arm that is itself unhealthy (cause
 * control_unhealthy, src/experiments/control-health.ts) never passes, not even while running.
 */
import type { RunRecord } from './journal.js';
import { experimentReport, type Verdict } from './report.js';
import type { ExperimentRuntime } from './runtime.js';
import type { Lifecycle } from './table.js';

export interface VerdictDocument {
  experiment: string;
  state: string;
  verdict: Verdict | 'none';
  pass: boolean;
  score: number;
  reason: string;
  /** control_unhealthy (the control arm was failing: never passing), insufficient_data, or null. */
  cause: string | null;
  /** The run the verdict is about (its number in the journal); null when none has run. */
  run: number | null;
  http_status: number;
}

export function verdictDocument(
  rt: ExperimentRuntime,
  life: Lifecycle | undefined,
  runs: readonly RunRecord[],
): VerdictDocument {
  const last = runs[runs.length - 1];
  let verdict: Verdict | 'none';
  let reason: string;
  let cause: string | null;
  let run: number | null;
  if (rt.state === 'pending' || rt.state === 'scheduled' || (rt.state === 'disabled' && last)) {
    // Between runs (a schedule waits for its window): the gate answers with the last finished run.
    verdict = last?.verdict ?? 'none';
    reason = last ? `last run: ${last.verdict_reason}` : 'no run has finished yet';
    cause = last?.verdict_cause ?? null;
    run = last?.run ?? null;
  } else {
    const r = experimentReport(rt, life);
    verdict = r.verdict;
    reason = r.verdict_reason;
    cause = r.verdict_cause;
    const ended = last !== undefined && r.ended_at !== null && last.ended_at === r.ended_at;
    run = ended ? last.run : runs.reduce((m, x) => Math.max(m, x.run), 0) + 1;
  }
  // A running experiment whose control is failing is no evidence for a rollout either.
  const pass = (verdict === 'held' || verdict === 'running') && cause !== 'control_unhealthy';
  const score = pass ? 1 : verdict === 'refuted' ? 0 : 0.5;
  return {
    experiment: rt.id,
    state: rt.state,
    verdict,
    pass,
    score,
    reason,
    cause,
    run,
    http_status: pass ? 200 : verdict === 'refuted' ? 409 : 503,
  };
}
