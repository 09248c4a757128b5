/**
 * The one schema for Faultline's config (YAML or JSON, snake_case). The JSON Schema published in
 * config/faultline.schema.json is generated from this file (`npm run schema`), and a test keeps it current.
 */
import { validateHeaderValue } from 'node:http';
import { isIP } from 'node:net';
import { z } from 'zod';
import { parseDurationMs } from '../core/duration.js';
import { grpcStatusCode } from '../core/vocab.js';
import { actsOnResponse } from '../faults/fault.js';
import { compileFault, faultIssues, rampIntensity } from '../faults/registry.js';
import { cronIssue } from '../experiments/cron.js';
import { windowIssue } from '../experiments/windows.js';
import { controlHealthSpec, ramp, steadyState } from './steady-state-schema.js';

const name = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'must be 1-63 characters of letters, digits, "_", "." or "-"');

const httpUrl = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.pathname === '/' && !u.search;
  } catch {
    return false;
  }
}, 'must be an http(s) URL of an origin (scheme, host, optional port; no path)');

const MAX_TIMER_MS = 2 ** 31 - 1;
const DURATION_MESSAGE = 'must be a duration like "500ms", "30s", "10m" or "2h", or a number of milliseconds';

/** "250ms", "30s", "10m", "2h" or a number of milliseconds. */
export const durationMs = z
  .union([z.number(), z.string()], { errorMap: () => ({ message: DURATION_MESSAGE }) })
  .transform((v, ctx) => {
    const ms = typeof v === 'number' ? v : parseDurationMs(v);
    if (!(ms > 0) || !Number.isFinite(ms)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: DURATION_MESSAGE });
      return z.NEVER;
    }
    if (ms > MAX_TIMER_MS) {
      // Node's timers cannot wait longer; a longer delay would fire at once.
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'must be at most 596h (24.8 days)' });
      return z.NEVER;
    }
    return Math.round(ms);
  });

/** The config's duration grammar is the shared one (src/core/duration.ts); throws on a bad value. */
export function parseDuration(s: string): number {
  const ms = parseDurationMs(s);
  if (Number.isNaN(ms)) throw new Error(`expected a duration like 90s, 2m, 500ms; got '${s}'`);
  return ms;
}

/** One arm's share of matching requests: above 5 needs allow_above_cap; 50 is the most two equal arms can take. */
const armPercent = z
  .number()
  .gt(0, 'must be above 0')
  .max(
    50,
    'must be at most 50 (canary and control are equal arms; above 5 also needs allow_above_cap: true)',
  );
const RAMP_RULE = 'a ramp lists 2-20 steps';

const route = z
  .object({
    name,
    path_prefix: z.string().startsWith('/', 'must start with "/"').default('/'),
    host: z.string().min(1).optional().describe('match the Host header (without port), case-insensitive'),
    upstream: httpUrl,
    upstream_protocol: z.enum(['http1', 'h2c', 'h2']).default('http1'),
    timeout_ms: z.number().int().positive().max(3_600_000).default(15_000),
    max_connections: z.number().int().positive().max(10_000).default(128),
  })
  .strict();

const listener = z
  .object({
    name,
    address: z.string().ip('must be an IP address').default('127.0.0.1'),
    port: z.number().int().min(0).max(65535),
    protocol: z.enum(['http1', 'h2c', 'tls']).default('http1'),
    tls: z
      .object({ cert: z.string().min(1), key: z.string().min(1) })
      .strict()
      .optional(),
    trust_assignment: z
      .boolean()
      .default(false)
      .describe('honour incoming faultline.* baggage (egress hops); untrusted listeners strip it'),
    max_error_rate: z
      .object({
        threshold: z.number().gt(0).max(1),
        window_s: z.number().int().min(1).max(3600).default(60),
        min_requests: z.number().int().min(1).default(100),
      })
      .strict()
      .optional()
      .describe('global guard: kill every experiment when the error rate of all traffic exceeds this'),
    routes: z.array(route).min(1, 'must list at least one route'),
    // Resource limits (issue 11): one client must not take the process or an upstream pool down.
    max_connections: z
      .number()
      .int()
      .positive()
      .max(1_000_000)
      .optional()
      .describe(
        'client connections accepted at once; more are closed on accept and counted (default: 3/4 of the fd limit shared by the listeners, at most 10000)',
      ),
    accept_fanout: z
      .number()
      .int()
      .min(1)
      .max(256)
      .default(32)
      .describe(
        'descriptors of the listening socket the event loop polls; each accepts one connection per loop turn (Node 20), so more drain a connection burst faster (1 = no fan-out)',
      ),
    max_concurrent_streams: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .default(128)
      .describe(
        'HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS advertised to clients; streams beyond it are refused',
      ),
    max_inflight_per_connection: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .default(64)
      .describe(
        'HTTP/2: requests one client connection may have forwarded at once (its share of the upstream pools); its further streams wait, in order, without an upstream connection',
      ),
    stream_idle_timeout_ms: z
      .number()
      .int()
      .positive()
      .max(3_600_000)
      .default(300_000)
      .describe('HTTP/2: a stream with no frames sent or received this long is reset'),
    session_idle_timeout_ms: z
      .number()
      .int()
      .positive()
      .max(3_600_000)
      .default(120_000)
      .describe(
        'HTTP/2: a connection with no requests in flight and no activity this long is closed (GOAWAY)',
      ),
    request_timeout_ms: z
      .number()
      .int()
      .positive()
      .max(3_600_000)
      .default(300_000)
      .describe('a request (head and body) still arriving after this long is answered 408'),
    min_upload_bytes_per_s: z
      .number()
      .int()
      .min(0)
      .default(1024)
      .describe('after upload_grace_ms, a request body arriving slower than this is answered 408 (0: off)'),
    upload_grace_ms: z.number().int().min(0).max(3_600_000).default(10_000),
    body_buffer_bytes: z
      .number()
      .int()
      .min(0)
      .max(16 * 1024 * 1024)
      .default(65_536)
      .describe(
        'request bodies with a Content-Length up to this size are read in full before an upstream connection is taken (0: always stream)',
      ),
  })
  .strict();

