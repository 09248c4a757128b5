/**
 * Steady-state probes: what one check returned and what the report shows. A leaf module (types only), so
 * the experiment report can name these shapes without importing the probes themselves.
 */

/** One evaluation of one probe. */
export interface ProbeResult {
  at: string;
  /** The probe held. False on a breach and on an evaluation error. */
  ok: boolean;
  /** The probe could not be evaluated (timeout, server down, no data): never counts as holding. */
  error: boolean;
  /** The measured value (status, JSON value, query result, rate, ms, req/s); null when there is none. */
  value: number | string | boolean | null;
  /** Human-readable: what was measured against what. */
  detail: string;
}

export type ProbePhase = 'before' | 'during' | 'after';

export interface AfterState {
  status: 'waiting' | 'checking' | 'recovered' | 'not_recovered';
  /** Seconds from the end of the run to the first check that held. */
  recovered_in_s: number | null;
  checks: number;
  last: ProbeResult | null;
}

/** One probe as the report and admin JSON show it. */
export interface ProbeView {
  name: string;
  kind: 'http' | 'prometheus' | 'traffic';
  when: ProbePhase[];
  every_ms: number;
  before: ProbeResult | null;
  during: {
    checks: number;
    breaches: number;
    errors: number;
    consecutive_errors: number;
    last: ProbeResult | null;
  };
  after: AfterState | null;
}

/** Steps of a breaking-point ramp as the report shows them. */
export interface RampStepView {
  step: number;
  magnitude: number;
  /** ended: the run ended while the step was still collecting evidence. */
  status: 'pending' | 'running' | 'held' | 'broke' | 'plateau' | 'ended';
  started_at: string | null;
  ended_at: string | null;
  canary: number;
  control: number;
  /** Bad canary outcomes the step's first rate guardrail counted (errors or timeouts). */
  canary_bad: number;
  /** Canary requests judged before the step may advance (power 90% for a breach of the guardrail size). */
  needed: number;
  /** Per-step significance level (the run's alpha split over the steps, bisection steps included). */
  alpha: number;
  /** A bisection step: between the last step that held and the first that broke (ramp.bisect). */
  bisect: boolean;
  /** Requests drawn at this hop during the step: canary, control, and matched but in neither arm. */
  assigned: { canary: number; control: number; none: number };
  detail: string;
}

export interface RampView {
  /** intensity: the fault's magnitude steps (ramp.steps); exposure: the split's percent steps. */
  kind: 'intensity' | 'exposure';
  unit: string;
  /** Bisection steps allowed after a break (ramp.bisect) and how many ran. */
  bisect: number;
  bisected: number;
  on_breach: 'rollback' | 'plateau';
  /** The power claim behind `needed`, e.g. "power 90% for error_rate 1% -> 3%" (simulated). */
  power: string;
  current: number;
  steps: RampStepView[];
  /** The magnitude of the last step that held, or null. */
  held_up_to: number | null;
  /** The magnitude of the first step that broke, or null. */
  broke_at: number | null;
  summary: string;
}

export interface SteadyStateView {
  probes: ProbeView[];
}
