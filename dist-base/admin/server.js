/**
 * The admin listener (separate port, loopback by default). Paths mirror the model:
 *   GET  /healthz  /ready  /metrics  /config  /events (server-sent events)
 *   GET  /experiments  /experiments/{id}  /experiments/{id}/report
 *   POST /experiments/{id}/kill  /experiments/{id}/arm  /kill  /config/reload
 * Mutating calls need `authorization: Bearer <token>` when a token is configured.
 * Errors are JSON: {"error": {"code", "message", "field"?}}.
 */
import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import { experimentReport, experimentView } from '../experiments/report.js';
const MAX_BODY_BYTES = 64 * 1024;
export class AdminServer {
    server;
    target;
    token;
    streams = new Set();
    /** SSE comment every 15 s so idle proxies and load balancers keep /events open. */
    heartbeat;
    constructor(target, token) {
        this.target = target;
        this.token = token ? Buffer.from(token) : null;
        this.server = http.createServer((req, res) => {
            this.handle(req, res).catch((err) => sendError(res, 500, 'internal', err.message));
        });
        target.table.on('event', (e) => this.broadcast(e));
        this.heartbeat = setInterval(() => {
            for (const s of this.streams)
                s.write(': keep-alive\n\n');
        }, 15_000);
        this.heartbeat.unref();
    }
    async listen(port, address) {
        await new Promise((resolve, reject) => {
            this.server.once('error', reject);
            this.server.listen(port, address, () => {
                this.server.off('error', reject);
                resolve();
            });
        });
        return this.server.address();
    }
    async close() {
        clearInterval(this.heartbeat);
        for (const s of this.streams)
            s.end();
        await new Promise((resolve) => {
            this.server.close(() => resolve());
            this.server.closeAllConnections();
        });
    }
    async handle(req, res) {
        const url = new URL(req.url ?? '/', 'http://admin');
        const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
        const method = req.method ?? 'GET';
        const t = this.target;
        const [a, id, action] = parts;
        if (method === 'GET') {
            if (parts.length === 1 && a === 'healthz')
                return sendText(res, 200, 'ok\n');
            if (parts.length === 1 && a === 'ready')
                return t.isReady() ? sendText(res, 200, 'ready\n') : sendText(res, 503, 'not ready\n');
            if (parts.length === 1 && a === 'metrics') {
                const body = await t.metrics.registry.metrics();
                res.writeHead(200, { 'content-type': t.metrics.registry.contentType });
                res.end(body);
                return;
            }
            if (parts.length === 1 && a === 'config')
                return sendJson(res, 200, t.configStatus());
            if (parts.length === 1 && a === 'events')
                return this.openStream(req, res);
            if (a === 'experiments') {
                if (parts.length === 1)
                    return sendJson(res, 200, {
                        experiments: [...t.table.all()].map((rt) => experimentView(rt, t.table.lifecycleOf(rt.id))),
                    });
                const rt = id !== undefined ? t.table.get(id) : undefined;
                if (!rt)
                    return sendError(res, 404, 'not_found', `no experiment "${id ?? ''}"`);
                if (parts.length === 2)
                    return sendJson(res, 200, experimentView(rt, t.table.lifecycleOf(rt.id)));
                if (parts.length === 3 && action === 'report')
                    return sendJson(res, 200, experimentReport(rt, t.table.lifecycleOf(rt.id)));
            }
            return sendError(res, 404, 'not_found', `no such endpoint: GET ${url.pathname}`);
        }
        if (method !== 'POST')
            return sendError(res, 405, 'method_not_allowed', `${method} is not supported here`);
        if (!this.authorized(req)) {
            res.setHeader('www-authenticate', 'Bearer');
            return sendError(res, 401, 'unauthorized', 'this call needs authorization: Bearer <admin token>');
        }
        const body = await readJsonBody(req, res);
        if (body === undefined)
            return;
        const by = typeof body['by'] === 'string' ? body['by'] : `admin:${req.socket.remoteAddress ?? '?'}`;
        const reason = typeof body['reason'] === 'string' && body['reason'] !== '' ? body['reason'] : 'killed by operator';
        if (parts.length === 1 && a === 'kill') {
            const killed = t.table.killAll('manual', reason, by);
            await t.table.flush();
            return sendJson(res, 200, { killed });
        }
        if (parts.length === 2 && a === 'config' && id === 'reload') {
            const status = await t.reload();
            return sendJson(res, status.status === 'ok' ? 200 : 422, status);
        }
        if (parts.length === 3 && a === 'experiments' && (action === 'kill' || action === 'arm')) {
            const rt = id !== undefined ? t.table.get(id) : undefined;
            if (!rt)
                return sendError(res, 404, 'not_found', `no experiment "${id ?? ''}"`);
            if (action === 'kill') {
                if (!t.table.kill(rt.id, 'manual', reason, by))
                    return sendError(res, 409, 'not_running', `experiment "${rt.id}" is ${rt.state}, not running`);
            }
            else if (!t.table.arm(rt.id, by)) {
                return sendError(res, 409, rt.spec.enabled ? 'already_armed' : 'disabled', rt.spec.enabled
                    ? `experiment "${rt.id}" is ${rt.state}`
                    : `experiment "${rt.id}" is disabled in config`);
            }
            await t.table.flush();
            return sendJson(res, 200, experimentView(rt, t.table.lifecycleOf(rt.id)));
        }
        return sendError(res, 404, 'not_found', `no such endpoint: POST ${url.pathname}`);
    }
    authorized(req) {
        if (this.token === null)
            return true;
        const h = req.headers.authorization;
        if (!h || !h.startsWith('Bearer '))
            return false;
        const given = Buffer.from(h.slice(7));
        return given.length === this.token.length && timingSafeEqual(given, this.token);
    }
    openStream(req, res) {
        res.writeHead(200, {
            'content-type': 'text/event-stream',
            'cache-control': 'no-store',
            connection: 'keep-alive',
        });
        res.write(': faultline events\n\n');
        this.streams.add(res);
        req.on('close', () => this.streams.delete(res));
    }
    broadcast(e) {
        if (this.streams.size === 0)
            return;
        const frame = `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
        for (const s of this.streams)
            s.write(frame);
    }
}
async function readJsonBody(req, res) {
    const chunks = [];
    let size = 0;
    for await (const c of req) {
        size += c.length;
        if (size > MAX_BODY_BYTES) {
            sendError(res, 413, 'body_too_large', `request body over ${MAX_BODY_BYTES} bytes`);
            return undefined;
        }
        chunks.push(c);
    }
    const text = Buffer.concat(chunks).toString('utf8').trim();
    if (text === '')
        return {};
    try {
        const v = JSON.parse(text);
        if (v !== null && typeof v === 'object' && !Array.isArray(v))
            return v;
    }
    catch {
        // fall through
    }
    sendError(res, 400, 'bad_json', 'body must be a JSON object, e.g. {"reason": "..."}');
    return undefined;
}
function sendText(res, status, body) {
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(body);
}
function sendJson(res, status, body) {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body, null, 2) + '\n');
}
function sendError(res, status, code, message, field) {
    if (res.headersSent) {
        res.destroy();
        return;
    }
    sendJson(res, status, { error: { code, message, ...(field ? { field } : {}) } });
}
//# sourceMappingURL=server.js.map