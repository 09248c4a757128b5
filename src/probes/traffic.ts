/**
 * Faultline's own view of all traffic on a listener (or one route) over a sliding window, for `traffic`
 * probes. Nothing is added to the request path: a timer samples the cumulative counters the listeners
 * already keep (faultline_requests_total, faultline_request_duration_seconds) and the window is the
 * difference between now and the sample one window ago. Counts everything clients saw, injected faults
 * included (a stop condition is about the system as its users see it).
 */
import { DURATION_BUCKETS_S, type Metrics } from '../telemetry/metrics.js';
import { pointTraffic, type PointTraffic } from '../telemetry/point-traffic.js';
import { sharedTraffic, type TrafficTotals } from '../telemetry/shared-traffic.js';

interface Sample {
  t: number;
  requests: number;
  errors: number;
  /** Cumulative counts per duration bucket (le), +Inf last. */
  buckets: Float64Array;
}

export interface TrafficWindow {
  requests: number;
  errors: number;
  seconds: number;
  p99Ms: number;
}

/** Where a sampler reads: a proxy listener (and route) from the request metrics, or an in-process point. */
export type TrafficSource =
  { listener: string; route: string | null; point?: undefined } | { point: string; listener?: undefined };

export class TrafficSampler {
  private readonly metrics: Metrics;
  private readonly listener: string;
  private readonly route: string | null;
  private readonly point: PointTraffic | null;
  private readonly windowMs: number;
  private readonly periodMs: number;
  private readonly samples: Sample[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly startedAt = Date.now();

  constructor(metrics: Metrics, source: TrafficSource, windowMs: number) {
    this.metrics = metrics;
    this.listener = source.listener ?? '';
    this.route = source.point === undefined ? source.route : null;
    this.point = source.point === undefined ? null : pointTraffic(metrics, source.point);
    this.windowMs = windowMs;
    // Twenty samples per window: the window's edge is known to within 5%.
    this.periodMs = Math.max(50, Math.min(5000, Math.round(windowMs / 20)));
    this.samples.push(this.sample());
    this.timer = setInterval(() => this.tick(), this.periodMs);
    this.timer.unref();
  }

  /** Resolves once the samples span a whole window (a `before` check judges a full window). */
  filled(): Promise<void> {
    const left = this.startedAt + this.windowMs - Date.now();
    return left <= 0 ? Promise.resolve() : new Promise((r) => setTimeout(r, left).unref());
  }

  window(): TrafficWindow {
    const now = this.sample();
    const from = now.t - this.windowMs;
    let base = this.samples[0] as Sample;
    for (const s of this.samples)
      if (s.t >= from - this.periodMs / 2) {
        base = s;
        break;
      }
    const requests = now.requests - base.requests;
    const errors = now.errors - base.errors;
    const delta = new Float64Array(now.buckets.length);
    for (let i = 0; i < delta.length; i++) delta[i] = (now.buckets[i] ?? 0) - (base.buckets[i] ?? 0);
    return { requests, errors, seconds: (now.t - base.t) / 1000, p99Ms: quantileMs(delta, 0.99) };
  }

  close(): void {
    clearInterval(this.timer);
  }

  private tick(): void {
    this.samples.push(this.sample());
    const keepFrom = Date.now() - this.windowMs - 2 * this.periodMs;
    while (this.samples.length > 2 && (this.samples[1] as Sample).t < keepFrom) this.samples.shift();
  }

  private matches(labels: Record<string, string | number>): boolean {
    return labels.listener === this.listener && (this.route === null || labels.route === this.route);
  }

  private sample(): Sample {
    if (this.point !== null) {
      const p = this.point;
      const buckets = new Float64Array(p.buckets.length);
      let sum = 0;
      for (let i = 0; i < buckets.length; i++) buckets[i] = sum += p.buckets[i] as number;
      return { t: Date.now(), requests: p.requests, errors: p.errors, buckets };
    }
    let requests = 0;
    let errors = 0;
    for (const { labels, child } of this.metrics.requests.entries()) {
      if (!this.matches(labels)) continue;
      requests += child.value;
      const c = labels.status_class;
      if (c === '5xx' || c === 'error') errors += child.value;
    }
    const buckets = new Float64Array(DURATION_BUCKETS_S.length + 1);
    for (const { labels, child } of this.metrics.requestDuration.entries())
      if (this.matches(labels)) addCumulative(buckets, child.counts);
    // `workers: N`: the listeners run in the workers; their totals arrive with their batches.
    for (const t of sharedTraffic(this.metrics)) {
      if (t.listener !== this.listener || (this.route !== null && t.route !== this.route)) continue;
      requests += t.requests;
      errors += t.errors;
      for (let i = 0; i < buckets.length; i++) buckets[i]! += t.buckets[i] ?? 0;
    }
    return { t: Date.now(), requests, errors, buckets };
  }
}

/** Prometheus's histogram_quantile over cumulative bucket counts, in milliseconds. */
export function quantileMs(cumulative: Float64Array, q: number): number {
  const total = cumulative[cumulative.length - 1] ?? 0;
  if (total <= 0) return 0;
  const rank = q * total;
  let i = 0;
  while (i < cumulative.length - 1 && (cumulative[i] as number) < rank) i++;
  // In the +Inf bucket: the highest finite bound is all that is known.
  if (i >= DURATION_BUCKETS_S.length)
    return (DURATION_BUCKETS_S[DURATION_BUCKETS_S.length - 1] as number) * 1000;
  const upper = DURATION_BUCKETS_S[i] as number;
  const lower = i === 0 ? 0 : (DURATION_BUCKETS_S[i - 1] as number);
  const below = i === 0 ? 0 : (cumulative[i - 1] as number);
  const inBucket = (cumulative[i] as number) - below;
  const frac = inBucket > 0 ? (rank - below) / inBucket : 1;
  return (lower + (upper - lower) * frac) * 1000;
}

/** Cumulative traffic of one listener/route since the process started (what `faultline suggest` reads). */
export type RouteTotals = TrafficTotals;

/**
 * Every listener/route's totals from the counters the listeners already keep (one read of the metric
 * families, off the request path; nothing is added per request).
 */
export function routeTotals(metrics: Metrics): RouteTotals[] {
  const by = new Map<string, RouteTotals>();
  const entry = (labels: Record<string, string | number>): RouteTotals => {
    const listener = String(labels.listener ?? '');
    const route = String(labels.route ?? '');
    const key = `${listener}\0${route}`;
    let t = by.get(key);
    if (t === undefined) {
      t = {
        listener,
        route,
        requests: 0,
        errors: 0,
        buckets: new Float64Array(DURATION_BUCKETS_S.length + 1),
      };
      by.set(key, t);
    }
    return t;
  };
  for (const { labels, child } of metrics.requests.entries()) {
    const t = entry(labels);
    t.requests += child.value;
    const c = labels.status_class;
    if (c === '5xx' || c === 'error') t.errors += child.value;
  }
  for (const { labels, child } of metrics.requestDuration.entries())
    addCumulative(entry(labels).buckets, child.counts);
  // `workers: N`: what the workers' listeners counted (this process's own counters are 0 then).
  for (const s of sharedTraffic(metrics)) {
    const t = entry({ listener: s.listener, route: s.route });
    t.requests += s.requests;
    t.errors += s.errors;
    for (let i = 0; i < t.buckets.length; i++) t.buckets[i]! += s.buckets[i] ?? 0;
  }
  return [...by.values()].filter((t) => t.requests > 0);
}

/** Add per-bucket counts (a HotHistogram child's) to cumulative ones (le), +Inf last. */
function addCumulative(into: Float64Array, perBucket: Float64Array): void {
  let sum = 0;
  for (let i = 0; i < into.length; i++) into[i]! += sum += perBucket[i] ?? 0;
}
