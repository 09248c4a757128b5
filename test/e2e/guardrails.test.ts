/**
 * The ChAP loop end to end with real processes on loopback:
 * client -> Faultline ingress (split, inject: downstream) -> service A -> Faultline egress (trusted,
 * injects) -> dependency B. The ingress compares what callers see in canary and control.
 */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { startDependency, startService, type RunningServer } from '../../src/demo/services.js';
import { LoadGenerator } from '../../src/load/generator.js';
import { startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { runCli } from '../helpers/process.js';
import { bucketOf, fnv1a, stickyHash } from '../../src/split/hash.js';
import { closedPort, metricSum, scrape, startUpstream } from '../helpers/servers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

interface Report {
  arms: { canary: { requests: number; injected: number }; control: { requests: number } };
  state: string;
  verdict: string;
  verdict_reason: string;
  evidence: { guardrail?: { metric: string; eValue: number; threshold: number } } | null;
  guardrails: { metric: string; status: string }[];
  assigned: { canary: number; control: number };
  hops: Record<string, { canary: { requests: number; injected: number } }>;
  timeline: { type: string }[];
}

function chapConfig(opts: {
  ingressPort?: number;
  egressPort?: number;
  servicePort: number;
  depPort: number;
  experiment: Record<string, unknown>;
}) {
  return {
    listeners: [
      {
        name: 'ingress',
        port: opts.ingressPort ?? 0,
        routes: [{ name: 'checkout', upstream: `http://127.0.0.1:${opts.servicePort}`, timeout_ms: 1000 }],
      },
      {
        name: 'egress',
        port: opts.egressPort ?? 0,
        trust_assignment: true,
        routes: [{ name: 'auth', upstream: `http://127.0.0.1:${opts.depPort}`, timeout_ms: 10_000 }],
      },
    ],
    experiments: [
      {
        id: 'auth-slow',
        hypothesis: 'If auth is 3 s slow, checkout errors stay under +1pp.',
        match: { listener: 'ingress', route: 'checkout' },
        split: { percent: 25, allow_above_cap: true },
        inject: 'downstream',
        fault: { kind: 'latency', ms: 3000 },
        guardrails: [{ metric: 'error_rate', max_increase: 0.01, max_ratio: 1.5 }],
        min_samples: 20,
        confidence: 0.99,
        ...opts.experiment,
      },
    ],
  };
}

/** Starts B, then Faultline on fixed free ports, then A pointing at the egress. */
async function chap(
  experiment: Record<string, unknown>,
  service: { timeoutMs?: number; fallback?: boolean },
) {
  const dep = await startDependency(0);
  cleanup.push(() => dep.close());
  const servicePort = await closedPort();
  const fl: TestFaultline = await startFaultline(chapConfig({ servicePort, depPort: dep.port, experiment }));
  cleanup.push(() => fl.stop());
  const a: RunningServer = await startService({
    dependencyUrl: fl.url('egress'),
    port: servicePort,
    ...service,
  });
  cleanup.push(() => a.close());
  return fl;
}

function load(url: string, ratePerS: number, durationMs: number): LoadGenerator {
  const gen = new LoadGenerator({
    target: new URL(url),
    ratePerS,
    durationMs,
    concurrency: 512,
    method: 'GET',
    body: undefined,
    headers: {},
    experiment: undefined,
  });
  cleanup.push(() => gen.abort());
  return gen;
}

async function report(fl: TestFaultline, id = 'auth-slow'): Promise<Report> {
  return (await (await fetch(`${fl.admin}/experiments/${id}/report`)).json()) as Report;
}

/** A Faultline with one route to an upstream that answers 200 "ok"; both stop after the test. */
async function okFaultline(config: Record<string, unknown>): Promise<TestFaultline> {
  const up = await startUpstream((_req, res) => res.end('ok'));
  cleanup.push(() => up.close());
  const fl = await startFaultline({
    listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url }] }],
    ...config,
  });
  cleanup.push(() => fl.stop());
  return fl;
}

async function waitFor(pred: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('condition not reached');
}

