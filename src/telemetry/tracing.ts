/**
 * OpenTelemetry traces (config `tracing`, off by default): one span per request assigned to an
 * experiment arm (canary and control), continuing the incoming W3C `traceparent`, with the feature-flag
 * semantic conventions (feature_flag.key = the experiment, feature_flag.result.variant = canary|control,
 * feature_flag.provider.name = faultline, feature_flag.context.id = the hashed sticky key) and Faultline's
 * own attributes (faultline.fault.kind, faultline.injected, the injected delay and status). Spans are
 * exported with the OpenTelemetry JS SDK: a BatchSpanProcessor queues them and an OTLP/HTTP exporter sends
 * them on a timer, off the request path. With tracing off the engine's tracer is null: one comparison.
 * Untouched requests (outside every arm) get a span only on the proxy's listeners and only when
 * `untouched_sample_ratio` draws them (default 0: none). An in-process outbound call that inherits the
 * arm of the inbound request it runs for gets a CLIENT span, the inbound span's child. Holds (latency,
 * timeout, a held response) are span events: faultline.hold.start (ms) and faultline.hold.end (elapsed,
 * released by a kill, or cancelled); a kill is an event on every span of the experiment in flight.
 */
import {
  SpanKind,
  SpanStatusCode,
  ROOT_CONTEXT,
  trace,
  type Context,
  type Span,
  type TextMapGetter,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';
import type { ConfigSpec } from '../config/schema.js';
import { rawHeader } from '../core/raw-headers.js';
import { GRPC_CODE_LABELS, GROUP_NAMES, OUTCOME_OK, OUTCOMES, STATUS_CLASSES } from '../core/vocab.js';
import type { Outcome } from '../core/vocab.js';
import type { EngineTracer } from '../engine/engine.js';
import type { HoldEnd } from '../engine/hold.js';
import type { Assignment, FaultTarget, RequestView } from '../engine/target.js';
import type { ExperimentEvent } from '../experiments/table.js';

export type TracingSpec = ConfigSpec['tracing'];

/** Requests in flight with a span at most; past that new ones go untraced (memory stays bounded). */
const MAX_LIVE = 100_000;

const rawGetter: TextMapGetter<readonly string[]> = {
  keys: (raw) => raw.filter((_, i) => i % 2 === 0).map((k) => k.toLowerCase()),
  get: (raw, key) => rawHeader(raw, key),
};

export class OtelRequestTracer implements EngineTracer {
  private readonly provider: BasicTracerProvider;
  private readonly tracer: ReturnType<BasicTracerProvider['getTracer']>;
  private readonly propagator = new W3CTraceContextPropagator();
  /** Live spans by the host's per-request slot; removed when the request is recorded. */
  private readonly live = new Map<Assignment, Span>();

  /** Share of untouched proxy requests traced (0: none, the default). */
  private readonly untouchedRatio: number;

  constructor(spec: TracingSpec, version: string, env: NodeJS.ProcessEnv = process.env) {
    this.untouchedRatio = spec.untouched_sample_ratio;
    const ratioEnv = Number(env['OTEL_TRACES_SAMPLER_ARG']);
    const ratio =
      spec.sample_ratio ?? (Number.isFinite(ratioEnv) && env['OTEL_TRACES_SAMPLER_ARG'] ? ratioEnv : 1);
    // Without `url` and `headers` the exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT / _HEADERS.
    const exporter = new OTLPTraceExporter({
      ...(spec.endpoint !== undefined ? { url: spec.endpoint } : {}),
      ...(spec.headers !== undefined ? { headers: spec.headers } : {}),
    });
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({
        'service.name': spec.service_name ?? env['OTEL_SERVICE_NAME'] ?? 'faultline',
        'service.version': version,
      }),
      sampler: new ParentBasedSampler({
        root: new TraceIdRatioBasedSampler(Math.min(1, Math.max(0, ratio))),
      }),
      spanProcessors: [
        new BatchSpanProcessor(exporter, {
          scheduledDelayMillis: spec.export_interval_ms,
          maxQueueSize: spec.max_queue,
          maxExportBatchSize: Math.min(512, spec.max_queue),
        }),
      ],
    });
    this.tracer = this.provider.getTracer('faultline', version);
  }

  start(slot: Assignment, view: RequestView): void {
    if (slot.exp === null || this.live.size >= MAX_LIVE) return;
    this.open(slot, view, SpanKind.SERVER, this.propagator.extract(ROOT_CONTEXT, view.rawHeaders, rawGetter));
  }

  inherited(slot: Assignment, view: RequestView, from: Assignment): void {
    const parent = this.live.get(from);
    // An inbound request without a span (sampled out, or past MAX_LIVE) has untraced calls too, as a
    // parent-based sampler would decide.
    if (slot.exp === null || parent === undefined || this.live.size >= MAX_LIVE) return;
    const span = this.open(slot, view, SpanKind.CLIENT, trace.setSpan(ROOT_CONTEXT, parent));
    span?.setAttribute('faultline.inherited', true);
  }

  startUntouched(slot: Assignment, view: RequestView): void {
    if (this.untouchedRatio === 0 || Math.random() >= this.untouchedRatio || this.live.size >= MAX_LIVE)
      return;
    const parent = this.propagator.extract(ROOT_CONTEXT, view.rawHeaders, rawGetter);
    const q = view.path.indexOf('?');
    const span = this.tracer.startSpan(
      view.method,
      {
        kind: SpanKind.SERVER,
        attributes: {
          'http.request.method': view.method,
          'url.path': q >= 0 ? view.path.slice(0, q) : view.path,
          'faultline.untouched': true,
        },
      },
      parent,
    );
    if (span.isRecording()) this.live.set(slot, span);
  }

  private open(slot: Assignment, view: RequestView, kind: SpanKind, parent: Context): Span | null {
    const exp = slot.exp as NonNullable<Assignment['exp']>;
    const q = view.path.indexOf('?');
    const span = this.tracer.startSpan(
      view.method,
      {
        kind,
        attributes: {
          'feature_flag.key': exp.id,
          'feature_flag.result.variant': GROUP_NAMES[slot.arm],
          'feature_flag.provider.name': 'faultline',
          ...(exp.stickyKind !== null
            ? { 'feature_flag.context.id': (slot.sessionKey >>> 0).toString(16).padStart(8, '0') }
            : {}),
          'http.request.method': view.method,
          'url.path': q >= 0 ? view.path.slice(0, q) : view.path,
          'faultline.fault.kind': exp.spec.fault.kind,
          'faultline.injected': false,
        },
      },
      parent,
    );
    // An unsampled span records nothing: keep no state for it.
    if (!span.isRecording()) return null;
    this.live.set(slot, span);
    return span;
  }

  holdStarted(t: FaultTarget, ms: number): void {
    this.live.get(t)?.addEvent('faultline.hold.start', { 'faultline.hold.ms': ms });
  }

  holdEnded(t: FaultTarget, how: HoldEnd): void {
    this.live.get(t)?.addEvent('faultline.hold.end', { 'faultline.hold.end': how });
  }

  injected(t: FaultTarget): void {
    const span = this.live.get(t);
    const exp = t.exp;
    if (span === undefined || exp === null) return;
    const f = exp.spec.fault as { kind: string; ms?: number; status?: number; grpc_status?: number };
    span.setAttribute('faultline.injected', true);
    if (f.ms !== undefined) span.setAttribute('faultline.fault.delay_ms', f.ms);
    if (f.status !== undefined) span.setAttribute('faultline.fault.status', f.status);
    if (f.grpc_status !== undefined) span.setAttribute('faultline.fault.grpc_status', f.grpc_status);
    span.addEvent('faultline.fault.start', { 'faultline.fault.kind': f.kind });
  }

  end(slot: Assignment, hop: string, outcome: Outcome, statusClass: number, grpcCode: number): void {
    const span = this.live.get(slot);
    if (span === undefined) return;
    this.live.delete(slot);
    span.setAttribute('faultline.hop', hop);
    span.setAttribute('faultline.outcome', OUTCOMES[outcome] as string);
    span.setAttribute('faultline.status_class', STATUS_CLASSES[statusClass] as string);
    if (grpcCode > 0) span.setAttribute('rpc.grpc.status_code', GRPC_CODE_LABELS[grpcCode] as string);
    if (outcome !== OUTCOME_OK) span.setStatus({ code: SpanStatusCode.ERROR, message: OUTCOMES[outcome] });
    span.end();
  }

  /** A kill: every live span of that experiment gets an event (its held fault is being released). */
  onEvent(e: ExperimentEvent): void {
    if (e.type !== 'killed' || e.experiment === undefined) return;
    for (const [slot, span] of this.live)
      if (slot.exp?.id === e.experiment)
        span.addEvent('faultline.kill', {
          'faultline.kill.cause': e.cause ?? 'manual',
          'faultline.kill.reason': e.reason ?? '',
        });
  }

  /** Sends what is queued (bounded by the exporter's own timeout) and stops. */
  async shutdown(): Promise<void> {
    await this.provider.shutdown();
  }
}
