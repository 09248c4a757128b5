/**
 * gRPC failures in the request metrics (issue 11, item 12): every gRPC reply is HTTP 200, so
 * faultline_requests_total and faultline_experiment_responses_total carry a grpc_code label and file
 * a gRPC call under the status class of its code's HTTP mapping (UNAVAILABLE and DEADLINE_EXCEEDED:
 * 5xx). Non-gRPC requests carry grpc_code="". No series is kept for group="none".
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
import { stickyKeyIn } from '../helpers/sticky.js';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { metricSum, scrape, startUpstream, type Upstream } from '../helpers/servers.js';

const h2cListener = (name: string, upstream: string) => ({
  name,
  address: '127.0.0.1',
  port: 0,
  protocol: 'h2c',
  routes: [{ name: 'echo', path_prefix: '/', upstream, upstream_protocol: 'h2c' }],
});

function md(entries: Record<string, string>): grpc.Metadata {
  const m = new grpc.Metadata();
  for (const [k, v] of Object.entries(entries)) m.set(k, v);
  return m;
}

let upstream: GrpcServer;
let http1: Upstream;
let fl: TestFaultline;
const clients: EchoClient[] = [];
const client = (listener: string) => {
  const c = echoClient(`127.0.0.1:${fl.fl.port(listener)}`);
  clients.push(c);
  return c;
};

beforeAll(async () => {
  upstream = await startGrpcServer();
  http1 = await startUpstream((_req, res) => res.end('ok'));
  const up = `http://${upstream.address}`;
  fl = await startFaultline({
    listeners: [
      h2cListener('abort', up),
      h2cListener('deadline', up),
      h2cListener('down', 'http://127.0.0.1:1'),
      h2cListener('plain', up),
      { name: 'web', port: 0, routes: [{ name: 'web', upstream: http1.url }] },
    ],
    experiments: [
      {
        id: 'g-unavailable',
        hypothesis: 'Callers cope with UNAVAILABLE.',
        match: { listener: 'abort' },
        split: { percent: 50, allow_above_cap: true, sticky: 'header:x-user' },
        fault: { kind: 'abort', grpc_status: 'UNAVAILABLE', message: 'injected' },
        exclude_injected: false,
      },
      {
        id: 'g-deadline',
        hypothesis: 'Callers cope with DEADLINE_EXCEEDED.',
        match: { listener: 'deadline' },
        split: { percent: 50, allow_above_cap: true, sticky: 'header:x-user' },
        fault: { kind: 'timeout', ms: 50 },
        exclude_injected: false,
      },
    ],
  });
});

afterAll(async () => {
  for (const c of clients) c.close();
  await fl?.stop();
  await upstream?.close();
  await http1?.close();
  if (fl) await removeDir(fl.stateDir);
});

describe('gRPC codes in the request metrics', () => {
  it('UNAVAILABLE and DEADLINE_EXCEEDED are 5xx with their grpc_code; OK is 2xx; HTTP requests have grpc_code=""', async () => {
    const canary = (id: string) => md({ 'x-user': stickyKeyIn('canary', id, 50, 'u') });
    const control = (id: string) => md({ 'x-user': stickyKeyIn('control', id, 50, 'u') });
    const abort = client('abort');
    const deadline = client('deadline');
    for (let i = 0; i < 3; i++) {
      expect((await unary(abort, { message: 'x' }, canary('g-unavailable'))).err?.code).toBe(
        grpc.status.UNAVAILABLE,
      );
      expect((await unary(abort, { message: 'x' }, control('g-unavailable'))).err).toBeNull();
    }
    for (let i = 0; i < 2; i++) {
      const r = await unary(deadline, { message: 'x' }, canary('g-deadline'), {
        deadline: Date.now() + 5000,
      });
      expect(r.err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      expect((await unary(deadline, { message: 'x' }, control('g-deadline'))).err).toBeNull();
    }
    // proxy-made UNAVAILABLE (refused upstream), and an upstream's own UNAVAILABLE in its trailers
    expect((await unary(client('down'), { message: 'x' })).err?.code).toBe(grpc.status.UNAVAILABLE);
    const plain = client('plain');
    expect((await unary(plain, { message: 'x' }, md({ 'x-fail': '14' }))).err?.code).toBe(
      grpc.status.UNAVAILABLE,
    );
    expect((await unary(plain, { message: 'x' }, md({ 'x-fail': '5' }))).err?.code).toBe(
      grpc.status.NOT_FOUND,
    );
    expect((await fetch(`${fl.url('web')}/`)).status).toBe(200);

    const m = await scrape(fl.admin);
    const req = (labels: Record<string, string>) => metricSum(m, 'faultline_requests_total', labels);
    expect(req({ listener: 'abort', status_class: '5xx', grpc_code: 'UNAVAILABLE' })).toBe(3);
    expect(req({ listener: 'abort', status_class: '2xx', grpc_code: 'OK' })).toBe(3);
    expect(req({ listener: 'abort', status_class: '2xx' })).toBe(3);
    expect(req({ listener: 'deadline', status_class: '5xx', grpc_code: 'DEADLINE_EXCEEDED' })).toBe(2);
    expect(req({ listener: 'deadline', status_class: '2xx' })).toBe(2);
    expect(req({ listener: 'down', status_class: '5xx', grpc_code: 'UNAVAILABLE' })).toBe(1);
    expect(req({ listener: 'plain', status_class: '5xx', grpc_code: 'UNAVAILABLE' })).toBe(1);
    expect(req({ listener: 'plain', status_class: '4xx', grpc_code: 'NOT_FOUND' })).toBe(1);
    expect(req({ listener: 'web', status_class: '2xx', grpc_code: '' })).toBe(1);
    // the documented error query: status_class=~"5xx|error" sees every gRPC server failure
    let errors = 0;
    for (const [key, v] of m)
      if (key.startsWith('faultline_requests_total{') && /status_class="(5xx|error)"/.test(key)) errors += v;
    expect(errors).toBe(3 + 2 + 1 + 1);

    const resp = (labels: Record<string, string>) =>
      metricSum(m, 'faultline_experiment_responses_total', labels);
    expect(
      resp({ experiment: 'g-unavailable', group: 'canary', status_class: '5xx', grpc_code: 'UNAVAILABLE' }),
    ).toBe(3);
    expect(
      resp({ experiment: 'g-unavailable', group: 'control', status_class: '2xx', grpc_code: 'OK' }),
    ).toBe(3);
    expect(
      resp({
        experiment: 'g-deadline',
        group: 'canary',
        status_class: '5xx',
        grpc_code: 'DEADLINE_EXCEEDED',
      }),
    ).toBe(2);
    expect(resp({ experiment: 'g-deadline', group: 'control', status_class: '2xx', grpc_code: 'OK' })).toBe(
      2,
    );
    // the arm counts in the admin JSON use the same classes
    const st = (await (await fetch(`${fl.admin}/experiments/g-unavailable`)).json()) as {
      arms: Record<string, { status_classes: Record<string, number> }>;
    };
    expect(st.arms['canary']?.status_classes).toMatchObject({ '2xx': 0, '5xx': 3 });

    // no always-zero group="none" series in any experiment family
    const none = [...m.keys()].filter(
      (k) => k.startsWith('faultline_experiment_') && k.includes('group="none"'),
    );
    expect(none).toEqual([]);
  });
});
