/**
 * The run journal (issue 16): crash-safe appends (a SIGKILL mid-write leaves a torn line that is
 * skipped), retention, `history` and `report --run` over real runs, a regression flagged between runs,
 * and the verdict endpoint read the way Argo Rollouts (jsonPath) and Flagger (status) read it.
 */
import { spawn } from 'node:child_process';
import { appendFile, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileRunJournal, type RunRecord } from '../../src/experiments/journal.js';
import { removeDir, startFaultline, proxyConfig } from '../helpers/faultline.js';
import { runCli } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/servers.js';

const JOURNAL_JS = new URL('../../dist/experiments/journal.js', import.meta.url).href;

function record(experiment: string, run: number, verdict: RunRecord['verdict'] = 'held'): RunRecord {
  const arm = {
    requests: 1,
    ok: 1,
    error: 0,
    timeout: 0,
    reset: 0,
    client_abort: 0,
    injected: 0,
    status_classes: { '1xx': 0, '2xx': 1, '3xx': 0, '4xx': 0, '5xx': 0, error: 0 },
  };
  return {
    v: 1,
    experiment,
    run,
    config_revision: 'c',
    spec_revision: 's',
    hypothesis: 'h',
    fault: { kind: 'abort' },
    split_percent: 1,
    started_at: null,
    ended_at: new Date().toISOString(),
    started_by: 'test',
    ended_by: 'test',
    state: 'expired',
    cause: null,
    reason: 'r',
    verdict,
    verdict_reason: 'v',
    guardrails: [],
    evidence: { pad: 'x'.repeat(20_000) },
    arms: { canary: arm, control: arm },
    assigned: { canary: 1, control: 1 },
    replicas: 1,
  };
}

/** Argo Rollouts' web provider: jsonPath "{$.a.b}" on the body (the subset Argo templates use). */
function argoJsonPath(body: unknown, path: string): unknown {
  const m = /^\{\$\.(.+)\}$/.exec(path);
  if (!m) throw new Error(`unsupported jsonPath ${path}`);
  return m[1]!.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], body);
}

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await removeDir(d);
});

describe('run journal', () => {
  it('survives SIGKILL during writes: complete lines are kept, a torn last line is skipped', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fl-journal-kill-'));
    dirs.push(dir);
    // A child appends 20 KB records as fast as it can; it is killed mid-stream.
    const script = `
      const { FileRunJournal } = await import(${JSON.stringify(JOURNAL_JS)});
      const j = new FileRunJournal(${JSON.stringify(dir)}, 100000);
      await j.prepare();
      const rec = JSON.parse(process.argv[1]);
      for (let i = 1; ; i++) { await j.append({ ...rec, run: i }); if (i === 5) console.log('ready'); }
    `;
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', script, JSON.stringify(record('k', 0))],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    await new Promise((r) => setTimeout(r, 150));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    // Whatever the kill left, also leave a torn line for certain (a crash mid-write of one record).
    const file = join(dir, 'runs.jsonl');
    await appendFile(file, '{"v":1,"experiment":"k","run":99999,"evid');
    const j = new FileRunJournal(dir, 100000);
    await j.prepare();
    const runs = j.runs('k');
    expect(runs.length).toBeGreaterThanOrEqual(5);
    expect(runs.map((r) => r.run)).toEqual(runs.map((_, i) => i + 1));
    // The torn tail was cut: the next append starts on its own line and reads back.
    await j.append(record('k', j.nextRun('k')));
    const j2 = new FileRunJournal(dir, 100000);
    await j2.prepare();
    expect(j2.runs('k').length).toBe(runs.length + 1);
    expect((await readFile(file, 'utf8')).endsWith('\n')).toBe(true);
  });

  it('keeps keep_runs runs per experiment; numbering continues after compaction', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fl-journal-ret-'));
    dirs.push(dir);
    const j = new FileRunJournal(dir, 4);
    await j.prepare();
    await j.append(record('other', 1));
    for (let i = 0; i < 12; i++) await j.append(record('a', j.nextRun('a')));
    await j.flush();
    const j2 = new FileRunJournal(dir, 4);
    await j2.prepare();
    const a = j2.runs('a').map((r) => r.run);
    expect(a.length).toBeLessThanOrEqual(5);
    expect(a[a.length - 1]).toBe(12);
    expect(j2.runs('other')).toHaveLength(1);
    expect(j2.nextRun('a')).toBe(13);
  });
});

