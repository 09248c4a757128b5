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

/** Lenient on purpose: the admin's arm fields may grow; we keep every number we find. */
export function parseExperiments(body: unknown): ExperimentSnapshot[] {
  const list = (body as { experiments?: unknown } | null)?.experiments;
  if (!Array.isArray(list)) throw new Error('admin /experiments: expected {experiments: [...]}');
  const out: ExperimentSnapshot[] = [];
  for (const item of list as unknown[]) {
    if (item === null || typeof item !== 'object') continue;
    const rec = item as { id?: unknown; state?: unknown; arms?: unknown };
    if (typeof rec.id !== 'string') continue;
    const arms: Record<string, Record<string, number>> = {};
    if (rec.arms !== null && typeof rec.arms === 'object') {
      for (const [name, fields] of Object.entries(rec.arms)) {
        const flat: Record<string, number> = {};
        flattenNumbers(fields, '', flat);
        arms[name] = flat;
      }
    }
    out.push({ id: rec.id, state: typeof rec.state === 'string' ? rec.state : 'unknown', arms });
  }
  return out;
}

export async function fetchExperiments(admin: URL, timeoutMs = 2000): Promise<ExperimentSnapshot[]> {
  const url = new URL('experiments', admin.href.endsWith('/') ? admin.href : `${admin.href}/`);
  const res = await request(url, { method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  if (res.statusCode !== 200) {
    await res.body.dump();
    throw new Error(`admin ${url.href}: HTTP ${res.statusCode}`);
  }
  return parseExperiments(await res.body.json());
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
