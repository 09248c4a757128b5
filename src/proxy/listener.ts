/**
 * A client-facing listener: HTTP/1.1 (`http1`), HTTP/2 with prior knowledge (`h2c`), or TLS with ALPN
 * choosing h2 or http/1.1 (`tls`). It owns the socket and reads the current plan for each request.
 */
import { readFileSync } from 'node:fs';
import http, { IncomingMessage } from 'node:http';
import http2, {
  constants as h2constants,
  type IncomingHttpHeaders as H2Headers,
  type Http2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { ListenerSpec } from '../config/schema.js';
import {
  ARM_CANARY,
  OUTCOME_CLIENT_ABORT,
  OUTCOME_ERROR,
  OUTCOME_RESET,
  OUTCOME_TIMEOUT,
  type Outcome,
} from '../core/vocab.js';
import type { Engine } from '../engine/engine.js';
import { ErrorRateWindow } from '../killswitch/guards.js';
import { log, LogLimiter } from '../telemetry/log.js';
import type { Metrics } from '../telemetry/metrics.js';
import {
  Exchange,
  ProxyResponse,
  kExchange,
  onClientResponseClose,
  onClientStreamClose,
  pushCounted,
  type ClientStream,
  type ExchangeHost,
  type StreamShare,
  type UploadState,
} from './exchange.js';
import { matchRoute, type ListenerPlan } from './plan.js';
import { rawHeader } from '../core/raw-headers.js';
import { AcceptFanout } from './accept-fanout.js';
import { replyError, replyErrorH2 } from './reply.js';

/**
 * Upload accounting on Node's HTTP/1.1 request class (set through the servers' options), so the rate
 * of a body is known without a per-request listener or side table: the parser pushes every body chunk
 * through `push`. HTTP/2 requests keep the same state on their exchange (see pushCounted).
 */
class ProxyRequest extends IncomingMessage implements UploadState {
  bodyBytes = 0;
  rateMarkMs = 0;
  rateMarkBytes = 0;
  pending: Exchange | null = null;
  chunks: Buffer[] | null = null;
  uploadTimer: NodeJS.Timeout | null = null;

  override push(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk !== null) this.bodyBytes += (chunk as Buffer).length;
    return super.push(chunk, encoding);
  }
}

/** What a body is read from before forwarding: an HTTP/1.1 request (its own state) or an HTTP/2 stream. */
type BodySource = ProxyRequest | ClientStream;

/**
 * Requests one HTTP/2 client connection has forwarded and not finished. Why a per-connection cap on top
 * of SETTINGS_MAX_CONCURRENT_STREAMS: the stream limit bounds memory, but every forwarded request may
 * hold an upstream connection (HTTP/1.1 upstreams: one request per connection) for as long as its
 * client keeps it open, so one connection with `max_concurrent_streams` (128) stalled streams could
 * take a whole default pool (128) from every other client. Streams over the cap (default 64, half a
 * default pool) wait here, in order, without an upstream slot, until one of the connection's own
 * requests finishes. They are queued rather than refused because one connection often carries many
 * users (a gRPC channel, an ingress proxy or another Faultline in front), and clients do not all retry
 * REFUSED_STREAM. Many connections are bounded by `max_connections`; stalled streams by the idle,
 * request and upload-rate timeouts.
 */
class ConnShare implements StreamShare {
  inFlight = 0;
  readonly queue: Exchange[] = [];
  constructor(readonly listener: Listener) {}
}

const kShare = Symbol('faultline.connShare');
type SharedSession = Http2Session & { [kShare]?: ConnShare };

/** The limits of a listener that a reload may change (read per request, swapped whole). */
interface ListenerLimits {
  readonly maxConnections: number;
  readonly maxConcurrentStreams: number;
  readonly maxInflightPerConnection: number;
  readonly streamIdleTimeoutMs: number;
  readonly sessionIdleTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly minUploadBytesPerS: number;
  /** Grace before the rate applies, and the window it is measured over (at least 1 s). */
  readonly uploadWindowMs: number;
  readonly bodyBufferBytes: number;
}

/** Node's default, stated: larger request heads are answered 431. */
const MAX_HEADER_BYTES = 16 * 1024;
/**
 * Header lines a request may carry. Node keeps at most about `maxHeadersCount` lines and drops the rest
 * silently (a Content-Length after the cut would be lost), so the servers keep one more than this and
 * a request that reached it is answered 431, never forwarded truncated.
 */
