/**
 * The outbound in-process host for undici (`new Agent().compose(fl.undiciInterceptor('auth'))`): calls
 * made while handling a request that takes part in an experiment inherit its arm (async context) and
 * carry it on in baggage; canary calls get the fault here, before or instead of the real dispatch. The
 * call object is at once the undici handler, the controller its caller sees, and the FaultTarget.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import {
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
import type { Engine } from '../engine/engine.js';
import { cancelHold, startHold, TargetState, type HeldTarget } from '../engine/hold.js';
import type { PointPlan, PointRef } from '../engine/point.js';
import type { RequestView } from '../engine/target.js';
import type { ExperimentRuntime } from '../experiments/runtime.js';
import { currentAssignment } from './context.js';
import { addMarks } from './marks.js';

type Dispatch = Dispatcher['dispatch'];
type Handler = Dispatcher.DispatchHandler;

class OutboundCall
  extends TargetState
  implements HeldTarget, RequestView, Handler, Dispatcher.DispatchController
{
  // FaultTarget
  readonly isGrpc = false;
  // RequestView
  readonly method: string;
  readonly path: string;
  readonly rawHeaders: string[];

  readonly engine: Engine;
  readonly plan: PointPlan;
  readonly dispatch: Dispatch;
  opts: Dispatcher.DispatchOptions;
  readonly inner: Handler;
  readonly startMs = performance.now();
  /** The real dispatch's controller, once the request went out. */
  private upstream: Dispatcher.DispatchController | null = null;
  private started = false;
  done = false;
  private status = 0;
  private heldStatus = 0;
  private heldHeaders: IncomingHttpHeaders | null = null;
  private heldChunks: Buffer[] | null = null;
  private heldEnd = false;
  private trailers: IncomingHttpHeaders = {};
  private faultPaused = false;
  // DispatchController, as the caller's handler sees it
  aborted = false;
  paused = false;
  reason: Error | null = null;

  constructor(
    engine: Engine,
    plan: PointPlan,
    dispatch: Dispatch,
    opts: Dispatcher.DispatchOptions,
    inner: Handler,
  ) {
    super();
    this.engine = engine;
    this.plan = plan;
    this.dispatch = dispatch;
    this.opts = opts;
    this.inner = inner;
    this.method = opts.method;
    this.path = opts.path;
    this.rawHeaders = flatHeaders(opts.headers);
  }

  // ---- the caller's controller --------------------------------------------------------------------
  abort(reason: Error): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    if (this.upstream !== null) return this.upstream.abort(reason);
    // Still held by a fault: nothing went out; the caller gave up.
    if (this.done) return;
    const outcome =
      this.holdTimer !== null && this.injected
        ? (this.exp as ExperimentRuntime).fault.callerLeftDuringHold
        : OUTCOME_CLIENT_ABORT;
    this.finish(outcome, STATUS_CLASS_NONE);
    this.inner.onResponseError?.(this, reason);
  }
  pause(): void {
    this.paused = true;
    this.upstream?.pause();
  }
  resume(): void {
    this.paused = false;
    if (!this.faultPaused) this.upstream?.resume();
  }

  /** The caller's handler learns the request started (once): from then on it may abort it. */
  startInner(): void {
    if (this.started) return;
    this.started = true;
    this.inner.onRequestStart?.(this, {});
  }

  // ---- the real dispatch --------------------------------------------------------------------------
  forward(): void {
    if (this.done || this.aborted) return;
    this.dispatch(this.opts, this);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.upstream = controller;
    if (this.aborted) controller.abort(this.reason as Error);
    else this.startInner();
  }

  onResponseStart(
    _c: Dispatcher.DispatchController,
    status: number,
    headers: IncomingHttpHeaders,
    message?: string,
  ): void {
    if (this.done) return;
    if (status < 200) return this.inner.onResponseStart?.(this, status, headers, message);
    this.status = status;
    if (this.injected) {
      const fault = (this.exp as ExperimentRuntime).fault;
      headers = markHeaders(this.plan, this, headers);
      if (fault.onResponseStart !== undefined) {
        this.heldStatus = status;
        this.heldHeaders = headers;
        fault.onResponseStart(this, status, headers);
        if (this.done || this.heldChunks !== null) return;
        this.heldHeaders = null;
      }
    }
    this.inner.onResponseStart?.(this, status, headers, message);
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.heldChunks !== null) {
      this.heldChunks.push(chunk);
      return;
    }
    if (this.done) return;
    if (this.injected) {
      const fault = (this.exp as ExperimentRuntime).fault;
      if (fault.onResponseData !== undefined) return fault.onResponseData(this, chunk);
    }
    this.inner.onResponseData?.(this, chunk);
  }

  onResponseEnd(_c: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    this.trailers = trailers;
    if (this.heldChunks !== null) {
      this.heldEnd = true;
      return;
    }
    if (this.done) return;
    if (this.injected) {
      const fault = (this.exp as ExperimentRuntime).fault;
      if (fault.onResponseEnd !== undefined) return fault.onResponseEnd(this);
    }
    this.endResponse();
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    if (this.done) return;
    cancelHold(this);
    this.finish(this.aborted ? OUTCOME_CLIENT_ABORT : outcomeOfError(err), STATUS_CLASS_NONE);
    this.inner.onResponseError?.(this, err);
  }

  // ---- FaultTarget -------------------------------------------------------------------------------
  hold(ms: number): void {
    if (!this.done) startHold(this, ms);
  }

  reply(status: number, headers: Readonly<Record<string, string>>, body: string): void {
    if (this.done) return;
    const bytes = Buffer.from(body);
    const out: Record<string, string | number> = { ...headers, 'content-length': String(bytes.length) };
    addMarks(this.plan, this, out);
    this.startInner();
    this.status = status;
    this.finish(outcomeOfStatus(this.exp, status), statusClassIndex(status));
    this.inner.onResponseStart?.(this, status, out as IncomingHttpHeaders, '');
    if (bytes.length > 0) this.inner.onResponseData?.(this, bytes);
    this.inner.onResponseEnd?.(this, {});
  }

  replyGrpcStatus(code: number, message: string): void {
    this.reply(200, grpcStatusHeaders(code, message), '');
  }

  reset(outcome: Outcome): void {
    if (this.done) return;
    this.startInner();
    this.finish(outcome, STATUS_CLASS_NONE);
    this.upstream?.abort(injectedResetError);
    this.inner.onResponseError?.(this, injectedResetError);
  }

  callerDeadlineMs(): number {
    return -1;
  }

  holdResponse(ms: number): void {
    if (this.done || this.heldHeaders === null) return;
    this.heldChunks = [];
    this.upstream?.pause();
    startHold(this, ms);
  }

  releaseResponse(): void {
    const headers = this.heldHeaders;
    const chunks = this.heldChunks;
    this.heldHeaders = null;
    this.heldChunks = null;
    if (this.done || headers === null || chunks === null) return;
    this.inner.onResponseStart?.(this, this.heldStatus, headers, '');
    for (const c of chunks) this.inner.onResponseData?.(this, c);
    if (this.heldEnd) this.endResponse();
    else if (!this.paused) this.upstream?.resume();
  }

  writeResponseData(chunk: Buffer): void {
    if (!this.done) this.inner.onResponseData?.(this, chunk);
  }

  pauseResponse(): void {
    this.faultPaused = true;
    this.upstream?.pause();
  }

  resumeResponse(): void {
    this.faultPaused = false;
    if (!this.paused && !this.done) this.upstream?.resume();
  }

  endResponse(): void {
    if (this.done) return;
    this.finish(outcomeOfStatus(this.exp, this.status), statusClassIndex(this.status));
    this.inner.onResponseEnd?.(this, this.trailers);
  }

  breakResponse(): void {
    if (this.done) return;
    this.finish(OUTCOME_RESET, STATUS_CLASS_NONE);
    this.upstream?.abort(responseCutError);
    this.inner.onResponseError?.(this, responseCutError);
  }

  private finish(outcome: Outcome, statusClass: number): void {
    this.done = true;
    cancelHold(this);
    this.engine.record(this, this.plan.name, outcome, statusClass, 0, performance.now() - this.startMs);
  }
}

