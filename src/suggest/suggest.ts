/**
 * Suggested experiments (`faultline suggest`, GET /suggestions): from what this Faultline has seen on its
 * listeners (per-route volume, error rate and latency quantiles from the counters the listeners already
 * keep, src/probes/traffic.ts), the configured routes (egress dependencies, timeouts) and the run journal,
 * a ranked catalogue of experiments. The ranking is a sum of points, each with its reason, so an operator
 * can see why one comes first (docs/suggest.md documents every rule and its weight). Every suggestion
 * starts small (1% of requests) with guardrails, and its YAML block is validated before it is offered.
 */
import { readFile } from 'node:fs/promises';
import { parse, stringify } from 'yaml';
import type { ConfigSpec, ExperimentSpec } from '../config/schema.js';
import { validateConfig } from '../config/load.js';
import type { RunRecord } from '../experiments/journal.js';
import { quantileMs, type RouteTotals } from '../probes/traffic.js';

/** The schema's route timeout default: a route that keeps it has no timeout of its own. */
export const DEFAULT_ROUTE_TIMEOUT_MS = 15_000;

/** Weights of the scoring model (docs/suggest.md); changing one changes the docs. */
export const WEIGHTS = {
  volume: 30,
  dependency: 15,
  neverTested: 25,
  noTimeout: 20,
  timeoutGap: 10,
  refuted: 15,
  inconclusive: 5,
  heldRecently: -15,
  failing: 10,
  littleTraffic: -30,
  latencyBase: 10,
  errorBase: 5,
} as const;

export interface Reason {
  points: number;
  text: string;
}

export interface RouteObservation {
  listener: string;
  route: string;
  /** The route is behind a listener that trusts assignments: an egress hop to a dependency. */
  dependency: boolean;
  requests: number;
  per_second: number;
  error_rate: number;
  p50_ms: number;
  p99_ms: number;
  timeout_ms: number;
  /** timeout_ms was set in the config (false: the 15 s default applies). */
  timeout_set: boolean;
}

export interface Suggestion {
  rank: number;
  id: string;
  score: number;
  reasons: Reason[];
  hypothesis: string;
  target: { listener: string; route: string };
  fault: Record<string, unknown>;
  blast_radius_percent: number;
  guardrails: Record<string, unknown>[];
  /** Ready to paste under `experiments:` (validated). */
  yaml: string;
}

export interface SuggestionsDocument {
  generated_at: string;
  observed_since: string;
  observed_seconds: number;
  routes: RouteObservation[];
  suggestions: Suggestion[];
  /** What the model does not see (so nobody reads more into the ranking than is there). */
  notes: string[];
}

export interface SuggestInput {
  config: ConfigSpec;
  /** Route names whose timeout_ms the config file sets (null: unknown; the default value counts as unset). */
  timeoutsSet: ReadonlySet<string> | null;
  totals: readonly RouteTotals[];
  runs: readonly RunRecord[];
  sinceMs: number;
  nowMs: number;
}

const DAY_MS = 86_400_000;

