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
import http2 from 'node:http2';
const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM, HTTP2_HEADER_AUTHORITY, HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_SCHEME, HTTP2_HEADER_STATUS, } = http2.constants;
/** Stream-level flow-control window we advertise; the session window is raised to match several. */
const STREAM_WINDOW = 1024 * 1024;
const SESSION_WINDOW = 8 * STREAM_WINDOW;
const kCall = Symbol('faultline.h2call');
/** An upstream failure of one stream, with undici-style stable codes the exchange classifies. */
export class H2StreamError extends Error {
    code;
    /** RST_STREAM code the upstream sent (or the stream closed with); -1 when not a stream reset. */
    rstCode;
    constructor(message, code, rstCode = -1) {
        super(message);
        this.name = 'H2StreamError';
        this.code = code;
        this.rstCode = rstCode;
    }
}
/** Per-call state and the handler's controller at once (one object per call, listeners module-level). */
class H2Call {
    handler;
    entry;
    stream = null;
    body = null;
    trailers = null;
    error = null;
    responded = false;
    settled = false;
    isAborted = false;
    isPaused = false;
    abortReason = null;
    constructor(handler, entry) {
        this.handler = handler;
        this.entry = entry;
    }
    get aborted() {
        return this.isAborted;
    }
    get paused() {
        return this.isPaused;
    }
    get reason() {
        return this.abortReason;
    }
    abort(reason) {
        if (this.isAborted || this.settled)
            return;
        this.isAborted = true;
        this.abortReason = reason;
        this.settled = true;
        this.detachBody();
        // RST_STREAM(CANCEL) on this stream only: the session and its other streams carry on.
        const s = this.stream;
        if (s !== null && !s.destroyed)
            s.close(NGHTTP2_CANCEL);
        // Reported on the next tick, as undici does, so a caller aborting from inside a callback never
        // re-enters its own handler.
        process.nextTick(reportAbort, this);
    }
    pause() {
        this.isPaused = true;
        this.stream?.pause();
    }
    resume() {
        this.isPaused = false;
        this.stream?.resume();
    }
    detachBody() {
        const body = this.body;
        if (body === null)
            return;
        this.body = null;
        if (this.stream !== null)
            body.unpipe(this.stream);
    }
    fail(err) {
        if (this.settled)
            return;
        this.settled = true;
        this.detachBody();
        this.handler.onResponseError?.(this, err);
    }
}
function reportAbort(call) {
    call.handler.onResponseError?.(call, call.reason);
}
export class H2Upstream {
    origin;
    authority;
    scheme;
    opts;
    sessions = [];
    closed = false;
    constructor(origin, opts) {
        const u = new URL(origin);
        this.origin = u.origin;
        this.authority = u.host;
        this.scheme = u.protocol === 'https:' ? 'https' : 'http';
        this.opts = opts;
    }
    /** Same contract as undici's `Dispatcher.dispatch` for the handler methods the exchange uses. */
    dispatch(opts, handler) {
        const entry = this.pick();
        const call = new H2Call(handler, entry);
        handler.onRequestStart?.(call, null);
        if (call.aborted)
            return true;
        if (entry === null) {
            call.fail(new H2StreamError('upstream pool is closed', 'UND_ERR_DESTROYED'));
            return true;
        }
        const body = opts.body;
        const hasBody = body !== null && body !== undefined;
        let stream;
        try {
            stream = entry.session.request(this.requestHeaders(opts), { endStream: !hasBody });
        }
        catch (err) {
            // Header fields HTTP/2 refuses (duplicated single-value fields, connection-specific ones).
            call.fail(new H2StreamError(err.message, 'UND_ERR_INVALID_ARG'));
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
            if (typeof body.pipe === 'function') {
                call.body = body;
                body.pipe(stream);
            }
            else
                stream.end(body);
        }
        return true;
    }
    requestHeaders(opts) {
        const out = {
            [HTTP2_HEADER_METHOD]: opts.method,
            [HTTP2_HEADER_PATH]: opts.path,
            [HTTP2_HEADER_SCHEME]: this.scheme,
        };
        const raw = opts.headers;
        let authority = null;
        if (raw)
            for (let i = 0; i < raw.length; i += 2) {
                const name = raw[i].toLowerCase();
                const value = raw[i + 1];
                if (name === 'host') {
                    // RFC 9113 §8.3.1: the client's Host becomes :authority, so virtual hosts keep working.
                    authority ??= value;
                    continue;
                }
                const prev = out[name];
                if (prev === undefined)
                    out[name] = value;
                else if (Array.isArray(prev))
                    prev.push(value);
                else
                    out[name] = [prev, value];
            }
        out[HTTP2_HEADER_AUTHORITY] = authority ?? this.authority;
        return out;
    }
    /** The least-busy usable session, opening another when all are at their stream budget. */
    pick() {
        if (this.closed)
            return null;
        let best = null;
        let usable = 0;
        for (const e of this.sessions) {
            if (!e.usable)
                continue;
            usable++;
            if (best === null || e.active < best.active)
                best = e;
        }
        if (best !== null && (best.active < this.opts.maxStreamsPerSession || usable >= this.opts.maxSessions))
            return best;
        return this.connect();
    }
    connect() {
        const session = http2.connect(this.origin, {
            settings: { enablePush: false, initialWindowSize: STREAM_WINDOW },
            ...(this.scheme === 'https'
                ? { rejectUnauthorized: this.opts.rejectUnauthorized, ALPNProtocols: ['h2'] }
                : {}),
        });
        const entry = { session, active: 0, usable: true };
        this.sessions.push(entry);
        const retire = () => {
            entry.usable = false;
            const i = this.sessions.indexOf(entry);
            if (i >= 0)
                this.sessions.splice(i, 1);
        };
        session.on('connect', () => {
            try {
                session.setLocalWindowSize(SESSION_WINDOW);
            }
            catch {
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
    async close() {
        this.closed = true;
        const all = this.sessions.splice(0);
        await Promise.all(all.map((e) => new Promise((resolve) => {
            e.usable = false;
            if (e.session.closed || e.session.destroyed)
                resolve();
            else
                e.session.close(resolve);
        })));
    }
    async destroy() {
        this.closed = true;
        for (const e of this.sessions.splice(0)) {
            e.usable = false;
            e.session.destroy();
        }
    }
}
// ---- stream listeners (module-level: `this` is the stream, its call is found through kCall) ---------
function onStreamResponse(headers) {
    const call = this[kCall];
    if (call === undefined || call.settled)
        return;
    call.responded = true;
    const status = Number(headers[HTTP2_HEADER_STATUS]);
    delete headers[HTTP2_HEADER_STATUS];
    call.handler.onResponseStart?.(call, status, headers, '');
}
function onStreamData(chunk) {
    const call = this[kCall];
    if (call === undefined || call.settled)
        return;
    call.handler.onResponseData?.(call, chunk);
}
function onStreamTrailers(trailers) {
    const call = this[kCall];
    // Kept until 'end': data still buffered in the readable side (a paused stream) comes first.
    if (call !== undefined)
        call.trailers = trailers;
}
function onStreamEnd() {
    const call = this[kCall];
    // Without a response the stream was reset or failed: 'close' follows and says how.
    if (call === undefined || call.settled || !call.responded)
        return;
    // Node also ends the readable side of a stream the peer reset: that is not a complete response.
    const rst = this.rstCode;
    if (rst !== undefined && rst !== 0 && call.trailers === null)
        return;
    call.settled = true;
    call.detachBody();
    call.handler.onResponseEnd?.(call, call.trailers ?? {});
}
function onStreamError(err) {
    const call = this[kCall];
    if (call !== undefined && call.error === null)
        call.error = err;
}
function onStreamClose() {
    const call = this[kCall];
    if (call === undefined)
        return;
    if (call.entry !== null)
        call.entry.active--;
    if (call.settled)
        return;
    const rst = this.rstCode ?? -1;
    let cause = call.error;
    // A stream still pending when its session failed to connect: the socket's error is the cause.
    if (cause?.code === 'ERR_HTTP2_STREAM_CANCEL' && cause.cause instanceof Error)
        cause = cause.cause;
    // A session that failed to connect fails its streams with the socket's error (ECONNREFUSED, ...).
    const sessionCode = cause?.code;
    if (sessionCode !== undefined && !sessionCode.startsWith('ERR_HTTP2')) {
        call.fail(new H2StreamError(cause?.message ?? 'upstream failed', sessionCode));
        return;
    }
    call.fail(new H2StreamError(rst === NGHTTP2_REFUSED_STREAM
        ? 'upstream refused the stream'
        : `upstream reset the stream (RST_STREAM code ${rst})`, rst === NGHTTP2_REFUSED_STREAM ? 'FL_H2_REFUSED_STREAM' : 'FL_H2_STREAM_RESET', rst));
}
//# sourceMappingURL=h2-upstream.js.map