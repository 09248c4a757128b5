/**
 * HTTP/2 without gRPC: h2c and TLS (ALPN h2 + http/1.1 on one port) listeners, h2c and h2 (TLS)
 * upstreams, pseudo-headers, trailers and `te: trailers`, and bad HTTP/2 input that must not take
 * the process down.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { echoClient, grpc, startGrpcServer, unary, type GrpcServer } from '../helpers/grpc.js';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import {
  FLAG_END_STREAM,
  FRAME_DATA,
  FRAME_HEADERS,
  FRAME_RST_STREAM,
  RawH2,
  type Frame,
} from '../helpers/h2frames.js';
import { metricSum, scrape, startUpstream, type Upstream } from '../helpers/servers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let certDir: string;
let cert: Buffer;
let key: Buffer;
let http1: Upstream;
let h2cUp: http2.Http2Server;
let h2Up: http2.Http2SecureServer;
let grpcUp: GrpcServer;
let fl: TestFaultline;

/** RST_STREAM codes the upstream's `/h2c/early` streams closed with. */
const earlyClosed: number[] = [];

/** The body of the upstream's plain (`/h2c/plain...`) responses. */
const PLAIN_BODY = 'plain body, no trailers\n'.repeat(40);

/**
 * Upstream handler for both raw HTTP/2 upstreams: echoes what it received, ends with trailers.
 * `/h2c/plain`: a body and no trailers; `/h2c/announced`: trailers announced by a `trailer` field;
 * `/h2c/unannounced`: trailers nobody announced.
 */
function onUpstreamStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
  const path = headers[':path'] ?? '';
  if (path.startsWith('/h2c/plain')) {
    stream.respond({ ':status': 200, 'content-type': 'text/plain' });
    stream.end(PLAIN_BODY);
    return;
  }
  if (path.startsWith('/h2c/early')) {
    // Answers at once, before the request body is in, trailers after its body; records when the
    // stream closed (the proxy must not leave it half-open once the response is over).
    stream.on('error', () => undefined);
    stream.on('close', () => earlyClosed.push(stream.rstCode ?? -1));
    // Reading (and dropping) the body: node:http2 would otherwise reset an unread stream itself once
    // its response is out, and the proxy's part would not be tested.
    stream.resume();
    stream.respond({ ':status': 200, 'content-type': 'text/plain' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'x-sum': 'early' }));
    stream.end(PLAIN_BODY);
    return;
  }
  if (path.startsWith('/h2c/announced') || path.startsWith('/h2c/unannounced')) {
    const announced = path.startsWith('/h2c/announced');
    stream.respond(
      { ':status': 200, 'content-type': 'text/plain', ...(announced ? { trailer: 'x-sum' } : {}) },
      { waitForTrailers: true },
    );
    stream.on('wantTrailers', () => stream.sendTrailers({ 'x-sum': 'abc' }));
    stream.end(PLAIN_BODY);
    return;
  }
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('error', () => undefined);
  stream.on('end', () => {
    const body = Buffer.concat(chunks);
    const seen = { ...headers, bodySha: sha(body), bodyLength: body.length };
    stream.respond({ ':status': 200, 'content-type': 'application/json' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': sha(body) }));
    stream.end(JSON.stringify(seen));
  });
}

beforeAll(async () => {
  certDir = mkdtempSync(join(tmpdir(), 'faultline-cert-'));
  // A throwaway self-signed certificate for 127.0.0.1 / localhost.
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem'), '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'ignore' }); // prettier-ignore
  cert = readFileSync(join(certDir, 'cert.pem'));
  key = readFileSync(join(certDir, 'key.pem'));

  http1 = await startUpstream((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.url === '/dup-headers') {
        // Legal on HTTP/1.1, refused by HTTP/2 as is: repeated single-value fields.
        res.writeHead(200, ['etag', '"a"', 'etag', '"b"', 'set-cookie', 's=1', 'set-cookie', 't=2']);
        res.end(JSON.stringify({ cookie: req.headers['cookie'] }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'http1' });
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, bodySha: sha(body) }));
    });
  });
  h2cUp = http2.createServer();
  h2cUp.on('stream', onUpstreamStream);
  await new Promise<void>((r) => h2cUp.listen(0, '127.0.0.1', r));
  h2Up = http2.createSecureServer({ cert, key });
  h2Up.on('stream', onUpstreamStream);
  await new Promise<void>((r) => h2Up.listen(0, '127.0.0.1', r));
  grpcUp = await startGrpcServer();

  // The upstream's certificate is self-signed: accept it for this process's pools.
  process.env['FAULTLINE_UPSTREAM_INSECURE'] = '1';
  const port = (s: { address(): AddressInfo | string | null }) => (s.address() as AddressInfo).port;
  fl = await startFaultline({
    listeners: [
      {
        name: 'tls',
        address: '127.0.0.1',
        port: 0,
        protocol: 'tls',
        tls: { cert: join(certDir, 'cert.pem'), key: join(certDir, 'key.pem') },
        routes: [
          {
            name: 'grpc',
            path_prefix: '/faultline.test.Echo/',
            upstream: `http://${grpcUp.address}`,
            upstream_protocol: 'h2c',
          },
          { name: 'web', path_prefix: '/', upstream: http1.url },
        ],
      },
      {
        name: 'h2c',
        address: '127.0.0.1',
        port: 0,
        protocol: 'h2c',
        routes: [
          {
            name: 'to-h2c',
            path_prefix: '/h2c/',
            upstream: `http://127.0.0.1:${port(h2cUp)}`,
            upstream_protocol: 'h2c',
          },
          {
            name: 'to-h2',
            path_prefix: '/h2/',
            upstream: `https://127.0.0.1:${port(h2Up)}`,
            upstream_protocol: 'h2',
          },
          { name: 'to-http1', path_prefix: '/', upstream: http1.url },
        ],
      },
      {
        name: 'http1',
        address: '127.0.0.1',
        port: 0,
        routes: [
          {
            name: 'http1-to-h2c',
            path_prefix: '/',
            upstream: `http://127.0.0.1:${port(h2cUp)}`,
            upstream_protocol: 'h2c',
          },
        ],
      },
    ],
  });
});

