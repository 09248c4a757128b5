import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
// @ts-expect-error -- plain ESM bench scripts have no type declarations
import { parseWrk, parseDurationUs, wrkScript } from '../../bench/wrk.mjs';
// @ts-expect-error -- plain ESM bench scripts have no type declarations
import { parseStat, parseStatusKb } from '../../bench/procstat.mjs';
// @ts-expect-error -- plain ESM bench scripts have no type declarations
import { median, goals, markdown } from '../../bench/report.mjs';
// @ts-expect-error -- plain ESM bench scripts have no type declarations
import { SCENARIOS } from '../../bench/scenarios.mjs';
// @ts-expect-error -- plain ESM bench scripts have no type declarations
import { faultlineConfig, nginxConfig } from '../../bench/peers.mjs';

// Captured from `wrk -t1 -c50 -d2s --latency -s <bench lua> http://127.0.0.1:18080/` on this machine.
const SAMPLE = `Running 2s test @ http://127.0.0.1:18080/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.97ms    2.23ms  49.45ms   97.39%
    Req/Sec    71.02k    15.20k   84.82k    90.00%
  Latency Distribution
     50%  642.00us
     75%  737.00us
     90%    0.96ms
     99%    8.85ms
  141161 requests in 2.01s, 160.33MB read
Requests/sec:  70285.86
Transfer/sec:     79.83MB
FL_WRK requests=141161 duration_us=2008384 bytes=168122751 connect=0 read=0 write=0 status=0 timeout=0 p50=642 p90=963 p99=8850 p99.9=36194 mean=966.9 max=49453
`;

// Plain wrk output (no Lua hook) with socket errors and non-2xx responses.
const PLAIN_ERRORS = `Running 5s test @ http://127.0.0.1:8080/
  2 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.50s   312.10ms   1.99s    70.00%
    Req/Sec     1.20k   100.00      1.40k    80.00%
  Latency Distribution
     50%    1.45s
     75%    1.70s
     90%    1.90s
     99%    1.99s
  12000 requests in 5.00s, 1.50MB read
  Socket errors: connect 3, read 4, write 0, timeout 17
  Non-2xx or 3xx responses: 600
Requests/sec:   2400.00
Transfer/sec:    307.20KB
`;

interface WrkResult {
  requests: number;
  durationS: number;
  bytesRead: number;
  rps: number;
  non2xx: number;
  errors: Record<string, number>;
  latencyUs: Record<string, number | null>;
}

describe('bench wrk parser', () => {
  it('reads the Lua summary line exactly', () => {
    const r = parseWrk(SAMPLE) as WrkResult;
    expect(r.requests).toBe(141161);
    expect(r.durationS).toBeCloseTo(2.008384, 6);
    expect(r.bytesRead).toBe(168122751);
    expect(r.rps).toBeCloseTo(141161 / 2.008384, 6);
    expect(r.latencyUs).toMatchObject({
      p50: 642,
      p90: 963,
      p99: 8850,
      p999: 36194,
      max: 49453,
      mean: 966.9,
    });
    expect(r.latencyUs['p75']).toBe(737);
    expect(Object.values(r.errors).every((v) => v === 0)).toBe(true);
  });

  it('reads plain wrk output with errors and unit suffixes', () => {
    const r = parseWrk(PLAIN_ERRORS) as WrkResult;
    expect(r.requests).toBe(12000);
    expect(r.durationS).toBe(5);
    expect(r.bytesRead).toBe(Math.round(1.5 * 1024 * 1024));
    expect(r.rps).toBe(2400);
    expect(r.non2xx).toBe(600);
    expect(r.errors).toEqual({ connect: 3, read: 4, write: 0, timeout: 17, status: 600 });
    expect(r.latencyUs).toMatchObject({ p50: 1.45e6, p99: 1.99e6, mean: 1.5e6, max: 1.99e6, p999: null });
  });

  it('parses durations and writes a Lua script with a body when asked', () => {
    expect(parseDurationUs('642.00us')).toBe(642);
    expect(parseDurationUs('0.96ms')).toBe(960);
    expect(parseDurationUs('2m')).toBe(120e6);
    expect(parseDurationUs('soon')).toBeNull();
    expect(wrkScript()).not.toMatch(/wrk\.body/);
    expect(wrkScript({ method: 'POST', bodyBytes: 131072 })).toMatch(/string\.rep\("x", 131072\)/);
  });
});

