/** The README's in-process example runs as written: `node examples/inprocess.mjs` (after the build). */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

it('examples/inprocess.mjs: a fragile app, its experiment refuted and killed', async () => {
  const root = resolve(import.meta.dirname, '../..');
  const { stdout } = await promisify(execFile)('node', ['examples/inprocess.mjs'], {
    cwd: root,
    timeout: 60_000,
  });
  expect(stdout).toMatch(/of 400 checkout requests failed; experiment killed, verdict refuted/);
  expect(stdout).toContain('guardrail breached: error_rate');
}, 70_000);
