/**
 * Keep-alive connection pools, one per upstream origin and protocol. Pools outlive config reloads: a
 * reload that keeps an upstream keeps its warm connections; pools no longer referenced are closed
 * gracefully (in-flight requests finish).
 *
 * HTTP/1.1 upstreams use undici pools; HTTP/2 upstreams (h2c prior knowledge, h2 over TLS) use a
 * `node:http2` session pool with the same dispatch/handler contract (see h2-upstream.ts for why).
 */
import { Pool } from 'undici';
import { H2Upstream } from './h2-upstream.js';
export class UpstreamPools {
    pools = new Map();
    get(route) {
        const key = `${route.upstream}|${route.upstream_protocol}|${route.max_connections}`;
        let pool = this.pools.get(key);
        if (!pool) {
            const rejectUnauthorized = process.env['FAULTLINE_UPSTREAM_INSECURE'] !== '1';
            if (route.upstream_protocol === 'http1') {
                pool = new Pool(route.upstream, {
                    connections: route.max_connections,
                    pipelining: 1,
                    keepAliveTimeout: 30_000,
                    keepAliveMaxTimeout: 600_000,
                    connect: { rejectUnauthorized },
                });
            }
            else {
                // The exchange calls only dispatch (with the handler API) on it; close/destroy here.
                pool = new H2Upstream(route.upstream, {
                    maxSessions: route.max_connections,
                    maxStreamsPerSession: 100,
                    idleTimeoutMs: 30_000,
                    rejectUnauthorized,
                });
            }
            this.pools.set(key, pool);
        }
        return pool;
    }
    /**
     * Retire pools the new plan no longer uses (`keep` holds the ones it does). A retired pool closes
     * gracefully (queued and in-flight requests finish) once no held fault will still forward through
     * it: `heldPools` names the pools that held exchanges point at, re-checked every second.
     */
    async retain(keep, heldPools = () => new Set()) {
        let retired = [];
        for (const [key, pool] of this.pools) {
            if (keep.has(pool))
                continue;
            this.pools.delete(key);
            retired.push(pool);
        }
        const closing = [];
        while (retired.length > 0) {
            const busy = heldPools();
            for (const p of retired)
                if (!busy.has(p))
                    closing.push(p.close());
            retired = retired.filter((p) => busy.has(p));
            if (retired.length > 0)
                await new Promise((r) => setTimeout(r, 1000).unref());
        }
        await Promise.allSettled(closing);
    }
    async destroyAll() {
        const all = [...this.pools.values()];
        this.pools.clear();
        await Promise.allSettled(all.map((p) => p.destroy()));
    }
}
//# sourceMappingURL=upstreams.js.map