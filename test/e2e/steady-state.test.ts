/**
 * Steady-state probes against real servers: an http `before` probe that keeps the run from starting,
 * `traffic` stop conditions (error rate up, throughput down) killing with cause stop_condition, an
 * `after` probe timing a dependency's recovery, and a real Prometheus (Debian's package) scraping a
 * small exporter: a gauge raised above `max` kills; Prometheus stopped fails after error_limit errors.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { experimentReport, reportMarkdown } from '../../src/experiments/report.js';
import type { ExperimentEvent } from '../../src/experiments/table.js';
import { exp, oneRoute } from '../helpers/experiments.js';
import { startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { startExporter, startPrometheus } from '../helpers/prometheus-probe.js';
import { metricSum, scrape, startUpstream, type Upstream } from '../helpers/servers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

const dispatcher = new Agent({ connections: 32 });

async function faultline(cfg: Record<string, unknown>): Promise<TestFaultline> {
  const fl = await startFaultline(cfg);
  cleanup.push(() => fl.stop());
  return fl;
}

/** An upstream with a switchable health: /healthz answers `health`, other paths `status`. */
async function service(): Promise<Upstream & { health: number; status: number }> {
  const svc = { health: 200, status: 200 } as Upstream & { health: number; status: number };
  const up = await startUpstream((req, res) => {
    req.resume();
    const s = req.url === '/healthz' ? svc.health : svc.status;
    res.writeHead(s, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: s < 500 }));
  });
  cleanup.push(() => up.close());
  return Object.assign(svc, up);
}

function events(t: TestFaultline): ExperimentEvent[] {
  const seen: ExperimentEvent[] = [];
  t.fl.engine.on((e) => seen.push(e));
  return seen;
}

