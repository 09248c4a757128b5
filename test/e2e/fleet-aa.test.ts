// Fleet mode with real Faultline processes (dist/bin.js run) and a real redis-server: an A/A dry run
// over 3 replicas, and the CLI acting on the fleet from any replica. Needs `npm run build` first.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { getJson, load, sleep, until, type Loose } from '../helpers/fleet.js';
import { runCli, type Spawned } from '../helpers/process.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { startUpstream } from '../helpers/servers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
});

const STATE_KEY = 'faultline:{checkout}:state';

interface Proc {
  p: Spawned;
  url: string;
  admin: string;
}

/** One replica as its own process: its own state dir, ephemeral ports read from its logs. */
async function spawnReplica(r: TestRedis, name: string, experiments: unknown[], up: string): Promise<Proc> {
  const dir = await mkdtemp(join(tmpdir(), `fl-fleet-${name}-`));
  const file = join(dir, 'faultline.yaml');
  await writeFile(
    file,
    stringify({
      state_dir: dir,
      admin: { address: '127.0.0.1', port: 0 },
      arm_header: true,
      listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up }] }],
      fleet: { redis: r.url, name: 'checkout', replica: name, flush_ms: 100, grant_ttl_ms: 1000 },
      experiments,
    }),
  );
  const p = runCli(['run', '--config', file, '--no-watch']);
  cleanup.push(async () => {
    p.child.kill('SIGTERM');
    await Promise.race([p.exited, sleep(3000)]);
    p.child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });
  const listener = await p.waitForLog((l) => l['msg'] === 'listener started', 30_000);
  const started = await p.waitForLog((l) => l['msg'] === 'faultline started', 30_000);
  return {
    p,
    url: `http://127.0.0.1:${String(listener['port'])}`,
    admin: `http://${String(started['admin'])}`,
  };
}

async function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const p = runCli(args);
  const code = await p.exited;
  return { code, out: p.stdout(), err: p.stderr() };
}

async function setup(experiments: unknown[], failEvery = 0) {
  const r = await startRedis();
  cleanup.push(() => r.stop());
  let n = 0;
  const up = await startUpstream((req, res) => {
    req.resume();
    res.writeHead(failEvery > 0 && n++ % failEvery === 0 ? 500 : 200);
    res.end('ok');
  });
  cleanup.push(() => up.close());
  const names = ['r0', 'r1', 'r2'];
  const procs = await Promise.all(names.map((name) => spawnReplica(r, name, experiments, up.url)));
  const redis = new Redis(r.url, { maxRetriesPerRequest: 1 });
  cleanup.push(async () => void redis.disconnect());
  return { r, procs, redis };
}

const view = (p: Proc, id: string): Promise<Loose> => getJson(`${p.admin}/experiments/${id}`);

