/**
 * Deploy gates (issue 16): `experiment run --junit` writes JUnit XML that validates against the
 * schema CI tools read (xmllint, a real program: Debian libxml2-utils), with one test case per
 * guardrail and the breach as a <failure>; the exit codes of the docs/ci.md workflow; runs build up
 * in the journal across CI invocations sharing a state_dir.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { removeDir } from '../helpers/faultline.js';
import { runCli } from '../helpers/process.js';
import { closedPort, startUpstream, type Upstream } from '../helpers/servers.js';

const XSD = fileURLToPath(new URL('../fixtures/junit/junit.xsd', import.meta.url));

function xmllint(file: string): { status: number | null; out: string } {
  const r = spawnSync('xmllint', ['--noout', '--schema', XSD, file], { encoding: 'utf8' });
  if (r.error) throw new Error(`xmllint is needed (Debian package libxml2-utils): ${r.error.message}`);
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('experiment run --junit', () => {
  let up: Upstream;
  let fragile = false;
  let dir: string;
  beforeAll(async () => {
    up = await startUpstream((req, res) => {
      req.resume();
      const canary = String(req.headers['baggage'] ?? '').includes('canary');
      res.writeHead(fragile && canary ? 503 : 200);
      res.end('ok');
    });
    dir = await mkdtemp(join(tmpdir(), 'fl-gates-'));
  });
  afterAll(async () => {
    await up.close();
    await removeDir(dir);
  });

  it('held: exit 0, a passing suite; refuted: exit 1, the breached guardrail fails with its evidence', async () => {
    const port = await closedPort();
    const config = join(dir, 'faultline.yaml');
    await writeFile(
      config,
      stringify({
        state_dir: join(dir, 'state'),
        admin: { port: 0 },
        listeners: [{ name: 'ingress', port, routes: [{ name: 'api', upstream: up.url }] }],
        experiments: [
          {
            id: 'checkout-latency',
            hypothesis: 'checkout absorbs 2 ms of extra latency',
            split: { percent: 20, allow_above_cap: true },
            fault: { kind: 'latency', ms: 2 },
            guardrails: [{ metric: 'error_rate', max_increase: 0.05 }],
            min_samples: 20,
          },
        ],
      }),
    );
    const args = (junit: string) => [
      'experiment',
      'run',
      '--config',
      config,
      '--experiment',
      'checkout-latency',
      '--duration',
      '2500ms',
      '--load',
      `http://127.0.0.1:${port}/,300`,
      '--junit',
      junit,
    ];

    const heldFile = join(dir, 'held.xml');
    const held = runCli(args(heldFile));
    expect(await held.exited).toBe(0);
    const heldXml = await readFile(heldFile, 'utf8');
    expect(xmllint(heldFile)).toMatchObject({ status: 0 });
    expect(heldXml).toMatch(/<testsuite name="faultline.checkout-latency" tests="1" failures="0"/);
    expect(heldXml).toContain('name="guardrail error_rate"');
    expect(heldXml).not.toContain('<failure');

    fragile = true;
    const refutedFile = join(dir, 'refuted.xml');
    const refuted = runCli(args(refutedFile));
    expect(await refuted.exited).toBe(1);
    const xml = await readFile(refutedFile, 'utf8');
    const lint = xmllint(refutedFile);
    expect(lint.status, lint.out).toBe(0);
    expect(xml).toMatch(/tests="1" failures="1"/);
    expect(xml).toMatch(/<failure message="guardrail error_rate breached: [^"]+" type="guardrail_breached">/);
    expect(xml).toContain('<property name="verdict" value="refuted"/>');

    // The two CI runs shared a state_dir: the journal holds both, in order.
    const lines = (await readFile(join(dir, 'state', 'runs.jsonl'), 'utf8')).trim().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as { verdict: string }).verdict)).toEqual(['held', 'refuted']);
    expect(lines.map((l) => (JSON.parse(l) as { run: number }).run)).toEqual([1, 2]);
  });

  it('an unwritable --junit path is an error (exit 3), not a pass', async () => {
    const r = runCli([
      'experiment',
      'run',
      '--config',
      join(dir, 'faultline.yaml'),
      '--experiment',
      'checkout-latency',
      '--duration',
      '200ms',
      '--junit',
      join(dir, 'no-such-dir', 'x.xml'),
    ]);
    expect(await r.exited).toBe(3);
    expect(r.stderr()).toContain('cannot write --junit');
  });
});
