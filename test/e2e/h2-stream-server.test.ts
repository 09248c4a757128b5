/**
 * The HTTP/2 listener serves streams through node:http2's stream API (no compat request/response):
 * the paths that API took over and the h2/gRPC suites do not reach. A buffered (Content-Length)
 * upload, a slow h2 upload (408, the rate counted from the stream's own DATA frames), HTTP/1.1
 * chunked trailers reaching an h2 client, a Content-Length response ending without trailers, and
 * `expect: 100-continue` on h2.
 */
import { createHash, randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { metricSum, scrape, startUpstream, type Upstream } from '../helpers/servers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let up: Upstream;
/** HTTP/1.1 upstream failing mid-upload: `/reset` reads a little, then destroys its socket; `/early` answers 413 at once and closes. */
let breaker: Upstream;
let fl: TestFaultline;
let session: http2.ClientHttp2Session;
/** Bodies the upstream received, by request path. */
const received = new Map<string, number>();

beforeAll(async () => {
  up = await startUpstream((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      received.set(req.url ?? '', body.length);
      if (req.url === '/trailers') {
        // Chunked with a trailer: the only way HTTP/1.1 carries trailers.
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-sum' });
        res.write('part1;');
        res.addTrailers({ 'x-sum': 'abc' });
        res.end('part2');
        return;
      }
      const out = JSON.stringify({ bodySha: sha(body), length: body.length });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
      res.end(out);
    });
  });
  breaker = await startUpstream((req, res) => {
    if (req.url === '/early') {
      res.writeHead(413, { 'content-type': 'text/plain', connection: 'close' });
      res.end('too large');
      return;
    }
    if (req.url === '/cut' || req.url === '/cutlen') {
      // The response starts, then the upstream connection dies mid-body (after the first DATA went out).
      res.writeHead(200, req.url === '/cutlen' ? { 'content-length': '100' } : {});
      res.write('hello');
      setTimeout(() => req.socket.destroy(), 100);
      return;
    }
    req.once('data', () => req.socket.destroy());
  });
  fl = await startFaultline({
    listeners: [
      {
        name: 'h2c',
        address: '127.0.0.1',
        port: 0,
        protocol: 'h2c',
        min_upload_bytes_per_s: 10_000,
        upload_grace_ms: 300,
        // Far above what the upload tests below allow: a stream must end because its exchange did.
        stream_idle_timeout_ms: 30_000,
        routes: [
          { name: 'break', path_prefix: '/reset', upstream: breaker.url },
          { name: 'cut', path_prefix: '/cut', upstream: breaker.url },
          { name: 'early', path_prefix: '/early', upstream: breaker.url },
          { name: 'abort', path_prefix: '/abort', upstream: up.url },
          { name: 'web', path_prefix: '/', upstream: up.url },
        ],
      },
    ],
    experiments: [
      {
        id: 'h2-abort',
        hypothesis: 'clients cope with a JSON 503',
        match: { listener: 'h2c', route: 'abort' },
        split: { percent: 50, allow_above_cap: true },
        // Header names as a user writes them: HTTP/2 needs them lower-case and unique.
        fault: {
          kind: 'abort',
          status: 503,
          headers: { 'Content-Type': 'application/json', 'X-Why': 'drill' },
        },
        min_samples: 10000,
      },
    ],
  });
  session = http2.connect(`http://127.0.0.1:${fl.fl.port('h2c')}`);
});

afterAll(async () => {
  session?.close();
  await fl?.stop();
  await up?.close();
  await breaker?.close();
  if (fl) await removeDir(fl.stateDir);
});

interface Reply {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | null;
  body: Buffer;
  rstCode: number | undefined;
  continued: boolean;
}

