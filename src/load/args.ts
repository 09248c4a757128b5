import { readFileSync } from 'node:fs';
import { parseCommandArgs, UsageError, type OptionSpecs } from '../cli/args.js';
import { DURATION_HINT, parseDurationMs as parseDuration } from '../core/duration.js';

export { UsageError };

/** Parsed `faultline load` options; flag names map 1:1 to fields. */
export interface LoadOptions {
  readonly target: URL;
  readonly ratePerS: number;
  readonly durationMs: number;
  /** Unrecorded run-in at the same rate before the measured window (0 = none). */
  readonly warmupMs: number;
  readonly concurrency: number;
  readonly method: string;
  readonly body: Buffer | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly admin: URL | undefined;
  readonly experiment: string | undefined;
  readonly json: boolean;
  /** --busy-poll: the generator never sleeps (see GeneratorOptions.busyPoll). */
  readonly busyPoll: boolean;
}

export const USAGE = `usage: faultline load --target URL --rate R --duration D [options]

Open-loop load generator: sends R requests per second on a fixed schedule for D, measures latency
from each request's scheduled send time (no coordinated omission) and reports per experiment arm:
canary (x-faultline-arm group=canary, or x-faultline-injected), control (group=control) and
untouched (neither). Faultline sets x-faultline-arm when its config has \`arm_header: true\`;
without it, control is shown from the admin's counts (--admin).

  --target URL          http(s) URL to load (required)
  --rate R              requests per second, > 0 (required)
  --duration D          measured run time: 10s, 500ms, 2m, 1h (a unit is required)
  --warmup D            unrecorded warm-up at the same rate before the measured window, so
                        connections are open and the JIT is warm (default: 2s; 0s for none). Its
                        requests reach the target (and its experiments) like any other
  --concurrency C       max connections to the target (default: 64)
  --method M            HTTP method (default: GET, or POST when --body is given)
  --body STR|@file      request body, literally or read from a file
  --header 'k: v'       extra request header; repeatable
  --admin URL           Faultline admin base URL; reads GET /experiments/{id} (or GET /experiments
                        without --experiment) before, during and after the run
  --experiment ID       experiment to report on (default: every experiment's marks, and every
                        experiment the admin lists)
  --busy-poll           never sleep between sends and responses: the generator spends a whole core
                        polling, so no latency waits for the scheduler to wake it (more accurate
                        tails on VMs; give it a core of its own)
  --json                print the report as JSON on stdout
  -h, --help            show this help

exit codes: 0 done, 1 no request succeeded, 2 bad arguments, 4 the experiment was killed during the run`;

/**
 * Default warm-up: long enough for undici's and V8's first-use costs (connection setup, the JIT's
 * tiers) to pass before anything is recorded. Measured without one: the first ~1 s at 2,000 req/s
 * made the whole tail (p99 65-460 ms against a 5 ms upstream; the steady state after it was ~10 ms).
 */
export const DEFAULT_WARMUP_MS = 2000;

/** --duration in the shared grammar (src/core/duration.ts): a unit is required. */
export function parseDurationMs(text: string): number {
  const ms = parseDuration(text);
  if (Number.isNaN(ms)) throw new UsageError(`--duration: expected ${DURATION_HINT}; got '${text}'`);
  if (!(ms > 0)) throw new UsageError(`--duration: must be > 0; got '${text}'`);
  return ms;
}

function parseUrl(flag: string, text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`${flag}: not a URL: '${text}'`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`${flag}: must be http:// or https://; got '${url.protocol}'`);
  }
  return url;
}

function parsePositive(flag: string, text: string, integer: boolean): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new UsageError(`${flag}: expected a ${integer ? 'positive integer' : 'number > 0'}; got '${text}'`);
  }
  return n;
}

const FLAGS: OptionSpecs = {
  target: { type: 'string' },
  rate: { type: 'string' },
  duration: { type: 'string' },
  warmup: { type: 'string' },
  concurrency: { type: 'string' },
  method: { type: 'string' },
  body: { type: 'string' },
  header: { type: 'string', multiple: true },
  admin: { type: 'string' },
  experiment: { type: 'string' },
  json: { type: 'boolean' },
  'busy-poll': { type: 'boolean' },
};

/** Returns null for --help. Throws UsageError naming the flag and the rule it broke. */
export function parseLoadArgs(argv: readonly string[]): LoadOptions | null {
  const args = parseCommandArgs(argv, FLAGS, 0);
  if (args === null) return null;
  const text = (name: string) => args.string(name);

  let v = text('target');
  const target = v === undefined ? undefined : parseUrl('--target', v);
  v = text('rate');
  const ratePerS = v === undefined ? undefined : parsePositive('--rate', v, false);
  v = text('duration');
  const durationMs = v === undefined ? undefined : parseDurationMs(v);
  v = text('warmup');
  let warmupMs = DEFAULT_WARMUP_MS;
  if (v !== undefined) {
    warmupMs = parseDuration(v);
    if (!(warmupMs >= 0))
      throw new UsageError(`--warmup: expected ${DURATION_HINT} (0s for none); got '${v}'`);
  }
  v = text('concurrency');
  const concurrency = v === undefined ? 64 : parsePositive('--concurrency', v, true);
  let method: string | undefined;
  v = text('method');
  if (v !== undefined) {
    if (!/^[A-Za-z]+$/.test(v)) throw new UsageError(`--method: not a method name: '${v}'`);
    method = v.toUpperCase();
  }
  let body: Buffer | undefined;
  v = text('body');
  if (v !== undefined) {
    if (v.startsWith('@')) {
      try {
        body = readFileSync(v.slice(1));
      } catch (err) {
        throw new UsageError(`--body: cannot read '${v.slice(1)}': ${(err as Error).message}`);
      }
    } else {
      body = Buffer.from(v);
    }
  }
  const headers: Record<string, string> = {};
  for (const h of args.strings('header')) {
    const colon = h.indexOf(':');
    const name = colon > 0 ? h.slice(0, colon).trim().toLowerCase() : '';
    if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) {
      throw new UsageError(`--header: expected 'name: value'; got '${h}'`);
    }
    headers[name] = h.slice(colon + 1).trim();
  }
  v = text('admin');
  const admin = v === undefined ? undefined : parseUrl('--admin', v);
  const experiment = text('experiment');
  if (experiment === '') throw new UsageError('--experiment: must not be empty');
  const json = args.flag('json');
  if (!target) throw new UsageError('--target is required');
  if (ratePerS === undefined) throw new UsageError('--rate is required');
  if (durationMs === undefined) throw new UsageError('--duration is required');
  return {
    target,
    ratePerS,
    durationMs,
    warmupMs,
    concurrency,
    method: method ?? (body ? 'POST' : 'GET'),
    body,
    headers,
    admin,
    experiment,
    json,
    busyPoll: args.flag('busy-poll'),
  };
}
