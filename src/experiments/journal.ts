/**
 * The run journal: one JSON line per finished run (experiment, revision, start and end, who, verdict,
 * guardrail evidence, arm counts), appended to `state_dir/runs.jsonl` and fsynced before the append
 * resolves. Append-only between compactions; a line torn by a crash mid-write is cut off at the next
 * start (logged, never fatal) so the next append starts on a clean line. Retention keeps the newest
 * `keep_runs` runs of each experiment: once one has a quarter more, the file is rewritten (temp file,
 * fsync, rename: a crash leaves the old file or the new one).
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import type { GuardrailState } from '../stats/analyzer.js';
import { log } from '../telemetry/log.js';
import { experimentReport, type Verdict } from './report.js';
import type { ArmCounts, ExperimentRuntime } from './runtime.js';
import type { ExperimentTable, Lifecycle } from './table.js';

export const JOURNAL_FILE = 'runs.jsonl';

export interface RunRecord {
  /** Format version of the line. */
  v: 1;
  experiment: string;
  /** 1, 2, ... per experiment (kept across compactions: numbering continues from the newest kept). */
  run: number;
  /** sha256 (12 hex) of the whole config in force when the run ended. */
  config_revision: string;
  /** sha256 (12 hex) of the experiment's own spec: equal revisions ran the same fault and guardrails. */
  spec_revision: string;
  hypothesis: string;
  fault: unknown;
  split_percent: number;
  started_at: string | null;
  ended_at: string;
  started_by: string;
  ended_by: string;
  /** killed | expired | disabled (replaced or removed by a reload while running) */
  state: string;
  cause: string | null;
  reason: string;
  verdict: Verdict;
  verdict_reason: string;
  /** control_unhealthy, insufficient_data, or null (older records lack it). */
  verdict_cause?: string | null;
  guardrails: GuardrailState[];
  evidence: unknown;
  arms: { canary: ArmCounts; control: ArmCounts };
  assigned: { canary: number; control: number };
  /** Processes whose counts the record holds (1 until the fleet store merges replicas). */
  replicas: number;
}

/** Where run records live; the file journal is the default. */
export interface RunJournal {
  /** Reads what is there (cutting a torn tail); throws only when the directory cannot be used at all. */
  prepare(): Promise<void>;
  /** Every kept record, oldest first (optionally of one experiment). */
  runs(experiment?: string): RunRecord[];
  /** The next run number of `experiment`. */
  nextRun(experiment: string): number;
  /** Durable once resolved; the record is visible to runs() at once. */
  append(record: RunRecord): Promise<void>;
  flush(): Promise<void>;
}

export class FileRunJournal implements RunJournal {
  readonly file: string;
  private readonly dir: string;
  private readonly keepRuns: number;
  private records: RunRecord[] = [];
  private chain: Promise<void> = Promise.resolve();

  constructor(dir: string, keepRuns: number) {
    this.dir = dir;
    this.file = join(dir, JOURNAL_FILE);
    this.keepRuns = keepRuns;
  }

  async prepare(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const end = text.lastIndexOf('\n') + 1;
    if (end < text.length) {
      // A crash mid-append left a partial last line: drop it, or the next line would be glued to it.
      log('warn', 'run journal: skipped a torn last line (a crash during a write)', {
        file: this.file,
        bytes: text.length - end,
      });
      await truncate(this.file, Buffer.byteLength(text.slice(0, end)));
    }
    const out: RunRecord[] = [];
    let skipped = 0;
    for (const line of text.slice(0, end).split('\n')) {
      if (line.trim() === '') continue;
      try {
        const r = JSON.parse(line) as RunRecord;
        if (r.v === 1 && typeof r.experiment === 'string' && typeof r.run === 'number') out.push(r);
        else skipped++;
      } catch {
        skipped++;
      }
    }
    if (skipped > 0) log('warn', 'run journal: skipped unreadable lines', { file: this.file, skipped });
    this.records = out;
  }

  runs(experiment?: string): RunRecord[] {
    return experiment === undefined
      ? [...this.records]
      : this.records.filter((r) => r.experiment === experiment);
  }

  nextRun(experiment: string): number {
    let max = 0;
    for (const r of this.records) if (r.experiment === experiment && r.run > max) max = r.run;
    return max + 1;
  }

  append(record: RunRecord): Promise<void> {
    this.records.push(record);
    const line = JSON.stringify(record) + '\n';
    const next = this.chain.then(async () => {
      const fh = await open(this.file, 'a', 0o600);
      try {
        await fh.write(line);
        await fh.sync();
      } finally {
        await fh.close();
      }
      if (this.overRetention(record.experiment)) await this.compact();
    });
    this.chain = next.catch((err: unknown) => {
      log('error', 'run journal write failed', { file: this.file, error: (err as Error).message });
    });
    return next;
  }

  private overRetention(experiment: string): boolean {
    let n = 0;
    for (const r of this.records) if (r.experiment === experiment) n++;
    // Hysteresis: rewrite once per keepRuns/4 appends, not on every append past the limit.
    return n > this.keepRuns + Math.max(1, Math.floor(this.keepRuns / 4));
  }