const admin = z
  .object({
    address: z.string().ip('must be an IP address').default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(9901),
    token: z.string().min(16, 'must be at least 16 characters').optional(),
    allowed_hosts: z
      .array(z.string().min(1))
      .default([])
      .describe(
        'extra Host names (no port) that mutating admin calls may be addressed to; loopback names and the admin address are always allowed',
      ),
  })
  .strict();

const grpcStatus = z
  .union([z.number().int().min(0).max(16), z.string()])
  .refine((v) => grpcStatusCode(v) !== undefined, 'must be a gRPC status name (e.g. UNAVAILABLE) or 0-16')
  .transform((v) => grpcStatusCode(v) as number);

const distribution = z.discriminatedUnion('type', [
  z.object({ type: z.literal('uniform'), min: z.number().min(0), max: z.number().min(0) }).strict(),
  z.object({ type: z.literal('normal'), mean: z.number().min(0), stddev: z.number().min(0) }).strict(),
  z
    .object({ type: z.literal('lognormal'), median: z.number().positive(), p99: z.number().positive() })
    .strict(),
]);

/** Share of canary requests that get the fault; the rest of the canary is judged on consequences. */
const faultPercent = z
  .number()
  .gt(0)
  .max(100)
  .default(100)
  .describe('percent of canary requests that get the fault (default 100)');

const latencyFault = z
  .object({
    kind: z.literal('latency'),
    percent: faultPercent,
    ms: z.number().min(0).max(600_000).optional(),
    distribution: distribution.optional(),
    leg: z.enum(['request', 'response']).default('request'),
  })
  .strict();

const abortFault = z
  .object({
    kind: z.literal('abort'),
    percent: faultPercent,
    status: z.number().int().min(200).max(599).optional(),
    grpc_status: grpcStatus.optional(),
    message: z.string().max(1024).optional(),
    body: z.string().max(65536).optional(),
    headers: z.record(z.string()).optional(),
  })
  .strict();

const timeoutFault = z
  .object({
    kind: z.literal('timeout'),
    percent: faultPercent,
    ms: z.number().int().min(0).max(3_600_000).default(30_000),
    hang: z.boolean().default(false),
    max_hold_ms: z.number().int().positive().max(3_600_000).default(300_000),
  })
  .strict();

const resetFault = z.object({ kind: z.literal('reset'), percent: faultPercent }).strict();

const throttleFault = z
  .object({
    kind: z.literal('throttle'),
    percent: faultPercent,
    bytes_per_s: z
      .number()
      .int()
      .min(1)
      .max(1_000_000_000)
      .describe('response body bandwidth, bytes per second'),
  })
  .strict();

const truncateFault = z
  .object({
    kind: z.literal('truncate'),
    percent: faultPercent,
    after_bytes: z
      .number()
      .int()
      .min(0)
      .max(1_000_000_000)
      .describe('body bytes sent before the connection (HTTP/2: the stream) is cut'),
  })
  .strict();

/** One alternative per fault kind: a new fault adds one here (see src/faults/README.md). */
const fault = z.discriminatedUnion('kind', [
  latencyFault,
  abortFault,
  timeoutFault,
  resetFault,
  throttleFault,
  truncateFault,
]);

