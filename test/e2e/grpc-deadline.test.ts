/**
 * The gRPC timeout fault is answered by the proxy itself: a raw node:http2 client with no deadline of
 * its own sends a gRPC-shaped call and gets a trailers-only DEADLINE_EXCEEDED (HEADERS with
 * END_STREAM) at the earlier of the caller's grpc-timeout and the fault's `ms`.
 */
import http2 from 'node:http2';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stickyKeyIn } from '../helpers/sticky.js';
import { startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { startGrpcServer, type GrpcServer } from '../helpers/grpc.js';

const canaryKey = (id: string, percent: number, prefix: string) => stickyKeyIn('canary', id, percent, prefix);
const controlKey = (id: string, percent: number, prefix: string) =>
  stickyKeyIn('control', id, percent, prefix);

const h2cListener = (name: string, upstream: string) => ({
  name,
  address: '127.0.0.1',
  port: 0,
  protocol: 'h2c',
  routes: [{ name: 'echo', path_prefix: '/', upstream, upstream_protocol: 'h2c' }],
});

const sticky = { percent: 50, allow_above_cap: true, sticky: 'header:x-user' };

let upstream: GrpcServer;
let fl: TestFaultline;

beforeAll(async () => {
  upstream = await startGrpcServer();
  const up = `http://${upstream.address}`;
  fl = await startFaultline({
    listeners: [h2cListener('long', up), h2cListener('short', up)],
    experiments: [
      {
        id: 'long-hold',
        hypothesis: 'Callers give up at their own deadline.',
        match: { listener: 'long' },
        split: sticky,
        fault: { kind: 'timeout', ms: 5000 },
      },
      {
        id: 'short-hold',
        hypothesis: 'A 300 ms dependency timeout is survivable.',
        match: { listener: 'short' },
        split: sticky,
        fault: { kind: 'timeout', ms: 300 },
      },
    ],
  });
});

afterAll(async () => {
  await fl?.stop();
  await upstream?.close();
});

interface RawResult {
  headers: http2.IncomingHttpHeaders;
  /** The response HEADERS frame carried END_STREAM (trailers-only). */
  endStream: boolean;
  trailers: http2.IncomingHttpHeaders | null;
  data: number;
  /** ms from sending to the response HEADERS. */
  headersAt: number;
}

/** A unary Echo call made by hand: no client deadline anywhere, just HTTP/2 frames. */
function rawUnary(port: number, extra: Record<string, string>): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const t0 = performance.now();
    const stream = session.request({
      ':method': 'POST',
      ':path': '/faultline.test.Echo/Unary',
      'content-type': 'application/grpc',
      te: 'trailers',
      ...extra,
    });
    let result: RawResult | null = null;
    let data = 0;
    stream.on('response', (headers, flags) => {
      result = {
        headers,
        endStream: (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0,
        trailers: null,
        data: 0,
        headersAt: performance.now() - t0,
      };
    });
    stream.on('trailers', (t) => {
      if (result) result.trailers = t;
    });
    stream.on('data', (d: Buffer) => (data += d.length));
    stream.on('error', (e) => {
      session.close();
      reject(e);
    });
    stream.on('close', () => {
      session.close();
      if (result === null) return reject(new Error(`stream closed without a response (${stream.rstCode})`));
      result.data = data;
      resolve(result);
    });
    // One empty EchoRequest: the 5-byte gRPC message prefix (not compressed, length 0).
    stream.end(Buffer.alloc(5));
  });
}

describe('gRPC timeout fault answered by the proxy', () => {
  it("answers DEADLINE_EXCEEDED trailers-only at the caller's grpc-timeout (300m), long before the fault's 5 s", async () => {
    const port = fl.fl.port('long');
    // The same raw call in the control arm reaches the real service: the request is a valid gRPC call.
    const ctl = await rawUnary(port, { 'x-user': controlKey('long-hold', 50, 'u'), 'grpc-timeout': '300m' });
    expect(ctl.headers[':status']).toBe(200);
    expect(ctl.endStream).toBe(false);
    expect(ctl.trailers?.['grpc-status']).toBe('0');

    const calls = upstream.calls.get('Unary') ?? 0;
    const r = await rawUnary(port, { 'x-user': canaryKey('long-hold', 50, 'u'), 'grpc-timeout': '300m' });
    expect(r.headers[':status']).toBe(200);
    expect(r.endStream).toBe(true);
    expect(r.trailers).toBeNull();
    expect(r.data).toBe(0);
    expect(r.headers['content-type']).toMatch(/^application\/grpc/);
    expect(r.headers['grpc-status']).toBe('4');
    expect(String(r.headers['x-faultline-injected'])).toContain('long-hold');
    expect(r.headersAt).toBeGreaterThanOrEqual(290);
    expect(r.headersAt).toBeLessThan(3000);
    // Held without an upstream call.
    expect(upstream.calls.get('Unary') ?? 0).toBe(calls);
  });

  it("without grpc-timeout, answers DEADLINE_EXCEEDED trailers-only at the fault's ms (300)", async () => {
    const port = fl.fl.port('short');
    const calls = upstream.calls.get('Unary') ?? 0;
    const r = await rawUnary(port, { 'x-user': canaryKey('short-hold', 50, 'u') });
    expect(r.headers[':status']).toBe(200);
    expect(r.endStream).toBe(true);
    expect(r.trailers).toBeNull();
    expect(r.data).toBe(0);
    expect(r.headers['grpc-status']).toBe('4');
    expect(r.headersAt).toBeGreaterThanOrEqual(290);
    expect(r.headersAt).toBeLessThan(3000);
    expect(upstream.calls.get('Unary') ?? 0).toBe(calls);
  });
});
