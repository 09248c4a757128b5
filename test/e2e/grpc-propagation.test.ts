/**
 * Assignment propagation over gRPC metadata, exactly as over HTTP/1.1: an untrusted h2c ingress splits
 * and tags `baggage`, a trusted h2c egress honours the tag and injects UNAVAILABLE for canary calls; a
 * client cannot pick its own arm at the edge.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  echoClient,
  grpc,
  startGrpcServer,
  unary,
  type EchoClient,
  type GrpcServer,
} from '../helpers/grpc.js';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { metricSum, scrape } from '../helpers/servers.js';

let upstream: GrpcServer;
let fl: TestFaultline;
const clients: EchoClient[] = [];

beforeAll(async () => {
  upstream = await startGrpcServer();
  // Start with the ingress pointing anywhere; the egress port is known only once it listens.
  const config = (egressPort: number) => ({
    listeners: [
      {
        name: 'egress',
        port: 0,
        protocol: 'h2c',
        trust_assignment: true,
        routes: [{ name: 'echo', upstream: `http://${upstream.address}`, upstream_protocol: 'h2c' }],
      },
      {
        name: 'ingress',
        port: 0,
        protocol: 'h2c',
        routes: [{ name: 'api', upstream: `http://127.0.0.1:${egressPort}`, upstream_protocol: 'h2c' }],
      },
    ],
    experiments: [
      {
        id: 'dep-unavailable',
        hypothesis: 'Callers survive the dependency answering UNAVAILABLE.',
        match: { listener: 'ingress', route: 'api' },
        split: { percent: 20, allow_above_cap: true },
        inject: 'downstream',
        fault: { kind: 'abort', grpc_status: 'UNAVAILABLE', message: 'injected downstream' },
        // The callers here have no retry, so the guardrail would rightly trip; keep it from deciding.
        min_samples: 1_000_000,
      },
    ],
  });
  const probe = await startFaultline(config(1));
  const egressPort = probe.fl.port('egress');
  await probe.stop();
  fl = await startFaultline({
    ...config(egressPort),
    listeners: config(egressPort).listeners.map((l) =>
      l.name === 'egress' ? { ...l, port: egressPort } : l,
    ),
  });
});

afterAll(async () => {
  for (const c of clients) c.close();
  await fl.stop();
  await upstream.close();
  await removeDir(fl.stateDir);
});

const client = (listener: string) => {
  const c = echoClient(`127.0.0.1:${fl.fl.port(listener)}`);
  clients.push(c);
  return c;
};

describe('gRPC assignment propagation', () => {
  it('the ingress tags, the trusted egress injects for canary only; both hops count the same arms', async () => {
    const c = client('ingress');
    const n = 1000;
    const results = await Promise.all(Array.from({ length: n }, () => unary(c, { message: 'hi' })));
    const unavailable = results.filter((r) => r.status.code === grpc.status.UNAVAILABLE);
    const ok = results.filter((r) => r.status.code === grpc.status.OK);
    expect(unavailable.length + ok.length).toBe(n);
    expect(unavailable.every((r) => r.status.details === 'injected downstream')).toBe(true);
    // 20% canary: 99.9% binomial interval.
    expect(Math.abs(unavailable.length - 0.2 * n)).toBeLessThan(3.29 * Math.sqrt(n * 0.2 * 0.8));

    const view = (await (await fetch(`${fl.admin}/experiments/dep-unavailable`)).json()) as {
      hops: Record<
        string,
        { canary: { requests: number; injected: number; error: number }; control: { requests: number } }
      >;
    };
    const ingress = view.hops['ingress']!;
    const egress = view.hops['egress']!;
    expect(egress.canary.requests).toBe(unavailable.length);
    expect(egress.canary.injected).toBe(unavailable.length);
    expect(ingress.canary.requests).toBe(unavailable.length);
    expect(ingress.canary.injected).toBe(0);
    // Outcomes come from grpc-status, not the HTTP status (200): canary calls are errors at both hops.
    expect(ingress.canary.error).toBe(unavailable.length);
    expect(egress.control.requests).toBe(ingress.control.requests);
    const m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_faults_injected_total', { experiment: 'dep-unavailable' })).toBe(
      unavailable.length,
    );
  });

  it('a client cannot put itself into the canary at the edge; a trusted hop honours the tag', async () => {
    const forged = new grpc.Metadata();
    forged.set('baggage', 'faultline.exp=dep-unavailable,faultline.group=canary,tenant=acme');
    const edge = await Promise.all(
      Array.from({ length: 50 }, () => unary(client('ingress'), { message: 'x' }, forged)),
    );
    // Only the ingress's own 20% draw can inject; 50 forged calls would all fail if the tag were honoured.
    expect(edge.filter((r) => r.status.code === grpc.status.UNAVAILABLE).length).toBeLessThan(25);
    const direct = await unary(client('egress'), { message: 'x' }, forged);
    expect(direct.status.code).toBe(grpc.status.UNAVAILABLE);
  });
});
