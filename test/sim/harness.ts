// Shared Monte-Carlo harness for the kill-switch simulations (statistics.md §9.3). Every run drives
// the real ExperimentAnalyzer one request at a time. CI mode is short; SIM_LONG=1 is the report mode.
import { mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExperimentAnalyzer, type AnalyzerConfig, type Breach } from '../../src/stats/analyzer.js';

export const LONG = process.env.SIM_LONG === '1';
export const MODE = LONG ? 'long' : 'ci';

/** Per-test timeout: long mode runs minutes, CI mode seconds. */
export const TIMEOUT = LONG ? 1_800_000 : 60_000;

/**
 * §9.3 pass rule: k trips in n runs are acceptable if k <= a·n + 3·sqrt(a(1−a)n) (a = the α under test).
 * Also used for quantile goals: "q-quantile <= goal" is checked as
 * #(runs above goal or untripped) <= (1−q)·n + 3·sqrt(q(1−q)n).
 */
export function binomialBound(p: number, n: number): number {
  return p * n + 3 * Math.sqrt(p * (1 - p) * n);
}

export type Outcome = {
  arm: 'canary' | 'control';
  bad: boolean;
  timedOut: boolean;
  latencyMs: number;
  key?: number;
};

export interface RunResult {
  /** canary requests when the analyzer tripped; -1 if it never did within the horizon */
  canaryAtTrip: number;
  breach: Breach | null;
}

/**
 * Feed requests from `next(t, out)` (t = request index over both arms; fills `out`) until the
 * canary count reaches `horizonCanary` or the analyzer trips.
 */
export function runStream(
  cfg: AnalyzerConfig,
  horizonCanary: number,
  next: (t: number, out: Outcome) => void,
): RunResult {
  const a = new ExperimentAnalyzer(cfg);
  const o: Outcome = { arm: 'control', bad: false, timedOut: false, latencyMs: 0 };
  let canary = 0;
  for (let t = 0; canary < horizonCanary; t++) {
    next(t, o);
    if (o.arm === 'canary') canary++;
    const b =
      o.key === undefined
        ? a.record(o.arm, o.bad, o.timedOut, o.latencyMs)
        : a.record(o.arm, o.bad, o.timedOut, o.latencyMs, o.key);
    if (b !== null) return { canaryAtTrip: canary, breach: b };
  }
  return { canaryAtTrip: -1, breach: null };
}

export interface Summary {
  runs: number;
  tripped: number;
  tripFrac: number;
  median?: number;
  p90?: number;
  p95?: number;
  p99?: number;
}

/** Empirical quantiles of canary-requests-to-trip; untripped runs count as +Infinity. */
export function summarize(trips: readonly number[]): Summary {
  const xs = trips.map((x) => (x < 0 ? Infinity : x)).sort((a, b) => a - b);
  const tripped = xs.filter((x) => x < Infinity).length;
  const s: Summary = { runs: xs.length, tripped, tripFrac: tripped / xs.length };
  if (tripped / xs.length > 0.5) {
    // numpy-style linear interpolation is overkill here; nearest-rank is what a reader expects
    const q = (p: number): number => xs[Math.min(xs.length - 1, Math.ceil(p * xs.length) - 1)] ?? Infinity;
    s.median = q(0.5);
    s.p90 = q(0.9);
    s.p95 = q(0.95);
    s.p99 = q(0.99);
  }
  return s;
}

/** Runs that exceed `goal` (untripped runs included). */
export function countAbove(trips: readonly number[], goal: number): number {
  return trips.filter((x) => x < 0 || x > goal).length;
}

// ---- results files -------------------------------------------------------------------------------

// Long mode writes the committed results (results/SIMULATION.md, sim-long.json, parts/long-*.json);
// CI mode writes only under results/ci/ (untracked: git-ignored), so a CI run never dirties them.
const RESULTS_ROOT = join(dirname(fileURLToPath(import.meta.url)), 'results');
const RESULTS = LONG ? RESULTS_ROOT : join(RESULTS_ROOT, 'ci');
const PARTS = join(RESULTS, 'parts');
const MARKDOWN = join(RESULTS, LONG ? 'SIMULATION.md' : 'SIMULATION-ci.md');

export interface ResultRow {
  scenario: string;
  seed: number;
  runs: number;
  horizonCanary: number;
  kind: 'false_trips' | 'detection';
  /** false-trip rate, or trip fraction for detection */
  rate: number;
  /** nominal alpha (false trips) */
  alpha?: number;
  /** allowed trips by the §9.3 rule */
  bound?: number;
  summary?: Summary;
  meanExcessBad?: number;
  goal?: string;
  reference?: string;
  pass: boolean;
}

