/**
 * `faultline import istio|envoy FILE`: an Istio VirtualService's `http[].fault` or an Envoy HTTPFault
 * filter config becomes Faultline experiments, with what those lack: a control arm of the same size,
 * default guardrails, and a hypothesis to fill in. Anything that has no Faultline equivalent is named
 * in a warning, never dropped silently. Pure functions: parsing and printing live in the command.
 */
import { parseDuration } from '../config/schema.js';
import { grpcStatusCode } from '../core/vocab.js';

export interface Imported {
  experiments: Record<string, unknown>[];
  warnings: string[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Faultline's split cap without allow_above_cap, and its hard maximum. */
const CAP = 5;
const MAX = 50;
const DEFAULT_GUARDRAILS = [{ metric: 'error_rate' }, { metric: 'latency' }];

function slug(s: string): string {
  const out = s
    .toLowerCase()
    .replace(/[^a-z0-9_.-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 63);
  return out === '' ? 'imported' : out;
}

/** The source's fault rate as the canary's size (control gets as many), within Faultline's limits. */
function split(percent: number, where: string, warnings: string[]): Obj {
  let p = Math.round(percent * 100) / 100;
  if (!(p > 0)) {
    warnings.push(`${where}: percentage ${percent} injects nothing; imported at 0.01%`);
    p = 0.01;
  }
  if (p > MAX) {
    warnings.push(
      `${where}: percentage ${percent}% lowered to ${MAX}% (canary and control are equal arms of at most ${MAX}% each)`,
    );
    p = MAX;
  }
  if (p > CAP) {
    warnings.push(
      `${where}: percentage ${p}% is above Faultline's ${CAP}% safety cap; kept with allow_above_cap: true (consider starting smaller)`,
    );
    return { percent: p, allow_above_cap: true };
  }
  return { percent: p };
}

function experiment(id: string, source: string, match: Obj, splitSpec: Obj, fault: Obj): Obj {
  return {
    id,
    hypothesis: `TODO: state what should hold while this fault runs (imported from ${source})`,
    match,
    split: splitSpec,
    fault,
    guardrails: DEFAULT_GUARDRAILS,
  };
}

/** Istio durations ("1.5s", "100ms", "2m", "1h"); Faultline's parser takes the same forms. */
function durationMs(v: unknown, where: string, warnings: string[]): number | null {
  if (typeof v === 'string' && /^\d+(\.\d+)?(ms|s|m|h)$/.test(v)) return parseDuration(v);
  warnings.push(`${where}: delay ${JSON.stringify(v)} is not a duration Faultline reads; skipped`);
  return null;
}

/** Pairs the (abort, delay) faults of one source into experiments; one fault each, abort first. */
function faultsOf(
  base: string,
  source: string,
  match: Obj,
  abort: { fault: Obj; percent: number } | null,
  delay: { fault: Obj; percent: number } | null,
  warnings: string[],
): Obj[] {
  const out: Obj[] = [];
  if (abort) {
    out.push(experiment(`${base}-abort`, source, match, split(abort.percent, source, warnings), abort.fault));
    // Istio's percentage became the canary slice, so every canary request is aborted here; with the
    // default exclude_injected the guardrails would have nothing left to judge.
    warnings.push(
      `${source}: "${base}-abort" answers every canary request with the abort, so as imported its guardrails have nothing to judge (the verdict can only be inconclusive): set inject: downstream (a hop further in injects, this one observes the consequences) or fault.percent below 100 to judge the canary's other requests`,
    );
  }
  if (delay) {
    const e = experiment(`${base}-delay`, source, match, split(delay.percent, source, warnings), delay.fault);
    if (abort) {
      // The first matching experiment owns a request: the second would never see one while both run.
      e.enabled = false;
      warnings.push(
        `${source}: abort and delay on the same requests become two experiments (one fault each); "${base}-delay" is imported with enabled: false: run it after "${base}-abort"`,
      );
    }
    out.push(e);
  }
  return out;
}

// ---- Istio VirtualService --------------------------------------------------------------------------

function istioPercent(f: Obj): number {
  const p = f.percentage;
  if (isObj(p) && typeof p.value === 'number') return p.value;
  if (typeof f.percent === 'number') return f.percent; // deprecated integer field
  return 100; // Istio: no percentage means every request
}

/**
 * One Istio HTTPMatchRequest as a Faultline match. `lossy`: a condition could not be expressed, so the
 * match is broader than the source's (the experiment is then imported disabled).
 */
function istioMatch(
  m: Obj,
  listener: string,
  where: string,
  warnings: string[],
): { match: Obj; lossy: boolean } {
  const out: Obj = { listener };
  const before = warnings.length;
  let approx = 0;
  for (const [k, v] of Object.entries(m)) {
    if (k === 'uri' && isObj(v)) {
      if (typeof v.prefix === 'string') out.path_prefix = v.prefix;
      else if (typeof v.exact === 'string') {
        out.path_prefix = v.exact;
        approx++;
        warnings.push(`${where}.uri.exact "${v.exact}" imported as path_prefix (Faultline matches prefixes)`);
      } else warnings.push(`${where}.uri ${JSON.stringify(v)}: regex URIs cannot be mapped; not matched on`);
    } else if (k === 'method' && isObj(v) && typeof v.exact === 'string')
      out.methods = [v.exact.toUpperCase()];
    else if (k === 'headers' && isObj(v)) {
      const headers: Record<string, string> = {};
      for (const [name, cond] of Object.entries(v)) {
        if (isObj(cond) && typeof cond.exact === 'string') headers[name.toLowerCase()] = cond.exact;
        else
          warnings.push(
            `${where}.headers.${name} ${JSON.stringify(cond)}: only exact header matches map; not matched on`,
          );
      }
      if (Object.keys(headers).length > 0) out.headers = headers;
    } else if (k !== 'name')
      warnings.push(`${where}.${k} ${JSON.stringify(v)} has no Faultline equivalent; not matched on`);
  }
  return { match: out, lossy: warnings.length - before > approx };
}

export function importIstio(docs: unknown[], listener: string): Imported {
  const warnings: string[] = [];
  const experiments: Obj[] = [];
  docs.forEach((doc, d) => {
    if (!isObj(doc)) return;
    if (doc.kind !== 'VirtualService') {
      if (doc.kind !== undefined)
        warnings.push(`document ${d}: kind ${String(doc.kind)} skipped (not a VirtualService)`);
      return;
    }
    const name = isObj(doc.metadata) && typeof doc.metadata.name === 'string' ? doc.metadata.name : `vs${d}`;
    const http = isObj(doc.spec) && Array.isArray(doc.spec.http) ? doc.spec.http : [];
    http.forEach((route: unknown, i: number) => {
      if (!isObj(route) || !isObj(route.fault)) return;
      const where = `VirtualService ${name} http[${i}]`;
      const f = route.fault;
      let abort: { fault: Obj; percent: number } | null = null;
      let delay: { fault: Obj; percent: number } | null = null;
      if (isObj(f.abort)) {
        const a = f.abort;
        const fault: Obj = { kind: 'abort' };
        if (typeof a.httpStatus === 'number') fault.status = a.httpStatus;
        if (a.grpcStatus !== undefined) {
          const code = grpcStatusCode(a.grpcStatus as string | number);
          if (code === undefined)
            warnings.push(`${where}.fault.abort.grpcStatus ${String(a.grpcStatus)} is not a gRPC status`);
          else fault.grpc_status = a.grpcStatus;
        }
        if (a.http2Error !== undefined)
          warnings.push(`${where}.fault.abort.http2Error has no Faultline equivalent (use kind: reset)`);
        if (fault.status !== undefined || fault.grpc_status !== undefined)
          abort = { fault, percent: istioPercent(a) };
      }
      if (isObj(f.delay)) {
        const dl = f.delay;
        if (dl.exponentialDelay !== undefined)
          warnings.push(`${where}.fault.delay.exponentialDelay has no Faultline equivalent; skipped`);
        if (dl.fixedDelay !== undefined) {
          const ms = durationMs(dl.fixedDelay, `${where}.fault.delay`, warnings);
          if (ms !== null) delay = { fault: { kind: 'latency', ms }, percent: istioPercent(dl) };
        }
      }
      const base = slug(`${name}-${typeof route.name === 'string' ? route.name : i}`);
      const matches = Array.isArray(route.match) && route.match.length > 0 ? route.match : [{}];
      matches.forEach((m: unknown, j: number) => {
        const id = matches.length > 1 ? `${base}-m${j}` : base;
        const { match, lossy } = istioMatch(isObj(m) ? m : {}, listener, `${where}.match[${j}]`, warnings);
        const exps = faultsOf(id, where, match, abort, delay, warnings);
        if (lossy) {
          for (const e of exps) e.enabled = false;
          warnings.push(
            `${where}.match[${j}]: "${id}" would match more requests than the source; imported with enabled: false (narrow its match, then enable it)`,
          );
        }
        experiments.push(...exps);
      });
    });
  });
  if (experiments.length === 0) warnings.push('no http[].fault found in any VirtualService');
  return { experiments, warnings };
}

// ---- Envoy HTTPFault ---------------------------------------------------------------------------------

const DENOMINATORS: Record<string, number> = { HUNDRED: 100, TEN_THOUSAND: 10_000, MILLION: 1_000_000 };

function envoyPercent(p: unknown): number {
  if (!isObj(p)) return 100;
  const n = typeof p.numerator === 'number' ? p.numerator : 0;
  const d = DENOMINATORS[typeof p.denominator === 'string' ? p.denominator : 'HUNDRED'] ?? 100;
  return (n * 100) / d;
}

/** Every HTTPFault config in the document: the filter's typed_config anywhere in an Envoy config. */
function findHttpFaults(v: unknown, path: string, out: { cfg: Obj; path: string }[]): void {
  if (Array.isArray(v)) v.forEach((x, i) => findHttpFaults(x, `${path}[${i}]`, out));
  else if (isObj(v)) {
    const t = v['@type'];
    if (typeof t === 'string' && t.endsWith('envoy.extensions.filters.http.fault.v3.HTTPFault')) {
      out.push({ cfg: v, path });
      return;
    }
    for (const [k, x] of Object.entries(v)) findHttpFaults(x, path === '' ? k : `${path}.${k}`, out);
  }
}

export function importEnvoy(docs: unknown[], listener: string): Imported {
  const warnings: string[] = [];
  const experiments: Obj[] = [];
  const found: { cfg: Obj; path: string }[] = [];
  for (const doc of docs) {
    const before = found.length;
    findHttpFaults(doc, '', found);
    // A bare HTTPFault (no @type): the document itself.
    if (found.length === before && isObj(doc) && (isObj(doc.delay) || isObj(doc.abort)))
      found.push({ cfg: doc, path: 'HTTPFault' });
  }
  found.forEach(({ cfg, path }, n) => {
    const where = path || 'HTTPFault';
    const before = warnings.length;
    let abort: { fault: Obj; percent: number } | null = null;
    let delay: { fault: Obj; percent: number } | null = null;
    if (isObj(cfg.abort)) {
      const a = cfg.abort;
      const fault: Obj = { kind: 'abort' };
      if (typeof a.http_status === 'number') fault.status = a.http_status;
      if (typeof a.grpc_status === 'number') fault.grpc_status = a.grpc_status;
      if (a.header_abort !== undefined)
        warnings.push(`${where}.abort.header_abort: header-controlled aborts have no fixed fault to import`);
      if (fault.status !== undefined || fault.grpc_status !== undefined)
        abort = { fault, percent: envoyPercent(a.percentage) };
    }
    if (isObj(cfg.delay)) {
      const dl = cfg.delay;
      if (dl.header_delay !== undefined)
        warnings.push(`${where}.delay.header_delay: header-controlled delays have no fixed fault to import`);
      if (dl.fixed_delay !== undefined) {
        const ms = durationMs(dl.fixed_delay, `${where}.delay`, warnings);
        if (ms !== null) delay = { fault: { kind: 'latency', ms }, percent: envoyPercent(dl.percentage) };
      }
    }
    if (isObj(cfg.response_rate_limit))
      warnings.push(`${where}.response_rate_limit: use kind: throttle (bytes_per_s) by hand; not imported`);
    for (const k of [
      'upstream_cluster',
      'downstream_nodes',
      'abort_percent_runtime',
      'delay_percent_runtime',
    ])
      if (cfg[k] !== undefined) warnings.push(`${where}.${k} has no Faultline equivalent; not matched on`);
    const match: Obj = { listener };
    if (Array.isArray(cfg.headers)) {
      const headers: Record<string, string> = {};
      cfg.headers.forEach((h: unknown, i: number) => {
        const exact = isObj(h)
          ? typeof h.exact_match === 'string'
            ? h.exact_match
            : isObj(h.string_match) && typeof h.string_match.exact === 'string'
              ? h.string_match.exact
              : undefined
          : undefined;
        if (isObj(h) && typeof h.name === 'string' && exact !== undefined) {
          if (h.name === ':method') match.methods = [exact.toUpperCase()];
          else if (h.name === ':path') {
            match.path_prefix = exact;
            warnings.push(`${where}.headers[${i}] :path exact "${exact}" imported as path_prefix`);
          } else headers[h.name.toLowerCase()] = exact;
        } else
          warnings.push(
            `${where}.headers[${i}] ${JSON.stringify(h)}: only exact header matches map; not matched on`,
          );
      });
      if (Object.keys(headers).length > 0) match.headers = headers;
    }
    const base = found.length > 1 ? `envoy-fault-${n}` : 'envoy-fault';
    const lossy = warnings.slice(before).some((w) => w.endsWith('not matched on'));
    const exps = faultsOf(base, where, match, abort, delay, warnings);
    if (lossy) {
      for (const e of exps) e.enabled = false;
      warnings.push(
        `${where}: "${base}" would match more requests than the source; imported with enabled: false (narrow its match, then enable it)`,
      );
    }
    if (typeof cfg.max_active_faults === 'number')
      for (const e of exps) e.max_active_faults = cfg.max_active_faults;
    experiments.push(...exps);
  });
  if (experiments.length === 0) warnings.push('no HTTPFault with a fixed delay or abort found');
  return { experiments, warnings };
}
