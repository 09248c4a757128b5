/**
 * A healthy baseline is part of the hypothesis (issue 15): an upstream that fails 25% of ALL requests,
 * canary and control alike, and a harmless fault. The canary is no worse than control, so no guardrail
 * trips, but the run is not `held`: verdict inconclusive, cause control_unhealthy, in the report, admin
 * JSON, /verdict (not passing), events, `experiment run` (exit 6) and --junit (a failing case). The same
 * run against a healthy upstream, or with the bound taken from the route's steady state (a traffic
 * error_rate probe allowing 40%), is held: the check is what changes the verdict.
 */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { ExperimentReport } from '../../src/experiments/report.js';
import type { VerdictDocument } from '../../src/experiments/verdict.js';
import { LoadGenerator } from '../../src/load/generator.js';
import { removeDir, startFaultline } from '../helpers/faultline.js';
import { runCli } from '../helpers/process.js';
import { closedPort, startUpstream, type Upstream } from '../helpers/servers.js';

let up: Upstream;
let sick = true;
let n = 0;
let dir: string;
const cleanup: (() => Promise<void>)[] = [];

beforeAll(async () => {
  up = await startUpstream((req, res) => {
    req.resume();
    // Every 4th request fails, whatever its arm: the service itself is unhealthy.
    res.writeHead(sick && ++n % 4 === 0 ? 503 : 200);
    res.end('x');
  });
  dir = await mkdtemp(join(tmpdir(), 'fl-control-'));
});
afterAll(async () => {
  await up.close();
  await removeDir(dir);
});
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function experiment(extra: Record<string, unknown> = {}) {
  return {
    id: 'harmless',
    hypothesis: 'checkout absorbs 1 ms of extra latency',
    split: { percent: 40, allow_above_cap: true },
    fault: { kind: 'latency', ms: 1 },
    guardrails: [{ metric: 'error_rate', max_increase: 0.1, max_ratio: 2 }],
    min_samples: 50,
    duration: '3s',
    ...extra,
  };
}

async function runToEnd(extra: Record<string, unknown> = {}) {
  const t = await startFaultline({
    listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url }] }],
    experiments: [experiment(extra)],
  });
  cleanup.push(() => t.stop());
  const events: string[] = [];
  const sse = http.get(`${t.admin}/events`, (res) =>
    res.on('data', (d: Buffer) => events.push(d.toString())),
  );
  cleanup.push(async () => void sse.destroy());
  const gen = new LoadGenerator({
    target: new URL(`${t.url('ingress')}/`),
    ratePerS: 300,
    durationMs: 3300,
    concurrency: 64,
    method: 'GET',
    body: undefined,
    headers: {},
    experiment: undefined,
  });
  await gen.run();
  const rt = t.fl.table.get('harmless')!;
  const end = Date.now() + 3000;
  while (rt.state === 'running' && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  expect(rt.state).toBe('expired');
  const report = (await (await fetch(`${t.admin}/experiments/harmless/report`)).json()) as ExperimentReport;
  const vr = await fetch(`${t.admin}/experiments/harmless/verdict`);
  const verdict = { status: vr.status, ...((await vr.json()) as VerdictDocument) };
  return { report, verdict, events: events.join('') };
}

describe('unhealthy control arm', () => {
  it('both arms at 25% errors, harmless fault: inconclusive (control_unhealthy), not held', async () => {
    sick = true;
    const { report, verdict, events } = await runToEnd();
    // The guardrail itself holds (canary no worse than control): only the baseline check speaks.
    expect(report.guardrails[0]!.status).not.toBe('breached');
    expect(report.verdict).toBe('inconclusive');
    expect(report.verdict_cause).toBe('control_unhealthy');
    expect(report.control_health.status).toBe('unhealthy');
    expect(report.control_health.error_rate).toBeGreaterThan(0.15);
    expect(report.control_health.bound_source).toBe('default');
    expect(report.verdict_reason).toMatch(
      /control arm unhealthy: error rate 2\d(\.\d+)?% \(\d+\/\d+\) above 5%/,
    );
    expect(verdict).toMatchObject({ status: 503, verdict: 'inconclusive', pass: false, score: 0.5 });
    expect(verdict.cause).toBe('control_unhealthy');
    expect(events).toMatch(/event: control_unhealthy\ndata: .*"experiment":"harmless"/);
  }, 20_000);

  it('the same run on a healthy upstream is held', async () => {
    sick = false;
    const { report, verdict, events } = await runToEnd();
    expect(report.verdict).toBe('held');
    expect(report.verdict_cause).toBeNull();
    expect(report.control_health.status).toBe('healthy');
    expect(verdict).toMatchObject({ status: 200, pass: true });
    expect(events).not.toContain('control_unhealthy');
  }, 20_000);

  it("the bound defaults to the route's steady state: a traffic error_rate probe allowing 40% makes 25% healthy", async () => {
    sick = true;
    const { report } = await runToEnd({
      steady_state: [
        {
          name: 'route-errors',
          traffic: { listener: 'ingress', route: 'api', metric: 'error_rate', window: '2s', max: 0.4 },
          when: ['during'],
          every: '500ms',
        },
      ],
    });
    expect(report.control_health.bound_source).toBe('steady_state:route-errors');
    expect(report.control_health.max_error_rate).toBe(0.4);
    expect(report.verdict).toBe('held');
  }, 20_000);

  it('experiment run: exit 6 and a failing "control health" JUnit case', async () => {
    sick = true;
    const port = await closedPort();
    const config = join(dir, 'faultline.yaml');
    await writeFile(
      config,
      stringify({
        state_dir: join(dir, 'state'),
        admin: { port: 0 },
        listeners: [{ name: 'ingress', port, routes: [{ name: 'api', upstream: up.url }] }],
        experiments: [experiment({ duration: undefined })],
      }),
    );
    const junit = join(dir, 'out.xml');
    const run = runCli([
      'experiment',
      'run',
      '--config',
      config,
      '--experiment',
      'harmless',
      '--duration',
      '2500ms',
      '--load',
      `http://127.0.0.1:${port}/,300`,
      '--junit',
      junit,
    ]);
    expect(await run.exited, run.stderr()).toBe(6);
    expect(run.stdout()).toContain('**Verdict:** inconclusive (control_unhealthy)');
    const xml = await readFile(junit, 'utf8');
    expect(xml).toMatch(/<testcase [^>]*name="control health"[^>]*><failure message="control arm unhealthy/);
    expect(xml).toContain('<property name="verdict_cause" value="control_unhealthy"/>');
    const journal = (await readFile(join(dir, 'state', 'runs.jsonl'), 'utf8')).trim().split('\n');
    expect(JSON.parse(journal[journal.length - 1]!)).toMatchObject({
      verdict: 'inconclusive',
      verdict_cause: 'control_unhealthy',
    });
  }, 30_000);
});
