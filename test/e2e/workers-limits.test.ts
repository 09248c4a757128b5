// `workers: 2` and max_active_faults: the limit is the process's, so each worker holds a fixed share
// (floor(C/N), the remainder to the first workers) and the two together never hold more than C faults.
import { afterEach, describe, expect, it } from 'vitest';
import { maxActiveShare } from '../../src/cluster/protocol.js';
import { exp, oneRoute } from '../helpers/experiments.js';
import type { Loose } from '../helpers/fleet.js';
import { startUpstream } from '../helpers/servers.js';
import { get, runFaultline } from '../helpers/workers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
});

describe('workers and max_active_faults', () => {
  it('shares a limit over the workers like the fleet over replicas', () => {
    expect([1, 2].map((i) => maxActiveShare(3, 2, i))).toEqual([2, 1]);
    expect([1, 2, 3].map((i) => maxActiveShare(2, 3, i))).toEqual([1, 1, 0]);
    expect(maxActiveShare(null, 2, 1)).toBe(Number.POSITIVE_INFINITY);
  });

  it('two workers together hold at most max_active_faults faults', { timeout: 60_000 }, async () => {
    const up = await startUpstream((req, res) => {
      req.resume();
      res.end('ok');
    });
    cleanup.push(() => up.close());
    const cfg = oneRoute(
      up.url,
      [
        exp({
          split: { percent: 50, allow_above_cap: true },
          fault: { kind: 'latency', ms: 1500 },
          max_active_faults: 2,
        }),
      ],
      { workers: 2, workers_balance: 'round_robin', arm_header: true },
    );
    (cfg.listeners[0] as Loose).address = '127.0.0.1';
    const fl = await runFaultline(cfg, cleanup);
    const port = await fl.port('ingress');
    // 32 requests at once on fresh connections (round robin gives both workers half, ~8 canary each;
    // kernel balance, the default, may give most to one worker): all in
    // flight while the first held faults last, so without shares each worker would hold 2.
    const sent = await Promise.all(Array.from({ length: 32 }, () => get(port)));
    const canary = sent.filter((s) => /group=canary/.test(s.arm ?? ''));
    const workers = new Set(canary.map((s) => /worker=(\d+)/.exec(s.arm ?? '')?.[1]));
    expect(workers.size, 'canary requests in both workers').toBe(2);
    const injected = sent.filter((s) => s.injected !== undefined);
    expect(injected.length).toBeGreaterThanOrEqual(1);
    expect(injected.length, 'faults held at once in the process').toBeLessThanOrEqual(2);
    expect(sent.every((s) => s.status === 200)).toBe(true);
  });
});
