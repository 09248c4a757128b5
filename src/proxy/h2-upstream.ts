/**
 * A pooled HTTP/2 client per upstream origin (h2c with prior knowledge, or h2 over TLS with ALPN), on
 * `node:http2`, behind the same `dispatch(opts, handler)` call and undici v7 handler API the exchange
 * uses for HTTP/1.1 pools, so the exchange keeps one code path.
 *
 * Why not undici's own HTTP/2 client: measured on undici 7.30.2 (`node bench/grpc.mjs --h2-clients`), it
 * delivered empty trailers to `onResponseEnd` (grpc-status lost on every call), its GOAWAY handler
 * destroys the socket and so fails streams the peer promised to finish (RFC 9113 §6.8), and it used
 * about twice the CPU per request of a bare `node:http2` session. Node's nghttp2 binding does flow
 * control per stream (pausing one stream leaves the others running), queues streams beyond the peer's
 * SETTINGS_MAX_CONCURRENT_STREAMS, and keeps streams below GOAWAY's last-stream-id running.
 */
import http2, {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http2';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';

const {
  NGHTTP2_CANCEL,
  NGHTTP2_REFUSED_STREAM,
  HTTP2_HEADER_AUTHORITY,
  HTTP2_HEADER_METHOD,
  HTTP2_HEADER_PATH,
  HTTP2_HEADER_SCHEME,
  HTTP2_HEADER_STATUS,
} = http2.constants;

export interface H2UpstreamOptions {
  /** Sessions (TCP connections) at most; a new one opens only when every open one is full. */
  maxSessions: number;
  /** Streams per session before another session is opened (nghttp2 queues beyond the peer's limit). */
  maxStreamsPerSession: number;
  /** Close a session with no streams after this long. */
  idleTimeoutMs: number;
  rejectUnauthorized: boolean;
}

/** Stream-level flow-control window we advertise; the session window is raised to match several. */
const STREAM_WINDOW = 1024 * 1024;
const SESSION_WINDOW = 8 * STREAM_WINDOW;

interface SessionEntry {
  readonly session: ClientHttp2Session;
  active: number;
  /** GOAWAY received, closed or failed: no new streams. Running streams finish on their own. */
  usable: boolean;
}

const kCall = Symbol('faultline.h2call');
type CallStream = ClientHttp2Stream & { [kCall]?: H2Call };

/** An upstream failure of one stream, with undici-style stable codes the exchange classifies. */
export class H2StreamError extends Error {
  readonly code: string;
  /** RST_STREAM code the upstream sent (or the stream closed with); -1 when not a stream reset. */
  readonly rstCode: number;
  constructor(message: string, code: string, rstCode = -1) {
    super(message);
    this.name = 'H2StreamError';
    this.code = code;
    this.rstCode = rstCode;
  }
}

/** Per-call state and the handler's controller at once (one object per call, listeners module-level). */
class H2Call implements Dispatcher.DispatchController {
  readonly handler: Dispatcher.DispatchHandler;
  readonly entry: SessionEntry | null;
  stream: CallStream | null = null;
  body: Readable | null = null;
  trailers: IncomingHttpHeaders | null = null;
  error: Error | null = null;
  responded = false;
  settled = false;
  private isAborted = false;
  private isPaused = false;
  private abortReason: Error | null = null;

  constructor(handler: Dispatcher.DispatchHandler, entry: SessionEntry | null) {
    this.handler = handler;
    this.entry = entry;
  }

  get aborted(): boolean {
    return this.isAborted;
  }
  get paused(): boolean {
    return this.isPaused;
  }
  get reason(): Error | null {
    return this.abortReason;
  }

  abort(reason: Error): void {
    if (this.isAborted || this.settled) return;
    this.isAborted = true;
    this.abortReason = reason;
    this.settled = true;
    this.detachBody();
    // RST_STREAM(CANCEL) on this stream only: the session and its other streams carry on.
    const s = this.stream;
    if (s !== null && !s.destroyed) s.close(NGHTTP2_CANCEL);
    // Reported on the next tick, as undici does, so a caller aborting from inside a callback never
    // re-enters its own handler.
    process.nextTick(reportAbort, this);
  }

  pause(): void {
    this.isPaused = true;
    this.stream?.pause();
  }

  resume(): void {
    this.isPaused = false;
    this.stream?.resume();
  }

  detachBody(): void {
    const body = this.body;
    if (body === null) return;
    this.body = null;
    if (this.stream !== null) body.unpipe(this.stream);
  }

  fail(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.detachBody();
    this.handler.onResponseError?.(this, err);
  }
}

function reportAbort(call: H2Call): void {
  call.handler.onResponseError?.(call, call.reason as Error);
}

export class H2Upstream {
  readonly origin: string;
  private readonly authority: string;
  private readonly scheme: 'http' | 'https';
  private readonly opts: H2UpstreamOptions;
  private readonly sessions: SessionEntry[] = [];
  private closed = false;

  constructor(origin: string, opts: H2UpstreamOptions) {
    const u = new URL(origin);
    this.origin = u.origin;
    this.authority = u.host;
    this.scheme = u.protocol === 'https:' ? 'https' : 'http';
    this.opts = opts;
  }

  /** Same contract as undici's `Dispatcher.dispatch` for the handler methods the exchange uses. */
  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const entry = this.pick();
    const call = new H2Call(handler, entry);
    handler.onRequestStart?.(call, null);
    if (call.aborted) return true;
    if (entry === null) {
      call.fail(new H2StreamError('upstream pool is closed', 'UND_ERR_DESTROYED'));
      return true;
    }
    const body = opts.body;
    const hasBody = body !== null && body !== undefined;
    let stream: CallStream;
    try {
      stream = entry.session.request(this.requestHeaders(opts), { endStream: !hasBody });
    } catch (err) {
      // Header fields HTTP/2 refuses (duplicated single-value fields, connection-specific ones).
      call.fail(new H2StreamError((err as Error).message, 'UND_ERR_INVALID_ARG'));
      return true;
    }
    entry.active++;
    call.stream = stream;
    stream[kCall] = call;
    stream.on('response', onStreamResponse);
    stream.on('data', onStreamData);
    stream.on('trailers', onStreamTrailers);
    stream.on('end', onStreamEnd);
    stream.on('error', onStreamError);
    stream.on('close', onStreamClose);
    if (hasBody) {
      if (typeof (body as Readable).pipe === 'function') {
        call.body = body as Readable;
        (body as Readable).pipe(stream);
      } else stream.end(body as Buffer | string);
    }
    return true;
  }

  private requestHeaders(opts: Dispatcher.DispatchOptions): OutgoingHttpHeaders {
    const out: OutgoingHttpHeaders = {
      [HTTP2_HEADER_METHOD]: opts.method,
      [HTTP2_HEADER_PATH]: opts.path,
      [HTTP2_HEADER_SCHEME]: this.scheme,
    };
    const raw = opts.headers as string[] | null | undefined;
    let authority: string | null = null;
    if (raw)
      for (let i = 0; i < raw.length; i += 2) {
        const name = (raw[i] as string).toLowerCase();
        const value = raw[i + 1] as string;
        if (name === 'host') {
          // RFC 9113 §8.3.1: the client's Host becomes :authority, so virtual hosts keep working.
          authority ??= value;
          continue;
        }
        const prev = out[name];
        if (prev === undefined) out[name] = value;
        else if (Array.isArray(prev)) prev.push(value);
        else out[name] = [prev as string, value];
      }
    out[HTTP2_HEADER_AUTHORITY] = authority ?? this.authority;
    return out;
  }

  /** The least-busy usable session, opening another when all are at their stream budget. */
  private pick(): SessionEntry | null {
    if (this.closed) return null;
    let best: SessionEntry | null = null;
    let usable = 0;
    for (const e of this.sessions) {
      if (!e.usable) continue;
      usable++;
      if (best === null || e.active < best.active) best = e;
    }
    if (best !== null && (best.active < this.opts.maxStreamsPerSession || usable >= this.opts.maxSessions))
      return best;
    return this.connect();
  }

  private connect(): SessionEntry {
    const session = http2.connect(this.origin, {
      settings: { enablePush: false, initialWindowSize: STREAM_WINDOW },
      ...(this.scheme === 'https'
        ? { rejectUnauthorized: this.opts.rejectUnauthorized, ALPNProtocols: ['h2'] }
        : {}),
    });
    const entry: SessionEntry = { session, active: 0, usable: true };
    this.sessions.push(entry);
    const retire = (): void => {
      entry.usable = false;
      const i = this.sessions.indexOf(entry);
      if (i >= 0) this.sessions.splice(i, 1);
    };
    session.on('connect', () => {
      try {
        session.setLocalWindowSize(SESSION_WINDOW);
      } catch {
        // Older peers may refuse a window update this early; the default window still works.
      }
    });
    // Errors reach the streams (each fails its own call); the session only leaves the pool.
    session.on('error', retire);
    session.on('goaway', retire);
    session.on('close', retire);
    session.setTimeout(this.opts.idleTimeoutMs, () => {
      if (entry.active === 0) {
        retire();
        session.close();
      }
    });
    return entry;
  }

  /** Graceful: no new streams; running streams finish, then the sessions close. */
  async close(): Promise<void> {
    this.closed = true;
    const all = this.sessions.splice(0);
    await Promise.all(
      all.map(
        (e) =>
          new Promise<void>((resolve) => {
            e.usable = false;
            if (e.session.closed || e.session.destroyed) resolve();
            else e.session.close(resolve);
          }),
      ),
    );
  }

  async destroy(): Promise<void> {
    this.closed = true;
    for (const e of this.sessions.splice(0)) {
      e.usable = false;
      e.session.destroy();
    }
  }
}

