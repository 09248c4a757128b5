/**
 * In-process mode end to end, with real servers: an application hosts Faultline itself (inbound
 * handler wrapper + undici / grpc-js interceptors). A fragile app gets its experiment killed (refuted),
 * a resilient one runs to `held`, and an in-process app shares one experiment with a Faultline egress
 * proxy in front of its dependency.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request, type Dispatcher } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createFaultline, type InProcessFaultline } from '../../src/inprocess/index.js';
import { echoClient, startGrpcServer, unary, type GrpcServer } from '../helpers/grpc.js';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { metricSum, scrape, startUpstream, type Upstream } from '../helpers/servers.js';

let dependency: Upstream;
let grpcUpstream: GrpcServer;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  dependency = await startUpstream((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'x-seen-baggage': req.headers['baggage'] ?? '' });
    res.end('dependency');
  });
  grpcUpstream = await startGrpcServer();
});

afterAll(async () => {
  await dependency.close();
  await grpcUpstream.close();
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function inProcess(config: Record<string, unknown>): Promise<InProcessFaultline> {
  const stateDir = await mkdtemp(join(tmpdir(), 'faultline-inproc-'));
  const fl = await createFaultline({
    config: { state_dir: stateDir, admin: { address: '127.0.0.1', port: 0 }, ...config },
  });
  cleanups.push(async () => {
    await fl.close();
    await removeDir(stateDir);
  });
  return fl;
}

const checkoutExperiment = (over: Record<string, unknown> = {}) => ({
  id: 'dep-down',
  hypothesis: 'checkout keeps answering 200 when its dependency fails',
  match: { listener: 'checkout' },
  split: { percent: 25, allow_above_cap: true },
  inject: 'downstream',
  fault: { kind: 'abort', status: 503 },
  guardrails: [{ metric: 'error_rate' }],
  min_samples: 30,
  ...over,
});

const points = [
  { name: 'checkout', role: 'inbound' },
  { name: 'dep', role: 'outbound' },
];

/** Sends `n` GETs to `url`, `concurrency` at a time; returns the statuses. */
async function load(url: string, n: number, concurrency = 8): Promise<number[]> {
  const out: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        const res = await request(url);
        await res.body.text();
        out.push(res.statusCode);
      }
    }),
  );
  return out;
}

async function report(admin: string, id: string): Promise<{ verdict: string; state: string }> {
  const res = await fetch(`${admin}/experiments/${id}/report`);
  return (await res.json()) as { verdict: string; state: string };
}

