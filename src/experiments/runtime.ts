/**
 * The live state of one experiment: compiled once from its spec, read on the hot path (`assigning`,
 * `injecting` are the kill switch's flags), and updated allocation-free when an outcome is recorded.
 */
import type { Counter, Gauge } from 'prom-client';
import type { CounterChild, HistogramChild } from '../telemetry/hot-metrics.js';
import type { ExperimentSpec } from '../config/schema.js';
import type { Fault } from '../faults/fault.js';
import { compileFault } from '../faults/registry.js';
import { BUCKETS, bucketOf, fnv1a, stickyHash } from '../split/hash.js';
import { compileMatcher, type Matcher } from '../split/match.js';
import { rawCookie, rawHeader } from '../core/raw-headers.js';
import type { Metrics } from '../telemetry/metrics.js';
import {
  ARM_CANARY,
  ARM_CONTROL,
  ARM_NONE,
  GRPC_CODE_LABELS,
  GROUP_NAMES,
  OUTCOMES,
  STATUS_CLASSES,
  type Arm,
  type Outcome,
} from '../core/vocab.js';
import { releaseHold, type HeldTarget, type HoldTracer } from '../engine/hold.js';
import { assignmentMembers } from '../split/baggage.js';
import { ExperimentAnalyzer, type AnalyzerConfig, type GuardrailSpec } from '../stats/analyzer.js';
import type { RampView, SteadyStateView } from '../probes/types.js';

/**
 * `scheduled`: waiting for its schedule's next window (assigns nothing, like pending). `blocked`: its
 * steady state did not hold before the run, so the run never started (arm to retry).
 */
export type ExperimentState =
  'pending' | 'scheduled' | 'running' | 'killed' | 'expired' | 'disabled' | 'dry_run' | 'blocked';

export {
  ARM_NONE,
  ARM_CANARY,
  ARM_CONTROL,
  GROUP_NAMES,
  OUTCOME_OK,
  OUTCOME_ERROR,
  OUTCOME_TIMEOUT,
  OUTCOME_RESET,
  OUTCOME_CLIENT_ABORT,
  OUTCOMES,
} from '../core/vocab.js';
export type { Arm, Outcome } from '../core/vocab.js';

type StickyKind = 'header' | 'cookie' | 'trace';

export interface ArmCounts {
  requests: number;
  ok: number;
  error: number;
  timeout: number;
  reset: number;
  client_abort: number;
  injected: number;
  /** What the clients got, by status class ("error": no HTTP status, e.g. a reset). */
  status_classes: Record<(typeof STATUS_CLASSES)[number], number>;
}

export class ExperimentRuntime {
  readonly id: string;
  readonly spec: ExperimentSpec;
  /** Canonical JSON of the spec: a reload keeps this runtime (and its counts) when it is unchanged. */
  readonly specKey: string;
  readonly matcher: Matcher;
  /** Swapped between steps of a ramp (src/probes/ramp.ts): same kind, another magnitude. */
  fault: Fault;
  /**
   * Canary takes buckets [0, canaryBuckets), control [canaryBuckets, controlEnd), of 10,000. Written only
   * by setSplit (an exposure ramp's step, src/probes/ramp.ts); the hot path reads them.
   */
  canaryBuckets = 0;
  controlEnd = 0;
  /** The split in force, percent per arm (an exposure ramp's current step). */
  splitPercent = 0;
  readonly stickyKind: StickyKind | null;
  readonly stickyName: string;
  readonly seed: number;
  readonly injectHere: boolean;
  /** Downstream hops (listener or point names) that inject; null: every trusted hop. */
  readonly injectAt: ReadonlySet<string> | null;
  readonly injectedMark: string;
  /** x-faultline-arm values by arm ([none, canary, control]); none is never sent. */
  readonly armMarks: readonly (string | null)[];
  /** Baggage members carrying the assignment, by arm ([none, canary, control]): built once, not per request. */
  readonly baggageMembers: readonly [string, string, string];
  /** max_active_faults (a fleet sets this replica's share of it). */
  maxActiveFaults: number;
  /** Of 10,000: the share of canary requests that get the fault (BUCKETS = all of them). */
  faultBuckets: number;
  readonly excludeInjected: boolean;
  readonly enabled: boolean;
  readonly dryRun: boolean;
  /** The experiment's own duration, or undefined: it runs until stopped. */
  readonly durationMs: number | undefined;
  private readonly analyzerConfig: AnalyzerConfig;
  private readonly errorStatus: Uint8Array;

