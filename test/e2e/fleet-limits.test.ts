// Fleet-wide limits and sticky splits against a real redis-server: several real Faultline replicas
// (in-process, each with its own listeners, admin port and state dir) in front of one upstream.
import { Redis } from 'ioredis';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { exp, oneRoute } from '../helpers/experiments.js';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { getJson, load, sleep, until, type Loose } from '../helpers/fleet.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { metricSum, scrape, startUpstream } from '../helpers/servers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
});

const STATE_KEY = 'faultline:{checkout}:state';

async function redis(): Promise<TestRedis> {
  const r = await startRedis();
  cleanup.push(() => r.stop());
  return r;
}

/** An upstream answering 200, or 500 when `fail(headers)` says so. */
async function upstream(fail: (h: Record<string, unknown>) => boolean = () => false): Promise<string> {
  const up = await startUpstream((req, res) => {
    req.resume();
    res.writeHead(fail(req.headers) ? 500 : 200);
    res.end('ok');
  });
  cleanup.push(() => up.close());
  return up.url;
}

function fleetTop(r: TestRedis, replica: string, extra: Record<string, unknown> = {}) {
  return {
    fleet: { redis: r.url, name: 'checkout', replica, flush_ms: 100, grant_ttl_ms: 1000 },
    ...extra,
  };
}

async function replica(config: Record<string, unknown>): Promise<TestFaultline> {
  const fl = await startFaultline(config);
  cleanup.push(async () => {
    await fl.stop();
    await removeDir(fl.stateDir);
  });
  return fl;
}

const view = (fl: TestFaultline, id = 'e1'): Promise<Loose> => getJson(`${fl.admin}/experiments/${id}`);

function client(r: TestRedis): Redis {
  const c = new Redis(r.url, { maxRetriesPerRequest: 1 });
  cleanup.push(async () => {
    c.disconnect();
  });
  return c;
}