describe('history, report --run and the verdict gate over real runs', () => {
  let up: Upstream;
  afterAll(async () => {
    await up?.close();
  });

  it('records runs in order, flags a regression, serves verdicts for Argo and Flagger, survives a restart', async () => {
    // The service under test: fine, until it is "fragile" and fails the requests of the canary arm.
    let fragile = false;
    up = await startUpstream((req, res) => {
      req.resume();
      const canary = String(req.headers['baggage'] ?? '').includes('canary');
      res.writeHead(fragile && canary ? 500 : 200);
      res.end('ok');
    });
    const config = {
      ...proxyConfig(up.url),
      experiments: [
        {
          id: 'slow-api',
          hypothesis: 'the API absorbs 1 ms of extra latency',
          split: { percent: 25, allow_above_cap: true },
          fault: { kind: 'latency', ms: 1 },
          guardrails: [{ metric: 'error_rate', max_increase: 0.05 }],
          min_samples: 20,
        },
      ],
    };
    let t = await startFaultline(config);
    dirs.push(t.stateDir);
    const admin = t.admin;
    const drive = async (n: number) => {
      for (let i = 0; i < n; i += 20)
        await Promise.all(Array.from({ length: 20 }, () => fetch(t.url()).then((r) => r.arrayBuffer())));
    };
    const verdict = async (query = '') => {
      const r = await fetch(`${t.admin}/experiments/slow-api/verdict${query}`);
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    };
    const arm = () =>
      fetch(`${t.admin}/experiments/slow-api/arm`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ by: 'test-operator' }),
      });

    // Run 1 and 2: held.
    for (let run = 1; run <= 2; run++) {
      if (run > 1) expect((await arm()).status).toBe(200);
      await drive(400);
      const live = await verdict();
      expect(live.status).toBe(200); // Flagger: a running, holding experiment passes the gate
      expect(argoJsonPath(live.body, '{$.score}')).toBe(1);
      expect(live.body['run']).toBe(run);
      t.fl.table.complete('slow-api', 'test window over');
    }
    // Run 3: the service regressed; the error-rate guardrail refutes it.
    fragile = true;
    expect((await arm()).status).toBe(200);
    for (let i = 0; i < 40 && t.fl.table.get('slow-api')?.state === 'running'; i++) await drive(100);
    expect(t.fl.table.get('slow-api')?.state).toBe('killed');
    await t.fl.journal.flush();

    const gate = await verdict();
    expect(gate.status).toBe(409); // Flagger: non-2xx fails the gate
    expect(argoJsonPath(gate.body, '{$.verdict}')).toBe('refuted');
    expect(argoJsonPath(gate.body, '{$.score}')).toBe(0);
    const argo = await verdict('?always_200=1');
    expect(argo.status).toBe(200);
    expect(argoJsonPath(argo.body, '{$.score}')).toBe(0);

    const runs = (await (await fetch(`${admin}/experiments/slow-api/runs`)).json()) as { runs: RunRecord[] };
    expect(runs.runs.map((r) => [r.run, r.verdict])).toEqual([
      [1, 'held'],
      [2, 'held'],
      [3, 'refuted'],
    ]);
    expect(runs.runs[0]!.started_by).toBe('config');
    expect(runs.runs[1]!.started_by).toBe('test-operator');
    expect(runs.runs[2]!.ended_by).toBe('guardrail');
    expect(runs.runs[2]!.config_revision).toMatch(/^[0-9a-f]{12}$/);
    expect(runs.runs[2]!.replicas).toBe(1);
    expect(runs.runs[2]!.arms.canary.error).toBeGreaterThan(0);

    const run3 = (await (await fetch(`${admin}/experiments/slow-api/runs/3`)).json()) as {
      history: { regression: boolean; summary: string };
    };
    expect(run3.history.regression).toBe(true);
    expect(run3.history.summary).toMatch(
      /^held on the last 2 runs; refuted now: error rate \+\d+\.\d pp at the same fault/,
    );

    const hist = runCli(['history', 'slow-api', '--admin', admin]);
    expect(await hist.exited).toBe(0);
    const lines = hist.stdout().trim().split('\n');
    expect(lines[0]).toMatch(/^EXPERIMENT\s+RUN\s+VERDICT/);
    expect(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 3).join(' '))).toEqual([
      'slow-api 1 held',
      'slow-api 2 held',
      'slow-api 3 refuted',
    ]);
    const rep = runCli(['report', 'slow-api', '--run', '3', '--admin', admin]);
    expect(await rep.exited).toBe(0);
    expect(rep.stdout()).toContain('run 3: REFUTED');
    expect(rep.stdout()).toContain('**REGRESSION:** held on the last 2 runs; refuted now');
    const bad = runCli(['report', 'slow-api', '--run', 'x', '--admin', admin]);
    expect(await bad.exited).toBe(2);
    const none = runCli(['report', 'slow-api', '--run', '9', '--admin', admin]);
    expect(await none.exited).toBe(1);

    // A restart keeps the journal (and the kill).
    await t.stop();
    t = await startFaultline(config, { stateDir: t.stateDir });
    try {
      const again = (await (await fetch(`${t.admin}/runs`)).json()) as { runs: RunRecord[] };
      expect(again.runs.map((r) => r.run)).toEqual([1, 2, 3]);
      expect((await verdict()).status).toBe(409);
    } finally {
      await t.stop();
    }
  });
});
