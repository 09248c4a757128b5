/**
 * The ext_proc host: Envoy's External Processing filter calls `ExternalProcessor/Process` with one
 * bidi stream per HTTP request, and Envoy moves the bytes. Faultline decides on `request_headers`
 * (CONTINUE, CONTINUE with the assignment's baggage, a held reply for a short delay, or an
 * `immediate_response` for an abort) and records the outcome from `response_headers` /
 * `response_trailers`. Fail-open throughout: a Faultline error answers CONTINUE, and nothing is held
 * longer than `max_hold_ms` (below Envoy's message_timeout), so Envoy never waits on Faultline.
 */
import { performance } from 'node:perf_hooks';
import type { AddressInfo } from 'node:net';
import {
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import {
  GRPC_STATUS_NAMES,
  HEADER_ARM,
  HEADER_INJECTED,
  OUTCOME_CLIENT_ABORT,
  OUTCOME_ERROR,
  OUTCOME_OK,
  OUTCOME_TIMEOUT,
  STATUS_CLASS_NONE,
  grpcCodeIndex,
  grpcCodeOutcome,
  grpcStatusClass,
  parseGrpcStatus,
  statusClassIndex,
  type Arm,
  type Outcome,
} from '../core/vocab.js';
import { rawHeader } from '../core/raw-headers.js';
import type { Engine } from '../engine/engine.js';
import { cancelHold, startHold, type HeldTarget } from '../engine/hold.js';
import type { RequestView } from '../engine/target.js';
import type { ExperimentRuntime } from '../experiments/runtime.js';
import { log, LogLimiter } from '../telemetry/log.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { ExtProcPlan, ExtProcRef } from './plan.js';
import {
  CONTINUE_BYTES,
  CONTINUE_REQUEST_SKIP_RESPONSE,
  encodeHeadersReply,
  encodeImmediateResponse,
  KIND_NONE,
  KIND_REQUEST_HEADERS,
  KIND_RESPONSE_HEADERS,
  KIND_RESPONSE_TRAILERS,
  type ExtProcMessage,
  type Mutation,
} from './codec.js';
import { extProcServerService } from './proto.js';

/** Requests arrive decoded by ./codec.ts; replies leave as the Buffers it encodes. */
type Stream = ServerDuplexStream<ExtProcMessage, Buffer>;

// Envoy's header-controlled fault filter (HTTPFault.header_abort / header_delay), placed after ext_proc.
export const ENVOY_FAULT_DELAY = 'x-envoy-fault-delay-request';
export const ENVOY_FAULT_ABORT = 'x-envoy-fault-abort-request';
export const ENVOY_FAULT_ABORT_GRPC = 'x-envoy-fault-abort-grpc-request';
/** Envoy's deadline for the request (router timeout), set on requests it forwards. */
const ENVOY_EXPECTED_TIMEOUT = 'x-envoy-expected-rq-timeout-ms';

// Replies without mutations are constant Buffers (CONTINUE_BYTES): the untouched path allocates no reply.
// An untouched request's reply also asks Envoy to skip the response messages (codec.ts,
// MODE_OVERRIDE_SKIP_RESPONSE): nothing of its response is recorded, so with allow_mode_override the
// stream is one exchange; without it Envoy still sends them and they get CONTINUE (onResponseHeaders).
const CONTINUE_REQUEST = CONTINUE_BYTES[KIND_REQUEST_HEADERS] as Buffer;
const CONTINUE_RESPONSE = CONTINUE_BYTES[KIND_RESPONSE_HEADERS] as Buffer;
const CONTINUE_TRAILERS = CONTINUE_BYTES[KIND_RESPONSE_TRAILERS] as Buffer;
const EMPTY: readonly string[] = [];
const DETAILS = 'faultline_fault_injected';

/**
 * The one mutation being built: encoding is synchronous, so every reply reuses these arrays instead
 * of allocating header objects (the codec writes them straight into the reply's Buffer).
 */
const SET: string[] = [];
const MUTATION: Mutation = { set: SET, remove: EMPTY, rawValue: true };
const REMOVE_BAGGAGE: readonly string[] = ['baggage'];

/**
 * The last immediate_response encoded, and what it was made of (compared by identity): a fault
 * answers its canary requests alike (abort and timeout pass the same status, headers and body
 * objects every time), so the bytes are reused rather than encoded per request.
 */
const lastImmediate = {
  plan: null as ExtProcPlan | null,
  exp: null as ExperimentRuntime | null,
  marks: -1,
  status: 0,
  headers: null as Readonly<Record<string, string>> | null,
  body: '',
  grpcStatus: -1,
  bytes: CONTINUE_REQUEST,
};

function mutation(plan: ExtProcPlan): Mutation & { set: string[] } {
  SET.length = 0;
  MUTATION.remove = EMPTY;
  MUTATION.rawValue = plan.rawValue;
  return MUTATION as Mutation & { set: string[] };
}
const UNIT_MS: Readonly<Record<string, number>> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 0.001,
  n: 0.000001,
};

