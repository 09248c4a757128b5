import { readFile, rename, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { Agent, request } from 'undici';
import { startDependency, startService, type RunningServer } from '../../src/demo/services.js';
import { exp, oneRoute } from '../helpers/experiments.js';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { runCli } from '../helpers/process.js';
import {
  closedPort,
  metricSum,
  scrape,
  startBaggageEcho,
  startUpstream,
  type Upstream,
} from '../helpers/servers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function echo(): Promise<Upstream> {
  const up = await startBaggageEcho();
  cleanup.push(() => up.close());
  return up;
}

async function faultline(
  cfg: Record<string, unknown>,
  opts: { stateDir?: string } = {},
): Promise<TestFaultline> {
  const fl = await startFaultline(cfg, opts);
  cleanup.push(async () => {
    await fl.stop();
  });
  return fl;
}

const dispatcher = new Agent({ connections: 64 });

async function get(url: string, headers: Record<string, string> = {}) {
  const r = await request(url, { headers, dispatcher });
  const body = await r.body.text();
  return { status: r.statusCode, headers: r.headers, body };
}

/** 99.9% binomial interval check. */
const within999 = (count: number, n: number, p: number) =>
  Math.abs(count - n * p) <= 3.29 * Math.sqrt(n * p * (1 - p));