const MAX_HEADER_LINES = 1000;
/** How often a request body being read before forwarding is checked against the rate and timeout. */
const UPLOAD_CHECK_MS = 1000;

/** http.Server, Http2Server and Http2SecureServer are all net.Servers underneath. */
type AnyServer = NetServer;

export class Listener implements ExchangeHost {
  /** The listener's spec as last loaded (a reload swaps it; bindings cannot change on reload). */
  spec: ListenerSpec;
  readonly proto: 'http' | 'https';
  plan: ListenerPlan;
  inFlight = 0;
  draining = false;
  private readonly server: AnyServer;
  private readonly metrics: Metrics;
  private readonly engine: Engine;
  private guard: ErrorRateWindow | null;
  /** Fleet mode: the fleet judges this listener's window pooled over the replicas; it only records here. */
  pooledGuard = false;
  limits: ListenerLimits;
  private readonly sockets = new Set<Socket>();
  private readonly sessions = new Set<Http2Session>();
  private fanout: AcceptFanout | null = null;
  /** Resolves when the accept fan-out is in place (or found impossible): see accept-fanout.ts. */
  fanoutReady: Promise<number> = Promise.resolve(0);
  private readonly listenerCount: number;
  /** Refused connections and accept errors come in storms: logged a few per interval, all counted. */
  private readonly refusedLog = new LogLimiter();
  private readonly failedLog = new LogLimiter();

  /** `listenerCount`: listeners in this process, which share the fd budget of the default max_connections. */
  constructor(spec: ListenerSpec, plan: ListenerPlan, metrics: Metrics, engine: Engine, listenerCount = 1) {
    this.spec = spec;
    this.plan = plan;
    this.metrics = metrics;
    this.engine = engine;
    this.proto = spec.protocol === 'tls' ? 'https' : 'http';
    this.listenerCount = listenerCount;
    this.limits = limitsOf(spec, listenerCount);
    this.guard = guardFor(spec);
    this.server = this.createServer();
    this.server.on('connection', (socket: Socket) => this.onConnection(socket));
    this.server.maxConnections = this.limits.maxConnections;
    // Node closes connections over maxConnections on accept and says so only through this event.
    this.server.on('drop', () => this.connectionRefused('max_connections', null));
  }

