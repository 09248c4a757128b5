import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { createServer as netServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runLoadCommand } from '../../src/load/command.js';
import type { LoadReport } from '../../src/load/report.js';

const entry = fileURLToPath(new URL('../../dist/bin.js', import.meta.url));

function sink(): { write(s: string): boolean; text: () => string } {
  let buf = '';
  return { write: (s: string) => ((buf += s), true), text: () => buf };
}

async function freePort(): Promise<number> {
  const s = netServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

async function waitReady(url: string): Promise<void> {
  // Up to 20 s: a loaded CI machine can take a while to start a Node process.
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} not ready`);
}

// The load harness against a real Faultline (dist/bin.js from `npm run build`): per-arm counts
// read from x-faultline-injected must agree with the admin's canary counts, and a kill during the
// run must give exit code 4.
describe.skipIf(!existsSync(entry))('faultline load against a real Faultline', () => {
  let upstream: Server;
  let proxy: ChildProcess;
  let dir = '';
  let target = '';
  let admin = '';
  let proxyErr = '';
  beforeAll(async () => {
    upstream = createServer((req, res) => {
      req.resume();
      res.end('ok');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const upPort = (upstream.address() as AddressInfo).port;
    const port = await freePort();
    const adminPort = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'faultline-load-e2e-'));
    writeFileSync(
      join(dir, 'c.yaml'),
      `listeners:
  - name: ingress
    address: 127.0.0.1
    port: ${port}
    routes:
      - { name: api, path_prefix: /, upstream: http://127.0.0.1:${upPort}, timeout_ms: 2000 }
admin: { address: 127.0.0.1, port: ${adminPort} }
experiments:
  - id: ab5
    hypothesis: "load e2e"
    match: { listener: ingress, route: api }
    split: { percent: 5 }
    fault: { kind: abort, status: 503 }
`,
    );
    proxy = spawn(process.execPath, [entry, 'run', '--config', join(dir, 'c.yaml'), '--no-watch'], {
      cwd: dir,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    proxy.stderr?.on('data', (d: Buffer) => (proxyErr = (proxyErr + d.toString()).slice(-2000)));
    target = `http://127.0.0.1:${port}/x`;
    admin = `http://127.0.0.1:${adminPort}`;
    await waitReady(`${admin}/ready`).catch((err: Error) => {
      throw new Error(`${err.message}: ${proxyErr}`);
    });
  });
  afterAll(async () => {
    if (proxy.exitCode === null) {
      const exited = new Promise((r) => proxy.once('exit', r));
      proxy.kill('SIGTERM');
      await exited;
    }
    await new Promise((r) => upstream.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('canary counts from the header match the admin exactly', async () => {
    const out = sink();
    const code = await runLoadCommand(
      [
        '--target',
        target,
        '--rate',
        '400',
        '--duration',
        '1.5s',
        '--admin',
        admin,
        '--experiment',
        'ab5',
        '--json',
      ],
      { stdout: out, stderr: sink(), progressMs: 0 },
    );
    expect(code).toBe(0);
    const r = JSON.parse(out.text()) as LoadReport;
    const e = r.admin?.experiments[0];
    expect(e?.id).toBe('ab5');
    expect(r.arms.canary.count).toBeGreaterThan(0);
    expect(r.arms.canary.status['5xx']).toBe(r.arms.canary.count);
    expect(e?.canary['requests']).toBe(r.arms.canary.count);
    expect(e?.canary['injected']).toBe(r.arms.canary.count);
    expect(e?.control['requests']).toBeGreaterThan(0);
    expect(e?.untouched).toBe(r.completed - r.arms.canary.count - (e?.control['requests'] ?? 0));
    expect(r.arms.canary.injected).toBe(r.arms.canary.count);
    expect(r.arms.controlOrUntouched.errors).toBe(0);
    expect(r.arms.controlOrUntouched.count).toBe(r.completed - r.arms.canary.count);
    // No arm_header in this config: control comes from the admin's counts, not from the client.
    expect(r.controlSource).toBe('admin');
    expect(r.arms.control).toBeNull();
    expect(r.adminControl?.requests).toBe(e?.control['requests']);
    expect(r.adminControl?.errorRate).toBe(0);
  });

  it('exits 4 when the experiment is killed during the run', async () => {
    const out = sink();
    const run = runLoadCommand(
      [
        '--target',
        target,
        '--rate',
        '200',
        '--duration',
        '2s',
        '--admin',
        admin,
        '--experiment',
        'ab5',
        '--json',
      ],
      { stdout: out, stderr: sink(), progressMs: 250 },
    );
    await new Promise((r) => setTimeout(r, 700));
    const kill = await fetch(`${admin}/experiments/ab5/kill`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'load e2e' }),
    });
    expect(kill.status).toBe(200);
    expect(await run).toBe(4);
    const r = JSON.parse(out.text()) as LoadReport;
    const e = r.admin?.experiments[0];
    expect(e?.stateAfter).toBe('killed');
    expect(e?.killed).toBe(true);
    expect(e?.killedAfterS).toBeGreaterThan(0.3);
  });
});
