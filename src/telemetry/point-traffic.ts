/**
 * All traffic through one in-process inbound point, for `traffic` probes that name a point (a proxy
 * listener has faultline_requests_total for this; a point's untouched requests are otherwise never
 * seen). Plain cumulative numbers, no labels: the inbound host adds to them only when a probe watches
 * the point (the plan's `traffic` is null otherwise), and the probe's sampler reads them on its timer.
 */
import { DURATION_BUCKETS_S } from './metrics.js';
import type { Metrics } from './metrics.js';

export class PointTraffic {
  requests = 0;
  /** 5xx answers and requests that got no answer (reset, client gone), as listeners count "error". */
  errors = 0;
  /** Requests per duration bucket (not cumulative), +Inf last. */
  readonly buckets = new Float64Array(DURATION_BUCKETS_S.length + 1);

  record(error: boolean, latencyMs: number): void {
    this.requests++;
    if (error) this.errors++;
    const s = latencyMs / 1000;
    let i = 0;
    // 15 bounds: a linear scan beats a binary search at this size.
    while (i < DURATION_BUCKETS_S.length && s > (DURATION_BUCKETS_S[i] as number)) i++;
    this.buckets[i]! += 1;
  }
}

/** Per Faultline instance (its Metrics), by point name; kept across reloads so the counts stay cumulative. */
const registry = new WeakMap<Metrics, Map<string, PointTraffic>>();

export function pointTraffic(metrics: Metrics, point: string): PointTraffic {
  let m = registry.get(metrics);
  if (m === undefined) registry.set(metrics, (m = new Map()));
  let t = m.get(point);
  if (t === undefined) m.set(point, (t = new PointTraffic()));
  return t;
}
