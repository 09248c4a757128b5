/**
 * Schedules (issue 16) on an injected clock, no real minutes: runs start when a window opens and end
 * when it closes, experiments sharing a schedule take turns, a refuted run pauses the schedule until
 * an operator arms it, and a restart keeps the schedule, the rotation and the journal.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { validateConfig } from '../../src/config/load.js';
import type { RunRecord } from '../../src/experiments/journal.js';
import type { ExperimentView } from '../../src/experiments/report.js';
import type { ExperimentEvent } from '../../src/experiments/table.js';
import { Faultline } from '../../src/main.js';
import { FakeClock } from '../helpers/clock.js';
import { removeDir } from '../helpers/faultline.js';
import { startUpstream, type Upstream } from '../helpers/servers.js';

const dirs: string[] = [];
let up: Upstream;
afterAll(async () => {
  await up?.close();
  for (const d of dirs) await removeDir(d);
});

describe('schedules', () => {
  it('windows start and end runs, rotation alternates, a refuted run pauses, restarts keep it all', async () => {
    let fragile = false;
    up = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(fragile && String(req.headers['baggage'] ?? '').includes('canary') ? 500 : 200);
      res.end('ok');
    });
    const dir = await mkdtemp(join(tmpdir(), 'fl-sched-'));
    dirs.push(dir);
    const exp = (id: string, schedule: unknown) => ({
      id,
      hypothesis: `${id} absorbs 1 ms`,
      match: { route: 'api' },
      split: { percent: 25, allow_above_cap: true },
      fault: { kind: 'latency', ms: 1 },
      guardrails: [{ metric: 'error_rate', max_increase: 0.05 }],
      min_samples: 20,
      schedule,
    });
    const raw = {
      state_dir: dir,
      admin: { address: '127.0.0.1', port: 0 },
      drain_timeout_ms: 500,
      listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url }] }],
      schedules: [{ name: 'every-minute', cron: '* * * * *', for: '30s' }],
      experiments: [
        exp('a', 'every-minute'),
        exp('b', 'every-minute'),
        {
          ...exp('c', { cron: '0 10 * * 1-5', for: '30m', timezone: 'Europe/Berlin' }),
          match: { route: 'api', path_prefix: '/c' },
        },
      ],
    };
    const configFile = join(dir, 'config.yaml');
    await writeFile(configFile, stringify(raw));
    const clock = new FakeClock(Date.parse('2026-03-02T09:59:50Z')); // a Monday
    const start = () => Faultline.start({ configFile, config: validateConfig(raw, configFile), clock });
    let fl = await start();
    const events: ExperimentEvent[] = [];
    fl.table.on('event', (e) => events.push(e));
    const admin = () => `http://127.0.0.1:${fl.adminPort}`;
    const view = async (id: string) =>
      (await (await fetch(`${admin()}/experiments/${id}`)).json()) as ExperimentView;
    const drive = async (n: number) => {
      const url = `http://127.0.0.1:${fl.port('ingress')}/`;
      for (let i = 0; i < n; i += 20)
        await Promise.all(Array.from({ length: 20 }, () => fetch(url).then((r) => r.arrayBuffer())));
    };
    try {
      expect(await view('a')).toMatchObject({
        state: 'scheduled',
        next_start_at: '2026-03-02T10:00:00.000Z',
      });
      // 10:00 in Berlin (CET) is 09:00 UTC; on Monday 09:59:50 UTC that window has passed: Tuesday.
      expect(await view('c')).toMatchObject({
        state: 'scheduled',
        next_start_at: '2026-03-03T09:00:00.000Z',
      });

      await clock.advanceTo('2026-03-02T10:00:00Z');
      expect(await view('a')).toMatchObject({ state: 'running', ends_at: '2026-03-02T10:00:30.000Z' });
      expect((await view('b')).state).toBe('scheduled');
      await drive(300);
      await clock.advanceTo('2026-03-02T10:00:45Z');
      expect(await view('a')).toMatchObject({
        state: 'scheduled',
        next_start_at: '2026-03-02T10:01:00.000Z',
      });

      // The next window is b's turn; the service has regressed, so b is refuted and the schedule pauses.
      await clock.advanceTo('2026-03-02T10:01:00Z');
      expect((await view('b')).state).toBe('running');
      fragile = true;
      for (let i = 0; i < 40 && fl.table.get('b')?.state === 'running'; i++) await drive(60);
      expect((await view('b')).state).toBe('killed');
      await new Promise((r) => setTimeout(r, 20));
      expect(await view('a')).toMatchObject({ state: 'scheduled', next_start_at: null });
      const paused = events.find((e) => e.type === 'schedule_paused' && e.experiment === 'a');
      expect(paused?.reason).toMatch(/schedule every-minute paused: b was killed \(guardrail/);
      await clock.advanceTo('2026-03-02T10:03:00Z');
      expect((await view('a')).state).toBe('scheduled'); // no run while paused
      expect(fl.journal.runs().map((r) => [r.experiment, r.verdict])).toEqual([
        ['a', 'held'],
        ['b', 'refuted'],
      ]);
      const first = fl.journal.runs('a')[0] as RunRecord;
      expect([first.started_at, first.ended_at, first.started_by]).toEqual([
        '2026-03-02T10:00:00.000Z',
        '2026-03-02T10:00:30.000Z',
        'schedule:every-minute',
      ]);

      // The operator fixed it and arms b: the schedule resumes at the next window.
      fragile = false;
      const armed = await fetch(`${admin()}/experiments/b/arm`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"by":"ops"}',
      });
      expect(armed.status).toBe(200);
      await new Promise((r) => setTimeout(r, 20));
      expect(await view('b')).toMatchObject({
        state: 'scheduled',
        next_start_at: '2026-03-02T10:04:00.000Z',
      });

      // A restart keeps the schedule, the rotation (b ran last, so a is next) and the journal.
      await fl.stop(200);
      fl = await start();
      expect(await view('b')).toMatchObject({
        state: 'scheduled',
        next_start_at: '2026-03-02T10:04:00.000Z',
      });
      expect(fl.journal.runs()).toHaveLength(2);
      await clock.advanceTo('2026-03-02T10:04:00Z');
      expect((await view('a')).state).toBe('running');
      expect((await view('b')).state).toBe('scheduled');
      const verdict = (await (await fetch(`${admin()}/experiments/b/verdict`)).json()) as { verdict: string };
      expect(verdict.verdict).toBe('refuted'); // between runs: the last finished run's verdict
    } finally {
      await fl.stop(200);
    }
  });
});
