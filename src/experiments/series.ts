/**
 * Bounded history of every experiment for the live dashboard: one sample a second for the last hour, in
 * preallocated ring buffers. Sampling reads the counts the hot path already keeps (ExperimentRuntime's
 * Float64Array and the analyzer's state) on a 1 s timer, so recording a request costs nothing more.
 * The same tick sets the `faultline_guardrail_e_value` gauge, so Prometheus sees the evidence too.
 */
import type { Metrics } from '../telemetry/metrics.js';
import type { GuardrailState } from '../stats/analyzer.js';
import { ARM_CANARY, ARM_CONTROL, type ExperimentRuntime } from './runtime.js';
import type { ExperimentTable, KillCause } from './table.js';

/**
 * Every cause (the Record makes a new KillCause a compile error here), so each trip counter starts at
 * 0 and `increase()` sees the first trip of any kind.
 */
const KILL_CAUSES = Object.keys({
  guardrail: true,
  global_error_rate: true,
  duration: true,
  manual: true,
  stop_condition: true,
} satisfies Record<KillCause, true>) as KillCause[];

/** Samples kept per experiment: one hour at one a second. */
export const SERIES_CAPACITY = 3600;
export const SERIES_INTERVAL_MS = 1000;

/** Per-arm fields of one sample: per-second deltas of the observation point's counts. */
const ARM_FIELDS = ['requests', 'errors', 'timeouts', 'injected'] as const;
/** Per-guardrail fields: e-value, status code (0 insufficient_data, 1 holding, 2 breached), quantiles. */
const GUARD_FIELDS = 5;
const STATUS_CODES: Record<GuardrailState['status'], number> = {
  insufficient_data: 0,
  holding: 1,
  breached: 2,
};
export const STATUS_NAMES = ['insufficient_data', 'holding', 'breached'] as const;

/** Offsets into the runtime's counts row (see runtime.ts addCount): outcomes 0..4, injected 7. */
const ROW = 16;
const OUTCOMES_IN_ROW = 5;

export interface SeriesView {
  id: string;
  interval_ms: number;
  capacity: number;
  /** Sample times (ms since the epoch), oldest first. */
  t: number[];
  /** Per-second counts at the hop that drew the arms. */
  canary: Record<(typeof ARM_FIELDS)[number], number[]>;
  control: Record<(typeof ARM_FIELDS)[number], number[]>;
  guardrails: {
    metric: string;
    quantile: number | null;
    threshold: number;
    /** e-value at each sample */
    e: number[];
    /** guardrail status at each sample, as an index into status_names */
    status: number[];
    /** latency guardrails: canary's quantile and control's T_p in ms (null before there is one) */
    canary_ms: (number | null)[];
    control_ms: (number | null)[];
  }[];
  status_names: readonly string[];
}

class Ring {
  readonly t = new Float64Array(SERIES_CAPACITY);
  readonly v: Float32Array;
  readonly stride: number;
  head = 0;
  len = 0;
  /** The runtime last sampled and its cumulative counts then (a re-arm or reload restarts them). */
  runtime: ExperimentRuntime | null = null;
  runId = -1;
  readonly last = new Float64Array(2 * ARM_FIELDS.length);
  readonly guards: { metric: string; quantile?: number; threshold: number }[];

  constructor(rt: ExperimentRuntime) {
    const g = rt.analyzer.states();
    this.guards = g.map((s) => ({
      metric: s.metric,
      ...(s.quantile !== undefined ? { quantile: s.quantile } : {}),
      threshold: s.threshold,
    }));
    this.stride = 2 * ARM_FIELDS.length + GUARD_FIELDS * g.length;
    this.v = new Float32Array(SERIES_CAPACITY * this.stride);
  }
}

export class ExperimentSeries {
  private readonly rings = new Map<string, Ring>();
  private timer: NodeJS.Timeout | null = null;
  private readonly table: ExperimentTable;
  private readonly metrics: Metrics;

  constructor(table: ExperimentTable, metrics: Metrics) {
    this.table = table;
    this.metrics = metrics;
  }

