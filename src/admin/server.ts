/**
 * The admin listener (separate port, loopback by default). Paths mirror the model:
 *   GET  /healthz  /ready  /metrics  /config  /events (server-sent events)
 *   GET  /experiments  /experiments/{id}  /experiments/{id}/report  /experiments/{id}/verdict
 *   GET  /runs  /experiments/{id}/runs  /experiments/{id}/runs/{n}   (the run journal)
 *   GET  /suggestions   (suggested experiments from the traffic seen, src/suggest)
 *   GET  /  /dashboard  /dashboard/{asset}  /experiments/{id}/series?since=MS (the live dashboard)
 *   POST /experiments/{id}/kill  /experiments/{id}/arm  /kill  /config/reload
 * Mutating calls need `authorization: Bearer <token>` when a token is configured, a JSON content type,
 * an allowed Host and no foreign Origin (a web page the operator visits must not drive them: CSRF,
 * DNS rebinding). Errors are JSON: {"error": {"code", "message", "field"?}}.
 */
import { ADMIN_HEADER, ADMIN_HEADER_VALUE } from './marker.js';
import { timingSafeEqual } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { compareRuns, shortHash, type RunJournal } from '../experiments/journal.js';
import { experimentReport, experimentView } from '../experiments/report.js';
import { verdictDocument } from '../experiments/verdict.js';
import type { ExperimentSeries } from '../experiments/series.js';
import type { ExperimentEvent, ExperimentTable } from '../experiments/table.js';
import type { ExperimentRuntime } from '../experiments/runtime.js';
import type { Metrics } from '../telemetry/metrics.js';
import { FaultlineError } from '../errors.js';
import { DASHBOARD_HEADERS, dashboardAsset } from './dashboard.js';

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
  readonly journal: RunJournal;
  /** History for the dashboard's charts (absent: the series endpoint answers 404). */
  readonly series?: ExperimentSeries;
  isReady(): boolean;
  configStatus(): ConfigStatus;
  reload(): Promise<ConfigStatus>;
  /** Fleet mode: the fleet's view of an experiment (pooled arms, replicas, evaluator), else null. */
  fleetView?(rt: ExperimentRuntime): unknown;
  /** Fleet mode: after a kill or an arm, why the other replicas have not heard of it yet (null: they have). */
  fleetPending?(): Promise<string | null>;
  /** Suggested experiments (GET /suggestions); absent: 404. */
  suggestions?(): Promise<unknown>;
  /** Extra lines for /ready (readiness itself is unchanged), null when none. */
  readyDetail?(): string | null;
  /** `workers: N`: the Prometheus text of every process (src/cluster/pool.ts), else the registry's. */
  metricsText?(): Promise<string>;
  /** `workers: N`: per-worker counts of an experiment's run, else null. */
  workersView?(rt: ExperimentRuntime): unknown;
}

const MAX_BODY_BYTES = 64 * 1024;

/** Stable codes of admin errors (the `error.code` field), one per failure. */
export const ADMIN_ERROR_CODES = [
  'bad_path',
  'bad_json',
  'body_too_large',
  'unauthorized',
  'forbidden_host',
  'forbidden_origin',
  'unsupported_media_type',
  'not_found',
  'method_not_allowed',
  'not_running',
  'already_armed',
  'disabled',
  'outside_window',
  'state_not_persisted',
  'config_invalid',
  'internal',
] as const;
export type AdminErrorCode = (typeof ADMIN_ERROR_CODES)[number];

export interface AdminOptions {
  token: string | undefined;
  /** The configured bind address (its own name is an allowed Host). */
  address: string;
  /** Extra host names mutating calls may be addressed to (`admin.allowed_hosts`). */
  allowedHosts?: readonly string[];
}

