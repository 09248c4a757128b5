import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { runLoadCommand } from '../../src/load/command.js';
import type { LoadReport } from '../../src/load/report.js';
import { LatencyHistogram } from '../../src/load/histogram.js';
import { parseInjectedMark } from '../../src/load/arms.js';
import { parseDurationMs, parseLoadArgs } from '../../src/load/args.js';
import { armDelta, parseExperiments } from '../../src/load/admin.js';

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

describe('load harness against a real server', () => {
  // Every 10th request (by arrival order) is marked as injected by "exp1" with a 503; every 25th
  // request that is not marked carries a mark from another experiment, to check --experiment.
  let seen = 0;
  let base = '';
  let adminState = 'active';
  let adminCanary = 0;
  const server = createServer((req, res) => {
    if (req.url === '/experiments') {
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          experiments: [
            {
              id: 'exp1',
              state: adminState,
              arms: { canary: { requests: adminCanary, latency_ms: { p99: 7 } }, control: { requests: 5 } },
            },
          ],
        }),
      );
      return;
    }
    seen++;
    req.resume();
    if (req.url?.startsWith('/mark') && seen % 10 === 0) {
      res.statusCode = 503;
      res.setHeader('x-faultline-injected', 'exp1; fault=abort');
    } else if (req.url?.startsWith('/mark') && seen % 25 === 0) {
      res.setHeader('x-faultline-injected', 'other; fault=latency');
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
      ['--target', `${base}/mark`, '--rate', '500', '--duration', '2s', '--experiment', 'exp1', '--json'],
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
    expect(r.arms.canary.errors).toBe(canary);
    expect(r.arms.canary.status['5xx']).toBe(canary);
    expect(r.arms.other.count).toBe(seen - canary);
    expect(r.arms.other.errors).toBe(0);
    expect(r.injectedBy).toEqual(otherMarks > 0 ? { exp1: canary, other: otherMarks } : { exp1: canary });
    expect(r.errors).toBe(canary);
    expect(r.errorRate).toBeCloseTo(canary / seen, 10);
    expect(r.arms.other.latencyMs.p50).toBeGreaterThan(0);
    expect(r.arms.other.latencyMs.p99).toBeGreaterThanOrEqual(r.arms.other.latencyMs.p50);
    expect(err.text()).toMatch(/^load +\d+\.\ds +sent \d+/m);
  });

  it('reads admin group counts and exits 4 when the experiment is killed during the run', async () => {
    adminState = 'active';
    adminCanary = 100;
    const out = sink();
    const run = runLoadCommand(
      [
        '--target',
        `${base}/plain`,
        '--rate',
        '200',
        '--duration',
        '1.5s',
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

  it('prints a text report with both arms', async () => {
    const out = sink();
    const code = await runLoadCommand(['--target', `${base}/mark`, '--rate', '100', '--duration', '300ms'], {
      stdout: out,
      stderr: sink(),
      progressMs: 0,
    });
    expect(code).toBe(0);
    expect(out.text()).toMatch(/canary \(injected\)/);
    expect(out.text()).toMatch(/^other /m);
  });

  it('exits 1 when nothing answers', async () => {
    const dead = createServer();
    const url = await listen(dead);
    await new Promise((r) => dead.close(r));
    const code = await runLoadCommand(['--target', url, '--rate', '50', '--duration', '200ms'], {
      stdout: sink(),
      stderr: sink(),
      progressMs: 0,
    });
    expect(code).toBe(1);
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
      expect(await runLoadCommand(argv, { stdout: sink(), stderr: err, progressMs: 0 })).toBe(3);
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
    expect(parseDurationMs('1.5')).toBe(1500);
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
  });
});