describe('split and faults through the proxy', () => {
  it('splits 5% canary and 5% control over 20k requests; only canary is injected and marked', async () => {
    const up = await echo();
    const fl = await faultline(oneRoute(up.url, [exp({})]));
    const n = 20_000;
    let injected = 0;
    let control = 0;
    let canaryTagged = 0;
    const batch = 200;
    for (let i = 0; i < n; i += batch) {
      const rs = await Promise.all(Array.from({ length: batch }, () => get(fl.url())));
      for (const r of rs) {
        if (r.status === 503) {
          injected++;
          expect(r.headers['x-faultline-injected']).toBe('e1; fault=abort');
        } else {
          expect(r.status).toBe(200);
          expect(r.headers['x-faultline-injected']).toBeUndefined();
          const bag = String(r.headers['x-seen-baggage']);
          if (bag.includes('faultline.group=control')) control++;
          if (bag.includes('faultline.group=canary')) canaryTagged++;
        }
      }
    }
    expect(canaryTagged).toBe(0);
    expect(within999(injected, n, 0.05), `canary ${injected}`).toBe(true);
    expect(within999(control, n, 0.05), `control ${control}`).toBe(true);
    const view = (await (await fetch(`${fl.admin}/experiments/e1`)).json()) as {
      arms: { canary: { requests: number; error: number; injected: number }; control: { requests: number } };
    };
    expect(view.arms.canary.requests).toBe(injected);
    expect(view.arms.canary.injected).toBe(injected);
    expect(view.arms.control.requests).toBe(control);
    const m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_faults_injected_total', { experiment: 'e1', kind: 'abort' })).toBe(
      injected,
    );
    expect(
      metricSum(m, 'faultline_experiment_requests_total', {
        experiment: 'e1',
        group: 'control',
        outcome: 'ok',
      }),
    ).toBe(control);
    expect(
      metricSum(m, 'faultline_experiment_requests_total', {
        experiment: 'e1',
        group: 'canary',
        outcome: 'error',
      }),
    ).toBe(injected);
  });

  it('abort answers the configured status, body and headers without contacting the upstream', async () => {
    let hits = 0;
    const up = await startUpstream((_req, res) => {
      hits++;
      res.end('x');
    });
    cleanup.push(() => up.close());
    const fl = await faultline(
      oneRoute(up.url, [
        exp({
          split: { percent: 50, allow_above_cap: true, sticky: 'header:x-user' },
          fault: { kind: 'abort', status: 418, body: 'teapot\n', headers: { 'retry-after': '3' } },
        }),
      ]),
    );
    const canaryUser = await findUser(fl.url(), (r) => r.status === 418);
    const r = await get(fl.url(), { 'x-user': canaryUser });
    expect(r.status).toBe(418);
    expect(r.body).toBe('teapot\n');
    expect(r.headers['retry-after']).toBe('3');
    const before = hits;
    await get(fl.url(), { 'x-user': canaryUser });
    expect(hits).toBe(before);
  });

  it('latency delays canary requests by at least the configured time (request and response legs)', async () => {
    const up = await echo();
    for (const leg of ['request', 'response']) {
      const fl = await faultline(
        oneRoute(up.url, [
          exp({
            split: { percent: 50, allow_above_cap: true, sticky: 'header:x-user' },
            fault: { kind: 'latency', ms: 300, leg },
          }),
        ]),
      );
      const user = await findUser(fl.url(), (r) => r.headers['x-faultline-injected'] !== undefined);
      const t0 = performance.now();
      const r = await get(fl.url(), { 'x-user': user });
      expect(performance.now() - t0).toBeGreaterThanOrEqual(295);
      expect(r.status).toBe(200);
      expect(r.body).toBe('upstream');
      expect(r.headers['x-faultline-injected']).toBe('e1; fault=latency');
    }
  });

  it('timeout answers 504 after the hold without using the upstream; hang is bounded by max_hold_ms', async () => {
    let hits = 0;
    const up = await startUpstream((_req, res) => {
      hits++;
      res.end('x');
    });
    cleanup.push(() => up.close());
    const cfg = (fault: Record<string, unknown>) =>
      oneRoute(up.url, [
        exp({ split: { percent: 50, allow_above_cap: true, sticky: 'header:x-user' }, fault }),
      ]);
    const fl = await faultline(cfg({ kind: 'timeout', ms: 250 }));
    const user = await findUser(fl.url(), (r) => r.status === 504);
    const before = hits;
    const t0 = performance.now();
    const r = await get(fl.url(), { 'x-user': user });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(245);
    expect(r.status).toBe(504);
    expect(r.headers['x-faultline-injected']).toBe('e1; fault=timeout');
    expect(hits).toBe(before);

    const hang = await faultline(cfg({ kind: 'timeout', hang: true, max_hold_ms: 400 }));
    // Some of 20 users are canary: their requests never get an answer and are dropped at 400 ms.
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        get(hang.url(), { 'x-user': `hang-${i}` }).then(
          (x) => ({ ok: true, status: x.status }),
          (e: Error) => ({ ok: false, status: (e as NodeJS.ErrnoException).code ?? e.message }),
        ),
      ),
    );
    const dropped = results.filter((x) => !x.ok);
    expect(dropped.length).toBeGreaterThan(0);
    expect(results.filter((x) => x.ok).every((x) => x.status === 200)).toBe(true);
    // A hang ends as a timeout, whether dropped at max_hold_ms or given up on by the client first.
    const canaryUsers = results.flatMap((x, i) => (x.ok ? [] : [`hang-${i}`]));
    const impatient = new Agent({ headersTimeout: 100 });
    for (const user of canaryUsers)
      await expect(
        request(hang.url(), { headers: { 'x-user': user }, dispatcher: impatient }),
      ).rejects.toThrow();
    await impatient.close();
    await new Promise((r) => setTimeout(r, 100));
    const st = (await (await fetch(`${hang.admin}/experiments/e1`)).json()) as {
      arms: { canary: { timeout: number; reset: number; client_abort: number } };
    };
    expect(st.arms.canary.timeout).toBe(2 * dropped.length);
    expect(st.arms.canary.reset + st.arms.canary.client_abort).toBe(0);
  });

  it('reset drops the connection: the client sees ECONNRESET', async () => {
    const up = await echo();
    const fl = await faultline(
      oneRoute(up.url, [exp({ split: { percent: 50, allow_above_cap: true }, fault: { kind: 'reset' } })]),
    );
    const codes = await Promise.all(
      Array.from(
        { length: 40 },
        () =>
          new Promise<string>((resolve) => {
            http
              .get(fl.url(), { agent: false }, (res) => {
                res.resume();
                res.on('end', () => resolve(String(res.statusCode)));
              })
              .on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
          }),
      ),
    );
    expect(codes.filter((c) => c === 'ECONNRESET').length).toBeGreaterThan(5);
    expect(codes.every((c) => c === 'ECONNRESET' || c === '200')).toBe(true);
    // On the wire it is a TCP RST, not a polite close: a raw socket sees an error, never a bare end.
    const port = new URL(fl.url()).port;
    const raw = await Promise.all(
      Array.from(
        { length: 20 },
        () =>
          new Promise<string>((resolve) => {
            let got = '';
            const s = net.connect(Number(port), '127.0.0.1', () =>
              s.write('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'),
            );
            s.on('data', (d: Buffer) => (got += d.toString()));
            s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
            s.on('close', () =>
              resolve(got.startsWith('HTTP/1.1 200') ? '200' : 'closed without a response'),
            );
          }),
      ),
    );
    expect(raw.filter((c) => c === 'ECONNRESET').length).toBeGreaterThan(0);
    expect(raw.every((c) => c === 'ECONNRESET' || c === '200')).toBe(true);
  });

  it('several matching experiments: the first in config order owns the request, whatever its draw', async () => {
    const up = await echo();
    const fl = await faultline(
      oneRoute(up.url, [
        exp({ id: 'first', split: { percent: 25, allow_above_cap: true } }),
        exp({ id: 'second', split: { percent: 50, allow_above_cap: true } }),
      ]),
    );
    for (let i = 0; i < 10; i++) await Promise.all(Array.from({ length: 40 }, () => get(fl.url())));
    const first = (await (await fetch(`${fl.admin}/experiments/first`)).json()) as {
      assigned: { canary: number; control: number };
    };
    const second = (await (await fetch(`${fl.admin}/experiments/second`)).json()) as typeof first;
    expect(first.assigned.canary + first.assigned.control).toBeGreaterThan(100);
    expect(second.assigned).toMatchObject({ canary: 0, control: 0 });
  });

  it('arm_header also marks the errors Faultline writes itself (a dead upstream)', async () => {
    const dead = `http://127.0.0.1:${await closedPort()}`;
    const fl = await faultline({
      ...oneRoute(dead, [
        exp({ split: { percent: 25, allow_above_cap: true }, fault: { kind: 'latency', ms: 1 } }),
      ]),
      arm_header: true,
    });
    const rs = await Promise.all(Array.from({ length: 80 }, () => get(fl.url())));
    expect(rs.every((r) => r.status === 502)).toBe(true);
    const marked = { canary: 0, control: 0 };
    for (const r of rs) {
      if (r.headers['x-faultline-arm'] === 'e1; group=canary') marked.canary++;
      if (r.headers['x-faultline-arm'] === 'e1; group=control') marked.control++;
    }
    const st = (await (await fetch(`${fl.admin}/experiments/e1`)).json()) as {
      assigned: { canary: number; control: number };
    };
    expect(marked).toEqual(st.assigned);
    expect(marked.canary + marked.control).toBeGreaterThan(10);
  });

  it('arm_header marks both arms; injected_header: false drops the injected mark; counts carry status classes', async () => {
    const up = await echo();
    const fl = await faultline({
      ...oneRoute(up.url, [exp({ split: { percent: 25, allow_above_cap: true } })]),
      arm_header: true,
      injected_header: false,
    });
    const seen = { canary: 0, control: 0, none: 0 };
    for (let i = 0; i < 10; i++) {
      const rs = await Promise.all(Array.from({ length: 40 }, () => get(fl.url())));
      for (const r of rs) {
        expect(r.headers['x-faultline-injected']).toBeUndefined();
        const arm = r.headers['x-faultline-arm'];
        if (arm === 'e1; group=canary') {
          expect(r.status).toBe(503);
          seen.canary++;
        } else if (arm === 'e1; group=control') {
          expect(r.status).toBe(200);
          seen.control++;
        } else {
          expect(arm).toBeUndefined();
          seen.none++;
        }
      }
    }
    expect(seen.canary).toBeGreaterThan(40);
    expect(seen.control).toBeGreaterThan(40);
    expect(seen.none).toBeGreaterThan(100);
    const st = (await (await fetch(`${fl.admin}/experiments/e1`)).json()) as {
      arms: Record<string, { requests: number; status_classes: Record<string, number> }>;
    };
    expect(st.arms['canary']?.status_classes['5xx']).toBe(seen.canary);
    expect(st.arms['control']?.status_classes['2xx']).toBe(seen.control);
    const m = await scrape(fl.admin);
    expect(
      metricSum(m, 'faultline_experiment_responses_total', { group: 'canary', status_class: '5xx' }),
    ).toBe(seen.canary);
  });

  it('max_active_faults: beyond the cap canary requests pass through unfaulted and count as overflow', async () => {
    const up = await echo();
    const fl = await faultline(
      oneRoute(up.url, [
        exp({
          split: { percent: 50, allow_above_cap: true },
          max_active_faults: 2,
          fault: { kind: 'latency', ms: 600 },
        }),
      ]),
    );
    const rs = await Promise.all(Array.from({ length: 60 }, () => get(fl.url())));
    const delayed = rs.filter((r) => r.headers['x-faultline-injected'] !== undefined).length;
    expect(delayed).toBe(2);
    const m = await scrape(fl.admin);
    const view = (await (await fetch(`${fl.admin}/experiments/e1`)).json()) as {
      arms: { canary: { requests: number } };
    };
    expect(metricSum(m, 'faultline_faults_overflow_total', { experiment: 'e1' })).toBe(
      view.arms.canary.requests - 2,
    );
    expect(metricSum(m, 'faultline_active_faults', { experiment: 'e1' })).toBe(0);
  });

  it('the edge strips incoming faultline baggage, keeps other entries, and never lets a client pick its arm', async () => {
    const up = await echo();
    const fl = await faultline(oneRoute(up.url, [exp({ split: { percent: 1 } })]));
    let injected = 0;
    for (let i = 0; i < 100; i++) {
      const r = await get(fl.url(), { baggage: 'userId=alice,faultline.exp=e1,faultline.group=canary' });
      if (r.status === 503) injected++;
      else {
        const bag = String(r.headers['x-seen-baggage']);
        expect(bag).toContain('userId=alice');
        expect(bag).not.toContain('faultline.group=canary');
      }
    }
    expect(injected).toBeLessThan(10);
    // A second baggage line cannot smuggle an assignment past the edge either.
    for (let i = 0; i < 50; i++) {
      const r = await new Promise<{ status: number; seen: string }>((resolve, reject) => {
        const req = http.request(fl.url(), { agent: false }, (res) => {
          res.resume();
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, seen: String(res.headers['x-seen-baggage']) }),
          );
        });
        req.setHeader('baggage', ['userId=alice', 'faultline.exp=e1,faultline.group=canary']);
        req.on('error', reject);
        req.end();
      });
      if (r.status === 200) expect(r.seen).not.toMatch(/faultline\.group=canary/);
    }
  });

  it('shutdown releases held faults instead of waiting them out', async () => {
    const up = await echo();
    const fl = await startFaultline(
      oneRoute(up.url, [
        exp({ split: { percent: 50, allow_above_cap: true }, fault: { kind: 'latency', ms: 30_000 } }),
      ]),
    );
    const pending = Promise.all(Array.from({ length: 20 }, () => get(fl.url())));
    await new Promise((r) => setTimeout(r, 300));
    const t0 = performance.now();
    await fl.fl.stop(10_000);
    expect(performance.now() - t0).toBeLessThan(5000);
    const rs = await pending;
    expect(rs.every((r) => r.status === 200)).toBe(true);
    await removeDir(fl.stateDir);
  });

  it('a kill also cancels response-leg delays whose upstream had not answered yet', async () => {
    const up = await startUpstream((_req, res) => setTimeout(() => res.end('slow upstream'), 600));
    cleanup.push(() => up.close());
    const fl = await faultline(
      oneRoute(up.url, [
        exp({
          split: { percent: 50, allow_above_cap: true },
          fault: { kind: 'latency', ms: 20_000, leg: 'response' },
        }),
      ]),
    );
    const t0 = performance.now();
    const pending = Promise.all(Array.from({ length: 20 }, () => get(fl.url())));
    await new Promise((r) => setTimeout(r, 200));
    await fetch(`${fl.admin}/kill`, { method: 'POST', headers: { 'content-type': 'application/json' } });
    const rs = await pending;
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(rs.every((r) => r.status === 200 && r.body === 'slow upstream')).toBe(true);
    const m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_active_faults', { experiment: 'e1' })).toBe(0);
  });
});

