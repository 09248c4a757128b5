import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { runCli } from '../helpers/process.js';
import { startUpstream } from '../helpers/servers.js';

async function configFile(obj: unknown): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fl-life-'));
  const file = join(dir, 'faultline.yaml');
  await writeFile(file, typeof obj === 'string' ? obj : stringify(obj));
  return file;
}

describe('CLI and process lifecycle', () => {
  it('validate: 0 for a good file, 1 with the bad field path for a bad one', async () => {
    const good = runCli(['validate', new URL('../../config/minimal.yaml', import.meta.url).pathname]);
    expect(await good.exited).toBe(0);
    expect(good.stdout()).toMatch(/valid \(1 listener/);
    const bad = await configFile(
      'listeners:\n  - name: ingress\n    port: 8080\n    routes:\n      - name: api\n        upstream: http://127.0.0.1:9000\n      - name: b\n        upstream: nope\n',
    );
    const v = runCli(['validate', bad]);
    expect(await v.exited).toBe(1);
    expect(v.stderr()).toContain('listeners[0].routes[1].upstream: must be an http(s) URL');
    expect(v.stderr()).toContain(bad);
  });

  it('run: exits non-zero with a structured log line on a bad config', async () => {
    const bad = await configFile({ listeners: [{ name: 'x', port: -1, routes: [] }] });
    const p = runCli(['run', '--config', bad]);
    expect(await p.exited).toBe(1);
    const line = await p.waitForLog((l) => l['msg'] === 'invalid config');
    expect(JSON.stringify(line['issues'])).toContain('listeners[0].port');
  });

  it('SIGTERM: stops accepting, drains the in-flight request, exits 0', async () => {
    const up = await startUpstream((_req, res) => setTimeout(() => res.end('finished'), 800));
    const dir = await mkdtemp(join(tmpdir(), 'fl-drain-'));
    const file = await configFile({
      state_dir: dir,
      drain_timeout_ms: 5000,
      admin: { port: 0 },
      listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url }] }],
    });
    const p = runCli(['run', '--config', file]);
    try {
      const started = await p.waitForLog((l) => l['msg'] === 'listener started');
      const url = `http://127.0.0.1:${String(started['port'])}`;
      const inFlight = fetch(url).then(async (r) => ({ status: r.status, body: await r.text() }));
      await new Promise((r) => setTimeout(r, 200));
      p.child.kill('SIGTERM');
      await p.waitForLog((l) => l['msg'] === 'faultline stopping');
      const r = await inFlight;
      expect(r).toEqual({ status: 200, body: 'finished' });
      expect(await p.exited).toBe(0);
      await p.waitForLog((l) => l['msg'] === 'faultline stopped');
      await expect(fetch(url)).rejects.toThrow();
    } finally {
      p.child.kill('SIGKILL');
      await up.close();
    }
  });
});
