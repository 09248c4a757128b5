/**
 * gRPC pass-through: real @grpc/grpc-js server and clients, Faultline in between (h2c listener, h2c
 * upstream). Metadata, trailers (text and -bin), grpc-timeout and every call kind must arrive intact.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  echoClient,
  grpc,
  sha256,
  startGrpcServer,
  streamPayload,
  TRAILER_BIN,
  TRAILER_TEXT,
  unary,
  type EchoClient,
  type EchoReply,
  type GrpcServer,
} from '../helpers/grpc.js';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { metricSum, scrape } from '../helpers/servers.js';

let upstream: GrpcServer;
let fl: TestFaultline;
let client: EchoClient;

beforeAll(async () => {
  upstream = await startGrpcServer();
  fl = await startFaultline({
    listeners: [
      {
        name: 'grpc',
        address: '127.0.0.1',
        port: 0,
        protocol: 'h2c',
        routes: [
          {
            name: 'echo',
            path_prefix: '/',
            upstream: `http://${upstream.address}`,
            upstream_protocol: 'h2c',
          },
        ],
      },
    ],
  });
  client = echoClient(`127.0.0.1:${fl.fl.port('grpc')}`);
});

afterAll(async () => {
  client?.close();
  await fl?.stop();
  await upstream?.close();
  if (fl) await removeDir(fl.stateDir);
});

describe('gRPC pass-through', () => {
  it('unary: request metadata, response metadata and trailers (text and -bin) round-trip', async () => {
    const md = new grpc.Metadata();
    md.set('x-user', 'alice');
    md.set('x-blob-bin', Buffer.from([9, 8, 7, 0]));
    const payload = Buffer.from('hello \u0000 world');
    const deadline = Date.now() + 5000;
    const r = await unary(client, { message: 'hi', payload }, md, { deadline });
    expect(r.err).toBeNull();
    expect(r.reply?.message).toBe('hi');
    expect(Buffer.compare(r.reply?.payload ?? Buffer.alloc(0), payload)).toBe(0);
    expect(r.metadata?.get('x-user')).toEqual(['alice']);
    expect(r.metadata?.get('x-blob-bin')).toEqual([Buffer.from([9, 8, 7, 0])]);
    expect(r.status.code).toBe(grpc.status.OK);
    expect(r.status.metadata.get('x-trailer')).toEqual([TRAILER_TEXT]);
    expect(r.status.metadata.get('x-trailer-bin')).toEqual([TRAILER_BIN]);
    // What reached the upstream: the metadata, the caller's deadline (grpc-timeout, within the few ms
    // the hops took) and the proxy's own marks.
    const seen = upstream.lastMetadata as grpc.Metadata;
    expect(seen.get('x-user')).toEqual(['alice']);
    expect(seen.get('x-blob-bin')).toEqual([Buffer.from([9, 8, 7, 0])]);
    expect(String(seen.get('via')[0])).toContain('faultline');
    expect(Math.abs(upstream.lastDeadline - deadline)).toBeLessThan(250);
  });

  it('trailers-only error responses from the upstream pass through with status, message and trailers', async () => {
    const md = new grpc.Metadata();
    md.set('x-fail', String(grpc.status.PERMISSION_DENIED));
    const r = await unary(client, { message: 'no' }, md);
    expect(r.err?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(r.err?.details).toBe(`failed on request (${grpc.status.PERMISSION_DENIED})`);
    expect(r.status.metadata.get('x-trailer')).toEqual([TRAILER_TEXT]);
    expect(r.status.metadata.get('x-trailer-bin')).toEqual([TRAILER_BIN]);
  });

  it('server streaming: 1,000 messages arrive in order and byte-exact, then the trailers', async () => {
    const count = 1000;
    const size = 1024;
    const got: EchoReply[] = [];
    const call = client.ServerStream({ count, payload: Buffer.alloc(size) }, new grpc.Metadata());
    const status = await new Promise<grpc.StatusObject>((resolve, reject) => {
      call.on('data', (m: EchoReply) => got.push(m));
      call.on('status', resolve);
      call.on('error', (e: grpc.ServiceError) => (e.code === grpc.status.OK ? undefined : reject(e)));
    });
    expect(status.code).toBe(grpc.status.OK);
    expect(status.metadata.get('x-trailer-bin')).toEqual([TRAILER_BIN]);
    expect(got).toHaveLength(count);
    const expected = sha256(Buffer.concat(Array.from({ length: count }, (_, i) => streamPayload(i, size))));
    expect(sha256(Buffer.concat(got.map((m) => m.payload)))).toBe(expected);
    expect(got.every((m, i) => m.seq === i)).toBe(true);
  });

  it('server streaming through a slow reader keeps every message (flow control, no loss at the trailers)', async () => {
    const count = 200;
    const size = 32 * 1024; // 6.4 MB: well past the HTTP/2 windows, so the pause reaches the upstream
    const call = client.ServerStream({ count, payload: Buffer.alloc(size) }, new grpc.Metadata());
    const got: Buffer[] = [];
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      call.on('data', (m: EchoReply) => {
        got.push(m.payload);
        if (got.length % 20 === 0) {
          call.pause();
          setTimeout(() => call.resume(), 30);
        }
      });
      call.on('status', resolve);
      call.on('error', () => undefined);
    });
    expect(status.code).toBe(grpc.status.OK);
    expect(got).toHaveLength(count);
    const expected = sha256(Buffer.concat(Array.from({ length: count }, (_, i) => streamPayload(i, size))));
    expect(sha256(Buffer.concat(got))).toBe(expected);
  });

  it('client streaming: 1,000 messages reach the upstream byte-exact', async () => {
    const md = new grpc.Metadata();
    md.set('x-kind', 'client-stream');
    const parts: Buffer[] = [];
    const reply = await new Promise<EchoReply>((resolve, reject) => {
      const call = client.ClientStream(md, {}, (err, r) => (err ? reject(err) : resolve(r as EchoReply)));
      for (let i = 0; i < 1000; i++) {
        const p = streamPayload(i, 512);
        parts.push(p);
        call.write({ payload: p });
      }
      call.end();
    });
    expect(reply.seq).toBe(1000);
    expect(reply.message).toBe(sha256(Buffer.concat(parts)));
  });

  it('bidi streaming: replies interleave with requests (nothing is buffered whole)', async () => {
    const call = client.Bidi(new grpc.Metadata());
    const replies: EchoReply[] = [];
    // Each message is written only after the previous reply came back: a proxy that buffered the
    // request stream until its end would deadlock here.
    await new Promise<void>((resolve, reject) => {
      let sent = 0;
      call.on('data', (m: EchoReply) => {
        replies.push(m);
        if (sent < 50) call.write({ message: `ping ${sent++}` });
        else call.end();
      });
      call.on('status', (s: grpc.StatusObject) =>
        s.code === grpc.status.OK ? resolve() : reject(new Error(s.details)),
      );
      call.on('error', () => undefined);
      call.write({ message: `ping ${sent++}` });
    });
    expect(replies).toHaveLength(50);
    expect(replies.map((r) => r.message)).toEqual(Array.from({ length: 50 }, (_, i) => `ping ${i}`));
  });

  it('counts calls by final grpc-status in /metrics', async () => {
    const m = await scrape(fl.admin);
    const ok = metricSum(m, 'faultline_grpc_responses_total', {
      listener: 'grpc',
      route: 'echo',
      grpc_code: 'OK',
    });
    const denied = metricSum(m, 'faultline_grpc_responses_total', {
      route: 'echo',
      grpc_code: 'PERMISSION_DENIED',
    });
    expect(ok).toBe(5);
    expect(denied).toBe(1);
    // status_class follows the grpc-status (PERMISSION_DENIED maps to HTTP 403), not the HTTP 200
    expect(
      metricSum(m, 'faultline_requests_total', {
        route: 'echo',
        method: 'POST',
        status_class: '2xx',
        grpc_code: 'OK',
      }),
    ).toBe(5);
    expect(
      metricSum(m, 'faultline_requests_total', {
        route: 'echo',
        status_class: '4xx',
        grpc_code: 'PERMISSION_DENIED',
      }),
    ).toBe(1);
  });
});
