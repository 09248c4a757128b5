import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { runLoadCommand } from '../../src/load/command.js';
import type { LoadReport } from '../../src/load/report.js';
import { LatencyHistogram } from '../../src/load/histogram.js';
import { classify, parseArmMark, parseInjectedMark, splitMarks } from '../../src/load/arms.js';
import { parseDurationMs, parseLoadArgs } from '../../src/load/args.js';
import { adminArmSummary, armDelta, parseExperiment, parseExperiments } from '../../src/load/admin.js';

function sink(): { write(s: string): boolean; text: () => string } {
  let buf = '';
  return {
    write(s: string) {
      buf += s;
      return true;
    },
    text: () => buf,
  };
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** How many of the arrivals 1..n have k % 10 === r. */
const nth = (n: number, r: number): number => Math.floor((n - r) / 10) + (r === 0 ? 0 : 1);

describe('load harness against a real server', () => {
  // /mark (no arm header, as Faultline without `arm_header: true`): every 10th request by arrival
  // order is marked injected by "exp1" with a 503; every 25th one that is not carries a mark from
  // another experiment, to check --experiment.
  // /arms (as Faultline with `arm_header: true`), by arrival order k % 10:
  //   0 canary injected (503)   1 canary, not injected   2 control   3 control, 500 (20 ms late)
  //   4 arm mark of another experiment only (untouched for exp1)
  //   5 folded "other; group=canary, exp1; group=control" (control)
  //   6 two header lines, "other; group=control" and "exp1; group=canary" (canary)   7-9 no mark
  // Control responses are 20 ms late, so their p50 must stand apart from the other arms'.
  let seen = 0;
  let base = '';
  let adminState = 'active';
  let adminCanary = 0;
  let adminControl: Record<string, number> = { requests: 5 };
  const adminPaths: string[] = [];
  const experiment = () => ({
    id: 'exp1',
    state: adminState,
    arms: { canary: { requests: adminCanary, latency_ms: { p99: 7 } }, control: adminControl },
  });
  const server = createServer((req, res) => {
    if (req.url?.startsWith('/experiments')) {
      adminPaths.push(req.url);
      res.setHeader('content-type', 'application/json');
      // What every answer of a real admin carries (a client refuses one without it).
      res.setHeader('x-faultline-admin', '1');
      if (req.url === '/experiments') res.end(JSON.stringify({ experiments: [experiment()] }));
      else if (req.url === '/experiments/exp1') res.end(JSON.stringify(experiment()));
      else {
        res.statusCode = 404;
        res.end('{"error":"not_found"}');
      }
      return;
    }
    seen++;
    req.resume();
    if (req.url?.startsWith('/mark') && seen % 10 === 0) {
      res.statusCode = 503;
      res.setHeader('x-faultline-injected', 'exp1; fault=abort');
    } else if (req.url?.startsWith('/mark') && seen % 25 === 0) {
      res.setHeader('x-faultline-injected', 'other; fault=latency');
    } else if (req.url?.startsWith('/arms')) {
      const k = seen % 10;
      if (k === 0) {
        res.statusCode = 503;
        res.setHeader('x-faultline-injected', 'exp1; fault=abort');
        res.setHeader('x-faultline-arm', 'exp1; group=canary');
      } else if (k === 1) res.setHeader('x-faultline-arm', 'exp1; group=canary');
      else if (k === 2 || k === 3) {
        res.setHeader('x-faultline-arm', 'exp1; group=control');
        if (k === 3) res.statusCode = 500;
      } else if (k === 4) res.setHeader('x-faultline-arm', 'other; group=canary');
      else if (k === 5) res.setHeader('x-faultline-arm', 'other; group=canary, exp1; group=control');
      else if (k === 6) res.setHeader('x-faultline-arm', ['other; group=control', 'exp1; group=canary']);
      if (k === 2 || k === 3 || k === 5) {
        setTimeout(() => res.end('ok'), 20);
        return;
      }
    }
    res.end('ok');
  });
  beforeAll(async () => {
    base = await listen(server);
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  it('holds the scheduled rate (500 req/s for 2 s within 3%) and counts arms exactly', async () => {
    seen = 0;
    const out = sink();
    const err = sink();
    const code = await runLoadCommand(
      [
        '--target',
        `${base}/mark`,
        '--rate',
        '500',
        '--duration',
        '2s',
        '--warmup',
        '0s',
        '--experiment',
        'exp1',
        '--json',
      ],
      { stdout: out, stderr: err, progressMs: 500 },
    );
    expect(code).toBe(0);
    const r = JSON.parse(out.text()) as LoadReport;
    expect(r.sent).toBeGreaterThanOrEqual(970);
    expect(r.sent).toBeLessThanOrEqual(1030);
    expect(Math.abs(r.achievedRatePerS - 500) / 500).toBeLessThan(0.03);
    expect(r.completed).toBe(seen);
    // Exact arithmetic: every 10th arrival is canary; of the rest, multiples of 25 but not 10.
    const canary = Math.floor(seen / 10);
    const otherMarks = Math.floor(seen / 25) - Math.floor(seen / 50);
    expect(r.arms.canary.count).toBe(canary);
    expect(r.arms.canary.injected).toBe(canary);
    expect(r.arms.canary.errors).toBe(canary);
    expect(r.arms.canary.status['5xx']).toBe(canary);
    // No x-faultline-arm anywhere: control and untouched are not told apart, and not invented.
    expect(r.armMarked).toBe(0);
    expect(r.arms.control).toBeNull();
    expect(r.arms.untouched).toBeNull();
    expect(r.controlSource).toBe('none');
    expect(r.adminControl).toBeNull();
    expect(r.arms.controlOrUntouched.count).toBe(seen - canary);
    expect(r.arms.controlOrUntouched.errors).toBe(0);
    expect(r.notInjected.count).toBe(seen - canary);
    expect(r.injectedBy).toEqual(otherMarks > 0 ? { exp1: canary, other: otherMarks } : { exp1: canary });
    expect(r.errors).toBe(canary);
    expect(r.errorRate).toBeCloseTo(canary / seen, 10);
    expect(r.arms.controlOrUntouched.latencyMs.p50).toBeGreaterThan(0);
    expect(r.arms.controlOrUntouched.latencyMs.p99).toBeGreaterThanOrEqual(
      r.arms.controlOrUntouched.latencyMs.p50,
    );
    expect(err.text()).toMatch(/^load +\d+\.\ds +sent \d+ .*canary \d+ {2}rest \d+/m);
  });

  it('splits canary, control and untouched by x-faultline-arm, each with its own figures', async () => {
    seen = 0;
    const out = sink();
    const err = sink();
    const code = await runLoadCommand(
      [
        '--target',
        `${base}/arms`,
        '--rate',
        '400',
        '--duration',
        '1.5s',
        '--warmup',
        '0s',
        '--experiment',
        'exp1',
        '--json',
      ],
      { stdout: out, stderr: err, progressMs: 400 },
    );
    expect(code).toBe(0);
    const r = JSON.parse(out.text()) as LoadReport;
    expect(r.completed).toBe(seen);
    const n = seen;
    const canary = nth(n, 0) + nth(n, 1) + nth(n, 6);
    const control = nth(n, 2) + nth(n, 3) + nth(n, 5);
    const untouched = nth(n, 4) + nth(n, 7) + nth(n, 8) + nth(n, 9);
    expect(canary + control + untouched).toBe(n);
    expect(r.controlSource).toBe('client');
    expect(r.armMarked).toBe(n - nth(n, 7) - nth(n, 8) - nth(n, 9));
    expect(r.arms.canary.count).toBe(canary);
    expect(r.arms.canary.injected).toBe(nth(n, 0));
    expect(r.arms.canary.errors).toBe(nth(n, 0));
    expect(r.arms.canary.errorRate).toBeCloseTo(nth(n, 0) / canary, 10);
    expect(r.arms.control?.count).toBe(control);
    expect(r.arms.control?.errors).toBe(nth(n, 3));
    expect(r.arms.control?.status['5xx']).toBe(nth(n, 3));
    expect(r.arms.control?.errorRate).toBeCloseTo(nth(n, 3) / control, 10);
    expect(r.arms.untouched?.count).toBe(untouched);
    expect(r.arms.untouched?.errors).toBe(0);
    expect(r.arms.controlOrUntouched.count).toBe(control + untouched);
    expect(r.notInjected.count).toBe(n - nth(n, 0));
    expect(r.errors).toBe(nth(n, 0) + nth(n, 3));
    // Separate histograms: every control response waited 20 ms on the server, the others did not.
    expect(r.arms.control?.latencyMs.p50).toBeGreaterThanOrEqual(19);
    expect(r.arms.untouched?.latencyMs.p50).toBeLessThan(r.arms.control?.latencyMs.p50 ?? 0);
    expect(r.arms.canary.latencyMs.p50).toBeLessThan(r.arms.control?.latencyMs.p50 ?? 0);
    expect(err.text()).toMatch(/canary \d+ {2}control \d+ {2}untouched \d+/);
  });

  it("without --experiment every experiment's arm marks count, canary first", async () => {
    seen = 0;
    const out = sink();
    const code = await runLoadCommand(
      ['--target', `${base}/arms`, '--rate', '200', '--duration', '1s', '--warmup', '0s', '--json'],
      {
        stdout: out,
        stderr: sink(),
        progressMs: 0,
      },
    );
    expect(code).toBe(0);
    const r = JSON.parse(out.text()) as LoadReport;
    const n = seen;
    // k=4 (other canary) and k=5 (other canary + exp1 control) become canary; k=6 stays canary.
    expect(r.arms.canary.count).toBe(nth(n, 0) + nth(n, 1) + nth(n, 4) + nth(n, 5) + nth(n, 6));
    expect(r.arms.control?.count).toBe(nth(n, 2) + nth(n, 3));
    expect(r.arms.untouched?.count).toBe(nth(n, 7) + nth(n, 8) + nth(n, 9));
  });

  it('prints the three arms as text when the arm header is present', async () => {
    const out = sink();
    const code = await runLoadCommand(
      ['--target', `${base}/arms`, '--rate', '100', '--duration', '300ms', '--warmup', '0s'],
      {
        stdout: out,
        stderr: sink(),
        progressMs: 0,
      },
    );
    expect(code).toBe(0);
    const t = out.text();
    expect(t).toMatch(/^canary +\d+/m);
    expect(t).toMatch(/^ {2}of which injected +\d+/m);
    expect(t).toMatch(/^control +\d+/m);
    expect(t).toMatch(/^untouched +\d+/m);
    expect(t).not.toMatch(/cannot be told apart/);
  });

  it('without the arm header shows control from the admin counts (GET /experiments/{id})', async () => {
    adminState = 'active';
    adminCanary = 10;
    adminControl = { requests: 5, ok: 5, error: 0, timeout: 0, reset: 0, client_abort: 0 };
    adminPaths.length = 0;
    const run = (json: boolean) =>
      runLoadCommand(
        [
          '--target',
          `${base}/mark`,
          '--rate',
          '200',
          '--duration',
          '1s',
          '--warmup',
          '0s',
          '--admin',
          base,
          '--experiment',
          'exp1',
          ...(json ? ['--json'] : []),
        ],
        { stdout: out, stderr: sink(), progressMs: 0 },
      );
    let out = sink();
    const p = run(true);
    setTimeout(() => {
      adminCanary = 30;
      adminControl = { requests: 45, ok: 36, error: 2, timeout: 1, reset: 0, client_abort: 6 };
    }, 300);
    expect(await p).toBe(0);
    expect(adminPaths.length).toBeGreaterThanOrEqual(2);
    expect(adminPaths.every((x) => x === '/experiments/exp1')).toBe(true);
    const r = JSON.parse(out.text()) as LoadReport;
    expect(r.controlSource).toBe('admin');
    expect(r.arms.control).toBeNull();
    expect(r.adminControl).toEqual({
      experiment: 'exp1',
      requests: 40,
      errors: 3,
      errorRate: 3 / 40,
      untouched: r.completed - 60,
    });
    const e = r.admin?.experiments[0];
    expect(e?.controlSummary).toEqual({ requests: 40, errors: 3, errorRate: 3 / 40 });
    expect(e?.canarySummary).toEqual({ requests: 20, errors: 0, errorRate: 0 });

    // The same as text: the control row is the admin's, and the report says why.
    out = sink();
    expect(await run(false)).toBe(0);
    const t = out.text();
    expect(t).toMatch(/^canary \(injected\) +\d+/m);
    expect(t).toMatch(/^control \(admin counts\) +0 /m);
    expect(t).toMatch(/^control \+ untouched \(client\) +\d+/m);
    expect(t).toMatch(/control cannot be told apart from untouched on the\s+client side/);
    expect(t).toMatch(/`arm_header: true`/);
  });

  it('reads admin group counts and exits 4 when the experiment is killed during the run', async () => {
    adminState = 'active';
    adminCanary = 100;
    adminControl = { requests: 5 };
    const out = sink();
    const run = runLoadCommand(
      [
        '--target',
        `${base}/plain`,
        '--rate',
        '200',
        '--duration',
        '1.5s',
        '--warmup',
        '0s',
        '--admin',
        base,
        '--experiment',
        'exp1',
        '--json',
      ],
      { stdout: out, stderr: sink(), progressMs: 300 },
    );
    setTimeout(() => {
      adminCanary = 130;
      adminState = 'killed';
    }, 500);
    const code = await run;
    expect(code).toBe(4);
    const r = JSON.parse(out.text()) as LoadReport;
    const e = r.admin?.experiments[0];
    expect(e?.id).toBe('exp1');
    expect(e?.stateBefore).toBe('active');
    expect(e?.stateAfter).toBe('killed');
    expect(e?.killed).toBe(true);
    expect(e?.canary['requests']).toBe(30);
    expect(e?.canary['latency_ms.p99']).toBe(7);
    expect(e?.control['requests']).toBe(0);
    expect(e?.untouched).toBe(r.completed - 30);
    expect(r.killed).toBe(true);
  });

  it('lists every experiment from GET /experiments without --experiment; unknown id is reported', async () => {
    adminState = 'active';
    const out = sink();
    expect(
      await runLoadCommand(
        [
          '--target',
          `${base}/plain`,
          '--rate',
          '50',
          '--duration',
          '200ms',
          '--warmup',
          '0s',
          '--admin',
          base,
          '--json',
        ],
        { stdout: out, stderr: sink(), progressMs: 0 },
      ),
    ).toBe(0);
    expect((JSON.parse(out.text()) as LoadReport).admin?.experiments.map((e) => e.id)).toEqual(['exp1']);
    const text = sink();
    expect(
      await runLoadCommand(
        [
          '--target',
          `${base}/plain`,
          '--rate',
          '50',
          '--duration',
          '200ms',
          '--warmup',
          '0s',
          '--admin',
          base,
          '--experiment',
          'nope',
        ],
        { stdout: text, stderr: sink(), progressMs: 0 },
      ),
    ).toBe(0);
    expect(text.text()).toMatch(/no matching experiment listed/);
  });

  it('exits 1 when nothing answers', async () => {
    const dead = createServer();
    const url = await listen(dead);
    await new Promise((r) => dead.close(r));
    const code = await runLoadCommand(
      ['--target', url, '--rate', '50', '--duration', '200ms', '--warmup', '0s'],
      {
        stdout: sink(),
        stderr: sink(),
        progressMs: 0,
      },
    );
    expect(code).toBe(1);
  });

  it('exits 1 when every response is a 5xx (no request succeeded), 0 when any is not', async () => {
    let n = 0;
    const failing = createServer((_req, res) => {
      res.statusCode = 502;
      res.end('bad gateway');
    });
    const url = await listen(failing);
    const err = sink();
    const args = ['--target', url, '--rate', '50', '--duration', '200ms', '--warmup', '0s'];
    expect(await runLoadCommand(args, { stdout: sink(), stderr: err, progressMs: 0 })).toBe(1);
    expect(err.text()).toMatch(/no request succeeded: every response was a 5xx/);
    await new Promise((r) => failing.close(r));
    const mixed = createServer((_req, res) => {
      res.statusCode = n++ % 2 === 0 ? 503 : 200;
      res.end('x');
    });
    const url2 = await listen(mixed);
    expect(
      await runLoadCommand([...args.slice(0, 1), url2, ...args.slice(2)], {
        stdout: sink(),
        stderr: sink(),
        progressMs: 0,
      }),
    ).toBe(0);
    await new Promise((r) => mixed.close(r));
  });
});

describe('load argument parsing', () => {
  it('rejects bad flags with exit 3 and usage', async () => {
    for (const argv of [
      [],
      ['--target', 'http://x', '--rate', '0', '--duration', '1s'],
      ['--target', 'ftp://x', '--rate', '1', '--duration', '1s'],
      ['--target', 'http://x', '--rate', '1', '--duration', 'soon'],
      ['--target', 'http://x', '--rate', '1', '--duration', '1s', '--bogus'],
      ['--target', 'http://x', '--rate', '1', '--duration', '1s', '--header', 'nocolon'],
      ['--target', 'http://x', '--rate', '1', '--duration', '1s', '--concurrency', '2.5'],
      ['--target', 'http://x', '--rate', '1', '--duration'],
    ]) {
      const err = sink();
      expect(await runLoadCommand(argv, { stdout: sink(), stderr: err, progressMs: 0 })).toBe(2);
      expect(err.text()).toMatch(/usage: faultline load/);
    }
  });

  it('parses every option', () => {
    const o = parseLoadArgs([
      '--target=http://127.0.0.1:1/a?b=1',
      '--rate',
      '2000',
      '--duration',
      '500ms',
      '--warmup',
      '0s',
      '--concurrency',
      '8',
      '--body',
      'hello',
      '--header',
      'X-A: 1',
      '--header',
      'x-b:two',
      '--admin',
      'http://127.0.0.1:2',
      '--experiment',
      'e',
      '--json',
    ]);
    expect(o?.method).toBe('POST');
    expect(o?.durationMs).toBe(500);
    expect(o?.headers).toEqual({ 'x-a': '1', 'x-b': 'two' });
    expect(o?.body?.toString()).toBe('hello');
    expect(o?.json).toBe(true);
    expect(parseLoadArgs(['--help'])).toBeNull();
    expect(parseDurationMs('2m')).toBe(120_000);
    expect(parseDurationMs('1.5s')).toBe(1500);
    // One grammar with the config: a bare number has no unit and is refused.
    expect(() => parseDurationMs('1.5')).toThrow(/a duration like/);
  });
});

describe('load building blocks', () => {
  it('histogram quantiles stay within 1% and memory is fixed', () => {
    const h = new LatencyHistogram();
    for (let v = 1; v <= 100_000; v++) h.record(v);
    expect(h.count).toBe(100_000);
    for (const q of [0.5, 0.9, 0.99, 0.999]) {
      const exact = q * 100_000;
      expect(Math.abs(h.quantileUs(q) - exact) / exact).toBeLessThan(0.01);
    }
    expect(h.quantileUs(1)).toBe(100_000);
    expect(new LatencyHistogram().quantileUs(0.5)).toBeNaN();
  });

  it('parses the injected mark', () => {
    expect(parseInjectedMark('abort5; fault=abort')).toEqual({ experiment: 'abort5', fault: 'abort' });
    expect(parseInjectedMark('x')).toEqual({ experiment: 'x', fault: undefined });
  });

  it('parses arm marks and classifies responses', () => {
    expect(parseArmMark('e1; group=canary')).toEqual({ experiment: 'e1', group: 'canary' });
    expect(parseArmMark('e1;group=Control')).toEqual({ experiment: 'e1', group: 'control' });
    expect(parseArmMark('e1')).toEqual({ experiment: 'e1', group: undefined });
    expect(splitMarks(undefined)).toEqual([]);
    expect(splitMarks('a; group=canary, b; group=control')).toEqual(['a; group=canary', 'b; group=control']);
    expect(splitMarks(['a; group=canary', ' ', 'b; group=control'])).toEqual([
      'a; group=canary',
      'b; group=control',
    ]);
    const arm = (i: string[], a: string[], e?: string) => classify(i, a, e).arm;
    expect(arm([], [])).toBe('untouched');
    expect(arm(['e1; fault=abort'], [])).toBe('canary');
    expect(arm(['e1; fault=abort'], [], 'e2')).toBe('untouched');
    expect(arm([], ['e1; group=control'])).toBe('control');
    expect(arm([], ['e1; group=control'], 'e2')).toBe('untouched');
    // An injected mark wins over a control mark: the caller saw a fault.
    expect(arm(['e1; fault=abort'], ['e1; group=control'], 'e1')).toBe('canary');
    expect(arm([], ['e1; group=control', 'e2; group=canary'])).toBe('canary');
    expect(arm([], ['e1; group=control', 'e2; group=canary'], 'e1')).toBe('control');
    expect(classify([], ['e2; group=canary'], 'e1')).toEqual({
      arm: 'untouched',
      injected: false,
      armMarked: true,
    });
    expect(classify(['e1; fault=latency'], ['e1; group=canary'], 'e1').injected).toBe(true);
  });

  it('admin snapshots: lenient parse, counters as deltas, quantiles as last value', () => {
    const list = parseExperiments({
      experiments: [
        { id: 'a', state: 'running', arms: { canary: { requests: 10, errors: 2, p99_ms: 3 } } },
        { nope: 1 },
      ],
    });
    expect(list).toHaveLength(1);
    expect(armDelta({ requests: 4, errors: 1, p99_ms: 9 }, list[0]?.arms['canary'])).toEqual({
      requests: 6,
      errors: 1,
      p99_ms: 3,
    });
    expect(() => parseExperiments({})).toThrow(/experiments/);
    expect(parseExperiment({ id: 'b', state: 'killed', arms: { control: { requests: 3 } } })).toEqual({
      id: 'b',
      state: 'killed',
      arms: { control: { requests: 3 } },
    });
    expect(() => parseExperiment({ error: 'x' })).toThrow(/experiment/);
    expect(adminArmSummary({ requests: 50, error: 2, timeout: 1, reset: 2, client_abort: 9 })).toEqual({
      requests: 50,
      errors: 5,
      errorRate: 0.1,
    });
    expect(adminArmSummary({ requests: 0 })).toEqual({ requests: 0, errors: 0, errorRate: 0 });
    expect(adminArmSummary({ ok: 1 })).toBeNull();
  });
});