async function until<T>(what: string, fn: () => T | undefined | false, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Closed-loop load on `url` until `stop()`; counts answers. */
function drive(url: string, concurrency = 4) {
  let running = true;
  let answered = 0;
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) {
      try {
        const r = await request(url, { dispatcher });
        await r.body.dump();
        answered++;
      } catch {
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  });
  return {
    answered: () => answered,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

function report(t: TestFaultline, id = 'e1') {
  const rt = t.fl.table.get(id)!;
  return experimentReport(rt, t.fl.table.lifecycleOf(id));
}

describe('steady-state probes', () => {
  it('an http before-probe that fails keeps the run from starting; arm starts it once it holds', async () => {
    const up = await service();
    up.health = 503;
    const t = await faultline(
      oneRoute(up.url, [
        exp({
          steady_state: [
            {
              name: 'api-up',
              http: { url: `${up.url}/healthz`, expect_status: 200, timeout_ms: 500 },
              when: ['before'],
            },
          ],
        }),
      ]),
    );
    const rt = t.fl.table.get('e1')!;
    await until('blocked', () => rt.state === 'blocked');
    // No request takes part while it is blocked.
    for (let i = 0; i < 200; i++) await (await request(t.url() + '/x', { dispatcher })).body.dump();
    expect(rt.assigned[1]! + rt.assigned[2]!).toBe(0);
    const r = report(t);
    expect(r.verdict).toBe('not_started');
    expect(r.verdict_reason).toContain('probe api-up: status 503, expected 200');
    const ev = r.timeline.find((e) => e.type === 'not_started')!;
    expect(ev.reason).toContain('api-up');
    expect((ev.evidence as { probes: { probe: string; value: unknown }[] }).probes[0]).toMatchObject({
      probe: 'api-up',
      value: 503,
      ok: false,
    });
    expect(r.steady_state!.probes[0]!.before).toMatchObject({ ok: false, value: 503 });
    expect(reportMarkdown(r)).toContain('NOT_STARTED');
    // Admin JSON shows it too.
    const admin = (await (await fetch(`${t.admin}/experiments/e1`)).json()) as Record<string, unknown>;
    expect(admin.state).toBe('blocked');
    expect(JSON.stringify(admin.steady_state)).toContain('status 503');
    const metrics = await scrape(t.admin);
    expect(metricSum(metrics, 'faultline_probe_checks_total', { probe: 'api-up', result: 'breach' })).toBe(1);

    up.health = 200;
    const armed = await fetch(`${t.admin}/experiments/e1/arm`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(armed.status).toBe(200);
    await until('running', () => rt.state === 'running');
    expect(report(t).steady_state!.probes[0]!.before).toMatchObject({ ok: true, value: 200 });
  });

  it('a traffic error-rate stop condition kills with cause stop_condition; an after-probe times the recovery', async () => {
    const up = await service();
    const t = await faultline(
      oneRoute(up.url, [
        exp({
          fault: { kind: 'latency', ms: 1 },
          steady_state: [
            {
              name: 'route-errors',
              traffic: {
                listener: 'ingress',
                route: 'api',
                metric: 'error_rate',
                window: '1s',
                max: 0.05,
                min_requests: 20,
              },
              when: ['before', 'during'],
              every: '100ms',
            },
            {
              name: 'api-health',
              http: { url: `${up.url}/healthz`, json_path: 'ok', equals: true },
              when: ['after'],
              every: '100ms',
              recovery_window: '10s',
            },
          ],
        }),
      ]),
    );
    const seen = events(t);
    const load = drive(t.url() + '/work');
    cleanup.push(() => load.stop());
    const rt = t.fl.table.get('e1')!;
    // The before-check judges a full window of healthy traffic first.
    await until('running', () => rt.state === 'running', 5000);
    await new Promise((r) => setTimeout(r, 500));
    expect(rt.state).toBe('running');
    const broke = Date.now();
    up.status = 500;
    up.health = 500;
    const killed = await until('killed', () => seen.find((e) => e.type === 'killed'), 5000);
    const tookMs = Date.now() - broke;
    expect(killed.cause).toBe('stop_condition');
    expect(killed.by).toBe('probe:route-errors');
    expect(killed.reason).toMatch(/stop condition route-errors: error_rate 0\.\d+ > max 0\.05/);
    // One `every` plus enough of the 1 s window to cross 5% (slack for a loaded 2-core host).
    expect(tookMs).toBeLessThan(2500);
    // The dependency comes back 2 s after the kill.
    setTimeout(() => {
      up.status = 200;
      up.health = 200;
    }, 2000).unref();
    await t.fl.probes.settled('e1');
    const r = report(t);
    expect(r.verdict).toBe('stopped');
    const after = r.steady_state!.probes[1]!.after!;
    expect(after.status).toBe('recovered');
    expect(after.recovered_in_s).toBeGreaterThanOrEqual(1.9);
    // The recovery is seen at the first check after 2 s: well within the window on a loaded host too.
    expect(after.recovered_in_s).toBeLessThan(6);
    expect(r.verdict_reason).toMatch(/after: api-health recovered in \d+(\.\d)? s/);
    expect(seen.some((e) => e.type === 'steady_state' && /recovered in/.test(e.reason ?? ''))).toBe(true);
    expect(reportMarkdown(r)).toContain('## Steady state');
    await load.stop();
  });

  it('throughput below min kills; an after-probe that never recovers says so', async () => {
    const up = await service();
    const t = await faultline(
      oneRoute(up.url, [
        exp({
          fault: { kind: 'latency', ms: 1 },
          steady_state: [
            {
              name: 'traffic-flows',
              traffic: { listener: 'ingress', metric: 'throughput', window: '1s', min: 20 },
              when: ['during'],
              every: '100ms',
            },
            {
              name: 'health',
              http: { url: `${up.url}/healthz` },
              when: ['after'],
              every: '200ms',
              recovery_window: '1s',
            },
          ],
        }),
      ]),
    );
    const load = drive(t.url() + '/work', 2);
    const rt = t.fl.table.get('e1')!;
    await until('running', () => rt.state === 'running');
    await new Promise((r) => setTimeout(r, 1200));
    expect(rt.state).toBe('running');
    up.health = 503;
    await load.stop();
    await until('killed', () => rt.state === 'killed', 3000);
    await t.fl.probes.settled('e1');
    const r = report(t);
    expect(r.verdict).toBe('stopped');
    expect(r.ended?.reason).toMatch(/throughput \d+(\.\d+)? < min 20/);
    expect(r.steady_state!.probes[1]!.after).toMatchObject({ status: 'not_recovered' });
    expect(r.verdict_reason).toContain('health did not recover (status 503, expected 200');
  });
});

describe('prometheus probe (a real Prometheus)', () => {
  it('a gauge raised above max kills within one every plus one scrape; Prometheus down fails after error_limit, never passes', async () => {
    const exporter = await startExporter(1);
    cleanup.push(() => exporter.close());
    const scrapeMs = 250;
    const prom = await startPrometheus([exporter.target], scrapeMs);
    cleanup.push(() => prom.stop());
    const upAt = Date.now() + 10_000;
    while (!(await prom.targetsUp()) && Date.now() < upAt) await new Promise((r) => setTimeout(r, 100));
    const up = await service();
    const probe = (id: string, every: string) =>
      exp({
        id,
        fault: { kind: 'latency', ms: 1 },
        steady_state: [
          {
            name: 'gauge',
            prometheus: { url: prom.url, query: 'max(probe_test_gauge)', max: 5, timeout_ms: 300 },
            when: ['before', 'during'],
            every,
            error_limit: 3,
          },
        ],
      });
    const t = await faultline(oneRoute(up.url, [probe('e1', '200ms')]));
    const seen = events(t);
    const rt = t.fl.table.get('e1')!;
    await until('running', () => rt.state === 'running', 5000);
    expect(report(t).steady_state!.probes[0]!.before).toMatchObject({ ok: true, value: 1 });
    await new Promise((r) => setTimeout(r, 500));
    expect(rt.state).toBe('running');
    const raised = Date.now();
    exporter.set(10);
    const killed = await until('killed', () => seen.find((e) => e.type === 'killed'), 5000);
    const took = Date.now() - raised;
    expect(killed.cause).toBe('stop_condition');
    expect(killed.reason).toContain('stop condition gauge: 10 > max 5');
    // Within one `every` (200 ms) plus one scrape interval (250 ms), with slack for a loaded host.
    expect(took).toBeLessThan(200 + scrapeMs + 400);
    expect(report(t).verdict).toBe('stopped');

    // Prometheus stopped: every check is an error; after error_limit (3) in a row the run is killed.
    exporter.set(1);
    await new Promise((r) => setTimeout(r, 2 * scrapeMs + 100));
    seen.length = 0;
    const armed = await t.fl.table.arm('e1', 'test');
    expect(armed).toBe(true);
    await until('running again', () => rt.state === 'running', 5000);
    await prom.stop();
    const killed2 = await until('killed again', () => seen.find((e) => e.type === 'killed'), 5000);
    expect(killed2.cause).toBe('stop_condition');
    expect(killed2.reason).toMatch(/could not be evaluated 3 times in a row \(error_limit 3\)/);
    const d = report(t).steady_state!.probes[0]!.during;
    expect(d.errors).toBe(3);
    expect(d.consecutive_errors).toBe(3);
    expect(d.last).toMatchObject({ ok: false, error: true });
    const metrics = await scrape(t.admin);
    expect(metricSum(metrics, 'faultline_probe_checks_total', { probe: 'gauge', result: 'error' })).toBe(3);
    expect(metricSum(metrics, 'faultline_probe_ok', { probe: 'gauge' })).toBe(0);
  }, 30_000);
});
