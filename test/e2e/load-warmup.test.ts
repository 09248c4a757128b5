import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { runLoadCommand } from '../../src/load/command.js';
import type { LoadReport } from '../../src/load/report.js';

function sink(): { write(s: string): boolean; text: () => string } {
  let buf = '';
  return { write: (s: string) => ((buf += s), true), text: () => buf };
}

// A real upstream that is slow (SLOW_MS) for the first FIRST_MS after the first request of each
// phase reaches it, then answers at once: a cold start the warm-up must keep out of the report.
// At 50 req/s only ~15 requests are held at once: each gets its own connection without a connect
// storm (on a starved machine, opening ~200 at once took seconds and carried the cold start into
// the window through the pool, not through the report).
const SLOW_MS = 1000;
const FIRST_MS = 300;

describe('faultline load: warm-up and the generator health report', () => {
  let arrivals = 0;
  let phaseStart = 0;
  let url = '';
  const server = createServer((req, res) => {
    arrivals++;
    const now = performance.now();
    if (phaseStart === 0) phaseStart = now;
    req.resume();
    if (now - phaseStart < FIRST_MS) setTimeout(() => res.end('ok'), SLOW_MS);
    else res.end('ok');
  });
  const reset = (): void => {
    arrivals = 0;
    phaseStart = 0;
  };

  beforeAll(async () => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  /** `faultline load ARGS` in this process; its exit code and stdout. */
  async function loadRaw(args: string[]): Promise<{ code: number; stdout: string }> {
    const out = sink();
    const code = await runLoadCommand(['--target', url, ...args], {
      stdout: out,
      stderr: sink(),
      progressMs: 0,
    });
    return { code, stdout: out.text() };
  }

  async function load(extra: string[]): Promise<{ code: number; r: LoadReport }> {
    const { code, stdout } = await loadRaw(['--rate', '50', '--duration', '1s', '--json', ...extra]);
    return { code, r: JSON.parse(stdout) as LoadReport };
  }

  it('keeps the warm-up out of the report: counts are the window, the cold start is not in the tail', async () => {
    reset();
    const { code, r } = await load(['--warmup', '1s']);
    expect(code).toBe(0);
    // The upstream saw the warm-up and the measured window; the report holds exactly the window.
    expect(r.warmup).toMatchObject({ durationS: 1, scheduled: 50, sent: 50, completed: 50, dropped: 0 });
    expect(r.scheduled).toBe(50);
    expect(r.sent).toBe(50);
    expect(r.completed).toBe(50);
    expect(arrivals).toBe(r.warmup.sent + r.sent);
    // Every request held SLOW_MS was due in the warm-up (the first FIRST_MS of a 1 s warm-up).
    expect(r.latencyMs.max).toBeLessThan(SLOW_MS * 0.8);
    expect(r.arms.controlOrUntouched.count).toBe(50);
  });

  it('without a warm-up the same cold start is in the report (the check above can fail)', async () => {
    reset();
    const { r } = await load(['--warmup', '0s']);
    expect(r.warmup.sent).toBe(0);
    expect(arrivals).toBe(r.sent);
    expect(r.latencyMs.max).toBeGreaterThanOrEqual(SLOW_MS);
  });

  it('reports send lateness, event-loop use and CPU, in JSON and in text', async () => {
    reset();
    phaseStart = -1e9; // no slow phase
    const { r } = await load(['--warmup', '200ms']);
    const g = r.generator;
    // Within 10 %: the last sends can leave late on a busy machine, which shortens the window.
    expect(g.achievedRatePerS).toBeGreaterThan(45);
    expect(g.achievedRatePerS).toBeLessThan(55);
    const l = g.sendLatenessMs;
    expect(l.p50).toBeGreaterThanOrEqual(0);
    expect(l.p99).toBeGreaterThanOrEqual(l.p50);
    expect(l.max).toBeGreaterThanOrEqual(l.p99);
    // Latency is measured from the scheduled send, so it includes the send's lateness.
    expect(r.latencyMs.max).toBeGreaterThanOrEqual(l.max * 0.99);
    expect(g.eventLoopUtilization).toBeGreaterThan(0);
    expect(g.eventLoopUtilization).toBeLessThanOrEqual(1);
    expect(g.cpuPct).toBeGreaterThan(0);
    expect(g.saturated).toBe(g.warnings.length > 0);

    phaseStart = -1e9;
    const out = (await loadRaw(['--rate', '100', '--duration', '300ms', '--warmup', '200ms'])).stdout;
    expect(out).toMatch(/warm-up \(not in any figure\): 0\.2s, sent 20, completed 20/);
    expect(out).toMatch(
      /generator: [\d.]+\/s {2}send lateness \(ms\) p50 [\d.]+ {2}p99 [\d.]+ {2}max [\d.]+/,
    );
  });

  it('--busy-poll spins instead of sleeping: a core of CPU, no event-loop warning, said in the text', async () => {
    reset();
    phaseStart = -1e9; // no slow phase
    const sleeping = (await load(['--warmup', '0s'])).r.generator;
    const { code, r } = await load(['--warmup', '0s', '--busy-poll']);
    expect(code).toBe(0);
    expect(r.completed).toBe(50);
    const g = r.generator;
    expect(sleeping.busyPoll).toBe(false);
    expect(g.busyPoll).toBe(true);
    // 50 req/s take a sleeping generator a few % of a core; a spinning one never leaves its loop.
    expect(g.cpuPct).toBeGreaterThan(50);
    expect(g.cpuPct).toBeGreaterThan(sleeping.cpuPct * 3);
    // Its loop is always "busy" by design: that is not reported as saturation.
    expect(g.warnings.join('; ')).not.toMatch(/event loop busy|CPU \d+% of a core/);
    expect(g.saturated).toBe(g.warnings.length > 0);

    const text = (await loadRaw(['--rate', '100', '--duration', '300ms', '--warmup', '0s', '--busy-poll']))
      .stdout;
    expect(text).toMatch(/busy-polling: CPU [\d.]+% of a core/);
    expect(text).not.toMatch(/event loop \d+% busy/);
  });

  it('counts the generator’s GC pauses in the window and warns about a long one', async () => {
    reset();
    phaseStart = -1e9;
    // A full collection over a large live heap, forced 0.5 s into a 1 s window (after a 200 ms warm-up).
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    let live: object[] | null = Array.from({ length: 1_500_000 }, (_, i) => ({ i, s: `x${i}` }));
    const t = setTimeout(() => gc(), 700);
    try {
      const { r } = await load(['--warmup', '200ms']);
      const g = r.generator.gcPausesMs;
      expect(g.count).toBeGreaterThanOrEqual(1);
      expect(g.max).toBeGreaterThan(5);
      expect(g.total).toBeGreaterThanOrEqual(g.max);
      expect(r.generator.warnings.join('; ')).toMatch(/GC paused the generator \d+x \(max [\d.]+ ms/);
      expect(r.generator.saturated).toBe(true);
    } finally {
      clearTimeout(t);
      live = null;
    }
    expect(live).toBeNull();

    // Without the forced pause: the field is there, the steady scavenges of 50 req/s stay short.
    phaseStart = -1e9;
    const text = (await loadRaw(['--rate', '50', '--duration', '300ms', '--warmup', '100ms'])).stdout;
    expect(text).toMatch(/GC pauses \d+ \(max [\d.-]+ ms, total [\d.-]+ ms\)/);
  }, 30_000);

  it('warns that the numbers are the generator’s when it cannot keep the rate', async () => {
    reset();
    phaseStart = -1e9;
    // 60,000 req/s from one Node process is out of reach: sends fall behind their schedule.
    const argv = ['--rate', '60000', '--duration', '300ms', '--warmup', '0s', '--concurrency', '16'];
    const r = JSON.parse((await loadRaw([...argv, '--json'])).stdout) as LoadReport;
    expect(r.generator.saturated).toBe(true);
    expect(r.generator.warnings.join('; ')).toMatch(/sends left late|achieved|event loop|CPU|dropped/);
    expect(r.generator.sendLatenessMs.p99).toBeGreaterThan(2);

    phaseStart = -1e9;
    const text = (await loadRaw(argv)).stdout;
    expect(text).toMatch(/WARNING: the load generator was saturated \(.+\):/);
    expect(text).toMatch(/the numbers are the generator's, not the target's/);
  }, 30_000);
});
