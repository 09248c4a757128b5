// `workers: 2` as a user runs it: the built CLI (dist/bin.js) forks two real worker processes that share
// the listener; real HTTP traffic through them to a real upstream. One experiment, one analyzer, one
// kill, counts that add up, a kill in force in both workers, a crashed worker replaced, a clean SIGTERM.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { exp, oneRoute } from '../helpers/experiments.js';
import { runCli, type Spawned } from '../helpers/process.js';
import { until, type Loose } from '../helpers/fleet.js';
import { get, type Sent } from '../helpers/workers.js';
import { startUpstream } from '../helpers/servers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('workers: 2 (real processes via dist/bin.js)', () => {
  it('one analyzer and one kill for both workers; the kill holds in each; counts add up; crash and SIGTERM', async () => {
    const up = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(200, { 'x-up-port': String(req.socket.remotePort) });
      res.end('ok');
    });
    cleanup.push(() => up.close());
    const dir = await mkdtemp(join(tmpdir(), 'faultline-workers-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'faultline.yaml');
    const config = oneRoute(
      up.url,
      [
        exp({
          split: { percent: 25, allow_above_cap: true },
          fault: { kind: 'abort', status: 503, percent: 30 },
          exclude_injected: false,
          min_samples: 20,
          guardrails: [{ metric: 'error_rate' }],
        }),
      ],
      {
        workers: 2,
        arm_header: true,
        state_dir: join(dir, 'state'),
        admin: { address: '127.0.0.1', port: 0 },
        drain_timeout_ms: 2000,
      },
    );
    (config.listeners[0] as Loose).address = '127.0.0.1';
    await writeFile(file, stringify(config));
    const fl: Spawned = runCli(['run', '--config', file]);
    cleanup.push(async () => {
      if (fl.child.exitCode === null) fl.child.kill('SIGKILL');
    });
    const started = await fl.waitForLog((l) => l['msg'] === 'faultline started', 40_000);
    const admin = `http://${started['admin'] as string}`;
    const listening = await fl.waitForLog((l) => l['msg'] === 'listener started');
    const port = listening['port'] as number;
    const workersLog = await fl.waitForLog((l) => l['msg'] === 'workers started');
    const pids = workersLog['pids'] as number[];
    expect(pids).toHaveLength(2);
    const json = async (path: string): Promise<Loose> => (await fetch(`${admin}${path}`)).json();

    // Traffic until the primary's analyzer trips, then more: 4 requests at a time, each on its own
    // connection. The kill is read from admin every round.
    const sent: Sent[] = [];
    let killedAt: number | null = null;
    let after = 0;
    for (let round = 0; round < 400 && after < 30; round++) {
      sent.push(...(await Promise.all([get(port), get(port), get(port), get(port)])));
      if (killedAt === null) {
        const view = await json('/experiments/e1');
        if (view.state === 'killed') killedAt = Date.parse(view.ended_at as string);
      } else after++;
    }
    expect(killedAt).not.toBeNull();
    const kill = killedAt as number;

    // Which worker served each request: tagged responses (arm marks say worker=N) teach which upstream
    // connection belongs to which worker; untagged ones after the kill are identified by that connection.
    const workerOfPort = new Map<string, number>();
    for (const s of sent) {
      const w = /worker=(\d+)/.exec(s.arm ?? '')?.[1];
      if (w !== undefined && s.upPort !== undefined) workerOfPort.set(s.upPort, Number(w));
    }
    const workerOf = (s: Sent) => {
      const tagged = /worker=(\d+)/.exec(s.arm ?? '')?.[1];
      if (tagged !== undefined) return Number(tagged);
      return s.upPort === undefined ? undefined : workerOfPort.get(s.upPort);
    };
    expect(new Set(sent.filter((s) => s.arm !== undefined).map(workerOf))).toEqual(new Set([1, 2]));

    // The kill is in force for the next request in every worker: a push is a local IPC message, so
    // every request sent 50 ms after the decision carries neither an arm nor an injected mark.
    const late = sent.filter((s) => s.start > kill + 50);
    expect(late.length).toBeGreaterThan(60);
    expect(late.filter((s) => s.arm !== undefined || s.injected !== undefined)).toEqual([]);
    expect(late.every((s) => s.status === 200)).toBe(true);
    const lateWorkers = new Set(late.map(workerOf).filter((w) => w !== undefined));
    expect(lateWorkers).toEqual(new Set([1, 2]));
    const lastMarked = Math.max(...sent.filter((s) => s.arm !== undefined).map((s) => s.start));
    process.stdout.write(
      `workers e2e: last marked request started ${lastMarked - kill} ms after the kill decision; ` +
        `${late.length} requests after +50 ms, none marked, served by workers ${[...lateWorkers].join(',')}\n`,
    );

    // Admin counts are the sum over both workers: every arm mark a client saw, exactly (once the
    // workers' last batches are in, within one batch interval).
    const canary = sent.filter((s) => s.arm?.includes('group=canary')).length;
    const control = sent.filter((s) => s.arm?.includes('group=control')).length;
    const view: Loose = await until('exact pooled counts', async () => {
      const v = await json('/experiments/e1');
      return v.arms.canary.requests === canary && v.arms.control.requests === control ? v : null;
    });
    expect(view.arms.canary.injected).toBe(sent.filter((s) => s.injected !== undefined).length);
    expect(view.workers).toHaveLength(2);
    for (const w of view.workers as Loose[]) {
      const mine = sent.filter((s) => s.arm !== undefined && workerOf(s) === w.worker);
      expect(w.canary + w.control).toBe(mine.length);
    }
    // One analyzer, one kill: one guardrail kill record, logged once (not once per worker).
    expect(view.ended.cause).toBe('guardrail');
    const state = JSON.parse(await readFile(join(dir, 'state', 'experiments.json'), 'utf8'));
    expect(state.experiments.e1.state).toBe('killed');
    const kills = fl
      .stderr()
      .split('\n')
      .filter((l) => l.includes('"msg":"experiment killed"'));
    expect(kills).toHaveLength(1);
    expect(kills[0]).not.toContain('"worker"');

    // Prometheus on the admin port sums the workers' request counters.
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    const total = metrics
      .split('\n')
      .filter((l) => l.startsWith('faultline_requests_total{'))
      .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    expect(total).toBe(sent.length);

    // A worker that dies is replaced; the pair keeps serving.
    process.kill(pids[0] as number, 'SIGKILL');
    const replaced = await fl.waitForLog((l) => l['msg'] === 'worker replaced', 30_000);
    expect(replaced['pid']).not.toBe(pids[0]);
    expect(await (await fetch(`${admin}/ready`)).text()).toContain('workers: 2/2 serving');
    const again = await Promise.all([get(port), get(port), get(port), get(port)]);
    expect(again.every((s) => s.status === 200 && s.arm === undefined)).toBe(true);

    // An arm on the primary starts a fresh run in every worker (marks again, counts from zero).
    const armed = await fetch(`${admin}/experiments/e1/arm`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(armed.status).toBe(200);
    const rearmed: Sent[] = [];
    for (let i = 0; i < 6; i++)
      rearmed.push(...(await Promise.all([get(port), get(port), get(port), get(port)])));
    expect(new Set(rearmed.filter((s) => s.arm?.startsWith('e1;')).map(workerOf))).toEqual(new Set([1, 2]));

    // Reloads reach the workers: an invalid file keeps the running config everywhere, a valid one
    // (e1 replaced by e2, a dry run) is in force in both workers.
    const e2 = { ...exp({ id: 'e2', split: { percent: 25, allow_above_cap: true } }), dry_run: true };
    await writeFile(file, 'workers: 2\nlisteners: nope\n');
    fl.child.kill('SIGHUP');
    await until('invalid reload', async () => (await json('/config')).status === 'invalid');
    const kept: Sent[] = [];
    for (let i = 0; i < 5; i++)
      kept.push(...(await Promise.all([get(port), get(port), get(port), get(port)])));
    expect(kept.filter((s) => s.arm?.startsWith('e2;'))).toEqual([]);
    expect(kept.some((s) => s.arm?.startsWith('e1;'))).toBe(true);
    await writeFile(file, stringify({ ...config, experiments: [e2] }));
    fl.child.kill('SIGHUP');
    await until('valid reload', async () => (await json('/config')).status === 'ok');
    const next: Sent[] = [];
    for (let i = 0; i < 10; i++)
      next.push(...(await Promise.all([get(port), get(port), get(port), get(port)])));
    expect(new Set(next.filter((s) => s.arm?.startsWith('e2;')).map(workerOf))).toEqual(new Set([1, 2]));
    expect(next.filter((s) => s.arm?.startsWith('e1;') || s.injected !== undefined)).toEqual([]);

    // SIGTERM: both workers drain and exit, then the primary, with 0.
    const live = [pids[1] as number, replaced['pid'] as number];
    fl.child.kill('SIGTERM');
    expect(await fl.exited).toBe(0);
    await until('workers gone', async () => live.every((p) => !alive(p)), 5000);
  }, 90_000);
});