  state: ExperimentState = 'pending';
  /** Hot-path flags, derived from `state` (and `granted`) by setState/setGranted only. */
  assigning = false;
  injecting = false;
  /**
   * Permission to inject from outside the experiment's own state: always true alone; in a fleet, true
   * only while this replica holds a fresh grant (fail closed: a replica cut off from the fleet stops).
   */
  granted = true;

  activeFaults = 0;
  /** Span events for this experiment's holds; null unless tracing is on (set by the table). */
  tracer: HoldTracer | null = null;
  readonly held = new Set<HeldTarget>();
  /** Counts of the hop that drew the arms (the observation point), laid out as in addCount. */
  readonly counts = new Float64Array(3 * ROW);
  /** Requests assigned to each arm at this process's splitting hop ([none, canary, control]). */
  readonly assigned = new Float64Array(3);
  /** Per-listener counts and metric children: one process may be both the splitting and the injecting hop. */
  private readonly hops = new Map<string, HopRecorder>();
  private readonly metrics: Metrics;

  readonly injectedCounter: Counter.Internal;
  readonly overflowCounter: Counter.Internal;
  readonly activeGauge: Gauge.Internal<string>;

  analyzer: ExperimentAnalyzer;
  /** 32-bit hash of the sticky key of the last draw(); assign() copies it onto the exchange at once. */
  lastKeyHash = 0;
  /** Incremented by each re-arm: outcomes of requests assigned in an earlier run are not judged. */
  runId = 0;
  /**
   * runId at the start of the current run: a ramp's step bumps runId (fresh evidence) but not this, so
   * `workers: N` tells a new step (counts go on) from a new run (counts from zero) by it.
   */
  runStart = 0;
  /** Steady-state probe results and ramp steps (src/probes), for the report and admin JSON. */
  steadyState: SteadyStateView | null = null;
  ramp: RampView | null = null;

  /** The compile step: everything below is read from `spec` (snake_case) here, and only here. */
  constructor(spec: ExperimentSpec, metrics: Metrics, analyzer?: ExperimentAnalyzer) {
    this.id = spec.id;
    this.enabled = spec.enabled;
    this.dryRun = spec.dry_run;
    this.durationMs = spec.duration;
    this.analyzerConfig = Object.freeze(analyzerConfig(spec));
    this.analyzer = analyzer ?? this.newAnalyzer();
    this.spec = spec;
    this.specKey = JSON.stringify(spec);
    this.matcher = compileMatcher(spec.match);
    this.fault = compileFault(spec.fault);
    this.setSplit(splitSteps(spec)[0] as number);
    const sticky = spec.split.sticky;
    if (sticky === undefined) {
      this.stickyKind = null;
      this.stickyName = '';
    } else if (sticky === 'request_id') {
      // Envoy sets x-request-id and keeps it on retries: a retried canary request stays canary.
      this.stickyKind = 'header';
      this.stickyName = 'x-request-id';
    } else if (sticky === 'trace') {
      this.stickyKind = 'trace';
      this.stickyName = 'traceparent';
    } else {
      const colon = sticky.indexOf(':');
      this.stickyKind = sticky.slice(0, colon) as StickyKind;
      const n = sticky.slice(colon + 1);
      this.stickyName = this.stickyKind === 'header' ? n.toLowerCase() : n;
    }
    this.seed = fnv1a(`${spec.id}\u0000`);
    this.injectHere = spec.inject === 'here';
    this.injectAt = spec.inject_at ? new Set(spec.inject_at) : null;
    this.injectedMark = `${spec.id}; fault=${spec.fault.kind}`;
    this.armMarks = [null, `${spec.id}; group=canary`, `${spec.id}; group=control`];
    this.baggageMembers = assignmentMembers(spec.id);
    this.maxActiveFaults = spec.max_active_faults ?? Number.POSITIVE_INFINITY;
    this.faultBuckets = Math.round((spec.fault.percent * BUCKETS) / 100);
    this.excludeInjected = spec.exclude_injected;
    this.errorStatus = new Uint8Array(600);
    if (spec.error_statuses) for (const s of spec.error_statuses) this.errorStatus[s] = 1;
    else this.errorStatus.fill(1, 500, 600);

    this.metrics = metrics;
    this.injectedCounter = metrics.faultsInjected.labels(spec.id, spec.fault.kind);
    this.overflowCounter = metrics.faultsOverflow.labels(spec.id);
    this.activeGauge = metrics.activeFaults.labels(spec.id);
  }

  /** A fresh analyzer for a new run (the start, every re-arm). */
  newAnalyzer(): ExperimentAnalyzer {
    return new ExperimentAnalyzer(this.analyzerConfig);
  }

