/** `faultline status|kill|arm|report`: thin clients of a running instance's admin API. */
import { request } from 'undici';
import { reportMarkdown, type ExperimentReport, type ExperimentView } from '../experiments/report.js';

function opt(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function positional(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a.startsWith('--')) {
      if (a !== '--json') i++;
      continue;
    }
    return a;
  }
  return undefined;
}

export async function adminCall(
  base: string,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const token = process.env['FAULTLINE_ADMIN_TOKEN'];
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers['authorization'] = `Bearer ${token}`;
  const res = await request(new URL(path, base), {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.body.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text) as unknown;
  } catch {
    // plain text answer
  }
  return { status: res.statusCode, json };
}

export async function adminCommand(
  cmd: 'status' | 'kill' | 'arm' | 'report',
  args: string[],
): Promise<number> {
  const base = opt(args, '--admin') ?? process.env['FAULTLINE_ADMIN_URL'] ?? 'http://127.0.0.1:9901';
  const id = positional(args);
  const json = args.includes('--json');
  try {
    let r: { status: number; json: unknown };
    switch (cmd) {
      case 'status':
        r = await adminCall(base, 'GET', id ? `/experiments/${encodeURIComponent(id)}` : '/experiments');
        break;
      case 'kill': {
        const reason = opt(args, '--reason') ?? 'killed from the CLI';
        const by = `cli:${process.env['USER'] ?? 'operator'}`;
        r = await adminCall(base, 'POST', id ? `/experiments/${encodeURIComponent(id)}/kill` : '/kill', {
          reason,
          by,
        });
        break;
      }
      case 'arm':
        if (!id) return usage('faultline arm ID');
        r = await adminCall(base, 'POST', `/experiments/${encodeURIComponent(id)}/arm`, {
          by: `cli:${process.env['USER'] ?? 'operator'}`,
        });
        break;
      case 'report':
        if (!id) return usage('faultline report ID [--json]');
        r = await adminCall(base, 'GET', `/experiments/${encodeURIComponent(id)}/report`);
        if (r.status === 200 && !json) {
          process.stdout.write(reportMarkdown(r.json as ExperimentReport));
          return 0;
        }
        break;
    }
    if (r.status >= 400) {
      const e = (r.json as { error?: { message?: string } }).error;
      process.stderr.write(`faultline ${cmd}: ${r.status} ${e?.message ?? JSON.stringify(r.json)}\n`);
      return 1;
    }
    if (cmd === 'status' && !id && !json)
      process.stdout.write(statusTable(r.json as { experiments: ExperimentView[] }));
    else process.stdout.write(JSON.stringify(r.json, null, 2) + '\n');
    return 0;
  } catch (err) {
    process.stderr.write(`faultline ${cmd}: cannot reach admin API at ${base}: ${(err as Error).message}\n`);
    return 3;
  }
}

function usage(text: string): number {
  process.stderr.write(`usage: ${text}\n`);
  return 3;
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
      e.ended?.reason ?? '',
    ];
  });
  const head = ['EXPERIMENT', 'STATE', 'CANARY', 'CONTROL', 'REASON'];
  const all = [head, ...rows];
  const widths = head.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return (
    all
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i] ?? 0))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}
