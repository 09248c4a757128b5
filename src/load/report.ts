import { summarizeArm } from './arms.js';
import type { ArmSummary } from './arms.js';
import { ArmStats } from './arms.js';
import type { LoadGenerator } from './generator.js';
import type { LoadOptions } from './args.js';
import { armDelta } from './admin.js';
import type { ExperimentSnapshot } from './admin.js';

export interface ExperimentReport {
  id: string;
  stateBefore: string | null;
  stateAfter: string | null;
  killed: boolean;
  /** Seconds into the run when the admin first showed state "killed". */
  killedAfterS: number | null;
  /** Change over the run of the admin's per-arm counters (quantiles: last value seen). */
  canary: Record<string, number>;
  control: Record<string, number>;
  /** Our completed requests the admin did not count in canary or control; null without `requests`. */
  untouched: number | null;
}

export interface AdminReport {
  url: string;
  error: string | null;
  experiments: ExperimentReport[];
}

export interface LoadReport {
  target: string;
  method: string;
  ratePerS: number;
  durationS: number;
  concurrency: number;
  scheduled: number;
  sent: number;
  completed: number;
  dropped: number;
  errors: number;
  errorRate: number;
  elapsedS: number;
  /** sent / (time from first due send to last send + one interval) */
  achievedRatePerS: number;
  rateErrorPct: number;
  latencyMs: ArmSummary['latencyMs'];
  arms: { canary: ArmSummary; other: ArmSummary };
  injectedBy: Record<string, number>;
  admin: AdminReport | null;
  killed: boolean;
}

export interface AdminTrack {
  url: string;
  error: string | null;
  before: ExperimentSnapshot[] | null;
  after: ExperimentSnapshot[] | null;
  killedAfterS: Map<string, number>;
}

function experimentReports(
  track: AdminTrack,
  only: string | undefined,
  completed: number,
): ExperimentReport[] {
  const ids = new Set<string>();
  for (const e of [...(track.before ?? []), ...(track.after ?? [])]) ids.add(e.id);
  const out: ExperimentReport[] = [];
  for (const id of ids) {
    if (only !== undefined && id !== only) continue;
    const b = track.before?.find((e) => e.id === id);
    const a = track.after?.find((e) => e.id === id);
    const canary = armDelta(b?.arms['canary'], a?.arms['canary']);
    const control = armDelta(b?.arms['control'], a?.arms['control']);
    const counted =
      canary['requests'] !== undefined && control['requests'] !== undefined
        ? canary['requests'] + control['requests']
        : undefined;
    const killedAt = track.killedAfterS.get(id);
    out.push({
      id,
      stateBefore: b?.state ?? null,
      stateAfter: a?.state ?? null,
      killed: killedAt !== undefined,
      killedAfterS: killedAt ?? null,
      canary,
      control,
      untouched: counted === undefined ? null : completed - counted,
    });
  }
  return out;
}

export function buildReport(opts: LoadOptions, gen: LoadGenerator, track: AdminTrack | null): LoadReport {
  const all = new ArmStats();
  all.merge(gen.canary);
  all.merge(gen.other);
  const total = summarizeArm(all);
  const windowMs = gen.sent > 0 ? gen.lastSendAt - gen.startedAt + 1000 / opts.ratePerS : 0;
  const achieved = windowMs > 0 ? (gen.sent * 1000) / windowMs : 0;
  const experiments = track ? experimentReports(track, opts.experiment, gen.completed) : [];
  return {
    target: opts.target.href,
    method: opts.method,
    ratePerS: opts.ratePerS,
    durationS: opts.durationMs / 1000,
    concurrency: opts.concurrency,
    scheduled: gen.scheduled,
    sent: gen.sent,
    completed: gen.completed,
    dropped: gen.dropped,
    errors: total.errors,
    errorRate: total.errorRate,
    elapsedS: ((gen.endedAt || gen.startedAt) - gen.startedAt) / 1000,
    achievedRatePerS: Math.round(achieved * 10) / 10,
    rateErrorPct: Math.round(((achieved - opts.ratePerS) / opts.ratePerS) * 10_000) / 100,
    latencyMs: total.latencyMs,
    arms: { canary: summarizeArm(gen.canary), other: summarizeArm(gen.other) },
    injectedBy: Object.fromEntries(gen.injectedBy),
    admin: track ? { url: track.url, error: track.error, experiments } : null,
    killed: experiments.some((e) => e.killed),
  };
}