describe('bench /proc parsing and report', () => {
  it('reads utime/stime even when comm has spaces and parentheses', () => {
    const line = '1234 (node (bench) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 11 0 100 0 0';
    expect(parseStat(line)).toEqual({ utimeTicks: 250, stimeTicks: 75 });
    expect(parseStatusKb('Name:\tnginx\nVmHWM:\t   10844 kB\nVmRSS:\t 9000 kB\n', 'VmHWM')).toBe(10844);
    expect(parseStatusKb('Name:\tx\n', 'VmHWM')).toBeNull();
  });

  it('medians and goal ratios', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
    expect(median([null, Number.NaN])).toBeNull();
    const peer = (rps: number, cpu: number) => ({ median: { saturation: { rps, cpuUsPerReq: cpu } } });
    const g = goals({
      scenarios: [
        {
          id: 'passthrough-1k',
          peers: { faultline: peer(30000, 90), 'http-proxy': peer(10000, 200), nginx: peer(40000, 40) },
        },
      ],
    }) as { goal: string; value: number | null; met: boolean | null }[];
    expect(g[0]).toMatchObject({ value: 3, met: true });
    expect(g[1]).toMatchObject({ value: null, met: null });
    expect(g[2]?.value).toBeCloseTo(0.45);
    expect(g[3]).toMatchObject({ value: 2.25, met: false });
  });

  it('says why a goal has no value: not run, peer not selected, skipped, crashed', () => {
    const peer = (rps: number) => ({ median: { saturation: { rps, cpuUsPerReq: 50 } } });
    const results = {
      startedAt: '2026-01-01T00:00:00.000Z',
      options: { quick: true, reps: 1, durationS: 1 },
      machine: { nproc: 2, cpuModel: 'x', node: 'v20', kernel: 'Linux', wrk: null, nginx: null, undici: '7' },
      layout: { description: 'not pinned' },
      scenarios: [
        {
          id: 'passthrough-1k',
          title: 'p',
          measures: [],
          peers: { faultline: peer(30000), 'http-proxy': peer(10000), nginx: { skipped: 'nginx missing' } },
        },
        {
          id: 'abort5',
          title: 'a',
          measures: [],
          peers: { faultline: { runs: [], crashed: 'process exited', median: {} }, 'http-proxy': peer(1) },
        },
        {
          id: 'latency1',
          title: 'l',
          measures: [],
          peers: { faultline: { median: { 'fixed 2000/s': { p99Ms: 2, otherP99Ms: 1 } } } },
        },
      ],
      goals: [] as unknown[],
      notes: [],
    };
    const g = goals(results) as {
      goal: string;
      value: number | null;
      met: boolean | null;
      note: string | null;
    }[];
    const byGoal = (prefix: string) => g.find((x) => x.goal.startsWith(prefix));
    expect(byGoal('throughput, pass-through')).toMatchObject({ value: 3, met: true, note: null });
    expect(byGoal('CPU/request, x nginx')).toMatchObject({
      value: null,
      met: null,
      note: 'n/a (nginx skipped)',
    });
    expect(byGoal('throughput, 5% abort')?.note).toBe('n/a (faultline crashed)');
    expect(byGoal('1% latency active')?.note).toBe('not run (peer direct not selected)');
    expect(byGoal('+p99 vs direct')?.note).toBe('n/a (no fixed 2000/s result for faultline)');
    expect(byGoal('GET 128 KB')?.note).toBe('not run');
    results.goals = g;
    const md = markdown(results) as string;
    expect(md).toMatch(/\| GET 128 KB throughput, x nginx \| - \| >= 0\.9 \| not run \|/);
    expect(md).toMatch(/\| CPU\/request, x nginx \| - \| <= 2 \| n\/a \(nginx skipped\) \|/);
    expect(md).not.toMatch(/n\/a \(peer skipped\)/);
  });

  it('runs the abort storm >= 5 times (once under --quick)', () => {
    const storm = (SCENARIOS as { id: string; maxReps?: number; quickMaxReps?: number }[]).find(
      (s) => s.id === 'abort-storm',
    );
    expect(storm?.maxReps ?? Infinity).toBeGreaterThanOrEqual(5);
    expect(storm?.quickMaxReps).toBe(1);
  });

  it('rejects unknown --peers with exit 2 and the list of valid peers', () => {
    const run = fileURLToPath(new URL('../../bench/run.mjs', import.meta.url));
    for (const peers of ['bogus', 'direct,nginxx', ',']) {
      const r = spawnSync(process.execPath, [run, '--peers', peers], { encoding: 'utf8', timeout: 20_000 });
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/--peers: .*valid peers: direct, nginx, http-proxy, faultline/);
      expect(r.stdout).toBe('');
    }
  });

  it('generates peer configs', () => {
    const y = faultlineConfig({
      port: 1,
      adminPort: 2,
      upstreamPort: 3,
      experiments: [{ id: 'a5', match: { listener: 'ingress', route: 'api' }, split: { percent: 5 } }],
    }) as string;
    expect(y).toMatch(/port: 1\n/);
    expect(y).toMatch(/admin: \{ address: 127\.0\.0\.1, port: 2 \}/);
    expect(y).toMatch(/ {4}match: \{ listener: "ingress", route: "api" \}/);
    expect(nginxConfig({ dir: '/tmp/x', port: 1, upstreamPort: 3 })).toMatch(/keepalive 128;/);
  });
});

describe('bench/micro.mjs', () => {
  it('runs over dist/ and its records add up (it exits 1 when the record call no longer matches)', () => {
    const script = fileURLToPath(new URL('../../bench/micro.mjs', import.meta.url));
    const r = spawnSync(process.execPath, [script, '--ops', '20000', '--reps', '1'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/random 5%\s+[\d.]+ ns\/op/);
  });
});
