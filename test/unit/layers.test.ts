/**
 * The layer check (.dependency-cruiser.cjs, run by `npm run lint` in CI) fails on a violation: a tiny
 * tree that breaks each rule once (an engine module importing the proxy and node:http, a value import
 * cycle) is rejected, a type-only cycle is not, and the real src/ passes.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '../..');
const bin = join(root, 'node_modules/.bin/depcruise');
const config = join(root, '.dependency-cruiser.cjs');

const plain = (s: string) => s.replace(/\u001b\[[0-9;]*m/g, '');

async function cruise(cwd: string): Promise<{ code: number; out: string }> {
  try {
    const { stdout } = await run(bin, ['src', '--config', config, '--output-type', 'err'], {
      cwd,
      timeout: 60_000,
      // CI=true makes the reporter colour its output: ask for plain text (and strip any left).
      env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' },
    });
    return { code: 0, out: plain(stdout) };
  } catch (err) {
    const e = err as { code: number; stdout: string };
    return { code: e.code, out: plain(e.stdout) };
  }
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'faultline-layers-'));
  const files: Record<string, string> = {
    'tsconfig.json': JSON.stringify({
      compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext' },
    }),
    'package.json': JSON.stringify({ type: 'module' }),
    'src/proxy/exchange.ts': 'export const x = 1;\n',
    'src/engine/bad.ts':
      "import { x } from '../proxy/exchange.js';\nimport http from 'node:http';\nexport const y = x + (http ? 1 : 0);\n",
    'src/split/a.ts': "import { b } from './b.js';\nexport const a = () => b;\n",
    'src/split/b.ts': "import { a } from './a.js';\nexport const b = () => a;\n",
    'src/stats/t1.ts': "import type { T2 } from './t2.js';\nexport interface T1 { t: T2 | null }\n",
    'src/stats/t2.ts': "import type { T1 } from './t1.js';\nexport interface T2 { t: T1 | null }\n",
  };
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), text);
  }
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('layer rules', () => {
  it('reject an engine module that imports the proxy or node:http, and a value import cycle', async () => {
    const { code, out } = await cruise(dir);
    expect(code).not.toBe(0);
    expect(out).toContain('core-not-proxy: src/engine/bad.ts → src/proxy/exchange.ts');
    expect(out).toMatch(/core-not-node-http: src\/engine\/bad\.ts → (node:)?http/);
    expect(out).toMatch(/no-circular: src\/split\/a\.ts/);
    // A cycle of type-only imports loads nothing at run time: allowed.
    expect(out).not.toContain('src/stats/t1.ts');
  }, 90_000);

  it('pass on src/ as it is', async () => {
    const { code, out } = await cruise(root);
    expect(out).toContain('no dependency violations');
    expect(code).toBe(0);
  }, 90_000);
});
