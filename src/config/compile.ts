/**
 * Spec -> frozen runtime plan. Everything a request needs (route table, experiment candidates per route,
 * metric label children, upstream pools) is resolved here, once per config load.
 */
import type { ExperimentRuntime } from '../experiments/runtime.js';
import type { PointPlan } from '../engine/point.js';
import type { ListenerPlan, RouteRuntime } from '../proxy/plan.js';
import type { UpstreamPools } from '../proxy/upstreams.js';
import type { Metrics } from '../telemetry/metrics.js';
import { pointTraffic } from '../telemetry/point-traffic.js';
import type { ConfigSpec, ListenerSpec } from './schema.js';

export function compileListenerPlans(
  cfg: ConfigSpec,
  pools: UpstreamPools,
  metrics: Metrics,
  experiments: ReadonlyMap<string, ExperimentRuntime>,
): Map<string, ListenerPlan> {
  const plans = new Map<string, ListenerPlan>();
  for (const l of cfg.listeners) plans.set(l.name, compileListener(cfg, l, pools, metrics, experiments));
  return plans;
}

function compileListener(
  cfg: ConfigSpec,
  l: ListenerSpec,
  pools: UpstreamPools,
  metrics: Metrics,
  experiments: ReadonlyMap<string, ExperimentRuntime>,
): ListenerPlan {
  const all = [...experiments.values()];
  const routes: RouteRuntime[] = l.routes.map((r) =>
    Object.freeze({
      name: r.name,
      listener: l.name,
      pathPrefix: r.path_prefix,
      host: r.host?.toLowerCase() ?? null,
      upstream: r.upstream,
      upstreamProtocol: r.upstream_protocol,
      pool: pools.get(r),
      timeoutMs: r.timeout_ms,
      experiments: Object.freeze(
        all.filter(
          (e) =>
            (e.matcher.listener === null || e.matcher.listener === l.name) &&
            (e.matcher.route === null || e.matcher.route === r.name),
        ),
      ),
      requestCounters: [],
      duration: metrics.requestDuration.labels(l.name, r.name),
      upstreamErrors: new Map(),
      metrics,
    }),
  );
  return Object.freeze({
    name: l.name,
    trustAssignment: l.trust_assignment,
    routes: Object.freeze(routes),
    hostRouting: routes.some((r) => r.host !== null),
    injectedHeader: cfg.injected_header,
    armHeader: cfg.arm_header,
    accessLog: cfg.access_log,
    experimentsById: experiments,
  });
}

/** Fields of a listener that a reload cannot change without rebinding its socket. */
export function listenerBindingKey(l: ListenerSpec): string {
  return JSON.stringify([l.address, l.port, l.protocol, l.tls ?? null]);
}

/** In-process points: candidates per point, as for a listener without routes. */
export function compilePointPlans(
  cfg: ConfigSpec,
  experiments: ReadonlyMap<string, ExperimentRuntime>,
  metrics?: Metrics,
): Map<string, PointPlan> {
  const all = [...experiments.values()];
  // Points a traffic probe watches count all their requests; the others add nothing per request.
  const watched = new Set(
    cfg.experiments.flatMap((e) =>
      e.steady_state.flatMap((p) => (p.traffic?.point ? [p.traffic.point] : [])),
    ),
  );
  const plans = new Map<string, PointPlan>();
  for (const p of cfg.points)
    plans.set(
      p.name,
      Object.freeze({
        name: p.name,
        role: p.role,
        trustAssignment: p.trust_assignment ?? p.role === 'outbound',
        experimentsById: experiments,
        candidates: Object.freeze(all.filter((e) => e.matcher.listener === p.name)),
        injectedHeader: cfg.injected_header,
        armHeader: cfg.arm_header,
        traffic: metrics !== undefined && watched.has(p.name) ? pointTraffic(metrics, p.name) : null,
      }),
    );
  return plans;
}
