/**
 * A client-facing listener: HTTP/1.1 (`http1`), HTTP/2 with prior knowledge (`h2c`), or TLS with ALPN
 * choosing h2 or http/1.1 (`tls`). It owns the socket and reads the current plan for each request.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import { ARM_CANARY, OUTCOME_CLIENT_ABORT, OUTCOME_ERROR, OUTCOME_RESET, OUTCOME_TIMEOUT, } from '../experiments/runtime.js';
import { ErrorRateWindow } from '../killswitch/guards.js';
import { assign } from '../split/assign.js';
import { log } from '../telemetry/log.js';
import { Exchange, ProxyResponse, onClientResponseClose } from './exchange.js';
import { matchRoute } from './plan.js';
import { rawHeader } from './raw-headers.js';
import { replyError } from './reply.js';
/** HTTP/2 compat responses that carry the exchange back-reference like ProxyResponse. */
class ProxyH2Response extends http2.Http2ServerResponse {
    exchange = null;
}
/** Node's default, stated: larger request heads are answered 431. */
const MAX_HEADER_BYTES = 16 * 1024;
export class Listener {
    spec;
    proto;
    plan;
    inFlight = 0;
    draining = false;
    server;
    metrics;
    table;
    guard;
    sockets = new Set();
    sessions = new Set();
    constructor(spec, plan, metrics, table) {
        this.spec = spec;
        this.plan = plan;
        this.metrics = metrics;
        this.table = table;
        this.proto = spec.protocol === 'tls' ? 'https' : 'http';
        this.guard = guardFor(spec);
        this.server = this.createServer();
        this.server.on('connection', (socket) => this.onConnection(socket));
    }
    createServer() {
        const onRequest = (req, res) => this.onRequest(req, res);
        const spec = this.spec;
        if (spec.protocol === 'http1') {
            const server = http.createServer({
                ServerResponse: ProxyResponse,
                maxHeaderSize: MAX_HEADER_BYTES,
                requestTimeout: 0,
                headersTimeout: 30_000,
                keepAliveTimeout: 65_000,
            }, onRequest);
            server.on('clientError', (err, socket) => this.onClientError(err, socket));
            server.on('upgrade', (_req, socket) => {
                socket.end('HTTP/1.1 501 Not Implemented\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
            });
            return server;
        }
        const h2Options = {
            Http2ServerResponse: ProxyH2Response,
            maxSessionMemory: 64,
            settings: { maxHeaderListSize: MAX_HEADER_BYTES * 4 },
        };
        const server = spec.protocol === 'h2c'
            ? http2.createServer(h2Options, onRequest)
            : http2.createSecureServer({
                ...h2Options,
                allowHTTP1: true,
                Http1ServerResponse: ProxyResponse,
                cert: readFileSync(spec.tls?.cert),
                key: readFileSync(spec.tls?.key),
            }, onRequest);
        server.on('sessionError', () => this.metrics.clientErrors.inc({ listener: spec.name, kind: 'h2_session' }));
        // Tracked so a drain can send GOAWAY: closing the server alone lets open sessions start streams.
        server.on('session', (session) => {
            this.sessions.add(session);
            session.once('close', () => this.sessions.delete(session));
        });
        return server;
    }
    onConnection(socket) {
        this.sockets.add(socket);
        const gauge = this.metrics.openConnections;
        gauge.inc({ listener: this.spec.name });
        socket.once('close', () => {
            this.sockets.delete(socket);
            gauge.dec({ listener: this.spec.name });
        });
    }
    onClientError(err, socket) {
        const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
        const kind = tooLarge ? 'header_too_large' : err.code === 'ECONNRESET' ? 'reset' : 'malformed';
        this.metrics.clientErrors.inc({ listener: this.spec.name, kind });
        if (!socket.writable || kind === 'reset') {
            socket.destroy();
            return;
        }
        socket.end(tooLarge
            ? 'HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n'
            : 'HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    }
    onRequest(req, res) {
        const plan = this.plan;
        req.on('error', ignore);
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
        const isH2 = req.httpVersionMajor === 2;
        const host = plan.hostRouting ? rawHeader(req.rawHeaders, isH2 ? ':authority' : 'host') : undefined;
        const route = matchRoute(plan, url, host);
        if (route === null) {
            replyError(res, 'no_route');
            return;
        }
        if (this.draining && !isH2)
            res.shouldKeepAlive = false;
        const ex = new Exchange(this, plan, route, req, res, isH2);
        res.exchange = ex;
        res.on('close', onClientResponseClose);
        this.inFlight++;
        if (route.experiments.length > 0 ||
            plan.trustAssignment ||
            rawHeader(req.rawHeaders, 'baggage') !== undefined)
            assign(ex);
        const exp = ex.exp;
        if (ex.injectNow && exp !== null) {
            ex.injected = true;
            exp.injectedCounter.inc();
            exp.fault.start(ex);
        }
        else {
            ex.forward();
        }
    }
    exchangeFinished(ex, outcome, latencyMs) {
        this.inFlight--;
        const exp = ex.exp;
        if (exp !== null) {
            exp.recordOutcome(this.spec.name, ex.arm, outcome, ex.statusClass, latencyMs, ex.injected, ex.observe);
            if (ex.observe && ex.runId === exp.runId)
                this.table.observe(exp, ex.arm, outcome, latencyMs, ex.injected, ex.sessionKey);
        }
        // The global guard watches real failures: faults injected on purpose here do not count.
        if (this.guard !== null && outcome !== OUTCOME_CLIENT_ABORT && !ex.injected) {
            const failed = outcome === OUTCOME_ERROR || outcome === OUTCOME_TIMEOUT || outcome === OUTCOME_RESET;
            if (this.guard.record(failed, Date.now()))
                this.globalGuardTripped();
        }
        if (this.plan.accessLog) {
            log('info', 'access', {
                listener: this.spec.name,
                route: ex.route.name,
                method: ex.req.method,
                path: ex.req.url,
                status: ex.status,
                ms: Math.round(latencyMs * 1000) / 1000,
                ...(exp !== null
                    ? { experiment: exp.id, group: ex.arm === ARM_CANARY ? 'canary' : 'control', injected: ex.injected }
                    : {}),
            });
        }
    }
    globalGuardTripped() {
        const { requests, errors } = this.guard?.rate() ?? { requests: 0, errors: 0 };
        const threshold = this.spec.max_error_rate?.threshold ?? 0;
        const reason = `listener ${this.spec.name}: error rate ${((100 * errors) / requests).toFixed(2)}% of ${requests} requests over ${this.spec.max_error_rate?.window_s}s exceeds ${(threshold * 100).toFixed(2)}%`;
        const killed = this.table.killAll('global_error_rate', reason, `guard:${this.spec.name}`);
        if (killed.length > 0)
            log('warn', 'global guard tripped', { listener: this.spec.name, killed, reason });
        this.guard?.reset();
    }
    /** Swap in a new plan (reload): requests already running keep the snapshot they started with. */
    swapPlan(plan, spec) {
        this.plan = plan;
        if (JSON.stringify(spec.max_error_rate) !== JSON.stringify(this.spec.max_error_rate))
            this.guard = guardFor(spec);
    }
    async listen() {
        await new Promise((resolve, reject) => {
            this.server.once('error', reject);
            this.server.listen(this.spec.port, this.spec.address, () => {
                this.server.off('error', reject);
                resolve();
            });
        });
        this.server.on('error', (err) => log('error', 'listener error', { listener: this.spec.name, error: err.message }));
        return this.server.address();
    }
    address() {
        return this.server.address();
    }
    /** Stop accepting; resolves when in-flight requests are done or the deadline passes. */
    async drain(deadlineMs) {
        this.draining = true;
        this.server.close();
        for (const session of this.sessions)
            session.close();
        const until = Date.now() + deadlineMs;
        while (this.inFlight > 0 && Date.now() < until) {
            closeIdle(this.server);
            await new Promise((r) => setTimeout(r, 25));
        }
        if (this.inFlight > 0)
            log('warn', 'drain deadline passed', { listener: this.spec.name, inFlight: this.inFlight });
        for (const s of this.sockets)
            s.destroy();
        // Let the responses' close events run, so requests cut here are recorded as client aborts before
        // the pools are destroyed under them (which would read as upstream failures).
        for (let i = 0; i < 20 && this.inFlight > 0; i++)
            await new Promise((r) => setTimeout(r, 5));
    }
}
function closeIdle(server) {
    const s = server;
    s.closeIdleConnections?.();
}
function guardFor(spec) {
    const g = spec.max_error_rate;
    return g ? new ErrorRateWindow(g.window_s, g.threshold, g.min_requests) : null;
}
function ignore() { }
/** RFC 9112 §3.2.2: a server must accept absolute-form targets; forward them in origin-form. */
function originFormOf(target) {
    if (target === undefined || !/^https?:\/\//i.test(target))
        return null;
    try {
        const u = new URL(target);
        return u.pathname + u.search;
    }
    catch {
        return null;
    }
}
//# sourceMappingURL=listener.js.map