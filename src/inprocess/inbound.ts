/**
 * The inbound in-process host: wraps an application's own request handler (`fl.inbound('checkout',
 * handler)`). It splits and observes the service's requests (the ChAP observation point) and, for
 * experiments that inject here, starts request-leg faults before the handler runs. The handler runs
 * inside the request's assignment context, so outbound calls it makes inherit the arm.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import {
  HEADER_ARM,
  OUTCOME_CLIENT_ABORT,
  OUTCOME_ERROR,
  OUTCOME_OK,
  OUTCOME_RESET,
  OUTCOME_TIMEOUT,
  STATUS_CLASS_NONE,
  statusClassIndex,
  type Outcome,
  grpcStatusHeaders,
} from '../core/vocab.js';
import { rawHeader } from '../core/raw-headers.js';
import type { Engine } from '../engine/engine.js';
import { cancelHold, startHold, TargetState, type HeldTarget } from '../engine/hold.js';
import type { PointPlan, PointRef } from '../engine/point.js';
import type { RequestView } from '../engine/target.js';
import type { ExperimentRuntime } from '../experiments/runtime.js';
import { assignmentContext } from './context.js';
import { addMarks } from './marks.js';
import type { PointTraffic } from '../telemetry/point-traffic.js';

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** Back-reference from the response to its call, so the close listener is one module-level function. */
const kCall = Symbol('faultline.inboundCall');
type TrackedResponse = ServerResponse & { [kCall]?: InboundCall };
/** A request outside every experiment at a point a traffic probe watches: its counter and start time. */
const kTraffic = Symbol('faultline.pointTraffic');
const kStart = Symbol('faultline.pointStart');
type WatchedResponse = ServerResponse & { [kTraffic]?: PointTraffic; [kStart]?: number };

/** 5xx, or no whole answer (reset, client gone): what a listener's traffic view counts as an error. */
function trafficError(res: ServerResponse): boolean {
  return !res.writableFinished || res.statusCode >= 500;
}

function onWatchedClose(this: WatchedResponse): void {
  this[kTraffic]?.record(trafficError(this), performance.now() - (this[kStart] as number));
}

function watch(res: ServerResponse, traffic: PointTraffic): void {
  (res as WatchedResponse)[kTraffic] = traffic;
  (res as WatchedResponse)[kStart] = performance.now();
  res.on('close', onWatchedClose);
}

class InboundCall extends TargetState implements HeldTarget, RequestView {
  // FaultTarget
  readonly isGrpc = false;

  readonly engine: Engine;
  readonly plan: PointPlan;
  readonly handler: RequestHandler;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly startMs = performance.now();
  /** The outcome a fault forced (a reset), or -1. */
  forced = -1;
  done = false;

  constructor(
    engine: Engine,
    plan: PointPlan,
    handler: RequestHandler,
    req: IncomingMessage,
    res: ServerResponse,
  ) {
    super();
    this.engine = engine;
    this.plan = plan;
    this.handler = handler;
    this.req = req;
    this.res = res;
  }

  get method(): string {
    return this.req.method ?? '';
  }
  get path(): string {
    return this.req.url ?? '';
  }
  get rawHeaders(): readonly string[] {
    return this.req.rawHeaders;
  }

  forward(): void {
    if (this.done || this.res.destroyed) return;
    if (this.exp === null) this.handler(this.req, this.res);
    else assignmentContext.run(this, runHandler, this);
  }

  hold(ms: number): void {
    if (!this.done) startHold(this, ms);
  }

  reply(status: number, headers: Readonly<Record<string, string>>, body: string): void {
    const res = this.res;
    if (this.done || res.headersSent) return;
    const out: Record<string, string | number> = { ...headers, 'content-length': Buffer.byteLength(body) };
    addMarks(this.plan, this, out);
    res.writeHead(status, out);
    res.end(body);
  }

  replyGrpcStatus(code: number, message: string): void {
    this.reply(200, grpcStatusHeaders(code, message), '');
  }

  reset(outcome: Outcome): void {
    if (this.done) return;
    this.forced = outcome;
    const socket = this.req.socket;
    try {
      socket.resetAndDestroy();
    } catch {
      socket.destroy();
    }
  }

  callerDeadlineMs(): number {
    return -1;
  }

  // The response leg belongs to hosts that carry the response's bytes: config validation keeps faults
  // that act on it away from inbound points. These keep the contract total.
  holdResponse(): void {}
  releaseResponse(): void {}
  pauseResponse(): void {}
  resumeResponse(): void {}
  writeResponseData(chunk: Buffer): void {
    this.res.write(chunk);
  }
  endResponse(): void {
    this.res.end();
  }
  breakResponse(): void {
    this.reset(OUTCOME_RESET);
  }

  /** The response closed: finished, or cut (client gone, or a fault reset it). */
  closed(): void {
    if (this.done) return;
    this.done = true;
    const res = this.res;
    const exp = this.exp as ExperimentRuntime;
    let outcome: Outcome;
    let statusClass = STATUS_CLASS_NONE;
    if (this.forced >= 0) outcome = this.forced as Outcome;
    else if (res.writableFinished) {
      const status = res.statusCode;
      statusClass = statusClassIndex(status);
      outcome = status === 504 ? OUTCOME_TIMEOUT : exp.isError(status) ? OUTCOME_ERROR : OUTCOME_OK;
    } else
      outcome =
        this.holdTimer !== null && this.injected ? exp.fault.callerLeftDuringHold : OUTCOME_CLIENT_ABORT;
    cancelHold(this);
    const latencyMs = performance.now() - this.startMs;
    this.plan.traffic?.record(trafficError(res), latencyMs);
    this.engine.record(this, this.plan.name, outcome, statusClass, 0, latencyMs);
  }
}

function runHandler(call: InboundCall): void {
  call.handler(call.req, call.res);
}

function onResponseClose(this: TrackedResponse): void {
  this[kCall]?.closed();
}

/** Wraps `handler` as the inbound point `ref` names. */
export function wrapInbound(engine: Engine, ref: PointRef, handler: RequestHandler): RequestHandler {
  return function faultlineInbound(req: IncomingMessage, res: ServerResponse): void {
    const plan = ref.plan;
    // Untouched path: no experiment can match here and no assignment to strip or honour.
    if (plan.candidates.length === 0 && rawHeader(req.rawHeaders, 'baggage') === undefined) {
      if (plan.traffic !== null) watch(res, plan.traffic);
      handler(req, res);
      return;
    }
    const call = new InboundCall(engine, plan, handler, req, res);
    engine.decide(plan, plan.candidates, call, call);
    // What the app propagates onward: the client's baggage without forged faultline.* members, plus
    // the assignment when this request takes part.
    if (call.baggageOut === '') delete req.headers['baggage'];
    else if (call.baggageOut !== null) req.headers['baggage'] = call.baggageOut;
    if (call.exp === null) {
      if (plan.traffic !== null) watch(res, plan.traffic);
      handler(req, res);
      return;
    }
    const armMark = plan.armHeader ? call.exp.armMarks[call.arm] : null;
    if (armMark) res.setHeader(HEADER_ARM, armMark);
    (res as TrackedResponse)[kCall] = call;
    res.on('close', onResponseClose);
    if (call.injectNow) engine.inject(call);
    else call.forward();
  };
}