/** Methods that change nothing; every other method goes through the CSRF and auth checks. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export class AdminServer {
  private readonly server: http.Server;
  private readonly target: AdminTarget;
  private readonly token: Buffer | null;
  private readonly allowedHosts: ReadonlySet<string>;
  private readonly streams = new Set<ServerResponse>();
  /** SSE comment every 15 s so idle proxies and load balancers keep /events open. */
  private readonly heartbeat: NodeJS.Timeout;

  constructor(target: AdminTarget, opts: AdminOptions) {
    this.target = target;
    this.token = opts.token ? Buffer.from(opts.token) : null;
    this.allowedHosts = allowedHostSet(opts.address, opts.allowedHosts ?? []);
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
    res.setHeader(ADMIN_HEADER, ADMIN_HEADER_VALUE);
    let url: URL;
    let parts: string[];
    try {
      // "//x:y" or an absolute-form target with a bad port does not parse against the base.
      url = new URL(req.url ?? '/', 'http://admin');
    } catch {
      return sendError(res, 400, 'bad_path', `malformed request target ${JSON.stringify(req.url ?? '')}`);
    }
    try {
      parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    } catch {
      return sendError(res, 400, 'bad_path', `malformed %-encoding in path ${url.pathname}`);
    }
    const method = req.method ?? 'GET';
    const t = this.target;
    const [a, id, action] = parts;

    if (method === 'GET') {
      if (parts.length === 0 || (a === 'dashboard' && parts.length <= 2)) {
        const asset = dashboardAsset(parts.length === 2 ? (id as string) : 'index.html');
        if (asset === undefined) return sendError(res, 404, 'not_found', `no dashboard file ${url.pathname}`);
        const { body, type } = await asset;
        res.writeHead(200, { 'content-type': type, ...DASHBOARD_HEADERS });
        res.end(body);
        return;
      }
      if (parts.length === 1 && a === 'healthz') return sendText(res, 200, 'ok\n');
      if (parts.length === 1 && a === 'ready') {
        const detail = t.readyDetail?.() ?? null;
        const more = detail === null ? '' : `${detail}\n`;
        return t.isReady() ? sendText(res, 200, `ready\n${more}`) : sendText(res, 503, `not ready\n${more}`);
      }
      if (parts.length === 1 && a === 'metrics') {
        const body = await (t.metricsText?.() ?? t.metrics.registry.metrics());
        res.writeHead(200, { 'content-type': t.metrics.registry.contentType });
        res.end(body);
        return;
      }
      if (parts.length === 1 && a === 'config') return sendJson(res, 200, t.configStatus());
      if (parts.length === 1 && a === 'events') return this.openStream(req, res);
      if (parts.length === 1 && a === 'runs') return sendJson(res, 200, { runs: t.journal.runs() });
      if (parts.length === 1 && a === 'suggestions' && t.suggestions)
        return sendJson(res, 200, await t.suggestions());
      if (a === 'experiments' && id !== undefined && action === 'runs') {
        // Runs outlive the experiment's definition: a removed experiment's history is still served.
        const runs = t.journal.runs(id);
        if (runs.length === 0 && !t.table.get(id))
          return sendError(res, 404, 'not_found', `no experiment "${id}" and no recorded runs of it`);
        if (parts.length === 3) return sendJson(res, 200, { experiment: id, runs });
        const n = Number(parts[3]);
        const i = runs.findIndex((r) => r.run === n);
        if (parts.length === 4 && i >= 0) {
          const rec = runs[i]!;
          return sendJson(res, 200, { ...rec, history: compareRuns(rec, runs.slice(0, i)) });
        }
        return sendError(res, 404, 'not_found', `experiment "${id}" has no recorded run ${parts[3] ?? ''}`);
      }
      if (a === 'experiments') {
        if (parts.length === 1)
          return sendJson(res, 200, {
            experiments: [...t.table.all()].map((rt) => {
              const fleet = t.fleetView?.(rt) ?? null;
              return {
                ...experimentView(rt, t.table.lifecycleOf(rt.id)),
                ...(fleet === null ? {} : { fleet }),
              };
            }),
          });
        const rt = id !== undefined ? t.table.get(id) : undefined;
        if (!rt) return sendError(res, 404, 'not_found', `no experiment "${id ?? ''}"`);
        const fleet = t.fleetView?.(rt) ?? null;
        const workers = t.workersView?.(rt) ?? null;
        const extra = { ...(fleet === null ? {} : { fleet }), ...(workers === null ? {} : { workers }) };
        if (parts.length === 2)
          return sendJson(res, 200, { ...experimentView(rt, t.table.lifecycleOf(rt.id)), ...extra });
        if (parts.length === 3 && action === 'report') {
          const report = experimentReport(rt, t.table.lifecycleOf(rt.id));
          const runs = t.journal.runs(rt.id);
          // A finished run is already the journal's newest record: compare with the runs before it.
          const last = runs[runs.length - 1];
          const done = last !== undefined && last.ended_at === report.ended_at;
          const history = compareRuns(
            { ...report, spec_revision: shortHash(rt.specKey) },
            done ? runs.slice(0, -1) : runs,
          );
          return sendJson(res, 200, {
            ...report,
            run: done ? last.run : t.journal.nextRun(rt.id),
            history,
            ...extra,
          });
        }
        if (parts.length === 3 && action === 'verdict') {
          const doc = verdictDocument(rt, t.table.lifecycleOf(rt.id), t.journal.runs(rt.id));
          // Argo Rollouts' web provider treats a non-2xx answer as a measurement error, not a
          // failure: ?always_200=1 lets it read the score instead (Flagger wants the status).
          const status = url.searchParams.get('always_200') === '1' ? 200 : doc.http_status;
          return sendJson(res, status, doc);
        }
        if (parts.length === 3 && action === 'series') {
          const since = Number(url.searchParams.get('since') ?? '0');
          const view = t.series?.view(rt.id, Number.isFinite(since) ? since : 0);
          if (view === undefined) return sendError(res, 404, 'not_found', `no history for "${rt.id}" yet`);
          res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
          res.end(JSON.stringify(view));
          return;
        }
      }
      return sendError(res, 404, 'not_found', `no such endpoint: GET ${url.pathname}`);
    }

    if (!SAFE_METHODS.has(method)) {
      const host = hostName(req.headers.host);
      if (host !== null && !this.allowedHosts.has(host))
        return sendError(
          res,
          403,
          'forbidden_host',
          `Host "${req.headers.host ?? ''}" is not a name of this admin port (add it to admin.allowed_hosts)`,
        );
      const origin = req.headers.origin;
      if (origin !== undefined && !sameOrigin(origin, req.headers.host))
        return sendError(res, 403, 'forbidden_origin', `cross-origin call from ${origin} refused`);
    }
    if (method !== 'POST')
      return sendError(res, 405, 'method_not_allowed', `${method} is not supported here`);
    if (!this.authorized(req)) {
      res.setHeader('www-authenticate', 'Bearer');
      return sendError(res, 401, 'unauthorized', 'this call needs authorization: Bearer <admin token>');
    }
    // A browser sends text/plain, form types or none without a CORS preflight; JSON needs one.
    if (!isJson(req.headers['content-type']))
      return sendError(
        res,
        415,
        'unsupported_media_type',
        'mutating calls need content-type: application/json (an empty body is fine)',
      );
    const body = await readJsonBody(req, res);
    if (body === undefined) return;
    const by = typeof body['by'] === 'string' ? body['by'] : `admin:${req.socket.remoteAddress ?? '?'}`;
    const reason =
      typeof body['reason'] === 'string' && body['reason'] !== '' ? body['reason'] : 'killed by operator';

    if (parts.length === 1 && a === 'kill') {
      const killed = t.table.killAll('manual', reason, by);
      const err = await t.table.persistError(true);
      if (err !== null)
        return sendJson(res, 503, {
          error: {
            code: 'state_not_persisted',
            message: notPersisted(killed.length > 0 ? killed.join(', ') : 'every experiment', err),
          },
          killed,
        });
      return sendJson(res, 200, { killed, ...(await this.warning(t)) });
    }
    if (parts.length === 2 && a === 'config' && id === 'reload') {
      const status = await t.reload();
      if (status.status === 'ok') return sendJson(res, 200, status);
      return sendJson(res, 422, {
        error: {
          code: 'config_invalid',
          message: status.error?.message ?? 'invalid config',
          issues: status.error?.issues ?? [],
        },
        config: status,
      });
    }
    if (parts.length === 3 && a === 'experiments' && (action === 'kill' || action === 'arm')) {
      const rt = id !== undefined ? t.table.get(id) : undefined;
      if (!rt) return sendError(res, 404, 'not_found', `no experiment "${id ?? ''}"`);
      if (action === 'kill') {
        const unsaved = await t.table.persistError();
        const killed = t.table.kill(rt.id, 'manual', reason, by);
        // Also when it was already killed: repeating a kill whose write failed retries the write.
        if (killed || rt.state === 'killed') {
          const err = await t.table.persistError(true);
          if (err !== null) return sendError(res, 503, 'state_not_persisted', notPersisted(rt.id, err));
        }
        const view = experimentView(rt, t.table.lifecycleOf(rt.id));
        // The repeat the 503 asked for: the kill stood in memory, and now it is on disk too.
        if (!killed && rt.state === 'killed' && unsaved !== null)
          return sendJson(res, 200, { ...view, note: 'it was already killed; its state is now saved' });
        if (!killed)
          return sendError(res, 409, 'not_running', `experiment "${rt.id}" is ${rt.state}, not running`);
        return sendJson(res, 200, { ...view, ...(await this.warning(t)) });
      }
      let armed: boolean;
      try {
        armed = await t.table.arm(rt.id, by);
      } catch (err) {
        if (err instanceof FaultlineError && err.code === 'FL_OUTSIDE_WINDOW')
          return sendError(res, 409, 'outside_window', err.message);
        return sendError(
          res,
          503,
          'state_not_persisted',
          `experiment "${rt.id}" was not armed: its state could not be saved (${(err as Error).message}); it stays ${rt.state}`,
        );
      }
      if (!armed) {
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
      return sendJson(res, 200, {
        ...experimentView(rt, t.table.lifecycleOf(rt.id)),
        ...(await this.warning(t)),
      });
    }
    return sendError(res, 404, 'not_found', `no such endpoint: POST ${url.pathname}`);
  }

  /** `{warning}` for a kill's or an arm's answer when the fleet has not heard of it; else nothing. */
  private async warning(t: AdminTarget): Promise<{ warning?: string }> {
    const w = (await t.fleetPending?.()) ?? null;
    return w === null ? {} : { warning: w };
  }

  private authorized(req: IncomingMessage): boolean {
    if (this.token === null) return true;
    const h = req.headers.authorization;
    // The scheme is case-insensitive (RFC 9110 11.1).
    if (!h || h.length < 8 || h.slice(0, 7).toLowerCase() !== 'bearer ') return false;
    const given = Buffer.from(h.slice(7).trim());
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

function notPersisted(what: string, err: Error): string {
  return `killed in memory (${what}: no request gets a fault now), but the state could not be saved (${err.message}): a restart would resume it; fix state_dir and repeat the kill`;
}

/** Names a request to this admin port may carry in Host: loopback, the bind address, configured extras. */
function allowedHostSet(address: string, extra: readonly string[]): Set<string> {
  const set = new Set(['localhost', '127.0.0.1', '::1', address.toLowerCase()]);
  for (const h of extra) set.add(h.toLowerCase());
  // Bound to every interface: each of the machine's addresses reaches it.
  if (address === '0.0.0.0' || address === '::')
    for (const list of Object.values(networkInterfaces()))
      for (const i of list ?? []) set.add(i.address.toLowerCase());
  return set;
}

/** The host name of a Host header (no port, IPv6 without brackets); null when absent. */
function hostName(host: string | undefined): string | null {
  if (host === undefined) return null;
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return h.slice(1, end < 0 ? undefined : end);
  }
  const colon = h.lastIndexOf(':');
  const name = colon >= 0 ? h.slice(0, colon) : h;
  // Any 127.0.0.0/8 address is this machine.
  return isIP(name) === 4 && name.startsWith('127.') ? '127.0.0.1' : name;
}

/** Origin is this admin port itself: http (it serves no TLS) and the Host it was sent to; `null` never is. */
function sameOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined) return false;
  try {
    const o = new URL(origin);
    return o.protocol === 'http:' && o.host === new URL(`http://${host}`).host;
  } catch {
    return false;
  }
}

function isJson(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const semi = contentType.indexOf(';');
  return (semi >= 0 ? contentType.slice(0, semi) : contentType).trim().toLowerCase() === 'application/json';
}

function sendText(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body, null, 2) + '\n');
}

function sendError(
  res: ServerResponse,
  status: number,
  code: AdminErrorCode,
  message: string,
  field?: string,
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, status, { error: { code, message, ...(field ? { field } : {}) } });
}
