/**
 * The admin listener (separate port, loopback by default). Paths mirror the model:
 *   GET  /healthz  /ready  /metrics  /config  /events (server-sent events)
 *   GET  /experiments  /experiments/{id}  /experiments/{id}/report
 *   POST /experiments/{id}/kill  /experiments/{id}/arm  /kill  /config/reload
 * Mutating calls need `authorization: Bearer <token>` when a token is configured.
 * Errors are JSON: {"error": {"code", "message", "field"?}}.
 */
import { timingSafeEqual } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { experimentReport, experimentView } from '../experiments/report.js';
import type { ExperimentEvent, ExperimentTable } from '../experiments/table.js';
import type { Metrics } from '../telemetry/metrics.js';

export interface ConfigStatus {
  file: string;
  status: 'ok' | 'invalid';
  loaded_at: string;
  last_attempt_at: string;
  error: { message: string; issues: readonly { path: string; reason: string }[] } | null;
}

/** What the admin server needs from the running Faultline. */
export interface AdminTarget {
  readonly metrics: Metrics;
  readonly table: ExperimentTable;
  isReady(): boolean;
  configStatus(): ConfigStatus;
  reload(): Promise<ConfigStatus>;
}

const MAX_BODY_BYTES = 64 * 1024;

export class AdminServer {
  private readonly server: http.Server;
  private readonly target: AdminTarget;
  private readonly token: Buffer | null;
  private readonly streams = new Set<ServerResponse>();
  /** SSE comment every 15 s so idle proxies and load balancers keep /events open. */
  private readonly heartbeat: NodeJS.Timeout;

  constructor(target: AdminTarget, token: string | undefined) {
    this.target = target;
    this.token = token ? Buffer.from(token) : null;
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => sendError(res, 500, 'internal', (err as Error).message));
    });
    target.table.on('event', (e) => this.broadcast(e));
    this.heartbeat = setInterval(() => {
      for (const s of this.streams) s.write(': keep-alive\n\n');
    }, 15_000);
    this.heartbeat.unref();
  }

  async listen(port: number, address: string): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, address, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    for (const s of this.streams) s.end();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const method = req.method ?? 'GET';
    const t = this.target;
    const [a, id, action] = parts;

    if (method === 'GET') {
      if (parts.length === 1 && a === 'healthz') return sendText(res, 200, 'ok\n');
      if (parts.length === 1 && a === 'ready')
        return t.isReady() ? sendText(res, 200, 'ready\n') : sendText(res, 503, 'not ready\n');
      if (parts.length === 1 && a === 'metrics') {
        const body = await t.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': t.metrics.registry.contentType });
        res.end(body);
        return;
      }
      if (parts.length === 1 && a === 'config') return sendJson(res, 200, t.configStatus());
      if (parts.length === 1 && a === 'events') return this.openStream(req, res);
      if (a === 'experiments') {
        if (parts.length === 1)
          return sendJson(res, 200, {
            experiments: [...t.table.all()].map((rt) => experimentView(rt, t.table.lifecycleOf(rt.id))),
          });
        const rt = id !== undefined ? t.table.get(id) : undefined;
        if (!rt) return sendError(res, 404, 'not_found', `no experiment "${id ?? ''}"`);
        if (parts.length === 2) return sendJson(res, 200, experimentView(rt, t.table.lifecycleOf(rt.id)));
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
    if (body === undefined) return;
    const by = typeof body['by'] === 'string' ? body['by'] : `admin:${req.socket.remoteAddress ?? '?'}`;
    const reason =
      typeof body['reason'] === 'string' && body['reason'] !== '' ? body['reason'] : 'killed by operator';

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
      if (!rt) return sendError(res, 404, 'not_found', `no experiment "${id ?? ''}"`);
      if (action === 'kill') {
        if (!t.table.kill(rt.id, 'manual', reason, by))
          return sendError(res, 409, 'not_running', `experiment "${rt.id}" is ${rt.state}, not running`);
      } else if (!t.table.arm(rt.id, by)) {
        return sendError(
          res,
          409,
          rt.spec.enabled ? 'already_armed' : 'disabled',
          rt.spec.enabled
            ? `experiment "${rt.id}" is ${rt.state}`
            : `experiment "${rt.id}" is disabled in config`,
        );
      }
      await t.table.flush();
      return sendJson(res, 200, experimentView(rt, t.table.lifecycleOf(rt.id)));
    }
    return sendError(res, 404, 'not_found', `no such endpoint: POST ${url.pathname}`);
  }

  private authorized(req: IncomingMessage): boolean {
    if (this.token === null) return true;
    const h = req.headers.authorization;
    if (!h || !h.startsWith('Bearer ')) return false;
    const given = Buffer.from(h.slice(7));
    return given.length === this.token.length && timingSafeEqual(given, this.token);
  }

  private openStream(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    res.write(': faultline events\n\n');
    this.streams.add(res);
    req.on('close', () => this.streams.delete(res));
  }

  private broadcast(e: ExperimentEvent): void {
    if (this.streams.size === 0) return;
    const frame = `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
    for (const s of this.streams) s.write(frame);
  }
}

async function readJsonBody(
  req: IncomingMessage,
  res: ServerResponse,
): Promise<Record<string, unknown> | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY_BYTES) {
      sendError(res, 413, 'body_too_large', `request body over ${MAX_BODY_BYTES} bytes`);
      return undefined;
    }
    chunks.push(c as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  try {
    const v = JSON.parse(text) as unknown;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // fall through
  }
  sendError(res, 400, 'bad_json', 'body must be a JSON object, e.g. {"reason": "..."}');
  return undefined;
}

function sendText(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body, null, 2) + '\n');
}

function sendError(res: ServerResponse, status: number, code: string, message: string, field?: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, status, { error: { code, message, ...(field ? { field } : {}) } });
}