const guardrail = z.discriminatedUnion('metric', [
  z
    .object({
      metric: z.literal('error_rate'),
      max_increase: z.number().min(0).max(1).default(0.01),
      max_ratio: z.number().min(1).default(1.5),
    })
    .strict(),
  z
    .object({
      metric: z.literal('timeout_rate'),
      max_increase: z.number().min(0).max(1).default(0.005),
      max_ratio: z.number().min(1).default(1.5),
    })
    .strict(),
  z
    .object({
      metric: z.literal('latency'),
      quantile: z.number().gt(0).lt(1).default(0.99),
      max_ratio: z.number().min(1).default(1.2),
      max_increase_ms: z.number().min(0).default(10),
    })
    .strict(),
]);

const sticky = z
  .string()
  .regex(
    /^(header:[A-Za-z0-9!#$%&'*+.^_`|~-]+|cookie:[^\s;=]+|trace|request_id)$/,
    'must be "header:NAME", "cookie:NAME", "trace" or "request_id" (x-request-id)',
  );

/** A cron expression (croner's dialect: 5 fields, or 6 with seconds) and an IANA time zone, checked here. */
const cronText = z.string().superRefine((v, ctx) => {
  const issue = cronIssue(v, undefined);
  if (issue !== null) ctx.addIssue({ code: z.ZodIssueCode.custom, message: issue });
});
const timeZone = z.string().superRefine((v, ctx) => {
  const issue = cronIssue('* * * * *', v);
  if (issue !== null) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `unknown time zone "${v}"` });
});

const scheduleFields = {
  cron: cronText.describe('when each window opens, e.g. "0 10 * * 1-5" (croner syntax)'),
  for: durationMs.describe('how long each window lasts; a run never outlives its window'),
  timezone: timeZone.default('UTC').describe('IANA time zone of the cron expression, e.g. Europe/Berlin'),
};

/** An allowed window (`windows:`): days (croner's day-of-week field) and local hours in a time zone. */
const hhmm = z.string().regex(/^([01][0-9]|2[0-3]):[0-5][0-9]$/, 'must be "HH:MM" (24-hour), e.g. "02:00"');
const allowedWindow = z
  .object({
    days: z
      .string()
      .regex(/^[A-Za-z0-9*,\-/]+$/, 'must be a day-of-week list or range, e.g. "mon-fri", "sat,sun" or "*"')
      .default('*')
      .describe('days the window opens on (croner day-of-week syntax: mon-fri, sat,sun, 1-5, *)'),
    from: hhmm.describe('local time the window opens, "HH:MM"'),
    to: hhmm.describe('local time it closes, "HH:MM"; not after `from`: it closes the next day'),
    timezone: timeZone.default('UTC').describe('IANA time zone of from/to, e.g. Europe/Berlin'),
  })
  .strict()
  .superRefine((w, ctx) => {
    if (w.from === w.to)
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['to'], message: 'must differ from `from`' });
    const issue = windowIssue(w);
    if (issue !== null) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['days'], message: issue });
  });

/** A named schedule (top-level `schedules`): the experiments naming it take turns, one run per window. */
const namedSchedule = z
  .object({
    name,
    ...scheduleFields,
    order: z
      .enum(['in_turn', 'random'])
      .default('in_turn')
      .describe('which experiment runs in a window: in config order, or a seeded random pick'),
    seed: z.number().int().default(1).describe('seed of the random order (the same seed picks the same)'),
  })
  .strict();

