import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
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

interface Running {
  target: string;
  admin: string;
  stop: () => Promise<void>;
}

/** An upstream and a Faultline (dist/bin.js) in front of it with one abort experiment "ab5". */
async function startFaultline(opts: { percent: number; armHeader: boolean }): Promise<Running> {
  const upstream = createServer((req, res) => {
    req.resume();
    res.end('ok');
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const upPort = (upstream.address() as AddressInfo).port;
  const port = await freePort();
  const adminPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'faultline-load-e2e-'));
  writeFileSync(
    join(dir, 'c.yaml'),
    `${opts.armHeader ? 'arm_header: true\n' : ''}listeners:
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
    split: { percent: ${opts.percent} }
    fault: { kind: abort, status: 503 }
`,
  );
  const proxy: ChildProcess = spawn(
    process.execPath,
    [entry, 'run', '--config', join(dir, 'c.yaml'), '--no-watch'],
    { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let proxyErr = '';
  proxy.stderr?.on('data', (d: Buffer) => (proxyErr = (proxyErr + d.toString()).slice(-2000)));
  const stop = async (): Promise<void> => {
    if (proxy.exitCode === null) {
      const exited = new Promise((r) => proxy.once('exit', r));
      proxy.kill('SIGTERM');
      await exited;
    }
    await new Promise((r) => upstream.close(r));
    rmSync(dir, { recursive: true, force: true });
  };
  const admin = `http://127.0.0.1:${adminPort}`;
  try {
    await waitReady(`${admin}/ready`);
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}: ${proxyErr}`);
  }
  return { target: `http://127.0.0.1:${port}/x`, admin, stop };
}

function loadArgs(f: Running, rate: number, duration: string): string[] {
  return [
    '--target',
    f.target,
    '--rate',
    String(rate),
    '--duration',
    duration,
    // Exact count comparisons with the admin: no warm-up requests around the window's edges.
    '--warmup',
    '0s',
    '--admin',
    f.admin,
    '--experiment',
    'ab5',
    '--json',
  ];
}

// The load harness against a real Faultline (dist/bin.js from `npm run build`): per-arm counts
// read from x-faultline-injected (and x-faultline-arm with `arm_header: true`) must agree with the
// admin's counts, and a kill during the run must give exit code 4.
describe.skipIf(!existsSync(entry))('faultline load against a real Faultline', () => {
  let f: Running;
  beforeAll(async () => {
    f = await startFaultline({ percent: 5, armHeader: false });
  });
  afterAll(async () => {
    await f?.stop();
  });

  it('canary counts from the header match the admin exactly', async () => {
    const out = sink();
    const code = await runLoadCommand(loadArgs(f, 400, '1.5s'), {
      stdout: out,
      stderr: sink(),
      progressMs: 0,
    });
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
    expect(r.armMarked).toBe(0);
    expect(r.controlSource).toBe('admin');
    expect(r.arms.control).toBeNull();
    expect(r.adminControl?.requests).toBe(e?.control['requests']);
    expect(r.adminControl?.errorRate).toBe(0);
  });

  it('exits 4 when the experiment is killed during the run', async () => {
    const out = sink();
    const run = runLoadCommand(loadArgs(f, 200, '2s'), { stdout: out, stderr: sink(), progressMs: 250 });
    await new Promise((r) => setTimeout(r, 700));
    const kill = await fetch(`${f.admin}/experiments/ab5/kill`, {
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

describe.skipIf(!existsSync(entry))('faultline load against a real Faultline with arm_header: true', () => {
  let f: Running;
  beforeAll(async () => {
    f = await startFaultline({ percent: 5, armHeader: true });
  });
  afterAll(async () => {
    await f?.stop();
  });

  it("control and untouched counts on the client equal the admin's", async () => {
    const out = sink();
    const code = await runLoadCommand(loadArgs(f, 600, '1.5s'), {
      stdout: out,
      stderr: sink(),
      progressMs: 0,
    });
    expect(code).toBe(0);
    const r = JSON.parse(out.text()) as LoadReport;
    const e = r.admin?.experiments[0];
    expect(e?.id).toBe('ab5');
    expect(r.controlSource).toBe('client');
    expect(r.adminControl).toBeNull();
    expect(r.arms.control?.count).toBeGreaterThan(0);
    expect(r.arms.control?.count).toBe(e?.control['requests']);
    expect(r.arms.control?.errors).toBe(0);
    expect(r.arms.canary.count).toBeGreaterThan(0);
    expect(r.arms.canary.count).toBe(e?.canary['requests']);
    expect(r.arms.canary.injected).toBe(e?.canary['injected']);
    expect(r.arms.canary.status['5xx']).toBe(r.arms.canary.count);
    expect(r.arms.untouched?.count).toBeGreaterThan(0);
    expect(r.arms.untouched?.count).toBe(e?.untouched);
    expect(r.armMarked).toBe(r.arms.canary.count + (r.arms.control?.count ?? 0));
  });
});
