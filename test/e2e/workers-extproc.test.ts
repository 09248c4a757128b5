// `workers: 2` with ext_proc (dist/bin.js, real workers): the ext_proc gRPC server runs in each worker
// on one shared port; four Envoy stand-ins (tests/helpers/envoy.ts, one connection each) spread over
// both workers. Canary aborts come back as immediate_response from either worker; the primary's one
// analyzer kills once on the pooled outcomes; after the kill no worker touches a request; admin counts
// are what the stand-ins saw.
import { afterEach, describe, expect, it } from 'vitest';
import { EnvoyStandIn, setHeaders, type ExchangeResult } from '../helpers/envoy.js';
import { until, type Loose } from '../helpers/fleet.js';
import { runFaultline } from '../helpers/workers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
});

interface Seen {
  start: number;
  r: ExchangeResult;
}

const aborted = (x: Seen) => x.r.request?.immediate_response !== undefined;
/** The arm mark of an exchange: on the immediate_response, or on the response headers' mutation. */
const armOf = (x: Seen): string | undefined =>
  setHeaders(x.r.request?.immediate_response?.headers)['x-faultline-arm'] ??
  setHeaders(x.r.response?.response_headers?.response?.header_mutation)['x-faultline-arm'];
const workerOf = (x: Seen) => /worker=(\d)/.exec(armOf(x) ?? '')?.[1];

describe('workers: 2 and ext_proc', () => {
  it('ext_proc in every worker: canary aborts, one pooled kill in force in both, counts add up, a crashed worker replaced', async () => {
    const fl = await runFaultline(
      {
        workers: 2,
        // Simultaneous fresh connections must reach both workers: round robin splits them exactly (kernel
        // balance, the default, may give a handful to one worker; accept-burst and workers.test run it).
        workers_balance: 'round_robin',
        arm_header: true,
        listeners: [],
        ext_proc: { name: 'envoy', address: '127.0.0.1', port: 0 },
        experiments: [
          {
            id: 'checkout-abort',
            hypothesis: 'checkout copes with a failing dependency',
            match: { listener: 'envoy', path_prefix: '/checkout' },
            split: { percent: 50, allow_above_cap: true },
            fault: { kind: 'abort', status: 503, percent: 40 },
            exclude_injected: false,
            min_samples: 20,
            guardrails: [{ metric: 'error_rate' }],
          },
        ],
      },
      cleanup,
    );
    const port = await fl.port('envoy');
    const envoys = [0, 1, 2, 3].map(() => new EnvoyStandIn(port, { ownConnection: true }));
    cleanup.push(async () => envoys.forEach((e) => e.close()));
    const view = () => fl.json('/experiments/checkout-abort') as Promise<Loose>;

    // One request per stand-in at a time until the primary's analyzer kills; then 1 s more.
    const seen: Seen[] = [];
    let killedAt: number | null = null;
    let stopAt = Infinity;
    for (let round = 0; round < 1500 && Date.now() < stopAt; round++) {
      const start = Date.now();
      const rs = await Promise.all(
        envoys.map((e) => e.exchange({ headers: { ':path': '/checkout/pay' }, response: { status: 200 } })),
      );
      seen.push(...rs.map((r) => ({ start, r })));
      if (killedAt === null && round % 4 === 0) {
        const v = await view();
        if (v.state === 'killed') {
          killedAt = Date.parse(v.ended_at as string);
          stopAt = Date.now() + 1000;
        }
      }
    }
    expect(killedAt).not.toBeNull();
    const kill = killedAt as number;

    // Both workers served and aborted canary requests.
    const before = seen.filter((x) => x.start < kill);
    expect(new Set(before.map(workerOf).filter(Boolean))).toEqual(new Set(['1', '2']));
    const aborts = seen.filter(aborted);
    expect(new Set(aborts.map(workerOf))).toEqual(new Set(['1', '2']));
    for (const x of aborts) {
      expect(x.r.request?.immediate_response?.status?.code).toBe(503);
      expect(x.r.response).toBeNull();
    }

    // The kill is in force in every worker: requests started 100 ms after the decision are untouched
    // (CONTINUE, no mutation, no mark) on all four connections.
    const late = seen.filter((x) => x.start > kill + 100);
    expect(late.length).toBeGreaterThan(40);
    for (const x of late) {
      // A plain CONTINUE (no mutation); untouched, so it may carry mode_override (skip the response).
      expect(x.r.request?.response).toBe('request_headers');
      expect(x.r.request?.request_headers).toEqual({});
      expect(armOf(x)).toBeUndefined();
    }

    // One analyzer, one kill record; admin's arms are the sum over both workers of what was seen.
    const canary = seen.filter((x) => armOf(x)?.includes('group=canary')).length;
    const control = seen.filter((x) => armOf(x)?.includes('group=control')).length;
    const v: Loose = await until('exact pooled counts', async () => {
      const x = await view();
      return x.arms.canary.requests === canary && x.arms.control.requests === control ? x : null;
    });
    expect(v.ended.cause).toBe('guardrail');
    expect(v.arms.canary.injected).toBe(aborts.length);
    expect(v.workers).toHaveLength(2);
    const kills = fl.proc
      .stderr()
      .split('\n')
      .filter((l) => l.includes('"msg":"experiment killed"'));
    expect(kills).toHaveLength(1);

    // A worker that dies is replaced and binds the same shared ext_proc port again.
    process.kill(fl.pids[0]!, 'SIGKILL');
    await fl.proc.waitForLog((l) => l['msg'] === 'worker replaced', 20_000);
    const more = [
      new EnvoyStandIn(port, { ownConnection: true }),
      new EnvoyStandIn(port, { ownConnection: true }),
    ];
    cleanup.push(async () => more.forEach((e) => e.close()));
    const again = await Promise.all(
      [...envoys, ...more].map((e) =>
        e.exchange({ headers: { ':path': '/checkout/pay' }, response: { status: 200 } }),
      ),
    );
    for (const r of again) {
      expect(r.request?.response).toBe('request_headers');
      expect(r.request?.request_headers).toEqual({});
    }
  }, 40_000);
});