export function suggest(input: SuggestInput): SuggestionsDocument {
  const { config, totals, nowMs } = input;
  const seconds = Math.max(1, (nowMs - input.sinceMs) / 1000);
  const routes: RouteObservation[] = [];
  for (const l of config.listeners)
    for (const r of l.routes) {
      const t = totals.find((x) => x.listener === l.name && x.route === r.name);
      if (t === undefined || t.requests === 0) continue;
      routes.push({
        listener: l.name,
        route: r.name,
        dependency: l.trust_assignment,
        requests: t.requests,
        per_second: round(t.requests / seconds, 2),
        error_rate: round(t.errors / t.requests, 4),
        p50_ms: round(quantileMs(t.buckets, 0.5), 2),
        p99_ms: round(quantileMs(t.buckets, 0.99), 2),
        timeout_ms: r.timeout_ms,
        timeout_set:
          input.timeoutsSet !== null
            ? input.timeoutsSet.has(`${l.name}/${r.name}`)
            : r.timeout_ms !== DEFAULT_ROUTE_TIMEOUT_MS,
      });
    }
  const busiest = Math.max(1, ...routes.map((r) => r.requests));
  const total = routes.reduce((n, r) => n + r.requests, 0);
  const out: Omit<Suggestion, 'rank'>[] = [];
  const taken = new Set(config.experiments.map((e) => e.id));
  for (const r of routes) {
    const tested = history(config.experiments, input.runs, r);
    for (const kind of ['latency', 'abort'] as const) {
      const reasons: Reason[] = [];
      const add = (points: number, text: string) => reasons.push({ points: Math.round(points), text });
      add(
        kind === 'latency' ? WEIGHTS.latencyBase : WEIGHTS.errorBase,
        kind === 'latency'
          ? 'slowness is the failure callers handle worst (no error to react to)'
          : 'a failing dependency is the failure every caller must handle',
      );
      const share = r.requests / busiest;
      const volumeText = `${r.requests} requests (${r.per_second}/s, ${pct(r.requests / total)} of observed traffic)`;
      add(WEIGHTS.volume * share, share >= 0.5 ? `high volume: ${volumeText}` : `volume: ${volumeText}`);
      if (r.dependency) add(WEIGHTS.dependency, `dependency behind egress listener ${r.listener}`);
      const fault = kind === 'latency' ? 'latency' : 'abort';
      const last = tested.runs.filter((x) => faultKind(x.fault) === fault).at(-1);
      if (!tested.configured && tested.runs.length === 0)
        add(WEIGHTS.neverTested, 'never tested (no experiment in the config, no run in the journal)');
      else if (last !== undefined) {
        const ago = ageText(nowMs - Date.parse(last.ended_at));
        if (last.verdict === 'refuted') add(WEIGHTS.refuted, `refuted ${ago} ago, fixed since?`);
        else if (last.verdict === 'held')
          add(
            WEIGHTS.heldRecently * Math.max(0, 1 - (nowMs - Date.parse(last.ended_at)) / (30 * DAY_MS)),
            `held ${ago} ago (less to learn until it changes)`,
          );
        else if (last.verdict === 'inconclusive')
          add(WEIGHTS.inconclusive, `inconclusive ${ago} ago (too little data): run it longer`);
      } else if (tested.configured) add(0, 'configured as an experiment already, no finished run yet');
      if (kind === 'latency') {
        if (!r.timeout_set)
          add(
            WEIGHTS.noTimeout,
            `no route timeout set: the ${DEFAULT_ROUTE_TIMEOUT_MS / 1000} s default applies`,
          );
        if (r.p99_ms > 0 && r.timeout_ms >= 10 * r.p99_ms)
          add(
            WEIGHTS.timeoutGap,
            `route timeout ${secs(r.timeout_ms)} is longer than the caller's p99 (${r.p99_ms} ms) x 10`,
          );
      } else if (r.error_rate > 0.01)
        add(
          WEIGHTS.failing,
          `already failing ${pct(r.error_rate)} of requests: is the caller's fallback tested?`,
        );
      const perHourAt1 = (r.per_second * 3600) / 100;
      if (perHourAt1 < 200)
        add(
          WEIGHTS.littleTraffic,
          `little traffic: at 1% about ${Math.round(perHourAt1)} canary requests an hour (a guardrail needs 100 per arm)`,
        );
      // Felt by the caller, yet short of the route's timeout and of a stuck request (at most 2 s).
      const delayMs = Math.min(Math.max(100, roundNice(r.p99_ms * 5)), 2000, Math.floor(r.timeout_ms / 2));
      const target = r.dependency ? `its dependency ${r.route}` : `route ${r.route}`;
      const hypothesis =
        kind === 'latency'
          ? `callers of ${r.listener}/${r.route} absorb ${delayMs} ms more on ${target} (about 5x its p99 of ${r.p99_ms} ms) without more errors`
          : `callers degrade gracefully when ${target} fails (503 on 1% of requests): no error spreads beyond the failed calls`;
      const faultSpec: Record<string, unknown> =
        kind === 'latency' ? { kind: 'latency', ms: delayMs } : { kind: 'abort', status: 503 };
      const guardrails: Record<string, unknown>[] = [
        { metric: 'error_rate', max_increase: 0.01 },
        { metric: 'latency', quantile: 0.99, max_ratio: 1.5 },
      ];
      let id = slug(`${r.route}-${kind}`);
      for (let i = 2; taken.has(id); i++) id = slug(`${r.route}-${kind}-${i}`);
      taken.add(id);
      const exp = {
        id,
        hypothesis,
        match: { listener: r.listener, route: r.route },
        split: { percent: 1 },
        fault: faultSpec,
        duration: '30m',
        guardrails,
        // Abort faults are the thing under test: judge what they cause, not the injected errors.
        min_samples: 100,
      };
      const yaml = stringify([exp]);
      validateConfig(
        {
          listeners: [
            { name: r.listener, port: 0, routes: [{ name: r.route, upstream: 'http://127.0.0.1:1' }] },
          ],
          experiments: [exp],
        },
        `suggestion ${id}`,
      );
      out.push({
        id,
        score: reasons.reduce((n, x) => n + x.points, 0),
        reasons: reasons.filter((x) => x.points !== 0 || x.text.startsWith('configured')),
        hypothesis,
        target: { listener: r.listener, route: r.route },
        fault: faultSpec,
        blast_radius_percent: 1,
        guardrails,
        yaml,
      });
    }
  }
  out.sort((a, b) => b.score - a.score || a.id.localeCompare(b.id));
  return {
    generated_at: new Date(nowMs).toISOString(),
    observed_since: new Date(input.sinceMs).toISOString(),
    observed_seconds: Math.round(seconds),
    routes,
    suggestions: out.map((s, i) => ({ rank: i + 1, ...s })),
    notes: [
      'traffic is what this process has seen since it started (restarts reset it)',
      'retries (x-envoy-attempt-count, repeated x-request-id) are not counted: that would cost per request',
    ],
  };
}