function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/** Store one sim file's rows, then rebuild sim-<mode>.json and SIMULATION.md from all parts. */
export function publish(part: string, rows: readonly ResultRow[], seconds: number): void {
  mkdirSync(PARTS, { recursive: true });
  writeAtomic(
    join(PARTS, `${MODE}-${part}.json`),
    JSON.stringify({ part, mode: MODE, seconds, rows }, null, 1),
  );
  const parts = readdirSync(PARTS)
    .filter((f) => f.startsWith(`${MODE}-`) && f.endsWith('.json'))
    .sort()
    .map(
      (f) =>
        JSON.parse(readFileSync(join(PARTS, f), 'utf8')) as {
          part: string;
          seconds: number;
          rows: ResultRow[];
        },
    );
  writeAtomic(join(RESULTS, `sim-${MODE}.json`), JSON.stringify({ mode: MODE, parts }, null, 1));
  rebuildMarkdown();
}

function fmt(x: number | undefined): string {
  if (x === undefined) return '-';
  return Number.isFinite(x) ? String(x) : '∞';
}

function table(mode: string): string[] {
  let data: { parts: { part: string; seconds: number; rows: ResultRow[] }[] };
  try {
    data = JSON.parse(readFileSync(join(RESULTS, `sim-${mode}.json`), 'utf8')) as typeof data;
  } catch {
    return [`_no ${mode} results yet_`, ''];
  }
  const out: string[] = [];
  out.push(
    '| file | scenario (seed) | runs × canary horizon | false-trip rate / trip fraction | bound or goal | median / p90 / p95 / p99 | mean excess bad | reference (Python) | pass |',
  );
  out.push('|---|---|---|---|---|---|---|---|---|');
  for (const p of data.parts) {
    for (const r of p.rows) {
      const rate =
        r.kind === 'false_trips'
          ? `${(r.rate * 100).toFixed(2)} % (nominal ${((r.alpha ?? 0) * 100).toFixed(2)} %)`
          : `${(r.rate * 100).toFixed(1)} % tripped`;
      const bound = r.goal ?? (r.kind === 'false_trips' ? `≤ ${Math.floor(r.bound ?? 0)} trips` : '');
      const s = r.summary;
      const q = s === undefined ? '-' : `${fmt(s.median)} / ${fmt(s.p90)} / ${fmt(s.p95)} / ${fmt(s.p99)}`;
      out.push(
        `| ${p.part} | ${r.scenario} (${r.seed}) | ${r.runs} × ${r.horizonCanary} | ${rate} | ${bound} | ${q} | ${r.meanExcessBad === undefined ? '-' : r.meanExcessBad.toFixed(1)} | ${r.reference ?? ''} | ${r.pass ? 'yes' : '**no**'} |`,
      );
    }
  }
  const secs = data.parts.map((p) => `${p.part} ${p.seconds.toFixed(1)} s`).join(', ');
  out.push('', `Wall time per file: ${secs}.`, '');
  return out;
}

function rebuildMarkdown(): void {
  const lines = [
    '# Kill-switch simulations (TypeScript, real `ExperimentAnalyzer`)',
    '',
    'Generated by `SIM_LONG=1 npx vitest run test/sim` (long mode, `npm run sim:report`: this file, committed)',
    'and `npx vitest run test/sim` (CI mode: `test/sim/results/ci/SIMULATION-ci.md`, not committed);',
    'do not edit by hand. Counts are canary requests (per arm, ρ = ½). False-trip pass rule (statistics.md',
    '§9.3): trips ≤ α·n + 3·sqrt(α(1−α)·n). Quantile goals are checked the same way: "q-quantile ≤ goal"',
    'passes if #(runs above goal or untripped) ≤ (1−q)·n + 3·sqrt(q(1−q)·n). Per-family α = 0.005 as in the',
    'Python reference (research/sim); ∞ = not tripped within the horizon. Latency uses the Beta(2, 2) prior',
    'and the max(20, 5/(1−p)) warm-up (src/stats/exceedance.ts); the reference column is the Python',
    'reference design (Beta(1, 1), max(100, 10/(1−p))).',
    '',
    `## ${LONG ? 'Long' : 'CI'} mode`,
    '',
    ...table(MODE),
  ];
  writeAtomic(MARKDOWN, lines.join('\n'));
}