  private createServer(): AnyServer {
    const onRequest = (req: IncomingMessage, res: ProxyResponse) => {
      // One request must never take the process down: whatever it throws is answered and counted here.
      try {
        this.onRequest(req, res);
      } catch (err) {
        this.requestFailed(req, res, err);
      }
    };
    const onStream = (stream: ClientStream, headers: H2Headers, _flags: number, rawHeaders: string[]) => {
      try {
        this.onStream(stream, headers, rawHeaders);
      } catch (err) {
        this.streamFailed(stream, err);
      }
    };
    const spec = this.spec;
    const limits = this.limits;
    const onClientError = (err: NodeJS.ErrnoException, socket: Socket) => this.onClientError(err, socket);
    if (spec.protocol === 'http1') {
      const server = http.createServer(
        {
          // Typed as the base classes: the servers' generics would otherwise tie the response to it.
          IncomingMessage: ProxyRequest as typeof IncomingMessage,
          ServerResponse: ProxyResponse,
          maxHeaderSize: MAX_HEADER_BYTES,
          // A backstop for the whole request (Node checks it every 30 s); the upload checks here are finer.
          requestTimeout: limits.requestTimeoutMs,
          headersTimeout: Math.min(30_000, limits.requestTimeoutMs),
          keepAliveTimeout: 65_000,
        },
        onRequest,
      );
      server.maxHeadersCount = MAX_HEADER_LINES + 1;
      server.on('clientError', onClientError);
      server.on('upgrade', refuseUpgrade);
      server.on('connect', refuseConnect);
      return server as unknown as AnyServer;
    }
    const h2Options = {
      maxSessionMemory: 64,
      // The header list may be larger than the 16 KiB head limit so that an oversized head gets a 431
      // (onRequest measures it) rather than a bare stream reset.
      settings: {
        maxHeaderListSize: MAX_HEADER_BYTES * 4,
        maxConcurrentStreams: limits.maxConcurrentStreams,
      },
    };
    // HTTP/2 streams are served from 'stream' (the stream API), never through the compat layer's
    // Http2ServerRequest/Http2ServerResponse pair (see ClientStream in exchange.ts).
    const server =
      spec.protocol === 'h2c'
        ? http2.createServer(h2Options)
        : http2.createSecureServer({
            ...h2Options,
            allowHTTP1: true,
            Http1IncomingMessage: ProxyRequest as typeof IncomingMessage,
            Http1ServerResponse: ProxyResponse,
            cert: readFileSync(spec.tls?.cert as string),
            key: readFileSync(spec.tls?.key as string),
          } as http2.SecureServerOptions);
    server.on('stream', onStream as never);
    if (spec.protocol === 'tls') {
      // HTTP/1.1 over TLS arrives as 'request'. Node wires its compat layer to 'stream' as soon as a
      // 'request' listener is added; that handler is removed again, so h2 streams get only onStream.
      server.on('request', onRequest as never);
      for (const l of server.listeners('stream')) if (l !== onStream) server.off('stream', l as never);
      // HTTP/1.1 over TLS goes through Node's http1 code, which reads these from the server.
      const h1 = server as unknown as http.Server;
      h1.maxHeadersCount = MAX_HEADER_LINES + 1;
      h1.headersTimeout = Math.min(h1.headersTimeout || 60_000, limits.requestTimeoutMs);
      h1.requestTimeout = limits.requestTimeoutMs;
      server.on('clientError', onClientError);
      server.on('upgrade', refuseUpgrade);
      server.on('connect', refuseConnect);
    }
    server.on('sessionError', () =>
      this.metrics.clientErrors.inc({ listener: spec.name, kind: 'h2_session' }),
    );
    // Tracked so a drain can send GOAWAY: closing the server alone lets open sessions start streams.
    server.on('session', (session: Http2Session) => {
      this.sessions.add(session);
      session.once('close', () => this.sessions.delete(session));
      (session as SharedSession)[kShare] = new ConnShare(this);
      session.setTimeout(this.limits.sessionIdleTimeoutMs);
      session.on('timeout', onSessionIdle);
    });
    return server as unknown as AnyServer;
  }

  private onConnection(socket: Socket): void {
    this.sockets.add(socket);
    const gauge = this.metrics.openConnections;
    gauge.inc({ listener: this.spec.name });
    socket.once('close', () => {
      this.sockets.delete(socket);
      gauge.dec({ listener: this.spec.name });
    });
  }

