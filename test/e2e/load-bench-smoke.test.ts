import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

// Runs the whole bench in --quick mode (missing peers and tools are skipped, not failures) and
// checks only that it completes and writes well-formed JSON: figures are not asserted.
describe('bench smoke (node bench/run.mjs --quick)', () => {
  it('completes and writes results JSON', { timeout: 240_000 }, async () => {
    const { code, stdout, stderr } = await new Promise<{
      code: number | null;
      stdout: string;
      stderr: string;
    }>((resolve) => {
      const child = spawn(process.execPath, ['bench/run.mjs', '--quick', '--no-install'], { cwd: root });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (c) => resolve({ code: c, stdout, stderr }));
    });
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
    expect(results.scenarios.map((s) => s.id)).toContain('passthrough-1k');
    for (const s of results.scenarios) expect(Object.keys(s.peers)).toContain('direct');
    expect(results.goals.length).toBeGreaterThan(0);
  });
});