describe('three hops: ingress splits, a real service calls its dependency through a trusted egress', () => {
  it('injects only at the egress for canary calls and counts both arms at both hops', async () => {
    const dep = await startDependency(0);
    cleanup.push(() => dep.close());
    // The service reaches its dependency through the egress listener, whose port is known only after start:
    // start Faultline first with a placeholder service port, then the service, then reload the route.
    let service: RunningServer | null = null;
    const fl = await faultline({
      listeners: [
        {
          name: 'ingress',
          port: 0,
          routes: [{ name: 'checkout', upstream: 'http://127.0.0.1:1', timeout_ms: 5000 }],
        },
        {
          name: 'egress',
          port: 0,
          trust_assignment: true,
          routes: [{ name: 'auth', upstream: `http://127.0.0.1:${dep.port}`, timeout_ms: 5000 }],
        },
      ],
      experiments: [
        {
          id: 'auth-abort',
          hypothesis: 'checkout survives auth failing',
          match: { listener: 'ingress', route: 'checkout' },
          split: { percent: 5 },
          inject: 'downstream',
          fault: { kind: 'abort', status: 503 },
          guardrails: [{ metric: 'error_rate', max_increase: 0.5, max_ratio: 100 }],
        },
      ],
    });
    service = await startService({ dependencyUrl: fl.url('egress') });
    cleanup.push(() => service.close());
    const cfg = (await import('yaml')).parse(await readFile(fl.configFile, 'utf8')) as {
      listeners: { routes: { upstream: string }[] }[];
    };
    cfg.listeners[0]!.routes[0]!.upstream = `http://127.0.0.1:${service.port}`;
    await writeFile(fl.configFile, stringify(cfg));
    expect((await fl.fl.reload()).status).toBe('ok');

    const n = 4000;
    let failed = 0;
    for (let i = 0; i < n; i += 200) {
      const rs = await Promise.all(Array.from({ length: 200 }, () => get(fl.url('ingress'))));
      failed += rs.filter((r) => r.status === 502).length;
    }
    const view = (await (await fetch(`${fl.admin}/experiments/auth-abort`)).json()) as {
      arms: { canary: { requests: number; error: number }; control: { requests: number; error: number } };
      hops: Record<
        string,
        {
          canary: { requests: number; injected: number; error: number };
          control: { requests: number; injected: number };
        }
      >;
    };
    const ingress = view.hops['ingress']!;
    const egress = view.hops['egress']!;
    expect(ingress.canary.requests).toBeGreaterThan(100);
    expect(ingress.canary.injected).toBe(0);
    expect(egress.canary.requests).toBe(ingress.canary.requests);
    expect(egress.canary.injected).toBe(egress.canary.requests);
    expect(egress.control.requests).toBe(ingress.control.requests);
    expect(egress.control.injected).toBe(0);
    // The service has no fallback: every canary call failed for the caller, no control call did.
    expect(ingress.canary.error).toBe(ingress.canary.requests);
    expect(failed).toBe(ingress.canary.requests);
    expect(view.arms.canary.requests).toBe(ingress.canary.requests);
    const m = await scrape(fl.admin);
    expect(
      metricSum(m, 'faultline_experiment_requests_total', {
        experiment: 'auth-abort',
        group: 'canary',
        listener: 'egress',
      }),
    ).toBe(egress.canary.requests);
  });
});

