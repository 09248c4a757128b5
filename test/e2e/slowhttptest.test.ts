/**
 * Issue 11 item 3 with the attacker's own tool: `slowhttptest -B` (slow body, "R-U-Dead-Yet", Debian's
 * package) holds hundreds of uploads open against a listener whose route has a small upstream pool,
 * while a probe client keeps asking. Every probe must be answered: slow clients hold only their own
 * sockets (small bodies are buffered before an upstream connection is taken), never the pool.
 */
import { spawn } from 'node:child_process';
import { request } from 'undici';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { startUpstream, type Upstream } from '../helpers/servers.js';

let upstream: Upstream;
let fl: TestFaultline;

beforeAll(async () => {
  upstream = await startUpstream((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  fl = await startFaultline({
    listeners: [
      { name: 'edge', port: 0, routes: [{ name: 'api', upstream: upstream.url, max_connections: 16 }] },
    ],
  });
});

afterAll(async () => {
  await fl.stop();
  await upstream.close();
  await removeDir(fl.stateDir);
});

it('slowhttptest -B with 400 slow uploads: every probe request is still answered', async () => {
  const attack = spawn(
    'slowhttptest',
    ['-B', '-c', '400', '-r', '200', '-i', '2', '-s', '4096', '-l', '8', '-u', `${fl.url()}/upload`],
    { stdio: 'ignore' },
  );
  const exited = new Promise<number | null>((resolve, reject) => {
    attack.once('error', reject); // not installed: fail, never skip (.ci/run installs it)
    attack.once('exit', (code) => resolve(code));
  });
  const killer = setTimeout(() => attack.kill('SIGKILL'), 20_000);
  try {
    await new Promise((r) => setTimeout(r, 2000)); // let the connections pile up
    const statuses: (number | string)[] = [];
    for (let i = 0; i < 16; i++) {
      try {
        const res = await request(`${fl.url()}/probe`, { headersTimeout: 3000, bodyTimeout: 3000 });
        await res.body.text();
        statuses.push(res.statusCode);
      } catch (err) {
        statuses.push((err as Error).message);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(statuses).toEqual(Array(16).fill(200));
  } finally {
    attack.kill('SIGINT');
    await exited.catch(() => null);
    clearTimeout(killer);
  }
}, 40_000);
