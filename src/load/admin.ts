import { ADMIN_HEADER, notAdminError } from '../admin/marker.js';
import { request } from 'undici';

/** One experiment as the admin's GET /experiments shows it, numeric arm fields flattened. */
export interface ExperimentSnapshot {
  readonly id: string;
  readonly state: string;
  /** arm name -> flattened numeric fields ("requests", "latency_ms.p99", ...) */
  readonly arms: Readonly<Record<string, Readonly<Record<string, number>>>>;
}

function flattenNumbers(value: unknown, prefix: string, out: Record<string, number>): void {
  if (typeof value === 'number' && Number.isFinite(value)) {
    out[prefix] = value;
  } else if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flattenNumbers(v, prefix ? `${prefix}.${k}` : k, out);
  }
}

function parseOne(item: unknown): ExperimentSnapshot | null {
  if (item === null || typeof item !== 'object') return null;
  const rec = item as { id?: unknown; state?: unknown; arms?: unknown };
  if (typeof rec.id !== 'string') return null;
  const arms: Record<string, Record<string, number>> = {};
  if (rec.arms !== null && typeof rec.arms === 'object') {
    for (const [name, fields] of Object.entries(rec.arms)) {
      const flat: Record<string, number> = {};
      flattenNumbers(fields, '', flat);
      arms[name] = flat;
    }
  }
  return { id: rec.id, state: typeof rec.state === 'string' ? rec.state : 'unknown', arms };
}

/** Lenient on purpose: the admin's arm fields may grow; we keep every number we find. */
export function parseExperiments(body: unknown): ExperimentSnapshot[] {
  const list = (body as { experiments?: unknown } | null)?.experiments;
  if (!Array.isArray(list)) throw new Error('admin /experiments: expected {experiments: [...]}');
  const out: ExperimentSnapshot[] = [];
  for (const item of list as unknown[]) {
    const e = parseOne(item);
    if (e) out.push(e);
  }
  return out;
}

/** GET /experiments/{id} answers one experiment object (the same shape as a list item). */
export function parseExperiment(body: unknown): ExperimentSnapshot {
  const e = parseOne(body);
  if (!e) throw new Error('admin /experiments/{id}: expected an experiment object with an id');
  return e;
}

/**
 * With `id`, reads GET /experiments/{id} (a 404 means "not listed": an empty list); without,
 * GET /experiments.
 */
export async function fetchExperiments(
  admin: URL,
  timeoutMs = 2000,
  id?: string,
): Promise<ExperimentSnapshot[]> {
  const base = admin.href.endsWith('/') ? admin.href : `${admin.href}/`;
  const url = new URL(id === undefined ? 'experiments' : `experiments/${encodeURIComponent(id)}`, base);
  const res = await request(url, { method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  if (res.headers[ADMIN_HEADER] === undefined) {
    await res.body.dump();
    throw notAdminError(url.href, res.statusCode);
  }
  if (id !== undefined && res.statusCode === 404) {
    await res.body.dump();
    return [];
  }
  if (res.statusCode !== 200) {
    await res.body.dump();
    throw new Error(`admin ${url.href}: HTTP ${res.statusCode}`);
  }
  const body = await res.body.json();
  return id === undefined ? parseExperiments(body) : [parseExperiment(body)];
}

/** Errors as the admin counts them (error, timeout, reset outcomes; a client abort is not one). */
export interface AdminArmSummary {
  requests: number;
  errors: number;
  errorRate: number;
}

export function adminArmSummary(delta: Readonly<Record<string, number>>): AdminArmSummary | null {
  const requests = delta['requests'];
  if (requests === undefined) return null;
  const errors = (delta['error'] ?? 0) + (delta['timeout'] ?? 0) + (delta['reset'] ?? 0);
  return { requests, errors, errorRate: requests > 0 ? errors / requests : 0 };
}

/**
 * Counters are reported as the change over the run (the admin's totals include traffic from before
 * the run); quantiles, rates and gauges cannot be subtracted, so they are reported as last seen.
 */
const NOT_A_COUNTER =
  /(^|[._])(p\d+|q\d+|quantile|mean|avg|rate|ratio|ms|latency|min|max|e_?value|p_?value)/i;

export function isCounterField(name: string): boolean {
  return !NOT_A_COUNTER.test(name);
}

export function armDelta(
  before: Readonly<Record<string, number>> | undefined,
  after: Readonly<Record<string, number>> | undefined,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after ?? {})) {
    out[k] = isCounterField(k) ? v - (before?.[k] ?? 0) : v;
  }
  return out;
}
