/**
 * A real Prometheus (Debian's `prometheus` package, installed by .ci/run) scrapes a real Faultline's admin
 * /metrics once a second while traffic flows; the test asks Prometheus' HTTP API for what an operator
 * would: per-arm request and error rates, latency quantiles, the e-value gauge, kill counters, and runs
 * every PromQL expression of deploy/grafana/faultline.json. `promtool check metrics` judges the exposition.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { closedPort, startUpstream, type Upstream } from '../helpers/servers.js';

let up: Upstream;
let fl: TestFaultline;
let prom: ChildProcess;
let promUrl: string;
let dir: string;
let stopTraffic = false;
let traffic: Promise<void>;
const dispatcher = new Agent({ connections: 16 });

interface PromResult {
  metric: Record<string, string>;
  value: [number, string];
}

async function query(expr: string): Promise<PromResult[]> {
  const r = await request(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await r.body.json()) as { status: string; data?: { result: PromResult[] }; error?: string };
  if (body.status !== 'success') throw new Error(`${expr}: ${body.error ?? r.statusCode}`);
  return body.data?.result ?? [];
}

const byGroup = (rs: PromResult[]) =>
  Object.fromEntries(rs.map((r) => [r.metric['group'], Number(r.value[1])]));

async function until(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function drive(url: string): Promise<void> {
  const worker = async () => {
    while (!stopTraffic) {
      try {
        await (await request(url, { dispatcher })).body.dump();
      } catch {
        // cut by the end of the test
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await Promise.all(Array.from({ length: 6 }, worker));
}

beforeAll(async () => {
  up = await startUpstream((req, res) => {
    req.resume();
    setTimeout(() => res.end('ok'), 1 + Math.random() * 4);
  });
  fl = await startFaultline({
    listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url, timeout_ms: 5000 }] }],
    experiments: [
      {
        id: 'pay-errors',
        hypothesis: 'checkout survives 20% payment errors',
        match: { listener: 'ingress', route: 'api' },
        split: { percent: 10, allow_above_cap: true },
        fault: { kind: 'abort', status: 503, percent: 20 },
        guardrails: [
          { metric: 'error_rate', max_increase: 0.5 },
          { metric: 'latency', quantile: 0.9 },
        ],
        min_samples: 20,
      },
    ],
  });
  traffic = drive(`${fl.url()}/pay`);
  dir = await mkdtemp(join(tmpdir(), 'faultline-prom-'));
  const port = await closedPort();
  promUrl = `http://127.0.0.1:${port}`;
  await writeFile(
    join(dir, 'prometheus.yml'),
    [
      'global:',
      '  scrape_interval: 1s',
      '  evaluation_interval: 1s',
      'scrape_configs:',
      '  - job_name: faultline',
      '    static_configs:',
      `      - targets: ['127.0.0.1:${fl.fl.adminPort}']`,
      '',
    ].join('\n'),
  );
  prom = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  prom.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  // Missing binary: the readiness wait fails with this message (the test fails, never skips).
  prom.on('error', (err) => (stderr += `cannot run prometheus: ${err.message} (apt-get install prometheus)`));
  await until(
    async () => (await request(`${promUrl}/-/ready`)).statusCode === 200,
    15_000,
    'prometheus ready',
  ).catch((err: Error) => {
    throw new Error(`${err.message}; stderr: ${stderr}`);
  });
}, 30_000);

afterAll(async () => {
  stopTraffic = true;
  await traffic;
  if (prom && prom.exitCode === null) {
    prom.kill('SIGTERM');
    await new Promise((r) => prom.once('exit', r));
  }
  await fl?.stop();
  await up?.close();
  if (fl) await removeDir(fl.stateDir);
  if (dir) await rm(dir, { recursive: true, force: true });
  await dispatcher.close();
});

describe('a real Prometheus scraping the admin /metrics', () => {
  it('promtool check metrics reports nothing on the exposition', async () => {
    const text = await (await request(`${fl.admin}/metrics`)).body.text();
    expect(text).toContain('faultline_guardrail_e_value{');
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(r.error).toBeUndefined();
    expect(`${r.stdout}${r.stderr}`).toBe('');
    expect(r.status).toBe(0);
    // README's metric table names every family Faultline defines.
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const families = [...text.matchAll(/^# HELP (faultline_\w+)/gm)]
      .map((m) => m[1] as string)
      .filter((n) => !/^faultline_(process|nodejs)_/.test(n));
    expect(families.length).toBeGreaterThan(15);
    expect(families.filter((n) => !readme.includes(`\`${n}\``))).toEqual([]);
  });

  it('per-arm request and error rates, latency quantiles, e-values, then the kill counter', async () => {
    const ratesBy = 'sum by (group) (rate(faultline_experiment_requests_total{experiment="pay-errors"}[5s]))';
    await until(async () => Object.keys(byGroup(await query(ratesBy))).length === 2, 20_000, 'both arms');
    // A few more scrapes so the 5 s windows are full.
    await new Promise((r) => setTimeout(r, 3000));
    const rates = byGroup(await query(ratesBy));
    expect(rates['canary']).toBeGreaterThan(1);
    expect(rates['control']).toBeGreaterThan(1);

    const errors = byGroup(
      await query(
        'sum by (group) (rate(faultline_experiment_requests_total{experiment="pay-errors",outcome="error"}[10s])) / sum by (group) (rate(faultline_experiment_requests_total{experiment="pay-errors"}[10s]))',
      ),
    );
    // 20% of canary requests get a 503; control gets none.
    expect(errors['canary']).toBeGreaterThan(0.05);
    expect(errors['canary']).toBeLessThan(0.5);
    expect(errors['control'] ?? 0).toBe(0);

    const p99 = byGroup(
      await query(
        'histogram_quantile(0.99, sum by (group, le) (rate(faultline_experiment_request_duration_seconds_bucket{experiment="pay-errors"}[10s])))',
      ),
    );
    for (const g of ['canary', 'control']) {
      expect(p99[g]).toBeGreaterThan(0);
      expect(p99[g]).toBeLessThan(1);
    }

    // The e-value gauge, set from the analyzer once a second, equals what the report says (the errors are
    // injected and excluded from judging, so the error-rate guardrail holds).
    const ev = await query('faultline_guardrail_e_value{experiment="pay-errors"}');
    const names = ev.map((r) => r.metric['guardrail']).sort();
    expect(names).toEqual(['error_rate', 'latency_p90']);
    for (const r of ev) expect(Number(r.value[1])).toBeGreaterThan(0);
    const thr = await query('faultline_guardrail_e_value_threshold{experiment="pay-errors"}');
    expect(thr).toHaveLength(2);
    // confidence 0.99 split over two guardrails: alpha 0.005 each
    for (const r of thr) expect(Number(r.value[1])).toBeCloseTo(200, 6);

    const killsQ = 'faultline_kill_switch_trips_total{experiment="pay-errors",reason="manual"}';
    expect(Number((await query(killsQ))[0]?.value[1])).toBe(0);
    const k = await request(`${fl.admin}/experiments/pay-errors/kill`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'prometheus test' }),
    });
    expect(k.statusCode).toBe(200);
    await k.body.dump();
    await until(async () => Number((await query(killsQ))[0]?.value[1]) === 1, 10_000, 'the kill counter');
    const state = await query('faultline_experiment_state{experiment="pay-errors"} == 1');
    expect(state.map((r) => r.metric['state'])).toEqual(['killed']);
  }, 40_000);

  it('every PromQL expression of deploy/grafana/faultline.json returns data', async () => {
    const dash = JSON.parse(
      await readFile(new URL('../../deploy/grafana/faultline.json', import.meta.url), 'utf8'),
    ) as {
      panels: { title: string; targets?: { expr: string }[] }[];
      annotations: { list: { name: string; expr?: string }[] };
      templating: { list: { name: string; definition?: string }[] };
    };
    const exprs: [string, string][] = [];
    for (const p of dash.panels) for (const t of p.targets ?? []) exprs.push([p.title, t.expr]);
    for (const a of dash.annotations.list) if (a.expr) exprs.push([`annotation ${a.name}`, a.expr]);
    expect(exprs.length).toBeGreaterThan(10);
    // Grafana's variables as Grafana would expand them on this run.
    const expand = (e: string) =>
      e.replaceAll('$experiment', 'pay-errors').replaceAll('$__rate_interval', '20s');
    const empty: string[] = [];
    for (const [title, expr] of exprs) {
      const rs = await query(expand(expr));
      if (rs.length === 0) empty.push(`${title}: ${expr}`);
    }
    expect(empty).toEqual([]);
    // The experiment variable's query lists the experiment.
    const r = await request(`${promUrl}/api/v1/label/experiment/values?match[]=faultline_experiment_state`);
    expect(((await r.body.json()) as { data: string[] }).data).toContain('pay-errors');
  }, 20_000);
});
