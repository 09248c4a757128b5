/**
 * Traffic counted in other processes: with `workers: N` the listeners run in the workers, so the
 * primary's own request counters stay at 0. Each worker sends its cumulative per-listener/route totals
 * with its outcome batch (src/cluster), the primary registers a source here, and the readers of
 * Faultline's traffic counters (traffic probes, suggestions: src/probes/traffic.ts) add what it returns
 * to their own. Nothing here is on the request path.
 */
import type { Metrics } from './metrics.js';

/** One listener/route's cumulative traffic (since its process started). */
export interface TrafficTotals {
  listener: string;
  route: string;
  requests: number;
  /** 5xx answers and requests that got no answer ("error" status class). */
  errors: number;
  /** Cumulative counts per duration bucket (le), +Inf last. */
  buckets: Float64Array;
}

type Source = () => Iterable<TrafficTotals>;

/** Per Faultline instance (its Metrics): at most one source (the worker pool of that instance). */
const sources = new WeakMap<Metrics, Source>();
const NONE: readonly TrafficTotals[] = [];

export function setSharedTraffic(metrics: Metrics, source: Source | null): void {
  if (source === null) sources.delete(metrics);
  else sources.set(metrics, source);
}

/** The other processes' totals for this instance (none without workers). */
export function sharedTraffic(metrics: Metrics): Iterable<TrafficTotals> {
  return sources.get(metrics)?.() ?? NONE;
}
