/**
 * Config of an experiment's steady-state probes (`steady_state:`) and breaking-point ramp (`ramp:`).
 * Kept apart from schema.ts (which imports it) so the probe vocabulary can grow without touching the
 * shared schema; the same duration grammar (src/core/duration.ts) applies.
 */
import { z } from 'zod';
import { parseDurationMs } from '../core/duration.js';

const DURATION_MESSAGE = 'must be a duration like "500ms", "30s", "10m" or "2h", or a number of milliseconds';
const MAX_TIMER_MS = 2 ** 31 - 1;

const duration = z
  .union([z.number(), z.string()], { errorMap: () => ({ message: DURATION_MESSAGE }) })
  .transform((v, ctx) => {
    const ms = typeof v === 'number' ? v : parseDurationMs(v);
    if (!(ms > 0) || !Number.isFinite(ms) || ms > MAX_TIMER_MS) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: DURATION_MESSAGE });
      return z.NEVER;
    }
    return Math.round(ms);
  });

const probeName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'must be 1-63 characters of letters, digits, "_", "." or "-"');

const anyUrl = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}, 'must be an http(s) URL');

const regex = z.string().refine((s) => {
  try {
    new RegExp(s);
    return true;
  } catch {
    return false;
  }
}, 'must be a valid regular expression');

/** A tolerance: the value must lie in [min, max] (either bound optional, at least one given). */
const bounds = {
  min: z.number().optional().describe('the probe fails when the value is below this'),
  max: z.number().optional().describe('the probe fails when the value is above this'),
};

const httpProbe = z
  .object({
    url: anyUrl,
    method: z.enum(['GET', 'HEAD', 'POST']).default('GET'),
    headers: z.record(z.string()).optional(),
    expect_status: z
      .union([z.number().int().min(100).max(599), z.array(z.number().int().min(100).max(599)).min(1)])
      .default(200)
      .describe('the status (or any of the statuses) a healthy answer has'),
    body_regex: regex.optional().describe('the body must match this regular expression'),
    json_path: z
      .string()
      .regex(/^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/, 'must be dotted keys like "checks.db.latency_ms"')
      .optional()
      .describe('a value in the JSON body (dotted keys; array indexes as numbers)'),
    equals: z
      .union([z.string(), z.number(), z.boolean()])
      .optional()
      .describe('with json_path: the value must equal this'),
    ...bounds,
    max_latency_ms: z.number().positive().optional().describe('the answer must come within this'),
    timeout_ms: z.number().int().positive().max(60_000).default(2000),
  })
  .strict();

const prometheusProbe = z
  .object({
    url: anyUrl.describe('the Prometheus server (its /api/v1/query is asked)'),
    query: z.string().min(1).describe('a PromQL instant query; every series it returns must be in bounds'),
    ...bounds,
    timeout_ms: z.number().int().positive().max(60_000).default(2000),
  })
  .strict();

const trafficProbe = z
  .object({
    listener: probeName.optional().describe('a proxy listener (or give `point`)'),
    point: probeName.optional().describe('an in-process point (createFaultline) instead of a listener'),
    route: probeName.optional().describe('default: every route of the listener'),
    metric: z
      .enum(['error_rate', 'p99_ms', 'throughput'])
      .describe(
        'error_rate: share of answers that were 5xx or no answer; p99_ms: 99th percentile duration; throughput: requests per second',
      ),
    window: duration.default(60_000).describe('the sliding window the metric is computed over'),
    ...bounds,
    min_requests: z
      .number()
      .int()
      .min(1)
      .default(20)
      .describe('error_rate and p99_ms are not judged (hold) with fewer requests in the window'),
  })
  .strict()
  .superRefine((t, ctx) => {
    if ((t.listener === undefined) === (t.point === undefined))
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'needs exactly one of "listener" or "point"' });
    if (t.point !== undefined && t.route !== undefined)
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['route'],
        message: 'points have no routes (routes belong to listeners)',
      });
  });

const WHEN = ['before', 'during', 'after'] as const;