describe('guardrails and the automatic kill switch', () => {
  it('variant 1: A has no timeout, B is 3 s slow: the ingress trips, the report says refuted, the egress stops', async () => {
    const fl = await chap({}, {});
    const events: string[] = [];
    const sse = http.get(`${fl.admin}/events`, (res) =>
      res.on('data', (d: Buffer) => events.push(d.toString())),
    );
    cleanup.push(async () => void sse.destroy());
    const gen = load(`${fl.url('ingress')}/checkout`, 150, 20_000);
    void gen.run();
    await waitFor(async () => (await report(fl)).state === 'killed', 18_000);
    const r = await report(fl);
    expect(r.verdict).toBe('refuted');
    expect(r.verdict_reason).toMatch(/error_rate: canary .* vs control/);
    expect(r.evidence?.guardrail?.metric).toBe('error_rate');
    expect(r.evidence?.guardrail?.eValue).toBeGreaterThanOrEqual(
      r.evidence?.guardrail?.threshold ?? Infinity,
    );
    expect(r.guardrails[0]?.status).toBe('breached');
    // No request is assigned after the decision, and the egress injects no more.
    const assignedAtKill = r.assigned;
    const injectedTotal = async () =>
      metricSum(await scrape(fl.admin), 'faultline_faults_injected_total', { experiment: 'auth-slow' });
    const injectedAtKill = await injectedTotal();
    expect(injectedAtKill).toBeGreaterThan(0);
    await new Promise((res) => setTimeout(res, 1500));
    const later = await report(fl);
    expect(later.assigned).toEqual(assignedAtKill);
    expect(await injectedTotal()).toBe(injectedAtKill);
    await gen.abort();
    const m = await scrape(fl.admin);
    expect(
      metricSum(m, 'faultline_kill_switch_trips_total', { experiment: 'auth-slow', reason: 'guardrail' }),
    ).toBe(1);
    expect(events.join('')).toMatch(/event: killed\ndata: .*"cause":"guardrail"/);
  }, 40_000);

  it('variant 3: a dry-run (A/A) experiment under the same load never trips and ends held', async () => {
    const fl = await chap({ dry_run: true, duration: '5s' }, {});
    const gen = load(`${fl.url('ingress')}/checkout`, 150, 5500);
    await gen.run();
    await waitFor(async () => (await report(fl)).state === 'expired', 3000);
    const r = await report(fl);
    expect(r.verdict).toBe('held');
    expect(r.hops['egress']?.canary.injected ?? 0).toBe(0);
    expect(r.assigned.canary).toBeGreaterThan(100);
    const m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_kill_switch_trips_total')).toBe(0);
  }, 30_000);

  it('variant 2 via `faultline experiment run`: A has a timeout and fallback, the run holds and exits 0', async () => {
    const dep = await startDependency(0);
    cleanup.push(() => dep.close());
    const [servicePort, ingressPort, egressPort, adminPort] = [
      await closedPort(),
      await closedPort(),
      await closedPort(),
      await closedPort(),
    ];
    const a = await startService({
      dependencyUrl: `http://127.0.0.1:${egressPort}`,
      port: servicePort,
      timeoutMs: 200,
      fallback: true,
    });
    cleanup.push(() => a.close());
    const dir = await mkdtemp(join(tmpdir(), 'fl-exp-run-'));
    const file = join(dir, 'faultline.yaml');
    await writeFile(
      file,
      stringify({
        state_dir: dir,
        admin: { address: '127.0.0.1', port: adminPort },
        ...chapConfig({ ingressPort, egressPort, servicePort, depPort: dep.port, experiment: {} }),
      }),
    );
    const run = runCli([
      'experiment',
      'run',
      '--config',
      file,
      '--experiment',
      'auth-slow',
      '--duration',
      '6s',
      '--load',
      `http://127.0.0.1:${ingressPort}/checkout,100`,
    ]);
    const code = await run.exited;
    expect(run.stdout()).toMatch(/# Experiment `auth-slow`: HELD/);
    expect(run.stdout()).toContain('If auth is 3 s slow');
    expect(code).toBe(0);
  }, 30_000);

  it('a global max_error_rate guard on a listener kills every experiment', async () => {
    let n = 0;
    const up = await startUpstream((_req, res) => {
      res.statusCode = n++ % 2 === 0 ? 500 : 200;
      res.end();
    });
    cleanup.push(() => up.close());
    const fl = await startFaultline({
      listeners: [
        {
          name: 'ingress',
          port: 0,
          max_error_rate: { threshold: 0.2, window_s: 10, min_requests: 40 },
          routes: [{ name: 'api', upstream: up.url }],
        },
      ],
      experiments: ['a', 'b'].map((id) => ({
        id,
        hypothesis: 'h',
        split: { percent: 1 },
        fault: { kind: 'abort', status: 503 },
        guardrails: [{ metric: 'error_rate' }],
      })),
    });
    cleanup.push(() => fl.stop());
    for (let i = 0; i < 60; i++) await fetch(fl.url()).then((r) => r.arrayBuffer());
    const list = (await (await fetch(`${fl.admin}/experiments`)).json()) as {
      experiments: { state: string; ended: { cause: string } }[];
    };
    expect(list.experiments.map((e) => e.state)).toEqual(['killed', 'killed']);
    expect(list.experiments[0]?.ended.cause).toBe('global_error_rate');
    const r = (await (await fetch(`${fl.admin}/experiments/a/report`)).json()) as Report;
    expect(r.verdict).toBe('refuted');
    expect(r.verdict_reason).toMatch(/global error-rate guard/);
  });

  it('a reload that changes max_error_rate is judged, and reported, with the new threshold', async () => {
    let n = 0;
    const up = await startUpstream((_req, res) => {
      res.statusCode = n++ % 2 === 0 ? 500 : 200;
      res.end();
    });
    cleanup.push(() => up.close());
    const listener = (threshold: number) => ({
      name: 'ingress',
      port: 0,
      max_error_rate: { threshold, window_s: 10, min_requests: 40 },
      routes: [{ name: 'api', upstream: up.url }],
    });
    const experiments = [
      { id: 'a', hypothesis: 'h', split: { percent: 1 }, fault: { kind: 'latency', ms: 1 } },
    ];
    const fl = await startFaultline({ listeners: [listener(0.9)], experiments }, { watch: false });
    cleanup.push(() => fl.stop());
    for (let i = 0; i < 50; i++) await fetch(fl.url()).then((r) => r.arrayBuffer());
    expect((await report(fl, 'a')).state).toBe('running');
    const cfg = parse(await readFile(fl.configFile, 'utf8')) as Record<string, unknown>;
    await writeFile(fl.configFile, stringify({ ...cfg, listeners: [listener(0.2)] }));
    expect((await fl.fl.reload()).status).toBe('ok');
    for (let i = 0; i < 50; i++) await fetch(fl.url()).then((r) => r.arrayBuffer());
    const r = await report(fl, 'a');
    expect(r.state).toBe('killed');
    expect(r.verdict_reason + JSON.stringify(r.timeline)).toMatch(/exceeds 20\.00%/);
  });

  it('a global max_duration kills every running experiment at once; the verdict judges the evidence so far', async () => {
    const up = await startUpstream((_req, res) => res.end('ok'));
    cleanup.push(() => up.close());
    const fl = await startFaultline({
      max_duration: '1500ms',
      listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url }] }],
      experiments: ['a', 'b'].map((id) => ({
        id,
        hypothesis: 'h',
        match: { path_prefix: `/${id}` },
        split: { percent: 1 },
        fault: { kind: 'latency', ms: 1 },
      })),
    });
    cleanup.push(() => fl.stop());
    await waitFor(async () => (await report(fl, 'b')).state === 'killed', 5000);
    const [a, b] = [await report(fl, 'a'), await report(fl, 'b')];
    for (const r of [a, b]) {
      expect(r.state).toBe('killed');
      expect(r.verdict).toBe('inconclusive');
    }
    const m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_kill_switch_trips_total', { reason: 'duration' })).toBe(2);
  });

  it('fault.percent faults part of the canary; with exclude_injected the rest of the canary is judged', async () => {
    const fl = await okFaultline({
      experiments: [
        {
          id: 'x',
          hypothesis: 'h',
          split: { percent: 40, allow_above_cap: true },
          fault: { kind: 'abort', status: 503, percent: 20 },
          guardrails: [{ metric: 'error_rate' }],
          min_samples: 50,
        },
      ],
    });
    for (let i = 0; i < 20; i++)
      await Promise.all(Array.from({ length: 50 }, () => fetch(fl.url()).then((r) => r.arrayBuffer())));
    const r = await report(fl, 'x');
    const canary = r.arms.canary;
    // About 20% of ~400 canary requests injected (a 99.9% interval), the others judged and healthy.
    expect(Math.abs(canary.injected - 0.2 * canary.requests)).toBeLessThan(
      3.29 * Math.sqrt(canary.requests * 0.16),
    );
    expect(canary.injected).toBeGreaterThan(0);
    expect(r.state).toBe('running');
    const g = r.guardrails.find((x) => x.metric === 'error_rate') as unknown as {
      status: string;
      canary: { samples: number };
    };
    expect(g.status).toBe('holding');
    expect(g.canary.samples).toBe(canary.requests - canary.injected);
  });

  it('sends kill events to a webhook, retrying a failing receiver', async () => {
    const got: unknown[] = [];
    let calls = 0;
    const hook = await startUpstream((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        calls++;
        if (calls === 1) {
          res.statusCode = 503;
          res.end();
          return;
        }
        got.push(JSON.parse(Buffer.concat(chunks).toString()));
        res.end('ok');
      });
    });
    cleanup.push(() => hook.close());
    const up = await startUpstream((_req, res) => res.end('ok'));
    cleanup.push(() => up.close());
    const fl = await startFaultline({
      webhook: { url: `${hook.url}/hook` },
      listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url }] }],
      experiments: [{ id: 'x', hypothesis: 'h', split: { percent: 1 }, fault: { kind: 'reset' } }],
    });
    cleanup.push(() => fl.stop());
    await fetch(`${fl.admin}/experiments/x/kill`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"reason":"drill"}',
    });
    // Stopping right after the kill (as `experiment run` does) still lets the retry go out.
    await fl.stop();
    expect(got.length).toBe(1);
    expect(calls).toBeGreaterThanOrEqual(2);
    expect(got[0]).toMatchObject({
      source: 'faultline',
      type: 'killed',
      experiment: 'x',
      reason: 'drill',
      cause: 'manual',
    });
  });

  it.each([
    [true, 'running'],
    [false, 'killed'],
  ])(
    'exclude_injected: %s -> an injected 200 ms delay at the observing hop leaves it %s',
    async (exclude, state) => {
      const fl = await okFaultline({
        experiments: [
          {
            id: 'x',
            hypothesis: 'h',
            split: { percent: 50, allow_above_cap: true },
            fault: { kind: 'latency', ms: 200 },
            guardrails: [{ metric: 'latency', quantile: 0.5 }, { metric: 'error_rate' }],
            min_samples: 20,
            exclude_injected: exclude,
          },
        ],
      });
      // Bounded batches: under a loaded CI host control latency is noisy too, so the killed case may
      // need more samples than a quiet run; the running case always gets the full 8 batches.
      const report = async () => (await (await fetch(`${fl.admin}/experiments/x/report`)).json()) as Report;
      let r = await report();
      for (let i = 0; i < (exclude ? 8 : 30) && (exclude || r.state === 'running'); i++) {
        await Promise.all(
          Array.from({ length: 100 }, () => fetch(fl.url()).then((res) => res.arrayBuffer())),
        );
        r = await report();
      }
      expect(r.state).toBe(state);
      if (!exclude) expect(r.verdict_reason).toMatch(/latency p50/);
    },
  );

  it('sticky experiments count one bad event per session, keyed by the request that failed', async () => {
    // A control user whose every request fails, interleaved with many healthy users.
    const seed = fnv1a('sticky-x\u0000');
    let bad = '';
    for (let i = 0; bad === ''; i++) {
      // 25%: canary takes buckets [0, 2500), control [2500, 5000).
      const b = bucketOf(stickyHash(seed, `u${i}`));
      if (b >= 2500 && b < 5000) bad = `u${i}`;
    }
    const up = await startUpstream((req, res) => {
      res.statusCode = req.headers['x-user-id'] === bad ? 500 : 200;
      res.end();
    });
    cleanup.push(() => up.close());
    const fl = await startFaultline({
      listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url }] }],
      experiments: [
        {
          id: 'sticky-x',
          hypothesis: 'h',
          split: { percent: 25, allow_above_cap: true, sticky: 'header:x-user-id' },
          fault: { kind: 'abort', status: 503 },
          dry_run: true,
          guardrails: [{ metric: 'error_rate' }],
          min_samples: 1,
        },
      ],
    });
    cleanup.push(() => fl.stop());
    const users = [
      ...Array.from({ length: 40 }, () => bad),
      ...Array.from({ length: 300 }, (_, i) => `ok-${i}`),
    ];
    users.sort(() => Math.random() - 0.5);
    await Promise.all(
      users.map((u) => fetch(fl.url(), { headers: { 'x-user-id': u } }).then((r) => r.arrayBuffer())),
    );
    const r = (await (await fetch(`${fl.admin}/experiments/sticky-x/report`)).json()) as {
      guardrails: { control: { bad: number; counted: number } }[];
    };
    expect(r.guardrails[0]?.control.bad).toBe(40);
    expect(r.guardrails[0]?.control.counted).toBe(1);
  });

  it('`faultline report` prints the markdown report', async () => {
    const fl = await okFaultline({
      experiments: [
        {
          id: 'x',
          hypothesis: 'Users never notice.',
          split: { percent: 5 },
          fault: { kind: 'abort', status: 503 },
        },
      ],
    });
    await fetch(`${fl.admin}/experiments/x/kill`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"reason":"by hand"}',
    });
    const p = runCli(['report', 'x', '--admin', fl.admin]);
    expect(await p.exited).toBe(0);
    expect(p.stdout()).toMatch(/# Experiment `x`: ABORTED/);
    expect(p.stdout()).toContain('**Hypothesis:** Users never notice.');
    expect(p.stdout()).toMatch(/\| error_rate \| insufficient_data/);
  });
});
