/**
 * A running Faultline: listeners, admin server, experiment table, upstream pools, and config reloads
 * (validate and compile first, then swap atomically; an invalid file leaves the running config in force).
 */
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Dispatcher } from 'undici';
import { AdminServer, type AdminTarget, type ConfigStatus } from './admin/server.js';
import { adminGuardIssue, adminToken } from './config/admin-guard.js';
import type { AddressInfo } from 'node:net';
import { compileListenerPlans, compilePointPlans, listenerBindingKey } from './config/compile.js';
import { loadConfigFile } from './config/load.js';
import type { ConfigSpec } from './config/schema.js';
import { configWarnings } from './config/warnings.js';
import { ConfigError, FaultlineError } from './errors.js';
import { Engine } from './engine/engine.js';
import type { PointPlan, PointRef } from './engine/point.js';
import { FileRunJournal, recordRuns, shortHash, type RunJournal } from './experiments/journal.js';
import { realClock, Scheduler, type Clock } from './experiments/scheduler.js';
import { WindowGuard } from './experiments/windows.js';
import { routeTotals } from './probes/traffic.js';
import { suggest, timeoutsSetIn, type SuggestionsDocument } from './suggest/suggest.js';
import { ExperimentSeries } from './experiments/series.js';
import { ExperimentTable, type ExperimentEvent } from './experiments/table.js';
import type { ExperimentRuntime } from './experiments/runtime.js';
import { Fleet, type PooledGuard } from './fleet/fleet.js';
import { WorkerPool } from './cluster/pool.js';
import { FileStateStore } from './killswitch/store.js';
import { compileExtProcPlan, extProcBindingKey, type ExtProcPlan } from './extproc/plan.js';
import { ExtProcServer } from './extproc/server.js';
import { SteadyStateSupervisor } from './probes/supervisor.js';
import { Exchange } from './proxy/exchange.js';
import { Listener } from './proxy/listener.js';
import { UpstreamPools } from './proxy/upstreams.js';
import { log, LogLimiter } from './telemetry/log.js';
import { createMetrics, type Metrics } from './telemetry/metrics.js';
import { OtelRequestTracer } from './telemetry/tracing.js';
import { WebhookNotifier } from './telemetry/webhook.js';

export interface StartOptions {
  /** Path of the config file (reloads re-read it). */
  configFile: string;
  /** Already-validated config; read from configFile when absent. */
  config?: ConfigSpec;
  /** Reload when the file changes. */
  watch?: boolean;
  /** Start the admin listener now (default). In-process hosts start it on demand (listenAdmin). */
  admin?: boolean;
  /** Clock of schedules and lifecycle times (tests inject one). */
  clock?: Clock;
  /**
   * Processes serving the listeners (config `workers`, applied by `faultline run` only): above 1 this
   * process is their primary (src/cluster) and binds no listener itself.
   */
  workers?: number;
}

export class Faultline implements AdminTarget {
  readonly metrics: Metrics;
  readonly table: ExperimentTable;
  readonly engine: Engine;
  /** Finished runs (state_dir/runs.jsonl). */
  readonly journal: RunJournal;
  private configRevision: string;
  private readonly scheduler: Scheduler;
  /** Allowed `windows:`: starts waiting runs when one opens, ends runs when it closes. */
  private readonly windows: WindowGuard;
  /** Steady-state probes: the start gate, stop conditions and recovery checks (src/probes). */
  readonly probes: SteadyStateSupervisor;
  /** Fleet mode (config `fleet`): state, grants and statistics shared through Redis; null alone. */
  readonly fleet: Fleet | null;
  /** The dashboard's history (1 sample/s, last hour); also sets the e-value gauge. */
  readonly series: ExperimentSeries;
  readonly listeners = new Map<string, Listener>();
  /** In-process points by name; hosts hold the ref and read its plan per call (a reload swaps it). */
  readonly points = new Map<string, PointRef>();
  /** `workers: N` (src/cluster): the worker processes serving the listeners, or null (this one serves). */
  workerPool: WorkerPool | null = null;
  /** Envoy's ext_proc host (config `ext_proc`), or null. */
  extProc: ExtProcServer | null = null;
  private readonly pools = new UpstreamPools();
  private admin: AdminServer | null = null;
  private config: ConfigSpec;
  private readonly configFile: string;
  private status: ConfigStatus;
  private ready = false;
  private watcher: FSWatcher | null = null;
  private webhook: WebhookNotifier | null = null;
  /** OpenTelemetry traces (tracing.enabled; a restart applies a change). */
  private tracer: OtelRequestTracer | null = null;
  private webhookListener: ((e: ExperimentEvent) => void) | null = null;
  /** max_duration counts from here: this process's start, or in a fleet the fleet's (from Redis). */
  private startedAtMs = Date.now();
  /** This process's start: its traffic counters count from here (suggestions' rates). */
  private readonly processStartMs = Date.now();
  private globalDeadline: NodeJS.Timeout | null = null;
  private globalDeadlinePassed = false;
  private reloadChain: Promise<unknown> = Promise.resolve();
  adminPort = 0;

