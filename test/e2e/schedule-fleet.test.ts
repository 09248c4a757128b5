/**
 * Schedules in fleet mode (issue 16): two Faultline replicas (in-process, own listeners, admin and state
 * dirs) share one real redis-server and one injected clock. Each schedule window is decided once for the
 * fleet (one claim key per window): both replicas run the same member as the same run (one pooled count
 * hash), although their configs list the members in different orders (a rolling deploy) and would pick
 * differently alone; a member that ran before runs again in a later window and its grant is renewed
 * (the fleet record of the new run replaced the old run's end).
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { validateConfig } from '../../src/config/load.js';
import type { FleetExperimentView } from '../../src/fleet/fleet.js';
import { Faultline } from '../../src/main.js';
import { FakeClock } from '../helpers/clock.js';
import { removeDir } from '../helpers/faultline.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { startUpstream, type Upstream } from '../helpers/servers.js';

const dirs: string[] = [];
let up: Upstream | undefined;
let redis: TestRedis | undefined;
afterAll(async () => {
  await up?.close();
  await redis?.stop();
  for (const d of dirs) await removeDir(d);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('schedules in a fleet', () => {
  it('one run per window for the whole fleet, not one per replica', async () => {
    up = await startUpstream((req, res) => {
      req.resume();
      res.end('ok');
    });
    redis = await startRedis();
    const exp = (id: string) => ({
      id,
      hypothesis: `${id} absorbs 1 ms`,
      match: { route: 'api' },
      split: { percent: 25, allow_above_cap: true },
      fault: { kind: 'latency', ms: 1 },
      guardrails: [{ metric: 'error_rate', max_increase: 0.05 }],
      min_samples: 20,
      schedule: 'every-minute',
    });
    const clock = new FakeClock(Date.parse('2026-03-02T09:59:50Z'));
    const replica = async (name: string, order: string[]) => {
      const dir = await mkdtemp(join(tmpdir(), `fl-schedfleet-${name}-`));
      dirs.push(dir);
      const raw = {
        state_dir: dir,
        admin: { address: '127.0.0.1', port: 0 },
        drain_timeout_ms: 500,
        listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up!.url }] }],
        schedules: [{ name: 'every-minute', cron: '* * * * *', for: '30s' }],
        experiments: order.map(exp),
        fleet: { redis: redis!.url, name: 'sched', replica: name, flush_ms: 100, grant_ttl_ms: 1000 },
      };
      const configFile = join(dir, 'config.yaml');
      await writeFile(configFile, stringify(raw));
      return Faultline.start({ configFile, config: validateConfig(raw, configFile), clock });
    };
    // Alone, r1 would start a first (config order) and r2 would start b.
    const fls = [await replica('r1', ['a', 'b']), await replica('r2', ['b', 'a'])];
    const r = new Redis(redis.url);
    const running = () =>
      fls.map((fl) =>
        [...fl.table.all()]
          .filter((rt) => rt.assigning)
          .map((rt) => rt.id)
          .join(','),
      );
    const drive = async () => {
      for (const fl of fls) {
        const url = `http://127.0.0.1:${fl.port('ingress')}/`;
        for (let i = 0; i < 3; i++)
          await Promise.all(Array.from({ length: 20 }, () => fetch(url).then((x) => x.arrayBuffer())));
      }
    };
    /** Waits (real time) until every replica holds a fresh grant for `id` and both contributed counts. */
    const pooled = async (id: string) => {
      const end = Date.now() + 8000;
      for (;;) {
        await drive();
        const views = fls.map((fl) => fl.fleetView(fl.table.get(id)!) as FleetExperimentView);
        if (views.every((v) => v.grant.fresh && v.contributing_replicas === 2)) return views;
        if (Date.now() > end) throw new Error(`no pooled run of ${id}: ${JSON.stringify(views)}`);
        await sleep(100);
      }
    };
    try {
      const picks: string[] = [];
      for (const at of ['10:00', '10:01', '10:02']) {
        await clock.advanceTo(`2026-03-02T${at}:00Z`, 150);
        const now = running();
        expect(now[0]).not.toBe('');
        expect(now[1]).toBe(now[0]); // the same member on both replicas
        picks.push(now[0] as string);
        const id = now[0] as string;
        // The same run (named by its window's opening) on both: one pooled count hash.
        for (const fl of fls) expect(fl.table.lifecycleOf(id)?.startedAt).toBe(`2026-03-02T${at}:00.000Z`);
        const views = await pooled(id);
        for (const v of views) expect(v.pooled.control.requests).toBeGreaterThan(0);
        await clock.advanceTo(`2026-03-02T${at}:45Z`, 150);
        expect(running()).toEqual(['', '']);
      }
      // Turns alternate fleet-wide, and the third window re-ran the first member with a fresh grant.
      expect(picks[1]).not.toBe(picks[0]);
      expect(picks[2]).toBe(picks[0]);
      const claims = (await r.keys('faultline:{sched}:window:every-minute:*')).sort();
      expect(claims).toHaveLength(3);
      expect(await Promise.all(claims.map((k) => r.get(k)))).toEqual(picks);
    } finally {
      r.disconnect();
      for (const fl of fls) await fl.stop(200);
    }
  });
});
