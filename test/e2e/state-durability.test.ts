/**
 * Issue 11 item 9: a kill must outlive the process. A state_dir that cannot be written refuses to
 * start; a kill whose write fails answers 503 and stays in force in memory; an arm whose write fails
 * does not arm. Tests run as root here, where chmod does not stop writes: the unwritable state_dir is a
 * read-only (and a full) tmpfs when `mount` is allowed, else a path under a regular file.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { request } from 'undici';
import { validateConfig } from '../../src/config/load.js';
import { FaultlineError } from '../../src/errors.js';
import { Faultline } from '../../src/main.js';
import { exp, oneRoute } from '../helpers/experiments.js';
import { startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { runCli } from '../helpers/process.js';
import { startBaggageEcho, type Upstream } from '../helpers/servers.js';

const JSON_CT = { 'content-type': 'application/json' };
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

let work = '';
/** Unwritable state dirs, with the OS reason each is expected to report. */
const unwritable: { name: string; dir: string; reason: RegExp }[] = [];
const mounts: string[] = [];

function tryMount(dir: string, opts: string): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', dir], { stdio: 'ignore' });
    mounts.push(dir);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'faultline-durable-'));
  const ro = join(work, 'ro');
  await mkdir(ro);
  if (tryMount(ro, 'ro,size=64k')) unwritable.push({ name: 'read-only tmpfs', dir: ro, reason: /EROFS/ });
  const full = join(work, 'full');
  await mkdir(full);
  if (tryMount(full, 'size=64k')) {
    // Fill it up: writes then fail with ENOSPC although the directory itself is fine.
    try {
      await writeFile(join(full, 'fill'), Buffer.alloc(1024 * 1024));
    } catch {
      // ENOSPC expected: the file keeps what fitted
    }
    unwritable.push({ name: 'full tmpfs', dir: full, reason: /ENOSPC/ });
  }
  // Works everywhere (also without mount), though even the old code failed to read state there.
  await writeFile(join(work, 'file.txt'), 'x');
  unwritable.push({ name: 'path under a file', dir: join(work, 'file.txt', 'sub'), reason: /ENOTDIR/ });
});

afterAll(async () => {
  for (const m of mounts) execFileSync('umount', [m]);
  await rm(work, { recursive: true, force: true });
});

async function echo(): Promise<Upstream> {
  const up = await startBaggageEcho();
  cleanup.push(() => up.close());
  return up;
}

async function post(admin: string, path: string, body: unknown = {}) {
  const r = await request(`${admin}${path}`, {
    method: 'POST',
    headers: JSON_CT,
    body: JSON.stringify(body),
  });
  return { status: r.statusCode, json: (await r.body.json()) as Record<string, unknown> };
}

async function state(admin: string, id = 'e1'): Promise<string> {
  const r = await request(`${admin}/experiments/${id}`);
  return ((await r.body.json()) as { state: string }).state;
}

/** Statuses of `n` requests through the listener (the experiment answers 503 to its canary). */
async function statuses(url: string, n: number): Promise<number[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const r = await request(url);
      await r.body.dump();
      return r.statusCode;
    }),
  );
}

const half = exp({ split: { percent: 50, allow_above_cap: true } });

describe('state_dir that cannot be written', () => {
  it('refuses to start, naming state_dir and the OS reason', async () => {
    expect(unwritable.length).toBeGreaterThan(0);
    const up = await echo();
    for (const u of unwritable) {
      const cfg = validateConfig(
        { ...oneRoute(up.url, [half]), state_dir: u.dir, admin: { port: 0 } },
        'test.yaml',
      );
      const err = await Faultline.start({ configFile: join(work, 'test.yaml'), config: cfg }).then(
        (fl) => fl.stop(0).then(() => null),
        (e: unknown) => e,
      );
      expect(err, u.name).toBeInstanceOf(FaultlineError);
      expect((err as FaultlineError).code, u.name).toBe('FL_STATE_UNWRITABLE');
      expect((err as Error).message, u.name).toContain(`state_dir: ${u.dir}`);
      expect((err as Error).message, u.name).toMatch(u.reason);
    }
  });

  it('`faultline run` exits non-zero with the reason on stderr', async () => {
    const up = await echo();
    const u = unwritable[0]!;
    const file = join(work, 'run.yaml');
    await writeFile(
      file,
      stringify({ ...oneRoute(up.url, [half]), state_dir: u.dir, admin: { address: '127.0.0.1', port: 0 } }),
    );
    const p = runCli(['run', '--config', file, '--no-watch']);
    // A process that started anyway (the old behaviour) is stopped, not left serving.
    cleanup.push(async () => void p.child.kill('SIGKILL'));
    const code = await Promise.race([
      p.exited,
      new Promise((r) => setTimeout(() => r('still running'), 10_000)),
    ]);
    expect(code).toBe(1);
    expect(p.stderr()).toContain(`state_dir: ${u.dir} is not writable`);
    expect(p.stderr()).toMatch(u.reason);
  });
});