  private constructor(configFile: string, config: ConfigSpec, clock: Clock) {
    this.configFile = configFile;
    this.config = config;
    this.metrics = createMetrics();
    this.fleet = config.fleet ? new Fleet(config.fleet, config.state_dir, this.metrics) : null;
    this.table = new ExperimentTable(
      this.fleet?.store ?? new FileStateStore(config.state_dir),
      this.metrics,
      () => clock.now(),
    );
    // Before any runtime exists: fleet runtimes start without a grant, outcomes go to the pool.
    this.fleet?.attach(this.table);
    this.engine = new Engine(this.table);
    this.journal = new FileRunJournal(config.state_dir, config.journal.keep_runs);
    this.configRevision = shortHash(JSON.stringify(config));
    recordRuns(this.table, this.journal, () => this.configRevision);
    this.scheduler = new Scheduler(this.table, clock);
    this.windows = new WindowGuard(this.table, clock);
    // A fleet decides each schedule window once (one run fleet-wide, not one per replica).
    if (this.fleet) this.scheduler.claim = this.fleet.claimWindow.bind(this.fleet);
    this.probes = new SteadyStateSupervisor(this.table, this.metrics);
    this.series = new ExperimentSeries(this.table, this.metrics);
    const now = new Date().toISOString();
    this.status = { file: configFile, status: 'ok', loaded_at: now, last_attempt_at: now, error: null };
  }

  static async start(opts: StartOptions): Promise<Faultline> {
    const config = opts.config ?? (await loadConfigFile(opts.configFile));
    const fl = new Faultline(opts.configFile, config, opts.clock ?? realClock);
    try {
      await fl.boot(opts.admin ?? true, opts.workers ?? 1);
    } catch (err) {
      await fl.stop(0);
      throw err;
    }
    if (opts.watch) fl.watchFile();
    installUncaughtErrorPolicy();
    running.add(fl);
    return fl;
  }

