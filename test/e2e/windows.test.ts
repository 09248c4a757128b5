/**
 * Allowed windows (issue 16) on an injected clock: outside them the config's start waits and an arm is
 * refused (409 outside_window), a window's opening starts the waiting run, its closing ends the run in
 * progress (expired, judged by its evidence), status shows inside/closes_at/next_open_at; a schedule
 * skips openings outside the windows and its runs end at the window's close.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { validateConfig } from '../../src/config/load.js';
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

describe('allowed windows', () => {
  it('runs only inside its windows: waits, refuses arms, starts at the opening, ends at the close', async () => {
    up = await startUpstream((req, res) => {
      req.resume();
      res.end('ok');
    });
    const dir = await mkdtemp(join(tmpdir(), 'fl-win-'));
    dirs.push(dir);
    const exp = (id: string, extra: object) => ({
      id,
      hypothesis: `${id} absorbs 1 ms`,
      match: { route: 'api', path_prefix: `/${id}` },
      split: { percent: 25, allow_above_cap: true },
      fault: { kind: 'latency', ms: 1 },
      guardrails: [{ metric: 'error_rate', max_increase: 0.05 }],
      min_samples: 20,
      ...extra,
    });
    const raw = {
      state_dir: dir,
      admin: { address: '127.0.0.1', port: 0 },
      drain_timeout_ms: 500,
      listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url }] }],
      experiments: [
        // 02:00-05:00 in Berlin (CET, UTC+1) is 01:00-04:00 UTC.
        exp('night', {
          windows: [{ days: 'mon-fri', from: '02:00', to: '05:00', timezone: 'Europe/Berlin' }],
        }),
        // Hourly schedule windows of 45 minutes, allowed only 10:00-10:20 UTC: one run a day, 20 min.
        exp('hourly', {
          schedule: { cron: '0 * * * *', for: '45m' },
          windows: [{ from: '10:00', to: '10:20' }],
        }),
      ],
    };
    const configFile = join(dir, 'config.yaml');
    await writeFile(configFile, stringify(raw));
    const clock = new FakeClock(Date.parse('2026-03-02T00:30:00Z')); // Monday, 01:30 in Berlin
    const fl = await Faultline.start({ configFile, config: validateConfig(raw, configFile), clock });
    const events: ExperimentEvent[] = [];
    fl.table.on('event', (e) => events.push(e));
    const admin = `http://127.0.0.1:${fl.adminPort}`;
    const view = async (id: string) =>
      (await (await fetch(`${admin}/experiments/${id}`)).json()) as ExperimentView;
    const arm = (id: string) =>
      fetch(`${admin}/experiments/${id}/arm`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"by":"ops"}',
      });
    const drive = async (path: string, n: number) => {
      const url = `http://127.0.0.1:${fl.port('ingress')}${path}`;
      for (let i = 0; i < n; i += 20)
        await Promise.all(Array.from({ length: 20 }, () => fetch(url).then((r) => r.arrayBuffer())));
    };
    try {
      expect(await view('night')).toMatchObject({
        state: 'scheduled',
        next_start_at: '2026-03-02T01:00:00.000Z',
        window: { inside: false, closes_at: null, next_open_at: '2026-03-02T01:00:00.000Z' },
      });
      const refused = await arm('night');
      expect(refused.status).toBe(409);
      const body = (await refused.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('outside_window');
      expect(body.error.message).toMatch(/next opens at 2026-03-02T01:00:00.000Z/);
      await drive('/night', 100);
      expect(fl.table.get('night')?.assigned[1] ?? 0).toBe(0); // nothing assigned while it waits

      await clock.advanceTo('2026-03-02T01:00:00Z');
      expect(await view('night')).toMatchObject({
        state: 'running',
        started_at: '2026-03-02T01:00:00.000Z',
        window: { inside: true, closes_at: '2026-03-02T04:00:00.000Z' },
      });
      await drive('/night', 300);
      expect((await view('night')).assigned.canary).toBeGreaterThan(0);

      // The window closes: the run ends (expired), judged by what it saw; it does not restart by itself.
      await clock.advanceTo('2026-03-02T04:00:00Z');
      const ended = await view('night');
      expect(ended).toMatchObject({
        state: 'expired',
        ended_at: '2026-03-02T04:00:00.000Z',
        window: { inside: false, next_open_at: '2026-03-03T01:00:00.000Z' },
      });
      expect(ended.ended?.reason).toMatch(/its allowed window closed \(mon-fri 02:00-05:00 Europe\/Berlin\)/);
      const run = fl.journal.runs('night')[0];
      expect([run?.verdict, run?.ended_at]).toEqual(['held', '2026-03-02T04:00:00.000Z']);
      expect((await arm('night')).status).toBe(409);

      // Inside the next window an operator may arm it again.
      await clock.advanceTo('2026-03-03T01:30:00Z');
      expect((await view('night')).state).toBe('expired');
      expect((await arm('night')).status).toBe(200);
      expect(await view('night')).toMatchObject({ state: 'running', window: { inside: true } });

      // The hourly schedule: 10:00 is inside the allowed hours, the run ends at 10:20 (not 10:45) and
      // the next allowed opening is the next day's 10:00 (11:00 ... 09:00 are outside).
      expect((await view('hourly')).next_start_at).toBe('2026-03-03T10:00:00.000Z');
      await clock.advanceTo('2026-03-03T10:00:00Z');
      expect(await view('hourly')).toMatchObject({ state: 'running', ends_at: '2026-03-03T10:20:00.000Z' });
      await clock.advanceTo('2026-03-03T10:20:00Z');
      expect(await view('hourly')).toMatchObject({
        state: 'scheduled',
        next_start_at: '2026-03-04T10:00:00.000Z',
      });
      expect(fl.journal.runs('hourly').map((r) => [r.started_at, r.ended_at])).toEqual([
        ['2026-03-02T10:00:00.000Z', '2026-03-02T10:20:00.000Z'],
        ['2026-03-03T10:00:00.000Z', '2026-03-03T10:20:00.000Z'],
      ]);
      // An opening outside the windows (11:00) starts nothing.
      await clock.advanceTo('2026-03-03T11:00:30Z');
      expect((await view('hourly')).state).toBe('scheduled');
      expect(fl.journal.runs('hourly')).toHaveLength(2);
    } finally {
      await fl.stop(200);
    }
  });

  it("a window's opening passes the steady-state gate: a failing before probe blocks the run", async () => {
    let healthy = false;
    const svc = await startUpstream((req, res) => {
      req.resume();
      res.statusCode = req.url === '/healthz' && !healthy ? 503 : 200;
      res.end('ok');
    });
    const dir = await mkdtemp(join(tmpdir(), 'fl-win-gate-'));
    dirs.push(dir);
    const raw = {
      state_dir: dir,
      admin: { address: '127.0.0.1', port: 0 },
      drain_timeout_ms: 500,
      listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: svc.url }] }],
      experiments: [
        {
          id: 'gated',
          hypothesis: 'h',
          split: { percent: 25, allow_above_cap: true },
          fault: { kind: 'latency', ms: 1 },
          windows: [{ from: '01:00', to: '02:00' }],
          steady_state: [
            {
              name: 'api-up',
              http: { url: `${svc.url}/healthz`, expect_status: 200, timeout_ms: 500 },
              when: ['before'],
            },
          ],
        },
      ],
    };
    const configFile = join(dir, 'config.yaml');
    await writeFile(configFile, stringify(raw));
    const clock = new FakeClock(Date.parse('2026-03-02T00:30:00Z'));
    const fl = await Faultline.start({ configFile, config: validateConfig(raw, configFile), clock });
    const state = () => fl.table.lifecycleOf('gated')?.state;
    const until = async (want: string) => {
      for (let i = 0; i < 100 && state() !== want; i++) await new Promise((r) => setTimeout(r, 20));
      return state();
    };
    try {
      expect(state()).toBe('scheduled');
      await clock.advanceTo('2026-03-02T01:00:00Z');
      expect(await until('blocked')).toBe('blocked');
      const url = `http://127.0.0.1:${fl.port('ingress')}/x`;
      for (let i = 0; i < 40; i++) await fetch(url).then((r) => r.arrayBuffer());
      expect(fl.table.get('gated')?.assigned[1] ?? 0).toBe(0); // nothing assigned: no permission
      // Blocked stays blocked (a refused start is not retried behind the operator's back); once the
      // service is healthy, an arm inside the window checks again and starts the run.
      healthy = true;
      await clock.advanceTo('2026-03-02T01:30:00Z');
      expect(state()).toBe('blocked');
      const res = await fetch(`http://127.0.0.1:${fl.adminPort}/experiments/gated/arm`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"by":"ops"}',
      });
      expect(res.status).toBeLessThan(300);
      expect(await until('running')).toBe('running');
    } finally {
      await fl.stop(200);
      await svc.close();
    }
  });

  it('rejects bad windows naming the field and the rule', () => {
    const base = {
      listeners: [{ name: 'l', port: 0, routes: [{ name: 'r', upstream: 'http://127.0.0.1:1' }] }],
    };
    const bad = (w: object) => () =>
      validateConfig(
        {
          ...base,
          experiments: [
            { id: 'x', hypothesis: 'h', split: { percent: 1 }, fault: { kind: 'reset' }, windows: [w] },
          ],
        },
        'cfg.yaml',
      );
    expect(bad({ from: '2:00', to: '05:00' })).toThrow(
      /experiments\[0\]\.windows\[0\]\.from: must be "HH:MM"/,
    );
    expect(bad({ from: '02:00', to: '02:00' })).toThrow(/windows\[0\]\.to: must differ from `from`/);
    expect(bad({ days: 'mon-funday', from: '02:00', to: '05:00' })).toThrow(/windows\[0\]\.days/);
    expect(bad({ from: '02:00', to: '05:00', timezone: 'Mars/Olympus' })).toThrow(
      /windows\[0\]\.timezone: unknown time zone/,
    );
  });
});