/** Envoy's Grpc::Utility::grpcToHttpStatus: the HTTP status of a gRPC local reply (stats, logs). */
const GRPC_TO_HTTP = [200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401];

/** Envoy's Grpc::Utility::httpToGrpcStatus: what a gRPC caller sees of an HTTP-status local reply. */
function httpToGrpcStatus(status: number): number {
  switch (status) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}

/** Back-reference from the grpc-js stream to its call: the stream's listeners are module functions. */
const kCall = Symbol('faultline.extProcCall');
type TrackedStream = Stream & { [kCall]: ExtProcCall };

/** One HTTP request as Envoy reports it over one Process stream. */
class ExtProcCall implements HeldTarget, RequestView {
  // Assignment (written by the engine's decide)
  exp: ExperimentRuntime | null = null;
  arm: Arm = 0;
  observe = false;
  injectNow = false;
  injected = false;
  baggageOut: string | null = null;
  sessionKey = 0;
  runId = 0;
  // FaultTarget
  isGrpc = false;
  faultData: unknown = null;
  holdTimer: NodeJS.Timeout | null = null;
  // RequestView
  method = '';
  path = '';
  rawHeaders: readonly string[] = EMPTY;

  readonly host: ExtProcServer;
  readonly stream: Stream;
  plan: ExtProcPlan | null = null;
  startMs = 0;
  /** Absolute (performance.now) deadline of the request, or -1. */
  deadlineAt = -1;
  /** The request_headers message has had its reply. */
  requestAnswered = false;
  /** A delay handed to Envoy's fault filter (x-envoy-fault-delay-request), or 0. */
  envoyDelayMs = 0;
  /** The reply to the message being handled went out (fail-open answers the rest). */
  answered = true;
  responseSeen = false;
  status = 0;
  grpcStatus = -1;
  recorded = false;
  closed = false;
  asyncMode = false;

  constructor(host: ExtProcServer, stream: Stream) {
    this.host = host;
    this.stream = stream;
  }

  send(msg: Buffer): void {
    this.answered = true;
    if (this.closed || this.asyncMode) return;
    this.stream.write(msg);
  }

  message(req: ExtProcMessage): void {
    this.answered = false;
    this.asyncMode = req.asyncMode;
    const kind = req.kind;
    try {
      switch (kind) {
        case KIND_REQUEST_HEADERS:
          this.onRequestHeaders(req.headers);
          break;
        case KIND_RESPONSE_HEADERS:
          this.onResponseHeaders(req.headers, req.endOfStream);
          break;
        case KIND_RESPONSE_TRAILERS:
          this.onResponseTrailers(req.headers);
          break;
        case KIND_NONE:
          // Nothing Faultline knows (a newer Envoy's message kind, or no request at all): closing the
          // stream cleanly tells Envoy to go on without this processor (external_processor.proto, 6).
          this.answered = true;
          this.host.failOpen('unknown_message', null);
          this.end();
          break;
        default:
          // Bodies and request trailers are not asked for (processing mode NONE/SKIP); answer anyway.
          this.send(CONTINUE_BYTES[kind] as Buffer);
      }
    } catch (err) {
      this.host.failOpen('error', err);
      if (kind === KIND_REQUEST_HEADERS) {
        if (!this.requestAnswered && this.holdTimer === null) {
          this.requestAnswered = true;
          this.send(CONTINUE_REQUEST);
        }
      } else if (!this.answered && kind !== KIND_NONE) this.send(CONTINUE_BYTES[kind] as Buffer);
    }
  }

  // ---- request leg ---------------------------------------------------------------------------------

  private onRequestHeaders(raw: readonly string[]): void {
    if (this.startMs !== 0) {
      // A second request_headers on one stream: out of protocol; let it through.
      this.send(CONTINUE_REQUEST);
      return;
    }
    this.startMs = performance.now();
    const plan = this.host.ref.plan;
    this.plan = plan;
    this.rawHeaders = raw;
    // Untouched path: no experiment can match and no baggage to strip or honour.
    if (plan.candidates.length === 0 && rawHeader(raw, 'baggage') === undefined) {
      this.requestAnswered = true;
      this.send(CONTINUE_REQUEST_SKIP_RESPONSE);
      return;
    }
    this.method = rawHeader(raw, ':method') ?? '';
    this.path = rawHeader(raw, ':path') ?? '';
    this.isGrpc = rawHeader(raw, 'content-type')?.startsWith('application/grpc') === true;
    this.host.engine.decide(plan, plan.candidates, this, this);
    if (this.exp === null) {
      this.forward();
      return;
    }
    this.deadlineAt = this.deadline(raw);
    if (this.injectNow) this.host.engine.inject(this);
    else this.forward();
  }