  private onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    const timedOut = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    const kind = tooLarge
      ? 'header_too_large'
      : timedOut
        ? 'request_timeout'
        : err.code === 'ECONNRESET'
          ? 'reset'
          : 'malformed';
    this.metrics.clientErrors.inc({ listener: this.spec.name, kind });
    // A response already on its way cannot be followed by an error status: close instead.
    const inProgress = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (!socket.writable || kind === 'reset' || inProgress?.headersSent === true) {
      socket.destroy();
      return;
    }
    socket.end(
      tooLarge
        ? 'HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n'
        : timedOut
          ? 'HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n'
          : 'HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n',
    );
  }

  /** An HTTP/1.1 request (http1 listeners, and tls listeners whose client chose http/1.1 by ALPN). */
  private onRequest(req: IncomingMessage, res: ProxyResponse): void {
    const plan = this.plan;
    req.on('error', ignore);
    // The protocol is the accepting server's (ALPN on tls), never the request line's version: an
    // "HTTP/2.0" request line on an http1 port is an HTTP/1 message with a bad version.
    if (req.httpVersionMajor !== 1 || req.httpVersionMinor > 1) {
      this.reject(res, 'http_version');
      return;
    }
    if (req.rawHeaders.length > 2 * MAX_HEADER_LINES) {
      this.reject(res, 'header_too_large');
      return;
    }
    let url = req.url;
    if (typeof url !== 'string' || url.charCodeAt(0) !== 47 /* '/' */) {
      const originForm = originFormOf(url);
      if (originForm === null) {
        this.metrics.clientErrors.inc({ listener: this.spec.name, kind: 'bad_target' });
        replyError(res, 'bad_request');
        return;
      }
      url = req.url = originForm;
    }
    const host = plan.hostRouting ? rawHeader(req.rawHeaders, 'host') : undefined;
    const route = matchRoute(plan, url, host);
    if (route === null) {
      replyError(res, 'no_route');
      return;
    }
    if (this.draining) res.shouldKeepAlive = false;
    const ex = new Exchange(this, plan, route, req, res, null, req.method ?? '', url, req.rawHeaders);
    res.exchange = ex;
    res.on('close', onClientResponseClose);
    this.inFlight++;
    if (this.shouldBuffer(ex, req.rawHeaders) && !req.complete) {
      bufferBody(req as ProxyRequest, req as ProxyRequest, ex);
      return;
    }
    this.admit(ex);
  }

  /**
   * An HTTP/2 stream (h2c listeners, and tls listeners whose client chose h2). The stream API with the
   * header list Node already built: no compat request/response objects, listeners or header copies.
   */
  private onStream(stream: ClientStream, headers: H2Headers, rawHeaders: string[]): void {
    const plan = this.plan;
    // Stream errors surface as 'close' with an rstCode; the exchange reads that, nothing else listens.
    stream.on('error', ignore);
    stream.setTimeout(this.limits.streamIdleTimeoutMs);
    stream.on('timeout', onStreamIdle);
    if (headBytes(rawHeaders) > MAX_HEADER_BYTES) {
      this.metrics.clientErrors.inc({ listener: this.spec.name, kind: 'header_too_large' });
      replyErrorH2(stream, 'header_too_large');
      return;
    }
    if (headers[':method'] === 'CONNECT') {
      // No tunnels (RFC 9113 8.5): 405, as Node's compat layer answered before the stream API.
      stream.respond({ ':status': 405, allow: 'GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS' });
      stream.end();
      return;
    }
    const expect = headers['expect'];
    if (expect !== undefined) {
      // What Node's compat layer did: 100 for 100-continue, 417 for any other expectation.
      if (expect.toLowerCase() !== '100-continue') {
        stream.respond({ ':status': 417 });
        stream.end();
        return;
      }
      stream.additionalHeaders({ ':status': 100 });
    }
    let url = headers[':path'];
    if (typeof url !== 'string' || url.charCodeAt(0) !== 47 /* '/' */) {
      const originForm = originFormOf(url);
      if (originForm === null) {
        this.metrics.clientErrors.inc({ listener: this.spec.name, kind: 'bad_target' });
        replyErrorH2(stream, 'bad_request');
        return;
      }
      url = originForm;
    }
    const route = matchRoute(plan, url, plan.hostRouting ? headers[':authority'] : undefined);
    if (route === null) {
      replyErrorH2(stream, 'no_route');
      return;
    }
    const method = headers[':method'] as string;
    const ex = new Exchange(this, plan, route, null, null, stream, method, url, rawHeaders);
    stream[kExchange] = ex;
    stream.on('close', onClientStreamClose);
    this.inFlight++;
    if (stream.endAfterHeaders) {
      this.admit(ex);
      return;
    }
    stream.push = pushCounted;
    if (this.shouldBuffer(ex, rawHeaders) && !stream.readableEnded) {
      bufferBody(stream, ex, ex);
      return;
    }
    this.admit(ex);
  }

  /**
   * A small body is read in full before an upstream connection is taken, so a client that uploads
   * slowly holds only its own socket, never a pool slot (nginx's request buffering, in memory). gRPC
   * streams are never buffered; GET and HEAD rarely carry a body and are not even looked at.
   */
  private shouldBuffer(ex: Exchange, rawHeaders: readonly string[]): boolean {
    const method = ex.method;
    if (this.limits.bodyBufferBytes === 0 || ex.isGrpc || method === 'GET' || method === 'HEAD') return false;
    const length = rawHeader(rawHeaders, 'content-length');
    if (length === undefined) return false;
    const n = Number(length);
    return n > 0 && n <= this.limits.bodyBufferBytes;
  }

  /** HTTP/2: within the connection's share (see ConnShare) dispatch now, else wait in its queue. */
  admit(ex: Exchange): void {
    if (ex.stream !== null) {
      const session = ex.stream.session as SharedSession | undefined;
      const share = session?.[kShare];
      if (share !== undefined) {
        if (share.inFlight >= this.limits.maxInflightPerConnection) {
          share.queue.push(ex);
          return;
        }
        share.inFlight++;
        ex.share = share;
      }
    }
    this.dispatch(ex);
  }

  /** A request of this connection finished: start the next ones waiting for its share. */
  private admitQueued(share: ConnShare): void {
    while (share.queue.length > 0 && share.inFlight < this.limits.maxInflightPerConnection) {
      const next = share.queue.shift() as Exchange;
      if (next.done) continue; // the client left while it waited
      share.inFlight++;
      next.share = share;
      try {
        this.dispatch(next);
      } catch (err) {
        this.exchangeFailed(next, err);
      }
    }
  }

  /** Assignment, then the fault or the upstream leg. */
  dispatch(ex: Exchange): void {
    if (
      ex.route.experiments.length > 0 ||
      ex.plan.trustAssignment ||
      rawHeader(ex.rawHeaders, 'baggage') !== undefined
    )
      this.engine.decide(ex.plan, ex.route.experiments, ex, ex);
    // Tracing off: this one comparison is all an untouched request pays.
    if (this.engine.tracer !== null && ex.exp === null) this.engine.tracer.startUntouched(ex, ex);
    if (ex.injectNow) this.engine.inject(ex);
    else ex.forward();
  }

  /** A request refused before it became an exchange (bad version, oversized head). */
  private reject(res: ProxyResponse, code: 'http_version' | 'header_too_large'): void {
    this.metrics.clientErrors.inc({
      listener: this.spec.name,
      kind: code === 'http_version' ? 'bad_version' : 'header_too_large',
    });
    res.shouldKeepAlive = false;
    replyError(res, code);
  }

  /**
   * Something threw while handling one request: a bug, but one request's. Count it, log a few, answer
   * 500 (or reset that request when its response is under way) and keep serving everyone else.
   */
  requestFailed(_req: IncomingMessage, res: ProxyResponse, err: unknown): void {
    this.countFailure(err);
    try {
      this.abandon(res.exchange, res.headersSent, err);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      res.shouldKeepAlive = false;
      replyError(res, 'internal');
    } catch {
      res.destroy();
    }
  }

  /** requestFailed for an HTTP/2 stream: 500, or RST_STREAM when the response is under way. */
  streamFailed(stream: ClientStream, err: unknown): void {
    this.countFailure(err);
    try {
      this.abandon(stream[kExchange] ?? null, stream.headersSent, err);
      replyErrorH2(stream, 'internal');
    } catch {
      if (!stream.destroyed) stream.close(h2constants.NGHTTP2_INTERNAL_ERROR);
    }
  }

  exchangeFailed(ex: Exchange, err: unknown): void {
    if (ex.stream !== null) this.streamFailed(ex.stream, err);
    else this.requestFailed(ex.req as IncomingMessage, ex.res as ProxyResponse, err);
  }

  private countFailure(err: unknown): void {
    this.metrics.uncaughtErrors.inc({ kind: 'request' });
    if (this.failedLog.allow())
      log('error', 'request handler failed; answered 500', {
        listener: this.spec.name,
        error: (err as Error)?.stack ?? String(err),
        suppressed: this.failedLog.takeSuppressed(),
      });
  }

  private abandon(ex: Exchange | null, headersSent: boolean, err: unknown): void {
    if (ex === null || ex.done) return;
    if (!headersSent) ex.status = 500;
    ex.finish(OUTCOME_ERROR);
    ex.controller?.abort(err as Error);
  }

  /** The upload rate and request timeout, for a request still sending its body (see UploadState). */
  clientError(kind: string): void {
    this.metrics.clientErrors.inc({ listener: this.spec.name, kind });
  }

  uploadTooSlow(ex: Exchange): boolean {
    const l = this.limits;
    const req: UploadState = ex.stream !== null ? ex : (ex.req as ProxyRequest);
    const now = performance.now();
    if (now - ex.startMs >= l.requestTimeoutMs) return this.slowUpload();
    if (l.minUploadBytesPerS === 0) return false;
    // Measured over windows of at least the grace period, so a bursty but fast enough sender passes
    // and one that sent quickly and then stalled is caught in its next window.
    const since = req.rateMarkMs === 0 ? ex.startMs : req.rateMarkMs;
    if (now - since < l.uploadWindowMs) return false;
    const slow = (req.bodyBytes - req.rateMarkBytes) * 1000 < l.minUploadBytesPerS * (now - since);
    req.rateMarkMs = now;
    req.rateMarkBytes = req.bodyBytes;
    return slow && this.slowUpload();
  }

  private slowUpload(): true {
    this.metrics.clientErrors.inc({ listener: this.spec.name, kind: 'slow_upload' });
    return true;
  }

  private connectionRefused(reason: 'max_connections' | 'accept_error', err: Error | null): void {
    this.metrics.connectionsRefused.inc({ listener: this.spec.name, reason });
    if (this.refusedLog.allow())
      log('warn', 'connection refused', {
        listener: this.spec.name,
        reason,
        ...(reason === 'max_connections' ? { max_connections: this.limits.maxConnections } : {}),
        ...(err !== null ? { error: err.message } : {}),
        suppressed_since_last_line: this.refusedLog.takeSuppressed(),
      });
  }

  exchangeFinished(ex: Exchange, outcome: Outcome, latencyMs: number): void {
    this.inFlight--;
    const share = ex.share;
    if (share !== null) {
      ex.share = null;
      share.inFlight--;
      if (share.queue.length > 0) this.admitQueued(share as ConnShare);
    }
    const exp = ex.exp;
    if (exp !== null) this.engine.record(ex, this.spec.name, outcome, ex.statusClass, ex.grpcCode, latencyMs);
    else if (this.engine.tracer !== null)
      this.engine.tracer.end(ex, this.spec.name, outcome, ex.statusClass, ex.grpcCode);
    // The global guard watches real failures: faults injected on purpose here do not count.
    if (this.guard !== null && outcome !== OUTCOME_CLIENT_ABORT && !ex.injected) {
      const failed = outcome === OUTCOME_ERROR || outcome === OUTCOME_TIMEOUT || outcome === OUTCOME_RESET;
      if (this.guard.record(failed, Date.now()) && !this.pooledGuard) this.globalGuardTripped();
    }
    if (this.plan.accessLog) {
      log('info', 'access', {
        listener: this.spec.name,
        route: ex.route.name,
        method: ex.method,
        path: ex.path,
        status: ex.status,
        ms: Math.round(latencyMs * 1000) / 1000,
        ...(exp !== null
          ? { experiment: exp.id, group: ex.arm === ARM_CANARY ? 'canary' : 'control', injected: ex.injected }
          : {}),
        // Envoy's response flags (FI fault injected, DI delay injected) and its retry count, so log
        // pipelines built for Envoy classify injected responses and see retries of one request.
        ...(ex.injected && exp !== null ? { response_flags: exp.fault.responseFlag } : {}),
        ...attemptOf(ex.rawHeaders),
      });
    }
  }

  private globalGuardTripped(): void {
    const { requests, errors } = this.guard?.rate() ?? { requests: 0, errors: 0 };
    const threshold = this.spec.max_error_rate?.threshold ?? 0;
    const reason = `listener ${this.spec.name}: error rate ${((100 * errors) / requests).toFixed(2)}% of ${requests} requests over ${this.spec.max_error_rate?.window_s}s exceeds ${(threshold * 100).toFixed(2)}%`;
    const killed = this.engine.killAll(reason, `guard:${this.spec.name}`, 'global_error_rate');
    if (killed.length > 0) log('warn', 'global guard tripped', { listener: this.spec.name, killed, reason });
    this.guard?.reset();
  }

  /** The global guard's window (null without max_error_rate), for the fleet to pool. */
  errorWindow(): ErrorRateWindow | null {
    return this.guard;
  }

  /** Swap in a new plan (reload): requests already running keep the snapshot they started with. */
  swapPlan(plan: ListenerPlan, spec: ListenerSpec): void {
    this.plan = plan;
    const before = this.limits;
    this.limits = limitsOf(spec, this.listenerCount);
    this.server.maxConnections = this.limits.maxConnections;
    if (this.limits.maxConcurrentStreams !== before.maxConcurrentStreams) {
      const s = this.server as unknown as http2.Http2Server;
      s.updateSettings?.({ maxConcurrentStreams: this.limits.maxConcurrentStreams });
    }
    if (JSON.stringify(spec.max_error_rate) !== JSON.stringify(this.spec.max_error_rate))
      this.guard = guardFor(spec);
    // Keep the spec current: the guard's reason text and the fleet's pooled guard read its threshold.
    this.spec = spec;
  }

  async listen(): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      // Node's default backlog (511) overflows when a thousand clients connect at once on a busy core:
      // the kernel then drops the handshake's final ACK and the client waits for the SYN-ACK
      // retransmit (1 s). The kernel caps it at net.core.somaxconn. The queue itself is drained by the
      // accept fan-out below.
      this.server.listen({ port: this.spec.port, host: this.spec.address, backlog: LISTEN_BACKLOG }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    // After listen, errors are failed accepts (EMFILE: out of file descriptors); libuv keeps listening.
    this.server.on('error', (err: Error) => this.connectionRefused('accept_error', err));
    // Not awaited: the listener serves from its own descriptor meanwhile (1 s, then a child process).
    const fanout = new AcceptFanout(this.server, this.spec.accept_fanout, LISTEN_BACKLOG);
    this.fanout = fanout;
    this.fanoutReady = fanout.start(FANOUT_DELAY_MS);
    // Said once, so an operator can tell a listener that drains bursts 1 at a time (no child process
    // allowed here) from one with the fan-out in place. Not in a round_robin worker: its primary accepts.
    const wanted = this.spec.accept_fanout;
    void this.fanoutReady.then((extra) => {
      if (!this.draining && wanted > 1 && fanout.applicable)
        log(extra + 1 < wanted ? 'warn' : 'info', 'accept fan-out', {
          listener: this.spec.name,
          descriptors: extra + 1,
          accept_fanout: wanted,
        });
    });
    return this.server.address() as AddressInfo;
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** Stop accepting; resolves when in-flight requests are done or the deadline passes. */
  async drain(deadlineMs: number): Promise<void> {
    this.draining = true;
    this.server.close();
    const fanoutClosed = this.fanout?.close();
    for (const session of this.sessions) session.close();
    const until = Date.now() + deadlineMs;
    while (this.inFlight > 0 && Date.now() < until) {
      closeIdle(this.server);
      await new Promise((r) => setTimeout(r, 25));
    }
    if (this.inFlight > 0)
      log('warn', 'drain deadline passed', { listener: this.spec.name, inFlight: this.inFlight });
    for (const s of this.sockets) s.destroy();
    // Let the responses' close events run, so requests cut here are recorded as client aborts before
    // the pools are destroyed under them (which would read as upstream failures).
    for (let i = 0; i < 20 && this.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 5));
    await fanoutClosed;
  }
}