// ---- stream listeners (module-level: `this` is the stream, its call is found through kCall) ---------

function onStreamResponse(this: CallStream, headers: IncomingHttpHeaders): void {
  const call = this[kCall];
  if (call === undefined || call.settled) return;
  call.responded = true;
  const status = Number(headers[HTTP2_HEADER_STATUS]);
  delete headers[HTTP2_HEADER_STATUS];
  call.handler.onResponseStart?.(call, status, headers, '');
}

function onStreamData(this: CallStream, chunk: Buffer): void {
  const call = this[kCall];
  if (call === undefined || call.settled) return;
  call.handler.onResponseData?.(call, chunk);
}

function onStreamTrailers(this: CallStream, trailers: IncomingHttpHeaders): void {
  const call = this[kCall];
  // Kept until 'end': data still buffered in the readable side (a paused stream) comes first.
  if (call !== undefined) call.trailers = trailers;
}

function onStreamEnd(this: CallStream): void {
  const call = this[kCall];
  // Without a response the stream was reset or failed: 'close' follows and says how.
  if (call === undefined || call.settled || !call.responded) return;
  // Node also ends the readable side of a stream the peer reset: that is not a complete response.
  const rst = this.rstCode;
  if (rst !== undefined && rst !== 0 && call.trailers === null) return;
  call.settled = true;
  call.detachBody();
  call.handler.onResponseEnd?.(call, call.trailers ?? {});
  // The upstream answered in full before our request body was all sent (RFC 9113 §8.1 allows it):
  // the rest is not needed, and a stream left half-open would hold a slot of the session until it
  // closes. RST_STREAM CANCEL, as abort() sends (node:http2 half-closes an open stream just before
  // resetting it, so the upstream can see its body end first; it has answered already).
  if (!this.writableEnded && !this.destroyed) this.close(NGHTTP2_CANCEL);
}

