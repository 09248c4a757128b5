// `workers: 2` with sticky splits and ramps, as a user runs it: the built CLI (dist/bin.js) forks two
// worker processes sharing the listeners, real HTTP traffic to a real upstream. Sticky: a session stays
// in one arm whichever worker serves it, bad events count once per session across workers (exactly),
// a fragile canary trips one kill. Ramps: the primary's steps are served by both workers, evidence
// is per step, a trip at a step (and a manual kill) stops injection in every worker.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { runCli, type Spawned } from '../helpers/process.js';
import { sleep, until, type Loose } from '../helpers/fleet.js';
import { startUpstream } from '../helpers/servers.js';
import { stickyKeyIn } from '../helpers/sticky.js';
import { get as getOne, workerOf as workersOf, type Sent as Sent1 } from '../helpers/workers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
});

interface Sent extends Sent1 {
  port: number;
  session: string | undefined;
}

/** One request on a fresh connection, with the session in `header`. */
async function get(port: number, session?: string, header = 'x-session'): Promise<Sent> {
  const sent = await getOne(port, '/', session === undefined ? {} : { [header]: session });
  return { ...sent, port, session };
}

const group = (s: Sent) => /group=(\w+)/.exec(s.arm ?? '')?.[1];

/** Which worker served each request (test/helpers/workers.ts workerOf, one process): 1 or 2. */
function workerOf(sent: Sent[]): (s: Sent) => number | undefined {
  const of = workersOf(sent.map((s) => ({ tag: 'w', s })));
  return (s) => {
    const key = of({ tag: 'w', s });
    return key === undefined ? undefined : Number(key.slice('w/'.length));
  };
}

interface Started {
  fl: Spawned;
  ports: Map<string, number>;
  json: (path: string) => Promise<Loose>;
  post: (path: string) => Promise<number>;
  kills: (id: string) => string[];
}

