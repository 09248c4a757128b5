/**
 * The built CLI (dist/bin.js) against a real admin: help never acts, unknown flags are usage errors
 * (exit 2), `kill` without an ID kills nothing.
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { exp, oneRoute } from '../helpers/experiments.js';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { runCli } from '../helpers/process.js';
import { startUpstream } from '../helpers/servers.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function running(): Promise<TestFaultline> {
  const up = await startUpstream((_req, res) => res.end('ok'));
  cleanup.push(() => up.close());
  const f = await startFaultline(
    oneRoute(up.url, [exp({}), exp({ id: 'e2', match: { listener: 'ingress' } })]),
  );
  cleanup.push(async () => {
    await f.stop();
    await removeDir(f.stateDir);
  });
  return f;
}

async function stateOf(f: TestFaultline, id: string): Promise<string> {
  const r = await fetch(`${f.admin}/experiments/${id}`);
  return ((await r.json()) as { state: string }).state;
}

async function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const p = runCli(args, env);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

describe('faultline CLI arguments', () => {
  it('kill --help / -h print help and kill nothing; kill without ID or with an unknown flag exits 2', async () => {
    const f = await running();
    for (const args of [
      ['kill', '--help', '--admin', f.admin],
      ['kill', '--admin', f.admin, '-h'],
      ['kill', '-h'],
      ['kill', '--bogus', '--help', '--admin', f.admin],
    ]) {
      const r = await cli(args, { FAULTLINE_ADMIN_URL: f.admin });
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^usage: faultline kill ID/);
    }
    for (const args of [
      ['kill', '--admin', f.admin],
      ['kill', '--admin', f.admin, '--reason', 'r'],
      ['kill', 'e1', '--bogus', '--admin', f.admin],
      ['kill', 'e1', 'e2', '--admin', f.admin],
      ['kill', 'e1', '--all', '--admin', f.admin],
    ]) {
      const r = await cli(args, { FAULTLINE_ADMIN_URL: f.admin });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/^faultline kill: .+\nusage: faultline kill/);
    }
    expect(await stateOf(f, 'e1')).toBe('running');
    expect(await stateOf(f, 'e2')).toBe('running');
    expect((await cli(['kill', '--admin', f.admin])).stderr).toContain(
      '--all to kill every running experiment',
    );
    expect((await cli(['kill', '--bogus', '--admin', f.admin])).stderr).toContain("unknown option '--bogus'");

    // The real thing still works: one by ID, then a second kill answers 409 with the next step.
    expect((await cli(['kill', 'e1', '--reason', 'r', '--admin', f.admin])).code).toBe(0);
    expect(await stateOf(f, 'e1')).toBe('killed');
    expect(await stateOf(f, 'e2')).toBe('running');
    const again = await cli(['kill', 'e1', '--admin', f.admin]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/409[\s\S]*faultline report e1[\s\S]*faultline arm e1/);
    const all = await cli(['kill', '--all', '--admin', f.admin]);
    expect(all.code).toBe(0);
    expect(await stateOf(f, 'e2')).toBe('killed');
  }, 120_000);

  it('an --admin URL that is not a Faultline admin (a service, the proxy port): exit 3, no POST sent', async () => {
    const seen: string[] = [];
    const svc = await startUpstream((req, res) => {
      seen.push(`${req.method ?? ''} ${req.url ?? ''}`);
      req.resume();
      res.end('ok');
    });
    cleanup.push(() => svc.close());
    const f = await startFaultline(oneRoute(svc.url, [exp({})]));
    cleanup.push(async () => {
      await f.stop();
      await removeDir(f.stateDir);
    });
    const runs = [svc.url, f.url()].flatMap((base) =>
      [['kill', 'e1'], ['kill', '--all'], ['arm', 'e1'], ['status']].map((args) => ({
        name: `${args.join(' ')} ${base}`,
        result: cli([...args, '--admin', base]),
      })),
    );
    for (const { name, result } of runs) {
      const r = await result;
      expect(r.code, name).toBe(3);
      expect(r.stderr, name).toMatch(/without the x-faultline-admin header: not a Faultline admin API/);
    }
    // The service (directly or through the proxy) saw only the GET probes, never a kill or an arm.
    expect(seen.filter((l) => l.startsWith('POST'))).toEqual([]);
    expect(seen.length).toBeGreaterThan(0);
    expect(await stateOf(f, 'e1')).toBe('running');
  }, 60_000);

  it('every command knows --help and rejects unknown flags with exit 2', async () => {
    const commands: [string[], RegExp][] = [
      [['run'], /^usage: faultline run/],
      [['validate'], /^usage: faultline validate/],
      [['demo'], /^usage: faultline demo/],
      [['status'], /^usage: faultline status/],
      [['arm'], /^usage: faultline arm/],
      [['report'], /^usage: faultline report/],
      [['suggest'], /^usage: faultline suggest/],
      [['experiment', 'run'], /^usage: faultline experiment run/],
      [['load'], /^usage: faultline load/],
      [['schema'], /^usage: faultline schema/],
    ];
    const results = await Promise.all(
      commands.flatMap(([cmd]) => [
        cli([...cmd, '--help']),
        cli([...cmd, '-h']),
        cli([...cmd, '--no-such-flag']),
      ]),
    );
    commands.forEach(([cmd, usage], i) => {
      const [help, h, bad] = results.slice(3 * i, 3 * i + 3);
      const name = cmd.join(' ');
      expect(help?.code, `${name} --help`).toBe(0);
      expect(help?.stdout, `${name} --help`).toMatch(usage);
      expect(h?.stdout, `${name} -h`).toBe(help?.stdout);
      // `experiment run` keeps 2 for "inconclusive": its usage errors are 3 (error), documented.
      expect(bad?.code, `${name} --no-such-flag`).toBe(name === 'experiment run' ? 3 : 2);
      expect(bad?.stderr, `${name} --no-such-flag`).toContain("unknown option '--no-such-flag'");
    });
    // `demo --help` printed help and did not start the demo.
    expect(results[6]?.stdout).not.toContain('demo is running');
  }, 120_000);

  it('--version prints the package version; no command or an unknown one exits 2', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    const v = await cli(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout).toBe(`faultline ${pkg.version}\n`);
    expect((await cli([])).code).toBe(2);
    const unknown = await cli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
    // Under `experiment`, 2 means "inconclusive": a typo there is an error (3), never a pass.
    for (const args of [['experiment'], ['experiment', 'rnu', '--config', 'x.yaml']]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(3);
      expect(r.stderr, args.join(' ')).toMatch(/missing subcommand|unknown subcommand 'rnu'/);
    }
  }, 30_000);
});