describe('fleet-wide limits (Redis)', () => {
  it('the listener error-rate guard judges the fleet: 3 replicas each under min_requests trip it together', async () => {
    const r = await redis();
    // Half of all traffic fails, in both arms alike (the guardrail has nothing to see).
    let n = 0;
    const up = await upstream(() => n++ % 2 === 0);
    const config = (name: string) => {
      const c = oneRoute(
        up,
        [
          exp({
            split: { percent: 5 },
            fault: { kind: 'abort', status: 503, percent: 1 },
            min_samples: 100_000,
            guardrails: [{ metric: 'error_rate' }],
          }),
        ],
        fleetTop(r, name),
      );
      // 90 requests in 10 s over 30 % errors: each replica alone sends 40.
      (c.listeners[0] as Loose).max_error_rate = { threshold: 0.3, window_s: 10, min_requests: 90 };
      return c;
    };
    const fls = [await replica(config('r0')), await replica(config('r1')), await replica(config('r2'))];
    await until('grants', async () =>
      (await Promise.all(fls.map((f) => view(f)))).every((v) => v.fleet.grant.fresh),
    );
    const agent = new Agent({ connections: 4 });
    cleanup.push(() => agent.close());
    for (const fl of fls)
      for (let i = 0; i < 40; i++) await (await request(`${fl.url()}/x`, { dispatcher: agent })).body.dump();
    await until('the fleet guard kills e1 everywhere', async () =>
      (await Promise.all(fls.map((f) => view(f)))).every((v) => v.state === 'killed'),
    );
    const rec = JSON.parse((await client(r).hget(STATE_KEY, 'e1')) as string) as Loose;
    expect(rec.cause).toBe('global_error_rate');
    expect(rec.by).toBe('guard:ingress');
    expect(rec.reason).toMatch(
      /fleet checkout: error rate \d+\.\d+% of (9\d|1[0-2]\d) requests from 3 replicas over 10s/,
    );
    // One decision (the evaluator's); the others adopted it.
    let trips = 0;
    for (const fl of fls) trips += metricSum(await scrape(fl.admin), 'faultline_kill_switch_trips_total');
    expect(trips).toBe(1);
  }, 30_000);

  it('max_active_faults is split over the live replicas: the fleet never holds more than the limit', async () => {
    const r = await redis();
    const up = await upstream();
    const config = (name: string) =>
      oneRoute(
        up,
        [
          exp({
            split: { percent: 50, allow_above_cap: true },
            fault: { kind: 'latency', ms: 1500, percent: 100 },
            max_active_faults: 4,
            guardrails: [{ metric: 'error_rate' }],
          }),
        ],
        fleetTop(r, name),
      );
    const fls = [await replica(config('r0')), await replica(config('r1')), await replica(config('r2'))];
    await until('3 live replicas with grants', async () =>
      (await Promise.all(fls.map((f) => view(f)))).every(
        (v) => v.fleet.grant.fresh && v.fleet.live_replicas === 3,
      ),
    );
    // Shares by replica name: 4 = 2 + 1 + 1.
    const shares = (await Promise.all(fls.map((f) => view(f)))).map((v) => v.fleet.max_active_faults);
    expect(shares).toEqual([
      { fleet: 4, this_replica: 2 },
      { fleet: 4, this_replica: 1 },
      { fleet: 4, this_replica: 1 },
    ]);
    const l = load(
      fls.map((f) => `${f.url()}/x`),
      12,
    );
    let peak = 0;
    const perReplicaPeak = [0, 0, 0];
    const end = Date.now() + 2500;
    while (Date.now() < end) {
      const active = fls.map((f) => f.fl.engine.get('e1')!.activeFaults);
      active.forEach((a, i) => (perReplicaPeak[i] = Math.max(perReplicaPeak[i]!, a)));
      peak = Math.max(
        peak,
        active.reduce((a, b) => a + b, 0),
      );
      await sleep(20);
    }
    await l.stop();
    expect(l.failures).toEqual([]);
    expect(peak).toBe(4);
    expect(perReplicaPeak).toEqual([2, 1, 1]);
    let overflow = 0;
    for (const fl of fls) overflow += metricSum(await scrape(fl.admin), 'faultline_faults_overflow_total');
    expect(overflow).toBeGreaterThan(0);
  }, 30_000);

  it('duration and max_duration count from the fleet start, not from a replica joining later', async () => {
    const r = await redis();
    const up = await upstream();
    const config = (name: string) =>
      oneRoute(
        up,
        [
          exp({ id: 'e1', duration: '3s', guardrails: [{ metric: 'error_rate' }] }),
          exp({
            id: 'e2',
            match: { listener: 'ingress', route: 'api', path_prefix: '/two' },
            guardrails: [{ metric: 'error_rate' }],
          }),
        ],
        fleetTop(r, name, { max_duration: '4s' }),
      );
    // Two replicas start at once (each records its own start; the fleet keeps the first), one later.
    const t0 = Date.now();
    const first = await Promise.all([replica(config('a')), replica(config('b'))]);
    await sleep(1500);
    const late = await replica(config('c'));
    const lateStart = Date.now();
    const fls = [...first, late];
    await until('one run start everywhere', async () => {
      const starts = new Set(fls.map((f) => f.fl.table.lifecycleOf('e1')!.startedAt));
      return starts.size === 1;
    });
    const fleetRun = Date.parse(fls[0]!.fl.table.lifecycleOf('e1')!.startedAt!);
    expect(fleetRun - t0).toBeLessThan(1500);
    for (const f of fls)
      expect(f.fl.table.lifecycleOf('e1')!.endsAt).toBe(new Date(fleetRun + 3000).toISOString());
    await until('e1 expired and e2 killed by max_duration on the late replica', async () => {
      const v1 = await view(late, 'e1');
      const v2 = await view(late, 'e2');
      return v1.state === 'expired' && v2.state === 'killed';
    });
    const e1End = Date.parse(late.fl.table.lifecycleOf('e1')!.endedAt!);
    const e2End = Date.parse(late.fl.table.lifecycleOf('e2')!.endedAt!);
    // Counted from the fleet: well before the late replica's own start + duration (or + max_duration).
    expect(e1End).toBeLessThan(lateStart + 3000 - 800);
    expect(e2End).toBeLessThan(lateStart + 4000 - 800);
    expect(e2End - t0).toBeGreaterThanOrEqual(3900);
    expect(late.fl.table.lifecycleOf('e2')!.by).toBe('guard:max_duration');
    const started = Number(await client(r).get('faultline:{checkout}:started'));
    expect(started).toBeLessThan(lateStart - 1000);
    expect((await view(late, 'e2')).fleet.fleet_started_at).toBe(new Date(started).toISOString());
  }, 30_000);
});

