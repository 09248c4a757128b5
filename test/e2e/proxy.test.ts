import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, startFaultline, proxyConfig, type TestFaultline } from '../helpers/faultline.js';
import { closedPort, metricSum, scrape, startUpstream, type Upstream } from '../helpers/servers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  trailers: NodeJS.Dict<string>;
  body: Buffer;
}

function send(
  url: string,
  opts: {
    method?: string;
    path?: string;
    headers?: http.OutgoingHttpHeaders;
    body?: Buffer | Buffer[] | undefined;
    /** With an array body: wait this long between parts (a slow upload). */
    gapMs?: number;
    agent?: http.Agent;
  } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}${opts.path ?? '/'}`,
      { method: opts.method ?? 'GET', headers: opts.headers, agent: opts.agent ?? false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            trailers: res.trailers,
            body: Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (Array.isArray(opts.body)) writeParts(req, opts.body, opts.gapMs ?? 0);
    else req.end(opts.body);
  });
}

function writeParts(req: http.ClientRequest, parts: readonly Buffer[], gapMs: number, i = 0): void {
  const part = parts[i];
  if (part === undefined) {
    req.end();
    return;
  }
  req.write(part);
  if (gapMs > 0) setTimeout(writeParts, gapMs, req, parts, gapMs, i + 1);
  else writeParts(req, parts, gapMs, i + 1);
}

/** Echo upstream: reports what it received, serves downloads, sets cookies and trailers. */
async function echoUpstream(): Promise<Upstream> {
  const download = randomBytes(10 * 1024 * 1024);
  return startUpstream((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const url = req.url ?? '/';
      if (url === '/download') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-sha256': sha(download) });
        res.end(download);
        return;
      }
      if (url === '/chunked') {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
        res.write('part-1;');
        res.write('part-2;');
        res.addTrailers({ 'x-checksum': 'abc123' });
        res.end('part-3');
        return;
      }
      if (url === '/304' || url === '/204') {
        // A 304 may carry the entity's Content-Length (RFC 9110 §8.6); written raw, since Node's
        // server would drop it.
        const status = url === '/304' ? '304 Not Modified' : '204 No Content';
        res.socket?.write(`HTTP/1.1 ${status}\r\ncontent-length: 1234\r\netag: "v1"\r\n\r\n`);
        res.socket?.destroySoon();
        return;
      }
      if (url === '/cookies') {
        res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/', 'c=3; HttpOnly']);
        res.setHeader('x-multi', ['one', 'two']);
        res.end('cookies');
        return;
      }
      if (url === '/hop') {
        res.writeHead(200, {
          connection: 'keep-alive, x-hop-resp',
          'x-hop-resp': 'secret',
          'keep-alive': 'timeout=5',
          'proxy-authenticate': 'Basic',
          'x-end-to-end': 'kept',
        });
        res.end('hop');
        return;
      }
      const info = {
        method: req.method,
        url,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        bodySha: sha(body),
        bodyLength: body.length,
      };
      const text = JSON.stringify(info);
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'echo' });
      res.end(req.method === 'HEAD' ? undefined : text);
    });
  });
}

describe('HTTP/1.1 forwarding', () => {
  let up: Upstream;
  let fl: TestFaultline;
  beforeAll(async () => {
    up = await echoUpstream();
    fl = await startFaultline(proxyConfig(up.url));
  });
  afterAll(async () => {
    await fl.stop();
    await up.close();
    await removeDir(fl.stateDir);
  });

  it.each(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])(
    'forwards %s with its body',
    async (method) => {
      const body = method === 'GET' ? undefined : Buffer.from(`payload for ${method}`);
      const r = await send(fl.url(), {
        method,
        path: '/x?y=1',
        body,
        headers: body ? { 'content-length': body.length } : {},
      });
      expect(r.status).toBe(200);
      const info = JSON.parse(r.body.toString()) as { method: string; url: string; bodySha: string };
      expect(info.method).toBe(method);
      expect(info.url).toBe('/x?y=1');
      expect(info.bodySha).toBe(sha(body ?? Buffer.alloc(0)));
      expect(r.headers['via']).toBe('1.1 faultline');
    },
  );

  it('passes a 304 (and a 204) that carries a Content-Length on as a complete response', async () => {
    for (const path of ['/304', '/204']) {
      const agent = new http.Agent({ keepAlive: true });
      const r = await send(fl.url(), { path, agent });
      expect(r.status, path).toBe(path === '/304' ? 304 : 204);
      expect(r.body.length, path).toBe(0);
      if (path === '/304') expect(r.headers['etag']).toBe('"v1"');
      // The client connection stays usable: the response was complete, not broken.
      expect((await send(fl.url(), { path: '/after', agent })).status).toBe(200);
      agent.destroy();
    }
  });

  it('answers HEAD with headers and no body', async () => {
    const r = await send(fl.url(), { method: 'HEAD' });
    expect(r.status).toBe(200);
    expect(r.headers['x-upstream']).toBe('echo');
    expect(r.body.length).toBe(0);
  });

  it('uploads 10 MB byte-exact', async () => {
    const payload = randomBytes(10 * 1024 * 1024);
    const r = await send(fl.url(), {
      method: 'POST',
      body: payload,
      headers: { 'content-length': payload.length },
    });
    const info = JSON.parse(r.body.toString()) as { bodySha: string; bodyLength: number };
    expect(info.bodyLength).toBe(payload.length);
    expect(info.bodySha).toBe(sha(payload));
  });

  it('downloads 10 MB byte-exact', async () => {
    const r = await send(fl.url(), { path: '/download' });
    expect(r.body.length).toBe(10 * 1024 * 1024);
    expect(sha(r.body)).toBe(r.headers['x-sha256']);
  });

  it('streams a chunked upload and a chunked download with trailers', async () => {
    const parts = [randomBytes(1000), randomBytes(70_000), randomBytes(3)];
    const r = await send(fl.url(), {
      method: 'POST',
      body: parts,
      headers: { 'transfer-encoding': 'chunked' },
    });
    const info = JSON.parse(r.body.toString()) as { bodySha: string; headers: Record<string, string> };
    expect(info.bodySha).toBe(sha(Buffer.concat(parts)));
    // A body that has fully arrived before it is forwarded may be re-framed with a Content-Length
    // (undici does so); one still streaming stays chunked. Either way it must arrive byte-exact.
    const total = String(parts.reduce((n, p) => n + p.length, 0));
    expect(info.headers['transfer-encoding'] === 'chunked' || info.headers['content-length'] === total).toBe(
      true,
    );

    // Still streaming when forwarded: stays chunked upstream.
    const slow = await new Promise<string>((resolve, reject) => {
      const req = http.request(`${fl.url()}/slow-upload`, { method: 'POST', agent: false }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      req.write(parts[0]);
      setTimeout(() => {
        req.write(parts[1]);
        setTimeout(() => req.end(parts[2]), 50);
      }, 50);
    });
    const slowInfo = JSON.parse(slow) as { bodySha: string; headers: Record<string, string> };
    expect(slowInfo.bodySha).toBe(sha(Buffer.concat(parts)));
    expect(slowInfo.headers['transfer-encoding']).toBe('chunked');

    const d = await send(fl.url(), { path: '/chunked', headers: { te: 'trailers' } });
    expect(d.body.toString()).toBe('part-1;part-2;part-3');
    expect(d.headers['transfer-encoding']).toBe('chunked');
    expect(d.trailers['x-checksum']).toBe('abc123');
  });

  it('handles Expect: 100-continue uploads (curl sends it for bodies over 1 MB)', async () => {
    const payload = randomBytes(2 * 1024 * 1024);
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${fl.url()}/upload`, {
        method: 'PUT',
        agent: false,
        headers: { expect: '100-continue', 'content-length': payload.length },
      });
      req.on('continue', () => req.end(payload));
      req.on('response', (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
    });
    expect(r.status).toBe(200);
    const info = JSON.parse(r.body) as { bodySha: string; headers: Record<string, string> };
    expect(info.bodySha).toBe(sha(payload));
    expect(info.headers['expect']).toBeUndefined();
  });

  it('keeps repeated response headers and Set-Cookie apart', async () => {
    const r = await send(fl.url(), { path: '/cookies' });
    const cookies = r.headers['set-cookie'];
    expect(cookies).toEqual(['a=1; Path=/', 'b=2; Path=/', 'c=3; HttpOnly']);
    expect(r.headers['x-multi']).toBe('one, two');
  });

  it('strips hop-by-hop headers both ways and adds forwarding headers', async () => {
    const r = await send(fl.url(), {
      headers: {
        connection: 'keep-alive, x-hop-req',
        'x-hop-req': 'secret',
        'keep-alive': 'timeout=5',
        'proxy-authorization': 'Basic Zm9v',
        te: 'trailers',
        'X-Mixed-Case': 'Kept',
        'x-forwarded-for': '10.1.2.3',
        host: 'shop.example',
      },
    });
    const info = JSON.parse(r.body.toString()) as { headers: Record<string, string>; rawHeaders: string[] };
    for (const h of ['x-hop-req', 'keep-alive', 'proxy-authorization', 'te', 'upgrade', 'trailer'])
      expect(info.headers[h], h).toBeUndefined();
    expect(info.headers['x-mixed-case']).toBe('Kept');
    expect(info.rawHeaders).toContain('X-Mixed-Case');
    expect(info.headers['x-forwarded-for']).toBe('10.1.2.3, 127.0.0.1');
    expect(info.headers['x-forwarded-proto']).toBe('http');
    expect(info.headers['x-forwarded-host']).toBe('shop.example');
    expect(info.headers['host']).toBe('shop.example');
    expect(info.headers['via']).toBe('1.1 faultline');

    const back = await send(fl.url(), { path: '/hop' });
    expect(back.headers['x-hop-resp']).toBeUndefined();
    expect(back.headers['proxy-authenticate']).toBeUndefined();
    expect(back.headers['x-end-to-end']).toBe('kept');
  });

  it('serves 200 concurrent clients', async () => {
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        send(fl.url(), {
          method: 'POST',
          body: Buffer.from(`client-${i}`),
          headers: { 'content-length': String(`client-${i}`.length) },
        }),
      ),
    );
    results.forEach((r, i) => {
      expect(r.status).toBe(200);
      expect((JSON.parse(r.body.toString()) as { bodySha: string }).bodySha).toBe(
        sha(Buffer.from(`client-${i}`)),
      );
    });
  });

  it('answers a malformed request with 400 and oversized headers with 431, and keeps serving', async () => {
    const raw = (text: string) =>
      new Promise<string>((resolve, reject) => {
        const s = net.connect(Number(new URL(fl.url()).port), '127.0.0.1', () => s.write(text));
        let out = '';
        s.on('data', (d) => (out += d.toString()));
        s.on('end', () => resolve(out));
        s.on('error', reject);
      });
    expect(await raw('GARBAGE\r\n\r\n')).toMatch(/^HTTP\/1\.1 400/);
    expect(await raw('GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n')).toMatch(/^HTTP\/1\.1 400/);
    expect(await raw(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)).toMatch(
      /^HTTP\/1\.1 431/,
    );
    expect(await raw('OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toMatch(
      /^HTTP\/1\.1 400/,
    );
    // Absolute-form targets are legal (RFC 9112 §3.2.2) and go upstream in origin-form.
    expect(
      await raw('GET http://elsewhere.example/abs?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
    ).toMatch(/^HTTP\/1\.1 200[\s\S]*"url":"\/abs\?q=1"/);
    expect((await send(fl.url())).status).toBe(200);
    const m = await scrape(fl.admin);
    expect(
      metricSum(m, 'faultline_client_errors_total', { kind: 'header_too_large' }),
    ).toBeGreaterThanOrEqual(1);
    expect(metricSum(m, 'faultline_client_errors_total', { kind: 'malformed' })).toBeGreaterThanOrEqual(2);
  });

  it('exports request metrics that a Prometheus scrape can parse', async () => {
    const m = await scrape(fl.admin);
    expect(
      metricSum(m, 'faultline_requests_total', {
        listener: 'ingress',
        route: 'api',
        method: 'GET',
        status_class: '2xx',
      }),
    ).toBeGreaterThan(5);
    expect(metricSum(m, 'faultline_requests_total', { method: 'POST' })).toBeGreaterThanOrEqual(203);
    expect(metricSum(m, 'faultline_request_duration_seconds_count', { route: 'api' })).toBeGreaterThan(200);
    expect(m.has('faultline_open_connections{listener="ingress"}')).toBe(true);
    expect(metricSum(m, 'faultline_process_cpu_seconds_total')).toBeGreaterThan(0);
  });
});

