/**
 * Small real services for the demo and the end-to-end tests: a dependency ("auth") and a service
 * ("checkout") that calls it, forwarding W3C baggage as an OpenTelemetry-instrumented service would.
 * With `timeoutMs` and `fallback`, the service copes with a slow dependency; without, it does not.
 */
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';

export interface RunningServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

async function listen(server: Server, port: number): Promise<RunningServer> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The dependency: answers JSON after `delayMs` (default 2 ms), and `/slow?ms=N`. */
export function startDependency(port = 0, delayMs = 2): Promise<RunningServer> {
  const body = JSON.stringify({ ok: true, user: 'demo' });
  return listen(
    http.createServer((req, res) => {
      req.resume();
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      }, delayMs);
    }),
    port,
  );
}

export interface ServiceOptions {
  /** Base URL through which the dependency is reached (typically a Faultline egress listener). */
  dependencyUrl: string;
  /** Give up on the dependency after this many ms (none: wait as long as it takes). */
  timeoutMs?: number;
  /** Answer 200 with a degraded body when the dependency fails or times out. */
  fallback?: boolean;
  port?: number;
}

/** The service under test: each request calls the dependency once, propagating `baggage`. */
export function startService(opts: ServiceOptions): Promise<RunningServer> {
  const agent = new Agent({ connections: 256, keepAliveTimeout: 10_000 });
  const server = http.createServer((req, res) => {
    req.resume();
    const baggage = req.headers['baggage'];
    const headers: Record<string, string> = {};
    if (typeof baggage === 'string') headers['baggage'] = baggage;
    const signal = opts.timeoutMs !== undefined ? AbortSignal.timeout(opts.timeoutMs) : null;
    request(`${opts.dependencyUrl}/auth`, { dispatcher: agent, headers, signal })
      .then(async (r) => {
        const text = await r.body.text();
        if (r.statusCode >= 500) throw new Error(`dependency answered ${r.statusCode}`);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ order: 'ok', auth: JSON.parse(text) as unknown }));
      })
      .catch((err: unknown) => {
        if (res.headersSent) return void res.destroy();
        if (opts.fallback) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ order: 'ok', auth: 'fallback' }));
          return;
        }
        const timedOut = (err as Error).name === 'TimeoutError';
        res.writeHead(timedOut ? 504 : 502, { 'content-type': 'text/plain' });
        res.end(`dependency failed: ${(err as Error).message}\n`);
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