  private async boot(startAdmin: boolean, workers: number): Promise<void> {
    const cfg = this.config;
    const token = adminToken(cfg);
    const unguarded = adminGuardIssue(cfg);
    if (unguarded !== null)
      throw new FaultlineError('FL_ADMIN_UNGUARDED', `${unguarded.path}: ${unguarded.reason}`);
    await this.table.init();
    await this.journal.prepare();
    this.setWebhook(cfg.webhook);
    if (cfg.tracing.enabled) {
      const tracer = new OtelRequestTracer(cfg.tracing, packageVersion());
      this.tracer = tracer;
      this.engine.tracer = tracer;
      this.table.holdTracer = tracer;
      this.table.on('event', (e) => tracer.onEvent(e));
    }
    const experiments = this.table.prepare(cfg.experiments);
    const plans = compileListenerPlans(cfg, this.pools, this.metrics, experiments);
    this.swapPoints(compilePointPlans(cfg, experiments, this.metrics));
    this.probes.compile(experiments);
    this.table.activate(experiments);
    this.scheduler.apply(cfg);
    this.windows.apply(cfg);
    this.fleet?.start();
    this.series.start();
    this.admin = new AdminServer(this, {
      token,
      address: cfg.admin.address,
      allowedHosts: cfg.admin.allowed_hosts,
    });
    if (startAdmin) await this.listenAdmin();
    if (workers > 1) {
      this.workerPool = new WorkerPool(this, workers, cfg);
      await this.workerPool.start();
    }
    for (const spec of this.workerPool === null ? cfg.listeners : []) {
      const listener = new Listener(
        spec,
        plans.get(spec.name)!,
        this.metrics,
        this.engine,
        cfg.listeners.length,
      );
      this.listeners.set(spec.name, listener);
      const addr = await listener.listen();
      log('info', 'listener started', {
        listener: spec.name,
        address: addr.address,
        port: addr.port,
        protocol: spec.protocol,
      });
    }
    if (this.fleet !== null) this.poolGuards(this.fleet);
    const xp = compileExtProcPlan(cfg, experiments);
    // With workers the ext_proc server runs in each of them (src/cluster/worker.ts), like the listeners.
    if (xp !== null && this.workerPool === null) await this.startExtProc(cfg, xp);
    this.metrics.configValid.set(1);
    this.startGlobalDeadline(cfg.max_duration);
    logWarnings(cfg);
    this.ready = true;
    log('info', 'faultline started', {
      config: this.configFile,
      admin: `${cfg.admin.address}:${this.adminPort}`,
      experiments: cfg.experiments.map((e) => e.id),
    });
  }

  /** Fleet: the listeners' error-rate guards and max_duration are judged fleet-wide (src/fleet). */
  private poolGuards(fleet: Fleet): void {
    for (const l of this.listeners.values()) l.pooledGuard = true;
    fleet.guards = () => {
      const out: PooledGuard[] = [];
      for (const l of this.listeners.values()) {
        const g = l.spec.max_error_rate;
        const window = l.errorWindow();
        if (g !== undefined && window !== null) out.push({ listener: l.spec.name, ...g, window });
      }
      return out;
    };
    fleet.onFleetStart = (ms) => {
      this.startedAtMs = ms;
      this.startGlobalDeadline(this.config.max_duration);
    };
  }

  private async startExtProc(cfg: ConfigSpec, plan: ExtProcPlan): Promise<void> {
    const spec = cfg.ext_proc!;
    this.extProc = new ExtProcServer(this.engine, plan, this.metrics);
    const addr = await this.extProc.listen(spec.address, spec.port);
    log('info', 'ext_proc started', { ext_proc: spec.name, address: addr.address, port: addr.port });
  }

  /** Starts the admin listener (config's admin.address and admin.port unless given). */
  async listenAdmin(
    port = this.config.admin.port,
    address = this.config.admin.address,
  ): Promise<AddressInfo> {
    const addr = await (this.admin as AdminServer).listen(port, address);
    this.adminPort = addr.port;
    return addr;
  }

  /** Points keep their ref across reloads; one dropped from the config decides nothing any more. */
  private swapPoints(plans: Map<string, PointPlan>): void {
    for (const [name, plan] of plans) {
      const ref = this.points.get(name);
      if (ref) ref.plan = plan;
      else this.points.set(name, { plan });
    }
    for (const [name, ref] of this.points)
      if (!plans.has(name)) ref.plan = { ...ref.plan, candidates: [], trustAssignment: false };
  }

  isReady(): boolean {
    return this.ready;
  }

  /** Fleet mode: after a kill or an arm, a warning when Redis has not taken it (null: it has). */
  async fleetPending(): Promise<string | null> {
    return (await this.fleet?.pendingNote()) ?? null;
  }

  /** The fleet view of an experiment (null when not in a fleet). */
  fleetView(rt: ExperimentRuntime): unknown {
    return this.fleet?.view(rt) ?? null;
  }

  /** Suggested experiments from the traffic seen since start, the config and the journal (src/suggest). */
  async suggestions(): Promise<SuggestionsDocument> {
    return suggest({
      config: this.config,
      timeoutsSet: await timeoutsSetIn(this.configFile),
      totals: routeTotals(this.metrics),
      runs: this.journal.runs(),
      sinceMs: this.processStartMs,
      nowMs: Date.now(),
    });
  }

