/**
 * Breaking-point ramp end to end: a real service with a 300 ms timeout and a fallback error in front of
 * a dependency; Faultline splits at the ingress and injects latency at the egress hop (the service's
 * call to its dependency). Ramp [50, 100, 200, 400, 800] ms: "held up to 200 ms, broke at 400 ms", and
 * only the step that broke saw the fallback's failures. rollback kills; plateau stays at 200 ms.
 */
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { experimentReport, reportMarkdown } from '../../src/experiments/report.js';
import { startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { startUpstream } from '../helpers/servers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

const dispatcher = new Agent({ connections: 64 });

/** Service: calls its dependency through `egressUrl` (baggage passed on), 300 ms timeout, 503 fallback. */
async function serviceWithTimeout(egress: () => string) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const up = await startUpstream((req, res) => {
    req.resume();
    const headers: Record<string, string> = {};
    if (req.headers.baggage) headers.baggage = String(req.headers.baggage);
    const call = http.get(`${egress()}/dep`, { agent, headers, timeout: 300 }, (r) => {
      r.resume();
      r.on('end', () => {
        res.writeHead(200);
        res.end('ok');
      });
    });
    call.on('timeout', () => call.destroy(new Error('dependency timeout')));
    call.on('error', () => {
      if (res.headersSent) return;
      res.writeHead(503);
      res.end('fallback');
    });
  });
  cleanup.push(async () => {
    agent.destroy();
    await up.close();
  });
  return up;
}

async function topology(onBreach: 'rollback' | 'plateau', duration: string): Promise<TestFaultline> {
  const dep = await startUpstream((req, res) => {
    req.resume();
    res.end('dep');
  });
  cleanup.push(() => dep.close());
  let t: TestFaultline | null = null;
  const svc = await serviceWithTimeout(() => t!.url('egress'));
  t = await startFaultline({
    listeners: [
      { name: 'ingress', port: 0, routes: [{ name: 'svc', upstream: svc.url, timeout_ms: 5000 }] },
      {
        name: 'egress',
        port: 0,
        trust_assignment: true,
        routes: [{ name: 'dep', upstream: dep.url, timeout_ms: 5000 }],
      },
    ],
    experiments: [
      {
        id: 'ramp',
        hypothesis: 'the service tolerates a slow dependency up to its 300 ms timeout',
        match: { listener: 'ingress' },
        split: { percent: 50, allow_above_cap: true },
        inject: 'downstream',
        inject_at: ['egress'],
        fault: { kind: 'latency', ms: 50 },
        guardrails: [{ metric: 'error_rate', max_increase: 0.2, max_ratio: 2 }],
        min_samples: 20,
        duration,
        ramp: { steps: [50, 100, 200, 400, 800], on_breach: onBreach },
      },
    ],
  });
  cleanup.push(() => t!.stop());
  return t;
}

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
  return async () => {
    running = false;
    await Promise.all(loops);
  };
}

async function until(what: string, fn: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('breaking-point ramp', () => {
  it('rollback: held up to 200 ms, broke at 400 ms; only that step saw failures; the run is killed', async () => {
    const t = await topology('rollback', '60s');
    const stop = drive(t.url('ingress') + '/x', 16);
    cleanup.push(stop);
    const rt = t.fl.table.get('ramp')!;
    await until('killed', () => rt.state === 'killed', 40_000);
    await stop();
    const r = experimentReport(rt, t.fl.table.lifecycleOf('ramp'));
    const ramp = r.ramp!;
    expect(ramp.held_up_to).toBe(200);
    expect(ramp.broke_at).toBe(400);
    expect(ramp.steps.map((s) => s.status)).toEqual(['held', 'held', 'held', 'broke', 'pending']);
    // The fallback's failures were seen at the step that broke and nowhere else.
    expect(ramp.steps.slice(0, 3).map((s) => s.canary_bad)).toEqual([0, 0, 0]);
    expect(ramp.steps[3]!.canary_bad).toBeGreaterThan(0);
    for (const s of ramp.steps.slice(0, 3)) expect(s.canary).toBeGreaterThanOrEqual(s.needed);
    expect(ramp.steps[0]!.alpha).toBeCloseTo(0.01 / 5, 10);
    expect(r.verdict).toBe('refuted');
    expect(r.ended?.cause).toBe('guardrail');
    expect(ramp.summary).toMatch(/^held up to 200 ms \(\d+ canary requests per step; power 9\d% at/);
    expect(ramp.summary).toContain('broke at 400 ms');
    expect(r.verdict_reason).toContain('ramp: held up to 200 ms');
    expect(reportMarkdown(r)).toContain('## Ramp');
    expect(r.timeline.filter((e) => e.type === 'ramp_step').length).toBe(4);
  }, 50_000);

  it('plateau: after the break at 400 ms the run stays at 200 ms until its duration ends', async () => {
    const t = await topology('plateau', '25s');
    const stop = drive(t.url('ingress') + '/x', 16);
    cleanup.push(stop);
    const rt = t.fl.table.get('ramp')!;
    await until('plateau', () => rt.ramp!.broke_at !== null, 20_000);
    expect(rt.state).toBe('running');
    expect(rt.ramp!.current).toBe(2);
    expect(rt.ramp!.steps[2]!.status).toBe('plateau');
    // Still at 200 ms a while later: no further breach, no kill.
    await new Promise((r) => setTimeout(r, 1500));
    expect(rt.state).toBe('running');
    expect(rt.ramp!.current).toBe(2);
    t.fl.table.complete('ramp', 'test done');
    await stop();
    const r = experimentReport(rt, t.fl.table.lifecycleOf('ramp'));
    expect(r.ramp!.summary).toContain('plateau at 200 ms');
    expect(r.ramp!.steps[4]!.status).toBe('pending');
  }, 40_000);
});