  /** The request's own deadline: Envoy's router timeout, or the gRPC caller's grpc-timeout. */
  private deadline(raw: readonly string[]): number {
    let ms = -1;
    const envoy = rawHeader(raw, ENVOY_EXPECTED_TIMEOUT);
    if (envoy !== undefined) {
      const n = Number(envoy);
      if (Number.isInteger(n) && n > 0) ms = n;
    }
    const grpc = rawHeader(raw, 'grpc-timeout');
    if (grpc !== undefined && grpc.length >= 2 && grpc.length <= 9) {
      const unit = UNIT_MS[grpc[grpc.length - 1] as string];
      const n = Number(grpc.slice(0, -1));
      if (unit !== undefined && Number.isInteger(n) && n >= 0 && (ms < 0 || n * unit < ms)) ms = n * unit;
    }
    return ms < 0 ? -1 : this.startMs + ms;
  }

  forward(): void {
    if (this.requestAnswered) return;
    this.requestAnswered = true;
    const b = this.baggageOut;
    const exp = this.exp;
    if (exp === null) {
      // Untouched (a forged assignment stripped at most): its response is not Faultline's business.
      this.send(
        b === null
          ? CONTINUE_REQUEST_SKIP_RESPONSE
          : encodeHeadersReply(KIND_REQUEST_HEADERS, this.requestMutation(), true),
      );
      return;
    }
    // Assigned: response_headers / trailers stay on (processing mode SEND), their outcome is recorded.
    if (b === null && this.envoyDelayMs === 0) {
      this.send(CONTINUE_REQUEST);
      return;
    }
    // The common case, the assignment's own baggage and nothing else: bytes encoded with the plan.
    const cached =
      this.envoyDelayMs === 0 && b === exp.baggageMembers[this.arm]
        ? (this.plan as ExtProcPlan).continueWithBaggage.get(exp)?.[this.arm]
        : undefined;
    this.send(cached ?? encodeHeadersReply(KIND_REQUEST_HEADERS, this.requestMutation()));
  }

  /** Baggage (the assignment travels on; forged faultline.* members removed) and Envoy fault headers. */
  private requestMutation(): Mutation & { set: string[] } {
    const m = mutation(this.plan as ExtProcPlan);
    const b = this.baggageOut;
    if (b === '') m.remove = REMOVE_BAGGAGE;
    else if (b !== null) m.set.push('baggage', b);
    if (this.envoyDelayMs > 0) m.set.push(ENVOY_FAULT_DELAY, String(this.envoyDelayMs));
    return m;
  }

  /**
   * Envoy waits for the reply to request_headers no longer than its message_timeout, so a hold is
   * never longer than max_hold_ms: a longer delay goes to Envoy's fault filter (envoy_fault_headers)
   * or, where config validation could not see it coming (a distribution), is cut to max_hold_ms.
   */
  hold(ms: number): void {
    if (this.requestAnswered || this.closed) return;
    const plan = this.plan as ExtProcPlan;
    if (ms > plan.maxHoldMs) {
      if (plan.envoyFaultHeaders) {
        this.envoyDelayMs = Math.round(ms);
        (this.exp as ExperimentRuntime).fault.holdEnded(this, false);
        return;
      }
      ms = plan.maxHoldMs;
    }
    startHold(this, ms);
  }

  reply(status: number, headers: Readonly<Record<string, string>>, body: string): void {
    if (this.requestAnswered || this.closed) return;
    if (this.envoyDelayMs > 0) {
      // The delay happens in Envoy's fault filter; the answer must come after it, from there too.
      this.envoyAbort(ENVOY_FAULT_ABORT, status);
      return;
    }
    this.requestAnswered = true;
    this.send(this.immediate(status, headers, body, -1));
    const exp = this.exp as ExperimentRuntime;
    if (this.isGrpc) {
      // Envoy turns an HTTP-status local reply to a gRPC call into a grpc-status.
      this.grpcStatus = httpToGrpcStatus(status);
      this.recordGrpc();
    } else
      this.record(
        status === 504 ? OUTCOME_TIMEOUT : exp.isError(status) ? OUTCOME_ERROR : OUTCOME_OK,
        statusClassIndex(status),
        0,
      );
  }