describe('fleet of processes', () => {
  it('A/A dry run over 3 replicas: no trip; pooled counts are the sum of the replicas', async () => {
    const { procs, redis } = await setup(
      [
        {
          id: 'aa',
          hypothesis: 'an A/A split judges nothing',
          match: { listener: 'ingress', route: 'api' },
          split: { percent: 50, allow_above_cap: true },
          fault: { kind: 'abort', status: 503, percent: 50 },
          dry_run: true,
          min_samples: 100,
        },
      ],
      // 5 % of all requests fail, in both arms alike.
      20,
    );
    await until('3 contributing replicas', async () =>
      (await Promise.all(procs.map((p) => view(p, 'aa')))).every((v) => v.fleet.live_replicas === 3),
    );
    const l = load(
      procs.map((p) => `${p.url}/x`),
      4,
    );
    // Enough traffic: 1000 assigned requests (or 25 s on a loaded host; at least min_samples per arm
    // is asserted below, so the guardrails could have tripped).
    const end = Date.now() + 25_000;
    while (Date.now() < end && l.hits.flat().length < 1000) await sleep(200);
    await l.stop();
    expect(l.failures).toEqual([]);
    // Dry run: nothing injected.
    expect(l.hits.flat().some((h) => h.injected)).toBe(false);
    await sleep(500);
    const views = await Promise.all(procs.map((p) => view(p, 'aa')));
    for (const v of views) expect(v.state).toBe('dry_run');
    const rec = JSON.parse((await redis.hget(STATE_KEY, 'aa')) as string) as Loose;
    expect(rec.state).toBe('running');
    let total = 0;
    for (const arm of ['canary', 'control'] as const) {
      const sum = views.reduce((s, v) => s + (v.arms[arm].requests as number), 0);
      const errors = views.reduce((s, v) => s + (v.arms[arm].error as number), 0);
      total += sum;
      for (const v of views) {
        expect(v.fleet.pooled[arm].requests).toBe(sum);
        expect(v.fleet.pooled[arm].error).toBe(errors);
      }
    }
    for (const arm of ['canary', 'control'] as const)
      expect(views[0].fleet.pooled[arm].requests).toBeGreaterThan(100);
    // The report says how many replicas contributed, and its evidence holds all of them.
    const report = (await getJson(`${procs[1]!.admin}/experiments/aa/report`)) as Loose;
    expect(report.fleet.contributing_replicas).toBe(3);
    expect(report.guardrails[0].canary.samples + report.guardrails[0].control.samples).toBe(total);
    for (const g of report.guardrails) expect(g.status).not.toBe('breached');
    console.log(`fleet A/A: ${total} assigned requests over 3 replicas, no trip`);
  }, 120_000);

  it('the CLI on any replica shows the fleet; kill on one stops all, arm on another re-arms all', async () => {
    const { procs, redis } = await setup([
      {
        id: 'inj',
        hypothesis: 'clients retry a 503',
        match: { listener: 'ingress', route: 'api' },
        split: { percent: 25, allow_above_cap: true },
        fault: { kind: 'abort', status: 503, percent: 50 },
        min_samples: 100_000,
        guardrails: [{ metric: 'error_rate' }],
      },
    ]);
    const [a, b, c] = procs as [Proc, Proc, Proc];
    await until('grants on every replica', async () =>
      (await Promise.all(procs.map((p) => view(p, 'inj')))).every(
        (v) => v.fleet.grant.fresh && v.fleet.live_replicas === 3,
      ),
    );
    const l = load(
      procs.map((p) => `${p.url}/x`),
      2,
    );
    await until('injection on every replica', async () => l.hits.every((h) => h.some((x) => x.injected)));
    await sleep(300);

    const shown = await cli(['fleet', '--admin', a.admin]);
    expect(shown.code).toBe(0);
    expect(shown.out).toMatch(
      /fleet checkout: answered by replica r0 \(connected\); evaluator lease: r[012]; live replicas: 3/,
    );
    expect(shown.out).toMatch(/inj {2}running {2}pooled canary \d+ .* from 3 replicas {2}grant fresh/);
    for (const name of ['r0', 'r1', 'r2']) expect(shown.out).toMatch(new RegExp(`^  ${name} +\\d{4}-`, 'm'));
    const asJson = await cli(['fleet', 'inj', '--json', '--admin', c.admin]);
    expect(JSON.parse(asJson.out)[0].fleet.replicas).toHaveLength(3);

    const killed = await cli(['kill', 'inj', '--reason', 'cli fleet test', '--admin', b.admin]);
    expect(killed.code).toBe(0);
    await until('killed on every replica', async () =>
      (await Promise.all(procs.map((p) => view(p, 'inj')))).every((v) => v.state === 'killed'),
    );
    const rec = JSON.parse((await redis.hget(STATE_KEY, 'inj')) as string) as Loose;
    expect(rec).toMatchObject({ state: 'killed', reason: 'cli fleet test' });
    const killAt = Date.parse(rec.at as string);
    await sleep(1200);
    // Every replica, not only B, stopped injecting within 1 s of the kill.
    for (const h of l.hits) {
      const last = Math.max(...h.filter((x) => x.injected).map((x) => x.t));
      expect(last - killAt).toBeLessThan(1000);
      expect(h.filter((x) => x.t > killAt + 1000).length).toBeGreaterThan(0);
    }

    const armed = await cli(['arm', 'inj', '--admin', c.admin]);
    expect(armed.code).toBe(0);
    const armAt = Date.now();
    await until('injection again on every replica', async () =>
      l.hits.every((h) => h.some((x) => x.injected && x.t > armAt)),
    );
    await l.stop();
    expect(l.failures).toEqual([]);
    for (const p of procs) expect((await view(p, 'inj')).state).toBe('running');
  }, 120_000);
});
