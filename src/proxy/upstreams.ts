/**
 * Keep-alive connection pools, one per upstream origin and protocol. Pools outlive config reloads: a
 * reload that keeps an upstream keeps its warm connections; pools no longer referenced are closed
 * gracefully (in-flight requests finish).
 */
import { Pool, type Dispatcher } from 'undici';
import type { RouteSpec } from '../config/schema.js';

export class UpstreamPools {
  private readonly pools = new Map<string, Pool>();

  get(route: RouteSpec): Dispatcher {
    const key = `${route.upstream}|${route.upstream_protocol}|${route.max_connections}`;
    let pool = this.pools.get(key);
    if (!pool) {
      const h2 = route.upstream_protocol !== 'http1';
      pool = new Pool(route.upstream, {
        connections: route.max_connections,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        keepAliveMaxTimeout: 600_000,
        allowH2: h2,
        ...(h2 ? { maxConcurrentStreams: 100 } : {}),
        connect: { rejectUnauthorized: process.env['FAULTLINE_UPSTREAM_INSECURE'] !== '1' },
      });
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
