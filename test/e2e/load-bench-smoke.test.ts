import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

// Runs the bench in --quick mode (missing peers and tools are skipped, not failures) and checks only
// that it completes and writes well-formed JSON: figures are not asserted. Two scenarios cover every
// measure kind (wrk saturation, the paced harness, the abort storm) against every peer; the other
// scenarios are the same kinds with other experiments and bodies (`npm run bench` runs them all), and
// the whole quick bench took ~95 s of the test run on 2 cores. The two cases run concurrently (figures
// are not asserted, so sharing the cores costs nothing but time): ~45 s in sequence, ~30 s together.
const SMOKE_SCENARIOS = 'passthrough-1k,abort-storm';

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: root });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (c) => resolve({ code: c, stdout, stderr }));
  });
}

describe('bench smoke (node bench/run.mjs --quick)', () => {
  it.concurrent(
    'gRPC cases (node bench/grpc.mjs --quick) complete with a table',
    { timeout: 120_000 },
    async () => {
      const { code, stdout, stderr } = await run(['bench/grpc.mjs', '--quick']);
      expect(code, stderr).toBe(0);
      expect(stdout).toMatch(/\| unary \| faultline \|/);
      expect(stderr).toMatch(/results: \S+\.json/);
    },
  );

  it.concurrent('completes and writes results JSON', { timeout: 240_000 }, async () => {
    const { code, stdout, stderr } = await run([
      'bench/run.mjs',
      '--quick',
      '--no-install',
      '--scenario',
      SMOKE_SCENARIOS,
    ]);
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/^# Faultline bench results/m);
    const path = /bench: results: (\S+\.json)/.exec(stderr)?.[1];
    expect(path, stderr).toBeDefined();
    const results = JSON.parse(readFileSync(path ?? '', 'utf8')) as {
      machine: { nproc: number; node: string };
      scenarios: { id: string; peers: Record<string, unknown> }[];
      goals: unknown[];
    };
    expect(results.machine.node).toBe(process.version);
    expect(results.scenarios.map((s) => s.id)).toEqual(SMOKE_SCENARIOS.split(','));
    for (const s of results.scenarios) expect(Object.keys(s.peers)).toContain('direct');
    expect(results.goals.length).toBeGreaterThan(0);
  });
});