const experiment = z
  .object({
    id: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'must be 1-63 lowercase letters, digits, "_", "." or "-"'),
    hypothesis: z.string().trim().min(1, 'must state the hypothesis the experiment tests'),
    match: z
      .object({
        listener: name.optional(),
        route: name.optional(),
        methods: z
          .array(z.string().regex(/^[A-Z]+$/, 'must be an upper-case HTTP method'))
          .min(1)
          .optional(),
        path_prefix: z.string().startsWith('/', 'must start with "/"').optional(),
        headers: z.record(z.string()).optional(),
      })
      .strict()
      .default({}),
    split: z
      .object({
        percent: z
          .union([armPercent, z.array(armPercent).min(2, RAMP_RULE).max(20, RAMP_RULE)], {
            // zod's own word for "none of the shapes" is "Invalid input": say which shapes.
            errorMap: (issue, ctx) =>
              issue.code === 'invalid_union'
                ? { message: `must be a number in (0, 50] or a list of 2-20 such numbers (a ramp)` }
                : { message: ctx.defaultError },
          })
          .describe('percent of matching requests in each arm; a list is an exposure ramp (README "Ramp")'),
        allow_above_cap: z.boolean().default(false),
        sticky: sticky.optional(),
      })
      .strict(),
    fault,
    inject: z.enum(['here', 'downstream']).default('here'),
    inject_at: z
      .array(name)
      .min(1)
      .optional()
      .describe(
        'with inject: downstream, the hops (listener or point names) that inject; default: every trusted hop',
      ),
    duration: durationMs.optional(),
    max_active_faults: z.number().int().positive().optional(),
    dry_run: z.boolean().default(false),
    enabled: z.boolean().default(true),
    schedule: z
      .union([z.object(scheduleFields).strict(), name])
      .optional()
      .describe(
        'run in windows: {cron, for, timezone}, or the name of a top-level schedule shared by experiments that take turns; between runs the experiment is "scheduled"',
      ),
    windows: z
      .array(allowedWindow)
      .min(1)
      .optional()
      .describe(
        'hours runs are allowed in (any of the windows): outside them no run starts (an arm is refused, the config start waits) and a run in progress ends when its window closes',
      ),
    guardrails: z
      .array(guardrail)
      .min(1, 'must list at least one guardrail')
      .default([{ metric: 'error_rate' }, { metric: 'latency' }]),
    confidence: z.number().gt(0.5).lt(1).default(0.99),
    min_samples: z.number().int().min(1).default(100),
    exclude_injected: z.boolean().default(true),
    error_statuses: z
      .array(z.number().int().min(100).max(599))
      .optional()
      .describe('HTTP statuses that count as errors (default: every 5xx)'),
    steady_state: steadyState,
    ramp: ramp.optional(),
    control_health: controlHealthSpec.optional(),
  })
  .strict();

/**
 * An in-process point (createFaultline): a place in an application's own code where Faultline decides and
 * observes (inbound: the app's request handler) or injects (outbound: an undici dispatcher or a grpc-js
 * client). Experiments name it in `match.listener`, as they name a listener.
 */
const point = z
  .object({
    name,
    role: z.enum(['inbound', 'outbound']),
    trust_assignment: z
      .boolean()
      .optional()
      .describe(
        'honour faultline.* baggage on incoming (inbound) or app-built outgoing (outbound) requests; default false for inbound, true for outbound',
      ),
  })
  .strict();

/**
 * Envoy's External Processing filter (ext_proc) as a host: a gRPC server Envoy calls once per HTTP
 * request. Experiments name it in `match.listener`, as they name a listener.
 */
const extProc = z
  .object({
    name: name.default('envoy'),
    address: z.string().ip('must be an IP address').default('127.0.0.1'),
    port: z.number().int().min(0).max(65535),
    trust_assignment: z
      .boolean()
      .default(false)
      .describe(
        'honour incoming faultline.* baggage (Envoy behind another Faultline hop); untrusted: strip it',
      ),
    max_hold_ms: z
      .number()
      .int()
      .min(1)
      .max(60_000)
      .default(150)
      .describe(
        "longest Faultline holds a request_headers reply to inject a delay: keep it below the filter's message_timeout (Envoy's default 200 ms)",
      ),
    envoy_fault_headers: z
      .boolean()
      .default(false)
      .describe(
        'delays (and timeouts) longer than max_hold_ms are handed to an Envoy fault filter after ext_proc through x-envoy-fault-delay-request / x-envoy-fault-abort-request headers (needs allow_envoy in the ext_proc mutation_rules)',
      ),
    header_value_field: z
      .enum(['raw_value', 'value'])
      .default('raw_value')
      .describe(
        'HeaderValue field of header mutations: raw_value for Envoy >= 1.27 (send_header_raw_value, the default), value for older Envoy',
      ),
  })
  .strict();

/** Fleet mode: replicas share experiment state, pooled statistics and the kill switch through Redis. */
const fleet = z
  .object({
    redis: z
      .string()
      .refine((s) => {
        try {
          const u = new URL(s);
          return (u.protocol === 'redis:' || u.protocol === 'rediss:') && u.hostname !== '';
        } catch {
          return false;
        }
      }, 'must be a redis:// or rediss:// URL with a host, e.g. redis://127.0.0.1:6379')
      .describe('Redis URL shared by every replica of the fleet'),
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'must be 1-63 of a-z 0-9 _ . - starting with a letter or digit')
      .describe('fleet name: replicas with the same name and Redis run one experiment set'),
    replica: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]{1,100}$/, 'must be 1-100 of A-Z a-z 0-9 _ . : -')
      .optional()
      .describe("this replica's name in the fleet view (default: hostname-pid)"),
    grant_ttl_ms: z
      .number()
      .int()
      .min(500)
      .max(60_000)
      .default(2000)
      .describe('injection needs a grant this fresh: a replica cut off from Redis stops injecting within it'),
    flush_ms: z
      .number()
      .int()
      .min(50)
      .max(1000)
      .default(200)
      .describe('how often outcome counts are pooled and the fleet state polled'),
  })
  .strict();

