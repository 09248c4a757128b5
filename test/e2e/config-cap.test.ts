/**
 * Config files are size-capped before parsing, and YAML parsing never stalls traffic: `validate`,
 * POST /config/reload and SIGHUP reject an oversize or hostile file and the running config stays.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { DEFAULT_CONFIG_MAX_BYTES, loadConfigFile } from '../../src/config/load.js';
import { runCli, type Spawned } from '../helpers/process.js';
import { startUpstream } from '../helpers/servers.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** Valid YAML over the default cap: the config itself is fine, only the padding makes it large. */
function oversize(valid: string): string {
  const pad = `# ${'x'.repeat(98)}\n`;
  return valid + pad.repeat(Math.ceil((DEFAULT_CONFIG_MAX_BYTES + 1 - valid.length) / pad.length) + 1);
}

/** An alias bomb: nine levels of ten aliases each expand to 10^9 nodes from 400 bytes. */
function aliasBomb(valid: string): string {
  let s = `${valid}x-bomb:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n`;
  for (let k = 1; k < 9; k++)
    s += `  a${k}: &a${k} [${Array(10)
      .fill(`*a${k - 1}`)
      .join(', ')}]\n`;
  return s;
}

async function spawnRun(config: Record<string, unknown>) {
  const dir = await mkdtemp(join(tmpdir(), 'fl-cap-'));
  const file = join(dir, 'faultline.yaml');
  const text = stringify({ state_dir: dir, admin: { port: 0 }, ...config });
  await writeFile(file, text);
  const p: Spawned = runCli(['run', '--config', file, '--no-watch']);
  cleanup.push(() => {
    p.child.kill('SIGKILL');
  });
  const listener = await p.waitForLog((l) => l['msg'] === 'listener started');
  const started = await p.waitForLog((l) => l['msg'] === 'faultline started');
  return {
    p,
    file,
    text,
    url: `http://127.0.0.1:${String(listener['port'])}`,
    admin: `http://${String(started['admin'])}`,
  };
}

describe('config size cap', () => {
  it('validate rejects a file over the cap, naming the file and the limit', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fl-cap-'));
    const file = join(dir, 'big.yaml');
    const minimal =
      'listeners:\n  - { name: a, port: 1, routes: [{ name: r, upstream: "http://127.0.0.1:2" }] }\n';
    await writeFile(file, oversize(minimal));
    const v = runCli(['validate', file]);
    expect(await v.exited).toBe(1);
    expect(v.stderr()).toContain(file);
    expect(v.stderr()).toMatch(/over the 1048576-byte limit/);
    // The same content under a raised cap is valid: the cap alone rejected it.
    const raised = runCli(['validate', file], {
      FAULTLINE_CONFIG_MAX_BYTES: String(4 * DEFAULT_CONFIG_MAX_BYTES),
    });
    expect(await raised.exited).toBe(0);

    await writeFile(file, aliasBomb(minimal));
    await expect(loadConfigFile(file)).rejects.toThrow(/aliases expand to too many nodes/);
  }, 30_000);

  it('POST /config/reload and SIGHUP reject an oversize or alias-bomb file; the running config stays', async () => {
    const up = await startUpstream((_req, res) => res.end('v1'));
    cleanup.push(() => up.close());
    const f = await spawnRun({
      listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url }] }],
      // A fault that still answers: the checks below read `v1` through the proxy (a reset fault failed
      // the 1% of those reads that drew canary).
      experiments: [{ id: 'e1', hypothesis: 'h', split: { percent: 1 }, fault: { kind: 'latency', ms: 1 } }],
    });
    const ids = async () =>
      (
        (await (await fetch(`${f.admin}/experiments`)).json()) as { experiments: { id: string }[] }
      ).experiments.map((e) => e.id);
    // The replacement would drop e1 if it were applied.
    const replacement = f.text.replace(/experiments:[\s\S]*$/, 'experiments: []\n');

    await writeFile(f.file, oversize(replacement));
    const r = await fetch(`${f.admin}/config/reload`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
    });
    expect(r.status).toBe(422);
    expect(await r.text()).toMatch(/over the 1048576-byte limit/);
    expect(await (await fetch(f.url)).text()).toBe('v1');
    expect(await ids()).toEqual(['e1']);

    await writeFile(f.file, aliasBomb(replacement));
    f.p.child.kill('SIGHUP');
    const rejected = await f.p.waitForLog(
      (l) =>
        l['msg'] === 'config reload rejected; running config stays in force' &&
        /alias/.test(JSON.stringify(l)),
    );
    expect(JSON.stringify(rejected)).toContain('maxAliasCount');
    await writeFile(f.file, oversize(replacement));
    f.p.child.kill('SIGHUP');
    await f.p.waitForLog(
      (l) =>
        l['msg'] === 'config reload rejected; running config stays in force' &&
        /byte limit/.test(JSON.stringify(l)),
    );
    expect(await (await fetch(f.url)).text()).toBe('v1');
    expect(await ids()).toEqual(['e1']);
    const status = (await (await fetch(`${f.admin}/config`)).json()) as { status: string };
    expect(status.status).toBe('invalid');

    // A file under the cap is still applied.
    await writeFile(f.file, replacement);
    expect(
      (
        await fetch(`${f.admin}/config/reload`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
        })
      ).status,
    ).toBe(200);
    expect(await ids()).toEqual([]);
  }, 60_000);

  it('a YAML file that is slow to parse does not stall the listeners and is rejected at the deadline', async () => {
    const up = await startUpstream((_req, res) => res.end('v1'));
    cleanup.push(() => up.close());
    const f = await spawnRun({
      listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url }] }],
    });
    // ~1 MB of distinct keys: yaml's duplicate-key check is quadratic (over a minute in-thread).
    let slow = `${f.text}x-keys:\n`;
    for (let i = 0; slow.length < DEFAULT_CONFIG_MAX_BYTES - 64; i++) slow += `  k${i}: v\n`;
    await writeFile(f.file, slow);
    const reload = fetch(`${f.admin}/config/reload`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
    });
    const t0 = performance.now();
    let worst = 0;
    let served = 0;
    let settled = false;
    void reload.finally(() => (settled = true));
    while (!settled) {
      const t = performance.now();
      expect(await (await fetch(f.url)).text()).toBe('v1');
      worst = Math.max(worst, performance.now() - t);
      served++;
      await new Promise((r) => setTimeout(r, 20));
    }
    const r = await reload;
    expect(r.status).toBe(422);
    expect(await r.text()).toMatch(/parsing took longer than \d+ ms|unknown field/);
    expect(performance.now() - t0).toBeLessThan(15_000);
    expect(served).toBeGreaterThan(20);
    // In-thread parsing blocked every request for the whole parse.
    expect(worst).toBeLessThan(1000);
  }, 60_000);
});