  /** Extra /ready lines (the fleet connection), null when none. */
  readyDetail(): string | null {
    const lines = [this.fleet?.readyDetail(), this.workerPool?.readyDetail()].filter((l) => l !== undefined);
    return lines.length === 0 ? null : lines.join('\n');
  }

  /** Per-worker counts of an experiment's run (`workers: N`), else null. */
  workersView(rt: ExperimentRuntime): unknown {
    return this.workerPool?.view(rt) ?? null;
  }

  /** The Prometheus text of every process (`workers: N`), else this registry's. */
  metricsText(): Promise<string> {
    return this.workerPool?.metricsText() ?? this.metrics.registry.metrics();
  }

  configStatus(): ConfigStatus {
    return this.status;
  }

  port(listener: string): number {
    if (this.extProc !== null && this.extProc.ref.plan.name === listener) return this.extProc.address().port;
    const shared = this.workerPool?.port(listener);
    if (shared !== undefined) return shared;
    const l = this.listeners.get(listener);
    if (!l) throw new Error(`no listener ${listener}`);
    return l.address().port;
  }

  /** Re-read and apply the config file. Serialised; never leaves a half-applied config. */
  reload(): Promise<ConfigStatus> {
    const next = this.reloadChain.then(() => this.reloadNow());
    this.reloadChain = next.catch(() => undefined);
    return next;
  }

  private async reloadNow(): Promise<ConfigStatus> {
    const attempt = new Date().toISOString();
    try {
      const cfg = await loadConfigFile(this.configFile);
      this.checkBindings(cfg);
      const experiments = this.table.prepare(cfg.experiments);
      const plans = compileListenerPlans(cfg, this.pools, this.metrics, experiments);
      // Swap: plans first (requests read them), then the experiment set.
      for (const spec of cfg.listeners) this.listeners.get(spec.name)?.swapPlan(plans.get(spec.name)!, spec);
      this.swapPoints(compilePointPlans(cfg, experiments, this.metrics));
      const xp = compileExtProcPlan(cfg, experiments);
      if (xp !== null) this.extProc?.swapPlan(xp);
      this.probes.compile(experiments);
      // Workers get the new config with the states it leads to, in one message (no state of a runtime
      // they do not have yet).
      if (this.workerPool !== null) this.workerPool.reload(cfg, () => this.table.activate(experiments));
      else this.table.activate(experiments);
      this.scheduler.apply(cfg);
      this.windows.apply(cfg);
      if (JSON.stringify(cfg.webhook) !== JSON.stringify(this.config.webhook)) this.setWebhook(cfg.webhook);
      this.config = cfg;
      this.configRevision = shortHash(JSON.stringify(cfg));
      const keep = new Set([...plans.values()].flatMap((p) => p.routes.map((r) => r.pool)));
      void this.pools.retain(keep, () => this.heldPools());
      this.status = {
        file: this.configFile,
        status: 'ok',
        loaded_at: attempt,
        last_attempt_at: attempt,
        error: null,
      };
      this.metrics.configReloads.inc({ result: 'success' });
      this.metrics.configValid.set(1);
      this.table.recordConfigEvent('config_reloaded');
      log('info', 'config reloaded', {
        config: this.configFile,
        experiments: cfg.experiments.map((e) => e.id),
      });
      this.startGlobalDeadline(cfg.max_duration);
      logWarnings(cfg);
    } catch (err) {
      const issues = err instanceof ConfigError ? err.issues : [{ path: '', reason: (err as Error).message }];
      this.status = {
        ...this.status,
        status: 'invalid',
        last_attempt_at: attempt,
        error: { message: (err as Error).message, issues },
      };
      this.metrics.configReloads.inc({ result: 'invalid' });
      this.metrics.configValid.set(0);
      this.table.recordConfigEvent('config_invalid', (err as Error).message);
      log('error', 'config reload rejected; running config stays in force', {
        config: this.configFile,
        issues,
      });
    }
    return this.status;
  }

