// The readers of Faultline's traffic counters (suggestions' routeTotals, traffic probes' sampler) add
// what other processes counted (the workers of `workers: N`) to this process's own counters.
import { afterEach, describe, expect, it } from 'vitest';
import { routeTotals, TrafficSampler } from '../../src/probes/traffic.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { setSharedTraffic, type TrafficTotals } from '../../src/telemetry/shared-traffic.js';

const closers: (() => void)[] = [];
afterEach(() => closers.splice(0).forEach((c) => c()));

/** Cumulative buckets (le) with `n` requests all in the first bucket. */
const firstBucket = (n: number) => new Float64Array(16).fill(n);

describe('shared traffic (workers)', () => {
  it('routeTotals adds the shared totals to the local counters, per listener and route', () => {
    const m = createMetrics();
    m.requests.labels('ingress', 'api', 'GET', '2xx', '').inc(7);
    m.requests.labels('ingress', 'api', 'GET', '5xx', '').inc(3);
    m.requestDuration.labels('ingress', 'api').observe(0.0001);
    const shared: TrafficTotals[] = [
      { listener: 'ingress', route: 'api', requests: 20, errors: 5, buckets: firstBucket(20) },
      { listener: 'ingress', route: 'other', requests: 4, errors: 0, buckets: firstBucket(4) },
    ];
    setSharedTraffic(m, () => shared);
    closers.push(() => setSharedTraffic(m, null));
    const totals = routeTotals(m);
    const api = totals.find((t) => t.route === 'api')!;
    expect(api).toMatchObject({ requests: 30, errors: 8 });
    expect(api.buckets[0]).toBe(21);
    expect(api.buckets[15]).toBe(21);
    expect(totals.find((t) => t.route === 'other')).toMatchObject({ requests: 4, errors: 0 });
    // A source gone: only the local counts.
    setSharedTraffic(m, null);
    expect(routeTotals(m).map((t) => t.requests)).toEqual([10]);
  });

  it('a traffic sampler window counts shared requests and errors of its listener/route only', async () => {
    const m = createMetrics();
    const api: TrafficTotals = {
      listener: 'ingress',
      route: 'api',
      requests: 0,
      errors: 0,
      buckets: firstBucket(0),
    };
    const other: TrafficTotals = {
      listener: 'egress',
      route: 'api',
      requests: 0,
      errors: 0,
      buckets: firstBucket(0),
    };
    setSharedTraffic(m, () => [api, other]);
    closers.push(() => setSharedTraffic(m, null));
    const s = new TrafficSampler(m, { listener: 'ingress', route: 'api' }, 1000);
    closers.push(() => s.close());
    api.requests = 50;
    api.errors = 10;
    api.buckets = firstBucket(50);
    other.requests = 1000;
    other.errors = 1000;
    const w = s.window();
    expect(w).toMatchObject({ requests: 50, errors: 10 });
    expect(w.p99Ms).toBeGreaterThan(0);
  });
});
