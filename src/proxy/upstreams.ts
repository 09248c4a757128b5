/**
 * Keep-alive connection pools, one per upstream origin and protocol. Pools outlive config reloads: a
 * reload that keeps an upstream keeps its warm connections; pools no longer referenced are closed
 * gracefully (in-flight requests finish).
 *
 * HTTP/1.1 upstreams use undici pools; HTTP/2 upstreams (h2c prior knowledge, h2 over TLS) use a
 * `node:http2` session pool with the same dispatch/handler contract (see h2-upstream.ts for why).
 */
import { Pool, type Dispatcher } from 'undici';
import type { RouteSpec } from '../config/schema.js';
import { H2Upstream } from './h2-upstream.js';

/** What the pools map holds: undici pools and H2 pools both dispatch, close and destroy. */
interface UpstreamPool {
  close(): Promise<void>;
  destroy(): Promise<void>;
}

export class UpstreamPools {
  private readonly pools = new Map<string, UpstreamPool & Dispatcher>();

  get(route: RouteSpec): Dispatcher {
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
      } else {
        // The exchange calls only dispatch (with the handler API) on it; close/destroy here.
        pool = new H2Upstream(route.upstream, {
          maxSessions: route.max_connections,
          maxStreamsPerSession: 100,
          idleTimeoutMs: 30_000,
          rejectUnauthorized,
        }) as unknown as UpstreamPool & Dispatcher;
      }
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** Close pools whose key is not in `keep` (the dispatchers the new plan uses). */
  async retain(keep: ReadonlySet<Dispatcher>): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const [key, pool] of this.pools) {
      if (keep.has(pool)) continue;
      this.pools.delete(key);
      closing.push(pool.close());
    }
    await Promise.allSettled(closing);
  }

  async closeAll(): Promise<void> {
    await this.retain(new Set());
  }

  async destroyAll(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.allSettled(all.map((p) => p.destroy()));
  }
}