  /** Upstream pools that held proxy requests will forward through when they are released. */
  private heldPools(): Set<Dispatcher> {
    const pools = new Set<Dispatcher>();
    for (const t of this.table.heldTargets()) if (t instanceof Exchange) pools.add(t.route.pool);
    return pools;
  }

  /** Listeners are bound sockets: a reload may change routes and experiments, not bindings. */
  private checkBindings(cfg: ConfigSpec): void {
    const issues: { path: string; reason: string }[] = [];
    const before = new Map(this.config.listeners.map((l) => [l.name, listenerBindingKey(l)]));
    cfg.listeners.forEach((l, i) => {
      const key = before.get(l.name);
      if (key === undefined)
        issues.push({ path: `listeners[${i}]`, reason: `new listener "${l.name}" needs a restart` });
      else if (key !== listenerBindingKey(l))
        issues.push({
          path: `listeners[${i}]`,
          reason: `changing address, port, protocol or tls of "${l.name}" needs a restart`,
        });
      before.delete(l.name);
    });
    for (const name of before.keys())
      issues.push({ path: 'listeners', reason: `removing listener "${name}" needs a restart` });
    if (extProcBindingKey(cfg) !== extProcBindingKey(this.config))
      issues.push({ path: 'ext_proc', reason: 'adding, removing or rebinding ext_proc needs a restart' });
    if (cfg.state_dir !== this.config.state_dir)
      issues.push({ path: 'state_dir', reason: 'changing it needs a restart' });
    if (JSON.stringify(cfg.fleet) !== JSON.stringify(this.config.fleet))
      issues.push({ path: 'fleet', reason: 'joining, leaving or changing a fleet needs a restart' });
    if (JSON.stringify(cfg.admin) !== JSON.stringify(this.config.admin))
      issues.push({ path: 'admin', reason: 'changing the admin listener needs a restart' });
    if (cfg.workers !== this.config.workers)
      issues.push({ path: 'workers', reason: 'changing the number of workers needs a restart' });
    if (cfg.workers_balance !== this.config.workers_balance)
      issues.push({ path: 'workers_balance', reason: 'changing it needs a restart' });
    if (JSON.stringify(cfg.tracing) !== JSON.stringify(this.config.tracing))
      issues.push({ path: 'tracing', reason: 'changing tracing needs a restart' });
    if (issues.length > 0) throw new ConfigError(this.configFile, issues);
  }

  /**
   * Sends kill/expiry events to `spec` from now on (none when undefined). A replaced notifier is
   * unsubscribed at once and keeps a short grace to deliver what it already queued.
   */
  private setWebhook(spec: ConfigSpec['webhook']): void {
    if (this.webhookListener !== null) this.table.off('event', this.webhookListener);
    void this.webhook?.stop(2000);
    this.webhook = null;
    this.webhookListener = null;
    if (!spec) return;
    const hook = new WebhookNotifier(spec.url, spec.timeout_ms);
    this.webhook = hook;
    this.webhookListener = (e) => hook.notify(e);
    this.table.on('event', this.webhookListener);
  }

  /**
   * Watches the config's directory, not the file: editors and ConfigMap updates replace the file
   * (rename over it), which would silently end a watch on the old inode.
   */
  private watchFile(): void {
    let timer: NodeJS.Timeout | null = null;
    const name = basename(this.configFile);
    try {
      this.watcher = watch(dirname(this.configFile), (_event, changed) => {
        if (changed !== null && changed !== name && !String(changed).startsWith('..data')) return;
        if (timer) clearTimeout(timer);
        // Writers often write in several steps; wait for the file to settle.
        timer = setTimeout(() => void this.reload(), 200);
      });
      this.watcher.on('error', () => undefined);
    } catch (err) {
      log('warn', 'cannot watch config file; reload with SIGHUP or POST /config/reload', {
        error: (err as Error).message,
      });
    }
  }

