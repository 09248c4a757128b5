/**
 * gRPC faults through the experiment model, seen by a real @grpc/grpc-js client: abort with a
 * grpc-status (trailers-only), latency, timeout at the caller's own deadline, RST_STREAM of one call
 * on a shared connection; cancellation in both directions.
 */
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  echoClient,
  grpc,
  startGrpcServer,
  unary,
  type EchoClient,
  type EchoReply,
  type GrpcServer,
} from '../helpers/grpc.js';
import { stickyKeyIn } from '../helpers/sticky.js';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { metricSum, scrape } from '../helpers/servers.js';

const canaryKey = (id: string, percent: number, prefix: string) => stickyKeyIn('canary', id, percent, prefix);
const controlKey = (id: string, percent: number, prefix: string) =>
  stickyKeyIn('control', id, percent, prefix);

function md(entries: Record<string, string>): grpc.Metadata {
  const m = new grpc.Metadata();
  for (const [k, v] of Object.entries(entries)) m.set(k, v);
  return m;
}

const grpcRoute = (name: string, upstream: string) => ({
  name,
  path_prefix: '/',
  upstream,
  upstream_protocol: 'h2c',
});
const h2cListener = (name: string, upstream: string, routeName = 'echo') => ({
  name,
  address: '127.0.0.1',
  port: 0,
  protocol: 'h2c',
  routes: [grpcRoute(routeName, upstream)],
});

let upstream: GrpcServer;
/** Raw HTTP/2 upstream that misbehaves on purpose: resets streams before or after a message. */
let rawUpstream: http2.Http2Server;
let fl: TestFaultline;
const clients: EchoClient[] = [];
const client = (listener: string) => {
  const c = echoClient(`127.0.0.1:${fl.fl.port(listener)}`);
  clients.push(c);
  return c;
};

/** One gRPC length-prefixed message of an EchoReply with `message` (field 1) set. */
function frame(message: string): Buffer {
  const text = Buffer.from(message);
  const proto = Buffer.concat([Buffer.from([0x0a, text.length]), text]);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(proto.length, 1);
  return Buffer.concat([head, proto]);
}

beforeAll(async () => {
  upstream = await startGrpcServer();
  rawUpstream = http2.createServer();
  rawUpstream.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    const mode = headers['x-mode'];
    if (mode === 'reset-before') {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
    stream.write(frame('first'));
    // destroy() sends RST_STREAM(INTERNAL_ERROR) at once; close() would end the stream first.
    setTimeout(() => stream.destroy(new Error('upstream crashed mid-stream')), 50);
  });
  await new Promise<void>((r) => rawUpstream.listen(0, '127.0.0.1', r));
  const raw = `http://127.0.0.1:${(rawUpstream.address() as AddressInfo).port}`;
  const up = `http://${upstream.address}`;
  fl = await startFaultline({
    listeners: [
      h2cListener('abort', up),
      h2cListener('deadline', up),
      h2cListener('configured', up),
      h2cListener('reset', up),
      h2cListener('latency', up),
      h2cListener('plain', up),
      h2cListener('raw', raw, 'raw'),
      h2cListener('down', 'http://127.0.0.1:1', 'down'),
    ],
    experiments: [
      {
        id: 'grpc-unavailable',
        hypothesis: 'Clients retry UNAVAILABLE and users see no error.',
        match: { listener: 'abort', route: 'echo' },
        split: { percent: 5 },
        fault: { kind: 'abort', grpc_status: 'UNAVAILABLE', message: 'injected' },
      },
      {
        id: 'grpc-deadline',
        hypothesis: 'A dependency that never answers costs callers no more than their deadline.',
        match: { listener: 'deadline' },
        split: { percent: 50, allow_above_cap: true, sticky: 'header:x-user' },
        fault: { kind: 'timeout', ms: 20_000 },
      },
      {
        id: 'grpc-configured',
        hypothesis: 'A configured timeout shorter than the deadline answers DEADLINE_EXCEEDED first.',
        match: { listener: 'configured' },
        split: { percent: 50, allow_above_cap: true, sticky: 'header:x-user' },
        fault: { kind: 'timeout', ms: 150 },
      },
      {
        id: 'grpc-reset',
        hypothesis: 'One reset stream does not disturb the other calls on the connection.',
        match: { listener: 'reset', headers: { 'x-chaos': 'reset' } },
        split: { percent: 50, allow_above_cap: true, sticky: 'header:x-user' },
        fault: { kind: 'reset' },
      },
      {
        id: 'grpc-latency',
        hypothesis: 'A 200 ms slower dependency keeps calls within their deadline.',
        match: { listener: 'latency' },
        split: { percent: 50, allow_above_cap: true, sticky: 'header:x-user' },
        fault: { kind: 'latency', ms: 200 },
      },
    ],
  });
});