describe('upstream failures', () => {
  it('answers 502 when the upstream refuses, 504 when it is too slow', async () => {
    const port = await closedPort();
    const slow = await startUpstream((_req, res) => setTimeout(() => res.end('late'), 1500));
    const fl = await startFaultline({
      listeners: [
        {
          name: 'ingress',
          port: 0,
          routes: [
            { name: 'dead', path_prefix: '/dead', upstream: `http://127.0.0.1:${port}`, timeout_ms: 1000 },
            { name: 'slow', path_prefix: '/slow', upstream: slow.url, timeout_ms: 200 },
          ],
        },
      ],
    });
    try {
      const dead = await send(fl.url(), { path: '/dead' });
      expect(dead.status).toBe(502);
      expect(dead.headers['x-faultline-error']).toBe('upstream_refused');
      expect(dead.body.toString()).toMatch(/refused/);
      const late = await send(fl.url(), { path: '/slow' });
      expect(late.status).toBe(504);
      expect(late.headers['x-faultline-error']).toBe('upstream_timeout');
      const m = await scrape(fl.admin);
      expect(metricSum(m, 'faultline_upstream_errors_total', { route: 'dead', kind: 'refused' })).toBe(1);
      expect(metricSum(m, 'faultline_upstream_errors_total', { route: 'slow', kind: 'timeout' })).toBe(1);
      expect(metricSum(m, 'faultline_requests_total', { route: 'dead', status_class: '5xx' })).toBe(1);
    } finally {
      await fl.stop();
      await slow.close();
      await removeDir(fl.stateDir);
    }
  });

  it('timeout_ms covers the wait for a pooled connection, not only the response headers', async () => {
    const slow = await startUpstream((_req, res) => setTimeout(() => res.end('late'), 3000));
    const fl = await startFaultline({
      listeners: [
        {
          name: 'ingress',
          port: 0,
          routes: [{ name: 'slow', upstream: slow.url, timeout_ms: 500, max_connections: 1 }],
        },
      ],
    });
    try {
      // One connection: the second and third requests queue behind the first. Each must get its 504
      // from its own deadline, not after the requests ahead of it have timed out in turn (1.5 s).
      const t0 = Date.now();
      const all = await Promise.all(
        [1, 2, 3].map(() => send(fl.url()).then((r) => [r, Date.now() - t0] as const)),
      );
      for (const [r] of all) {
        expect(r.status).toBe(504);
        expect(r.headers['x-faultline-error']).toBe('upstream_timeout');
      }
      expect(Math.max(...all.map(([, ms]) => ms))).toBeLessThan(1200);
    } finally {
      await fl.stop();
      await slow.close();
      await removeDir(fl.stateDir);
    }
  });

  it('a slow upload is not cut by timeout_ms: the timeout counts from the end of the request body', async () => {
    const up = await startUpstream((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => res.end(Buffer.concat(chunks)));
    });
    const fl = await startFaultline(proxyConfig(up.url, { timeout_ms: 300 }));
    try {
      const parts = Array.from({ length: 5 }, (_, i) => Buffer.from(`part-${i};`));
      // 5 parts 200 ms apart: the body takes about 1 s, over three times the route's timeout.
      const reply = await send(fl.url(), { method: 'POST', path: '/upload', body: parts, gapMs: 200 });
      expect(reply.status).toBe(200);
      expect(reply.body.toString()).toBe(Buffer.concat(parts).toString());
    } finally {
      await fl.stop();
      await up.close();
      await removeDir(fl.stateDir);
    }
  });

  it('an upstream that answers during a slow upload and streams past timeout_ms is not cut', async () => {
    const up = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('head;');
      let n = 0;
      const tick = setInterval(() => {
        res.write(`c${n};`);
        if (++n === 8) {
          clearInterval(tick);
          res.end('end');
        }
      }, 120);
    });
    const fl = await startFaultline(proxyConfig(up.url, { timeout_ms: 300 }));
    try {
      const reply = await new Promise<string>((resolve, reject) => {
        const req = http.request(`${fl.url()}/`, { method: 'POST', agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve(`${res.statusCode} ${body}`));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.write('a');
        setTimeout(() => req.write('b'), 200);
        setTimeout(() => req.end('c'), 500);
      });
      expect(reply).toBe('200 head;c0;c1;c2;c3;c4;c5;c6;c7;end');
    } finally {
      await fl.stop();
      await up.close();
      await removeDir(fl.stateDir);
    }
  });

  it('an upstream that stops reading a large upload gets the route timeout (504)', async () => {
    const sockets = new Set<net.Socket>();
    const stuck = net.createServer((socket) => {
      sockets.add(socket);
      socket.pause();
    });
    await new Promise<void>((r) => stuck.listen(0, '127.0.0.1', r));
    const port = (stuck.address() as net.AddressInfo).port;
    const fl = await startFaultline(proxyConfig(`http://127.0.0.1:${port}`, { timeout_ms: 500 }));
    try {
      const r = await send(fl.url(), { method: 'POST', body: randomBytes(8 * 1024 * 1024) }).catch(
        (e: Error) => e,
      );
      expect(r).not.toBeInstanceOf(Error);
      expect((r as Reply).status).toBe(504);
      expect((r as Reply).headers['x-faultline-error']).toBe('upstream_timeout');
    } finally {
      await fl.stop();
      for (const socket of sockets) socket.destroy();
      await new Promise((r) => stuck.close(r));
      await removeDir(fl.stateDir);
    }
  });

  it('labels a malformed upstream response as upstream_protocol (502)', async () => {
    const bad = net.createServer((socket) => {
      socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nBad Header Line\r\n\r\n'));
    });
    await new Promise<void>((r) => bad.listen(0, '127.0.0.1', r));
    const port = (bad.address() as net.AddressInfo).port;
    const fl = await startFaultline(proxyConfig(`http://127.0.0.1:${port}`));
    try {
      const r = await send(fl.url());
      expect(r.status).toBe(502);
      expect(r.headers['x-faultline-error']).toBe('upstream_protocol');
      const m = await scrape(fl.admin);
      expect(metricSum(m, 'faultline_upstream_errors_total', { kind: 'protocol' })).toBe(1);
    } finally {
      await fl.stop();
      await new Promise((r) => bad.close(r));
      await removeDir(fl.stateDir);
    }
  });

  it('breaks the client connection when the upstream dies mid-body, never a short complete response', async () => {
    const up = await startUpstream((req, res) => {
      res.writeHead(200, { 'content-length': '100000' });
      res.write(Buffer.alloc(1000, 7));
      setTimeout(() => req.socket.destroy(), 50);
    });
    const fl = await startFaultline(proxyConfig(up.url));
    try {
      const err = await send(fl.url()).then(
        () => null,
        (e: Error) => e,
      );
      expect(err).not.toBeNull();
      expect(String((err as NodeJS.ErrnoException).code ?? err?.message)).toMatch(/ECONNRESET|aborted/);
      expect((await send(fl.url()).catch(() => null)) === null).toBe(true);
      const m = await scrape(fl.admin);
      expect(metricSum(m, 'faultline_requests_total', { status_class: 'error' })).toBeGreaterThanOrEqual(1);
    } finally {
      await fl.stop();
      await up.close();
      await removeDir(fl.stateDir);
    }
  });

  it('frees pool slots when clients abort, also while queued, and keeps serving', async () => {
    let open = 0;
    const up = await startUpstream((req, res) => {
      open++;
      if (req.url === '/fast') {
        open--;
        res.end('fast');
        return;
      }
      const t = setTimeout(() => res.end('slow'), 30_000);
      res.on('close', () => {
        clearTimeout(t);
        open--;
      });
    });
    const fl = await startFaultline(proxyConfig(up.url, { max_connections: 8, timeout_ms: 60_000 }));
    try {
      const sockets: net.Socket[] = [];
      const port = Number(new URL(fl.url()).port);
      for (let i = 0; i < 300; i++) {
        const s = net.connect(port, '127.0.0.1');
        s.on('error', () => undefined);
        s.write(`GET /slow/${i} HTTP/1.1\r\nHost: x\r\n\r\n`);
        sockets.push(s);
      }
      await new Promise((r) => setTimeout(r, 500));
      for (const s of sockets) s.destroy();
      await new Promise((r) => setTimeout(r, 300));
      const r = await send(fl.url(), { path: '/fast' });
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('fast');
      // Every aborted upstream request was cancelled: nothing left open upstream.
      await new Promise((r) => setTimeout(r, 200));
      expect(open).toBe(0);
      const m = await scrape(fl.admin);
      expect(metricSum(m, 'faultline_requests_total', { status_class: 'error' })).toBeGreaterThanOrEqual(300);
    } finally {
      await fl.stop();
      await up.close();
      await removeDir(fl.stateDir);
    }
  });
});

