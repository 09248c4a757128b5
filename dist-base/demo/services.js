/**
 * Small real services for the demo and the end-to-end tests: a dependency ("auth") and a service
 * ("checkout") that calls it, forwarding W3C baggage as an OpenTelemetry-instrumented service would.
 * With `timeoutMs` and `fallback`, the service copes with a slow dependency; without, it does not.
 */
import http from 'node:http';
import { Agent, request } from 'undici';
async function listen(server, port) {
    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => resolve());
    });
    return {
        server,
        port: server.address().port,
        close: () => new Promise((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
        }),
    };
}
/** The dependency: answers JSON after `delayMs` (default 2 ms), and `/slow?ms=N`. */
export function startDependency(port = 0, delayMs = 2) {
    const body = JSON.stringify({ ok: true, user: 'demo' });
    return listen(http.createServer((req, res) => {
        req.resume();
        setTimeout(() => {
            res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
            res.end(body);
        }, delayMs);
    }), port);
}
/** The service under test: each request calls the dependency once, propagating `baggage`. */
export function startService(opts) {
    const agent = new Agent({ connections: 256, keepAliveTimeout: 10_000 });
    const server = http.createServer((req, res) => {
        req.resume();
        const baggage = req.headers['baggage'];
        const headers = {};
        if (typeof baggage === 'string')
            headers['baggage'] = baggage;
        const signal = opts.timeoutMs !== undefined ? AbortSignal.timeout(opts.timeoutMs) : null;
        request(`${opts.dependencyUrl}/auth`, { dispatcher: agent, headers, signal })
            .then(async (r) => {
            const text = await r.body.text();
            if (r.statusCode >= 500)
                throw new Error(`dependency answered ${r.statusCode}`);
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ order: 'ok', auth: JSON.parse(text) }));
        })
            .catch((err) => {
            if (res.headersSent)
                return void res.destroy();
            if (opts.fallback) {
                res.writeHead(200, { 'content-type': 'application/json' });
                res.end(JSON.stringify({ order: 'ok', auth: 'fallback' }));
                return;
            }
            const timedOut = err.name === 'TimeoutError';
            res.writeHead(timedOut ? 504 : 502, { 'content-type': 'text/plain' });
            res.end(`dependency failed: ${err.message}\n`);
        });
    });
    return listen(server, opts.port ?? 0).then((s) => ({
        ...s,
        close: async () => {
            await s.close();
            await agent.close();
        },
    }));
}
//# sourceMappingURL=services.js.map