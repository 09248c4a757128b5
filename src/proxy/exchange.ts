/**
 * One proxied request: its state and, at the same time, the undici dispatch handler for its upstream
 * leg (undici's habit: the handler object *is* the per-request state, callbacks are methods, listeners
 * are module-level functions, so the hot path allocates no closures).
 */
import { ServerResponse, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { constants as h2constants, type ServerHttp2Stream } from 'node:http2';
import { Duplex, PassThrough, type Readable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import {
  ARM_NONE,
  METHODS,
  OUTCOME_CLIENT_ABORT,
  OUTCOME_ERROR,
  OUTCOME_OK,
  OUTCOME_RESET,
  OUTCOME_TIMEOUT,
  STATUS_CLASSES,
  methodIndex,
  parseGrpcStatus,
  statusClassIndex,
  type Arm,
  type Outcome,
} from '../core/vocab.js';
import { cancelHold, startHold, type HeldTarget } from '../engine/hold.js';
import type { RequestView } from '../engine/target.js';
import type { ExperimentRuntime } from '../experiments/runtime.js';
import { buildUpstreamHeaders, clientResponseHeaders, type ForwardContext } from './headers.js';
import {
  countGrpcResponse,
  grpcStatusClass,
  grpcMessageEncode,
  grpcTimeoutMs,
  GRPC_OUTCOME_UNKNOWN,
  grpcOutcome,
} from './grpc.js';
import { GRPC_CODE_LABELS, GRPC_DEADLINE_EXCEEDED, GRPC_UNAVAILABLE, grpcCodeIndex } from './grpc-status.js';
import type { ListenerPlan, RouteRuntime } from './plan.js';
import { replyError, replyErrorH2, type ProxyErrorCode } from './reply.js';
import { rawHeader } from '../core/raw-headers.js';

/** What an exchange needs from the listener that owns it. */
export interface ExchangeHost {
  readonly proto: 'http' | 'https';
  /** Called once per exchange when its outcome is known (metrics done; analysis and guards next). */
  exchangeFinished(ex: Exchange, outcome: Outcome, latencyMs: number): void;
  /** True when a client still uploading is too slow (min rate, request timeout) to keep its upstream slot. */
  uploadTooSlow(ex: Exchange): boolean;
  /** A malformed request the exchange refused (counted in faultline_client_errors_total). */
  clientError(kind: string): void;
}

/** Node's response classes with a back-reference to the exchange, set via the servers' options. */
export class ProxyResponse extends ServerResponse {
  exchange: Exchange | null = null;
}

/**
 * An HTTP/2 client stream, served through node:http2's stream API rather than the compat layer's
 * request/response pair (two stream objects, ~10 listeners and a header copy per stream): the exchange
 * writes `respond`/`write`/`end`/`sendTrailers`/`close` itself and finds itself through this property.
 */
export const kExchange = Symbol('faultline.exchange');
export type ClientStream = ServerHttp2Stream & { [kExchange]?: Exchange };

/**
 * Upload accounting for a request whose body is read before forwarding or checked against a minimum
 * rate: HTTP/1.1 keeps it on its request object (listener.ts), HTTP/2 on the exchange.
 */
export interface UploadState {
  bodyBytes: number;
  /** Start of the current rate window (performance.now() ms; 0: the request's start) and bytes then. */
  rateMarkMs: number;
  rateMarkBytes: number;
  /** While the body is read before forwarding: the exchange waiting for it, and the chunks so far. */
  pending: Exchange | null;
  chunks: Buffer[] | null;
  uploadTimer: NodeJS.Timeout | null;
}

/** The per-connection admission counter of an HTTP/2 client connection (listener.ts, ConnShare). */
export interface StreamShare {
  inFlight: number;
  readonly queue: Exchange[];
}

/** Reused for every forward: the headers builder fills it synchronously. */
const forwardCtx: ForwardContext = {
  clientIp: '',
  proto: 'http',
  baggage: null,
  hasBody: false,
  teTrailers: false,
  joinCookies: false,
  refusal: null,
};

/**
 * One request at a proxy listener. It is, at once, the undici handler of its upstream leg, the engine's
 * assignment slot and view of the request, and the FaultTarget faults act on.
 */
export class Exchange implements Dispatcher.DispatchHandler, HeldTarget, RequestView, UploadState {
  readonly host: ExchangeHost;
  readonly plan: ListenerPlan;
  readonly route: RouteRuntime;
  /** HTTP/1.1 (also over TLS): Node's request and response; null for HTTP/2. */
  readonly req: IncomingMessage | null;
  readonly res: ProxyResponse | null;
  /** HTTP/2: the client's stream; null for HTTP/1.1. */
  readonly stream: ClientStream | null;
  readonly method: string;
  /** The request target in origin-form. */
  readonly path: string;
  readonly rawHeaders: readonly string[];
  readonly startMs: number;
  readonly isH2: boolean;
  isGrpc: boolean;
  /** HTTP/2: the client connection's share counter, while this request counts against it. */
  share: StreamShare | null = null;

  // UploadState of an HTTP/2 request (HTTP/1.1 keeps it on its request object).
  bodyBytes = 0;
  rateMarkMs = 0;
  rateMarkBytes = 0;
  pending: Exchange | null = null;
  chunks: Buffer[] | null = null;
  uploadTimer: NodeJS.Timeout | null = null;

  controller: Dispatcher.DispatchController | null = null;
  done = false;
  clientGone = false;
  status = 0;
  /** Index into STATUS_CLASSES of what the client got, set when the exchange finishes. */
  statusClass = 5;
  /** Index into GRPC_CODE_LABELS (0: not gRPC), set when the exchange finishes. */
  grpcCode = 0;
  /** gRPC status from the upstream's trailers (or trailers-only headers); -1 until known. */
  grpcStatus = -1;
  private drainHooked = false;
  /** The client sends a request body (set by forward()). */
  private hasBody = false;
  /** The whole request body when the listener read it before forwarding (small uploads), else null. */
  body: Buffer | null = null;

  // Experiment state, set by assign().
  exp: ExperimentRuntime | null = null;
  arm: Arm = ARM_NONE;
  /** True at the hop that drew the arm: the observation point that feeds the analyzer. */
  observe = false;
  /** The fault should start here (canary, injecting hop, capacity left). */
  injectNow = false;
  injected = false;
  /** Outgoing baggage header, or null to forward the incoming one unchanged. */
  baggageOut: string | null = null;
  /** 32-bit hash of this request's sticky key (sticky experiments), for per-session counting. */
  sessionKey = 0;
  /** The experiment run this request was assigned in; outcomes of an earlier run are not judged. */
  runId = 0;

  /** The fault's per-request state (FaultTarget). */
  faultData: unknown = null;
  /** The timer of a hold (engine/hold.ts). */
  holdTimer: NodeJS.Timeout | null = null;
  /** The route's timeout_ms, from forward() to the upstream's response headers (queue and connect included). */
  private deadlineTimer: NodeJS.Timeout | null = null;
  /** A response-leg fault paced the upstream (pauseResponse): a client drain must not resume it. */
  private faultPaused = false;
  private heldStatus = 0;
  private heldHeaders: IncomingHttpHeaders | null = null;
  private heldChunks: Buffer[] | null = null;
  private trailers: IncomingHttpHeaders | null = null;
  private heldEnd = false;
  /** HTTP/2: the response was sent with waitForTrailers (trailers may follow the body). */
  private h2Trailers = false;
  /**
   * HTTP/2, no trailers awaited, and the upstream's end may come a tick after its last chunk (an
   * HTTP/2 upstream, a chunked HTTP/1.1 one): body writes are corked until the end of the loop turn,
   * so the end, when it comes in that turn, goes out as END_STREAM on the last DATA frame.
   */
  private h2Batch = false;
  /** The client stream is corked until onBatchEnd (h2Batch). */
  private h2Corked = false;
  /** HTTP/2: the body is out and 'wantTrailers' ends the stream (and stops an upload still arriving). */
  private trailersPending = false;

  /** `req`/`res` for HTTP/1.1, or `stream` for HTTP/2 (the other pair null). */
  constructor(
    host: ExchangeHost,
    plan: ListenerPlan,
    route: RouteRuntime,
    req: IncomingMessage | null,
    res: ProxyResponse | null,
    stream: ClientStream | null,
    method: string,
    path: string,
    rawHeaders: readonly string[],
  ) {
    this.host = host;
    this.plan = plan;
    this.route = route;
    this.req = req;
    this.res = res;
    this.stream = stream;
    this.method = method;
    this.path = path;
    this.rawHeaders = rawHeaders;
    this.isH2 = stream !== null;
    this.startMs = performance.now();
    this.isGrpc =
      stream !== null && (rawHeader(rawHeaders, 'content-type')?.startsWith('application/grpc') ?? false);
  }

  /** The response head is out (HTTP/1.1 or HTTP/2). */
  get headersSent(): boolean {
    return this.stream !== null ? this.stream.headersSent : (this.res as ProxyResponse).headersSent;
  }

  /** The request body has been received in full (or the client is gone). */
  private get requestComplete(): boolean {
    const s = this.stream;
    return s !== null ? s.readableEnded || s.destroyed : (this.req as IncomingMessage).complete;
  }

  // ---- upstream leg -------------------------------------------------------------------------------

  forward(): void {
    if (this.done) return;
    const stream = this.stream;
    const toH1 = this.route.upstreamProtocol === 'http1';
    forwardCtx.clientIp =
      (stream !== null ? stream.session?.socket?.remoteAddress : this.req?.socket?.remoteAddress) ?? '';
    forwardCtx.proto = this.host.proto;
    forwardCtx.baggage = this.baggageOut;
    forwardCtx.teTrailers = !toH1;
    forwardCtx.joinCookies = stream !== null && toH1;
    const headers = buildUpstreamHeaders(this.rawHeaders, forwardCtx);
    if (forwardCtx.refusal !== null) return this.refuse(forwardCtx.refusal);
    const hasBody = stream !== null ? !stream.endAfterHeaders : forwardCtx.hasBody;
    this.hasBody = hasBody;
    // A gRPC stream may rightly send no headers for long (bidi, server think time): the caller's
    // grpc-timeout, forwarded as is, bounds it instead.
    if (!this.isGrpc) this.startDeadline();
    let body: Buffer | Readable | null = null;
    if (hasBody)
      body =
        this.body ??
        (stream === null
          ? (this.req as IncomingMessage)
          : // The HTTP/2 upstream only pipes and unpipes a body; undici destroys a body it failed to
            // send, which on the client's own stream would reset it before a 502 could be answered
            // (the compat request was a separate Readable), so undici gets a pipe of it.
            toH1
            ? stream.pipe(new PassThrough())
            : stream);
    this.route.pool.dispatch(
      {
        path: this.path,
        method: this.method as Dispatcher.HttpMethod,
        headers,
        body,
        // The exchange's own deadline covers the pool queue and connect too (undici's starts later
        // and ticks in 500 ms steps for timeouts of a second and more).
        headersTimeout: 0,
      },
      this,
    );
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // The client left, or the deadline passed, while the request waited in the pool queue: free the
    // slot at once.
    if (this.done) controller.abort(this.clientGone ? clientGoneError : upstreamDeadlineError);
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    if (statusCode < 200 || this.done) return;
    this.clearDeadline();
    this.status = statusCode;
    if (this.isGrpc) this.noteGrpcStatus(headers);
    if (this.stream !== null) {
      this.h2Trailers = this.mayHaveTrailers(headers);
      this.h2Batch =
        !this.h2Trailers &&
        (this.route.upstreamProtocol !== 'http1' || headers['content-length'] === undefined);
    }
    headers = clientResponseHeaders(headers, this.injectedMark(), this.armMark(), this.isH2);
    const fault = this.injected ? (this.exp as ExperimentRuntime).fault : null;
    if (fault !== null && fault.onResponseStart !== undefined) {
      this.heldStatus = statusCode;
      this.heldHeaders = headers;
      fault.onResponseStart(this, statusCode, headers);
      // The fault kept the head back (holdResponse) or broke the response.
      if (this.done || this.heldChunks !== null) return;
      this.heldHeaders = null;
    }
    this.writeHead(statusCode, headers, statusMessage);
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.heldChunks !== null) {
      this.heldChunks.push(chunk);
      return;
    }
    if (this.done) return;
    if (this.injected) {
      const fault = (this.exp as ExperimentRuntime).fault;
      if (fault.onResponseData !== undefined) return fault.onResponseData(this, chunk);
    }
    this.writeResponseData(chunk);
  }

  /**
   * HTTP/2: whether to send the response head with waitForTrailers. Trailers can only follow a
   * response sent that way, but one sent that way and getting none still ends with an extra empty
   * DATA frame (END_STREAM) after the body instead of ending with its last DATA frame, so it is
   * chosen only where trailers can come and the client can use them: a gRPC call (its status is in
   * the trailers), a response that announces them (`trailer`), or a client that said it will not
   * drop them (`te: trailers`, RFC 9110 §6.5.2). Any other trailer section an HTTP/2 upstream sends
   * is not forwarded: RFC 9110 §6.5.1 lets a recipient discard trailers, and a client that asked for
   * none promised nothing about them. An HTTP/1.1 upstream can only send trailers in chunked coding,
   * never with a Content-Length.
   */
  private mayHaveTrailers(headers: IncomingHttpHeaders): boolean {
    if (this.route.upstreamProtocol === 'http1' && headers['content-length'] !== undefined) return false;
    if (this.isGrpc || headers['trailer'] !== undefined) return true;
    const type = headers['content-type'];
    if (type !== undefined && type.startsWith('application/grpc')) return true;
    const te = rawHeader(this.rawHeaders, 'te');
    // `te` is a short list ("trailers", "trailers, deflate"): a substring test, no regex per request.
    return te !== undefined && te.toLowerCase().includes('trailers');
  }

  /** Writes one body chunk to the client, pausing the upstream on backpressure (FaultTarget). */
  writeResponseData(chunk: Buffer): void {
    if (this.done) return;
    const controller = this.controller;
    const stream = this.stream;
    if (stream !== null) {
      // node:http2 puts END_STREAM on a DATA frame only when end() comes in the same tick as that
      // frame's write; an HTTP/2 upstream's end comes a tick (or more) after its last chunk, which
      // would cost an extra empty DATA frame. Corked, this turn's chunks go out together when the
      // turn ends (or with the end, which uncorks).
      if (this.h2Batch && !this.h2Corked) {
        this.h2Corked = true;
        stream.cork();
        setImmediate(onBatchEnd, this);
      }
      // HTTP/2: the stream's flow-control window is the client's own pace; pause at once.
      if (!stream.write(chunk) && controller) {
        controller.pause();
        if (!this.drainHooked) {
          this.drainHooked = true;
          stream.on('drain', onClientStreamDrain);
        }
      }
      return;
    }
    const res = this.res as ProxyResponse;
    // Pause the upstream only past RESPONSE_BUFFER_BYTES queued for the client, not at the socket's
    // 16 KiB high-water mark: each upstream read is up to 64 KiB, so pausing at the mark paused and
    // resumed once per chunk. Memory per response stays bounded by the limit plus one chunk.
    if (!res.write(chunk) && res.writableLength > RESPONSE_BUFFER_BYTES && controller) {
      controller.pause();
      if (!this.drainHooked) {
        this.drainHooked = true;
        res.on('drain', onClientDrain);
      }
    }
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
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

  onResponseError(controller: Dispatcher.DispatchController, err: Error): void {
    if (this.done) return;
    // undici fails a 304 or 204 whose Content-Length gives the entity's size (RFC 9110 §8.6 allows it on
    // a 304; neither ever has a body) as a length mismatch once the head has arrived: that response is
    // complete.
    if (
      (this.status === 304 || this.status === 204) &&
      (err as { code?: string }).code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH'
    )
      return this.onResponseEnd(controller, noTrailers);
    this.clearDeadline();
    if (this.clientGone) {
      this.finish(OUTCOME_CLIENT_ABORT);
      return;
    }
    const code = classifyUpstreamError(err);
    if (code !== 'bad_request') this.countUpstreamError(code);
    cancelHold(this);
    if (this.isGrpc) {
      this.heldChunks = null;
      this.failGrpc(code, err);
      return;
    }
    if (!this.headersSent) {
      this.heldChunks = null;
      this.status = this.replyErr(code);
      this.finish(this.status === 504 ? OUTCOME_TIMEOUT : OUTCOME_ERROR);
    } else {
      // Headers are out: the only honest signal left is a broken connection, never a short body
      // that looks complete.
      this.finish(OUTCOME_RESET);
      if (this.stream !== null) closeStream(this.stream, h2constants.NGHTTP2_INTERNAL_ERROR);
      else (this.res as ProxyResponse).destroy(err);
    }
  }

  /**
   * A malformed request found while building the upstream's headers: answered, never forwarded, and the
   * connection closed (the rest of its body is not read as a next request). The client's fault, so
   * counted as a client error and judged in no arm (as a client abort is).
   */
  private refuse(code: NonNullable<ForwardContext['refusal']>): void {
    if (this.res !== null) this.res.shouldKeepAlive = false;
    this.host.clientError(code);
    this.status = this.replyErr(code);
    this.finish(OUTCOME_CLIENT_ABORT);
  }

  /** Faultline's own error reply with the experiment's marks; the status sent (0: connection broken). */
  private replyErr(code: ProxyErrorCode): number {
    return this.stream !== null
      ? replyErrorH2(this.stream, code, this.marks())
      : replyError(this.res as ProxyResponse, code, this.marks());
  }

  private writeHead(status: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (this.grpcStatus >= 0 && this.isGrpc) {
      // grpc-status in the response HEADERS: a trailers-only response, which must stay one HEADERS
      // frame with END_STREAM (gRPC clients read a status only from there or from trailers).
      this.respondTrailersOnly(status, headers);
      this.finish(this.outcomeOfStatus());
      return;
    }
    const stream = this.stream;
    if (stream !== null) {
      // Closed (the client's RST_STREAM) but not yet destroyed: respond() would throw. The stream's
      // close event finishes the exchange.
      if (stream.destroyed || stream.closed) return;
      try {
        // The headers object is already a fresh copy (clientResponseHeaders): :status goes into it.
        (headers as Record<string, unknown>)[':status'] = status;
        stream.respond(headers, this.h2Trailers ? waitForTrailers : noWait);
      } catch {
        // A header node:http2 refuses (a connection-specific field, an invalid value): nothing was
        // sent; answer, finish, and only then abort the upstream leg.
        this.countUpstreamError('upstream_protocol');
        this.status = replyErrorH2(stream, 'upstream_protocol', this.marks());
        this.finish(OUTCOME_ERROR);
        this.controller?.abort(invalidResponseError);
      }
      return;
    }
    const res = this.res as ServerResponse;
    try {
      if (statusMessage && !this.isH2) res.writeHead(status, statusMessage, headers);
      else res.writeHead(status, headers as Record<string, string | string[]>);
    } catch {
      // A header Node refuses to serialise: the upstream's response is unusable. Clear what the
      // failed writeHead stored (HTTP/2 keeps it), answer, finish, and only then abort the upstream
      // leg (its error callback then sees a finished exchange).
      for (const name of res.getHeaderNames()) res.removeHeader(name);
      this.countUpstreamError('upstream_protocol');
      this.status = replyError(res, 'upstream_protocol', this.marks());
      this.finish(OUTCOME_ERROR);
      this.controller?.abort(invalidResponseError);
    }
  }

  /** Ends the response with the upstream's trailers (FaultTarget). */
  endResponse(): void {
    if (this.done) return;
    const trailers = this.trailers ?? noTrailers;
    if (this.isGrpc) this.noteGrpcStatus(trailers);
    const stream = this.stream;
    if (stream !== null) {
      // With trailers to send, 'wantTrailers' sends them after the last DATA frame; without a
      // listener node:http2 ends the stream with an empty DATA frame itself. Trailers on a response
      // sent without waitForTrailers are dropped here (see mayHaveTrailers). With an upload still
      // arriving, 'wantTrailers' also ends the stream, so the RST_STREAM that stops the upload
      // (finish, stopUpload) comes after the end of the response, never before it.
      if (this.h2Trailers && (hasAnyKey(trailers) || uploadOpen(stream))) {
        this.trailersPending = true;
        stream.on('wantTrailers', onWantTrailers);
      }
      if (!stream.writableEnded) stream.end();
    } else {
      const res = this.res as ProxyResponse;
      if (hasAnyKey(trailers)) res.addTrailers(trailers as Record<string, string>);
      res.end();
    }
    this.finish(this.outcomeOfStatus());
  }

  /** 'wantTrailers' on the client stream: the upstream's trailers (a refused field resets the stream). */
  sendTrailers(stream: ClientStream): void {
    this.trailersPending = false;
    try {
      // No trailers: node:http2 ends the stream with an empty DATA frame instead.
      stream.sendTrailers((this.trailers ?? noTrailers) as Record<string, string>);
    } catch {
      closeStream(stream, h2constants.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    // Not now: nghttp2 drops a trailers frame still queued on a stream with a RST_STREAM submitted.
    // 'wantTrailers' comes while node:http2 writes the stream's frames, which writes the trailers
    // too, so on the next turn they are out.
    if (uploadOpen(stream)) setImmediate(stopUpload, stream);
  }

  private noteGrpcStatus(headers: IncomingHttpHeaders): void {
    const v = headers['grpc-status'];
    if (typeof v === 'string') this.grpcStatus = parseGrpcStatus(v);
  }

  private outcomeOfStatus(): Outcome {
    if (this.isGrpc) {
      const o = grpcOutcome(this.grpcStatus);
      // A gRPC response without grpc-status is a failed call to the client (INTERNAL), whatever
      // the HTTP status said.
      return o !== GRPC_OUTCOME_UNKNOWN ? o : OUTCOME_ERROR;
    }
    if (this.status === 504) return OUTCOME_TIMEOUT;
    if (this.exp !== null ? this.exp.isError(this.status) : this.status >= 500) return OUTCOME_ERROR;
    return OUTCOME_OK;
  }

  // ---- faults -------------------------------------------------------------------------------------

  /** Holds the exchange for `ms` without an upstream connection; the fault decides what happens next. */
  hold(ms: number): void {
    if (!this.done) startHold(this, ms);
  }

  /** Keeps the upstream's response (head, body, end) back for `ms` (FaultTarget). */
  holdResponse(ms: number): void {
    if (this.done || this.heldHeaders === null) return;
    this.heldChunks = [];
    this.controller?.pause();
    startHold(this, ms);
  }

  /** End of a response-leg hold: send what the upstream already produced and resume streaming. */
  releaseResponse(): void {
    const headers = this.heldHeaders;
    const chunks = this.heldChunks;
    this.heldHeaders = null;
    this.heldChunks = null;
    if (this.done || headers === null || chunks === null) return;
    this.writeHead(this.heldStatus, headers);
    if (this.done) return;
    const out = this.stream ?? (this.res as ProxyResponse);
    for (const c of chunks) out.write(c);
    if (this.heldEnd) this.endResponse();
    else this.controller?.resume();
  }

  pauseResponse(): void {
    this.faultPaused = true;
    this.controller?.pause();
  }

  resumeResponse(): void {
    this.faultPaused = false;
    if (!this.done) this.controller?.resume();
  }

  /**
   * Cuts a response that is under way so the client sees a failure, never a complete body: on HTTP/1.1
   * the connection is closed after what was written is flushed (a short Content-Length or chunked
   * body without its last chunk), on HTTP/2 the stream is reset. Before the head, a plain reset.
   */
  breakResponse(): void {
    if (this.done) return;
    if (!this.headersSent) return this.reset(OUTCOME_RESET);
    this.finish(OUTCOME_RESET);
    if (this.stream !== null) closeStream(this.stream, h2constants.NGHTTP2_INTERNAL_ERROR);
    else (this.req as IncomingMessage).socket.end();
    this.controller?.abort(brokenResponseError);
  }

  /**
   * The caller's deadline: grpc-timeout, or Envoy's x-envoy-expected-rq-timeout-ms (the router timeout
   * Envoy set for this request), whichever ends first; a timeout fault answers then, not later.
   */
  callerDeadlineMs(): number {
    const grpc = this.grpcDeadlineMs();
    const envoy = rawHeader(this.rawHeaders, 'x-envoy-expected-rq-timeout-ms');
    if (envoy === undefined) return grpc;
    const n = Number(envoy);
    if (!Number.isInteger(n) || n <= 0) return grpc;
    const left = Math.max(0, n - (performance.now() - this.startMs));
    return grpc >= 0 && grpc < left ? grpc : left;
  }

  /** Answers with an injected HTTP response (FaultTarget). */
  reply(status: number, headers: Readonly<Record<string, string>>, body: string): void {
    if (this.done) return;
    const out: Record<string, string | number> = { ...headers, 'content-length': Buffer.byteLength(body) };
    this.addMarks(out);
    this.status = status;
    const stream = this.stream;
    if (stream !== null) {
      if (!stream.destroyed && !stream.closed) {
        out[':status'] = status;
        stream.respond(out);
        // respond() already ended a HEAD (or 204/304) response: no body may follow.
        if (!stream.writableEnded) stream.end(body);
      }
    } else {
      const res = this.res as ProxyResponse;
      res.writeHead(status, out);
      res.end(body);
    }
    this.finish(this.outcomeOfStatus());
  }

  /** A trailers-only gRPC response: HTTP 200 with grpc-status in the only HEADERS frame. */
  replyGrpcStatus(code: number, message: string): void {
    if (this.done) return;
    const out: Record<string, string> = {
      'content-type': 'application/grpc',
      'grpc-status': String(code),
      'grpc-message': grpcMessageEncode(message),
    };
    this.addMarks(out);
    this.status = 200;
    this.grpcStatus = code;
    this.respondTrailersOnly(200, out);
    this.finish(this.outcomeOfStatus());
  }

  /**
   * HEADERS with END_STREAM. The compat response would send HEADERS and then an empty DATA frame
   * to end the stream, which gRPC clients read as metadata followed by a missing status.
   */
  private respondTrailersOnly(status: number, headers: IncomingHttpHeaders | Record<string, string>): void {
    const stream = this.stream as ClientStream;
    try {
      if (!stream.destroyed && !stream.headersSent)
        stream.respond({ ...headers, ':status': status }, { endStream: true });
    } catch {
      stream.close(h2constants.NGHTTP2_INTERNAL_ERROR);
    }
  }

  /**
   * The upstream leg of a gRPC call failed. Before any response: the status gRPC clients expect
   * from a proxy (UNAVAILABLE; DEADLINE_EXCEEDED for a timeout), trailers-only. A stream reset by the
   * upstream, or any failure after headers went out, is mirrored as RST_STREAM on this one stream
   * (CANCEL stays CANCEL; anything else is INTERNAL_ERROR), never a made-up OK.
   */
  private failGrpc(code: ProxyErrorCode, err: Error): void {
    const rst = (err as { rstCode?: number }).rstCode ?? -1;
    const refused = rst === h2constants.NGHTTP2_REFUSED_STREAM;
    if (this.headersSent || (rst >= 0 && !refused)) {
      this.finish(OUTCOME_RESET);
      closeStream(
        this.stream as ClientStream,
        rst === h2constants.NGHTTP2_CANCEL ? h2constants.NGHTTP2_CANCEL : h2constants.NGHTTP2_INTERNAL_ERROR,
      );
      return;
    }
    const grpc = code === 'upstream_timeout' ? GRPC_DEADLINE_EXCEEDED : GRPC_UNAVAILABLE;
    this.status = 200;
    this.grpcStatus = grpc;
    const out: Record<string, string> = {
      'content-type': 'application/grpc',
      'grpc-status': String(grpc),
      'grpc-message': grpcMessageEncode(`faultline: ${code}`),
      'x-faultline-error': code,
    };
    this.addMarks(out);
    this.respondTrailersOnly(200, out);
    this.finish(this.outcomeOfStatus());
  }

  /**
   * Drop the client connection (HTTP/1.1: a TCP RST, so clients see ECONNRESET rather than a polite
   * close) or reset this one stream (HTTP/2) without a response.
   */
  reset(outcome: Outcome): void {
    if (this.done) return;
    this.finish(outcome);
    if (this.stream !== null) {
      this.stream.close(h2constants.NGHTTP2_CANCEL);
      return;
    }
    const socket = (this.req as IncomingMessage).socket;
    try {
      socket.resetAndDestroy();
    } catch {
      socket.destroy(); // TLS sockets have no TCP handle to reset
    }
  }

  private startDeadline(): void {
    this.deadlineTimer = setTimeout(onUpstreamDeadline, this.route.timeoutMs, this);
  }

  /** The route's timeout passed before the upstream's response headers: 504, then abort the upstream leg. */
  upstreamDeadlinePassed(): void {
    this.deadlineTimer = null;
    if (this.done || this.status !== 0) return;
    // A client still sending its body to an upstream that keeps taking it (a slow upload): the upstream
    // cannot answer before it has the body, so the deadline moves on by one period. An upstream that
    // stopped reading (the body is paused by backpressure) times out as usual.
    const body = this.stream ?? (this.req as IncomingMessage);
    if (this.hasBody && !this.requestComplete && body.readableFlowing !== false) {
      // ...as long as it keeps the listener's minimum upload rate and request timeout.
      if (this.host.uploadTooSlow(this)) this.rejectSlowUpload();
      else this.startDeadline();
      return;
    }
    this.countUpstreamError('upstream_timeout');
    this.status = this.replyErr('upstream_timeout');
    this.finish(OUTCOME_TIMEOUT);
    this.controller?.abort(upstreamDeadlineError);
  }

  /**
   * The client uploads too slowly: 408 (its fault, so a client abort, not an upstream error in the
   * guards), free the upstream slot, and close an HTTP/1.1 connection (its body is not read further).
   */
  rejectSlowUpload(): void {
    if (this.done) return;
    if (this.res !== null) this.res.shouldKeepAlive = false;
    this.status = this.replyErr('request_timeout');
    this.finish(OUTCOME_CLIENT_ABORT);
    // HTTP/2: finish() sent RST_STREAM NO_ERROR after the 408 (stopUpload), so the client stops sending.
    this.controller?.abort(slowUploadError);
  }

  private clearDeadline(): void {
    if (this.deadlineTimer === null) return;
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = null;
  }

  private injectedMark(): string | null {
    return this.injected && this.plan.injectedHeader && this.exp !== null ? this.exp.injectedMark : null;
  }

  private armMark(): string | null {
    return this.plan.armHeader && this.exp !== null ? (this.exp.armMarks[this.arm] ?? null) : null;
  }

  private addMarks(out: Record<string, string | number>): void {
    const injected = this.injectedMark();
    if (injected !== null) out['x-faultline-injected'] = injected;
    const arm = this.armMark();
    if (arm !== null) out['x-faultline-arm'] = arm;
  }

  /** The marks for a reply Faultline writes itself on a failure path, or null when there are none. */
  private marks(): Record<string, string> | null {
    if (this.exp === null) return null;
    const out: Record<string, string> = {};
    this.addMarks(out);
    return out;
  }

  /** Milliseconds left of the caller's gRPC deadline (grpc-timeout), or -1 when none. */
  grpcDeadlineMs(): number {
    if (!this.isGrpc) return -1;
    const ms = grpcTimeoutMs(rawHeader(this.rawHeaders, 'grpc-timeout'));
    return ms < 0 ? -1 : Math.max(0, ms - (performance.now() - this.startMs));
  }

  /** Sends the body chunks corked this loop turn (h2Batch); a no-op once end() has uncorked them. */
  uncorkClient(): void {
    this.h2Corked = false;
    const stream = this.stream;
    if (stream !== null && !stream.destroyed) stream.uncork();
  }

  /** The client took what was queued: resume the upstream unless a fault is pacing it. */
  clientDrained(): void {
    if (!this.faultPaused) this.controller?.resume();
  }

  // ---- end of the exchange ------------------------------------------------------------------------

  /** The client connection closed (or the stream ended); if the response had not finished, it left. */
  clientClosed(): void {
    if (this.done) return;
    this.clientGone = true;
    // A caller that gave up while a fault held its request: the fault says what that means (a timeout
    // fault simulated exactly that, so it counts as a timeout, not an abort).
    const outcome =
      this.holdTimer !== null && this.injected
        ? (this.exp as ExperimentRuntime).fault.callerLeftDuringHold
        : OUTCOME_CLIENT_ABORT;
    if (outcome === OUTCOME_TIMEOUT && this.isGrpc) this.grpcStatus = GRPC_DEADLINE_EXCEEDED;
    cancelHold(this);
    this.controller?.abort(clientGoneError);
    this.finish(outcome);
  }

  private countUpstreamError(code: ProxyErrorCode): void {
    const route = this.route;
    let c = route.upstreamErrors.get(code);
    if (c === undefined) {
      c = route.metrics.upstreamErrors.labels(route.name, code.replace('upstream_', ''));
      route.upstreamErrors.set(code, c);
    }
    c.inc();
  }

  finish(outcome: Outcome): void {
    if (this.done) return;
    this.done = true;
    cancelHold(this);
    this.clearDeadline();
    const latencyMs = performance.now() - this.startMs;
    const route = this.route;
    let statusClass =
      outcome === OUTCOME_RESET || outcome === OUTCOME_CLIENT_ABORT ? 5 : statusClassIndex(this.status);
    // gRPC answers HTTP 200 whatever happened: file the call by its grpc-status (see grpcStatusClass)
    if (this.isGrpc && statusClass === 1) statusClass = grpcStatusClass(this.grpcStatus);
    this.statusClass = statusClass;
    const grpcCode = grpcCodeIndex(this.isGrpc, this.grpcStatus);
    this.grpcCode = grpcCode;
    const method = methodIndex(this.method);
    const idx = (method * STATUS_CLASSES.length + statusClass) * GRPC_CODE_LABELS.length + grpcCode;
    let counter = route.requestCounters[idx];
    if (counter === undefined) {
      counter = route.metrics.requests.labels(
        route.listener,
        route.name,
        METHODS[method] as string,
        STATUS_CLASSES[statusClass] as string,
        GRPC_CODE_LABELS[grpcCode] as string,
      );
      route.requestCounters[idx] = counter;
    }
    counter.inc();
    if (this.isGrpc) countGrpcResponse(route, this.grpcStatus);
    route.duration.observe(latencyMs / 1000);
    // HTTP/2: a complete response (the upstream's, or Faultline's own reply to a failure) while the
    // client's body is still arriving. Nothing reads that body any more, so the client would keep
    // sending into a full flow-control window until the stream idle timeout; RST_STREAM NO_ERROR
    // after a complete response asks it to stop without an error (RFC 9113 §8.1), and clients keep
    // the response. A failure after the head went out resets the stream with INTERNAL_ERROR instead
    // (its response is not complete), and so does a response still waiting for its trailers
    // (sendTrailers stops the upload then).
    const stream = this.stream;
    if (stream !== null && stream.writableEnded && !this.trailersPending) stopUpload(stream);
    this.host.exchangeFinished(this, outcome, latencyMs);
  }
}

/** Bytes of response body queued for the client above which the upstream leg is paused (HTTP/1.1). */
const RESPONSE_BUFFER_BYTES = 256 * 1024;

const clientGoneError = Object.assign(new Error('client went away'), { code: 'FL_CLIENT_GONE' });
const invalidResponseError = Object.assign(new Error('invalid upstream response'), {
  code: 'FL_BAD_RESPONSE',
});
const brokenResponseError = Object.assign(new Error('response cut by a fault'), { code: 'FL_RESPONSE_CUT' });
const noTrailers: IncomingHttpHeaders = {};
const slowUploadError = Object.assign(new Error('client upload too slow'), { code: 'FL_SLOW_UPLOAD' });
const upstreamDeadlineError = Object.assign(new Error('upstream deadline passed'), {
  code: 'FL_UPSTREAM_DEADLINE',
});

function hasAnyKey(o: object): boolean {
  for (const k in o) if (Object.hasOwn(o, k)) return true;
  return false;
}

function onUpstreamDeadline(ex: Exchange): void {
  ex.upstreamDeadlinePassed();
}

function onClientDrain(this: ProxyResponse): void {
  this.exchange?.clientDrained();
}

/** `close` on the client response: module-level, the exchange is found through the response. */
export function onClientResponseClose(this: ProxyResponse): void {
  this.exchange?.clientClosed();
}

/** End of the loop turn in which an HTTP/2 response's body chunks were corked (h2Batch). */
function onBatchEnd(ex: Exchange): void {
  ex.uncorkClient();
}

function onClientStreamDrain(this: ClientStream): void {
  this[kExchange]?.clientDrained();
}

/** `close` on an HTTP/2 client stream (end, RST_STREAM either way, session gone). */
export function onClientStreamClose(this: ClientStream): void {
  this[kExchange]?.clientClosed();
}

function onWantTrailers(this: ClientStream): void {
  this[kExchange]?.sendTrailers(this);
}

/**
 * The client has not ended its request body (no END_STREAM yet). `readableEnded` says only that the
 * body was read to its end; a body nobody reads (a reply before forwarding, an upstream that stopped
 * reading) would count as still arriving even when it has all been received.
 */
function uploadOpen(stream: ClientStream): boolean {
  if (stream.endAfterHeaders || stream.destroyed) return false;
  const state = (stream as unknown as { _readableState?: { ended: boolean } })._readableState;
  return state !== undefined ? !state.ended : !stream.readableEnded;
}

/**
 * The response is complete and the client is still uploading: RST_STREAM NO_ERROR (RFC 9113 §8.1).
 * node:http2 sends it once the response's frames are written, never ahead of them.
 */
function stopUpload(stream: ClientStream): void {
  if (uploadOpen(stream)) stream.close(h2constants.NGHTTP2_NO_ERROR);
}

/**
 * RST_STREAM with `code` (INTERNAL_ERROR at every caller) unless the stream is already gone. A response
 * already under way must not look complete: Http2Stream.close() ends the writable side first, so once
 * the body written so far has been flushed the client gets END_STREAM (a clean, short body) and the
 * RST after it is ignored. destroy() resets without ending; uncorking first sends the bytes already
 * received ahead of the reset (a bare node:http2 server, write then cut 50 ms later: close() -> the
 * client sees rstCode 0, destroy() -> 2, both with every byte written; the session stays usable).
 */
function closeStream(stream: ServerHttp2Stream, code: number): void {
  if (stream.destroyed) return;
  if (stream.headersSent && !stream.writableEnded) {
    stream.uncork();
    stream.destroy(new Error('upstream response cut'));
  } else stream.close(code);
}

/** respond() options, shared: node:http2 reads them and keeps no reference. */
const waitForTrailers = { waitForTrailers: true };
const noWait = {};

/**
 * Counts the body bytes of an HTTP/2 request for the upload-rate checks: node:http2 pushes every
 * DATA frame through `push`, and a stream has no per-stream byte count of its own. Installed as an
 * own property only on streams that carry a body (the compat layer did this in its request class).
 */
export function pushCounted(this: ClientStream, chunk: unknown, encoding?: BufferEncoding): boolean {
  if (chunk !== null) {
    const ex = this[kExchange];
    if (ex !== undefined) ex.bodyBytes += (chunk as Buffer).length;
  }
  return Duplex.prototype.push.call(this, chunk, encoding);
}

function classifyUpstreamError(err: Error): ProxyErrorCode {
  // undici's HTTPParserError (a malformed upstream response) carries no code.
  if (err.name === 'HTTPParserError') return 'upstream_protocol';
  const code = (err as { code?: string }).code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'upstream_refused';
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return 'upstream_timeout';
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EAI_AGAIN':
      return 'upstream_unreachable';
    case 'HPE_INVALID_CONSTANT':
    case 'HPE_INVALID_HEADER_TOKEN':
    case 'UND_ERR_INFO':
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
    case 'FL_BAD_RESPONSE':
      return 'upstream_protocol';
    case 'UND_ERR_CLOSED':
    case 'UND_ERR_DESTROYED':
      // The pool was closed under the request (shutdown): the upstream was never reached.
      return 'upstream_unreachable';
    case 'UND_ERR_INVALID_ARG':
      // The client's request cannot be expressed upstream (e.g. repeated single-value fields to h2).
      return 'bad_request';
    default:
      return code !== undefined && code.startsWith('HPE_') ? 'upstream_protocol' : 'upstream_reset';
  }
}