export const configSchema = z
  .object({
    listeners: z.array(listener).default([]),
    points: z.array(point).default([]).describe('in-process points (createFaultline): inbound and outbound'),
    ext_proc: extProc.optional().describe('Envoy ext_proc gRPC server (see README, "Envoy ext_proc")'),
    admin: admin.default({}),
    state_dir: z.string().min(1).default('.faultline-state'),
    drain_timeout_ms: z.number().int().min(0).max(600_000).default(10_000),
    max_duration: durationMs
      .optional()
      .describe('global guard: this long after start, every running experiment is killed (cause duration)'),
    access_log: z.boolean().default(false),
    injected_header: z.boolean().default(true).describe('mark injected responses with x-faultline-injected'),
    arm_header: z
      .boolean()
      .default(false)
      .describe(
        'mark responses of assigned requests with x-faultline-arm: <id>; group=canary|control (for load-test harnesses; reveals the control arm to clients)',
      ),
    webhook: z
      .object({ url: httpUrl.or(z.string().url()), timeout_ms: z.number().int().positive().default(2000) })
      .strict()
      .optional(),
    fleet: fleet.optional(),
    workers: z
      .union([z.literal('auto'), z.number().int().min(1).max(256)])
      .default(1)
      .describe(
        'processes serving the listeners (`faultline run`): N or auto (the cores available); 1 = no workers. The primary keeps the experiment state and the analyzers',
      ),
    workers_balance: z
      .enum(['kernel', 'round_robin'])
      .default('kernel')
      .describe(
        'how connections reach the workers: kernel = every worker accepts from the shared socket with its own accept_fanout descriptors (bursts drain fast; the split follows which worker is free, as Envoy without exact_balance); round_robin = the primary accepts and hands them out in turn (an even split; bursts drain one connection per worker loop turn)',
      ),
    tracing: z
      .object({
        enabled: z.boolean().default(false).describe('export a span per assigned request (off by default)'),
        endpoint: z
          .string()
          .url()
          .optional()
          .describe(
            'OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces (default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, $OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, else http://localhost:4318/v1/traces)',
          ),
        headers: z
          .record(z.string())
          .optional()
          .describe('headers sent with each export (default: $OTEL_EXPORTER_OTLP_HEADERS)'),
        sample_ratio: z
          .number()
          .min(0)
          .max(1)
          .optional()
          .describe(
            'share of assigned requests traced when the caller did not decide (default $OTEL_TRACES_SAMPLER_ARG, else 1); a sampled or unsampled incoming traceparent is followed',
          ),
        untouched_sample_ratio: z
          .number()
          .min(0)
          .max(1)
          .default(0)
          .describe(
            'share of untouched requests (in no arm) on proxy listeners that get a span too, for a baseline next to the arms (default 0: none)',
          ),
        service_name: z
          .string()
          .min(1)
          .optional()
          .describe('service.name of the spans (default $OTEL_SERVICE_NAME, else faultline)'),
        export_interval_ms: z
          .number()
          .int()
          .min(10)
          .max(60_000)
          .default(5000)
          .describe('batch export delay: spans are queued off the request path and sent this often'),
        max_queue: z
          .number()
          .int()
          .min(1)
          .max(1_000_000)
          .default(8192)
          .describe('spans queued for export at most; past that new spans are dropped, never waited for'),
      })
      .strict()
      .default({}),
    experiments: z.array(experiment).default([]),
    schedules: z
      .array(namedSchedule)
      .default([])
      .describe('named schedules; experiments that name one rotate through its windows'),
    journal: z
      .object({
        keep_runs: z
          .number()
          .int()
          .min(1)
          .max(100_000)
          .default(200)
          .describe('runs kept per experiment in state_dir/runs.jsonl (older ones are compacted away)'),
      })
      .strict()
      .default({})
      .describe(
        'the run journal: one record per finished run (faultline history, GET /experiments/{id}/runs)',
      ),
  })
  .strict()
  .superRefine(crossFieldChecks);

export type ConfigInput = z.input<typeof configSchema>;
export type ConfigSpec = z.output<typeof configSchema>;
export type ListenerSpec = ConfigSpec['listeners'][number];
export type PointSpec = ConfigSpec['points'][number];
export type ExtProcSpec = NonNullable<ConfigSpec['ext_proc']>;
export type RouteSpec = ListenerSpec['routes'][number];
export type ExperimentSpec = ConfigSpec['experiments'][number];
export type FaultSpec = ExperimentSpec['fault'];
export type GuardrailSpecInput = ExperimentSpec['guardrails'][number];

