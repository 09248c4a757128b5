/** Behaviour that needs Faultline as a separate OS process: memory, stickiness across processes, SIGHUP. */
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { runCli, type Spawned } from '../helpers/process.js';
import { startUpstream } from '../helpers/servers.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function spawnFaultline(
  config: Record<string, unknown>,
): Promise<{ p: Spawned; url: string; admin: string; file: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'fl-proc-'));
  const file = join(dir, 'faultline.yaml');
  await writeFile(file, stringify({ state_dir: dir, admin: { port: 0 }, ...config }));
  const p = runCli(['run', '--config', file]);
  cleanup.push(() => {
    p.child.kill('SIGKILL');
  });
  const listener = await p.waitForLog((l) => l['msg'] === 'listener started');
  const started = await p.waitForLog((l) => l['msg'] === 'faultline started');
  return {
    p,
    url: `http://127.0.0.1:${String(listener['port'])}`,
    admin: `http://${String(started['admin'])}`,
    file,
  };
}

function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : NaN;
}

/** A readable of `total` bytes produced in 64 KiB chunks (never held in memory at once). */
function generated(total: number): Readable {
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= total) return void this.push(null);
      const n = Math.min(chunk.length, total - sent);
      sent += n;
      this.push(n === chunk.length ? chunk : chunk.subarray(0, n));
    },
  });
}

describe('Faultline as a process', () => {
  it('streams a 1 GiB upload and a 1 GiB download with flat memory', async () => {
    const GiB = 1024 * 1024 * 1024;
    const up = await startUpstream((req, res) => {
      if (req.method === 'POST') {
        let n = 0;
        req.on('data', (c: Buffer) => (n += c.length));
        req.on('end', () => res.end(String(n)));
        return;
      }
      res.writeHead(200, { 'content-length': String(GiB) });
      generated(GiB).pipe(res);
    });
    cleanup.push(() => up.close());
    const { p, url } = await spawnFaultline({
      listeners: [
        { name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url, timeout_ms: 60_000 }] },
      ],
    });
    const pid = p.child.pid as number;
    const baseline = peakRssMb(pid);

    const uploaded = await new Promise<string>((resolve, reject) => {
      const req = http.request(url, { method: 'POST', headers: { 'content-length': String(GiB) } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      generated(GiB).pipe(req);
    });
    expect(Number(uploaded)).toBe(GiB);

    const downloaded = await new Promise<number>((resolve, reject) => {
      http
        .get(url, (res) => {
          let n = 0;
          res.on('data', (c: Buffer) => (n += c.length));
          res.on('end', () => resolve(n));
        })
        .on('error', reject);
    });
    expect(downloaded).toBe(GiB);
    const peak = peakRssMb(pid);
    // Streaming with backpressure: the peak stays far below one body.
    expect(peak - baseline).toBeLessThan(128);
  }, 120_000);

  it('keeps a sticky key in the same arm across two processes', async () => {
    const up = await startUpstream((req, res) => {
      res.writeHead(200, { 'x-seen-baggage': req.headers['baggage'] ?? '' });
      res.end();
    });
    cleanup.push(() => up.close());
    const config = {
      listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url }] }],
      experiments: [
        {
          id: 'sticky',
          hypothesis: 'h',
          split: { percent: 20, allow_above_cap: true, sticky: 'header:x-user-id' },
          fault: { kind: 'abort', status: 503 },
        },
      ],
    };
    const [a, b] = await Promise.all([spawnFaultline(config), spawnFaultline(config)]);
    const armOf = async (url: string, user: string) => {
      const r = await fetch(url, { headers: { 'x-user-id': user } });
      await r.arrayBuffer();
      if (r.status === 503) return 'canary';
      return (r.headers.get('x-seen-baggage') ?? '').includes('faultline.group=control') ? 'control' : 'none';
    };
    const arms: Record<string, number> = { canary: 0, control: 0, none: 0 };
    for (let i = 0; i < 300; i++) {
      const user = `user-${i}`;
      const first = await armOf(a.url, user);
      expect(await armOf(b.url, user)).toBe(first);
      expect(await armOf(a.url, user)).toBe(first);
      arms[first]! += 1;
    }
    expect(arms['canary']).toBeGreaterThan(30);
    expect(arms['control']).toBeGreaterThan(30);
  }, 60_000);

  it('SIGHUP reloads the config; an invalid file keeps the running one', async () => {
    const up = await startUpstream((_req, res) => res.end('v1'));
    cleanup.push(() => up.close());
    const base = { listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url }] }] };
    const { p, url, admin, file } = await spawnFaultline(base);
    const dir = file.slice(0, file.lastIndexOf('/'));
    await writeFile(file, 'listeners: [ { name: ingress, port: 0, routes: [] } ]\n');
    p.child.kill('SIGHUP');
    await p.waitForLog((l) => l['msg'] === 'config reload rejected; running config stays in force');
    expect(await (await fetch(url)).text()).toBe('v1');
    const status = (await (await fetch(`${admin}/config`)).json()) as {
      status: string;
      error: { issues: { path: string }[] };
    };
    expect(status.status).toBe('invalid');
    expect(status.error.issues[0]?.path).toBe('listeners[0].routes');

    await writeFile(
      file,
      stringify({
        state_dir: dir,
        admin: { port: 0 },
        ...base,
        experiments: [{ id: 'later', hypothesis: 'h', split: { percent: 1 }, fault: { kind: 'reset' } }],
      }),
    );
    p.child.kill('SIGHUP');
    await p.waitForLog((l) => l['msg'] === 'config reloaded');
    const list = (await (await fetch(`${admin}/experiments`)).json()) as { experiments: { id: string }[] };
    expect(list.experiments.map((e) => e.id)).toEqual(['later']);
  }, 30_000);
});