function request(
  headers: http2.OutgoingHttpHeaders,
  send?: (s: http2.ClientHttp2Stream) => void,
): Promise<Reply> {
  return new Promise((resolve) => {
    const s = session.request(headers, { endStream: send === undefined });
    const out: Reply = {
      headers: {},
      trailers: null,
      body: Buffer.alloc(0),
      rstCode: undefined,
      continued: false,
    };
    const chunks: Buffer[] = [];
    s.on('continue', () => (out.continued = true));
    s.on('response', (h) => (out.headers = h));
    s.on('trailers', (t) => (out.trailers = t));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined);
    s.on('close', () => {
      out.body = Buffer.concat(chunks);
      out.rstCode = s.rstCode;
      resolve(out);
    });
    send?.(s);
  });
}

describe('h2 listener on the stream API', () => {
  it('a Content-Length upload under body_buffer_bytes is read whole first and forwarded byte-exact', async () => {
    const body = randomBytes(40_000);
    const r = await request(
      { ':method': 'POST', ':path': '/buffered', 'content-length': String(body.length) },
      (s) => {
        // Two halves with a pause: the buffer must join them, not forward the first alone.
        s.write(body.subarray(0, 20_000));
        setTimeout(() => s.end(body.subarray(20_000)), 50);
      },
    );
    expect(r.headers[':status']).toBe(200);
    expect(JSON.parse(r.body.toString())).toEqual({ bodySha: sha(body), length: body.length });
    expect(r.trailers).toBeNull();
    expect(r.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
  });

  it('an h2 upload slower than min_upload_bytes_per_s gets 408 and never reaches the upstream', async () => {
    const before = await scrape(fl.admin);
    const r = await request({ ':method': 'POST', ':path': '/slow', 'content-length': '60000' }, (s) => {
      // ~1 KB every 200 ms: 5 KB/s against a 10 KB/s minimum.
      let sent = 0;
      const t = setInterval(() => {
        if (s.destroyed || sent >= 60_000) return clearInterval(t);
        s.write(Buffer.alloc(1000));
        sent += 1000;
      }, 200);
      s.on('close', () => clearInterval(t));
    });
    expect(r.headers[':status']).toBe(408);
    expect(r.headers['x-faultline-error']).toBe('request_timeout');
    expect(received.has('/slow')).toBe(false);
    const after = await scrape(fl.admin);
    const kind = { listener: 'h2c', kind: 'slow_upload' };
    expect(metricSum(after, 'faultline_client_errors_total', kind)).toBe(
      metricSum(before, 'faultline_client_errors_total', kind) + 1,
    );
  });

  it('a buffered h2 upload above the minimum rate but slower than the check interval is forwarded', async () => {
    // 20 x 3 KB every 60 ms (~50 KB/s against 10 KB/s): the rate check at 1 s must count the stream's
    // bytes (pushCounted); counting nothing would read as 0 B/s and answer 408.
    const body = randomBytes(60_000);
    const r = await request({ ':method': 'POST', ':path': '/steady', 'content-length': '60000' }, (s) => {
      let i = 0;
      const t = setInterval(() => {
        if (s.destroyed) return clearInterval(t);
        const part = body.subarray(i * 3000, (i + 1) * 3000);
        if (++i === 20) {
          clearInterval(t);
          s.end(part);
        } else s.write(part);
      }, 60);
    });
    expect(r.headers[':status']).toBe(200);
    expect(JSON.parse(r.body.toString()).bodySha).toBe(sha(body));
  });

  it('HEAD over h2: the head only, the stream closed cleanly (no reset)', async () => {
    const r = await request({ ':method': 'HEAD', ':path': '/head' });
    expect(r.headers[':status']).toBe(200);
    expect(r.headers['content-length']).toBeDefined();
    expect(r.body.length).toBe(0);
    expect(r.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
  });

  it('an upstream body cut mid-way resets the h2 stream (never a clean END_STREAM on a short body)', async () => {
    for (const path of ['/cut', '/cutlen']) {
      const r = await request({ ':method': 'GET', ':path': path });
      expect(r.headers[':status'], path).toBe(200);
      expect(r.body.toString(), path).toBe('hello');
      expect(r.rstCode, path).toBe(http2.constants.NGHTTP2_INTERNAL_ERROR);
    }
    // The session is still good for the next request.
    expect((await request({ ':method': 'GET', ':path': '/after-cut' })).headers[':status']).toBe(200);
  });

  it('a Host header beside :authority (allowed in HTTP/2) is forwarded as before', async () => {
    const r = await request({
      ':method': 'GET',
      ':path': '/with-host',
      host: `127.0.0.1:${fl.fl.port('h2c')}`,
    });
    expect(r.headers[':status']).toBe(200);
  });

  it('HTTP/1.1 chunked trailers reach the h2 client as HTTP/2 trailers', async () => {
    const r = await request({ ':method': 'GET', ':path': '/trailers' });
    expect(r.headers[':status']).toBe(200);
    expect(r.body.toString()).toBe('part1;part2');
    expect(r.trailers?.['x-sum']).toBe('abc');
  });

  it('CONNECT gets 405 (no tunnels), as before the stream API', async () => {
    const r = await request({ ':method': 'CONNECT', ':authority': 'example.com:443' });
    expect(r.headers[':status']).toBe(405);
  });

  it('an injected abort with upper-case header names answers 503 with those headers, never 500', async () => {
    const replies = await Promise.all(Array.from({ length: 16 }, () => request({ ':path': '/abort/x' })));
    const injected = replies.filter((r) => r.headers['x-faultline-injected'] !== undefined);
    expect(injected.length).toBeGreaterThan(0);
    for (const r of injected) {
      expect(r.headers[':status']).toBe(503);
      expect(r.headers['content-type']).toBe('application/json');
      expect(r.headers['x-why']).toBe('drill');
    }
    expect(replies.every((r) => [200, 503].includes(Number(r.headers[':status'])))).toBe(true);
  });

  /** Posts 64 KiB every 50 ms for up to 4 s (about 5 MiB); resolves with the reply and its time. */
  async function slowUpload(path: string): Promise<Reply & { ms: number }> {
    const start = performance.now();
    const r = await request({ ':method': 'POST', ':path': path }, (s) => {
      const chunk = Buffer.alloc(64 * 1024, 1);
      let n = 0;
      const t = setInterval(() => {
        if (s.destroyed || s.closed || s.writableEnded) return clearInterval(t);
        if (++n === 80) s.end(chunk);
        else s.write(chunk);
      }, 50);
      s.on('close', () => clearInterval(t));
    });
    return { ...r, ms: performance.now() - start };
  }

  it(
    'an upstream that resets mid-upload: 502 and the stream closed at once, not at the idle timeout',
    { timeout: 10_000 },
    async () => {
      const before = await scrape(fl.admin);
      const r = await slowUpload('/reset');
      expect(r.headers[':status']).toBe(502);
      expect(r.headers['x-faultline-error']).toBe('upstream_reset');
      // The 502 is a complete response: RST_STREAM NO_ERROR asks the client to stop sending (RFC 9113 §8.1).
      expect(r.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
      expect(r.ms).toBeLessThan(3000);
      const after = await scrape(fl.admin);
      const kind = { route: 'break', kind: 'reset' };
      expect(metricSum(after, 'faultline_upstream_errors_total', kind)).toBe(
        metricSum(before, 'faultline_upstream_errors_total', kind) + 1,
      );
    },
  );

  it(
    'an upstream that answers early while the body still arrives: its response, then the stream closed',
    { timeout: 10_000 },
    async () => {
      const r = await slowUpload('/early');
      expect(r.headers[':status']).toBe(413);
      expect(r.body.toString()).toBe('too large');
      expect(r.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
      expect(r.ms).toBeLessThan(3000);
    },
  );

  it('expect: 100-continue gets a 100 before the body is sent, then the proxied answer', async () => {
    const body = randomBytes(1000);
    const r = await request(
      { ':method': 'PUT', ':path': '/continue', expect: '100-continue', 'content-length': '1000' },
      (s) => s.on('continue', () => s.end(body)),
    );
    expect(r.continued).toBe(true);
    expect(r.headers[':status']).toBe(200);
    expect(JSON.parse(r.body.toString()).bodySha).toBe(sha(body));
  });
});