afterAll(async () => {
  for (const c of clients) c.close();
  await fl?.stop();
  await upstream?.close();
  rawUpstream?.close();
  if (fl) await removeDir(fl.stateDir);
});

describe('gRPC faults', () => {
  it('a 5% abort experiment: the grpc-js client sees UNAVAILABLE "injected" at 5% (99.9% binomial interval)', async () => {
    const c = client('abort');
    const n = 2000;
    let unavailable = 0;
    let ok = 0;
    let marked = 0;
    let next = 0;
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (next++ < n) {
          const r = await unary(c, { message: 'x' });
          if (r.err === null) ok++;
          else if (r.err.code === grpc.status.UNAVAILABLE && r.err.details === 'injected') {
            unavailable++;
            if (String(r.status.metadata.get('x-faultline-injected')[0]).startsWith('grpc-unavailable'))
              marked++;
          }
        }
      }),
    );
    expect(ok + unavailable).toBe(n);
    // Binomial(2000, 0.05): mean 100, sd 9.75; +-3.29 sd is the two-sided 99.9% interval.
    const sd = Math.sqrt(n * 0.05 * 0.95);
    expect(unavailable).toBeGreaterThanOrEqual(Math.floor(100 - 3.29 * sd));
    expect(unavailable).toBeLessThanOrEqual(Math.ceil(100 + 3.29 * sd));
    expect(marked).toBe(unavailable);
    // Injected calls never reached the upstream.
    expect(upstream.calls.get('Unary') ?? 0).toBeGreaterThanOrEqual(ok);

    const m = await scrape(fl.admin);
    const codes = (code: string) =>
      metricSum(m, 'faultline_grpc_responses_total', { listener: 'abort', grpc_code: code });
    expect(codes('UNAVAILABLE')).toBe(unavailable);
    expect(codes('OK')).toBe(ok);
    expect(metricSum(m, 'faultline_faults_injected_total', { experiment: 'grpc-unavailable' })).toBe(
      unavailable,
    );
    // Outcomes are recorded from grpc-status, not from the HTTP 200 every gRPC reply carries.
    expect(
      metricSum(m, 'faultline_experiment_requests_total', {
        experiment: 'grpc-unavailable',
        group: 'canary',
        outcome: 'error',
      }),
    ).toBe(unavailable);
    expect(
      metricSum(m, 'faultline_experiment_requests_total', {
        experiment: 'grpc-unavailable',
        group: 'control',
        outcome: 'error',
      }),
    ).toBe(0);
  });

  it("timeout: DEADLINE_EXCEEDED at the caller's own deadline when it is earlier than the configured ms", async () => {
    const c = client('deadline');
    const key = canaryKey('grpc-deadline', 50, 'u');
    const t0 = performance.now();
    const r = await unary(c, { message: 'x' }, md({ 'x-user': key }), { deadline: Date.now() + 400 });
    const ms = performance.now() - t0;
    expect(r.err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(ms).toBeGreaterThanOrEqual(390);
    expect(ms).toBeLessThan(1500);
    // The control arm, same deadline, is untouched.
    const ctl = await unary(c, { message: 'y' }, md({ 'x-user': controlKey('grpc-deadline', 50, 'u') }), {
      deadline: Date.now() + 400,
    });
    expect(ctl.err).toBeNull();

    await new Promise((res) => setTimeout(res, 100));
    const m = await scrape(fl.admin);
    expect(
      metricSum(m, 'faultline_experiment_requests_total', {
        experiment: 'grpc-deadline',
        group: 'canary',
        outcome: 'timeout',
      }),
    ).toBe(1);
    expect(
      metricSum(m, 'faultline_grpc_responses_total', {
        listener: 'deadline',
        grpc_code: 'DEADLINE_EXCEEDED',
      }),
    ).toBe(1);
    expect(metricSum(m, 'faultline_active_faults', { experiment: 'grpc-deadline' })).toBe(0);
  });

  it('timeout: DEADLINE_EXCEEDED from the proxy at the configured ms when that is earlier (trailers-only)', async () => {
    const c = client('configured');
    const key = canaryKey('grpc-configured', 50, 'u');
    const t0 = performance.now();
    const r = await unary(c, { message: 'x' }, md({ 'x-user': key }), { deadline: Date.now() + 5000 });
    const ms = performance.now() - t0;
    expect(r.err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(r.err?.details).toBe('injected fault: deadline exceeded');
    expect(String(r.status.metadata.get('x-faultline-injected')[0])).toContain('grpc-configured');
    expect(ms).toBeGreaterThanOrEqual(145);
    expect(ms).toBeLessThan(1000);
    const m = await scrape(fl.admin);
    expect(
      metricSum(m, 'faultline_experiment_requests_total', {
        experiment: 'grpc-configured',
        group: 'canary',
        outcome: 'timeout',
      }),
    ).toBe(1);
  });

  it('reset: RST_STREAM on the one faulted call while 50 concurrent calls on the same connection succeed', async () => {
    const c = client('reset');
    const key = canaryKey('grpc-reset', 50, 'u');
    const others = Array.from({ length: 50 }, (_, i) =>
      unary(c, { message: `ok ${i}`, delay_ms: 50 }, md({ 'x-user': `other-${i}` })),
    );
    const victim = unary(c, { message: 'victim' }, md({ 'x-user': key, 'x-chaos': 'reset' }));
    const [v, ...rest] = await Promise.all([victim, ...others]);
    expect(v?.err?.code).toBe(grpc.status.CANCELLED);
    expect(rest.every((r) => r.err === null)).toBe(true);
    expect(rest.map((r) => r.reply?.message)).toEqual(Array.from({ length: 50 }, (_, i) => `ok ${i}`));
    const m = await scrape(fl.admin);
    // One channel, one HTTP/2 connection to the listener: the reset did not close it.
    expect(metricSum(m, 'faultline_open_connections', { listener: 'reset' })).toBe(1);
    expect(
      metricSum(m, 'faultline_experiment_requests_total', {
        experiment: 'grpc-reset',
        group: 'canary',
        outcome: 'reset',
      }),
    ).toBe(1);
    expect(metricSum(m, 'faultline_grpc_responses_total', { listener: 'reset', grpc_code: 'OK' })).toBe(50);
    expect(metricSum(m, 'faultline_grpc_responses_total', { listener: 'reset', grpc_code: 'none' })).toBe(1);
    // A call after the reset still works on the same channel.
    expect((await unary(c, { message: 'after' })).err).toBeNull();
  });
});

