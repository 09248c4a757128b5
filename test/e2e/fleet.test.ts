// Fleet mode against a real redis-server: several real Faultline replicas (in-process, each with its
// own listeners, admin port and state dir) in front of one upstream.
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { exp, oneRoute } from '../helpers/experiments.js';
import { load as loadUrls, sleep, until, type Loose } from '../helpers/fleet.js';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { metricSum, scrape, startUpstream } from '../helpers/servers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
});

async function redis(): Promise<TestRedis> {
  const r = await startRedis();
  cleanup.push(() => r.stop());
  return r;
}

async function upstream(): Promise<string> {
  const up = await startUpstream((req, res) => {
    req.resume();
    res.writeHead(200);
    res.end('ok');
  });
  cleanup.push(() => up.close());
  return up.url;
}

interface FleetOpts {
  fault?: Record<string, unknown>;
  over?: Record<string, unknown>;
  grantTtl?: number;
}

function fleetConfig(up: string, r: TestRedis, replica: string, o: FleetOpts = {}) {
  return oneRoute(
    up,
    [
      exp({
        split: { percent: 25, allow_above_cap: true },
        fault: { kind: 'abort', status: 503, percent: 30, ...o.fault },
        exclude_injected: false,
        min_samples: 20,
        guardrails: [{ metric: 'error_rate' }],
        ...o.over,
      }),
    ],
    {
      fleet: { redis: r.url, name: 'checkout', replica, flush_ms: 100, grant_ttl_ms: o.grantTtl ?? 1000 },
    },
  );
}

async function replica(
  up: string,
  r: TestRedis,
  name: string,
  o: FleetOpts = {},
  stateDir?: string,
): Promise<TestFaultline> {
  const fl = await startFaultline(fleetConfig(up, r, name, o), stateDir ? { stateDir } : {});
  cleanup.push(async () => {
    await fl.stop();
    if (!stateDir) await removeDir(fl.stateDir);
  });
  return fl;
}

/** Keeps `concurrency` requests in flight to each replica until stop(); records every response. */
function load(replicas: TestFaultline[], concurrency = 3) {
  return loadUrls(
    replicas.map((fl) => `${fl.url()}/x`),
    concurrency,
  );
}

async function view(fl: TestFaultline): Promise<Record<string, Loose>> {
  const res = await fetch(`${fl.admin}/experiments/e1`);
  return (await res.json()) as Record<string, Loose>;
}

function client(r: TestRedis): Redis {
  const c = new Redis(r.url, { maxRetriesPerRequest: 1 });
  cleanup.push(async () => {
    c.disconnect();
  });
  return c;
}

const STATE_KEY = 'faultline:{checkout}:state';