function closeIdle(server: AnyServer): void {
  const s = server as AnyServer & { closeIdleConnections?: () => void };
  s.closeIdleConnections?.();
}

function guardFor(spec: ListenerSpec): ErrorRateWindow | null {
  const g = spec.max_error_rate;
  return g ? new ErrorRateWindow(g.window_s, g.threshold, g.min_requests) : null;
}

function ignore(): void {}

/** The accept fan-out starts this long after the listener binds (see AcceptFanout.start). */
const FANOUT_DELAY_MS = 1000;

/** listen(2) backlog; nginx's bench config uses the same (see the comment in listen()). */
const LISTEN_BACKLOG = 4096;

function limitsOf(spec: ListenerSpec, listenerCount: number): ListenerLimits {
  return {
    maxConnections: spec.max_connections ?? defaultMaxConnections(listenerCount),
    maxConcurrentStreams: spec.max_concurrent_streams,
    maxInflightPerConnection: spec.max_inflight_per_connection,
    streamIdleTimeoutMs: spec.stream_idle_timeout_ms,
    sessionIdleTimeoutMs: spec.session_idle_timeout_ms,
    requestTimeoutMs: spec.request_timeout_ms,
    minUploadBytesPerS: spec.min_upload_bytes_per_s,
    uploadWindowMs: Math.max(1000, spec.upload_grace_ms),
    bodyBufferBytes: spec.body_buffer_bytes,
  };
}

