/**
 * The outbound in-process host for @grpc/grpc-js clients (`{ interceptors: [fl.grpcInterceptor('ledger')] }`):
 * calls made while handling a request that takes part in an experiment inherit its arm, carry it on in
 * `baggage` metadata, and canary calls get the fault here: a status instead of the call (abort,
 * timeout at the caller's deadline, reset as CANCELLED) or a delay before it starts. The call object is
 * the FaultTarget; grpc-js calls requester and listener methods detached, so each assigned call also
 * gets small bound wrappers (grpc-js allocates per call anyway; the untouched path adds nothing).
 */
import {
  InterceptingCall,
  Metadata,
  type InterceptingListener,
  type Interceptor,
  type InterceptorOptions,
  type Listener,
  type StatusObject,
} from '@grpc/grpc-js';
import { performance } from 'node:perf_hooks';
import {
  GRPC_CANCELLED,
  GRPC_INTERNAL,
  GRPC_UNAVAILABLE,
  OUTCOME_CLIENT_ABORT,
  grpcCodeIndex,
  grpcCodeOutcome,
  grpcStatusClass,
  type Arm,
  type Outcome,
} from '../core/vocab.js';
import type { Engine } from '../engine/engine.js';
import { cancelHold, startHold, TargetState, type HeldTarget } from '../engine/hold.js';
import type { PointPlan, PointRef } from '../engine/point.js';
import type { Assignment, RequestView } from '../engine/target.js';
import type { ExperimentRuntime } from '../experiments/runtime.js';
import { actsOnResponse } from '../faults/fault.js';
import { log } from '../telemetry/log.js';
import { currentAssignment } from './context.js';

/** HTTP status of an abort fault -> the gRPC code a gRPC client would see (gRPC's http-grpc mapping). */
function grpcCodeOfHttp(status: number): number {
  switch (status) {
    case 400:
      return GRPC_INTERNAL;
    case 401:
      return 16;
    case 403:
      return 7;
    case 404:
      return 12;
    case 429:
    case 502:
    case 503:
    case 504:
      return GRPC_UNAVAILABLE;
    default:
      return 2; // UNKNOWN
  }
}

type MetadataNext = (metadata: Metadata, listener: InterceptingListener | Listener) => void;

class GrpcCall extends TargetState implements HeldTarget, RequestView {
  readonly isGrpc = true;
  readonly method = 'POST';
  readonly path: string;
  rawHeaders: string[] = [];

  readonly engine: Engine;
  readonly plan: PointPlan;
  private readonly deadlineAtMs: number;
  private readonly inherited: ExperimentRuntime | null;
  private readonly inheritedArm: Arm;
  private readonly inheritedRunId: number;
  private readonly inheritedBaggage: string | null;
  /** The inbound request's slot: a traced one gets a child span for this call. */
  private readonly inheritedFrom: Assignment | null;
  private readonly startMs = performance.now();
  private metadata: Metadata | null = null;
  private listener: InterceptingListener | null = null;
  private next: MetadataNext | null = null;
  private cancelled = false;
  done = false;

  constructor(
    engine: Engine,
    plan: PointPlan,
    options: InterceptorOptions,
    inherited: ReturnType<typeof currentAssignment>,
  ) {
    super();
    this.engine = engine;
    this.plan = plan;
    this.path = options.method_definition.path;
    const d = options.deadline;
    this.deadlineAtMs = d === undefined ? -1 : d instanceof Date ? d.getTime() : d === Infinity ? -1 : d;
    this.inherited = inherited?.exp ?? null;
    this.inheritedArm = inherited?.arm ?? 0;
    this.inheritedRunId = inherited?.runId ?? 0;
    this.inheritedBaggage = inherited?.baggageOut ?? null;
    this.inheritedFrom = inherited ?? null;
  }

  // ---- Requester --------------------------------------------------------------------------------
  start(metadata: Metadata, listener: InterceptingListener, next: MetadataNext): void {
    this.metadata = metadata;
    this.listener = listener;
    this.next = next;
    const plan = this.plan;
    if (this.inherited !== null) {
      this.engine.inherit(
        plan,
        this,
        this.inherited,
        this.inheritedArm,
        this.inheritedRunId,
        this,
        this.inheritedFrom ?? undefined,
      );
      if (this.exp !== null && this.inheritedBaggage !== null) this.baggageOut = this.inheritedBaggage;
    } else {
      const raw: string[] = [];
      for (const [k, v] of Object.entries(metadata.getMap())) if (typeof v === 'string') raw.push(k, v);
      this.rawHeaders = raw;
      this.engine.decide(plan, plan.candidates, this, this);
    }
    if (this.baggageOut === '') metadata.remove('baggage');
    else if (this.baggageOut !== null) metadata.set('baggage', this.baggageOut);
    const exp = this.exp;
    if (exp === null) return next(metadata, listener);
    if (this.injectNow && actsOnResponse(exp.fault)) {
      // Response-byte faults need a host that carries the bytes (a Faultline proxy in front of the
      // service); here the call takes no part rather than count as faulted without the fault.
      warnOnce(exp.id, plan.name);
      this.exp = null;
      return next(metadata, listener);
    }
    if (this.injectNow) this.engine.inject(this);
    else this.forward();
  }