  /** Keeps the newest keepRuns runs of every experiment; atomic replace. */
  private async compact(): Promise<void> {
    const seen = new Map<string, number>();
    const kept: RunRecord[] = [];
    for (let i = this.records.length - 1; i >= 0; i--) {
      const r = this.records[i] as RunRecord;
      const n = seen.get(r.experiment) ?? 0;
      if (n >= this.keepRuns) continue;
      seen.set(r.experiment, n + 1);
      kept.push(r);
    }
    kept.reverse();
    const tmp = `${this.file}.${process.pid}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(kept.map((r) => JSON.stringify(r) + '\n').join(''));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.file);
    const dh = await open(this.dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
    this.records = kept;
  }

  async flush(): Promise<void> {
    await this.chain;
  }
}

export function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 12);
}

/** The record of a run that just ended (the table's `run_ended` event). */
export function runRecord(
  rt: ExperimentRuntime,
  life: Lifecycle,
  run: number,
  configRevision: string,
): RunRecord {
  const r = experimentReport(rt, life);
  // Replaced or removed by a reload while it ran: nobody judged it to the end.
  const replaced = rt.state === 'disabled';
  return {
    v: 1,
    experiment: rt.id,
    run,
    config_revision: configRevision,
    spec_revision: shortHash(rt.specKey),
    hypothesis: rt.spec.hypothesis,
    fault: rt.spec.fault,
    split_percent: rt.splitPercent,
    started_at: life.startedAt,
    ended_at: life.endedAt ?? new Date().toISOString(),
    started_by: life.startedBy ?? 'config',
    ended_by: life.by ?? 'config',
    state: rt.state,
    cause: life.cause,
    reason: life.reason ?? '',
    verdict: replaced ? 'aborted' : r.verdict,
    verdict_reason: replaced ? `ended by a config reload: ${life.reason ?? ''}` : r.verdict_reason,
    verdict_cause: replaced ? null : r.verdict_cause,
    guardrails: r.guardrails,
    evidence: r.evidence,
    arms: r.arms,
    assigned: r.assigned,
    replicas: 1,
  };
}

/** Records every run the table ends (one listener on its `run_ended` hook). */
export function recordRuns(table: ExperimentTable, journal: RunJournal, configRevision: () => string): void {
  table.on('run_ended', (rt, life) => {
    const rec = runRecord(rt, life, journal.nextRun(rt.id), configRevision());
    journal.append(rec).catch(() => undefined);
  });
}

/** How a run compares with the previous runs of its experiment (the report's "history" section). */
export interface RunComparison {
  previous: { run: number; verdict: Verdict; ended_at: string; spec_revision: string }[];
  /** e.g. "held on the last 4 runs; refuted now: error rate +3.1 pp at the same fault" */
  summary: string;
  /** The verdict changed from the previous run's. */
  changed: boolean;
  /** Held (or inconclusive) before, refuted now. */
  regression: boolean;
}

const PASSING: ReadonlySet<Verdict> = new Set(['held']);

/**
 * Compares `current` (a run record, or the live report of a running one) with `previous` (older
 * runs of the same experiment, oldest first). The effect compared is the canary-minus-control rate of
 * the first guardrail that differs most, in percentage points.
 */
export function compareRuns(
  current: { verdict: Verdict; guardrails: GuardrailState[]; spec_revision: string },
  previous: readonly RunRecord[],
  shown = 10,
): RunComparison {
  const prev = previous.filter((r) => r.verdict !== 'aborted');
  const list = previous
    .slice(-shown)
    .map((r) => ({ run: r.run, verdict: r.verdict, ended_at: r.ended_at, spec_revision: r.spec_revision }));
  const last = prev[prev.length - 1];
  if (last === undefined)
    return {
      previous: list,
      summary: 'first judged run of this experiment',
      changed: false,
      regression: false,
    };
  let streak = 0;
  for (let i = prev.length - 1; i >= 0 && prev[i]!.verdict === last.verdict; i--) streak++;
  const before = `${last.verdict} on the last ${streak === 1 ? 'run' : `${streak} runs`}`;
  const now = current.verdict === 'running' ? 'running now' : `${current.verdict} now`;
  const changed = current.verdict !== 'running' && current.verdict !== last.verdict;
  const regression = current.verdict === 'refuted' && PASSING.has(last.verdict);
  const delta = effectChange(current.guardrails, last.guardrails);
  const same = current.spec_revision === last.spec_revision ? 'at the same fault' : 'with a changed spec';
  const summary = changed
    ? `${before}; ${now}${delta ? `: ${delta}` : ''} ${same}${regression ? ' (REGRESSION)' : ''}`
    : `${before}; ${now}`;
  return { previous: list, summary, changed, regression };
}

function effect(g: GuardrailState): number {
  return g.canary.rate - g.control.rate;
}

function effectChange(now: GuardrailState[], then: GuardrailState[]): string | null {
  let best: { text: string; size: number } | null = null;
  for (const g of now) {
    const old = then.find((t) => t.metric === g.metric && t.quantile === g.quantile);
    if (!old) continue;
    const d = (effect(g) - effect(old)) * 100;
    if (!Number.isFinite(d)) continue;
    const name =
      g.metric === 'latency'
        ? `slow share (p${Number(((g.quantile ?? 0) * 100).toPrecision(4))})`
        : g.metric.replace('_', ' ');
    if (best === null || Math.abs(d) > best.size)
      best = { text: `${name} ${d >= 0 ? '+' : ''}${d.toFixed(1)} pp`, size: Math.abs(d) };
  }
  return best?.text ?? null;
}