const injectedResetError = Object.assign(new Error('faultline: connection reset (injected fault)'), {
  code: 'ECONNRESET',
});
const responseCutError = Object.assign(new Error('faultline: response cut short (injected fault)'), {
  code: 'UND_ERR_SOCKET',
});

function outcomeOfStatus(exp: ExperimentRuntime | null, status: number): Outcome {
  if (status === 504) return OUTCOME_TIMEOUT;
  return (exp !== null ? exp.isError(status) : status >= 500) ? OUTCOME_ERROR : OUTCOME_OK;
}

function outcomeOfError(err: Error): Outcome {
  switch ((err as { code?: string }).code) {
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return OUTCOME_TIMEOUT;
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET':
      return OUTCOME_RESET;
    default:
      return OUTCOME_ERROR;
  }
}

function markHeaders(plan: PointPlan, call: OutboundCall, headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out = { ...headers } as Record<string, string | number>;
  addMarks(plan, call, out);
  return out as IncomingHttpHeaders;
}

/** undici's header forms (record, flat array, iterable of pairs) as Node's flat rawHeaders. */
function flatHeaders(h: Dispatcher.DispatchOptions['headers']): string[] {
  const out: string[] = [];
  if (h === null || h === undefined) return out;
  const push = (k: string, v: unknown) => {
    if (Array.isArray(v)) for (const x of v) out.push(k, String(x));
    else if (v !== undefined) out.push(k, String(v));
  };
  if (Array.isArray(h)) {
    for (let i = 0; i + 1 < h.length; i += 2) push(String(h[i]), h[i + 1]);
  } else if (typeof (h as Iterable<unknown>)[Symbol.iterator] === 'function') {
    for (const [k, v] of h as Iterable<[string, unknown]>) push(k, v);
  } else {
    for (const k of Object.keys(h)) push(k, (h as Record<string, unknown>)[k]);
  }
  return out;
}

