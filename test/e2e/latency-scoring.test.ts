/**
 * The demo symptom of issue 11, item 11: every canary request 300 ms late, a fast control. The latency
 * guardrail used to refresh T_p every 200 requests, so it judged only the canary requests after
 * request 200 (12 of 112 in the demo) and the report read "12/112 (10.71%)". Now T_p is trusted as
 * soon as control has max(20, 5/(1-p)) samples, and the report says what was scored and what was not.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reportMarkdown, type ExperimentReport } from '../../src/experiments/report.js';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { startUpstream, type Upstream } from '../helpers/servers.js';

let up: Upstream;
let fl: TestFaultline;

beforeAll(async () => {
  up = await startUpstream((_req, res) => res.end('ok'));
  fl = await startFaultline({
    listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url }] }],
    experiments: [
      {
        id: 'slow',
        hypothesis: 'a 300 ms slower dependency keeps p90 within x1.2 + 10 ms',
        split: { percent: 50, allow_above_cap: true },
        fault: { kind: 'latency', ms: 300 },
        // judge the injected delay itself, as the demo's ingress does for a delay injected downstream
        exclude_injected: false,
        guardrails: [{ metric: 'latency', quantile: 0.9, max_ratio: 1.2, max_increase_ms: 10 }],
        // no kill during the test: the arms keep filling
        min_samples: 100_000,
      },
    ],
  });
});

afterAll(async () => {
  await fl?.stop();
  await up?.close();
  if (fl) await removeDir(fl.stateDir);
});

describe('latency guardrail scoring', () => {
  it('all canary requests after the 50-control warm-up are scored, and the report says so', async () => {
    // 10 batches of 20 concurrent requests: about 100 per arm, the warm-up ends around batch 5
    for (let b = 0; b < 10; b++)
      await Promise.all(Array.from({ length: 20 }, () => fetch(fl.url()).then((r) => r.arrayBuffer())));
    const r = (await (await fetch(`${fl.admin}/experiments/slow/report`)).json()) as ExperimentReport;
    const g = r.guardrails[0]!;
    const canary = g.canary;
    expect(canary.samples).toBe(r.arms.canary.requests);
    const warmup = canary.unscored?.warmup ?? -1;
    expect(canary.scored! + warmup).toBe(canary.samples);
    expect(canary.unscored?.excluded).toBe(0);
    // T_p became active at the 50th control sample: only the canary requests before it went unscored
    // (the old 200-request refresh scored none of these ~100)
    expect(g.control.unscored?.warmup).toBe(50);
    expect(warmup).toBeGreaterThan(0);
    expect(warmup).toBeLessThan(80);
    expect(canary.scored).toBeGreaterThanOrEqual(canary.samples - 80);
    // every scored canary request was slow: 100 %, not "slow share of all requests"
    expect(canary.bad).toBe(canary.scored);
    expect(canary.rate).toBe(1);
    const md = reportMarkdown(r);
    expect(md).toContain(
      `slow ${canary.scored}/${canary.scored} (100.00%), scored ${canary.scored}/${canary.samples}, unscored (warm-up) ${warmup}`,
    );
    expect(md).toContain(`scored ${g.control.scored}/${g.control.samples}, unscored (warm-up) 50`);
  });
});