describe('admin', () => {
  it('reports health and readiness, and 404s unknown paths', async () => {
    const up = await echoUpstream();
    const fl = await startFaultline(proxyConfig(up.url));
    try {
      expect((await fetch(`${fl.admin}/healthz`)).status).toBe(200);
      expect((await fetch(`${fl.admin}/ready`)).status).toBe(200);
      const nf = await fetch(`${fl.admin}/nope`);
      expect(nf.status).toBe(404);
      expect(((await nf.json()) as { error: { code: string } }).error.code).toBe('not_found');
      const noRoute = await startFaultline({
        listeners: [
          { name: 'ingress', port: 0, routes: [{ name: 'api', path_prefix: '/api', upstream: up.url }] },
        ],
      });
      const r = await send(noRoute.url(), { path: '/other' });
      expect(r.status).toBe(404);
      expect(r.headers['x-faultline-error']).toBe('no_route');
      await noRoute.stop();
      await removeDir(noRoute.stateDir);
    } finally {
      await fl.stop();
      await up.close();
      await removeDir(fl.stateDir);
    }
  });

  it('refuses a non-loopback admin address without a token', async () => {
    await expect(
      startFaultline({ ...proxyConfig('http://127.0.0.1:9'), admin: { address: '0.0.0.0', port: 0 } }),
    ).rejects.toThrow(/admin\.address: 0\.0\.0\.0 is not loopback/);
  });
});