  start(): void {
    if (this.timer !== null) return;
    this.sample();
    this.timer = setInterval(() => this.sample(), SERIES_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Takes one sample of every experiment (the timer calls it; tests may too). */
  sample(now = Date.now()): void {
    const seen = new Set<string>();
    for (const rt of this.table.all()) {
      seen.add(rt.id);
      let ring = this.rings.get(rt.id);
      // A changed spec (reload) may change the guardrails: a new layout, a new history.
      if (ring === undefined || (ring.runtime !== rt && ring.runtime?.specKey !== rt.specKey)) {
        ring = new Ring(rt);
        this.rings.set(rt.id, ring);
        // Kill counters exist from the start at 0, so rate() and increase() see the first kill.
        for (const reason of KILL_CAUSES) this.metrics.killSwitchTrips.inc({ experiment: rt.id, reason }, 0);
      }
      this.sampleOne(ring, rt, now);
    }
    for (const [id, ring] of this.rings) {
      if (seen.has(id)) continue;
      this.rings.delete(id);
      for (const g of ring.guards) {
        const labels = { experiment: id, guardrail: guardrailName(g) };
        this.metrics.guardrailEValue.remove(labels);
        this.metrics.guardrailThreshold.remove(labels);
        this.metrics.guardrailSufficient.remove(labels);
      }
    }
  }

  private sampleOne(ring: Ring, rt: ExperimentRuntime, now: number): void {
    if (ring.runtime !== rt || ring.runId !== rt.runId) {
      // Counts restarted from zero (re-arm) or belong to another runtime: deltas start afresh.
      ring.last.fill(0);
      ring.runtime = rt;
      ring.runId = rt.runId;
    }
    const at = ring.head;
    ring.t[at] = now;
    const base = at * ring.stride;
    let k = 0;
    for (const arm of [ARM_CANARY, ARM_CONTROL]) {
      const row = arm * ROW;
      const c = rt.counts;
      let requests = 0;
      for (let i = 0; i < OUTCOMES_IN_ROW; i++) requests += c[row + i] ?? 0;
      const cum = [requests, c[row + 1] ?? 0, c[row + 2] ?? 0, c[row + 7] ?? 0];
      for (let i = 0; i < cum.length; i++, k++) {
        const v = cum[i] ?? 0;
        ring.v[base + k] = Math.max(0, v - (ring.last[k] ?? 0));
        ring.last[k] = v;
      }
    }
    const states = rt.analyzer.states();
    for (let g = 0; g < ring.guards.length; g++) {
      const s = states[g];
      const o = base + k + g * GUARD_FIELDS;
      // Float32 holds 1e-30..1e30; the chart is logarithmic and the boundary is far inside that range.
      ring.v[o] = s ? Math.min(Math.max(s.eValue, 1e-30), 1e30) : NaN;
      ring.v[o + 1] = s ? STATUS_CODES[s.status] : 0;
      ring.v[o + 2] = s?.canary.quantileMs ?? NaN;
      ring.v[o + 3] = s?.control.quantileMs ?? NaN;
      if (s) {
        const labels = { experiment: rt.id, guardrail: guardrailName(s) };
        this.metrics.guardrailEValue.set(labels, s.eValue);
        this.metrics.guardrailThreshold.set(labels, s.threshold);
        this.metrics.guardrailSufficient.set(labels, s.status === 'insufficient_data' ? 0 : 1);
      }
    }
    ring.head = (at + 1) % SERIES_CAPACITY;
    if (ring.len < SERIES_CAPACITY) ring.len++;
  }

  /** The history of one experiment, samples newer than `sinceMs` only (the page polls incrementally). */
  view(id: string, sinceMs = 0): SeriesView | undefined {
    const ring = this.rings.get(id);
    if (ring === undefined) return undefined;
    const idx: number[] = [];
    const first = (ring.head - ring.len + SERIES_CAPACITY) % SERIES_CAPACITY;
    for (let i = 0; i < ring.len; i++) {
      const at = (first + i) % SERIES_CAPACITY;
      if ((ring.t[at] ?? 0) > sinceMs) idx.push(at);
    }
    const col = (off: number) => idx.map((at) => num(ring.v[at * ring.stride + off]));
    const arm = (start: number) =>
      Object.fromEntries(ARM_FIELDS.map((f, i) => [f, col(start + i)])) as SeriesView['canary'];
    const g0 = 2 * ARM_FIELDS.length;
    return {
      id,
      interval_ms: SERIES_INTERVAL_MS,
      capacity: SERIES_CAPACITY,
      t: idx.map((at) => ring.t[at] ?? 0),
      canary: arm(0),
      control: arm(ARM_FIELDS.length),
      guardrails: ring.guards.map((g, i) => {
        const o = g0 + i * GUARD_FIELDS;
        return {
          metric: g.metric,
          quantile: g.quantile ?? null,
          threshold: g.threshold,
          e: col(o).map((x) => x ?? 0),
          status: col(o + 1).map((x) => x ?? 0),
          canary_ms: col(o + 2),
          control_ms: col(o + 3),
        };
      }),
      status_names: STATUS_NAMES,
    };
  }
}

/** The `guardrail` label of the e-value gauge: the metric, and the quantile for latency (latency_p99). */
export function guardrailName(g: { metric: string; quantile?: number | undefined }): string {
  return g.quantile === undefined ? g.metric : `${g.metric}_p${Number((g.quantile * 100).toPrecision(6))}`;
}

/** JSON has no NaN or Infinity: null for "no value". */
function num(x: number | undefined): number | null {
  return x === undefined || !Number.isFinite(x) ? null : x;
}