describe('manual kill switch, persistence, reload', () => {
  it('kill via the admin API stops injection for the next request; re-arm resumes it', async () => {
    const up = await echo();
    const fl = await faultline(oneRoute(up.url, [exp({ split: { percent: 50, allow_above_cap: true } })]));
    const before = await Promise.all(Array.from({ length: 40 }, () => get(fl.url())));
    expect(before.some((r) => r.status === 503)).toBe(true);
    const k = await fetch(`${fl.admin}/experiments/e1/kill`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'pager went off' }),
    });
    expect(k.status).toBe(200);
    const after = await Promise.all(Array.from({ length: 200 }, () => get(fl.url())));
    expect(after.every((r) => r.status === 200)).toBe(true);
    expect(after.every((r) => !String(r.headers['x-seen-baggage']).includes('faultline'))).toBe(true);
    const view = (await (await fetch(`${fl.admin}/experiments/e1`)).json()) as {
      state: string;
      ended: { reason: string; cause: string };
    };
    expect(view.state).toBe('killed');
    expect(view.ended).toMatchObject({ reason: 'pager went off', cause: 'manual' });
    expect(
      (
        await fetch(`${fl.admin}/experiments/e1/kill`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
        })
      ).status,
    ).toBe(409);
    expect(
      (
        await fetch(`${fl.admin}/experiments/e1/arm`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
        })
      ).status,
    ).toBe(200);
    const rearmed = await Promise.all(Array.from({ length: 40 }, () => get(fl.url())));
    expect(rearmed.some((r) => r.status === 503)).toBe(true);
    const m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_kill_switch_trips_total', { experiment: 'e1', reason: 'manual' })).toBe(1);
    // Every other reason is exported at 0 from the start (so increase() sees a first trip of any kind).
    const reasons = [...m.keys()]
      .filter((k) => k.startsWith('faultline_kill_switch_trips_total{') && k.includes('experiment="e1"'))
      .map((k) => /reason="(\w+)"/.exec(k)?.[1])
      .sort();
    expect(reasons).toEqual(['duration', 'global_error_rate', 'guardrail', 'manual', 'stop_condition']);
  });

  it('a kill releases held faults at once', async () => {
    const up = await echo();
    const fl = await faultline(
      oneRoute(up.url, [
        exp({ split: { percent: 50, allow_above_cap: true }, fault: { kind: 'latency', ms: 20_000 } }),
      ]),
    );
    const t0 = performance.now();
    const pending = Promise.all(Array.from({ length: 20 }, () => get(fl.url())));
    await new Promise((r) => setTimeout(r, 300));
    await fetch(`${fl.admin}/kill`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"reason":"stop"}',
    });
    const rs = await pending;
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(rs.every((r) => r.status === 200)).toBe(true);
  });

  it('the CLI kills every experiment; the killed state survives a restart', async () => {
    const up = await echo();
    const cfg = oneRoute(up.url, [
      exp({ split: { percent: 50, allow_above_cap: true } }),
      exp({ id: 'e2', match: { listener: 'ingress', route: 'api', path_prefix: '/two' } }),
    ]);
    const fl = await startFaultline(cfg);
    const cli = runCli(['kill', '--all', '--admin', fl.admin, '--reason', 'incident 42']);
    expect(await cli.exited).toBe(0);
    expect(cli.stdout()).toContain('e1');
    const after = await Promise.all(Array.from({ length: 100 }, () => get(fl.url())));
    expect(after.every((r) => r.status === 200)).toBe(true);
    await fl.stop();

    const again = await faultline(cfg, { stateDir: fl.stateDir });
    const view = (await (await fetch(`${again.admin}/experiments/e1`)).json()) as {
      state: string;
      ended: { reason: string };
    };
    expect(view.state).toBe('killed');
    expect(view.ended.reason).toBe('incident 42');
    const rs = await Promise.all(Array.from({ length: 100 }, () => get(again.url())));
    expect(rs.every((r) => r.status === 200)).toBe(true);
    const status = runCli(['status', '--admin', again.admin]);
    expect(await status.exited).toBe(0);
    expect(status.stdout()).toMatch(/e1\s+killed/);
    const arm = runCli(['arm', 'e1', '--admin', again.admin]);
    expect(await arm.exited).toBe(0);
    const rearmed = await Promise.all(Array.from({ length: 40 }, () => get(again.url())));
    expect(rearmed.some((r) => r.status === 503)).toBe(true);
    cleanup.push(() => removeDir(fl.stateDir));
  });

  it('an invalid reload keeps the running config and says why; a valid one keeps unchanged experiments counting', async () => {
    const up = await echo();
    const cfg = oneRoute(up.url, [exp({ split: { percent: 50, allow_above_cap: true } })]);
    const fl = await faultline(cfg);
    await Promise.all(Array.from({ length: 50 }, () => get(fl.url())));
    const count = async () =>
      (
        (await (await fetch(`${fl.admin}/experiments/e1`)).json()) as {
          arms: { canary: { requests: number }; control: { requests: number } };
        }
      ).arms;

    const original = await readFile(fl.configFile, 'utf8');
    await writeFile(fl.configFile, 'listeners:\n  - name: ingress\n    port: 0\n    routes: []\n');
    const bad = await fl.fl.reload();
    expect(bad.status).toBe('invalid');
    expect(JSON.stringify(bad.error?.issues)).toContain('listeners[0].routes');
    const status = (await (await fetch(`${fl.admin}/config`)).json()) as { status: string };
    expect(status.status).toBe('invalid');
    expect([200, 503]).toContain((await get(fl.url())).status);
    let m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_config_reloads_total', { result: 'invalid' })).toBe(1);
    expect(metricSum(m, 'faultline_config_last_reload_successful')).toBe(0);

    const before = await count();
    await writeFile(fl.configFile, original);
    const good = await fl.fl.reload();
    expect(good.status, JSON.stringify(good.error)).toBe('ok');
    expect(await count()).toEqual(before);
    expect(before.canary.requests + before.control.requests).toBeGreaterThan(0);
    m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_config_last_reload_successful')).toBe(1);
  });

  it('a reload that replaces the upstream pool keeps it open for faults still held', async () => {
    const up = await echo();
    const fl = await faultline(
      oneRoute(up.url, [
        exp({ split: { percent: 50, allow_above_cap: true }, fault: { kind: 'latency', ms: 1500 } }),
      ]),
    );
    const pending = Promise.all(Array.from({ length: 20 }, () => get(fl.url())));
    await new Promise((r) => setTimeout(r, 300));
    const cfg = (await import('yaml')).parse(await readFile(fl.configFile, 'utf8')) as {
      listeners: { routes: Record<string, unknown>[] }[];
    };
    cfg.listeners[0]!.routes[0]!['max_connections'] = 64; // a new pool key
    await writeFile(fl.configFile, stringify(cfg));
    expect((await fl.fl.reload()).status).toBe('ok');
    const rs = await pending;
    expect(rs.map((r) => r.status)).toEqual(Array.from({ length: 20 }, () => 200));
    expect(rs.some((r) => r.headers['x-faultline-injected'] !== undefined)).toBe(true);
  });

  it('reloads when the config file is replaced (file watch)', async () => {
    const up = await echo();
    const fl = await startFaultline(oneRoute(up.url, []), { watch: true });
    cleanup.push(() => fl.stop());
    const original = (await import('yaml')).parse(await readFile(fl.configFile, 'utf8')) as Record<
      string,
      unknown
    >;
    const tmp = `${fl.configFile}.new`;
    await writeFile(tmp, stringify({ ...original, experiments: [exp({ id: 'watched' })] }));
    await rename(tmp, fl.configFile);
    const until = Date.now() + 5000;
    let ids: string[] = [];
    while (Date.now() < until && ids.length === 0) {
      await new Promise((r) => setTimeout(r, 100));
      ids = (
        (await (await fetch(`${fl.admin}/experiments`)).json()) as { experiments: { id: string }[] }
      ).experiments.map((e) => e.id);
    }
    expect(ids).toEqual(['watched']);
  });

  it('guards mutating admin calls with a bearer token when one is set', async () => {
    const up = await echo();
    const fl = await faultline({
      ...oneRoute(up.url, [exp({})]),
      admin: { address: '127.0.0.1', port: 0, token: 'a-very-long-admin-token' },
    });
    expect((await fetch(`${fl.admin}/kill`, { method: 'POST' })).status).toBe(401);
    expect(
      (
        await fetch(`${fl.admin}/kill`, {
          method: 'POST',
          headers: { authorization: 'Bearer wrong-token-wrong-token' },
        })
      ).status,
    ).toBe(401);
    expect((await fetch(`${fl.admin}/experiments`)).status).toBe(200);
    const ok = await fetch(`${fl.admin}/kill`, {
      method: 'POST',
      headers: { authorization: 'Bearer a-very-long-admin-token', 'content-type': 'application/json' },
    });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { killed: string[] }).killed).toEqual(['e1']);
  });
});

/** Finds a sticky user whose response satisfies `pred` (i.e. lands in the canary arm). */
async function findUser(
  url: string,
  pred: (r: { status: number; headers: Record<string, unknown> }) => boolean,
  tries = 200,
): Promise<string> {
  for (let i = 0; i < tries; i++) {
    const user = `user-${i}`;
    const r = await get(url, { 'x-user': user });
    if (pred(r)) return user;
  }
  throw new Error('no canary user found');
}