  replyGrpcStatus(code: number, message: string): void {
    if (this.requestAnswered || this.closed) return;
    if (this.envoyDelayMs > 0) {
      this.envoyAbort(ENVOY_FAULT_ABORT_GRPC, code);
      return;
    }
    this.requestAnswered = true;
    this.send(this.immediate(GRPC_TO_HTTP[code] ?? 500, null, message, code));
    this.grpcStatus = code;
    this.recordGrpc();
  }

  /** An immediate_response: the last one's bytes when it was made of the same parts. */
  private immediate(
    status: number,
    headers: Readonly<Record<string, string>> | null,
    body: string,
    grpcStatus: number,
  ): Buffer {
    const plan = this.plan as ExtProcPlan;
    const exp = this.exp;
    const marks = (this.injected ? 4 : 0) + this.arm;
    const l = lastImmediate;
    if (
      l.plan === plan &&
      l.exp === exp &&
      l.marks === marks &&
      l.status === status &&
      l.headers === headers &&
      l.body === body &&
      l.grpcStatus === grpcStatus
    )
      return l.bytes;
    const m = mutation(plan);
    if (headers !== null) for (const k in headers) m.set.push(k, headers[k] as string);
    this.addMarks(m.set);
    const bytes = encodeImmediateResponse(status, m, body, grpcStatus, DETAILS);
    l.plan = plan;
    l.exp = exp;
    l.marks = marks;
    l.status = status;
    l.headers = headers;
    l.body = body;
    l.grpcStatus = grpcStatus;
    l.bytes = bytes;
    return bytes;
  }

  /** Delay and abort both in Envoy's fault filter; the outcome comes back as response_headers. */
  private envoyAbort(header: string, code: number): void {
    this.requestAnswered = true;
    const m = this.requestMutation();
    m.set.push(header, String(code));
    this.send(encodeHeadersReply(KIND_REQUEST_HEADERS, m));
  }

  /** ext_proc cannot reset a stream (config validation keeps reset faults away); fail open. */
  reset(): void {
    this.forward();
  }

  callerDeadlineMs(): number {
    return this.deadlineAt < 0 ? -1 : Math.max(0, this.deadlineAt - performance.now());
  }

  // Envoy carries the response: config validation keeps faults that act on it away from ext_proc.
  holdResponse(): void {}
  releaseResponse(): void {}
  pauseResponse(): void {}
  resumeResponse(): void {}
  writeResponseData(): void {}
  endResponse(): void {}
  breakResponse(): void {}

  // ---- response leg --------------------------------------------------------------------------------

  private onResponseHeaders(raw: readonly string[], endOfStream: boolean): void {
    if (this.exp === null || this.recorded) {
      this.send(CONTINUE_RESPONSE);
      return;
    }
    this.responseSeen = true;
    this.status = Number(rawHeader(raw, ':status') ?? 0);
    const m = mutation(this.plan as ExtProcPlan);
    this.addMarks(m.set);
    if (m.set.length === 0) this.send(CONTINUE_RESPONSE);
    else this.send(encodeHeadersReply(KIND_RESPONSE_HEADERS, m));
    const gs = rawHeader(raw, 'grpc-status');
    if (gs !== undefined) {
      // Trailers-only gRPC reply: the status came with the headers.
      this.grpcStatus = parseGrpcStatus(gs);
      this.recordGrpc();
    } else if (endOfStream) this.recordResponse();
  }

  private onResponseTrailers(raw: readonly string[]): void {
    this.send(CONTINUE_TRAILERS);
    if (this.exp === null || this.recorded) return;
    const gs = rawHeader(raw, 'grpc-status');
    if (gs !== undefined) this.grpcStatus = parseGrpcStatus(gs);
    this.recordResponse();
  }

  private addMarks(set: string[]): void {
    const exp = this.exp;
    const plan = this.plan;
    if (exp === null || plan === null) return;
    if (this.injected && plan.injectedHeader) set.push(HEADER_INJECTED, exp.injectedMark);
    const arm = plan.armHeader ? exp.armMarks[this.arm] : null;
    if (arm) set.push(HEADER_ARM, arm);
  }

  // ---- outcomes ------------------------------------------------------------------------------------

  /** The response as far as it was seen (headers, maybe trailers). */
  private recordResponse(): void {
    if (this.isGrpc) {
      this.recordGrpc();
      return;
    }
    const status = this.status;
    const exp = this.exp as ExperimentRuntime;
    this.record(
      status === 504 ? OUTCOME_TIMEOUT : exp.isError(status) ? OUTCOME_ERROR : OUTCOME_OK,
      statusClassIndex(status),
      0,
    );
  }