afterAll(async () => {
  await fl?.stop();
  delete process.env['FAULTLINE_UPSTREAM_INSECURE'];
  await http1?.close();
  h2cUp?.close();
  h2Up?.close();
  await grpcUp?.close();
  if (fl) await removeDir(fl.stateDir);
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

interface H2Reply {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
}

function h2request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer,
): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const s = session.request(headers, { endStream: body === undefined });
    let resHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    s.on('response', (h) => (resHeaders = h));
    s.on('trailers', (t) => (trailers = t));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve({ headers: resHeaders, trailers, body: Buffer.concat(chunks) }));
    s.on('error', reject);
    if (body !== undefined) s.end(body);
  });
}

describe('HTTP/2 listeners and upstreams', () => {
  it('one TLS port serves HTTP/1.1 and h2 (ALPN), and gRPC over TLS', async () => {
    const port = fl.fl.port('tls');
    const h1 = await new Promise<{ status: number; alpn: string; body: string }>((resolve, reject) => {
      const req = https.request(
        {
          ...{ host: '127.0.0.1', port, path: '/one?x=1', method: 'GET', ca: cert },
          ...({ ALPNProtocols: ['http/1.1'] } as https.RequestOptions),
        },
        (res) => {
          let body = '';
          const alpn = String((res.socket as { alpnProtocol?: string }).alpnProtocol);
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, alpn, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(h1.status).toBe(200);
    expect(h1.alpn).toBe('http/1.1');
    expect(JSON.parse(h1.body).url).toBe('/one?x=1');
    expect(JSON.parse(h1.body).headers['x-forwarded-proto']).toBe('https');

    const session = http2.connect(`https://127.0.0.1:${port}`, { ca: cert });
    try {
      const r = await h2request(session, { ':method': 'GET', ':path': '/two', 'x-custom': 'yes' });
      expect(session.alpnProtocol).toBe('h2');
      expect(r.headers[':status']).toBe(200);
      expect(r.headers['x-upstream']).toBe('http1');
      const seen = JSON.parse(r.body.toString());
      expect(seen.url).toBe('/two');
      expect(seen.headers.host).toBe(`127.0.0.1:${port}`);
      expect(seen.headers['x-custom']).toBe('yes');
    } finally {
      session.close();
    }

    const c = echoClient(`localhost:${port}`);
    // grpc-js over TLS needs its own credentials object; rebuild the client with them.
    c.close();
    const tlsClient = new (
      Object.getPrototypeOf(c).constructor as new (t: string, cr: grpc.ChannelCredentials) => typeof c
    )(`localhost:${port}`, grpc.credentials.createSsl(cert));
    const md = new grpc.Metadata();
    md.set('x-user', 'tls');
    const g = await unary(tlsClient, { message: 'over tls' }, md);
    tlsClient.close();
    expect(g.err).toBeNull();
    expect(g.reply?.message).toBe('over tls');
    expect(g.metadata?.get('x-user')).toEqual(['tls']);

    const m = await scrape(fl.admin);
    expect(
      metricSum(m, 'faultline_requests_total', { listener: 'tls', route: 'web', status_class: '2xx' }),
    ).toBe(2);
    expect(
      metricSum(m, 'faultline_grpc_responses_total', { listener: 'tls', route: 'grpc', grpc_code: 'OK' }),
    ).toBe(1);
  });

  it('h2c client to HTTP/1.1 upstream: pseudo-headers mapped, request body byte-exact', async () => {
    const session = http2.connect(`http://127.0.0.1:${fl.fl.port('h2c')}`);
    try {
      const body = randomBytes(3 * 1024 * 1024 + 7);
      const r = await h2request(
        session,
        {
          ':method': 'POST',
          ':path': '/upload',
          ':authority': 'api.example',
          'content-type': 'application/octet-stream',
        },
        body,
      );
      expect(r.headers[':status']).toBe(200);
      const seen = JSON.parse(r.body.toString());
      expect(seen.method).toBe('POST');
      expect(seen.headers.host).toBe('api.example');
      expect(seen.headers['x-forwarded-host']).toBe('api.example');
      expect(seen.bodySha).toBe(sha(body));
      expect(Object.keys(seen.headers).some((h: string) => h.startsWith(':'))).toBe(false);
    } finally {
      session.close();
    }
  });

  it('HTTP/2 client, HTTP/1.1 upstream: repeated response fields joined, cookie crumbs joined', async () => {
    const session = http2.connect(`http://127.0.0.1:${fl.fl.port('h2c')}`);
    try {
      const r = await h2request(session, {
        ':method': 'GET',
        ':path': '/dup-headers',
        cookie: ['a=1', 'b=2'],
      });
      expect(r.headers[':status']).toBe(200);
      expect(r.headers['etag']).toBe('"a", "b"');
      expect(r.headers['set-cookie']).toEqual(['s=1', 't=2']);
      expect(JSON.parse(r.body.toString()).cookie).toBe('a=1; b=2');
    } finally {
      session.close();
    }
  });

  it('h2c and h2 (TLS) upstreams: te: trailers forwarded, upstream trailers and body reach the client', async () => {
    const session = http2.connect(`http://127.0.0.1:${fl.fl.port('h2c')}`);
    try {
      for (const prefix of ['/h2c/', '/h2/']) {
        const body = randomBytes(200_000);
        const r = await h2request(
          session,
          { ':method': 'POST', ':path': `${prefix}x?q=1`, te: 'trailers', 'x-custom': prefix },
          body,
        );
        expect(r.headers[':status']).toBe(200);
        const seen = JSON.parse(r.body.toString());
        expect(seen[':path']).toBe(`${prefix}x?q=1`);
        expect(seen[':authority']).toBe(`127.0.0.1:${fl.fl.port('h2c')}`);
        expect(seen.te).toBe('trailers');
        expect(seen['x-custom']).toBe(prefix);
        expect(seen.bodySha).toBe(sha(body));
        expect(r.trailers['x-checksum']).toBe(sha(body));
      }
    } finally {
      session.close();
    }
  });

  it('HTTP/1.1 client to an h2c upstream: chunked body streamed, te stripped unless it asks for trailers', async () => {
    const port = fl.fl.port('http1');
    const body = randomBytes(100_000);
    const res = await fetch(`http://127.0.0.1:${port}/via-h1`, { method: 'PUT', body });
    expect(res.status).toBe(200);
    const seen = (await res.json()) as Record<string, unknown>;
    expect(seen[':method']).toBe('PUT');
    expect(seen[':path']).toBe('/via-h1');
    expect(seen.bodySha).toBe(sha(body));
    expect(seen.te).toBeUndefined();
    expect(seen['transfer-encoding']).toBeUndefined();
    const m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_requests_total', { listener: 'http1', status_class: '2xx' })).toBe(1);
    expect(metricSum(m, 'faultline_requests_total', { listener: 'h2c', status_class: '2xx' })).toBe(4);
  });
});

describe('HTTP/2 response endings', () => {
  /** Frames of stream 1 for a GET of `path` through the h2c listener, sent from a raw socket. */
  async function rawGet(path: string): Promise<Frame[]> {
    const c = await RawH2.connect(fl.fl.port('h2c'));
    try {
      await c.serverSettings();
      c.headers(
        1,
        [
          [':method', 'GET'],
          [':scheme', 'http'],
          [':path', path],
          [':authority', '127.0.0.1'],
        ],
        true,
      );
      await c.waitFor(
        (f) => f.streamId === 1 && ((f.flags & FLAG_END_STREAM) !== 0 || f.type === FRAME_RST_STREAM),
      );
      return c.frames.filter((f) => f.streamId === 1);
    } finally {
      c.destroy();
    }
  }

  it('a plain response from an h2c upstream ends with its last DATA frame, not an extra empty one', async () => {
    const frames = await rawGet('/h2c/plain');
    expect(frames[0]?.type).toBe(FRAME_HEADERS);
    const data = frames.filter((f) => f.type === FRAME_DATA);
    expect(Buffer.concat(data.map((f) => f.payload)).toString()).toBe(PLAIN_BODY);
    // Waiting for trailers that never come ends the stream with an empty DATA frame after the body.
    expect(data.filter((f) => f.payload.length === 0)).toEqual([]);
    const last = frames[frames.length - 1] as Frame;
    expect(last.type).toBe(FRAME_DATA);
    expect(last.flags & FLAG_END_STREAM).toBe(FLAG_END_STREAM);
    expect(frames.some((f) => f.type === FRAME_RST_STREAM)).toBe(false);
  });

  it('trailers still reach the client when announced (trailer field) or asked for (te: trailers)', async () => {
    const session = http2.connect(`http://127.0.0.1:${fl.fl.port('h2c')}`);
    try {
      const announced = await h2request(session, { ':method': 'GET', ':path': '/h2c/announced' });
      expect(announced.body.toString()).toBe(PLAIN_BODY);
      expect(announced.trailers['x-sum']).toBe('abc');
      const asked = await h2request(session, {
        ':method': 'GET',
        ':path': '/h2c/unannounced',
        te: 'trailers',
      });
      expect(asked.body.toString()).toBe(PLAIN_BODY);
      expect(asked.trailers['x-sum']).toBe('abc');
      // Neither announced nor asked for (RFC 9110 §6.5.1: a client without `te: trailers` may drop
      // them anyway): the body arrives whole, the trailer section is not forwarded.
      const plain = await h2request(session, { ':method': 'GET', ':path': '/h2c/unannounced' });
      expect(plain.headers[':status']).toBe(200);
      expect(plain.body.toString()).toBe(PLAIN_BODY);
      expect(plain.trailers['x-sum']).toBeUndefined();
    } finally {
      session.close();
    }
  });
});

describe('HTTP/2 upload to an h2c upstream that answers before the body is in', () => {
  it(
    'the client gets body and trailers, then RST_STREAM NO_ERROR; the upstream stream is cancelled',
    { timeout: 10_000 },
    async () => {
      const session = http2.connect(`http://127.0.0.1:${fl.fl.port('h2c')}`);
      try {
        const start = performance.now();
        const r = await new Promise<H2Reply & { rstCode: number | undefined }>((resolve) => {
          const s = session.request({ ':method': 'POST', ':path': '/h2c/early', te: 'trailers' });
          const out = {
            headers: {},
            trailers: {},
            body: Buffer.alloc(0),
            rstCode: undefined as number | undefined,
          };
          const chunks: Buffer[] = [];
          const chunk = Buffer.alloc(64 * 1024, 1);
          let n = 0;
          const t = setInterval(() => {
            if (s.destroyed || s.closed) return clearInterval(t);
            if (++n === 80) s.end(chunk);
            else s.write(chunk);
          }, 50);
          s.on('response', (h) => (out.headers = h));
          s.on('trailers', (h) => (out.trailers = h));
          s.on('data', (c: Buffer) => chunks.push(c));
          s.on('error', () => undefined);
          s.on('close', () => {
            clearInterval(t);
            resolve({ ...out, body: Buffer.concat(chunks), rstCode: s.rstCode });
          });
        });
        expect(performance.now() - start).toBeLessThan(3000);
        expect(r.headers[':status']).toBe(200);
        expect(r.body.toString()).toBe(PLAIN_BODY);
        // The trailers come before the reset: a reset first would lose them.
        expect(r.trailers['x-sum']).toBe('early');
        expect(r.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
        // Faultline stops sending the rest of the body upstream (RST_STREAM CANCEL) instead of leaving
        // that stream half-open. (node:http2 ends the stream before resetting it, so whether the upstream
        // sees code 0 or CANCEL depends on timing.)
        const until = performance.now() + 3000;
        while (earlyClosed.length === 0 && performance.now() < until)
          await new Promise((r) => setTimeout(r, 20));
        expect(earlyClosed.length).toBe(1);
      } finally {
        session.close();
      }
    },
  );
});

describe('bad HTTP/2 input', () => {
  async function rawExchange(port: number, data: Buffer): Promise<Buffer> {
    return new Promise((resolve) => {
      const sock = net.connect(port, '127.0.0.1', () => sock.write(data));
      const chunks: Buffer[] = [];
      sock.on('data', (c: Buffer) => chunks.push(c));
      sock.on('error', () => undefined);
      sock.on('close', () => resolve(Buffer.concat(chunks)));
      setTimeout(() => sock.destroy(), 2000);
    });
  }

  async function stillServes(): Promise<void> {
    const session = http2.connect(`http://127.0.0.1:${fl.fl.port('h2c')}`);
    try {
      const r = await h2request(session, { ':method': 'GET', ':path': '/after' });
      expect(r.headers[':status']).toBe(200);
    } finally {
      session.close();
    }
  }

  it('h2 requests without a body get the route timeout too (504), to HTTP/1.1 and h2c upstreams', async () => {
    const silent1 = await startUpstream(() => undefined);
    const silentH2 = http2.createServer();
    silentH2.on('stream', () => undefined);
    await new Promise<void>((r) => silentH2.listen(0, '127.0.0.1', r));
    const own = await startFaultline({
      listeners: [
        {
          name: 'h2c',
          port: 0,
          protocol: 'h2c',
          routes: [
            {
              name: 'h2c-up',
              path_prefix: '/h2c/',
              upstream: `http://127.0.0.1:${(silentH2.address() as AddressInfo).port}`,
              upstream_protocol: 'h2c',
              timeout_ms: 400,
            },
            { name: 'http1-up', path_prefix: '/', upstream: silent1.url, timeout_ms: 400 },
          ],
        },
      ],
    });
    const session = http2.connect(`http://127.0.0.1:${own.fl.port('h2c')}`);
    try {
      for (const path of ['/get', '/h2c/get']) {
        const r = await h2request(session, { ':method': 'GET', ':path': path });
        expect(r.headers[':status']).toBe(504);
        expect(r.headers['x-faultline-error']).toBe('upstream_timeout');
      }
    } finally {
      session.close();
      await own.stop();
      await removeDir(own.stateDir);
      await silent1.close();
      silentH2.close();
    }
  });

  it('an invalid connection preface (garbage, or HTTP/1.1 to an h2c port) closes that connection only', async () => {
    const port = fl.fl.port('h2c');
    await rawExchange(port, Buffer.from('GARBAGE GARBAGE GARBAGE GARBAGE\r\n\r\n'));
    await rawExchange(port, Buffer.from('GET / HTTP/1.1\r\nhost: x\r\n\r\n'));
    await rawExchange(
      port,
      Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), randomBytes(64)]),
    );
    await stillServes();
    const m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_client_errors_total', { listener: 'h2c' })).toBeGreaterThanOrEqual(1);
  });

  it('an oversized header block is refused (nghttp2 ends that session with an error); the process keeps serving', async () => {
    const session = http2.connect(`http://127.0.0.1:${fl.fl.port('h2c')}`, {
      maxSendHeaderBlockLength: 1024 * 1024,
    });
    session.on('error', () => undefined);
    const outcome = await new Promise<string>((resolve) => {
      const s = session.request({ ':method': 'GET', ':path': '/big', 'x-big': 'a'.repeat(200_000) });
      s.on('response', (h) => resolve(`status ${h[':status']}`));
      s.on('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code}`));
      s.on('close', () => resolve(`closed ${s.rstCode}`));
      s.end();
    });
    expect(outcome).not.toBe('status 200');
    // Above SETTINGS_MAX_HEADER_LIST_SIZE nghttp2 answers with GOAWAY for the whole session.
    expect(outcome).toMatch(/^(status 431|error|closed)/);
    session.destroy();
    await stillServes();
    // Many oversized blocks in a row: the process stays up and keeps serving.
    for (let i = 0; i < 5; i++) {
      const s2 = http2.connect(`http://127.0.0.1:${fl.fl.port('h2c')}`, {
        maxSendHeaderBlockLength: 1024 * 1024,
      });
      s2.on('error', () => undefined);
      const r = s2.request({ ':path': '/big', 'x-big': 'b'.repeat(100_000 + i) });
      r.on('error', () => undefined);
      await new Promise((res) => r.on('close', res));
      s2.destroy();
    }
    await stillServes();
    const m = await scrape(fl.admin);
    expect(
      metricSum(m, 'faultline_requests_total', { listener: 'h2c', route: 'to-http1', status_class: '2xx' }),
    ).toBeGreaterThanOrEqual(3);
    expect(
      metricSum(m, 'faultline_client_errors_total', { listener: 'h2c', kind: 'h2_session' }),
    ).toBeGreaterThanOrEqual(1);
  });
});
