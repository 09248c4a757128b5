/**
 * The access log speaks Envoy's conventions for injected requests: `response_flags` FI (fault
 * injected) or DI (delay injected), declared by each fault, and the retry `attempt` from
 * `x-envoy-attempt-count`.
 */
import { request } from 'undici';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { setLogLevel, setLogSink } from '../../src/telemetry/log.js';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { startUpstream, type Upstream } from '../helpers/servers.js';
import { stickyKeyIn } from '../helpers/sticky.js';

let upstream: Upstream;
let fl: TestFaultline;
const lines: Record<string, unknown>[] = [];

const experiment = (id: string, path: string, fault: Record<string, unknown>) => ({
  id,
  hypothesis: 'callers cope',
  match: { path_prefix: path },
  split: { percent: 50, allow_above_cap: true, sticky: 'header:x-user' },
  fault,
  min_samples: 1000,
});

beforeAll(async () => {
  setLogLevel('info'); // the test run logs warnings only
  setLogSink((line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  upstream = await startUpstream((req, res) => {
    req.resume();
    res.end('ok');
  });
  fl = await startFaultline({
    access_log: true,
    listeners: [{ name: 'edge', port: 0, routes: [{ name: 'api', upstream: upstream.url }] }],
    experiments: [
      experiment('fi', '/abort', { kind: 'abort', status: 503 }),
      experiment('di', '/slow', { kind: 'latency', ms: 20 }),
    ],
  });
});

afterAll(async () => {
  setLogLevel('warn');
  setLogSink((line) => process.stderr.write(`${line}\n`));
  await fl.stop();
  await upstream.close();
  await removeDir(fl.stateDir);
});

async function get(path: string, headers: Record<string, string>): Promise<number> {
  const res = await request(`${fl.url()}${path}`, { headers });
  await res.body.text();
  return res.statusCode;
}

it('FI for an injected abort, DI for an injected delay, none for control; attempt from x-envoy-attempt-count', async () => {
  expect(
    await get('/abort', { 'x-user': stickyKeyIn('canary', 'fi', 50, 'u'), 'x-envoy-attempt-count': '2' }),
  ).toBe(503);
  expect(await get('/slow', { 'x-user': stickyKeyIn('canary', 'di', 50, 'u') })).toBe(200);
  expect(await get('/abort', { 'x-user': stickyKeyIn('control', 'fi', 50, 'u') })).toBe(200);
  const access = lines.filter((l) => l['msg'] === 'access');
  expect(access.map((l) => [l['path'], l['group'], l['response_flags'], l['attempt']])).toEqual([
    ['/abort', 'canary', 'FI', 2],
    ['/slow', 'canary', 'DI', undefined],
    ['/abort', 'control', undefined, undefined],
  ]);
});