let fdLimit: number | null | undefined;

/** The soft RLIMIT_NOFILE (Node raises it to the hard limit at startup on Linux); null when unknown. */
function openFileLimit(): number | null {
  if (fdLimit !== undefined) return fdLimit;
  fdLimit = null;
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m) fdLimit = Number(m[1]);
  } catch {
    // Not Linux: the fixed default below.
  }
  return fdLimit;
}

/**
 * Without `max_connections`, the listeners share three quarters of the fd limit (the rest is for
 * upstream pools, the admin port and files), at most 10,000 each: at the fd limit the process could
 * not accept on the admin port or open upstream connections, and Node would say nothing.
 */
function defaultMaxConnections(listenerCount: number): number {
  const limit = openFileLimit();
  if (limit === null) return 10_000;
  return Math.max(64, Math.min(10_000, Math.floor((limit * 0.75) / Math.max(1, listenerCount))));
}

/** Bytes of an HTTP/2 request head as HTTP/1.1 would carry it ("name: value\r\n" per field). */
function headBytes(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i++) n += (raw[i] as string).length + 2;
  return n;
}

function onStreamIdle(this: ServerHttp2Stream): void {
  // The exchange sees the response close and aborts its upstream leg, freeing the pool slot.
  if (!this.destroyed) this.close(h2constants.NGHTTP2_CANCEL);
}