  /**
   * The global `max_duration` guard: that long after this process (in a fleet: the fleet) started, every
   * running experiment is killed at once (once; experiments armed afterwards run until stopped). A reload may move it.
   */
  private startGlobalDeadline(maxMs: number | undefined): void {
    if (this.globalDeadline !== null) clearTimeout(this.globalDeadline);
    this.globalDeadline = null;
    if (maxMs === undefined || this.globalDeadlinePassed) return;
    const fire = () => {
      this.globalDeadline = null;
      this.globalDeadlinePassed = true;
      const killed = this.table.killAll(
        'duration',
        `global max_duration of ${maxMs} ms elapsed`,
        'guard:max_duration',
      );
      log('warn', 'global max_duration elapsed', { killed });
    };
    const left = this.startedAtMs + maxMs - Date.now();
    if (left <= 0) fire();
    else this.globalDeadline = setTimeout(fire, left).unref();
  }

  /** Stop accepting, drain in-flight requests up to the deadline, close everything. */
  async stop(drainMs = this.config.drain_timeout_ms): Promise<void> {
    this.ready = false;
    running.delete(this);
    this.watcher?.close();
    log('info', 'faultline stopping', { drain_timeout_ms: drainMs });
    // Held faults are let go first (forwarded or answered), so they do not hold the drain open.
    this.scheduler.stop();
    this.windows.stop();
    this.table.stop();
    this.series.stop();
    this.probes.stop();
    await Promise.all([
      ...[...this.listeners.values()].map((l) => l.drain(drainMs)),
      // Workers drain theirs and send their last counts before they exit.
      this.workerPool?.stop(drainMs),
      this.extProc?.close(drainMs),
    ]);
    if (this.globalDeadline !== null) clearTimeout(this.globalDeadline);
    // Notifications of the last kills (a CI run that ends on one) get a bounded chance to go out.
    await this.webhook?.stop(2000);
    // Queued spans get a bounded chance to go out (the exporter has its own timeout).
    await this.tracer?.shutdown().catch(() => undefined);
    // The last counts go to the fleet before the connection closes (a clean stop loses none).
    await this.fleet?.stop();
    await this.table.flush();
    await this.journal.flush();
    await this.fleet?.close();
    await this.admin?.close();
    await this.pools.destroyAll();
    log('info', 'faultline stopped');
  }

  /**
   * An error no code path caught (a timer, an event handler, a rejected promise): counted, logged, and
   * the process keeps serving, since one such error must not take every listener and the admin port
   * down. What it may have left inconsistent is experiment state, so fault injection stops (every running
   * experiment is killed, which persists, notifies and shows in /experiments); proxying goes on.
   */
  uncaughtError(kind: 'exception' | 'rejection', err: unknown): void {
    this.metrics.uncaughtErrors.inc({ kind });
    const killed = this.table.killAll(
      'manual',
      `internal error (uncaught ${kind}): ${(err as Error)?.message ?? String(err)}`,
      'faultline:uncaught_error',
    );
    if (uncaughtLog.allow())
      log('error', 'uncaught error; still serving, fault injection stopped', {
        kind,
        error: (err as Error)?.stack ?? String(err),
        killed,
        suppressed_since_last_line: uncaughtLog.takeSuppressed(),
      });
  }
}

/** Running instances (tests run several in one process); the uncaught-error policy reports to each. */
const running = new Set<Faultline>();
const uncaughtLog = new LogLimiter(10_000, 10);
let policyInstalled = false;

/** Installed once per process, by the first Faultline started (see Faultline.uncaughtError). */
function installUncaughtErrorPolicy(): void {
  if (policyInstalled) return;
  policyInstalled = true;
  process.on('uncaughtException', (err) => onUncaught('exception', err));
  process.on('unhandledRejection', (reason) => onUncaught('rejection', reason));
}

function onUncaught(kind: 'exception' | 'rejection', err: unknown): void {
  try {
    if (running.size === 0)
      log('error', 'uncaught error', { kind, error: (err as Error)?.stack ?? String(err) });
    for (const fl of running) fl.uncaughtError(kind, err);
  } catch {
    // Reporting must not throw from the handler (that would end the process after all).
  }
}

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

function logWarnings(cfg: ConfigSpec): void {
  for (const w of configWarnings(cfg)) log('warn', 'config warning', { path: w.path, reason: w.reason });
}