describe('sticky splits in a fleet', () => {
  it('one bad event per session fleet-wide, whichever replicas its requests reach', async () => {
    const r = await redis();
    // Users "bad-*" fail on every request; the others never do.
    const up = await upstream((h) => String(h['x-user']).startsWith('bad-'));
    const config = (name: string) =>
      oneRoute(
        up,
        [
          exp({
            split: { percent: 50, allow_above_cap: true, sticky: 'header:x-user' },
            fault: { kind: 'abort', status: 503, percent: 1 },
            min_samples: 100_000,
            guardrails: [{ metric: 'error_rate' }],
          }),
        ],
        fleetTop(r, name, { arm_header: true }),
      );
    const fls = [await replica(config('r0')), await replica(config('r1')), await replica(config('r2'))];
    await until('grants', async () =>
      (await Promise.all(fls.map((f) => view(f)))).every((v) => v.fleet.grant.fresh),
    );
    // 20 bad users and 20 good ones, 12 requests each, round robin over the replicas.
    const agent = new Agent({ connections: 8 });
    cleanup.push(() => agent.close());
    const groupOf = new Map<string, string>();
    const users = Array.from({ length: 40 }, (_, i) => (i < 20 ? `bad-${i}` : `good-${i}`));
    await Promise.all(
      users.map(async (u, ui) => {
        for (let k = 0; k < 12; k++) {
          const fl = fls[(ui + k) % 3]!;
          const res = await request(`${fl.url()}/x`, { dispatcher: agent, headers: { 'x-user': u } });
          await res.body.dump();
          const arm = res.headers['x-faultline-arm'];
          if (typeof arm === 'string') groupOf.set(u, /group=(\w+)/.exec(arm)![1]!);
        }
      }),
    );
    const badIn = (g: string) => users.filter((u) => u.startsWith('bad-') && groupOf.get(u) === g).length;
    expect(badIn('canary') + badIn('control')).toBeGreaterThan(5);
    // Each bad user's 12 failures reached all 3 replicas, yet enter the test once per user and arm.
    // Pooled counts and session bits arrive with each replica's flush, one replica at a time: wait for
    // every replica's last flush (all errors pooled), then the session count must be exact.
    const expectedErrors = 12 * (badIn('canary') + badIn('control')) - 12;
    const report = await until('pooled sessions', async () => {
      const rep = (await getJson(`${fls[0]!.admin}/experiments/e1/report`)) as Loose;
      const pooled = rep.fleet.pooled.canary.error + rep.fleet.pooled.control.error;
      return pooled >= expectedErrors ? rep : null;
    });
    expect(report.fleet.contributing_replicas).toBe(3);
    expect(report.guardrails[0].canary.counted).toBe(badIn('canary'));
    expect(report.guardrails[0].control.counted).toBe(badIn('control'));
    // The same count on every replica (each reads the fleet's bitmap counters).
    for (const fl of fls.slice(1)) {
      const rep = (await getJson(`${fl.admin}/experiments/e1/report`)) as Loose;
      expect(rep.guardrails[0].canary.counted).toBe(badIn('canary'));
      expect(rep.guardrails[0].control.counted).toBe(badIn('control'));
    }
  }, 30_000);
});
