/**
 * Suggested experiments (issue 16) on a demo topology: real upstreams (a service, its payments and
 * inventory dependencies), real traffic through Faultline's ingress and egress listeners. The untested,
 * high-volume dependency without a route timeout (payments) comes first with its reasons; the YAML it
 * prints passes `faultline validate` and, started with it, Faultline assigns requests to it.
 */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { validateConfig } from '../../src/config/load.js';
import { Faultline } from '../../src/main.js';
import type { SuggestionsDocument } from '../../src/suggest/suggest.js';
import { removeDir } from '../helpers/faultline.js';
import { runCli } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/servers.js';

const dirs: string[] = [];
const ups: Upstream[] = [];
afterAll(async () => {
  for (const u of ups) await u.close();
  for (const d of dirs) await removeDir(d);
});

describe('faultline suggest', () => {
  it('ranks the untested high-volume dependency with no timeout first; its YAML validates and runs', async () => {
    const ok =
      (body: string) =>
      async (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
        req.resume();
        res.end(body);
      };
    const payments = await startUpstream(ok('paid'));
    const inventory = await startUpstream(ok('in stock'));
    ups.push(payments, inventory);
    let egress = '';
    let n = 0;
    // The service: three payment calls per request, an inventory call every tenth, all through egress.
    const service = await startUpstream(async (req, res) => {
      req.resume();
      for (let i = 0; i < 3; i++) await (await fetch(`${egress}/pay/charge`)).arrayBuffer();
      if (n++ % 10 === 0) await (await fetch(`${egress}/inv/items`)).arrayBuffer();
      res.end('done');
    });
    ups.push(service);
    const dir = await mkdtemp(join(tmpdir(), 'fl-suggest-'));
    dirs.push(dir);
    const raw = {
      state_dir: dir,
      admin: { address: '127.0.0.1', port: 0 },
      drain_timeout_ms: 500,
      listeners: [
        { name: 'ingress', port: 0, routes: [{ name: 'api', upstream: service.url }] },
        {
          name: 'egress',
          port: 0,
          trust_assignment: true,
          routes: [
            { name: 'payments', path_prefix: '/pay', upstream: payments.url },
            { name: 'inventory', path_prefix: '/inv', upstream: inventory.url, timeout_ms: 500 },
          ],
        },
      ],
      experiments: [
        {
          id: 'inventory-errors',
          hypothesis: 'checkout shows cached stock when inventory fails',
          match: { listener: 'egress', route: 'inventory' },
          split: { percent: 1 },
          fault: { kind: 'abort', status: 503 },
          enabled: false,
        },
      ],
    };
    const configFile = join(dir, 'config.yaml');
    await writeFile(configFile, stringify(raw));
    const fl = await Faultline.start({ configFile, config: validateConfig(raw, configFile) });
    egress = `http://127.0.0.1:${fl.port('egress')}`;
    const admin = `http://127.0.0.1:${fl.adminPort}`;
    let doc: SuggestionsDocument;
    let cliOut: string;
    try {
      const url = `http://127.0.0.1:${fl.port('ingress')}/checkout`;
      for (let i = 0; i < 200; i += 20)
        await Promise.all(Array.from({ length: 20 }, () => fetch(url).then((r) => r.arrayBuffer())));

      const res = await fetch(`${admin}/suggestions`);
      expect(res.status).toBe(200);
      doc = (await res.json()) as SuggestionsDocument;
      const pay = doc.routes.find((r) => r.route === 'payments');
      expect(pay).toMatchObject({ listener: 'egress', dependency: true, requests: 600, timeout_set: false });
      expect(doc.routes.find((r) => r.route === 'inventory')).toMatchObject({
        requests: 20,
        timeout_set: true,
      });
      const first = doc.suggestions[0]!;
      expect(first).toMatchObject({
        rank: 1,
        id: 'payments-latency',
        target: { listener: 'egress', route: 'payments' },
        blast_radius_percent: 1,
      });
      const texts = first.reasons.map((r) => r.text).join('\n');
      expect(texts).toMatch(/high volume: 600 requests/);
      expect(texts).toMatch(/never tested/);
      expect(texts).toMatch(/no route timeout set: the 15 s default applies/);
      expect(texts).toMatch(/dependency behind egress listener egress/);
      expect(texts).toMatch(/route timeout 15 s is longer than the caller's p99 \(.* ms\) x 10/);
      expect(first.score).toBe(first.reasons.reduce((s, r) => s + r.points, 0));
      // Scores never rise down the list; the tested inventory route ranks below the untested ones.
      for (let i = 1; i < doc.suggestions.length; i++)
        expect(doc.suggestions[i]!.score).toBeLessThanOrEqual(doc.suggestions[i - 1]!.score);
      const inv = doc.suggestions.find((s) => s.id === 'inventory-latency')!;
      expect(inv.reasons.map((r) => r.text).join('\n')).not.toMatch(/never tested/);

      // The CLI prints the same ranking with the reasons and the YAML block.
      const cli = runCli(['suggest', '--admin', admin, '--top', '3']);
      expect(await cli.exited).toBe(0);
      cliOut = cli.stdout();
      expect(cliOut).toMatch(/RANK\s+SCORE\s+ID\s+TARGET\s+FAULT/);
      expect(cliOut).toMatch(/#1 payments-latency \(score \d+\)/);
      expect(cliOut).toContain('- id: payments-latency');
    } finally {
      await fl.stop(200);
    }

    // Pasted under `experiments:` of the same config, the block validates and runs.
    const block = cliOut.split('#1 payments-latency')[1]!.split('\n#2')[0]!;
    const yamlLines = block.split('\n').filter((l) => l.startsWith('    '));
    const pasted = parse(yamlLines.join('\n')) as Record<string, unknown>[];
    expect(pasted[0]).toMatchObject({ id: 'payments-latency', split: { percent: 1 } });
    const dir2 = await mkdtemp(join(tmpdir(), 'fl-suggest-run-'));
    dirs.push(dir2);
    const text = (await readFile(configFile, 'utf8'))
      .replace(dir, dir2)
      .concat(yamlLines.map((l) => l.slice(2)).join('\n') + '\n');
    const file2 = join(dir2, 'config.yaml');
    await writeFile(file2, text);
    const v = runCli(['validate', file2]);
    expect(await v.exited).toBe(0);
    expect(v.stdout()).toMatch(/valid \(2 listener\(s\), 2 experiment\(s\)\)/);

    const fl2 = await Faultline.start({ configFile: file2 });
    try {
      const url = `http://127.0.0.1:${fl2.port('egress')}/pay/charge`;
      const rt = fl2.table.get('payments-latency')!;
      expect(rt.state).toBe('running');
      // 1% of requests: stop at the first canary (one is expected within ~100 requests).
      for (let i = 0; i < 3000 && (rt.assigned[1] ?? 0) === 0; i += 100)
        await Promise.all(Array.from({ length: 100 }, () => fetch(url).then((r) => r.arrayBuffer())));
      const assigned = await (
        await fetch(`http://127.0.0.1:${fl2.adminPort}/experiments/payments-latency`)
      ).json();
      expect((assigned as { assigned: { canary: number } }).assigned.canary).toBeGreaterThan(0);
    } finally {
      await fl2.stop(200);
    }
  }, 60_000);
});