  sendMessage(message: unknown, next: (message: unknown) => void): void {
    next(message);
  }

  halfClose(next: () => void): void {
    next();
  }

  cancel(next: () => void): void {
    this.cancelled = true;
    if (this.holdTimer === null || this.done) return next();
    // Cancelled while a fault held the call: nothing went out; end it here.
    const outcome = this.injected
      ? (this.exp as ExperimentRuntime).fault.callerLeftDuringHold
      : OUTCOME_CLIENT_ABORT;
    this.finish(outcome, GRPC_CANCELLED);
    this.deliver(GRPC_CANCELLED, 'Cancelled on client');
  }

  // ---- Listener (of the forwarded call) ------------------------------------------------------------
  onReceiveStatus(status: StatusObject, next: (status: StatusObject) => void): void {
    if (!this.done) {
      const outcome =
        status.code === GRPC_CANCELLED && this.cancelled
          ? OUTCOME_CLIENT_ABORT
          : grpcCodeOutcome(status.code);
      this.finish(outcome, status.code);
    }
    next(status);
  }

  // ---- FaultTarget ------------------------------------------------------------------------------
  forward(): void {
    if (this.done || this.next === null) return;
    const next = this.next;
    this.next = null;
    if (this.exp === null) return next(this.metadata as Metadata, this.listener as InterceptingListener);
    next(
      this.metadata as Metadata,
      {
        onReceiveStatus: (status: StatusObject, nextStatus: (s: StatusObject) => void) =>
          this.onReceiveStatus(status, nextStatus),
      } as Listener,
    );
  }

  hold(ms: number): void {
    if (!this.done) startHold(this, ms);
  }

  reply(status: number, _headers: Readonly<Record<string, string>>, body: string): void {
    this.replyGrpcStatus(grpcCodeOfHttp(status), body.trim());
  }

  replyGrpcStatus(code: number, message: string): void {
    if (this.done) return;
    this.finish(grpcCodeOutcome(code), code);
    this.deliver(code, message);
  }

  reset(outcome: Outcome): void {
    if (this.done) return;
    this.finish(outcome, GRPC_CANCELLED);
    // What a grpc-js client reports for a stream reset with CANCEL (the proxy's reset on HTTP/2).
    this.deliver(GRPC_CANCELLED, 'faultline: stream reset (injected fault)');
  }

  callerDeadlineMs(): number {
    return this.deadlineAtMs < 0 ? -1 : Math.max(0, this.deadlineAtMs - Date.now());
  }

  // Faults that act on the response's bytes are not injected at this host (see start()).
  holdResponse(): void {}
  releaseResponse(): void {}
  writeResponseData(): void {}
  pauseResponse(): void {}
  resumeResponse(): void {}
  endResponse(): void {}
  breakResponse(): void {
    this.replyGrpcStatus(GRPC_INTERNAL, 'faultline: response cut (injected fault)');
  }

  /**
   * The status of a call the fault answered, on a later tick: a real answer never arrives inside the
   * caller's own start(), and grpc-js clients attach their 'status' listeners after it returns.
   */
  private deliver(code: number, details: string): void {
    const listener = this.listener;
    if (listener !== null) setImmediate(deliverStatus, listener, { code, details, metadata: new Metadata() });
  }

  private finish(outcome: Outcome, grpcCode: number): void {
    this.done = true;
    cancelHold(this);
    // gRPC answers ride on HTTP 200: filed by their code's HTTP class, as at the proxy.
    this.engine.record(
      this,
      this.plan.name,
      outcome,
      grpcStatusClass(grpcCode),
      grpcCodeIndex(true, grpcCode),
      performance.now() - this.startMs,
    );
  }
}

function deliverStatus(listener: InterceptingListener, status: StatusObject): void {
  listener.onReceiveStatus(status);
}

const warned = new Set<string>();
function warnOnce(experiment: string, point: string): void {
  const key = `${experiment}\u0000${point}`;
  if (warned.has(key)) return;
  warned.add(key);
  log('warn', 'fault acts on response bytes; not injected at a grpc-js point', { experiment, point });
}

/** The grpc-js client interceptor of the outbound point `ref` names. */
export function grpcInterceptor(engine: Engine, ref: PointRef): Interceptor {
  return function faultlineGrpc(options: InterceptorOptions, nextCall) {
    const plan = ref.plan;
    const inherited = currentAssignment();
    // Untouched path: grpc-js's own call, nothing added.
    if (inherited === undefined && plan.candidates.length === 0) return nextCall(options) as InterceptingCall;
    const call = new GrpcCall(engine, plan, options, inherited);
    // grpc-js calls requester methods detached from their object: one small bound requester per call.
    return new InterceptingCall(nextCall(options), {
      start: (metadata, listener, next) => call.start(metadata, listener, next),
      sendMessage: (message, next) => call.sendMessage(message, next),
      halfClose: (next) => call.halfClose(next),
      cancel: (next) => call.cancel(next),
    });
  };
}
