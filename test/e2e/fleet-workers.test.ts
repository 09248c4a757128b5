// Workers and fleet compose: 2 replicas of `faultline run` (dist/bin.js), each forking 2 workers, in
// one Redis fleet (a real redis-server) in front of one upstream. One fleet kill stops every worker of
// every replica; the fleet's pooled counts are the sum of what the clients saw; admin and
// `faultline fleet` show 2 replicas with 2 workers each.
import { afterEach, describe, expect, it } from 'vitest';
import { exp, oneRoute } from '../helpers/experiments.js';
import { until, type Loose } from '../helpers/fleet.js';
import { runCli } from '../helpers/process.js';
import { startRedis } from '../helpers/redis.js';
import { metricSum, parseMetrics, startUpstream } from '../helpers/servers.js';
import { get, runFaultline, workerOf, type RunningFaultline, type Sent } from '../helpers/workers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
});

async function upstream(): Promise<string> {
  const up = await startUpstream((req, res) => {
    req.resume();
    res.writeHead(200, { 'x-up-port': String(req.socket.remotePort) });
    res.end('ok');
  });
  cleanup.push(() => up.close());
  return up.url;
}

describe('workers: 2 per replica, 2 replicas in a Redis fleet (real processes)', () => {
  it('one fleet kill stops every worker of every replica; pooled counts = what clients saw', async () => {
    const r = await startRedis();
    cleanup.push(() => r.stop());
    const up = await upstream();
    const replica = async (name: string): Promise<RunningFaultline> => {
      const cfg = oneRoute(
        up,
        [
          exp({
            split: { percent: 25, allow_above_cap: true },
            fault: { kind: 'abort', status: 503, percent: 30 },
            exclude_injected: false,
            min_samples: 20,
            guardrails: [{ metric: 'error_rate' }],
          }),
        ],
        {
          workers: 2,
          // Simultaneous fresh connections must reach both workers: round robin splits them exactly (kernel
          // balance, the default, may give a handful to one worker; accept-burst and workers.test run it).
          workers_balance: 'round_robin',
          arm_header: true,
          fleet: { redis: r.url, name: 'checkout', replica: name, flush_ms: 100, grant_ttl_ms: 1000 },
        },
      );
      (cfg.listeners[0] as Loose).address = '127.0.0.1';
      return runFaultline(cfg, cleanup);
    };
    const fls = await Promise.all([replica('r0'), replica('r1')]);
    const ports = await Promise.all(fls.map((f) => f.port('ingress')));
    const view = (f: RunningFaultline) => f.json('/experiments/e1') as Promise<Loose>;
    await until('grants on both replicas', async () =>
      (await Promise.all(fls.map(view))).every((v) => v.fleet.grant.fresh && v.fleet.live_replicas === 2),
    );

    // 4 requests at a time per replica, each on its own connection, until the fleet kills; then 1.5 s more.
    const sent: { tag: string; s: Sent }[] = [];
    let killSeen = false;
    let until15 = Infinity;
    for (let round = 0; round < 2000 && Date.now() < until15; round++) {
      const batch = await Promise.all(
        fls.flatMap((_, i) => [0, 1, 2, 3].map(() => get(ports[i]!).then((s) => ({ tag: `r${i}`, s })))),
      );
      sent.push(...batch);
      if (!killSeen) {
        killSeen = (await Promise.all(fls.map(view))).every((v) => v.state === 'killed');
        if (killSeen) until15 = Date.now() + 1500;
      }
    }
    expect(killSeen).toBe(true);
    expect(sent.every((x) => x.s.status === 200 || x.s.status === 503)).toBe(true);

    // One decision fleet-wide: one trip counted over both replicas (the workers count none).
    const rec = JSON.parse((await fetchState(r.url)) as string) as Loose;
    expect(rec).toMatchObject({ state: 'killed', cause: 'guardrail' });
    const killAt = Date.parse(rec.at as string);
    let trips = 0;
    for (const f of fls)
      trips += metricSum(
        parseMetrics(await (await fetch(`${f.admin}/metrics`)).text()),
        'faultline_kill_switch_trips_total',
      );
    expect(trips).toBe(1);

    // Every worker of every replica had served the canary, and every request that started 500 ms after
    // the decision (pub/sub to the other replica, then IPC to its workers) carries no mark, in all four.
    const who = workerOf(sent);
    expect(new Set(sent.filter((x) => x.s.arm !== undefined).map(who))).toEqual(
      new Set(['r0/1', 'r0/2', 'r1/1', 'r1/2']),
    );
    const late = sent.filter((x) => x.s.start > killAt + 500);
    expect(late.length).toBeGreaterThan(60);
    expect(late.filter((x) => x.s.arm !== undefined || x.s.injected !== undefined)).toEqual([]);
    expect(late.every((x) => x.s.status === 200)).toBe(true);
    expect(new Set(late.map(who).filter((w) => w !== undefined))).toEqual(
      new Set(['r0/1', 'r0/2', 'r1/1', 'r1/2']),
    );
    const lastMarked = Math.max(...sent.filter((x) => x.s.arm !== undefined).map((x) => x.s.start));
    process.stdout.write(
      `fleet-workers e2e: last marked request started ${lastMarked - killAt} ms after the fleet kill; ` +
        `${late.length} requests after +500 ms, none marked\n`,
    );

    // Counts: each replica's arms are its two workers' sum, and the fleet's pooled arms (on both
    // replicas) are the sum over replicas: exactly the arm marks the clients saw, counted once.
    const marks = (tag: string | null, group: string) =>
      sent.filter((x) => (tag === null || x.tag === tag) && x.s.arm?.includes(`group=${group}`)).length;
    const views: Loose[] = await until('exact pooled counts on both replicas', async () => {
      const vs = await Promise.all(fls.map(view));
      const ok = vs.every(
        (v, i) =>
          v.arms.canary.requests === marks(`r${i}`, 'canary') &&
          v.arms.control.requests === marks(`r${i}`, 'control') &&
          v.fleet.pooled.canary.requests === marks(null, 'canary') &&
          v.fleet.pooled.control.requests === marks(null, 'control'),
      );
      return ok ? vs : null;
    });
    for (const [i, v] of views.entries()) {
      expect(v.workers).toHaveLength(2);
      const mine = sent.filter((x) => x.tag === `r${i}` && x.s.arm !== undefined);
      expect((v.workers as Loose[]).reduce((n, w) => n + w.canary + w.control, 0)).toBe(mine.length);
      expect(v.fleet.contributing_replicas).toBe(2);
      expect(v.arms.canary.injected).toBe(
        sent.filter((x) => x.tag === `r${i}` && x.s.injected !== undefined).length,
      );
    }

    // `faultline fleet` on either replica: both replicas, the pooled arms.
    const cli = runCli(['fleet', 'e1', '--json', '--admin', fls[1]!.admin]);
    expect(await cli.exited).toBe(0);
    const shown = JSON.parse(cli.stdout()) as Loose[];
    expect(shown[0].fleet.replicas.map((x: Loose) => x.replica).sort()).toEqual(['r0', 'r1']);
    expect(shown[0].fleet.pooled.canary.requests).toBe(marks(null, 'canary'));
  }, 60_000);
});

async function fetchState(url: string): Promise<string | null> {
  const { Redis } = await import('ioredis');
  const c = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    return await c.hget('faultline:{checkout}:state', 'e1');
  } finally {
    c.disconnect();
  }
}