const pct = (x: number): string => `${(x * 100).toFixed(2)}%`;
const num = (x: number): string => (Number.isFinite(x) ? String(x) : '-');
const pad = (s: string, n: number): string => s.padEnd(n);
const padl = (s: string, n: number): string => s.padStart(n);

export function formatReport(r: LoadReport): string {
  const lines: string[] = [];
  lines.push(
    `target ${r.method} ${r.target}  rate ${r.ratePerS}/s for ${r.durationS}s  concurrency ${r.concurrency}`,
  );
  lines.push(
    `sent ${r.sent}/${r.scheduled} at ${r.achievedRatePerS}/s (${r.rateErrorPct >= 0 ? '+' : ''}${r.rateErrorPct}%)` +
      `  completed ${r.completed}  errors ${r.errors} (${pct(r.errorRate)})  dropped ${r.dropped}  elapsed ${r.elapsedS.toFixed(2)}s`,
  );
  const l = r.latencyMs;
  lines.push(
    `latency from scheduled send (ms): p50 ${num(l.p50)}  p90 ${num(l.p90)}  p99 ${num(l.p99)}  p99.9 ${num(l.p999)}  max ${num(l.max)}`,
  );
  lines.push('');
  lines.push(
    `${pad('arm (x-faultline-injected)', 28)}${padl('count', 9)}${padl('share', 9)}${padl('errors', 9)}${padl('err%', 9)}${padl('p50 ms', 10)}${padl('p99 ms', 10)}`,
  );
  for (const [name, a] of [
    ['canary (injected)', r.arms.canary],
    ['other', r.arms.other],
  ] as const) {
    const share = r.completed === 0 ? 0 : a.count / r.completed;
    lines.push(
      `${pad(name, 28)}${padl(String(a.count), 9)}${padl(pct(share), 9)}${padl(String(a.errors), 9)}${padl(pct(a.errorRate), 9)}${padl(num(a.latencyMs.p50), 10)}${padl(num(a.latencyMs.p99), 10)}`,
    );
  }
  const marks = Object.entries(r.injectedBy);
  if (marks.length > 0)
    lines.push(`injected marks by experiment: ${marks.map(([k, v]) => `${k}=${v}`).join(' ')}`);
  if (r.admin) {
    lines.push('');
    if (r.admin.error) lines.push(`admin ${r.admin.url}: ${r.admin.error}`);
    if (r.admin.experiments.length === 0) lines.push(`admin ${r.admin.url}: no matching experiment listed`);
    for (const e of r.admin.experiments) {
      const killed = e.killed ? `  KILLED after ${e.killedAfterS?.toFixed(1)}s` : '';
      lines.push(`experiment ${e.id}: state ${e.stateBefore ?? '-'} -> ${e.stateAfter ?? '-'}${killed}`);
      const keys = [...new Set([...Object.keys(e.canary), ...Object.keys(e.control)])];
      lines.push(`  ${pad('group', 11)}${keys.map((k) => padl(k, Math.max(10, k.length + 2))).join('')}`);
      for (const [g, rec] of [
        ['canary', e.canary],
        ['control', e.control],
      ] as const) {
        lines.push(
          `  ${pad(g, 11)}${keys.map((k) => padl(num(rec[k] ?? Number.NaN), Math.max(10, k.length + 2))).join('')}`,
        );
      }
      lines.push(`  ${pad('untouched', 11)}${padl(e.untouched === null ? '-' : String(e.untouched), 10)}`);
    }
  }
  return lines.join('\n');
}