function onStreamError(this: CallStream, err: Error): void {
  const call = this[kCall];
  if (call !== undefined && call.error === null) call.error = err;
}

function onStreamClose(this: CallStream): void {
  const call = this[kCall];
  if (call === undefined) return;
  if (call.entry !== null) call.entry.active--;
  if (call.settled) return;
  const rst = this.rstCode ?? -1;
  let cause = call.error as (Error & { code?: string; cause?: unknown }) | null;
  // A stream still pending when its session failed to connect: the socket's error is the cause.
  if (cause?.code === 'ERR_HTTP2_STREAM_CANCEL' && cause.cause instanceof Error)
    cause = cause.cause as Error & { code?: string };
  // A session that failed to connect fails its streams with the socket's error (ECONNREFUSED, ...).
  const sessionCode = cause?.code;
  if (sessionCode !== undefined && !sessionCode.startsWith('ERR_HTTP2')) {
    call.fail(new H2StreamError(cause?.message ?? 'upstream failed', sessionCode));
    return;
  }
  call.fail(
    new H2StreamError(
      rst === NGHTTP2_REFUSED_STREAM
        ? 'upstream refused the stream'
        : `upstream reset the stream (RST_STREAM code ${rst})`,
      rst === NGHTTP2_REFUSED_STREAM ? 'FL_H2_REFUSED_STREAM' : 'FL_H2_STREAM_RESET',
      rst,
    ),
  );
}