describe('fleet mode (Redis)', () => {
  it('3 replicas trip once on pooled evidence; every replica stops injecting within 1 s; pooled = sum', async () => {
    const r = await redis();
    const up = await upstream();
    const fls = [await replica(up, r, 'r0'), await replica(up, r, 'r1'), await replica(up, r, 'r2')];
    await until('grants on every replica', async () =>
      (await Promise.all(fls.map(view))).every((v) => v.fleet.grant.fresh === true),
    );
    const l = load(fls);
    await until(
      'the kill on every replica',
      async () => (await Promise.all(fls.map(view))).every((v) => v.state === 'killed'),
      20_000,
    );
    await sleep(1200);
    await l.stop();
    expect(l.failures).toEqual([]);

    const rec = JSON.parse((await client(r).hget(STATE_KEY, 'e1')) as string) as Record<string, Loose>;
    expect(rec.state).toBe('killed');
    expect(rec.cause).toBe('guardrail');
    const killAt = Date.parse(rec.at as string);
    // One decision: one trip counted in the whole fleet, one killed event per replica.
    let trips = 0;
    for (const fl of fls) trips += metricSum(await scrape(fl.admin), 'faultline_kill_switch_trips_total');
    expect(trips).toBe(1);
    for (const fl of fls)
      expect(fl.fl.table.lifecycleOf('e1')!.timeline.filter((e) => e.type === 'killed')).toHaveLength(1);
    // Every replica injected before the decision, and none later than 1 s after it.
    const lags = l.hits.map((h) => {
      const injected = h.filter((x) => x.injected);
      expect(injected.length).toBeGreaterThan(0);
      return Math.max(...injected.map((x) => x.t)) - killAt;
    });
    for (const lag of lags) expect(lag).toBeLessThan(1000);
    // The evidence names the evaluator and the replicas that contributed.
    expect(rec.evidence.fleet.replicas).toBe(3);

    // Pooled arms = the sum of the replicas' own arms (after the last flush).
    await sleep(400);
    const views = await Promise.all(fls.map(view));
    for (const arm of ['canary', 'control'] as const) {
      const sum = views.reduce((n, v) => n + (v.arms[arm].requests as number), 0);
      expect(sum).toBeGreaterThan(0);
      for (const v of views) expect(v.fleet.pooled[arm].requests).toBe(sum);
    }
    expect(views[0]!.fleet.contributing_replicas).toBe(3);
    expect(views[0]!.fleet.replicas.map((x: Loose) => x.replica).sort()).toEqual(['r0', 'r1', 'r2']);
    expect(views.filter((v) => v.fleet.this_replica_evaluates)).toHaveLength(1);
    console.log(
      `kill propagation: last injected request per replica, ms after the decision: ${lags.join(', ')}`,
    );
  }, 40_000);

  it('Redis stopped mid-run: injection stops within the grant TTL, traffic flows; back: resumes; a kill stays', async () => {
    const r = await redis();
    const up = await upstream();
    // No trip in this test: injected errors are the fault (excluded), nothing else fails.
    const o: FleetOpts = { over: { exclude_injected: true }, fault: { percent: 100 } };
    const fls = [await replica(up, r, 'a', o), await replica(up, r, 'b', o)];
    await until('grants', async () => (await Promise.all(fls.map(view))).every((v) => v.fleet.grant.fresh));
    const l = load(fls, 2);
    await sleep(500);
    const down = Date.now();
    await r.kill();
    await sleep(2000);
    const ready = await fetch(`${fls[0]!.admin}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.text()).toMatch(/Redis unreachable.*injection paused/);
    const m = await scrape(fls[1]!.admin);
    expect(metricSum(m, 'faultline_fleet_connected')).toBe(0);
    expect(metricSum(m, 'faultline_fleet_grant', { experiment: 'e1' })).toBe(0);
    await r.restart();
    const back = Date.now();
    await until('injection again on both replicas', async () =>
      l.hits.every((h) => h.some((x) => x.injected && x.t > back)),
    );
    await l.stop();
    expect(l.failures).toEqual([]);
    for (const h of l.hits) {
      expect(h.some((x) => x.injected && x.t < down)).toBe(true);
      // grant TTL 1 s (+ one 50 ms gate check): nothing injected later while Redis was down
      const during = h.filter((x) => x.injected && x.t > down + 1100 && x.t < back);
      expect(during).toEqual([]);
      // traffic kept flowing, untouched
      expect(h.filter((x) => x.t > down + 1100 && x.t < back && x.status === 200).length).toBeGreaterThan(10);
    }

    // A kill on one replica reaches the other; Redis restarted again: still killed.
    const kill = await fetch(`${fls[1]!.admin}/experiments/e1/kill`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'test', by: 'tester' }),
    });
    expect(kill.status).toBe(200);
    await until('killed on a', async () => (await view(fls[0]!)).state === 'killed', 1000);
    await r.restart();
    await sleep(500);
    const rec = JSON.parse((await client(r).hget(STATE_KEY, 'e1')) as string) as {
      state: string;
      by: string;
    };
    expect(rec).toMatchObject({ state: 'killed', by: 'tester' });
    for (const fl of fls) expect((await view(fl)).state).toBe('killed');
  }, 40_000);

  it('Redis loses its data (FLUSHALL): running runs get grants again; a kill stays, a new empty replica ends killed', async () => {
    const r = await redis();
    const up = await upstream();
    const o: FleetOpts = { over: { exclude_injected: true }, fault: { percent: 100 } };
    const a = await replica(up, r, 'a', o);
    const b = await replica(up, r, 'b', o);
    const fresh = async (fls: TestFaultline[]) =>
      (await Promise.all(fls.map(view))).every((v) => v.fleet.grant.fresh === true);
    await until('grants', () => fresh([a, b]));
    const redisClient = client(r);

    // Running: the replicas write their records again, so the evaluator renews grants (TTL 1 s).
    await redisClient.flushall();
    await sleep(1500);
    expect(await fresh([a, b])).toBe(true);
    expect(JSON.parse((await redisClient.hget(STATE_KEY, 'e1')) as string)).toMatchObject({
      state: 'running',
    });

    // Killed, then flushed: a new pod (empty state dir) may start the run (Redis knows of no end), but
    // the replicas' end replaces a start nobody armed, and nobody adopts that start as an arm.
    const kill = await fetch(`${a.admin}/experiments/e1/kill`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'stop it', by: 'tester' }),
    });
    expect(kill.status).toBe(200);
    await until('killed on b', async () => (await view(b)).state === 'killed', 2000);
    // What such a replica writes, published as the merge script does: a later run nobody armed.
    const at = new Date(Date.now() + 1000).toISOString();
    const unarmed = { state: 'running', reason: '', by: '', at, startedAt: at };
    await redisClient.hset(STATE_KEY, 'e1', JSON.stringify(unarmed));
    await redisClient.publish('faultline:{checkout}:events', JSON.stringify({ id: 'e1', rec: unarmed }));
    await sleep(600);
    for (const fl of [a, b]) expect((await view(fl)).state).toBe('killed');
    expect(JSON.parse((await redisClient.hget(STATE_KEY, 'e1')) as string)).toMatchObject({
      state: 'killed',
    });
    await redisClient.flushall();
    const c = await replica(up, r, 'c', o);
    await until('c ends killed', async () => (await view(c)).state === 'killed', 5000);
    await sleep(1200);
    for (const fl of [a, b, c]) {
      expect((await view(fl)).state).toBe('killed');
      expect(fl.fl.engine.get('e1')!.injecting).toBe(false);
    }
    expect(JSON.parse((await redisClient.hget(STATE_KEY, 'e1')) as string)).toMatchObject({
      state: 'killed',
      by: 'tester',
    });
    const l = load([a, b, c], 2);
    await sleep(500);
    await l.stop();
    expect(l.failures).toEqual([]);
    for (const h of l.hits) {
      expect(h.length).toBeGreaterThan(5);
      expect(h.filter((x) => x.injected)).toEqual([]);
    }
  }, 40_000);

  it('a kill while Redis is down: 200 with a warning (it is on disk), and the fleet hears of it once Redis is back', async () => {
    const r = await redis();
    const up = await upstream();
    const a = await replica(up, r, 'a');
    const b = await replica(up, r, 'b');
    await until('grants', async () => (await view(a)).fleet.grant.fresh && (await view(b)).fleet.grant.fresh);
    await r.kill();
    const kill = await fetch(`${a.admin}/experiments/e1/kill`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'while cut off', by: 'tester' }),
    });
    const body = (await kill.json()) as Loose;
    expect(kill.status).toBe(200);
    expect(body.state).toBe('killed');
    expect(body.warning).toMatch(/Redis is unreachable from this replica/);
    expect((await view(b)).state).toBe('running');
    await r.restart();
    await until('b hears the kill', async () => (await view(b)).state === 'killed', 5000);
    // Arm while Redis is down: armed here (on disk, no grant so nothing injected), delivered later.
    await r.kill();
    const arm = await fetch(`${b.admin}/experiments/e1/arm`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    const armed = (await arm.json()) as Loose;
    expect(arm.status).toBe(200);
    expect(armed.warning).toMatch(/Redis is unreachable/);
    expect(b.fl.engine.get('e1')!.injecting).toBe(false);
    await r.restart();
    await until('a re-armed by b', async () => (await view(a)).state === 'running', 5000);
  }, 40_000);

  it('a replica (re)started after a fleet kill comes up killed; arm on any replica re-arms the fleet', async () => {
    const r = await redis();
    const up = await upstream();
    const a = await replica(up, r, 'a');
    await until('grant', async () => (await view(a)).fleet.grant.fresh);
    const kill = await fetch(`${a.admin}/experiments/e1/kill`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'stop it' }),
    });
    expect(kill.status).toBe(200);
    // A new pod: fresh state dir, only the fleet knows.
    const b = await replica(up, r, 'b');
    expect((await view(b)).state).toBe('killed');
    expect(b.fl.engine.get('e1')!.injecting).toBe(false);
    const arm = await fetch(`${b.admin}/experiments/e1/arm`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(arm.status).toBe(200);
    await until('a re-armed by b', async () => (await view(a)).state === 'running', 2000);
    await until(
      'grants again',
      async () => (await view(a)).fleet.grant.fresh && (await view(b)).fleet.grant.fresh,
    );
  }, 30_000);

  it('evaluator failover: the survivor holds the same evidence and decides on the pooled data', async () => {
    const r = await redis();
    const up = await upstream();
    // min_samples keeps phase 1 below any decision; phase 2 reaches it on one replica alone.
    const o: FleetOpts = { over: { min_samples: 300 } };
    const fls = [await replica(up, r, 'a', o), await replica(up, r, 'b', o)];
    await until('grants', async () => (await Promise.all(fls.map(view))).every((v) => v.fleet.grant.fresh));
    const l1 = load(fls, 2);
    await until('150 canary requests', async () => {
      const v = await view(fls[0]!);
      return v.fleet.pooled.canary.requests >= 150;
    });
    await l1.stop();
    await sleep(500);
    const reports = await Promise.all(
      fls.map(async (fl) => (await (await fetch(`${fl.admin}/experiments/e1/report`)).json()) as Loose),
    );
    // Same pooled data, same evidence on both replicas.
    // (equal up to float rounding: the replicas summed the same counts in different batches)
    expect(reports[0].guardrails[0].eValue / reports[1].guardrails[0].eValue).toBeCloseTo(1, 9);
    expect(reports[0].guardrails[0].canary.samples).toBe(reports[1].guardrails[0].canary.samples);
    const phase1Canary = reports[0].guardrails[0].canary.samples as number;
    const holderIdx = reports.findIndex((x) => x.fleet.this_replica_evaluates);
    expect(holderIdx).toBeGreaterThanOrEqual(0);
    const holder = fls[holderIdx]!;
    const survivor = fls[1 - holderIdx]!;
    // The evaluator crashes: its Redis connections drop without handing the lease over.
    (holder.fl.fleet as unknown as { redis: Redis; sub: Redis }).redis.disconnect();
    (holder.fl.fleet as unknown as { redis: Redis; sub: Redis }).sub.disconnect();
    await until(
      'the survivor takes the lease',
      async () => (await view(survivor)).fleet.this_replica_evaluates,
      5000,
    );
    const l2 = load([survivor], 3);
    await until('the kill', async () => (await view(survivor)).state === 'killed', 20_000);
    await l2.stop();
    const rec = JSON.parse((await client(r).hget(STATE_KEY, 'e1')) as string) as Record<string, Loose>;
    expect(rec.cause).toBe('guardrail');
    expect(rec.evidence.fleet.evaluator).toBe(survivor === fls[0] ? 'a' : 'b');
    // The decision counted the crashed replica's outcomes too.
    expect(rec.evidence.samples.canary).toBeGreaterThan(phase1Canary);
    expect(rec.evidence.fleet.replicas).toBe(2);
  }, 40_000);
});
