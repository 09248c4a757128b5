/**
 * Probe kinds, compiled once per config load: URLs parsed, regular expressions built, JSON paths split,
 * traffic samplers started. An evaluation never throws: an error comes back as a result with
 * `error: true, ok: false` (a probe that cannot be evaluated never holds).
 */
import type { SteadyStateProbeSpec } from '../config/steady-state-schema.js';
import type { Metrics } from '../telemetry/metrics.js';
import { TrafficSampler } from './traffic.js';
import type { ProbeResult } from './types.js';

export interface Probe {
  readonly spec: SteadyStateProbeSpec;
  readonly kind: 'http' | 'prometheus' | 'traffic';
  /** Resolves when the probe can give a meaningful first answer (a traffic window filled). */
  ready(): Promise<void>;
  evaluate(): Promise<ProbeResult>;
  close(): void;
}

export function compileProbe(spec: SteadyStateProbeSpec, metrics: Metrics): Probe {
  if (spec.http) return new HttpProbe(spec, spec.http);
  if (spec.prometheus) return new PrometheusProbe(spec, spec.prometheus);
  return new TrafficProbe(spec, spec.traffic!, metrics);
}

function result(ok: boolean, value: ProbeResult['value'], detail: string, error = false): ProbeResult {
  return { at: new Date().toISOString(), ok, error, value, detail };
}

/** "in [min, max]" text and check; either bound may be absent. */
function bounded(v: number, min: number | undefined, max: number | undefined): [boolean, string] {
  if (min !== undefined && v < min) return [false, `${fmt(v)} < min ${min}`];
  if (max !== undefined && v > max) return [false, `${fmt(v)} > max ${max}`];
  const range =
    min !== undefined && max !== undefined
      ? `in [${min}, ${max}]`
      : min !== undefined
        ? `>= ${min}`
        : `<= ${max}`;
  return [true, `${fmt(v)} ${range}`];
}

function fmt(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toPrecision(4);
}

const MAX_BODY = 1 << 20;

type HttpSpec = NonNullable<SteadyStateProbeSpec['http']>;

class HttpProbe implements Probe {
  readonly kind = 'http';
  readonly spec: SteadyStateProbeSpec;
  private readonly h: HttpSpec;
  private readonly statuses: ReadonlySet<number>;
  private readonly bodyRe: RegExp | null;
  private readonly path: readonly string[] | null;
  private readonly readBody: boolean;

  constructor(spec: SteadyStateProbeSpec, h: HttpSpec) {
    this.spec = spec;
    this.h = h;
    this.statuses = new Set(Array.isArray(h.expect_status) ? h.expect_status : [h.expect_status]);
    this.bodyRe = h.body_regex !== undefined ? new RegExp(h.body_regex) : null;
    this.path = h.json_path !== undefined ? h.json_path.split('.') : null;
    this.readBody = this.bodyRe !== null || this.path !== null;
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  async evaluate(): Promise<ProbeResult> {
    const h = this.h;
    const t0 = performance.now();
    let status: number;
    let body = '';
    try {
      const res = await fetch(h.url, {
        method: h.method,
        headers: h.headers ?? {},
        redirect: 'manual',
        signal: AbortSignal.timeout(h.timeout_ms),
      });
      status = res.status;
      if (this.readBody) body = (await res.text()).slice(0, MAX_BODY);
      else await res.body?.cancel();
    } catch (err) {
      const e = err as Error;
      const why = e.name === 'TimeoutError' ? `no answer within ${h.timeout_ms} ms` : causeOf(e);
      return result(false, null, `${h.method} ${h.url}: ${why}`, true);
    }
    const ms = performance.now() - t0;
    const took = `${ms.toFixed(1)} ms`;
    if (!this.statuses.has(status))
      return result(false, status, `status ${status}, expected ${[...this.statuses].join(' or ')} (${took})`);
    if (h.max_latency_ms !== undefined && ms > h.max_latency_ms)
      return result(
        false,
        Math.round(ms * 10) / 10,
        `answered in ${took} > max_latency_ms ${h.max_latency_ms}`,
      );
    if (this.bodyRe !== null && !this.bodyRe.test(body))
      return result(false, status, `status ${status} but the body does not match /${h.body_regex}/`);
    if (this.path !== null) {
      let v: unknown;
      try {
        v = JSON.parse(body);
      } catch {
        return result(false, null, `status ${status} but the body is not JSON`, true);
      }
      for (const k of this.path)
        v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
      const at = `${h.json_path}`;
      if (v === undefined) return result(false, null, `${at} is missing from the body`, true);
      if (h.equals !== undefined) {
        const ok = v === h.equals;
        return result(
          ok,
          scalar(v),
          `${at} = ${JSON.stringify(v)}${ok ? '' : `, expected ${JSON.stringify(h.equals)}`}`,
        );
      }
      if (h.min !== undefined || h.max !== undefined) {
        if (typeof v !== 'number')
          return result(false, scalar(v), `${at} = ${JSON.stringify(v)} is not a number`);
        const [ok, d] = bounded(v, h.min, h.max);
        return result(ok, v, `${at} ${d}`);
      }
      return result(true, scalar(v), `status ${status}, ${at} = ${JSON.stringify(v)} (${took})`);
    }
    return result(true, status, `status ${status} (${took})`);
  }

  close(): void {}
}

function scalar(v: unknown): ProbeResult['value'] {
  return typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean' ? v : JSON.stringify(v);
}

function causeOf(e: Error): string {
  const c = (e as Error & { cause?: { code?: string; message?: string } }).cause;
  return c?.code ?? c?.message ?? e.message;
}

type PromSpec = NonNullable<SteadyStateProbeSpec['prometheus']>;

interface PromAnswer {
  status?: string;
  error?: string;
  data?: {
    resultType?: string;
    result?: unknown;
  };
}

/** An instant query against Prometheus's HTTP API (GET /api/v1/query); every series must be in bounds. */
class PrometheusProbe implements Probe {
  readonly kind = 'prometheus';
  readonly spec: SteadyStateProbeSpec;
  private readonly p: PromSpec;
  private readonly url: string;

