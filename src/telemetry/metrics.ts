/**
 * Every Prometheus metric Faultline exports, in one list. Each Faultline instance owns a registry (tests
 * run several in one process). Label children used on the hot path are resolved once and cached by
 * index, so recording a request is a few array reads and additions.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { HotCounter, HotHistogram } from './hot-metrics.js';

export { METHODS, STATUS_CLASSES, methodIndex, statusClassIndex } from '../core/vocab.js';
/** Seconds; spans loopback proxying (sub-ms) to injected multi-second latency. */
export const DURATION_BUCKETS_S = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

export type Metrics = ReturnType<typeof createMetrics>;

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'faultline_' });
  // prom-client names three gauges *_total, which Prometheus reserves for counters (`promtool check
  // metrics` flags them); each is the sum of the by-type gauge it sits beside, so nothing is lost.
  for (const kind of ['handles', 'requests', 'resources'])
    registry.removeSingleMetric(`faultline_nodejs_active_${kind}_total`);
  const r = [registry];
  return {
    registry,
    // Updated on every request: hot families (see hot-metrics.ts), rendered by prom-client at scrape.
    requests: new HotCounter(
      registry,
      'faultline_requests_total',
      'Requests handled, by listener, route, method, status class ("error": no HTTP status was sent; gRPC calls: the class of the grpc-status\'s HTTP mapping, e.g. UNAVAILABLE 5xx) and grpc_code ("" for non-gRPC requests, "none": a gRPC call without a status).',
      ['listener', 'route', 'method', 'status_class', 'grpc_code'],
    ),
    requestDuration: new HotHistogram(
      registry,
      'faultline_request_duration_seconds',
      'Time from request received to response finished, by listener and route.',
      ['listener', 'route'],
      DURATION_BUCKETS_S,
    ),
    grpcResponses: new Counter({
      name: 'faultline_grpc_responses_total',
      help: 'gRPC calls by listener, route and final grpc-status name (from trailers or a trailers-only reply; "none": the stream ended without a status, e.g. reset or cancelled).',
      labelNames: ['listener', 'route', 'grpc_code'],
      registers: r,
    }),
    upstreamErrors: new Counter({
      name: 'faultline_upstream_errors_total',
      help: 'Upstream failures by route and kind (refused, unreachable, timeout, reset, protocol).',
      labelNames: ['route', 'kind'],
      registers: r,
    }),
    openConnections: new Gauge({
      name: 'faultline_open_connections',
      help: 'Client connections currently open, by listener.',
      labelNames: ['listener'],
      registers: r,
    }),
    clientErrors: new Counter({
      name: 'faultline_client_errors_total',
      help: 'Malformed client requests rejected before routing, by listener and kind.',
      labelNames: ['listener', 'kind'],
      registers: r,
    }),
    connectionsRefused: new Counter({
      name: 'faultline_connections_refused_total',
      help: 'Client connections closed on accept, by listener and reason (max_connections: the listener is full; accept_error: the OS refused, e.g. out of file descriptors).',
      labelNames: ['listener', 'reason'],
      registers: r,
    }),
    uncaughtErrors: new Counter({
      name: 'faultline_uncaught_errors_total',
      help: 'Errors no code path expected, by kind (request: thrown while handling one request, answered 500; exception, rejection: process-level). Any non-zero value is a bug.',
      labelNames: ['kind'],
      registers: r,
    }),
    extProcFailOpen: new Counter({
      name: 'faultline_ext_proc_fail_open_total',
      help: 'Envoy ext_proc messages answered CONTINUE (or the stream closed) because Faultline failed or did not know the message, by ext_proc name and reason (error, unknown_message).',
      labelNames: ['listener', 'reason'],
      registers: r,
    }),
    configReloads: new Counter({
      name: 'faultline_config_reloads_total',
      help: 'Config reload attempts by result (success, invalid).',
      labelNames: ['result'],
      registers: r,
    }),
    configValid: new Gauge({
      name: 'faultline_config_last_reload_successful',
      help: '1 when the last config reload succeeded, 0 when the running config is older than the file.',
      registers: r,
    }),
    experimentRequests: new HotCounter(
      registry,
      'faultline_experiment_requests_total',
      'Requests in an experiment arm by outcome (ok, error, timeout, reset, client_abort), as seen at the listener.',
      ['experiment', 'group', 'outcome', 'listener'],
    ),
    experimentResponses: new HotCounter(
      registry,
      'faultline_experiment_responses_total',
      'Responses in an experiment arm by status class ("error": no HTTP status, e.g. a reset; gRPC calls: the class of the grpc-status\'s HTTP mapping) and grpc_code ("" for non-gRPC requests), as seen at the listener.',
      ['experiment', 'group', 'status_class', 'grpc_code', 'listener'],
    ),
    experimentDuration: new HotHistogram(
      registry,
      'faultline_experiment_request_duration_seconds',
      'Latency of requests in an experiment arm, as seen at the listener.',
      ['experiment', 'group', 'listener'],
      DURATION_BUCKETS_S,
    ),
    faultsInjected: new Counter({
      name: 'faultline_faults_injected_total',
      help: 'Faults injected, by experiment and fault kind.',
      labelNames: ['experiment', 'kind'],
      registers: r,
    }),
    activeFaults: new Gauge({
      name: 'faultline_active_faults',
      help: 'Faults in progress (held latency or timeouts), by experiment.',
      labelNames: ['experiment'],
      registers: r,
    }),
    faultsOverflow: new Counter({
      name: 'faultline_faults_overflow_total',
      help: 'Canary requests passed through unfaulted because max_active_faults was reached.',
      labelNames: ['experiment'],
      registers: r,
    }),
    experimentState: new Gauge({
      name: 'faultline_experiment_state',
      help: '1 for the state each experiment is in (running, killed, expired, disabled, dry_run, pending).',
      labelNames: ['experiment', 'state'],
      registers: r,
    }),
    killSwitchTrips: new Counter({
      name: 'faultline_kill_switch_trips_total',
      help: 'Experiments killed, by experiment and reason (guardrail, global_error_rate, duration, manual).',
      labelNames: ['experiment', 'reason'],
      registers: r,
    }),
    guardrailEValue: new Gauge({
      name: 'faultline_guardrail_e_value',
      help: 'Current e-value of each guardrail (trips at 1/alpha_guardrail), sampled once a second; guardrail is the metric, latency with its quantile (latency_p99).',
      labelNames: ['experiment', 'guardrail'],
      registers: r,
    }),
    guardrailThreshold: new Gauge({
      name: 'faultline_guardrail_e_value_threshold',
      help: 'The e-value at which each guardrail trips: 1/alpha of that guardrail (the boundary on the evidence panel).',
      labelNames: ['experiment', 'guardrail'],
      registers: r,
    }),
    guardrailSufficient: new Gauge({
      name: 'faultline_guardrail_sufficient_data',
      help: '1 when the guardrail is judging (enough samples in each arm), 0 while its status is insufficient_data.',
      labelNames: ['experiment', 'guardrail'],
      registers: r,
    }),
  };
}