function onSessionIdle(this: SharedSession): void {
  const share = this[kShare];
  if (this.closed || this.destroyed || share === undefined) return;
  // Requests in flight (a long upstream, a held fault) are bounded by their own timeouts, not this one.
  if (share.inFlight === 0) this.close();
  else this.setTimeout(share.listener.limits.sessionIdleTimeoutMs);
}

/**
 * Reads the body before forwarding (see shouldBuffer), checking the upload rate once a second. `src`
 * is what the body is read from, `up` where its state is kept (the same object for HTTP/1.1, the
 * exchange for HTTP/2: see uploadOf).
 */
function bufferBody(src: BodySource, up: UploadState, ex: Exchange): void {
  up.pending = ex;
  up.chunks = [];
  src.on('data', onBufferData);
  src.on('end', onBufferEnd);
  up.uploadTimer = setTimeout(onUploadCheck, UPLOAD_CHECK_MS, src);
}

/** The upload state of a body source: an HTTP/2 stream's is its exchange. */
function uploadOf(src: BodySource): UploadState {
  return (src as ClientStream)[kExchange] ?? (src as ProxyRequest);
}

function onBufferData(this: BodySource, chunk: Buffer): void {
  uploadOf(this).chunks?.push(chunk);
}

function onBufferEnd(this: BodySource): void {
  const up = uploadOf(this);
  const ex = up.pending;
  const chunks = up.chunks;
  stopBuffering(this);
  if (ex === null || chunks === null || ex.done) return;
  ex.body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
  const listener = ex.host as Listener;
  try {
    listener.admit(ex);
  } catch (err) {
    listener.exchangeFailed(ex, err);
  }
}