  constructor(spec: SteadyStateProbeSpec, p: PromSpec) {
    this.spec = spec;
    this.p = p;
    const u = new URL('api/v1/query', p.url.endsWith('/') ? p.url : `${p.url}/`);
    u.searchParams.set('query', p.query);
    this.url = u.href;
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  async evaluate(): Promise<ProbeResult> {
    const p = this.p;
    let answer: PromAnswer;
    try {
      const res = await fetch(this.url, { signal: AbortSignal.timeout(p.timeout_ms) });
      answer = (await res.json()) as PromAnswer;
      if (answer.status !== 'success')
        return result(false, null, `prometheus: ${answer.error ?? `status ${res.status}`}`, true);
    } catch (err) {
      const e = err as Error;
      const why = e.name === 'TimeoutError' ? `no answer within ${p.timeout_ms} ms` : causeOf(e);
      return result(false, null, `prometheus ${p.url}: ${why}`, true);
    }
    const values: number[] = [];
    const data = answer.data ?? {};
    if (data.resultType === 'scalar') values.push(Number((data.result as [number, string])[1]));
    else if (data.resultType === 'vector')
      for (const s of data.result as { value: [number, string] }[]) values.push(Number(s.value[1]));
    else
      return result(
        false,
        null,
        `query returned a ${data.resultType ?? 'missing'} result, not a vector`,
        true,
      );
    // No series is no evidence: the probe cannot say the system is healthy.
    if (values.length === 0) return result(false, null, `query returned no series: ${p.query}`, true);
    let worst = values[0] as number;
    for (const v of values) {
      const [ok] = bounded(v, p.min, p.max);
      if (!ok || Number.isNaN(v)) {
        worst = v;
        break;
      }
    }
    if (Number.isNaN(worst)) return result(false, null, `query returned NaN: ${p.query}`, true);
    const [ok, d] = bounded(worst, p.min, p.max);
    return result(ok, worst, values.length > 1 ? `${d} (${values.length} series)` : d);
  }

  close(): void {}
}

type TrafficSpec = NonNullable<SteadyStateProbeSpec['traffic']>;

class TrafficProbe implements Probe {
  readonly kind = 'traffic';
  readonly spec: SteadyStateProbeSpec;
  private readonly t: TrafficSpec;
  private readonly sampler: TrafficSampler;

  constructor(spec: SteadyStateProbeSpec, t: TrafficSpec, metrics: Metrics) {
    this.spec = spec;
    this.t = t;
    this.sampler = new TrafficSampler(
      metrics,
      t.point !== undefined ? { point: t.point } : { listener: t.listener ?? '', route: t.route ?? null },
      t.window,
    );
  }

  ready(): Promise<void> {
    return this.sampler.filled();
  }

  evaluate(): Promise<ProbeResult> {
    const t = this.t;
    const w = this.sampler.window();
    const where = t.point !== undefined ? `point ${t.point}` : `${t.listener}${t.route ? `/${t.route}` : ''}`;
    const over = `${w.requests} requests over ${w.seconds.toFixed(1)} s on ${where}`;
    let v: number;
    switch (t.metric) {
      case 'throughput':
        v = w.seconds > 0 ? w.requests / w.seconds : 0;
        break;
      case 'error_rate':
        if (w.requests < t.min_requests)
          return Promise.resolve(result(true, null, `not judged: ${over} < min_requests ${t.min_requests}`));
        v = w.errors / w.requests;
        break;
      case 'p99_ms':
        if (w.requests < t.min_requests)
          return Promise.resolve(result(true, null, `not judged: ${over} < min_requests ${t.min_requests}`));
        v = w.p99Ms;
        break;
    }
    const [ok, d] = bounded(v, t.min, t.max);
    return Promise.resolve(result(ok, Math.round(v * 1e4) / 1e4, `${t.metric} ${d} (${over})`));
  }

  close(): void {
    this.sampler.close();
  }
}