const SPLIT_CAP_PERCENT = 5;

/** Framing and hop-by-hop fields: an injected response's own, never configurable (HTTP/2 rejects them). */
const RESERVED_FAULT_HEADERS =
  /^(content-length|transfer-encoding|connection|keep-alive|te|trailer|upgrade|http2-settings|proxy-.*|x-faultline-injected)$/i;

function isValidHeaderValue(name: string, value: string): boolean {
  try {
    validateHeaderValue(name, value);
    return true;
  } catch {
    return false;
  }
}

/** Whether two bind addresses can collide on one port (a wildcard covers its family; `::` is dual-stack). */
function addressesOverlap(a: string, b: string): boolean {
  if (a === b || a === '::' || b === '::') return true;
  if (a === '0.0.0.0') return isIP(b) === 4;
  if (b === '0.0.0.0') return isIP(a) === 4;
  return false;
}

function crossFieldChecks(cfg: z.output<z.ZodObject<z.ZodRawShape>>, ctx: z.RefinementCtx): void {
  const c = cfg as unknown as ConfigSpec;
  const issue = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: z.ZodIssueCode.custom, path, message });

  if (c.fleet) {
    const fl = c.fleet;
    if (fl.flush_ms * 2 > fl.grant_ttl_ms)
      issue(
        ['fleet', 'flush_ms'],
        `must be at most half of fleet.grant_ttl_ms (${fl.grant_ttl_ms}) so grants renew in time`,
      );
    // Sticky error/timeout guardrails pool per session through a Redis bitmap; a latency guardrail's
    // per-session count needs each slow request judged against control's threshold of its moment.
    c.experiments.forEach((e, i) => {
      if (e.split.sticky === undefined) return;
      e.guardrails.forEach((g, j) => {
        if (g.metric === 'latency')
          issue(
            ['experiments', i, 'guardrails', j],
            'a latency guardrail cannot judge a sticky split in a fleet (one slow request per session would need every request judged against control at its own time, in one place); use error_rate/timeout_rate guardrails here (list them explicitly: the default includes latency), or drop split.sticky',
          );
      });
    });
  }

  // workers > 1 composes with everything one process runs: sticky splits send their outcomes one by one,
  // ramps are stepped by the primary, traffic totals and ext_proc outcomes travel in the batches
  // (src/cluster).

  const listenerNames = new Map<string, ListenerSpec>();
  c.listeners.forEach((l, i) => {
    if (listenerNames.has(l.name)) issue(['listeners', i, 'name'], `duplicate listener name "${l.name}"`);
    listenerNames.set(l.name, l);
    if (l.protocol === 'tls' && !l.tls) issue(['listeners', i, 'tls'], 'is required when protocol is "tls"');
    if (l.protocol !== 'tls' && l.tls) issue(['listeners', i, 'tls'], 'is only allowed with protocol "tls"');
    const routeNames = new Set<string>();
    l.routes.forEach((r, j) => {
      if (routeNames.has(r.name))
        issue(['listeners', i, 'routes', j, 'name'], `duplicate route name "${r.name}"`);
      routeNames.add(r.name);
      const https = r.upstream.startsWith('https:');
      if (r.upstream_protocol === 'h2' && !https)
        issue(['listeners', i, 'routes', j, 'upstream_protocol'], '"h2" needs an https upstream');
      if (r.upstream_protocol === 'h2c' && https)
        issue(['listeners', i, 'routes', j, 'upstream_protocol'], '"h2c" needs an http upstream');
    });
  });
  if (c.listeners.length === 0 && c.points.length === 0 && c.ext_proc === undefined)
    issue(['listeners'], 'must list at least one listener (or, in-process, one point; or ext_proc)');
  const pointRoles = new Map<string, 'inbound' | 'outbound'>();
  c.points.forEach((p, i) => {
    if (listenerNames.has(p.name) || pointRoles.has(p.name))
      issue(['points', i, 'name'], `"${p.name}" is already the name of a listener or point`);
    pointRoles.set(p.name, p.role);
  });
  const xp = c.ext_proc;
  if (xp !== undefined) {
    if (listenerNames.has(xp.name) || pointRoles.has(xp.name))
      issue(['ext_proc', 'name'], `"${xp.name}" is already the name of a listener or point`);
    if (xp.port !== 0) {
      if (c.listeners.some((l) => l.port === xp.port && addressesOverlap(l.address, xp.address)))
        issue(['ext_proc', 'port'], `${xp.port} is also a listener's port on an overlapping address`);
      if (c.admin.port === xp.port && addressesOverlap(c.admin.address, xp.address))
        issue(['ext_proc', 'port'], `${xp.port} is also admin.port on an overlapping address`);
    }
  }
  const ports = new Map<string, number>();
  c.listeners.forEach((l, i) => {
    if (l.port === 0) return;
    const key = `${l.address}:${l.port}`;
    if (ports.has(key))
      issue(['listeners', i, 'port'], `${key} is already used by listeners[${ports.get(key)}]`);
    ports.set(key, i);
  });
  // The admin port binds first; sharing a listener's port fails `run` with a bare EADDRINUSE.
  if (c.admin.port !== 0)
    c.listeners.forEach((l, i) => {
      if (l.port === c.admin.port && addressesOverlap(l.address, c.admin.address))
        issue(
          ['admin', 'port'],
          `${c.admin.port} is also listeners[${i}].port ("${l.name}") on an overlapping address (admin.address ${c.admin.address}, listeners[${i}].address ${l.address}): use another port`,
        );
    });

  const scheduleNames = new Set<string>();
  c.schedules.forEach((s, i) => {
    if (scheduleNames.has(s.name)) issue(['schedules', i, 'name'], `duplicate schedule name "${s.name}"`);
    scheduleNames.add(s.name);
  });
  const ids = new Set<string>();
  c.experiments.forEach((e, i) => {
    const at = (...p: (string | number)[]) => ['experiments', i, ...p];
    if (typeof e.schedule === 'string' && !scheduleNames.has(e.schedule))
      issue(at('schedule'), `no schedule named "${e.schedule}" in schedules`);
    if (ids.has(e.id)) issue(at('id'), `duplicate experiment id "${e.id}"`);
    ids.add(e.id);
    const splitSteps = typeof e.split.percent === 'number' ? [e.split.percent] : e.split.percent;
    const splitPath = (j: number) =>
      typeof e.split.percent === 'number' ? at('split', 'percent') : at('split', 'percent', j);
    // An exposure ramp never goes above the cap: every step is checked, not only the first.
    splitSteps.forEach((p, j) => {
      if (p > SPLIT_CAP_PERCENT && !e.split.allow_above_cap)
        issue(splitPath(j), `must be at most ${SPLIT_CAP_PERCENT} (set allow_above_cap: true to go higher)`);
    });
    for (const [value, path] of [
      ...splitSteps.map((p, j) => [p, splitPath(j)] as const),
      [e.fault.percent, at('fault', 'percent')] as const,
    ])
      if (Math.abs(value * 100 - Math.round(value * 100)) > 1e-9)
        issue(path, 'must be a multiple of 0.01 (draws are made from 10,000 buckets)');
    const role = e.match.listener !== undefined ? pointRoles.get(e.match.listener) : undefined;
    if (xp !== undefined && e.match.listener === xp.name) {
      if (e.match.route !== undefined)
        issue(
          at('match', 'route'),
          `ext_proc "${xp.name}" has no routes (scope ext_proc per route in Envoy)`,
        );
      if (e.inject === 'here') {
        const why = extProcCannotInject(e.fault, xp);
        if (why !== null)
          issue(at('fault'), `cannot be injected through Envoy ext_proc "${xp.name}": ${why}`);
      }
    } else if (role !== undefined) {
      if (e.match.route !== undefined)
        issue(at('match', 'route'), `point "${e.match.listener}" has no routes (routes belong to listeners)`);
      // Faults that act on the response's bytes need a host that carries them (a proxy listener or
      // an undici dispatcher); an inbound handler writes its own response.
      if (role === 'inbound' && e.inject === 'here' && actsOnResponse(compileFault(e.fault)))
        issue(
          at('fault', 'kind'),
          `a fault that acts on the response (${e.fault.kind}) cannot be injected at inbound point "${e.match.listener}": inject it downstream (an outbound point or an egress listener)`,
        );
    } else if (e.match.listener !== undefined) {
      const l = listenerNames.get(e.match.listener);
      if (!l) issue(at('match', 'listener'), `no listener or point named "${e.match.listener}"`);
      else if (e.match.route !== undefined && !l.routes.some((r) => r.name === e.match.route))
        issue(at('match', 'route'), `listener "${l.name}" has no route named "${e.match.route}"`);
    } else if (
      e.match.route !== undefined &&
      !c.listeners.some((l) => l.routes.some((r) => r.name === e.match.route))
    )
      issue(at('match', 'route'), `no route named "${e.match.route}"`);
    if (e.inject_at !== undefined) {
      if (e.inject !== 'downstream') issue(at('inject_at'), 'needs inject: downstream');
      e.inject_at.forEach((n, j) => {
        if (!listenerNames.has(n) && !pointRoles.has(n) && n !== xp?.name)
          issue(at('inject_at', j), `no listener or point named "${n}"`);
      });
    }
    const f = e.fault;
    // Rules between a fault's own fields live with the fault (src/faults/<kind>.ts, via the registry).
    for (const i of faultIssues(f)) issue(at('fault', ...i.path), i.message);
    // Response headers a fault writes (any kind that has them): valid, and never framing ones.
    if ('headers' in f && f.headers)
      for (const [h, v] of Object.entries(f.headers)) {
        if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(h))
          issue(at('fault', 'headers', h), 'is not a valid header name');
        else if (RESERVED_FAULT_HEADERS.test(h))
          issue(
            at('fault', 'headers', h),
            'is set by Faultline (framing or hop-by-hop) and cannot be configured',
          );
        else if (!isValidHeaderValue(h, v))
          issue(at('fault', 'headers', h), 'has a value with characters not allowed in a header');
      }
    steadyStateChecks(e, c, at, issue);
  });
}