describe('gRPC cancellation', () => {
  it('client cancel reaches the upstream as a cancelled call (unary and server streaming)', async () => {
    const c = client('plain');
    const call = c.Unary({ message: 'hang' }, md({ 'x-hang': '1' }), {}, () => undefined);
    const stream = c.ServerStream({ count: 1_000_000, payload: Buffer.alloc(1024) }, new grpc.Metadata());
    let got = 0;
    stream.on('data', () => {
      if (++got === 10) stream.cancel();
    });
    stream.on('error', () => undefined);
    await new Promise((r) => setTimeout(r, 150));
    call.cancel();
    const until = Date.now() + 3000;
    while (
      Date.now() < until &&
      !(upstream.cancelled.includes('Unary') && upstream.cancelled.includes('ServerStream'))
    )
      await new Promise((r) => setTimeout(r, 20));
    expect(upstream.cancelled).toContain('Unary');
    expect(upstream.cancelled).toContain('ServerStream');
    const m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_grpc_responses_total', { listener: 'plain', grpc_code: 'none' })).toBe(2);
    expect(metricSum(m, 'faultline_grpc_responses_total', { listener: 'plain', grpc_code: 'OK' })).toBe(0);
  });

  it('an upstream reset reaches the client as a reset, never as OK (before and after the first message)', async () => {
    const c = client('raw');
    const before = await unary(c, { message: 'x' }, md({ 'x-mode': 'reset-before' }));
    expect(before.err?.code).toBe(grpc.status.CANCELLED);

    const stream = c.ServerStream({ count: 5 }, md({ 'x-mode': 'reset-after' }));
    const got: EchoReply[] = [];
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      stream.on('data', (m: EchoReply) => got.push(m));
      stream.on('status', resolve);
      stream.on('error', () => undefined);
    });
    expect(got.map((m) => m.message)).toEqual(['first']);
    expect(status.code).toBe(grpc.status.INTERNAL);
    const m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_grpc_responses_total', { listener: 'raw', grpc_code: 'OK' })).toBe(0);
    expect(metricSum(m, 'faultline_grpc_responses_total', { listener: 'raw', grpc_code: 'none' })).toBe(2);
    expect(metricSum(m, 'faultline_upstream_errors_total', { route: 'raw', kind: 'reset' })).toBe(2);
  });

  it('an unreachable upstream is UNAVAILABLE (trailers-only), not an HTTP error page', async () => {
    const c = client('down');
    const r = await unary(c, { message: 'x' });
    expect(r.err?.code).toBe(grpc.status.UNAVAILABLE);
    expect(r.status.metadata.get('x-faultline-error')).toEqual(['upstream_refused']);
    const m = await scrape(fl.admin);
    expect(
      metricSum(m, 'faultline_grpc_responses_total', { listener: 'down', grpc_code: 'UNAVAILABLE' }),
    ).toBe(1);
    expect(metricSum(m, 'faultline_upstream_errors_total', { route: 'down', kind: 'refused' })).toBe(1);
  });
});