  /** Both arms at `percent` each: canary and control stay disjoint and equal in size. */
  setSplit(percent: number): void {
    this.splitPercent = percent;
    this.canaryBuckets = Math.max(1, Math.round((percent * BUCKETS) / 100));
    this.controlEnd = Math.min(BUCKETS, 2 * this.canaryBuckets);
  }

  setState(state: ExperimentState): void {
    this.state = state;
    this.assigning = state === 'running' || state === 'dry_run';
    this.injecting = state === 'running' && this.granted;
  }

  setGranted(granted: boolean): void {
    this.granted = granted;
    this.injecting = this.state === 'running' && granted;
  }

  /** The arm of a request that matched this experiment: one draw, canary and control disjoint. */
  draw(rawHeaders: readonly string[]): Arm {
    let bucket: number;
    if (this.stickyKind === null) {
      bucket = (Math.random() * BUCKETS) | 0;
    } else {
      const key = this.stickyKey(rawHeaders);
      // Without its key a request cannot be kept sticky, so it takes no part.
      if (key === undefined || key === '') return ARM_NONE;
      this.lastKeyHash = stickyHash(this.seed, key);
      bucket = bucketOf(this.lastKeyHash);
    }
    if (bucket < this.canaryBuckets) return ARM_CANARY;
    if (bucket < this.controlEnd) return ARM_CONTROL;
    return ARM_NONE;
  }

  stickyKey(rawHeaders: readonly string[]): string | undefined {
    switch (this.stickyKind) {
      case 'header':
        return rawHeader(rawHeaders, this.stickyName);
      case 'cookie':
        return rawCookie(rawHeaders, this.stickyName);
      case 'trace': {
        // W3C traceparent: version "-" trace-id (32 hex) "-" parent-id "-" flags.
        const tp = rawHeader(rawHeaders, 'traceparent');
        return tp !== undefined && tp.length >= 35 ? tp.slice(3, 35) : undefined;
      }
      default:
        return undefined;
    }
  }

  /** Whether this canary request gets the fault: always at percent 100, else a second, independent draw. */
  drawFault(): boolean {
    return this.faultBuckets >= BUCKETS || ((Math.random() * BUCKETS) | 0) < this.faultBuckets;
  }

  isError(status: number): boolean {
    return status >= 100 && status < 600 && this.errorStatus[status] === 1;
  }

  /**
   * Records an outcome as seen at `listener` (`statusClass` indexes STATUS_CLASSES, `grpcCode`
   * GRPC_CODE_LABELS); `observed` marks the hop that drew the arm.
   */
  recordOutcome(
    listener: string,
    arm: Arm,
    outcome: Outcome,
    statusClass: number,
    grpcCode: number,
    latencyMs: number,
    injected: boolean,
    observed: boolean,
  ): void {
    let hop = this.hops.get(listener);
    if (hop === undefined) {
      hop = new HopRecorder(this.metrics, this.id, listener);
      this.hops.set(listener, hop);
    }
    hop.record(arm, outcome, statusClass, grpcCode, latencyMs, injected);
    if (observed) addCount(this.counts, arm, outcome, statusClass, injected);
  }

  armCounts(arm: Arm): ArmCounts {
    return countsOf(this.counts, arm);
  }

  /** Per-hop counts, by listener name. */
  hopCounts(): Record<string, { canary: ArmCounts; control: ArmCounts }> {
    const out: Record<string, { canary: ArmCounts; control: ArmCounts }> = {};
    for (const [name, hop] of this.hops)
      out[name] = { canary: countsOf(hop.counts, ARM_CANARY), control: countsOf(hop.counts, ARM_CONTROL) };
    return out;
  }

  /** A re-armed experiment starts a fresh run: new evidence, zeroed counts. */
  resetRun(analyzer: ExperimentAnalyzer): void {
    this.analyzer = analyzer;
    this.runId++;
    this.runStart = this.runId;
    this.counts.fill(0);
    this.assigned.fill(0);
    for (const hop of this.hops.values()) hop.counts.fill(0);
  }

  /** Let every held fault go at once (kill): forwarded or answered, never left to run out. */
  releaseHeld(): void {
    for (const t of [...this.held]) releaseHold(t);
  }
}

/** One row of counts per arm: outcomes at [0, 5), injected at 7, status classes at [8, 14). */
const ROW = 16;
const INJECTED_SLOT = 7;
const STATUS_SLOT = 8;