/**
 * Why `f` cannot be injected through ext_proc, or null. Envoy carries the bytes, so faults that act on
 * the response body are out of reach, and Envoy answers a request_headers message within its
 * message_timeout: longer holds need Envoy's own fault filter (envoy_fault_headers).
 */
function extProcCannotInject(f: FaultSpec, xp: ExtProcSpec): string | null {
  // Read from what the fault declares (src/faults), never from its kind.
  const fault = compileFault(f);
  if (actsOnResponse(fault))
    return `${f.kind} acts on the response bytes, which Envoy carries; inject it at a Faultline proxy listener or an outbound point`;
  if (fault.dropsRequest)
    return `ext_proc cannot reset a stream or hang a request (${f.kind}${'hang' in f && f.hang ? ', hang' : ''}): it can only answer or continue; use an abort (e.g. status 503)`;
  const longest = fault.fixedHoldMs;
  if (longest > xp.max_hold_ms && !xp.envoy_fault_headers)
    return `${longest} ms is longer than ext_proc.max_hold_ms (${xp.max_hold_ms}); set ext_proc.envoy_fault_headers: true and put Envoy's fault filter after ext_proc`;
  return null;
}

/** Steady-state probes name real listeners/routes; a ramp's steps fit its fault (src/probes). */
function steadyStateChecks(
  e: ExperimentSpec,
  c: ConfigSpec,
  at: (...p: (string | number)[]) => (string | number)[],
  issue: (path: (string | number)[], message: string) => void,
): void {
  e.steady_state.forEach((p, j) => {
    const t = p.traffic;
    if (t === undefined) return;
    if (t.point !== undefined) {
      const pt = c.points.find((x) => x.name === t.point);
      if (!pt) issue(at('steady_state', j, 'traffic', 'point'), `no in-process point named "${t.point}"`);
      else if (pt.role !== 'inbound')
        issue(
          at('steady_state', j, 'traffic', 'point'),
          `point "${t.point}" is outbound: traffic probes watch inbound points (the service's own requests)`,
        );
      return;
    }
    const l = c.listeners.find((x) => x.name === t.listener);
    if (!l) issue(at('steady_state', j, 'traffic', 'listener'), `no listener named "${t.listener}"`);
    else if (t.route !== undefined && !l.routes.some((r) => r.name === t.route))
      issue(
        at('steady_state', j, 'traffic', 'route'),
        `listener "${l.name}" has no route named "${t.route}"`,
      );
  });
  const r = e.ramp;
  const exposure = typeof e.split.percent === 'number' ? null : e.split.percent;
  if (exposure !== null) {
    // An exposure ramp widens the split only: its steps increase, and the fault stays as written.
    for (let i = 1; i < exposure.length; i++)
      if (exposure[i]! <= exposure[i - 1]!) {
        issue(at('split', 'percent', i), 'exposure steps must increase');
        break;
      }
    if (r?.steps !== undefined)
      issue(
        at('ramp', 'steps'),
        'cannot be combined with an exposure ramp (split.percent as a list): ramp one thing at a time',
      );
    return;
  }
  if (r === undefined) return;
  if (r.steps === undefined) {
    issue(at('ramp', 'steps'), 'is required (or make split.percent a list for an exposure ramp)');
    return;
  }
  // What a ramp steps is declared by the fault (src/faults: an intensity, else the fault percent).
  const ri = rampIntensity(e.fault);
  for (const i of ri.issues(r.steps)) issue(at('ramp', ...i.path), i.message);
  for (let i = 1; i < r.steps.length; i++)
    if (ri.decreasing ? r.steps[i]! >= r.steps[i - 1]! : r.steps[i]! <= r.steps[i - 1]!) {
      issue(
        at('ramp', 'steps', i),
        ri.decreasing ? `steps must decrease (a smaller ${ri.unit} is more intense)` : 'steps must increase',
      );
      break;
    }
}
