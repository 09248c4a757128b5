import { describe, expect, it } from 'vitest';
// @ts-expect-error -- plain ESM bench scripts have no type declarations
import { parseWrk, parseDurationUs, wrkScript } from '../../bench/wrk.mjs';
// @ts-expect-error -- plain ESM bench scripts have no type declarations
import { parseStat, parseStatusKb } from '../../bench/procstat.mjs';
// @ts-expect-error -- plain ESM bench scripts have no type declarations
import { median, goals } from '../../bench/report.mjs';
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