export const steadyStateProbe = z
  .object({
    name: probeName,
    http: httpProbe.optional(),
    prometheus: prometheusProbe.optional(),
    traffic: trafficProbe.optional(),
    when: z
      .array(z.enum(WHEN))
      .min(1)
      .default([...WHEN])
      .describe('before: gate the start; during: stop condition; after: recovery check'),
    every: duration.default(5000).describe('during: how often the probe is checked'),
    error_limit: z
      .number()
      .int()
      .min(1)
      .max(100)
      .default(3)
      .describe(
        'during: consecutive evaluation errors (timeout, server down) that count as a breach; an error never passes',
      ),
    settle: duration.optional().describe('after: wait this long after the run ends before the first check'),
    recovery_window: duration
      .default(30_000)
      .describe('after: keep checking (every `every`) this long for the probe to hold again'),
  })
  .strict()
  .superRefine((p, ctx) => {
    const kinds = [p.http, p.prometheus, p.traffic].filter((k) => k !== undefined).length;
    if (kinds !== 1)
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        message: 'needs exactly one of "http", "prometheus" or "traffic"',
      });
    const b = p.prometheus ?? p.traffic;
    if (b !== undefined && b.min === undefined && b.max === undefined)
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'needs "min" and/or "max"' });
    for (const o of [p.http, p.prometheus, p.traffic])
      if (o?.min !== undefined && o.max !== undefined && o.min > o.max)
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: '"min" must be <= "max"' });
    if (p.http && (p.http.equals !== undefined || p.http.min !== undefined || p.http.max !== undefined))
      if (p.http.json_path === undefined)
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          path: ['http', 'json_path'],
          message: 'is required with "equals", "min" or "max"',
        });
    if (new Set(p.when).size !== p.when.length)
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['when'], message: 'lists a phase twice' });
  });

export const steadyState = z
  .array(steadyStateProbe)
  .default([])
  .superRefine((probes, ctx) => {
    const seen = new Set<string>();
    probes.forEach((p, i) => {
      if (seen.has(p.name))
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          path: [i, 'name'],
          message: `duplicate probe name "${p.name}"`,
        });
      seen.add(p.name);
    });
  })
  .describe('steady-state probes: checked before the run (gate), during it (stop conditions) and after');

/** Stepped fault intensity: find the breaking point (README "Steady state and breaking point"). */
export const ramp = z
  .object({
    steps: z
      .array(z.number().min(0))
      .min(2, 'needs at least two steps')
      .max(20)
      .optional()
      .describe(
        "the fault's magnitude per step: latency ms, abort/reset/timeout/... percent, throttle bytes_per_s; leave out for an exposure ramp (split.percent as a list)",
      ),
    min_canary_per_step: z
      .union([z.literal('auto'), z.number().int().min(10)])
      .default('auto')
      .describe(
        'canary requests judged before a step may advance; auto: enough for 90% power against a breach of the guardrail size',
      ),
    on_breach: z
      .enum(['rollback', 'plateau'])
      .default('rollback')
      .describe('rollback: kill at the first step that breaks; plateau: go back to the last step that held'),
    bisect: z
      .number()
      .int()
      .min(0)
      .max(10)
      .default(0)
      .describe(
        'after a break, this many extra steps halving the gap between the last step that held and the first that broke (each at the same per-step alpha: the split counts them)',
      ),
  })
  .strict();

/** The control arm's health bounds (src/experiments/control-health.ts). */
export const controlHealthSpec = z
  .object({
    max_error_rate: z
      .number()
      .gt(0)
      .lt(1)
      .optional()
      .describe(
        "control's error rate (any request not answered OK) above this makes a held run inconclusive; default: the max of a traffic error_rate probe, else 0.05",
      ),
    max_timeout_rate: z.number().gt(0).lt(1).optional().describe('the same for timeouts'),
    min_requests: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe('control requests needed before its health is judged (default: min_samples)'),
  })
  .strict()
  .describe('when the control arm itself is unhealthy, a run is not called held');

export type SteadyStateProbeSpec = z.output<typeof steadyStateProbe>;
export type RampSpec = z.output<typeof ramp>;
