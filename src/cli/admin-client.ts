/** `faultline status|kill|arm|report|history|fleet|suggest`: thin clients of a running instance's admin API. */
import { request } from 'undici';
import { writeFile } from 'node:fs/promises';
import { ADMIN_HEADER, notAdminError } from '../admin/marker.js';
import type { RunComparison, RunRecord } from '../experiments/journal.js';
import {
  reportMarkdown,
  runReportMarkdown,
  type ExperimentReport,
  type ExperimentView,
} from '../experiments/report.js';
import { reportHtml } from '../experiments/report-html.js';
import type { SeriesView } from '../experiments/series.js';
import { fleetText } from './fleet-view.js';
import type { SuggestionsDocument } from '../suggest/suggest.js';
import { SUGGEST_USAGE, suggestText } from './suggest.js';
import { textTable } from './table.js';
import { EXIT_USAGE, parseCommand, usageError, type OptionSpecs } from './args.js';

export async function adminCall(
  base: string,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const token = process.env['FAULTLINE_ADMIN_TOKEN'];
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers['authorization'] = `Bearer ${token}`;
  // A POST changes something: first prove, with a GET, that `base` is a Faultline admin API, so a
  // kill or an arm aimed at the wrong port never reaches a service (through the proxy or directly).
  if (method === 'POST') {
    const probe = await request(new URL('/ready', base), { method: 'GET', headers });
    await probe.body.dump();
    if (probe.headers[ADMIN_HEADER] === undefined)
      throw notAdminError(new URL('/ready', base).href, probe.statusCode);
  }
  const res = await request(new URL(path, base), {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.body.text();
  if (res.headers[ADMIN_HEADER] === undefined) throw notAdminError(new URL(path, base).href, res.statusCode);
  let json: unknown = text;
  try {
    json = JSON.parse(text) as unknown;
  } catch {
    // plain text answer
  }
  return { status: res.statusCode, json };
}

type AdminCommand = 'status' | 'kill' | 'arm' | 'report' | 'history' | 'fleet' | 'suggest';

type FleetRow = Parameters<typeof fleetText>[0][number];

const ADMIN_OPTIONS = `  --admin URL    admin API base (default $FAULTLINE_ADMIN_URL, else http://127.0.0.1:9901);
                 $FAULTLINE_ADMIN_TOKEN is sent as the bearer token
  -h, --help     show this help`;

export const ADMIN_USAGE: Record<AdminCommand, string> = {
  status: `usage: faultline status [ID] [--json] [--admin URL]
  every experiment as a table (--json: the admin's JSON), or one experiment's JSON
  --json         every experiment as the admin's JSON instead of a table
${ADMIN_OPTIONS}`,
  kill: `usage: faultline kill ID [--reason TEXT] [--admin URL]
       faultline kill --all [--reason TEXT] [--admin URL]
  kill one running experiment, or with --all every running experiment (409 if ID is not running)
  --reason TEXT  recorded with the kill (default "killed from the CLI")
${ADMIN_OPTIONS}`,
  arm: `usage: faultline arm ID [--admin URL]
  re-arm a killed or expired experiment (a fresh run: new counts and evidence)
${ADMIN_OPTIONS}`,
  report: `usage: faultline report ID [--run N] [--json | --html FILE] [--admin URL]
  the experiment's report as markdown (--json: as JSON; --html FILE: written to FILE as one
  self-contained HTML page with the dashboard's charts as SVG, for a post-mortem), compared with its
  previous runs
  --run N        the report of recorded run N (see faultline history ID) instead of the current one
${ADMIN_OPTIONS}`,
  history: `usage: faultline history [ID] [--json] [--admin URL]
  the run journal: every recorded run (of experiment ID), oldest first, with its verdict
  --json         the records as JSON
${ADMIN_OPTIONS}`,
  fleet: `usage: faultline fleet [ID] [--json] [--admin URL]
  fleet mode: the fleet as any replica sees it: pooled arms, each replica's counts and last-seen
  time, who holds the evaluator lease (kill and arm on any replica act on the whole fleet)
  --json         the experiments' fleet views as JSON
${ADMIN_OPTIONS}`,
  suggest: SUGGEST_USAGE + ADMIN_OPTIONS,
};

const ADMIN_FLAGS: Record<AdminCommand, OptionSpecs> = {
  status: { admin: { type: 'string' }, json: { type: 'boolean' } },
  kill: { admin: { type: 'string' }, reason: { type: 'string' }, all: { type: 'boolean' } },
  arm: { admin: { type: 'string' } },
  report: {
    admin: { type: 'string' },
    json: { type: 'boolean' },
    run: { type: 'string' },
    html: { type: 'string' },
  },
  history: { admin: { type: 'string' }, json: { type: 'boolean' } },
  fleet: { admin: { type: 'string' }, json: { type: 'boolean' } },
  suggest: { admin: { type: 'string' }, json: { type: 'boolean' }, top: { type: 'string' } },
};

export async function adminCommand(cmd: AdminCommand, args: string[]): Promise<number> {
  const usage = ADMIN_USAGE[cmd];
  const parsed = parseCommand(cmd, usage, args, ADMIN_FLAGS[cmd], 1);
  if (typeof parsed === 'number') return parsed;
  const base = parsed.string('admin') ?? process.env['FAULTLINE_ADMIN_URL'] ?? 'http://127.0.0.1:9901';
  const id = parsed.positionals[0];
  const json = parsed.flag('json');
  if ((cmd === 'arm' || cmd === 'report') && id === undefined)
    return usageError(cmd, usage, 'missing experiment ID');
  const runText = parsed.string('run');
  if (runText !== undefined && !/^[1-9][0-9]{0,9}$/.test(runText))
    return usageError(cmd, usage, `--run: not a run number: '${runText}'`);
  const htmlFile = parsed.string('html');
  if (htmlFile !== undefined && json) return usageError(cmd, usage, 'give --json or --html, not both');
  if (cmd === 'kill') {
    // "No ID" must never mean "everything": killing every experiment is asked for by name.
    if (id === undefined && !parsed.flag('all'))
      return usageError(cmd, usage, 'give an experiment ID, or --all to kill every running experiment');
    if (id !== undefined && parsed.flag('all'))
      return usageError(cmd, usage, 'give an ID or --all, not both');
  }
  try {
    new URL(base);
  } catch {
    return usageError(cmd, usage, `--admin: not a URL: '${base}'`, EXIT_USAGE);
  }
  try {
    let r: { status: number; json: unknown };
    switch (cmd) {
      case 'status':
        r = await adminCall(base, 'GET', id ? `/experiments/${encodeURIComponent(id)}` : '/experiments');
        break;
      case 'kill': {
        const reason = parsed.string('reason') ?? 'killed from the CLI';
        const by = `cli:${process.env['USER'] ?? 'operator'}`;
        r = await adminCall(base, 'POST', id ? `/experiments/${encodeURIComponent(id)}/kill` : '/kill', {
          reason,
          by,
        });
        break;
      }
      case 'arm':
        r = await adminCall(base, 'POST', `/experiments/${encodeURIComponent(id ?? '')}/arm`, {
          by: `cli:${process.env['USER'] ?? 'operator'}`,
        });
        break;
      case 'report':
        if (runText !== undefined) {
          r = await adminCall(base, 'GET', `/experiments/${encodeURIComponent(id ?? '')}/runs/${runText}`);
          if (r.status === 200 && !json) {
            process.stdout.write(runReportMarkdown(r.json as RunRecord & { history: RunComparison }));
            return 0;
          }
          break;
        }
        r = await adminCall(base, 'GET', `/experiments/${encodeURIComponent(id ?? '')}/report`);
        if (r.status === 200 && htmlFile !== undefined) {
          const series = await adminCall(base, 'GET', `/experiments/${encodeURIComponent(id ?? '')}/series`);
          const view = series.status === 200 ? (series.json as SeriesView) : null;
          try {
            await writeFile(htmlFile, reportHtml(r.json as ExperimentReport, view));
          } catch (err) {
            process.stderr.write(`faultline report: cannot write ${htmlFile}: ${(err as Error).message}\n`);
            return 1;
          }
          process.stdout.write(
            `${htmlFile}: report of ${id ?? ''} (${(r.json as ExperimentReport).verdict})\n`,
          );
          return 0;
        }
        if (r.status === 200 && !json) {
          process.stdout.write(reportMarkdown(r.json as ExperimentReport));
          return 0;
        }
        break;
      case 'fleet': {
        r = await adminCall(base, 'GET', id ? `/experiments/${encodeURIComponent(id)}` : '/experiments');
        if (r.status !== 200) break;
        const rows = id ? [r.json as FleetRow] : (r.json as { experiments: FleetRow[] }).experiments;
        const text = fleetText(rows);
        if (text === null) {
          process.stderr.write(`faultline fleet: ${base} is not in a fleet (its config has no \`fleet\`)\n`);
          return 1;
        }
        process.stdout.write(
          json
            ? JSON.stringify(
                rows.map((x) => ({ id: x.id, state: x.state, fleet: x.fleet })),
                null,
                2,
              ) + '\n'
            : text,
        );
        return 0;
      }
      case 'suggest':
        r = await adminCall(base, 'GET', '/suggestions');
        if (r.status === 200 && !json) {
          const top = Number(parsed.string('top') ?? '5');
          if (!Number.isInteger(top) || top < 1)
            return usageError(cmd, usage, '--top: not a positive number');
          process.stdout.write(suggestText(r.json as SuggestionsDocument, top));
          return 0;
        }
        break;
      case 'history':
        r = await adminCall(base, 'GET', id ? `/experiments/${encodeURIComponent(id)}/runs` : '/runs');
        if (r.status === 200 && !json) {
          process.stdout.write(historyTable((r.json as { runs: RunRecord[] }).runs));
          return 0;
        }
        break;
    }
    if (r.status >= 400) {
      const e = (r.json as { error?: { code?: string; message?: string } }).error;
      process.stderr.write(`faultline ${cmd}: ${r.status} ${e?.message ?? JSON.stringify(r.json)}\n`);
      // Killing an experiment that already ended (e.g. the kill switch tripped first) is a 409: say
      // what to do next instead of leaving the operator at an error.
      if (
        cmd === 'kill' &&
        id !== undefined &&
        e?.code === 'not_running' &&
        /\b(killed|expired)\b/.test(e.message ?? '')
      )
        process.stderr.write(
          `  it is no longer running: \`faultline report ${id}\` shows why it ended; \`faultline arm ${id}\` starts a fresh run\n`,
        );
      return 1;
    }
    // A kill or an arm the fleet has not heard of yet (Redis unreachable from this replica) says so.
    const warning = (r.json as { warning?: unknown } | null)?.warning;
    if (typeof warning === 'string') process.stderr.write(`faultline ${cmd}: warning: ${warning}\n`);
    if (cmd === 'status' && !id && !json)
      process.stdout.write(statusTable(r.json as { experiments: ExperimentView[] }));
    else process.stdout.write(JSON.stringify(r.json, null, 2) + '\n');
    return 0;
  } catch (err) {
    process.stderr.write(
      (err as { code?: string }).code === 'FL_NOT_ADMIN'
        ? `faultline ${cmd}: ${(err as Error).message}\n`
        : `faultline ${cmd}: cannot reach admin API at ${base}: ${(err as Error).message}\n`,
    );
    return 3;
  }
}

function historyTable(runs: RunRecord[]): string {
  if (runs.length === 0) return 'no recorded runs\n';
  const rate = (n: number, d: number) => (d > 0 ? `${((100 * n) / d).toFixed(1)}%` : '-');
  const bad = (a: RunRecord['arms']['canary']) => a.error + a.timeout + a.reset;
  const rows = runs.map((r) => [
    r.experiment,
    String(r.run),
    r.verdict,
    r.started_at ?? '-',
    r.ended_at,
    r.started_by,
    r.ended_by,
    `${r.arms.canary.requests} (err ${rate(bad(r.arms.canary), r.arms.canary.requests)})`,
    `${r.arms.control.requests} (err ${rate(bad(r.arms.control), r.arms.control.requests)})`,
    r.reason,
  ]);
  return textTable(
    [
      'EXPERIMENT',
      'RUN',
      'VERDICT',
      'STARTED',
      'ENDED',
      'STARTED_BY',
      'ENDED_BY',
      'CANARY',
      'CONTROL',
      'REASON',
    ],
    rows,
  );
}

function statusTable(body: { experiments: ExperimentView[] }): string {
  const rows = body.experiments.map((e) => {
    const c = e.arms.canary;
    const k = e.arms.control;
    const rate = (n: number, d: number) => (d > 0 ? `${((100 * n) / d).toFixed(1)}%` : '-');
    return [
      e.id,
      e.state,
      `${c.requests} (err ${rate(c.error + c.timeout + c.reset, c.requests)})`,
      `${k.requests} (err ${rate(k.error + k.timeout + k.reset, k.requests)})`,
      e.state === 'scheduled'
        ? e.next_start_at
          ? `next run ${e.next_start_at}`
          : 'schedule paused'
        : (e.ended?.reason ?? ''),
    ];
  });
  return textTable(['EXPERIMENT', 'STATE', 'CANARY', 'CONTROL', 'REASON'], rows);
}