describe('in-process mode', () => {
  it('a fragile app (no fallback on its dependency) gets its experiment killed: refuted', async () => {
    const fl = await inProcess({ points, experiments: [checkoutExperiment()] });
    const dispatcher = new Agent().compose(fl.undiciInterceptor('dep'));
    cleanups.push(() => dispatcher.close());
    const app = await listen(
      fl.inbound('checkout', (_req, res) => {
        void (async () => {
          const dep = await request(`${dependency.url}/price`, { dispatcher });
          const body = await dep.body.text();
          res.writeHead(dep.statusCode === 200 ? 200 : 500);
          res.end(body);
        })();
      }),
    );
    const statuses = await load(`${app}/checkout`, 600);
    expect(statuses.filter((s) => s === 500).length).toBeGreaterThan(0);
    const admin = `http://127.0.0.1:${(await fl.admin.listen(0, '127.0.0.1')).port}`;
    const r = await report(admin, 'dep-down');
    expect(r.state).toBe('killed');
    expect(r.verdict).toBe('refuted');
    // Kill effective on the next call: nothing is injected after it.
    const m1 = metricSum(await scrape(admin), 'faultline_faults_injected_total', { experiment: 'dep-down' });
    const after = await load(`${app}/checkout`, 100);
    expect(after.every((s) => s === 200)).toBe(true);
    const m2 = metricSum(await scrape(admin), 'faultline_faults_injected_total', { experiment: 'dep-down' });
    expect(m2).toBe(m1);
    // Counted per hop: the inbound observed, the outbound injected.
    const m = await scrape(admin);
    expect(
      metricSum(m, 'faultline_experiment_requests_total', { group: 'canary', listener: 'checkout' }),
    ).toBeGreaterThan(0);
    expect(
      metricSum(m, 'faultline_experiment_requests_total', { group: 'canary', listener: 'dep' }),
    ).toBeGreaterThan(0);
  });

  it('a resilient app (timeout + fallback) runs to held', async () => {
    const fl = await inProcess({ points, experiments: [checkoutExperiment({ duration: '3s' })] });
    const dispatcher = new Agent().compose(fl.undiciInterceptor('dep'));
    cleanups.push(() => dispatcher.close());
    const app = await listen(
      fl.inbound('checkout', (_req, res) => {
        void (async () => {
          let price = 'cached-price';
          try {
            const dep = await request(`${dependency.url}/price`, {
              dispatcher,
              headersTimeout: 200,
            });
            const body = await dep.body.text();
            if (dep.statusCode === 200) price = body;
          } catch {
            // fallback
          }
          res.writeHead(200);
          res.end(price);
        })();
      }),
    );
    const statuses = await load(`${app}/checkout`, 500);
    expect(statuses.every((s) => s === 200)).toBe(true);
    const admin = `http://127.0.0.1:${(await fl.admin.listen(0, '127.0.0.1')).port}`;
    const deadline = Date.now() + 6000;
    let r = await report(admin, 'dep-down');
    while (r.state === 'running' && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 200));
      r = await report(admin, 'dep-down');
    }
    expect(r.state).toBe('expired');
    expect(r.verdict).toBe('held');
    const m = await scrape(admin);
    expect(metricSum(m, 'faultline_faults_injected_total', { experiment: 'dep-down' })).toBeGreaterThan(50);
  });

  it('grpc-js interceptor: canary calls get the status fault, control and untouched calls reach the server', async () => {
    const fl = await inProcess({
      points: [
        { name: 'checkout', role: 'inbound' },
        { name: 'ledger', role: 'outbound' },
      ],
      experiments: [
        checkoutExperiment({
          fault: { kind: 'abort', grpc_status: 'UNAVAILABLE', message: 'ledger down' },
          split: { percent: 50, allow_above_cap: true },
          min_samples: 1000,
        }),
      ],
    });
    const client = echoClient(grpcUpstream.address, { interceptors: [fl.grpcInterceptor('ledger')] });
    cleanups.push(async () => client.close());
    const app = await listen(
      fl.inbound('checkout', (_req, res) => {
        void unary(client, { message: 'hi' }).then(({ status }) => {
          res.writeHead(200, { 'x-grpc-code': String(status.code) });
          res.end(status.details);
        });
      }),
    );
    const codes: string[] = [];
    for (let i = 0; i < 80; i++) {
      const res = await request(`${app}/`);
      await res.body.text();
      codes.push(String(res.headers['x-grpc-code']));
    }
    const unavailable = codes.filter((c) => c === '14').length;
    expect(unavailable).toBeGreaterThan(10);
    expect(codes.filter((c) => c === '0').length).toBeGreaterThan(10);
    expect(unavailable + codes.filter((c) => c === '0').length).toBe(80);
    const admin = `http://127.0.0.1:${(await fl.admin.listen(0, '127.0.0.1')).port}`;
    const m = await scrape(admin);
    expect(metricSum(m, 'faultline_faults_injected_total', { experiment: 'dep-down' })).toBe(unavailable);
    expect(
      metricSum(m, 'faultline_experiment_responses_total', {
        listener: 'ledger',
        group: 'canary',
        grpc_code: 'UNAVAILABLE',
      }),
    ).toBe(unavailable);
  });

  it('an in-process app and a Faultline egress proxy share one experiment', async () => {
    const experiment = checkoutExperiment({ inject_at: ['egress'] });
    // The egress proxy in front of the dependency: trusts the assignment and injects.
    const egress: TestFaultline = await startFaultline({
      listeners: [
        {
          name: 'egress',
          port: 0,
          trust_assignment: true,
          routes: [{ name: 'dep', upstream: dependency.url }],
        },
      ],
      points: [{ name: 'checkout', role: 'inbound' }],
      experiments: [experiment],
    });
    cleanups.push(async () => {
      await egress.stop();
      await removeDir(egress.stateDir);
    });
    const fl = await inProcess({
      points: [...points, { name: 'egress', role: 'outbound' }],
      experiments: [experiment],
    });
    const dispatcher: Dispatcher = new Agent().compose(fl.undiciInterceptor('dep'));
    cleanups.push(() => dispatcher.close());
    const app = await listen(
      fl.inbound('checkout', (_req, res) => {
        void (async () => {
          const dep = await request(`${egress.url('egress')}/price`, { dispatcher });
          await dep.body.text();
          res.writeHead(dep.statusCode === 200 ? 200 : 502);
          res.end();
        })();
      }),
    );
    await load(`${app}/checkout`, 600);
    const admin = `http://127.0.0.1:${(await fl.admin.listen(0, '127.0.0.1')).port}`;
    const r = await report(admin, 'dep-down');
    // The app drew the arms and observed; the proxy injected: one experiment across both.
    expect(r.verdict).toBe('refuted');
    const proxyMetrics = await scrape(egress.admin);
    expect(
      metricSum(proxyMetrics, 'faultline_faults_injected_total', { experiment: 'dep-down' }),
    ).toBeGreaterThan(10);
    const appMetrics = await scrape(admin);
    expect(metricSum(appMetrics, 'faultline_faults_injected_total', { experiment: 'dep-down' })).toBe(0);
  });
});
