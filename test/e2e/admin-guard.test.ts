/**
 * Issue 11 item 10: a web page the operator visits must not drive the admin port (CSRF, DNS
 * rebinding). Raw node:http requests, so Host and Origin are exactly what a browser would send.
 */
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { adminCall } from '../../src/cli/admin-client.js';
import { exp, oneRoute } from '../helpers/experiments.js';
import { startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { startBaggageEcho } from '../helpers/servers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function faultline(top: Record<string, unknown> = {}): Promise<TestFaultline> {
  const up = await startBaggageEcho();
  cleanup.push(() => up.close());
  const fl = await startFaultline(oneRoute(up.url, [exp({})], top));
  cleanup.push(() => fl.stop());
  return fl;
}

interface Reply {
  status: number;
  code: string | undefined;
  body: string;
}

/** One raw request to the admin port; `headers` go out as given (Host included). */
function call(
  fl: TestFaultline,
  method: string,
  path: string,
  headers: Record<string, string>,
  body = '',
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port: fl.fl.adminPort, method, path, headers, agent: false, setHost: false },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => {
          let code: string | undefined;
          try {
            code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode ?? 0, code, body: text });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const JSON_CT = { 'content-type': 'application/json' };

async function state(fl: TestFaultline): Promise<string> {
  const r = await call(fl, 'GET', '/experiments/e1', { host: 'localhost' });
  return (JSON.parse(r.body) as { state: string }).state;
}

describe('admin CSRF and DNS rebinding', () => {
  it("a foreign page's simple POST (Origin evil, text/plain, empty body) cannot re-arm a killed experiment", async () => {
    const fl = await faultline();
    const host = `127.0.0.1:${fl.fl.adminPort}`;
    expect((await call(fl, 'POST', '/experiments/e1/kill', { host, ...JSON_CT })).status).toBe(200);
    const evil = await call(fl, 'POST', '/experiments/e1/arm', {
      host,
      origin: 'http://evil.example',
      'content-type': 'text/plain',
    });
    expect(evil.status).toBe(403);
    expect(evil.code).toBe('forbidden_origin');
    for (const origin of ['null', 'http://127.0.0.1:1', `https://${host}`])
      expect((await call(fl, 'POST', '/experiments/e1/arm', { host, origin, ...JSON_CT })).code).toBe(
        'forbidden_origin',
      );
    for (const method of ['PUT', 'DELETE'])
      expect((await call(fl, method, '/kill', { host, origin: 'http://evil.example' })).status).toBe(403);
    expect(await state(fl)).toBe('killed');
    // The admin's own origin (e.g. a page it served, or a same-origin tool) is fine.
    const same = await call(fl, 'POST', '/experiments/e1/arm', {
      host,
      origin: `http://${host}`,
      ...JSON_CT,
    });
    expect(same.status).toBe(200);
    expect(await state(fl)).toBe('running');
  });

  it('a DNS-rebound name in Host is refused; loopback names, the address and allowed_hosts are not', async () => {
    const fl = await faultline({
      admin: { address: '127.0.0.1', port: 0, allowed_hosts: ['Admin.Internal'] },
    });
    const port = fl.fl.adminPort;
    const rebound = await call(fl, 'POST', '/kill', { host: `evil.example:${port}`, ...JSON_CT });
    expect(rebound.status).toBe(403);
    expect(rebound.code).toBe('forbidden_host');
    expect(await state(fl)).toBe('running');
    // Reads stay open (Prometheus scrapes by pod IP or service name).
    expect((await call(fl, 'GET', '/experiments', { host: `evil.example:${port}` })).status).toBe(200);
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `127.0.0.2:${port}`, `[::1]:${port}`])
      expect((await call(fl, 'POST', '/config/reload', { host, ...JSON_CT })).status, host).toBe(200);
    expect((await call(fl, 'POST', '/config/reload', { host: 'admin.internal', ...JSON_CT })).status).toBe(
      200,
    );
  });

  it('mutating calls need content-type application/json, also with an empty body', async () => {
    const fl = await faultline();
    const host = `127.0.0.1:${fl.fl.adminPort}`;
    for (const ct of [undefined, 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data'])
      expect(
        await call(fl, 'POST', '/experiments/e1/kill', { host, ...(ct ? { 'content-type': ct } : {}) }),
      ).toMatchObject({ status: 415, code: 'unsupported_media_type' });
    expect(await state(fl)).toBe('running');
    const ok = await call(fl, 'POST', '/experiments/e1/kill', {
      host,
      'content-type': 'Application/JSON; charset=utf-8',
    });
    expect(ok.status).toBe(200);
    // The CLI's client sends the JSON content type also when it has no body.
    expect((await adminCall(fl.admin, 'POST', '/config/reload')).status).toBe(200);
    expect((await adminCall(fl.admin, 'POST', '/experiments/e1/arm', { by: 'test' })).status).toBe(200);
  });

  it('takes the Bearer scheme in any case', async () => {
    const token = 'a-very-long-admin-token';
    const fl = await faultline({ admin: { address: '127.0.0.1', port: 0, token } });
    const host = `127.0.0.1:${fl.fl.adminPort}`;
    for (const scheme of ['bearer', 'BEARER', 'Bearer', 'bEaReR'])
      expect(
        (await call(fl, 'POST', '/config/reload', { host, authorization: `${scheme} ${token}`, ...JSON_CT }))
          .status,
        scheme,
      ).toBe(200);
    for (const authorization of [`Basic ${token}`, 'bearer wrong-token-wrong-token', 'bearer', token])
      expect((await call(fl, 'POST', '/config/reload', { host, authorization, ...JSON_CT })).status).toBe(
        401,
      );
  });

  it('answers 400 to a malformed %-encoding in the path, not 500', async () => {
    const fl = await faultline();
    const host = `127.0.0.1:${fl.fl.adminPort}`;
    for (const path of ['/experiments/%E0%A4%A', '/experiments/%zz', '/%'])
      expect(await call(fl, 'GET', path, { host }), path).toMatchObject({ status: 400, code: 'bad_path' });
    expect(await call(fl, 'POST', '/experiments/%ff/kill', { host, ...JSON_CT })).toMatchObject({
      status: 400,
      code: 'bad_path',
    });
    // Admin still answers afterwards.
    expect((await call(fl, 'GET', '/healthz', { host })).status).toBe(200);
  });
});
