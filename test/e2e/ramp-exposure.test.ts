/**
 * The ramp's remaining parts (issue 15), with real servers:
 * - exposure ramp: split.percent [1, 2, 5] on a resilient service reaches 5% and holds; each step's
 *   measured arm shares match its percent within binomial bounds (4 sd, from the step's own count);
 *   a list above the cap is refused at config load;
 * - bisection: an abort ramp [5, 10, 90] % at the egress, relayed by the service as its own 503s,
 *   breaks at 90; `bisect: 2` runs two more steps at the alpha slice the split counted (alpha / 5)
 *   and names a limit four times narrower than the ramp's own gap;
 * - a `traffic` probe on an in-process inbound point sees all of the point's requests (ones outside
 *   the experiment included): raising their error rate kills with cause stop_condition.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { experimentReport } from '../../src/experiments/report.js';
import { createFaultline } from '../../src/inprocess/index.js';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { startUpstream } from '../helpers/servers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

const dispatcher = new Agent({ connections: 32 });

function drive(url: string, concurrency: number) {
  let running = true;
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) {
      try {
        await (await request(url, { dispatcher })).body.dump();
      } catch {
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  });
  const stop = async () => {
    running = false;
    await Promise.all(loops);
  };
  cleanup.push(stop);
  return stop;
}

async function until(what: string, fn: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('exposure ramp', () => {
  it('[1, 2, 5] % on a resilient service: reaches 5% and holds; arm shares per step match', async () => {
    const up = await startUpstream((req, res) => {
      req.resume();
      res.end('ok');
    });
    cleanup.push(() => up.close());
    const t = await startFaultline({
      listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url }] }],
      experiments: [
        {
          id: 'widen',
          hypothesis: 'the service absorbs 1 ms of latency at any exposure up to 5%',
          split: { percent: [1, 2, 5] },
          fault: { kind: 'latency', ms: 1 },
          guardrails: [{ metric: 'error_rate', max_increase: 0.2, max_ratio: 2 }],
          min_samples: 20,
          ramp: { min_canary_per_step: 20 },
        },
      ],
    });
    cleanup.push(() => t.stop());
    const rt = t.fl.table.get('widen')!;
    expect(rt.splitPercent).toBe(1);
    const stop = drive(`${t.url('ingress')}/x`, 24);
    await until('every step held', () => rt.ramp!.held_up_to === 5, 45_000);
    await stop();
    const r = experimentReport(rt, t.fl.table.lifecycleOf('widen'));
    const ramp = r.ramp!;
    expect(ramp.kind).toBe('exposure');
    expect(ramp.steps.map((s) => [s.magnitude, s.status])).toEqual([
      [1, 'held'],
      [2, 'held'],
      [5, 'held'],
    ]);
    expect(rt.state).toBe('running');
    expect(r.split.percent).toBe(5);
    expect(ramp.summary).toContain('held up to 5 % exposure');
    expect(ramp.summary).toContain('every step held');
    for (const s of ramp.steps) {
      expect(s.canary).toBeGreaterThanOrEqual(20);
      const n = s.assigned.canary + s.assigned.control + s.assigned.none;
      const p = s.magnitude / 100;
      const sd = Math.sqrt(n * p * (1 - p));
      // Both arms take `percent` each, drawn independently per request: within 4 binomial sd.
      expect(
        Math.abs(s.assigned.canary - n * p),
        `canary at ${s.magnitude}%: ${s.assigned.canary}/${n}`,
      ).toBeLessThanOrEqual(4 * sd);
      expect(
        Math.abs(s.assigned.control - n * p),
        `control at ${s.magnitude}%: ${s.assigned.control}/${n}`,
      ).toBeLessThanOrEqual(4 * sd);
    }
  }, 60_000);

  it('never above the cap: a step over 5% is refused unless allow_above_cap; steps must increase', () => {
    const cfg = (percent: unknown, extra: Record<string, unknown> = {}) => ({
      listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: 'http://127.0.0.1:9' }] }],
      experiments: [
        { id: 'w', hypothesis: 'h', split: { percent, ...extra }, fault: { kind: 'latency', ms: 1 } },
      ],
    });
    const err = (c: unknown) => {
      try {
        validateConfig(c, 'test.yaml');
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as Error).message;
      }
      return '';
    };
    expect(err(cfg([1, 2, 10]))).toMatch(/experiments\[0\]\.split\.percent\[2\]: must be at most 5/);
    expect(err(cfg([1, 2, 10], { allow_above_cap: true }))).toBe('');
    expect(err(cfg([2, 1]))).toMatch(/split\.percent\[1\]: exposure steps must increase/);
  });
});

describe('bisection', () => {
  it('abort ramp [5, 10, 90] %, bisect 2: the limit is refined between 10 and 90 by two more steps', async () => {
    const dep = await startUpstream((req, res) => {
      req.resume();
      res.end('dep');
    });
    cleanup.push(() => dep.close());
    let t: TestFaultline | null = null;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    // The service relays its dependency's failures (no fallback): an injected abort is its 503.
    const svc = await startUpstream((req, res) => {
      req.resume();
      const headers: Record<string, string> = {};
      if (req.headers.baggage) headers.baggage = String(req.headers.baggage);
      const call = http.get(`${t!.url('egress')}/dep`, { agent, headers }, (r) => {
        r.resume();
        r.on('end', () => {
          res.writeHead(r.statusCode === 200 ? 200 : 503);
          res.end();
        });
      });
      call.on('error', () => {
        res.writeHead(503);
        res.end();
      });
    });
    cleanup.push(async () => {
      agent.destroy();
      await svc.close();
    });
    t = await startFaultline({
      listeners: [
        { name: 'ingress', port: 0, routes: [{ name: 'svc', upstream: svc.url }] },
        { name: 'egress', port: 0, trust_assignment: true, routes: [{ name: 'dep', upstream: dep.url }] },
      ],
      experiments: [
        {
          id: 'bisect',
          hypothesis: 'the service tolerates some failing dependency calls',
          match: { listener: 'ingress' },
          split: { percent: 50, allow_above_cap: true },
          inject: 'downstream',
          inject_at: ['egress'],
          fault: { kind: 'abort', status: 503, percent: 5 },
          guardrails: [{ metric: 'error_rate', max_increase: 0.15, max_ratio: 2 }],
          min_samples: 20,
          duration: '60s',
          ramp: { steps: [5, 10, 90], min_canary_per_step: 150, bisect: 2 },
        },
      ],
    });
    cleanup.push(() => t!.stop());
    const rt = t.fl.table.get('bisect')!;
    const stop = drive(`${t.url('ingress')}/x`, 16);
    await until('killed', () => rt.state === 'killed', 50_000);
    await stop();
    const r = experimentReport(rt, t.fl.table.lifecycleOf('bisect'));
    const ramp = r.ramp!;
    const statuses = ramp.steps.map((s) => [s.magnitude, s.status, s.bisect]);
    expect(statuses.slice(0, 4)).toEqual([
      [5, 'held', false],
      [10, 'held', false],
      [90, 'broke', false],
      // First midpoint of [10, 90]: 50% of calls failing is far past +15 pp.
      [50, 'broke', true],
    ]);
    expect(ramp.steps.length).toBe(5);
    const last = ramp.steps[4]!;
    expect(last.bisect).toBe(true);
    expect(last.magnitude).toBe(30);
    // Whichever way the second midpoint went, the limit is now 20 wide (80 / 2^2) and consistent.
    if (last.status === 'held') expect([ramp.held_up_to, ramp.broke_at]).toEqual([30, 50]);
    else {
      expect(last.status).toBe('broke');
      expect([ramp.held_up_to, ramp.broke_at]).toEqual([10, 30]);
    }
    expect(ramp.bisected).toBe(2);
    // The alpha split counted the bisection steps: 3 planned + 2 bisection slices.
    for (const s of ramp.steps) expect(s.alpha).toBeCloseTo(0.01 / 5, 12);
    expect(r.verdict).toBe('refuted');
    expect(r.ended?.cause).toBe('guardrail');
    expect(ramp.summary).toContain(`held up to ${ramp.held_up_to} %`);
    expect(ramp.summary).toContain(`broke at ${ramp.broke_at} %`);
    expect(ramp.summary).toContain('limit refined by 2 bisection step(s)');
    expect(r.timeline.filter((e) => e.type === 'ramp_step' && /bisection/.test(e.reason ?? '')).length).toBe(
      2,
    );
  }, 60_000);
});

describe('traffic probe on an in-process point', () => {
  it("sees all of the point's requests: their error rate above max kills with stop_condition", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'fl-point-traffic-'));
    const fl = await createFaultline({
      config: {
        state_dir: stateDir,
        points: [{ name: 'checkout', role: 'inbound' }],
        experiments: [
          {
            id: 'guarded',
            hypothesis: 'checkout absorbs 1 ms',
            // Only /exp takes part: /other is outside the experiment, yet the probe counts it.
            match: { listener: 'checkout', path_prefix: '/exp' },
            split: { percent: 5 },
            fault: { kind: 'latency', ms: 1 },
            guardrails: [{ metric: 'error_rate' }],
            steady_state: [
              {
                name: 'checkout-errors',
                traffic: {
                  point: 'checkout',
                  metric: 'error_rate',
                  window: '1s',
                  max: 0.2,
                  min_requests: 20,
                },
                when: ['during'],
                every: '200ms',
                error_limit: 1,
              },
            ],
          },
        ],
      },
    });
    cleanup.push(async () => {
      await fl.close();
      await removeDir(stateDir);
    });
    let failing = false;
    const server = http.createServer(
      fl.inbound('checkout', (req: IncomingMessage, res: ServerResponse) => {
        res.writeHead(failing && req.url?.startsWith('/other') ? 500 : 200);
        res.end('x');
      }),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(
      () =>
        new Promise<void>((r) => {
          server.close(() => r());
          server.closeAllConnections();
        }),
    );
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const rt = fl.faultline.table.get('guarded')!;
    const stopExp = drive(`${base}/exp`, 4);
    const stopOther = drive(`${base}/other`, 4);
    // Healthy for a while: checks pass (and count requests outside the experiment).
    await until('a few checks', () => (rt.steadyState!.probes[0]!.during.checks ?? 0) >= 5, 10_000);
    expect(rt.state).toBe('running');
    const healthy = rt.steadyState!.probes[0]!.during.last!;
    expect(healthy.ok).toBe(true);
    expect(healthy.detail).toMatch(/on point checkout/);
    const failedAt = Date.now();
    failing = true;
    await until('stop condition', () => rt.state === 'killed', 10_000);
    const tookMs = Date.now() - failedAt;
    await stopExp();
    await stopOther();
    const life = fl.faultline.table.lifecycleOf('guarded')!;
    expect(life.cause).toBe('stop_condition');
    expect(life.reason).toMatch(/stop condition checkout-errors: error_rate .* on point checkout/);
    // About half the point's requests fail (/other only): over max within a window plus a check.
    expect(tookMs).toBeLessThan(1000 + 200 + 2000);
  }, 30_000);
});
