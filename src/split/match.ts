/** Experiment matchers, compiled once per config: a request is checked with plain comparisons only. */
import type { ExperimentSpec } from '../config/schema.js';
import { rawHeader } from '../core/raw-headers.js';

export interface Matcher {
  readonly listener: string | null;
  readonly route: string | null;
  readonly methods: ReadonlySet<string> | null;
  readonly pathPrefix: string | null;
  /** [lower-case name, exact value] pairs; all must match. */
  readonly headers: readonly (readonly [string, string])[];
}

export function compileMatcher(match: ExperimentSpec['match']): Matcher {
  return Object.freeze({
    listener: match.listener ?? null,
    route: match.route ?? null,
    methods: match.methods ? new Set(match.methods) : null,
    pathPrefix: match.path_prefix ?? null,
    headers: Object.entries(match.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const),
  });
}

/** Listener and route are resolved at compile time; this checks the per-request parts. */
export function matchesRequest(
  m: Matcher,
  method: string,
  url: string,
  rawHeaders: readonly string[],
): boolean {
  if (m.methods !== null && !m.methods.has(method)) return false;
  if (m.pathPrefix !== null && !url.startsWith(m.pathPrefix)) return false;
  for (let i = 0; i < m.headers.length; i++) {
    const h = m.headers[i] as readonly [string, string];
    if (rawHeader(rawHeaders, h[0]) !== h[1]) return false;
  }
  return true;
}