/** The experiments and recorded runs that target a route (by listener and route, or the route alone). */
function history(
  experiments: readonly ExperimentSpec[],
  runs: readonly RunRecord[],
  r: RouteObservation,
): { configured: boolean; runs: RunRecord[] } {
  const hits = (e: ExperimentSpec) =>
    e.match.route === r.route && (e.match.listener === undefined || e.match.listener === r.listener);
  const ids = new Set(experiments.filter(hits).map((e) => e.id));
  return { configured: ids.size > 0, runs: runs.filter((x) => ids.has(x.experiment)) };
}

function faultKind(f: unknown): string {
  return typeof f === 'object' && f !== null ? String((f as { kind?: unknown }).kind) : '';
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** 1, 2 or 5 times a power of ten, at least v. */
function roundNice(v: number): number {
  if (!(v > 0)) return 0;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function pct(x: number): string {
  return `${round(x * 100, 1)}%`;
}

function secs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

function ageText(ms: number): string {
  if (ms >= DAY_MS) return `${Math.round(ms / DAY_MS)} days`;
  if (ms >= 3_600_000) return `${Math.round(ms / 3_600_000)} h`;
  return `${Math.max(1, Math.round(ms / 60_000))} min`;
}

function slug(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9_.-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 63);
}

/**
 * `listener/route` names whose timeout_ms the config file itself sets (the validated config cannot tell
 * a set 15000 from the default). Null when the file cannot be read as it was loaded.
 */
export async function timeoutsSetIn(file: string): Promise<Set<string> | null> {
  try {
    const text = await readFile(file, 'utf8');
    const raw = (file.endsWith('.json') ? JSON.parse(text) : parse(text)) as {
      listeners?: { name?: string; routes?: { name?: string; timeout_ms?: unknown }[] }[];
    };
    const out = new Set<string>();
    for (const l of raw.listeners ?? [])
      for (const r of l.routes ?? []) if (r.timeout_ms !== undefined) out.add(`${l.name}/${r.name}`);
    return out;
  } catch {
    return null;
  }
}