/** `faultline run` with workers: 2, one listener per experiment (named after it). */
async function start(upstream: string, experiments: Record<string, unknown>[]): Promise<Started> {
  const dir = await mkdtemp(join(tmpdir(), 'faultline-workers-sr-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'faultline.yaml');
  const config = {
    workers: 2,
    // Simultaneous fresh connections must reach both workers: round robin splits them exactly (kernel
    // balance, the default, may give a handful to one worker; accept-burst and workers.test run it).
    workers_balance: 'round_robin',
    arm_header: true,
    state_dir: join(dir, 'state'),
    admin: { address: '127.0.0.1', port: 0 },
    drain_timeout_ms: 1000,
    listeners: experiments.map((e) => ({
      name: e['id'],
      address: '127.0.0.1',
      port: 0,
      routes: [{ name: 'api', upstream, timeout_ms: 5000 }],
    })),
    experiments: experiments.map((e) => ({
      hypothesis: 'the service copes',
      match: { listener: e['id'], route: 'api' },
      exclude_injected: false,
      guardrails: [{ metric: 'error_rate' }],
      ...e,
    })),
  };
  await writeFile(file, stringify(config));
  const fl = runCli(['run', '--config', file]);
  cleanup.push(async () => {
    if (fl.child.exitCode === null) {
      fl.child.kill('SIGTERM');
      await Promise.race([fl.exited, sleep(3000)]);
      if (fl.child.exitCode === null) fl.child.kill('SIGKILL');
    }
  });
  const started = await fl.waitForLog((l) => l['msg'] === 'faultline started', 40_000);
  const admin = `http://${started['admin'] as string}`;
  const ports = new Map<string, number>();
  for (const e of experiments) {
    const l = await fl.waitForLog((x) => x['msg'] === 'listener started' && x['listener'] === e['id']);
    ports.set(e['id'] as string, l['port'] as number);
  }
  return {
    fl,
    ports,
    json: async (path) => (await fetch(`${admin}${path}`)).json(),
    post: async (path) =>
      (
        await fetch(`${admin}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{}',
        })
      ).status,
    kills: (id) =>
      fl
        .stderr()
        .split('\n')
        .filter((l) => l.includes('"msg":"experiment killed"') && l.includes(`"experiment":"${id}"`)),
  };
}

async function upstream(bad?: string) {
  const up = await startUpstream((req, res) => {
    req.resume();
    const fail = bad !== undefined && req.headers['x-user-id'] === bad;
    res.writeHead(fail ? 500 : 200, { 'x-up-port': String(req.socket.remotePort) });
    res.end('ok');
  });
  cleanup.push(() => up.close());
  return up;
}

/** Client-side counts of one experiment's marks: what the pooled admin counts must equal. */
async function countsAddUp(s: Started, id: string, sent: Sent[]): Promise<Loose> {
  const canary = sent.filter((x) => x.arm?.startsWith(`${id};`) && group(x) === 'canary').length;
  const control = sent.filter((x) => x.arm?.startsWith(`${id};`) && group(x) === 'control').length;
  return until(`${id}: pooled counts equal the client's`, async () => {
    const v = await s.json(`/experiments/${id}/report`);
    return v.arms.canary.requests === canary && v.arms.control.requests === control ? v : null;
  });
}

/** No request of `sent` that started 50 ms after `at` carries a mark; both workers served them. */
function quietAfter(sent: Sent[], at: number, worker: (s: Sent) => number | undefined): number {
  const late = sent.filter((s) => s.start > at + 50);
  expect(late.length).toBeGreaterThan(20);
  expect(late.filter((s) => s.arm !== undefined || s.injected !== undefined)).toEqual([]);
  expect(late.every((s) => s.status === 200)).toBe(true);
  expect(new Set(late.map(worker).filter((w) => w !== undefined))).toEqual(new Set([1, 2]));
  return late.length;
}

describe('workers: 2 with sticky splits and ramps (real processes via dist/bin.js)', () => {
  it('sticky: one arm per session across workers, one bad event per session pooled exactly, one kill', async () => {
    // sd (dry run): one control user whose every request fails among many healthy ones.
    const badUser = stickyKeyIn('control', 'sd', 25, 'u');
    const up = await upstream(badUser);
    const s = await start(up.url, [
      {
        id: 'sk',
        split: { percent: 25, allow_above_cap: true, sticky: 'header:x-session' },
        fault: { kind: 'abort', status: 503 },
        min_samples: 10,
      },
      {
        id: 'sd',
        split: { percent: 25, allow_above_cap: true, sticky: 'header:x-user-id' },
        fault: { kind: 'abort', status: 503 },
        dry_run: true,
        min_samples: 1,
        // Judged request by request in the primary (a sticky latency test takes no batches).
        guardrails: [{ metric: 'error_rate' }, { metric: 'latency', quantile: 0.5 }],
      },
    ]);

    // sk: 100 sessions, two requests each at once on fresh connections (workers_balance: round_robin
    // gives them different workers), 4 at a time, until the primary's analyzer trips, then more.
    const skPort = s.ports.get('sk') as number;
    const sk: Sent[] = [];
    let killedAt: number | null = null;
    let after = 0;
    for (let i = 0; i < 2000 && after < 15; i += 2) {
      const pair = [i % 100, i % 100, (i + 1) % 100, (i + 1) % 100];
      sk.push(...(await Promise.all(pair.map((n) => get(skPort, `s${n}`)))));
      if (killedAt === null) {
        const v = await s.json('/experiments/sk');
        if (v.state === 'killed') killedAt = Date.parse(v.ended_at as string);
      } else after++;
    }
    expect(killedAt).not.toBeNull();
    const skWorker = workerOf(sk);

    // A session's requests keep one arm, whichever worker serves them (many sessions saw both).
    const arms = new Map<string, Set<string>>();
    const workers = new Map<string, Set<number | undefined>>();
    for (const x of sk.filter((r) => r.arm !== undefined)) {
      arms.set(x.session!, (arms.get(x.session!) ?? new Set()).add(group(x)!));
      workers.set(x.session!, (workers.get(x.session!) ?? new Set()).add(skWorker(x)));
    }
    for (const [session, a] of arms)
      expect({ session, arms: [...a] }).toEqual({ session, arms: [...a].slice(0, 1) });
    expect([...workers.values()].filter((w) => w.size === 2).length).toBeGreaterThan(5);

    // One kill (one analyzer), in force for the next request in both workers.
    expect(s.kills('sk')).toHaveLength(1);
    expect(s.kills('sk')[0]).not.toContain('"worker"');
    const late = quietAfter(sk, killedAt as number, skWorker);

    // Counts add up; the kill's evidence counted at most one bad event per canary session.
    const report = await countsAddUp(s, 'sk', sk);
    expect(report.ended.cause).toBe('guardrail');
    const ev = report.evidence as Loose;
    const canarySessions = new Set(sk.filter((x) => group(x) === 'canary').map((x) => x.session));
    expect(ev.guardrail.canary.bad).toBe(ev.samples.canary);
    expect(ev.guardrail.canary.counted).toBeGreaterThan(0);
    expect(ev.guardrail.canary.counted).toBeLessThanOrEqual(canarySessions.size);
    // Every canary session sent its requests in pairs: the pooled filter dropped the repeats.
    expect(ev.guardrail.canary.counted).toBeLessThan(ev.guardrail.canary.bad);
    expect(ev.workers).toBe(2);

    // sd: the bad user's 40 failures, spread over both workers, enter the test as one bad session.
    const sdPort = s.ports.get('sd') as number;
    const users = [
      ...Array.from({ length: 40 }, () => badUser),
      ...Array.from({ length: 200 }, (_, i) => `ok-${i}`),
    ];
    users.sort(() => Math.random() - 0.5);
    const sd: Sent[] = [];
    for (let i = 0; i < users.length; i += 8)
      sd.push(...(await Promise.all(users.slice(i, i + 8).map((u) => get(sdPort, u, 'x-user-id')))));
    const badSent = sd.filter((x) => x.session === badUser);
    expect(new Set(badSent.map((x) => group(x)))).toEqual(new Set(['control']));
    expect(new Set(badSent.map(workerOf(sd)))).toEqual(new Set([1, 2]));
    const sdReport = await countsAddUp(s, 'sd', sd);
    const g = await until('all 40 bad events judged', async () => {
      const r = await s.json('/experiments/sd/report');
      return r.guardrails[0].control.bad === 40 ? r.guardrails[0] : null;
    });
    expect(g.control.counted).toBe(1);
    expect(sdReport.state).toBe('dry_run');
    const lat = (await s.json('/experiments/sd/report')).guardrails[1];
    expect(lat.metric).toBe('latency');
    expect(lat.control.samples).toBe(sdReport.arms.control.requests);
    expect(lat.control.scored + lat.canary.scored).toBeGreaterThan(0);
    process.stdout.write(
      `workers sticky e2e: sk killed after ${ev.samples.canary} canary requests (${ev.guardrail.canary.counted} sessions counted), ${late} requests after +50 ms unmarked; sd: 40 bad requests counted once\n`,
    );
  }, 60_000);

  it('ramps: the primary steps, both workers serve the step, a trip at a step and a kill stop every worker', async () => {
    const up = await upstream();
    const s = await start(up.url, [
      {
        // Intensity: abort 0.01% holds, abort 100% breaks (rollback: a guardrail kill).
        id: 'rt',
        split: { percent: 25, allow_above_cap: true },
        fault: { kind: 'abort', status: 503 },
        ramp: { steps: [0.01, 100], min_canary_per_step: 30 },
        min_samples: 10,
      },
      {
        // Exposure: 10% then 50% per arm (every request in an arm), a harmless 1 ms delay.
        id: 'rx',
        split: { percent: [10, 50], allow_above_cap: true },
        fault: { kind: 'latency', ms: 1 },
        ramp: { min_canary_per_step: 20 },
        min_samples: 10,
      },
    ]);
    const rtPort = s.ports.get('rt') as number;
    const rxPort = s.ports.get('rx') as number;
    const rtSent: Sent[] = [];
    const rxSent: Sent[] = [];
    let rtKilled: number | null = null;
    let rxHeld: number | null = null;
    let after = 0;
    for (let round = 0; round < 500 && after < 15; round++) {
      const got = await Promise.all([rtPort, rtPort, rtPort, rxPort, rxPort, rxPort].map((p) => get(p)));
      rtSent.push(...got.slice(0, 3));
      rxSent.push(...got.slice(3));
      if (rtKilled === null) {
        const v = await s.json('/experiments/rt');
        if (v.state === 'killed') rtKilled = Date.parse(v.ended_at as string);
      }
      if (rxHeld === null) {
        const v = await s.json('/experiments/rx');
        if (v.ramp.steps[1].status === 'held') rxHeld = Date.now();
      }
      if (rtKilled !== null && rxHeld !== null) after++;
    }
    expect(rtKilled).not.toBeNull();
    expect(rxHeld).not.toBeNull();

    // rt: step 0 held, step 1 broke and killed, once; its injections came only with step 1, from both
    // workers; after the kill no worker marks or injects.
    const rt = await countsAddUp(s, 'rt', rtSent);
    expect(rt.ended.cause).toBe('guardrail');
    expect(s.kills('rt')).toHaveLength(1);
    expect(rt.ramp.steps.map((x: Loose) => x.status)).toEqual(['held', 'broke']);
    expect(rt.ramp.held_up_to).toBe(0.01);
    expect(rt.ramp.broke_at).toBe(100);
    expect(rt.ramp.steps[0].canary).toBeGreaterThanOrEqual(30);
    const step1 = Date.parse(rt.ramp.steps[1].started_at as string);
    const rtWorker = workerOf(rtSent);
    const injected = rtSent.filter((x) => x.injected !== undefined);
    expect(injected.filter((x) => x.end < step1)).toEqual([]);
    expect(new Set(injected.map(rtWorker))).toEqual(new Set([1, 2]));
    // (a few of step 0's 30 may end on the client a moment after the step changed)
    expect(rtSent.filter((x) => x.end < step1 && group(x) === 'canary').length).toBeGreaterThanOrEqual(25);
    quietAfter(rtSent, rtKilled as number, rtWorker);

    // rx: both steps held; at step 1 (50% + 50%) every request is in an arm, in both workers.
    const rxWorker = workerOf(rxSent);
    let rx: Loose = await s.json('/experiments/rx');
    expect(rx.ramp.summary).toContain('every step held');
    const rxStep1 = Date.parse(rx.ramp.steps[1].started_at as string);
    const atStep0 = rxSent.filter((x) => x.end < rxStep1);
    const atStep1 = rxSent.filter((x) => x.start > rxStep1 + 50);
    expect(atStep0.filter((x) => x.arm !== undefined).length / atStep0.length).toBeLessThan(0.4);
    expect(atStep1.length).toBeGreaterThan(20);
    expect(atStep1.filter((x) => x.arm === undefined)).toEqual([]);
    expect(new Set(atStep1.map(rxWorker))).toEqual(new Set([1, 2]));

    // A manual kill of the ramp: in force for the next request in every worker.
    expect(await s.post('/experiments/rx/kill')).toBe(200);
    rx = await s.json('/experiments/rx');
    const rxKilled = Date.parse(rx.ended_at as string);
    for (let i = 0; i < 15; i++) rxSent.push(...(await Promise.all([0, 1, 2, 3].map(() => get(rxPort)))));
    quietAfter(rxSent, rxKilled, workerOf(rxSent));
    rx = await countsAddUp(s, 'rx', rxSent);
    // The steps' assigned counts are the pooled run's, split at the step change.
    const assigned = rx.ramp.steps.reduce((n: number, x: Loose) => n + x.assigned.canary, 0);
    expect(assigned).toBeLessThanOrEqual(rx.assigned.canary);
    expect(assigned).toBeGreaterThan(rx.assigned.canary * 0.8);
    process.stdout.write(
      `workers ramp e2e: rt held step 0 with ${rt.ramp.steps[0].canary} canary, broke at step 1; rx held ${rx.ramp.steps.length} steps, killed by hand\n`,
    );
  }, 60_000);
});
