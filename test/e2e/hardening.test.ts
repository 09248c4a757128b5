/**
 * Issue 11, crashes and denial of service (items 1-4 and 6), against real servers over raw sockets: a
 * request line that used to kill the process, HTTP/2 streams beyond the limits (raw frames), slow
 * uploads that used to hold the upstream pool, heads Node truncated silently, and a connection flood.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { proxyConfig, removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import {
  ERR_CANCEL,
  ERR_REFUSED_STREAM,
  FRAME_GOAWAY,
  FRAME_RST_STREAM,
  RawH2,
  SETTINGS_MAX_CONCURRENT_STREAMS,
} from '../helpers/h2frames.js';
import { runCli } from '../helpers/process.js';
import { metricSum, scrape, startUpstream, type Upstream } from '../helpers/servers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Writes `text` on a fresh connection; resolves with everything read until the server closes. */
function raw(port: number, text: string | Buffer, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(text));
    let out = '';
    const t = setTimeout(() => {
      s.destroy();
      resolve(`TIMEOUT ${out}`);
    }, timeoutMs);
    s.on('data', (d) => (out += d.toString('latin1')));
    s.on('close', () => {
      clearTimeout(t);
      resolve(out);
    });
    s.on('error', () => undefined);
  });
}

function get(url: string): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
  });
}

/** An upstream that counts the requests it received and answers each once its body has ended. */
async function countingUpstream(): Promise<Upstream & { seen: string[]; open: () => number }> {
  const seen: string[] = [];
  let open = 0;
  const up = await startUpstream((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    open++;
    req.on('close', () => open--);
    req.resume();
    req.on('end', () => res.end(JSON.stringify({ url: req.url, headers: req.rawHeaders.length / 2 })));
  });
  return Object.assign(up, { seen, open: () => open });
}

const running: TestFaultline[] = [];
const upstreams: Upstream[] = [];
async function start(config: Record<string, unknown>): Promise<TestFaultline> {
  const fl = await startFaultline(config);
  running.push(fl);
  return fl;
}
afterEach(async () => {
  for (const fl of running.splice(0)) {
    await fl.stop();
    await removeDir(fl.stateDir);
  }
});
afterAll(async () => {
  for (const u of upstreams) await u.close();
});

let up: Upstream & { seen: string[]; open: () => number };
beforeAll(async () => {
  up = await countingUpstream();
  upstreams.push(up);
});