  /** A gRPC call is judged by its grpc-status; none at all is a failed call (INTERNAL to the client). */
  private recordGrpc(): void {
    const code = this.grpcStatus;
    const known = code >= 0 && code < GRPC_STATUS_NAMES.length;
    this.record(
      known ? grpcCodeOutcome(code) : OUTCOME_ERROR,
      known ? grpcStatusClass(code) : statusClassIndex(this.status),
      grpcCodeIndex(true, code),
    );
  }

  private record(outcome: Outcome, statusClass: number, grpcCode: number): void {
    if (this.recorded) return;
    this.recorded = true;
    cancelHold(this);
    this.host.engine.record(
      this,
      (this.plan as ExtProcPlan).name,
      outcome,
      statusClass,
      grpcCode,
      performance.now() - this.startMs,
    );
  }

  /** Envoy ended the stream (half-close) or reset it: the request is over, whatever was seen of it. */
  finished(): void {
    if (this.closed) return;
    this.closed = true;
    const held = cancelHold(this);
    if (this.exp === null || this.recorded) return;
    if (this.responseSeen) this.recordResponse();
    else
      this.record(
        held && this.injected
          ? (this.exp.fault.callerLeftDuringHold as Outcome)
          : this.timedOutAtEnvoy()
            ? OUTCOME_TIMEOUT
            : OUTCOME_CLIENT_ABORT,
        STATUS_CLASS_NONE,
        this.isGrpc ? grpcCodeIndex(true, -1) : 0,
      );
  }

  /** Past the request's own deadline: Envoy gave up on it (a timeout, not the client leaving). */
  private timedOutAtEnvoy(): boolean {
    return this.deadlineAt >= 0 && performance.now() >= this.deadlineAt;
  }

  end(): void {
    this.finished();
    try {
      this.stream.end();
    } catch {
      // Already closed by Envoy.
    }
  }
}

function onData(this: TrackedStream, req: ExtProcMessage): void {
  this[kCall].message(req);
}

function onEnd(this: TrackedStream): void {
  this[kCall].end();
}

function onGone(this: TrackedStream): void {
  this[kCall].finished();
}

/**
 * grpc-js's channelz bookkeeping runs per call and per message (closures, counters, Date.now()) for an
 * introspection service Faultline does not serve: off.
 */
const SERVER_OPTIONS = { 'grpc.enable_channelz': 0 };

export class ExtProcServer {
  readonly engine: Engine;
  readonly ref: ExtProcRef;
  private readonly metrics: Metrics;
  private readonly server: Server;
  private readonly logLimit = new LogLimiter(10_000, 5);
  private port = 0;

  constructor(engine: Engine, plan: ExtProcPlan, metrics: Metrics) {
    this.engine = engine;
    this.ref = { plan };
    this.metrics = metrics;
    this.server = new Server(SERVER_OPTIONS);
    const impl: UntypedServiceImplementation = { Process: (stream: Stream) => this.open(stream) };
    this.server.addService(extProcServerService, impl);
  }

  private open(stream: Stream): void {
    const tracked = stream as TrackedStream;
    tracked[kCall] = new ExtProcCall(this, stream);
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('cancelled', onGone);
    stream.on('error', onGone);
  }

  swapPlan(plan: ExtProcPlan): void {
    this.ref.plan = plan;
  }

  /** A Faultline error or a message it does not know: Envoy is told to continue, never kept waiting. */
  failOpen(reason: 'error' | 'unknown_message', err: unknown): void {
    this.metrics.extProcFailOpen.inc({ listener: this.ref.plan.name, reason });
    if (this.logLimit.allow())
      log('error', 'ext_proc: answered CONTINUE (fail-open)', {
        listener: this.ref.plan.name,
        reason,
        error: err === null ? undefined : ((err as Error)?.stack ?? String(err)),
        suppressed_since_last_line: this.logLimit.takeSuppressed(),
      });
  }

  listen(address: string, port: number): Promise<AddressInfo> {
    const host = address.includes(':') ? `[${address}]` : address;
    return new Promise((resolve, reject) => {
      this.server.bindAsync(`${host}:${port}`, ServerCredentials.createInsecure(), (err, bound) => {
        if (err) reject(err);
        else {
          this.port = bound;
          resolve({ address, port: bound, family: address.includes(':') ? 'IPv6' : 'IPv4' });
        }
      });
    });
  }

  address(): { port: number } {
    return { port: this.port };
  }

  /** Stops accepting streams; open ones get `drainMs` to finish, then are cancelled. */
  close(drainMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.server.forceShutdown(), drainMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
