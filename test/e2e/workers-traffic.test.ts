// `workers: 2` with a traffic stop condition (dist/bin.js, real workers, real HTTP): the listeners run
// in the workers, the primary's probe reads their totals (sent with their batches). Healthy traffic
// passes the before-check; the upstream failing trips the probe; GET /suggestions counts every request
// both workers served.
import { afterEach, describe, expect, it } from 'vitest';
import { exp, oneRoute } from '../helpers/experiments.js';
import { sleep, until, type Loose } from '../helpers/fleet.js';
import { startUpstream } from '../helpers/servers.js';
import { get, runFaultline, type Sent } from '../helpers/workers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
});

describe('workers: 2 and traffic probes', () => {
  it('a traffic error-rate stop condition sees both workers’ traffic and kills; suggestions count it all', async () => {
    let status = 200;
    const up = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(status);
      res.end('x');
    });
    cleanup.push(() => up.close());
    const cfg = oneRoute(
      up.url,
      [
        exp({
          split: { percent: 50, allow_above_cap: true },
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
          ],
        }),
      ],
      { workers: 2, arm_header: true },
    );
    (cfg.listeners[0] as Loose).address = '127.0.0.1';
    const fl = await runFaultline(cfg, cleanup);
    const port = await fl.port('ingress');

    // Traffic all along: 4 requests at a time, each on its own connection (both workers serve).
    const sent: Sent[] = [];
    let running = true;
    const driver = (async () => {
      while (running) sent.push(...(await Promise.all([get(port), get(port), get(port), get(port)])));
    })();
    cleanup.push(async () => {
      running = false;
      await driver;
    });

    // The before-check judges a full window of healthy traffic (the workers' counts): then it runs.
    const view = () => fl.json('/experiments/e1') as Promise<Loose>;
    await until('running', async () => (await view()).state === 'running', 8000);
    await sleep(500);
    expect((await view()).state).toBe('running');
    // Both workers serve the traffic the probe judges.
    await until('marks from both workers', async () => {
      const w = new Set(sent.map((s) => /worker=(\d)/.exec(s.arm ?? '')?.[1]).filter(Boolean));
      return w.size === 2;
    });

    // The upstream fails: only the workers see it; the primary's probe must trip on their counts.
    const broke = Date.now();
    status = 500;
    const killed: Loose = await until(
      'killed by the traffic probe',
      async () => {
        const v = await view();
        return v.state === 'killed' ? v : null;
      },
      6000,
    );
    const tookMs = Date.now() - broke;
    expect(killed.ended.cause).toBe('stop_condition');
    expect(killed.ended.reason).toMatch(/stop condition route-errors: error_rate (0\.\d+|1) > max 0\.05/);
    expect(tookMs).toBeLessThan(3500);
    process.stdout.write(`workers-traffic e2e: traffic probe killed ${tookMs} ms after the upstream broke\n`);
    running = false;
    await driver;

    // Suggestions read the same counters: every request both workers served (after the last batch).
    const doc: Loose = await until('suggestions count every request', async () => {
      const d = (await fl.json('/suggestions')) as Loose;
      const r = d.routes.find((x: Loose) => x.listener === 'ingress' && x.route === 'api');
      return r?.requests === sent.length ? d : null;
    });
    const route = doc.routes.find((x: Loose) => x.route === 'api');
    expect(route.error_rate).toBeCloseTo(sent.filter((s) => s.status >= 500).length / sent.length, 3);

    // A worker that dies keeps what it counted (its replacement counts from zero): the totals never
    // go back, so a probe window spanning the crash stays right.
    process.kill(fl.pids[0]!, 'SIGKILL');
    await fl.proc.waitForLog((l) => l['msg'] === 'worker replaced', 20_000);
    const more = await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map(() => get(port)));
    await until('suggestions keep the dead worker’s count', async () => {
      const d = (await fl.json('/suggestions')) as Loose;
      const r = d.routes.find((x: Loose) => x.route === 'api');
      return r?.requests === sent.length + more.length;
    });
  }, 40_000);
});
