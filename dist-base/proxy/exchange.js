/**
 * One proxied request: its state and, at the same time, the undici dispatch handler for its upstream
 * leg (undici's habit: the handler object *is* the per-request state, callbacks are methods, listeners
 * are module-level functions, so the hot path allocates no closures).
 */
import { ServerResponse } from 'node:http';
import { constants as h2constants } from 'node:http2';
import { performance } from 'node:perf_hooks';
import { ARM_NONE, OUTCOME_CLIENT_ABORT, OUTCOME_ERROR, OUTCOME_OK, OUTCOME_RESET, OUTCOME_TIMEOUT, } from '../experiments/runtime.js';
import { methodIndex, statusClassIndex, STATUS_CLASSES, METHODS } from '../telemetry/metrics.js';
import { buildUpstreamHeaders, clientResponseHeaders } from './headers.js';
import { countGrpcResponse, grpcMessageEncode, grpcTimeoutMs, GRPC_OUTCOME_UNKNOWN, grpcOutcome, } from './grpc.js';
import { GRPC_DEADLINE_EXCEEDED, GRPC_UNAVAILABLE } from './grpc-status.js';
import { replyError } from './reply.js';
import { rawHeader } from './raw-headers.js';
/** Node's response classes with a back-reference to the exchange, set via the servers' options. */
export class ProxyResponse extends ServerResponse {
    exchange = null;
}
/** Reused for every forward: the headers builder fills it synchronously. */
const forwardCtx = {
    clientIp: '',
    proto: 'http',
    baggage: null,
    hasBody: false,
    teTrailers: false,
    joinCookies: false,
};
export class Exchange {
    host;
    plan;
    route;
    req;
    res;
    startMs;
    isH2;
    isGrpc;
    controller = null;
    done = false;
    clientGone = false;
    status = 0;
    /** Index into STATUS_CLASSES of what the client got, set when the exchange finishes. */
    statusClass = 5;
    /** gRPC status from the upstream's trailers (or trailers-only headers); -1 until known. */
    grpcStatus = -1;
    drainHooked = false;
    /** The client sends a request body (set by forward()). */
    hasBody = false;
    // Experiment state, set by assign().
    exp = null;
    arm = ARM_NONE;
    /** True at the hop that drew the arm: the observation point that feeds the analyzer. */
    observe = false;
    /** The fault should start here (canary, injecting hop, capacity left). */
    injectNow = false;
    injected = false;
    /** Outgoing baggage header, or null to forward the incoming one unchanged. */
    baggageOut = null;
    /** 32-bit hash of this request's sticky key (sticky experiments), for per-session counting. */
    sessionKey = 0;
    /** The experiment run this request was assigned in; outcomes of an earlier run are not judged. */
    runId = 0;
    holdTimer = null;
    /** The route's timeout_ms, from forward() to the upstream's response headers (queue and connect included). */
    deadlineTimer = null;
    responseDelayMs = 0;
    heldStatus = 0;
    heldHeaders = null;
    heldChunks = null;
    heldTrailers = null;
    heldEnd = false;
    constructor(host, plan, route, req, res, isH2) {
        this.host = host;
        this.plan = plan;
        this.route = route;
        this.req = req;
        this.res = res;
        this.isH2 = isH2;
        this.startMs = performance.now();
        this.isGrpc =
            isH2 && (rawHeader(req.rawHeaders, 'content-type')?.startsWith('application/grpc') ?? false);
    }
    // ---- upstream leg -------------------------------------------------------------------------------
    forward() {
        if (this.done)
            return;
        const req = this.req;
        forwardCtx.clientIp = req.socket?.remoteAddress ?? '';
        forwardCtx.proto = this.host.proto;
        forwardCtx.baggage = this.baggageOut;
        forwardCtx.teTrailers = this.route.upstreamProtocol !== 'http1';
        forwardCtx.joinCookies = this.isH2 && this.route.upstreamProtocol === 'http1';
        const headers = buildUpstreamHeaders(req.rawHeaders, forwardCtx);
        const hasBody = this.isH2 ? !req.stream.endAfterHeaders : forwardCtx.hasBody;
        this.hasBody = hasBody;
        // A gRPC stream may rightly send no headers for long (bidi, server think time): the caller's
        // grpc-timeout, forwarded as is, bounds it instead.
        if (!this.isGrpc)
            this.startDeadline();
        this.route.pool.dispatch({
            path: req.url,
            method: req.method,
            headers,
            body: hasBody ? req : null,
            // The exchange's own deadline covers the pool queue and connect too (undici's starts later
            // and ticks in 500 ms steps for timeouts of a second and more).
            headersTimeout: 0,
        }, this);
    }
    onRequestStart(controller) {
        this.controller = controller;
        // The client left, or the deadline passed, while the request waited in the pool queue: free the
        // slot at once.
        if (this.done)
            controller.abort(this.clientGone ? clientGoneError : upstreamDeadlineError);
    }
    onResponseStart(controller, statusCode, headers, statusMessage) {
        if (statusCode < 200 || this.done)
            return;
        this.clearDeadline();
        this.status = statusCode;
        if (this.isGrpc)
            this.noteGrpcStatus(headers);
        headers = clientResponseHeaders(headers, this.injectedMark(), this.armMark(), this.isH2);
        // A kill between the fault's start and the upstream's answer cancels the response-leg delay.
        if (this.responseDelayMs > 0 && this.exp !== null && this.exp.injecting) {
            controller.pause();
            this.heldStatus = statusCode;
            this.heldHeaders = headers;
            this.heldChunks = [];
            this.hold(this.responseDelayMs);
            return;
        }
        this.writeHead(statusCode, headers, statusMessage);
    }
    onResponseData(controller, chunk) {
        if (this.heldChunks !== null) {
            this.heldChunks.push(chunk);
            return;
        }
        const res = this.res;
        // Pause the upstream only past RESPONSE_BUFFER_BYTES queued for the client, not at the socket's
        // 16 KiB high-water mark: each upstream read is up to 64 KiB, so pausing at the mark paused and
        // resumed once per chunk. Memory per response stays bounded by the limit plus one chunk.
        if (!res.write(chunk) && (this.isH2 || res.writableLength > RESPONSE_BUFFER_BYTES)) {
            controller.pause();
            if (!this.drainHooked) {
                this.drainHooked = true;
                this.res.on('drain', onClientDrain);
            }
        }
    }
    onResponseEnd(_controller, trailers) {
        if (this.heldChunks !== null) {
            this.heldEnd = true;
            this.heldTrailers = trailers;
            return;
        }
        this.endResponse(trailers);
    }
    onResponseError(_controller, err) {
        if (this.done)
            return;
        this.clearDeadline();
        if (this.clientGone) {
            this.finish(OUTCOME_CLIENT_ABORT);
            return;
        }
        const code = classifyUpstreamError(err);
        if (code !== 'bad_request')
            this.countUpstreamError(code);
        if (this.holdTimer !== null)
            this.cancelHold();
        if (this.isGrpc) {
            this.heldChunks = null;
            this.failGrpc(code, err);
            return;
        }
        if (!this.res.headersSent) {
            this.heldChunks = null;
            this.status = replyError(this.res, code, this.marks());
            this.finish(this.status === 504 ? OUTCOME_TIMEOUT : OUTCOME_ERROR);
        }
        else {
            // Headers are out: the only honest signal left is a broken connection, never a short body
            // that looks complete.
            this.finish(OUTCOME_RESET);
            this.res.destroy(err);
        }
    }
    writeHead(status, headers, statusMessage) {
        const res = this.res;
        if (this.grpcStatus >= 0 && this.isGrpc) {
            // grpc-status in the response HEADERS: a trailers-only response, which must stay one HEADERS
            // frame with END_STREAM (gRPC clients read a status only from there or from trailers).
            this.respondTrailersOnly(status, headers);
            this.finish(this.outcomeOfStatus());
            return;
        }
        try {
            if (statusMessage && !this.isH2)
                res.writeHead(status, statusMessage, headers);
            else
                res.writeHead(status, headers);
        }
        catch {
            // A header Node refuses to serialise: the upstream's response is unusable. Clear what the
            // failed writeHead stored (HTTP/2 keeps it), answer, finish, and only then abort the upstream
            // leg (its error callback then sees a finished exchange).
            for (const name of res.getHeaderNames())
                res.removeHeader(name);
            this.countUpstreamError('upstream_protocol');
            this.status = replyError(res, 'upstream_protocol', this.marks());
            this.finish(OUTCOME_ERROR);
            this.controller?.abort(invalidResponseError);
        }
    }
    endResponse(trailers) {
        if (this.done)
            return;
        const res = this.res;
        if (this.isGrpc)
            this.noteGrpcStatus(trailers);
        if (hasAnyKey(trailers))
            res.addTrailers(trailers);
        res.end();
        this.finish(this.outcomeOfStatus());
    }
    noteGrpcStatus(headers) {
        const v = headers['grpc-status'];
        if (typeof v === 'string')
            this.grpcStatus = Number(v);
    }
    outcomeOfStatus() {
        if (this.isGrpc) {
            const o = grpcOutcome(this.grpcStatus);
            // A gRPC response without grpc-status is a failed call to the client (INTERNAL), whatever
            // the HTTP status said.
            return o !== GRPC_OUTCOME_UNKNOWN ? o : OUTCOME_ERROR;
        }
        if (this.status === 504)
            return OUTCOME_TIMEOUT;
        if (this.exp !== null ? this.exp.isError(this.status) : this.status >= 500)
            return OUTCOME_ERROR;
        return OUTCOME_OK;
    }
    // ---- faults -------------------------------------------------------------------------------------
    /** Holds the exchange for `ms` without an upstream connection; the fault decides what happens next. */
    hold(ms) {
        const exp = this.exp;
        exp.activeFaults++;
        exp.activeGauge.inc();
        exp.held.add(this);
        this.holdTimer = setTimeout(onHoldTimer, ms, this);
    }
    cancelHold() {
        if (this.holdTimer === null)
            return;
        clearTimeout(this.holdTimer);
        this.holdTimer = null;
        const exp = this.exp;
        exp.activeFaults--;
        exp.activeGauge.dec();
        exp.held.delete(this);
    }
    /** The timer of a hold fired. */
    holdElapsed() {
        this.cancelHold();
        this.exp?.fault.holdEnded(this, false);
    }
    /** The experiment was killed: let the hold go now. */
    releaseHold() {
        if (this.holdTimer === null)
            return;
        this.cancelHold();
        this.exp?.fault.holdEnded(this, true);
    }
    /** End of a response-leg delay: send what the upstream already produced and resume streaming. */
    releaseResponse() {
        const headers = this.heldHeaders;
        const chunks = this.heldChunks;
        this.heldHeaders = null;
        this.heldChunks = null;
        if (this.done || headers === null || chunks === null)
            return;
        this.writeHead(this.heldStatus, headers);
        for (const c of chunks)
            this.res.write(c);
        if (this.heldEnd)
            this.endResponse(this.heldTrailers ?? {});
        else
            this.controller?.resume();
    }
    replyInjected(status, headers, body) {
        if (this.done)
            return;
        const res = this.res;
        const out = { ...headers, 'content-length': Buffer.byteLength(body) };
        this.addMarks(out);
        this.status = status;
        res.writeHead(status, out);
        res.end(body);
        this.finish(this.outcomeOfStatus());
    }
    /** A trailers-only gRPC response: HTTP 200 with grpc-status in the only HEADERS frame. */
    replyGrpcStatus(code, message) {
        if (this.done)
            return;
        const out = {
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
    respondTrailersOnly(status, headers) {
        const stream = this.req.stream;
        try {
            if (!stream.destroyed && !stream.headersSent)
                stream.respond({ ...headers, ':status': status }, { endStream: true });
        }
        catch {
            stream.close(h2constants.NGHTTP2_INTERNAL_ERROR);
        }
    }
    /**
     * The upstream leg of a gRPC call failed. Before any response: the status gRPC clients expect
     * from a proxy (UNAVAILABLE; DEADLINE_EXCEEDED for a timeout), trailers-only. A stream reset by the
     * upstream, or any failure after headers went out, is mirrored as RST_STREAM on this one stream
     * (CANCEL stays CANCEL; anything else is INTERNAL_ERROR), never a made-up OK.
     */
    failGrpc(code, err) {
        const rst = err.rstCode ?? -1;
        const refused = rst === h2constants.NGHTTP2_REFUSED_STREAM;
        if (this.res.headersSent || (rst >= 0 && !refused)) {
            this.finish(OUTCOME_RESET);
            const stream = this.req.stream;
            if (!stream.destroyed)
                stream.close(rst === h2constants.NGHTTP2_CANCEL
                    ? h2constants.NGHTTP2_CANCEL
                    : h2constants.NGHTTP2_INTERNAL_ERROR);
            return;
        }
        const grpc = code === 'upstream_timeout' ? GRPC_DEADLINE_EXCEEDED : GRPC_UNAVAILABLE;
        this.status = 200;
        this.grpcStatus = grpc;
        const out = {
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
    resetClient(outcome = OUTCOME_RESET) {
        if (this.done)
            return;
        this.finish(outcome);
        if (this.isH2) {
            this.req.stream.close(h2constants.NGHTTP2_CANCEL);
            return;
        }
        const socket = this.req.socket;
        try {
            socket.resetAndDestroy();
        }
        catch {
            socket.destroy(); // TLS sockets have no TCP handle to reset
        }
    }
    startDeadline() {
        this.deadlineTimer = setTimeout(onUpstreamDeadline, this.route.timeoutMs, this);
    }
    /** The route's timeout passed before the upstream's response headers: 504, then abort the upstream leg. */
    upstreamDeadlinePassed() {
        this.deadlineTimer = null;
        if (this.done || this.status !== 0)
            return;
        // A client still sending its body to an upstream that keeps taking it (a slow upload): the upstream
        // cannot answer before it has the body, so the deadline moves on by one period. An upstream that
        // stopped reading (the body is paused by backpressure) times out as usual.
        if (this.hasBody && !this.req.complete && this.req.readableFlowing !== false) {
            this.startDeadline();
            return;
        }
        this.countUpstreamError('upstream_timeout');
        this.status = replyError(this.res, 'upstream_timeout', this.marks());
        this.finish(OUTCOME_TIMEOUT);
        this.controller?.abort(upstreamDeadlineError);
    }
    clearDeadline() {
        if (this.deadlineTimer === null)
            return;
        clearTimeout(this.deadlineTimer);
        this.deadlineTimer = null;
    }
    injectedMark() {
        return this.injected && this.plan.injectedHeader && this.exp !== null ? this.exp.injectedMark : null;
    }
    armMark() {
        return this.plan.armHeader && this.exp !== null ? (this.exp.armMarks[this.arm] ?? null) : null;
    }
    addMarks(out) {
        const injected = this.injectedMark();
        if (injected !== null)
            out['x-faultline-injected'] = injected;
        const arm = this.armMark();
        if (arm !== null)
            out['x-faultline-arm'] = arm;
    }
    /** The marks for a reply Faultline writes itself on a failure path, or null when there are none. */
    marks() {
        if (this.exp === null)
            return null;
        const out = {};
        this.addMarks(out);
        return out;
    }
    /** Milliseconds left of the caller's gRPC deadline (grpc-timeout), or -1 when none. */
    grpcDeadlineMs() {
        if (!this.isGrpc)
            return -1;
        const ms = grpcTimeoutMs(rawHeader(this.req.rawHeaders, 'grpc-timeout'));
        return ms < 0 ? -1 : Math.max(0, ms - (performance.now() - this.startMs));
    }
    // ---- end of the exchange ------------------------------------------------------------------------
    /** The client connection closed (or the stream ended); if the response had not finished, it left. */
    clientClosed() {
        if (this.done)
            return;
        this.clientGone = true;
        // A caller that gave up while a timeout fault held its request (a gRPC deadline, an HTTP client's
        // own timeout on a hang): the fault did what it simulates, so it counts as a timeout, not an abort.
        const timedOut = this.holdTimer !== null && this.injected && this.exp?.fault.kind === 'timeout';
        if (timedOut && this.isGrpc)
            this.grpcStatus = GRPC_DEADLINE_EXCEEDED;
        this.cancelHold();
        this.controller?.abort(clientGoneError);
        this.finish(timedOut ? OUTCOME_TIMEOUT : OUTCOME_CLIENT_ABORT);
    }
    countUpstreamError(code) {
        const route = this.route;
        let c = route.upstreamErrors.get(code);
        if (c === undefined) {
            c = route.metrics.upstreamErrors.labels(route.name, code.replace('upstream_', ''));
            route.upstreamErrors.set(code, c);
        }
        c.inc();
    }
    finish(outcome) {
        if (this.done)
            return;
        this.done = true;
        if (this.holdTimer !== null)
            this.cancelHold();
        this.clearDeadline();
        const latencyMs = performance.now() - this.startMs;
        const route = this.route;
        const statusClass = outcome === OUTCOME_RESET || outcome === OUTCOME_CLIENT_ABORT ? 5 : statusClassIndex(this.status);
        this.statusClass = statusClass;
        const idx = methodIndex(this.req.method) * STATUS_CLASSES.length + statusClass;
        let counter = route.requestCounters[idx];
        if (counter === undefined) {
            const method = METHODS[(idx / STATUS_CLASSES.length) | 0];
            counter = route.metrics.requests.labels(route.listener, route.name, method, STATUS_CLASSES[statusClass]);
            route.requestCounters[idx] = counter;
        }
        counter.inc();
        if (this.isGrpc)
            countGrpcResponse(route, this.grpcStatus);
        route.duration.observe(latencyMs / 1000);
        this.host.exchangeFinished(this, outcome, latencyMs);
    }
}
/** Bytes of response body queued for the client above which the upstream leg is paused (HTTP/1.1). */
const RESPONSE_BUFFER_BYTES = 256 * 1024;
const clientGoneError = Object.assign(new Error('client went away'), { code: 'FL_CLIENT_GONE' });
const invalidResponseError = Object.assign(new Error('invalid upstream response'), {
    code: 'FL_BAD_RESPONSE',
});
const upstreamDeadlineError = Object.assign(new Error('upstream deadline passed'), {
    code: 'FL_UPSTREAM_DEADLINE',
});
function hasAnyKey(o) {
    for (const k in o)
        if (Object.hasOwn(o, k))
            return true;
    return false;
}
function onHoldTimer(ex) {
    ex.holdElapsed();
}
function onUpstreamDeadline(ex) {
    ex.upstreamDeadlinePassed();
}
function onClientDrain() {
    this.exchange?.controller?.resume();
}
/** `close` on the client response: module-level, the exchange is found through the response. */
export function onClientResponseClose() {
    this.exchange?.clientClosed();
}
function classifyUpstreamError(err) {
    // undici's HTTPParserError (a malformed upstream response) carries no code.
    if (err.name === 'HTTPParserError')
        return 'upstream_protocol';
    const code = err.code;
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
//# sourceMappingURL=exchange.js.map