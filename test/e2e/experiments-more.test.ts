/**
 * More experiment behaviour through the real proxy: latency distributions, disabled and dry-run
 * experiments, request matching, cookie and trace stickiness, killing and re-arming one experiment
 * from the CLI, a killed experiment surviving a reload that changes it, and the hang fault's bound.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { Agent, request } from 'undici';
import { exp, oneRoute } from '../helpers/experiments.js';
import { stickyKeyIn } from '../helpers/sticky.js';
import { startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { runCli } from '../helpers/process.js';
import { startBaggageEcho, type Upstream } from '../helpers/servers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

const dispatcher = new Agent({ connections: 64 });
afterAll(async () => {
  await dispatcher.close();
});

async function echo(): Promise<Upstream> {
  const up = await startBaggageEcho();
  cleanup.push(() => up.close());
  return up;
}

async function faultline(cfg: Record<string, unknown>): Promise<TestFaultline> {
  const fl = await startFaultline(cfg);
  cleanup.push(async () => {
    await fl.stop();
  });
  return fl;
}

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  ms: number;
}

async function send(
  url: string,
  headers: Record<string, string> = {},
  method: 'GET' | 'POST' = 'GET',
): Promise<Res> {
  const t0 = performance.now();
  const r = await request(url, { method, headers, dispatcher, ...(method === 'POST' ? { body: 'x' } : {}) });
  const body = await r.body.text();
  return { status: r.statusCode, headers: r.headers, body, ms: performance.now() - t0 };
}

interface View {
  state: string;
  split: { percent: number };
  ended: { reason: string | null; by: string | null; cause: string | null } | null;
  assigned: { canary: number; control: number };
}

async function view(admin: string, id = 'e1'): Promise<View> {
  const r = await fetch(`${admin}/experiments/${id}`);
  expect(r.status).toBe(200);
  return (await r.json()) as View;
}

const canaryKey = (id: string, percent: number, prefix: string) => stickyKeyIn('canary', id, percent, prefix);
const controlKey = (id: string, percent: number, prefix: string) =>
  stickyKeyIn('control', id, percent, prefix);

const injected = (r: Res) => r.headers['x-faultline-injected'] !== undefined;

const sticky50 = { percent: 50, allow_above_cap: true, sticky: 'header:x-user' };

describe('latency distributions through the proxy', () => {
  it('uniform {min: 100, max: 200} on the response leg delays every canary request by at least min', async () => {
    const up = await echo();
    const fl = await faultline(
      oneRoute(up.url, [
        exp({
          split: sticky50,
          fault: { kind: 'latency', distribution: { type: 'uniform', min: 100, max: 200 }, leg: 'response' },
        }),
      ]),
    );
    const rs = await Promise.all(Array.from({ length: 60 }, (_, i) => send(fl.url(), { 'x-user': `u${i}` })));
    const canary = rs.filter(injected);
    expect(canary.length).toBeGreaterThan(10);
    for (const r of canary) {
      expect(r.status).toBe(200);
      expect(r.body).toBe('upstream');
      expect(r.headers['x-faultline-injected']).toBe('e1; fault=latency');
      expect(r.ms).toBeGreaterThanOrEqual(95);
      expect(r.ms).toBeLessThan(3000);
    }
    // A distribution, not a fixed delay at `min`: some canary requests land in its upper half.
    expect(canary.some((r) => r.ms >= 150)).toBe(true);
    expect(rs.filter((r) => !injected(r)).every((r) => r.status === 200)).toBe(true);
  });

  it('normal and lognormal distributions are accepted and delay canary requests', async () => {
    const up = await echo();
    const cases = [
      { dist: { type: 'normal', mean: 150, stddev: 20 }, floor: 80 },
      { dist: { type: 'lognormal', median: 100, p99: 300 }, floor: 30 },
    ];
    for (const { dist, floor } of cases) {
      const fl = await faultline(
        oneRoute(up.url, [
          exp({ split: sticky50, fault: { kind: 'latency', distribution: dist, leg: 'response' } }),
        ]),
      );
      const rs = await Promise.all(
        Array.from({ length: 60 }, (_, i) => send(fl.url(), { 'x-user': `u${i}` })),
      );
      const canary = rs.filter(injected);
      expect(canary.length, dist.type).toBeGreaterThan(10);
      expect(canary.every((r) => r.status === 200 && r.body === 'upstream')).toBe(true);
      const slow = canary.filter((r) => r.ms >= floor).length;
      expect(
        slow / canary.length,
        `${dist.type}: ${canary.map((r) => Math.round(r.ms)).join(',')}`,
      ).toBeGreaterThanOrEqual(0.8);
    }
  });
});

describe('disabled and dry-run experiments', () => {
  it('enabled: false is disabled: nothing is assigned or injected over 200 requests', async () => {
    const up = await echo();
    const fl = await faultline(
      oneRoute(up.url, [exp({ enabled: false, split: { percent: 50, allow_above_cap: true } })], {
        arm_header: true,
      }),
    );
    expect((await view(fl.admin)).state).toBe('disabled');
    for (let i = 0; i < 5; i++) {
      const rs = await Promise.all(Array.from({ length: 40 }, () => send(fl.url())));
      for (const r of rs) {
        expect(r.status).toBe(200);
        expect(r.headers['x-faultline-injected']).toBeUndefined();
        expect(r.headers['x-faultline-arm']).toBeUndefined();
        expect(String(r.headers['x-seen-baggage'])).not.toContain('faultline');
      }
    }
    const v = await view(fl.admin);
    expect(v.state).toBe('disabled');
    expect(v.assigned).toEqual({ canary: 0, control: 0 });
  });

  it('dry_run: true assigns both arms but injects nothing', async () => {
    const up = await echo();
    const fl = await faultline(
      oneRoute(up.url, [exp({ dry_run: true, split: { percent: 25, allow_above_cap: true } })]),
    );
    expect((await view(fl.admin)).state).toBe('dry_run');
    let canaryTagged = 0;
    for (let i = 0; i < 5; i++) {
      const rs = await Promise.all(Array.from({ length: 40 }, () => send(fl.url())));
      for (const r of rs) {
        expect(r.status).toBe(200);
        expect(r.body).toBe('upstream');
        expect(r.headers['x-faultline-injected']).toBeUndefined();
        if (String(r.headers['x-seen-baggage']).includes('faultline.group=canary')) canaryTagged++;
      }
    }
    const v = await view(fl.admin);
    expect(v.state).toBe('dry_run');
    expect(v.assigned.canary).toBeGreaterThan(10);
    expect(v.assigned.control).toBeGreaterThan(10);
    // Canary requests went to the upstream untouched (no fault) and tagged as canary.
    expect(canaryTagged).toBe(v.assigned.canary);
  });
});

describe('match', () => {
  it('methods, path_prefix and headers: requests that miss any of them are never assigned', async () => {
    const up = await echo();
    const fl = await faultline(
      oneRoute(
        up.url,
        [
          exp({
            match: {
              listener: 'ingress',
              route: 'api',
              methods: ['POST'],
              path_prefix: '/pay',
              headers: { 'x-tenant': 'internal' },
            },
            split: { percent: 50, allow_above_cap: true },
          }),
        ],
        { arm_header: true },
      ),
    );
    const base = fl.url();
    const misses: [string, 'GET' | 'POST', Record<string, string>][] = [
      [`${base}/pay`, 'GET', { 'x-tenant': 'internal' }], // wrong method
      [`${base}/other`, 'POST', { 'x-tenant': 'internal' }], // wrong path
      [`${base}/pa`, 'POST', { 'x-tenant': 'internal' }], // shorter than the prefix
      [`${base}/pay`, 'POST', {}], // header missing
      [`${base}/pay`, 'POST', { 'x-tenant': 'external' }], // header differs
      [`${base}/pay`, 'POST', { 'x-tenant': 'internal-ish' }], // header differs (not a prefix match)
    ];
    for (const [url, method, headers] of misses) {
      const rs = await Promise.all(Array.from({ length: 40 }, () => send(url, headers, method)));
      for (const r of rs) {
        expect(r.status, `${method} ${url} ${JSON.stringify(headers)}`).toBe(200);
        expect(r.headers['x-faultline-injected']).toBeUndefined();
        expect(r.headers['x-faultline-arm']).toBeUndefined();
      }
    }
    expect((await view(fl.admin)).assigned).toEqual({ canary: 0, control: 0 });

    // The same experiment does assign requests that match all three.
    const hits = await Promise.all(
      Array.from({ length: 100 }, () => send(`${base}/pay/checkout`, { 'x-tenant': 'internal' }, 'POST')),
    );
    const canary = hits.filter((r) => r.status === 503);
    const control = hits.filter((r) => r.headers['x-faultline-arm'] === 'e1; group=control');
    expect(canary.every((r) => r.headers['x-faultline-injected'] === 'e1; fault=abort')).toBe(true);
    expect(canary.length).toBeGreaterThan(10);
    expect(control.length).toBeGreaterThan(10);
    expect((await view(fl.admin)).assigned).toEqual({ canary: canary.length, control: control.length });
  });
});

describe('sticky keys through the proxy', () => {
  const armOf = (r: Res) => String(r.headers['x-faultline-arm'] ?? 'none');

  it('cookie:sid: the same cookie always lands in the same arm; requests without it are not assigned', async () => {
    const up = await echo();
    const fl = await faultline(
      oneRoute(up.url, [exp({ split: { percent: 25, allow_above_cap: true, sticky: 'cookie:sid' } })], {
        arm_header: true,
      }),
    );
    const arms = new Map<string, Set<string>>();
    for (let rep = 0; rep < 4; rep++) {
      const rs = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          send(fl.url(), { cookie: `theme=dark; sid=session-${i}; lang=${rep % 2 ? 'en' : 'de'}` }),
        ),
      );
      rs.forEach((r, i) => {
        const s = arms.get(`session-${i}`) ?? new Set<string>();
        s.add(armOf(r));
        arms.set(`session-${i}`, s);
        if (armOf(r) === 'e1; group=canary') expect(r.status).toBe(503);
        else expect(r.status).toBe(200);
      });
    }
    for (const [sid, s] of arms) expect([...s], sid).toHaveLength(1);
    const seen = [...arms.values()].map((s) => [...s][0]);
    expect(seen).toContain('e1; group=canary');
    expect(seen).toContain('e1; group=control');
    expect(seen).toContain('none');

    const before = await view(fl.admin);
    // No cookie, another cookie, a cookie whose name merely ends in "sid": never assigned.
    for (const headers of [{}, { cookie: 'theme=dark' }, { cookie: 'xsid=session-1; sidx=session-2' }]) {
      const rs = await Promise.all(Array.from({ length: 50 }, () => send(fl.url(), headers)));
      for (const r of rs) {
        expect(r.status, JSON.stringify(headers)).toBe(200);
        expect(r.headers['x-faultline-arm'], JSON.stringify(headers)).toBeUndefined();
      }
    }
    expect((await view(fl.admin)).assigned).toEqual(before.assigned);
  });

  it('trace: the same W3C trace id always lands in the same arm, whatever the span; no traceparent, no assignment', async () => {
    const up = await echo();
    const fl = await faultline(
      oneRoute(up.url, [exp({ split: { percent: 25, allow_above_cap: true, sticky: 'trace' } })], {
        arm_header: true,
      }),
    );
    const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');
    const traceId = (i: number) => `4bf92f3577b34da6a3ce${hex(i * 7919 + 13, 12)}`;
    const arms = new Map<string, Set<string>>();
    for (let rep = 0; rep < 4; rep++) {
      const rs = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          send(fl.url(), { traceparent: `00-${traceId(i)}-${hex(rep * 1000 + i + 1, 16)}-01` }),
        ),
      );
      rs.forEach((r, i) => {
        const s = arms.get(traceId(i)) ?? new Set<string>();
        s.add(armOf(r));
        arms.set(traceId(i), s);
      });
    }
    for (const [id, s] of arms) expect([...s], id).toHaveLength(1);
    const seen = [...arms.values()].map((s) => [...s][0]);
    expect(seen).toContain('e1; group=canary');
    expect(seen).toContain('e1; group=control');
    expect(seen).toContain('none');

    const before = await view(fl.admin);
    const rs = await Promise.all(Array.from({ length: 100 }, () => send(fl.url())));
    for (const r of rs) {
      expect(r.status).toBe(200);
      expect(r.headers['x-faultline-arm']).toBeUndefined();
    }
    expect((await view(fl.admin)).assigned).toEqual(before.assigned);
  });
});

describe('kill and arm one experiment', () => {
  const twoExperiments = (upstream: string) =>
    oneRoute(upstream, [
      exp({
        id: 'one',
        match: { listener: 'ingress', route: 'api', path_prefix: '/one' },
        split: { percent: 40, allow_above_cap: true },
      }),
      exp({
        id: 'two',
        match: { listener: 'ingress', route: 'api', path_prefix: '/two' },
        split: { percent: 40, allow_above_cap: true },
      }),
    ]);
  const aborted = async (url: string, n = 60) =>
    (await Promise.all(Array.from({ length: n }, () => send(url)))).filter((r) => r.status === 503).length;

  it('faultline kill <id> --reason kills that experiment only; faultline arm <id> re-arms it', async () => {
    const up = await echo();
    const fl = await faultline(twoExperiments(up.url));
    expect(await aborted(`${fl.url()}/one`)).toBeGreaterThan(0);

    const kill = runCli(['kill', 'one', '--reason', 'r', '--admin', fl.admin]);
    expect(await kill.exited, kill.stderr()).toBe(0);
    const one = await view(fl.admin, 'one');
    expect(one.state).toBe('killed');
    expect(one.ended).toMatchObject({ reason: 'r', cause: 'manual' });
    expect(String(one.ended?.by)).toMatch(/^cli:/);
    expect((await view(fl.admin, 'two')).state).toBe('running');

    expect(await aborted(`${fl.url()}/one`, 200)).toBe(0);
    expect(await aborted(`${fl.url()}/two`)).toBeGreaterThan(0);

    const arm = runCli(['arm', 'one', '--admin', fl.admin]);
    expect(await arm.exited, arm.stderr()).toBe(0);
    expect((await view(fl.admin, 'one')).state).toBe('running');
    expect(await aborted(`${fl.url()}/one`)).toBeGreaterThan(0);
  });

  it('a reload that changes a killed experiment keeps it killed; only arm resumes it', async () => {
    const up = await echo();
    const fl = await faultline(
      oneRoute(up.url, [exp({ split: { percent: 40, allow_above_cap: true } })], { arm_header: true }),
    );
    expect(await aborted(fl.url())).toBeGreaterThan(0);
    const k = await fetch(`${fl.admin}/experiments/e1/kill`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'before the reload' }),
    });
    expect(k.status).toBe(200);

    const cfg = parse(await readFile(fl.configFile, 'utf8')) as {
      experiments: { split: { percent: number } }[];
    };
    cfg.experiments[0]!.split.percent = 45;
    await writeFile(fl.configFile, stringify(cfg));
    const reload = await fetch(`${fl.admin}/config/reload`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
    });
    expect(reload.status, await reload.clone().text()).toBe(200);

    const v = await view(fl.admin);
    expect(v.split.percent).toBe(45); // the new definition is in force...
    expect(v.state).toBe('killed'); // ...and still killed
    expect(v.ended?.reason).toBe('before the reload');
    const rs = await Promise.all(Array.from({ length: 200 }, () => send(fl.url())));
    for (const r of rs) {
      expect(r.status).toBe(200);
      expect(r.headers['x-faultline-injected']).toBeUndefined();
      expect(r.headers['x-faultline-arm']).toBeUndefined();
    }

    expect(
      (
        await fetch(`${fl.admin}/experiments/e1/arm`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
        })
      ).status,
    ).toBe(200);
    expect((await view(fl.admin)).state).toBe('running');
    expect(await aborted(fl.url())).toBeGreaterThan(0);
  });
});

describe('hang', () => {
  it('a hanging canary request is dropped at max_hold_ms, not before and not much after', async () => {
    const up = await echo();
    const fl = await faultline(
      oneRoute(up.url, [exp({ split: sticky50, fault: { kind: 'timeout', hang: true, max_hold_ms: 400 } })]),
    );
    // Control is untouched and quick to answer.
    const ctl = await send(fl.url(), { 'x-user': controlKey('e1', 50, 'user-') });
    expect(ctl.status).toBe(200);

    const key = canaryKey('e1', 50, 'user-');
    // A fresh connection and no client-side timeout of its own (undici's are minutes).
    const agent = new Agent({ pipelining: 1 });
    cleanup.push(() => agent.close());
    const t0 = performance.now();
    let err: NodeJS.ErrnoException | null = null;
    try {
      const r = await request(fl.url(), { headers: { 'x-user': key }, dispatcher: agent });
      await r.body.text();
    } catch (e) {
      err = e as NodeJS.ErrnoException;
    }
    const elapsed = performance.now() - t0;
    expect(err, 'the hanging request got an answer').not.toBeNull();
    expect(err?.code).toMatch(/^(ECONNRESET|UND_ERR_SOCKET)$/);
    expect(elapsed).toBeGreaterThanOrEqual(390);
    expect(elapsed).toBeLessThan(3000);
  });
});