describe('item 1: the protocol comes from the accepting server; errors stay with their request', () => {
  it('an "HTTP/2.0" request line on an http1 listener is answered 505 and the process keeps serving (real CLI)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'faultline-h11-'));
    const port = await freePort();
    const adminPort = await freePort();
    const configFile = join(dir, 'faultline.yaml');
    await writeFile(
      configFile,
      stringify({
        state_dir: join(dir, 'state'),
        admin: { address: '127.0.0.1', port: adminPort },
        listeners: [{ name: 'ingress', port, routes: [{ name: 'api', upstream: up.url }] }],
      }),
    );
    const cli = runCli(['run', '--config', configFile, '--no-watch']);
    try {
      await cli.waitForLog((l) => l['msg'] === 'faultline started');
      const answer = await raw(port, 'GET / HTTP/2.0\r\nHost: x\r\n\r\n');
      expect(answer).toMatch(/^HTTP\/1\.1 505 /);
      expect(answer).toContain('x-faultline-error: http_version');
      await sleep(100);
      expect(cli.child.exitCode).toBe(null);
      expect((await get(`http://127.0.0.1:${port}/after`)).status).toBe(200);
      expect((await get(`http://127.0.0.1:${adminPort}/healthz`)).status).toBe(200);
      const m = await scrape(`http://127.0.0.1:${adminPort}`);
      expect(metricSum(m, 'faultline_client_errors_total', { kind: 'bad_version' })).toBe(1);
    } finally {
      cli.child.kill('SIGTERM');
      await cli.exited;
      await removeDir(dir);
    }
  });

  it('CONNECT and Upgrade on HTTP/1.1 get an answer (405 / 501), never a silent close; bad admin targets get 4xx', async () => {
    const fl = await start(proxyConfig(up.url));
    const port = Number(new URL(fl.url()).port);
    const connect = await raw(port, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
    expect(connect).toMatch(/^HTTP\/1\.1 405 /);
    expect(connect).toMatch(/allow: GET/);
    const upgrade = await raw(
      port,
      'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n',
    );
    expect(upgrade).toMatch(/^HTTP\/1\.1 501 /);
    expect(up.seen.filter((l) => l.startsWith('CONNECT') || l.endsWith('/ws'))).toEqual([]);
    expect((await get(`${fl.url()}/after-connect`)).status).toBe(200);
    // The admin port: request targets that do not parse, and file names from Object.prototype.
    const admin = Number(new URL(fl.admin).port);
    for (const target of ['//', '//x:y', 'http://a:99999/'])
      expect(
        await raw(admin, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`),
        target,
      ).toMatch(/^HTTP\/1\.1 400 [\s\S]*bad_path/);
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty'])
      expect((await get(`${fl.admin}/dashboard/${name}`)).status, name).toBe(404);
  });

  it('a second Host line gets 400, a transfer coding other than chunked 501; neither is forwarded', async () => {
    const fl = await start(proxyConfig(up.url));
    const port = Number(new URL(fl.url()).port);
    const before = up.seen.length;
    const dup = await raw(port, 'GET /dup HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n');
    expect(dup).toMatch(/^HTTP\/1\.1 400 [\s\S]*x-faultline-error: duplicate_host/);
    const gz = await raw(
      port,
      'POST /gz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    );
    expect(gz).toMatch(/^HTTP\/1\.1 501 [\s\S]*x-faultline-error: unsupported_coding/);
    // Chunked in any case is forwarded as before.
    const ok = await raw(
      port,
      'POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    );
    expect(ok).toMatch(/^HTTP\/1\.1 200 /);
    expect(up.seen.slice(before)).toEqual(['POST /chunked']);
    const m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_client_errors_total', { kind: 'duplicate_host' })).toBe(1);
    expect(metricSum(m, 'faultline_client_errors_total', { kind: 'unsupported_coding' })).toBe(1);
  });

  it('HTTP/1.0 is still served', async () => {
    const fl = await start(proxyConfig(up.url));
    const answer = await raw(Number(new URL(fl.url()).port), 'GET /v10 HTTP/1.0\r\nHost: x\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('a request whose handling throws gets a 500, is counted, and the next request is served', async () => {
    const fl = await start(proxyConfig(up.url));
    const listener = fl.fl.listeners.get('ingress')!;
    const original = listener.dispatch.bind(listener);
    listener.dispatch = () => {
      throw new Error('boom');
    };
    const failed = await get(`${fl.url()}/throws`);
    listener.dispatch = original;
    expect(failed.status).toBe(500);
    expect(failed.headers['x-faultline-error']).toBe('internal');
    expect((await get(`${fl.url()}/fine`)).status).toBe(200);
    const m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_uncaught_errors_total', { kind: 'request' })).toBe(1);
    expect(listener.inFlight).toBe(0);
  });

  it('an uncaught exception outside any request is logged and counted, injection stops, serving goes on', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'faultline-h11-'));
    const main = new URL('../../dist/main.js', import.meta.url).href;
    const load = new URL('../../dist/config/load.js', import.meta.url).href;
    const config = {
      state_dir: join(dir, 'state'),
      admin: { address: '127.0.0.1', port: 0 },
      listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url }] }],
      experiments: [
        {
          id: 'exp',
          hypothesis: 'h',
          split: { percent: 5 },
          fault: { kind: 'abort', status: 503 },
        },
      ],
    };
    // A timer that throws, in a process running a Faultline: Node's default would end the process.
    const script = `
      import { Faultline } from ${JSON.stringify(main)};
      import { validateConfig } from ${JSON.stringify(load)};
      const cfg = ${JSON.stringify(config)};
      const fl = await Faultline.start({ configFile: 'x.yaml', config: validateConfig(cfg, 'x.yaml') });
      setTimeout(() => { throw new Error('boom from a timer'); }, 50);
      setTimeout(async () => {
        const res = await fetch('http://127.0.0.1:' + fl.port('ingress') + '/after');
        const metrics = await (await fetch('http://127.0.0.1:' + fl.adminPort + '/metrics')).text();
        const exps = await (await fetch('http://127.0.0.1:' + fl.adminPort + '/experiments')).text();
        process.stdout.write(JSON.stringify({ status: res.status, metrics, exps }) + '\\n');
        await fl.stop(100);
        process.exit(0);
      }, 300);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    await removeDir(dir);
    expect(code, err).toBe(0);
    const result = JSON.parse(out) as { status: number; metrics: string; exps: string };
    expect(result.status).toBe(200);
    expect(result.metrics).toMatch(/faultline_uncaught_errors_total\{kind="exception"\} 1/);
    expect(result.exps).toContain('killed');
    expect(err).toMatch(/"msg":"uncaught error; still serving, fault injection stopped".*boom from a timer/);
  });
});

describe('item 4: heads Node would truncate, or over 16 KiB, get 431 and are never forwarded', () => {
  // An upstream that accepts large heads itself (Node's 16 KiB default would answer 431 on its own).
  let big: Upstream & { seen: string[] };
  beforeAll(async () => {
    const seen: string[] = [];
    const server = http.createServer({ maxHeaderSize: 256 * 1024 }, (req, res) => {
      seen.push(`${req.method} ${req.url}`);
      req.resume();
      req.on('end', () => res.end('big'));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    big = {
      url: `http://127.0.0.1:${port}`,
      port,
      server,
      seen,
      close: () =>
        new Promise<void>((r) => {
          server.close(() => r());
          server.closeAllConnections();
        }),
    };
    upstreams.push(big);
  });

  it('2,000 headers (a Content-Length after the cut) are refused, not forwarded with the first ~1,000', async () => {
    const fl = await start(proxyConfig(big.url));
    const port = Number(new URL(fl.url()).port);
    const before = big.seen.length;
    let lines = '';
    for (let i = 0; i < 1999; i++) lines += `x-h${i}: v\r\n`;
    // The body, if the Content-Length were lost, would be parsed as a second request.
    const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
    const answer = await raw(
      port,
      `POST /many HTTP/1.1\r\nHost: x\r\n${lines}Content-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    expect(answer).not.toContain('HTTP/1.1 200');
    expect(big.seen.slice(before)).toEqual([]);
  });

  it('a 20 KiB head of many short headers gets 431 (http1), so does a 20 KiB HTTP/2 head', async () => {
    const fl = await start({
      listeners: [
        { name: 'ingress', port: 0, routes: [{ name: 'api', upstream: big.url }] },
        { name: 'h2c', port: 0, protocol: 'h2c', routes: [{ name: 'api2', upstream: big.url }] },
      ],
    });
    const before = big.seen.length;
    let lines = '';
    // About 20 KiB in 2,000 short lines: Node keeps ~1,000 of them (under 16 KiB) and drops the rest.
    for (let i = 0; i < 2000; i++) lines += `h${i}: vv\r\n`;
    expect(lines.length).toBeGreaterThan(20_000);
    const answer = await raw(fl.fl.port('ingress'), `GET /big HTTP/1.1\r\nHost: x\r\n${lines}\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);

    const session = http2.connect(`http://127.0.0.1:${fl.fl.port('h2c')}`);
    session.on('error', () => undefined);
    const fields: Record<string, string> = { ':path': '/big-h2' };
    for (let i = 0; i < 20; i++) fields[`x-header-${i}`] = 'v'.repeat(1000);
    const status = await new Promise<number>((resolve, reject) => {
      const s = session.request(fields);
      s.on('response', (h) => resolve(Number(h[':status'])));
      s.on('error', reject);
      s.resume();
      s.end();
    });
    session.close();
    expect(status).toBe(431);
    expect(big.seen.slice(before)).toEqual([]);
    // 1,000 header lines are still fine.
    let ok = '';
    for (let i = 0; i < 998; i++) ok += `x${i}: v\r\n`;
    expect(
      await raw(fl.fl.port('ingress'), `GET /ok HTTP/1.1\r\nHost: x\r\n${ok}Connection: close\r\n\r\n`),
    ).toMatch(/^HTTP\/1\.1 200 /);
  });
});

describe('item 2: HTTP/2 stream limits (raw frames)', () => {
  const post = (path: string): [string, string][] => [
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', path],
    [':authority', 'x'],
  ];

  /** Opens `n` request streams that never end, each with one byte of body (so it reaches the upstream). */
  function openStreams(c: RawH2, n: number, prefix: string): void {
    for (let i = 0; i < n; i++) {
      c.headers(1 + 2 * i, post(`/${prefix}-${i}`), false);
      c.data(1 + 2 * i, Buffer.from('x'), false);
    }
  }

  it('advertises max_concurrent_streams and refuses streams beyond it; other connections are served', async () => {
    const fl = await start({
      listeners: [
        {
          name: 'h2c',
          port: 0,
          protocol: 'h2c',
          max_concurrent_streams: 10,
          max_inflight_per_connection: 100,
          routes: [{ name: 'api', upstream: up.url, max_connections: 64 }],
        },
      ],
    });
    const before = up.seen.length;
    // Streams sent before the client acknowledged the limit: the extra ones get REFUSED_STREAM.
    const early = await RawH2.connect(fl.fl.port('h2c'));
    openStreams(early, 30, 'early');
    const settings = await early.serverSettings(false);
    expect(settings.get(SETTINGS_MAX_CONCURRENT_STREAMS)).toBe(10);
    await sleep(500);
    const refused = [...early.resets().values()].filter((c) => c === ERR_REFUSED_STREAM);
    expect(refused.length).toBe(20);
    expect(up.seen.slice(before).length).toBe(10);
    // Streams beyond a limit the client acknowledged are a protocol violation: nghttp2 closes that
    // connection (GOAWAY), and nothing beyond the limit reaches the upstream.
    const late = await RawH2.connect(fl.fl.port('h2c'));
    await late.serverSettings(true);
    await sleep(50);
    openStreams(late, 30, 'late');
    await late.waitFor((f) => f.type === FRAME_GOAWAY);
    await sleep(200);
    expect(up.seen.slice(before).filter((s) => s.includes('/late-')).length).toBeLessThanOrEqual(10);
    // A well-behaved client on another connection is served meanwhile.
    const session = http2.connect(`http://127.0.0.1:${fl.fl.port('h2c')}`);
    const status = await new Promise<number>((resolve, reject) => {
      const s = session.request({ ':path': '/normal' });
      s.on('response', (h) => resolve(Number(h[':status'])));
      s.on('error', reject);
      s.resume();
      s.end();
    });
    session.close();
    early.destroy();
    late.destroy();
    expect(status).toBe(200);
  });

  it('one connection cannot hold more than max_inflight_per_connection upstream slots; its other streams wait', async () => {
    const fl = await start({
      listeners: [
        {
          name: 'h2c',
          port: 0,
          protocol: 'h2c',
          max_inflight_per_connection: 4,
          routes: [{ name: 'api', upstream: up.url, max_connections: 8, timeout_ms: 2000 }],
        },
      ],
    });
    const before = up.seen.length;
    const attacker = await RawH2.connect(fl.fl.port('h2c'));
    await attacker.serverSettings();
    openStreams(attacker, 20, 'hold');
    await sleep(500);
    expect(up.seen.slice(before).length).toBe(4);
    expect(attacker.resets().size).toBe(0);
    // The pool (8) still has room for others: three concurrent requests on a new connection succeed.
    const session = http2.connect(`http://127.0.0.1:${fl.fl.port('h2c')}`);
    const statuses = await Promise.all(
      [0, 1, 2].map(
        (i) =>
          new Promise<number>((resolve, reject) => {
            const s = session.request({ ':path': `/other-${i}` });
            s.on('response', (h) => resolve(Number(h[':status'])));
            s.on('error', reject);
            s.resume();
            s.end();
          }),
      ),
    );
    session.close();
    expect(statuses).toEqual([200, 200, 200]);
    // One of the attacker's forwarded requests ends: the next waiting stream is forwarded, in order.
    attacker.data(1, Buffer.alloc(0), true);
    await sleep(300);
    const own = up.seen.slice(before).filter((x) => x.includes('/hold-'));
    expect(own).toEqual(['POST /hold-0', 'POST /hold-1', 'POST /hold-2', 'POST /hold-3', 'POST /hold-4']);
    attacker.destroy();
    await sleep(100);
    expect(fl.fl.listeners.get('h2c')!.inFlight).toBe(0);
  });

  it('an idle stream is reset after stream_idle_timeout_ms, an idle connection closed after session_idle_timeout_ms', async () => {
    const fl = await start({
      listeners: [
        {
          name: 'h2c',
          port: 0,
          protocol: 'h2c',
          stream_idle_timeout_ms: 300,
          session_idle_timeout_ms: 300,
          routes: [{ name: 'api', upstream: up.url }],
        },
      ],
    });
    const c = await RawH2.connect(fl.fl.port('h2c'));
    await c.serverSettings();
    c.headers(1, post('/idle'), false);
    const rst = await c.waitFor((f) => f.type === FRAME_RST_STREAM && f.streamId === 1, 3000);
    expect(rst.payload.readUInt32BE(0)).toBe(ERR_CANCEL);
    await c.waitFor((f) => f.type === FRAME_GOAWAY, 3000);
    c.destroy();
    await sleep(50);
    expect(up.open()).toBe(0);
  });
});

describe('item 3: slow uploads neither hold the upstream pool nor run forever', () => {
  /** Sends a request head, then `chunk` every `gapMs`, `times` times; resolves with the answer. */
  function slowUpload(
    port: number,
    head: string,
    chunk: string,
    gapMs: number,
    times: number,
  ): Promise<{ answer: string; ms: number }> {
    return new Promise((resolve) => {
      const t0 = Date.now();
      const s = net.connect(port, '127.0.0.1', () => s.write(head));
      let out = '';
      let sent = 0;
      const timer = setInterval(() => {
        if (sent++ >= times || s.destroyed) return clearInterval(timer);
        s.write(chunk);
      }, gapMs);
      s.on('data', (d) => (out += d.toString('latin1')));
      s.on('error', () => undefined);
      s.on('close', () => {
        clearInterval(timer);
        resolve({ answer: out, ms: Date.now() - t0 });
      });
    });
  }

  it('50 slow uploads (Content-Length) take no pool slot, get 408 once below the rate, and probes are served', async () => {
    const fl = await start(
      proxyConfig(
        up.url,
        { max_connections: 2, timeout_ms: 2000 },
        { min_upload_bytes_per_s: 1024, upload_grace_ms: 1000, request_timeout_ms: 10_000 },
      ),
    );
    const port = Number(new URL(fl.url()).port);
    const before = up.seen.length;
    const slow = Array.from({ length: 50 }, (_, i) =>
      slowUpload(
        port,
        `POST /slow-${i} HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n`,
        'x'.repeat(10),
        200,
        100,
      ),
    );
    await sleep(300);
    const probes = await Promise.all([0, 1, 2, 3, 4].map((i) => get(`${fl.url()}/probe-${i}`)));
    expect(probes.map((p) => p.status)).toEqual([200, 200, 200, 200, 200]);
    const results = await Promise.all(slow);
    for (const r of results) {
      expect(r.answer).toMatch(/^HTTP\/1\.1 408 /);
      expect(r.answer).toContain('x-faultline-error: request_timeout');
      expect(r.ms).toBeLessThan(4000);
    }
    expect(up.seen.slice(before).filter((s) => s.includes('/slow-'))).toEqual([]);
  });

  it('a streamed (chunked) upload below the rate gets 408 and its upstream request is aborted', async () => {
    const fl = await start(
      proxyConfig(
        up.url,
        { timeout_ms: 500 },
        { min_upload_bytes_per_s: 1024, upload_grace_ms: 1000, request_timeout_ms: 10_000 },
      ),
    );
    const port = Number(new URL(fl.url()).port);
    const r = await slowUpload(
      port,
      'POST /chunked-slow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n',
      'a\r\n0123456789\r\n',
      200,
      100,
    );
    expect(r.answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(r.ms).toBeLessThan(4000);
    await sleep(50);
    expect(up.open()).toBe(0);
    const m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_upstream_errors_total')).toBe(0);
    expect(metricSum(m, 'faultline_client_errors_total', { kind: 'slow_upload' })).toBe(1);
  });

  it('a fast enough streamed upload is forwarded whole; request_timeout_ms bounds one that is not done in time', async () => {
    const fl = await start(
      proxyConfig(
        up.url,
        // A route deadline of 1 s (not less): the check that moves it on while the body still flows
        // must not race a body paused for a moment on a loaded machine.
        { timeout_ms: 1000 },
        { min_upload_bytes_per_s: 1024, upload_grace_ms: 1000, request_timeout_ms: 2500 },
      ),
    );
    const port = Number(new URL(fl.url()).port);
    const chunk = `800\r\n${'y'.repeat(0x800)}\r\n`; // 2 KiB every 100 ms: 20 KiB/s
    const fast = await slowUpload(
      port,
      'POST /chunked-fast HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n',
      chunk,
      100,
      40,
    );
    // 4 s of a fast upload: well above the rate, but not done after request_timeout_ms...
    expect(fast.answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(fast.ms).toBeGreaterThanOrEqual(2400);
    expect(fast.ms).toBeLessThan(4500);
    // ...while the same upload that ends is answered by the upstream.
    const done = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${fl.url()}/chunked-done`, { method: 'POST', agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      let n = 0;
      const t = setInterval(() => {
        if (n++ < 15) req.write('y'.repeat(2048));
        else {
          clearInterval(t);
          req.end();
        }
      }, 100);
    });
    expect(done).toBe(200);
  });
});

describe('item 6: max_connections', () => {
  it('a listener at max_connections closes further connections, counts them, and the admin port answers', async () => {
    const fl = await start(proxyConfig(up.url, {}, { max_connections: 5 }));
    const port = Number(new URL(fl.url()).port);
    const sockets: net.Socket[] = [];
    const closed: boolean[] = [];
    for (let i = 0; i < 10; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => undefined);
      closed.push(false);
      s.on('close', () => (closed[i] = true));
      sockets.push(s);
      await new Promise((r) => s.once('connect', r));
    }
    await sleep(200);
    expect(closed.filter(Boolean).length).toBe(5);
    const health = await get(`${fl.admin}/healthz`);
    expect(health.status).toBe(200);
    const m = await scrape(fl.admin);
    expect(
      metricSum(m, 'faultline_connections_refused_total', {
        listener: 'ingress',
        reason: 'max_connections',
      }),
    ).toBe(5);
    for (const s of sockets) s.destroy();
    await sleep(100);
    expect((await get(`${fl.url()}/after-flood`)).status).toBe(200);
  });
});

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