function onUploadCheck(src: BodySource): void {
  const up = uploadOf(src);
  const ex = up.pending;
  if (ex === null || ex.done) {
    stopBuffering(src);
    return;
  }
  if ((ex.host as Listener).uploadTooSlow(ex)) {
    stopBuffering(src);
    ex.rejectSlowUpload();
    return;
  }
  up.uploadTimer?.refresh();
}

function stopBuffering(src: BodySource): void {
  const up = uploadOf(src);
  if (up.uploadTimer !== null) clearTimeout(up.uploadTimer);
  up.uploadTimer = null;
  up.pending = null;
  up.chunks = null;
  src.off('data', onBufferData);
  src.off('end', onBufferEnd);
}

/** RFC 9112 §3.2.2: a server must accept absolute-form targets; forward them in origin-form. */
function originFormOf(target: string | undefined): string | null {
  if (target === undefined || !/^https?:\/\//i.test(target)) return null;
  try {
    const u = new URL(target);
    return u.pathname + u.search;
  } catch {
    return null;
  }
}

/** `x-envoy-attempt-count` (Envoy's retry attempt, from 1) for the access log, when the request has one. */
function attemptOf(raw: readonly string[]): { attempt?: number } {
  const v = rawHeader(raw, 'x-envoy-attempt-count');
  const n = v === undefined ? NaN : Number(v);
  return Number.isInteger(n) && n > 0 ? { attempt: n } : {};
}

/** HTTP/1.1 Upgrade (websocket, h2c): not proxied; an answer, never a silent close. */
function refuseUpgrade(_req: IncomingMessage, socket: Socket): void {
  socket.end('HTTP/1.1 501 Not Implemented\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
}

/**
 * HTTP/1.1 CONNECT: no tunnels (the HTTP/2 listener answers 405 too). Without a 'connect' listener
 * Node destroys the socket with no response at all.
 */
function refuseConnect(_req: IncomingMessage, socket: Socket): void {
  socket.end(
    'HTTP/1.1 405 Method Not Allowed\r\nallow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS\r\nconnection: close\r\ncontent-length: 0\r\n\r\n',
  );
}