function addCount(
  counts: Float64Array,
  arm: Arm,
  outcome: Outcome,
  statusClass: number,
  injected: boolean,
): void {
  const row = arm * ROW;
  counts[row + outcome]! += 1;
  counts[row + STATUS_SLOT + statusClass]! += 1;
  if (injected) counts[row + INJECTED_SLOT]! += 1;
}

/** ArmCounts of one arm's row in a counts array laid out as `counts` (fleet views sum replicas' arrays). */
export function countsOf(c: ArrayLike<number>, arm: Arm): ArmCounts {
  const row = arm * ROW;
  const at = (i: number) => c[row + i] ?? 0;
  const statusClasses = {} as ArmCounts['status_classes'];
  STATUS_CLASSES.forEach((name, i) => (statusClasses[name] = at(STATUS_SLOT + i)));
  return {
    requests: at(0) + at(1) + at(2) + at(3) + at(4),
    ok: at(0),
    error: at(1),
    timeout: at(2),
    reset: at(3),
    client_abort: at(4),
    injected: at(INJECTED_SLOT),
    status_classes: statusClasses,
  };
}

/** One hop's view of an experiment: its counts and its metric label children, resolved once. */
class HopRecorder {
  readonly counts = new Float64Array(3 * ROW);
  /** [arm * 5 + outcome]; canary and control only (a request outside the arms is never recorded) */
  private readonly outcomeCounters: (CounterChild | undefined)[] = [];
  /**
   * [(arm * 6 + statusClass) * 19 + grpcCode], resolved on first use so impossible combinations
   * never show.
   */
  private readonly statusCounters: (CounterChild | undefined)[] = [];
  private readonly durations: (HistogramChild | undefined)[] = [];
  private readonly metrics: Metrics;
  private readonly id: string;
  private readonly listener: string;

  constructor(metrics: Metrics, id: string, listener: string) {
    this.metrics = metrics;
    this.id = id;
    this.listener = listener;
    // Only canary and control get series: group="none" would be a set of always-zero series.
    for (const arm of [ARM_CANARY, ARM_CONTROL]) {
      const group = GROUP_NAMES[arm] as string;
      OUTCOMES.forEach((outcome, i) => {
        this.outcomeCounters[arm * OUTCOMES.length + i] = metrics.experimentRequests.labels(
          id,
          group,
          outcome,
          listener,
        );
      });
      this.durations[arm] = metrics.experimentDuration.labels(id, group, listener);
    }
  }

  record(
    arm: Arm,
    outcome: Outcome,
    statusClass: number,
    grpcCode: number,
    latencyMs: number,
    injected: boolean,
  ): void {
    if (arm === ARM_NONE) return;
    addCount(this.counts, arm, outcome, statusClass, injected);
    this.outcomeCounters[arm * OUTCOMES.length + outcome]?.inc();
    const idx = (arm * STATUS_CLASSES.length + statusClass) * GRPC_CODE_LABELS.length + grpcCode;
    let status = this.statusCounters[idx];
    if (status === undefined) {
      status = this.metrics.experimentResponses.labels(
        this.id,
        GROUP_NAMES[arm] as string,
        STATUS_CLASSES[statusClass] as string,
        GRPC_CODE_LABELS[grpcCode] as string,
        this.listener,
      );
      this.statusCounters[idx] = status;
    }
    status.inc();
    this.durations[arm]?.observe(latencyMs / 1000);
  }
}

function toGuardrailSpec(g: ExperimentSpec['guardrails'][number]): GuardrailSpec {
  switch (g.metric) {
    case 'error_rate':
    case 'timeout_rate':
      return { metric: g.metric, maxIncrease: g.max_increase, maxRatio: g.max_ratio };
    case 'latency':
      return {
        metric: 'latency',
        quantile: g.quantile,
        maxRatio: g.max_ratio,
        maxIncreaseMs: g.max_increase_ms,
      };
  }
}

/** The analyzer settings of an experiment; a ramp (src/probes/ramp.ts) runs each step at a share of alpha. */
export function analyzerConfig(spec: ExperimentSpec, alpha = 1 - spec.confidence): AnalyzerConfig {
  return {
    alpha,
    minSamples: spec.min_samples,
    guardrails: spec.guardrails.map(toGuardrailSpec),
    sticky: spec.split.sticky !== undefined,
  };
}

/** The split steps of an experiment: one for a fixed split, the list of an exposure ramp. */
export function splitSteps(spec: ExperimentSpec): readonly number[] {
  return typeof spec.split.percent === 'number' ? [spec.split.percent] : spec.split.percent;
}