/** The same request with its baggage header replaced (or removed, for ''). */
function withBaggage(
  opts: Dispatcher.DispatchOptions,
  rawHeaders: readonly string[],
  baggage: string,
): Dispatcher.DispatchOptions {
  const headers: Record<string, string | string[]> = {};
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const k = rawHeaders[i] as string;
    if (k.toLowerCase() === 'baggage') continue;
    const v = rawHeaders[i + 1] as string;
    const prev = headers[k];
    headers[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  if (baggage !== '') headers['baggage'] = baggage;
  return { ...opts, headers };
}

function hasBaggage(h: Dispatcher.DispatchOptions['headers']): boolean {
  if (h === null || h === undefined) return false;
  if (!Array.isArray(h) && typeof (h as Iterable<unknown>)[Symbol.iterator] !== 'function') {
    for (const k of Object.keys(h)) if (k.length === 7 && k.toLowerCase() === 'baggage') return true;
    return false;
  }
  const flat = flatHeaders(h);
  for (let i = 0; i < flat.length; i += 2) if ((flat[i] as string).toLowerCase() === 'baggage') return true;
  return false;
}

/** The interceptor of the outbound point `ref` names. */
export function undiciInterceptor(engine: Engine, ref: PointRef): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch: Dispatch) =>
    function faultlineDispatch(opts: Dispatcher.DispatchOptions, handler: Handler): boolean {
      const plan = ref.plan;
      const inherited = currentAssignment();
      // Untouched path: nothing to inherit, decide, honour or strip.
      if (inherited === undefined && plan.candidates.length === 0 && !hasBaggage(opts.headers))
        return dispatch(opts, handler);
      const call = new OutboundCall(engine, plan, dispatch, opts, handler);
      if (inherited !== undefined) {
        engine.inherit(
          plan,
          call,
          inherited.exp as ExperimentRuntime,
          inherited.arm,
          inherited.runId,
          call,
          inherited,
        );
        // The assignment travels on to the next hop (a Faultline egress proxy, another service).
        if (call.exp !== null && inherited.baggageOut !== null) call.baggageOut = inherited.baggageOut;
      } else engine.decide(plan, plan.candidates, call, call);
      if (call.baggageOut !== null) call.opts = withBaggage(opts, call.rawHeaders, call.baggageOut);
      if (call.exp === null) return dispatch(call.opts, handler);
      if (call.injectNow) {
        call.startInner();
        engine.inject(call);
      } else call.forward();
      return true;
    };
}
