/**
 * Envoy's conventions on the HTTP proxy path: x-envoy-expected-rq-timeout-ms bounds a timeout fault
 * (Envoy would give up then anyway), and `sticky: request_id` keeps retries (same x-request-id) in
 * the arm of the first attempt.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { oneRoute, exp } from '../helpers/experiments.js';
import { removeDir, startFaultline } from '../helpers/faultline.js';
import { startUpstream } from '../helpers/servers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(experiment: Record<string, unknown>, top: Record<string, unknown> = {}) {
  const up = await startUpstream((req, res) => {
    req.resume();
    res.end('ok');
  });
  const fl = await startFaultline(oneRoute(up.url, [exp(experiment)], top));
  cleanups.push(async () => {
    await fl.stop();
    await up.close();
    await removeDir(fl.stateDir);
  });
  return fl;
}

describe("Envoy's headers on the proxy", () => {
  it('a timeout fault answers 504 at x-envoy-expected-rq-timeout-ms, not at its own ms', async () => {
    const fl = await setup({
      split: { percent: 50, allow_above_cap: true },
      fault: { kind: 'timeout', ms: 3000 },
    });
    let seen = 0;
    for (let i = 0; i < 30 && seen === 0; i++) {
      const t0 = performance.now();
      const res = await fetch(`${fl.url()}/x`, { headers: { 'x-envoy-expected-rq-timeout-ms': '80' } });
      await res.text();
      if (res.status === 504) {
        seen++;
        const ms = performance.now() - t0;
        expect(ms).toBeGreaterThanOrEqual(70);
        expect(ms).toBeLessThan(1000);
      }
    }
    expect(seen).toBe(1);
  });

  it('sticky: request_id keeps every attempt with one x-request-id in one arm', async () => {
    const fl = await setup(
      {
        split: { percent: 50, allow_above_cap: true, sticky: 'request_id' },
        fault: { kind: 'latency', ms: 1 },
      },
      { arm_header: true },
    );
    const arms = new Set<string>();
    for (let id = 0; id < 10; id++) {
      const per = new Set<string>();
      for (let attempt = 0; attempt < 5; attempt++) {
        const res = await fetch(`${fl.url()}/x`, {
          headers: { 'x-request-id': `req-${id}`, 'x-envoy-attempt-count': String(attempt + 1) },
        });
        await res.text();
        per.add(res.headers.get('x-faultline-arm') ?? 'none');
      }
      expect(per.size).toBe(1);
      arms.add([...per][0] as string);
    }
    // Both arms are drawn across these ids (the hash of id and key is deterministic).
    expect(arms).toEqual(new Set(['e1; group=canary', 'e1; group=control']));
    // No x-request-id: no sticky key, no arm.
    const res = await fetch(`${fl.url()}/x`);
    expect(res.headers.get('x-faultline-arm')).toBeNull();
  });
});
