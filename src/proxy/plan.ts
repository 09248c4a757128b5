/**
 * The compiled, immutable routing plan of one listener. Every request reads one snapshot; a reload
 * builds a new plan and swaps the reference (Envoy's habit: compile once, read many).
 */
import type { Counter } from 'prom-client';
import type { Dispatcher } from 'undici';
import type { ExperimentRuntime } from '../experiments/runtime.js';
import type { CounterChild, HistogramChild } from '../telemetry/hot-metrics.js';
import type { Metrics } from '../telemetry/metrics.js';

export interface RouteRuntime {
  readonly name: string;
  readonly listener: string;
  readonly pathPrefix: string;
  /** Lower-case host without port, or null for any host. */
  readonly host: string | null;
  readonly upstream: string;
  readonly upstreamProtocol: 'http1' | 'h2c' | 'h2';
  readonly pool: Dispatcher;
  readonly timeoutMs: number;
  /** Experiments that may match requests on this route, in config order. */
  readonly experiments: readonly ExperimentRuntime[];
  /** Label children, resolved on first use: [(methodIndex * 6 + statusClassIndex) * 19 + grpcCodeIndex]. */
  readonly requestCounters: (CounterChild | undefined)[];
  readonly duration: HistogramChild;
  readonly upstreamErrors: Map<string, Counter.Internal>;
  readonly metrics: Metrics;
}

export interface ListenerPlan {
  readonly name: string;
  readonly trustAssignment: boolean;
  readonly routes: readonly RouteRuntime[];
  /** True when any route matches on Host, so the Host header is looked up only then. */
  readonly hostRouting: boolean;
  readonly injectedHeader: boolean;
  /** Mark responses of assigned requests with x-faultline-arm (load-test harnesses read it). */
  readonly armHeader: boolean;
  readonly accessLog: boolean;
  /** Experiment lookup for trusted incoming assignments. */
  readonly experimentsById: ReadonlyMap<string, ExperimentRuntime>;
}

export function matchRoute(plan: ListenerPlan, url: string, host: string | undefined): RouteRuntime | null {
  const routes = plan.routes;
  let hostLower: string | null = null;
  if (plan.hostRouting && host !== undefined) {
    const colon = host.lastIndexOf(':');
    hostLower = (colon > 0 && host.indexOf(']') < colon ? host.slice(0, colon) : host).toLowerCase();
  }
  for (let i = 0; i < routes.length; i++) {
    const r = routes[i] as RouteRuntime;
    if (r.host !== null && r.host !== hostLower) continue;
    if (url.startsWith(r.pathPrefix)) return r;
  }
  return null;
}