describe('kill-switch state', () => {
  async function faultline(cfg: Record<string, unknown>, stateDir?: string): Promise<TestFaultline> {
    const fl = await startFaultline(cfg, stateDir !== undefined ? { stateDir } : {});
    cleanup.push(() => fl.stop());
    return fl;
  }

  it('a state file with a record it does not understand: refuses to start, naming each bad field', async () => {
    const up = await echo();
    const cases: [string, RegExp[]][] = [
      [
        '{"version": 1, "experiments": {"e1": {"state": "KILLED", "reason": "", "by": "", "at": "x"}, "e2": 3}}',
        [
          /experiments\.e1\.state: "KILLED" is not one of running, killed, expired/,
          /experiments\.e2: not an object/,
        ],
      ],
      ['{"version": 1, "experiments": []}', [/experiments: not an object of records/]],
      ['{"version": 2, "experiments": {}}', [/version: 2 is not 1/]],
      [
        '{"version": 1, "experiments": {"e1": {"state": "killed", "by": 7}}}',
        [/experiments\.e1\.by: not a string/],
      ],
      ['{"version": 1, "exper', [/JSON/]],
    ];
    for (const [text, patterns] of cases) {
      const dir = await mkdtemp(join(tmpdir(), 'faultline-state-'));
      cleanup.push(() => rm(dir, { recursive: true, force: true }));
      await writeFile(join(dir, 'experiments.json'), text);
      const cfg = validateConfig(
        { ...oneRoute(up.url, [half]), state_dir: dir, admin: { port: 0 } },
        'test.yaml',
      );
      const err = await Faultline.start({ configFile: join(work, 'test.yaml'), config: cfg }).then(
        (fl) => fl.stop(0).then(() => null),
        (e: unknown) => e,
      );
      expect(err, text).toBeInstanceOf(FaultlineError);
      expect((err as FaultlineError).code, text).toBe('FL_STATE_INVALID');
      for (const p of patterns) expect((err as Error).message, text).toMatch(p);
      // The file is left as it was: the operator decides.
      expect(await readFile(join(dir, 'experiments.json'), 'utf8')).toBe(text);
    }
  });

  it('removes stale experiments.json.*.tmp files at start', async () => {
    const up = await echo();
    const dir = await mkdtemp(join(tmpdir(), 'faultline-state-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'experiments.json.424242.tmp'), '{"version": 1, "exper');
    await writeFile(join(dir, 'experiments.json.x.tmp'), '');
    await writeFile(join(dir, 'unrelated.tmp'), 'kept');
    const fl = await faultline(oneRoute(up.url, [half]), dir);
    await fl.fl.table.flush();
    const names = await readdir(dir);
    expect(names.filter((n) => n.startsWith('experiments.json.'))).toEqual([]);
    expect(names).toContain('unrelated.tmp');
    expect(names).toContain('experiments.json');
  });

  it('a kill that cannot be persisted answers 503 and stays in force; an arm then does not arm', async () => {
    const up = await echo();
    const fl = await faultline(oneRoute(up.url, [half]));
    expect((await statuses(fl.url(), 40)).some((s) => s === 503)).toBe(true);

    // Break the state dir under the running process: its path is now a regular file.
    const moved = `${fl.stateDir}.moved`;
    await rename(fl.stateDir, moved);
    await writeFile(fl.stateDir, 'not a directory');
    cleanup.push(async () => {
      await rm(fl.stateDir, { recursive: true, force: true });
      await rm(moved, { recursive: true, force: true });
    });

    const k = await post(fl.admin, '/experiments/e1/kill', { reason: 'disk broke' });
    expect(k.status).toBe(503);
    expect((k.json['error'] as { code: string }).code).toBe('state_not_persisted');
    expect((k.json['error'] as { message: string }).message).toMatch(/EEXIST|ENOTDIR/);
    expect(await state(fl.admin)).toBe('killed');
    expect((await statuses(fl.url(), 100)).every((s) => s === 200)).toBe(true);

    // Fail closed: the arm cannot be written, so the experiment stays killed and injects nothing.
    const a = await post(fl.admin, '/experiments/e1/arm');
    expect(a.status).toBe(503);
    expect((a.json['error'] as { code: string }).code).toBe('state_not_persisted');
    expect(await state(fl.admin)).toBe('killed');
    expect((await statuses(fl.url(), 100)).every((s) => s === 200)).toBe(true);

    const all = await post(fl.admin, '/kill');
    expect(all.status).toBe(503);

    // Once the directory is back, repeating the kill persists it.
    await rm(fl.stateDir);
    await rename(moved, fl.stateDir);
    const repeat = await post(fl.admin, '/experiments/e1/kill');
    expect(repeat.status).toBe(200);
    expect(repeat.json['note']).toBe('it was already killed; its state is now saved');
    // Saved now: a further repeat is the plain "not running".
    expect((await post(fl.admin, '/experiments/e1/kill')).status).toBe(409);
    const saved = JSON.parse(await readFile(join(fl.stateDir, 'experiments.json'), 'utf8')) as {
      experiments: Record<string, { state: string; reason: string }>;
    };
    expect(saved.experiments['e1']?.state).toBe('killed');
    expect(saved.experiments['e1']?.reason).toBe('disk broke');
    expect((await post(fl.admin, '/experiments/e1/arm')).status).toBe(200);
    expect(await state(fl.admin)).toBe('running');
  });
});
