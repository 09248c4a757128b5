/**
 * A worker of `workers: N` (see protocol.ts): the listeners and the engine's decide/inject/record path,
 * nothing else. Experiment state is the primary's, mirrored here from its pushes (a kill pushed by the
 * primary is in force for the next request this worker assigns); outcomes are counted locally and sent
 * to the primary as cumulative counts every BATCH_MS (no IPC per request). No state file, journal,
 * scheduler, probes, admin or fleet connection runs here.
 */
import cluster from 'node:cluster';
import type { Dispatcher } from 'undici';
import { compileListenerPlans } from '../config/compile.js';
import { compileFault } from '../faults/registry.js';
import { stepFault } from '../probes/ramp.js';
import { BUCKETS } from '../split/hash.js';
import type { ConfigSpec } from '../config/schema.js';
import { Engine } from '../engine/engine.js';
import { compileExtProcPlan } from '../extproc/plan.js';
import { ExtProcServer } from '../extproc/server.js';
import type { ExperimentRuntime } from '../experiments/runtime.js';
import { ExperimentTable, type OutcomeSink } from '../experiments/table.js';
import { newCumulative, sparse, type Cumulative } from '../fleet/fleet.js';
import type { PersistedState, StateStore } from '../killswitch/store.js';
import { Exchange } from '../proxy/exchange.js';
import { routeTotals } from '../probes/traffic.js';
import { Listener } from '../proxy/listener.js';
import { UpstreamPools } from '../proxy/upstreams.js';
import { LogHistogram } from '../stats/histogram.js';
import { log, setLogSink } from '../telemetry/log.js';
import { createMetrics, type Metrics } from '../telemetry/metrics.js';
import { OtelRequestTracer } from '../telemetry/tracing.js';
import {
  PRIMARY_OWNED,
  TAG,
  maxActiveShare,
  workerCount,
  type BatchEntry,
  type FromWorker,
  type ToWorker,
  type WorkerState,
} from './protocol.js';

/** How often a worker sends its counts (a crashed worker loses at most this much of them). */
export const BATCH_MS = 100;

/** The worker's state store: the primary persists; a worker's own writes go nowhere. */
class NoStore implements StateStore {
  prepare(): Promise<void> {
    return Promise.resolve();
  }
  load(): Promise<PersistedState> {
    return Promise.resolve({ version: 1, experiments: {} });
  }
  save(): Promise<void> {
    return Promise.resolve();
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
}

const HIST = new LogHistogram();

/**
 * Sticky experiments: outcomes buffered per experiment before the batch goes early (bounded memory:
 * 64 KiB per experiment; at 40k judged requests/s per worker that is the 100 ms batch anyway).
 */
const RECORDS_MAX = 4096;
const FLAGS = 2 ** 32;

/** This worker's outcomes of the current local run (a ramp: step) of one experiment. */
class LocalRun {
  readonly cum: Cumulative;
  changed = true;
  /** Sticky: the judged outcomes not sent yet (BatchEntry.rec pairs), `n` of them. */
  readonly rec: Float64Array | null;
  n = 0;
  constructor(
    readonly runId: number,
    withLatency: boolean,
    sticky: boolean,
  ) {
    this.cum = newCumulative(withLatency);
    this.rec = sticky ? new Float64Array(2 * RECORDS_MAX) : null;
  }

  /** The buffered outcomes, handed over (a copy: the buffer is reused). */
  take(): Float64Array | undefined {
    if (this.rec === null || this.n === 0) return undefined;
    const out = this.rec.slice(0, 2 * this.n);
    this.n = 0;
    return out;
  }
}

/** Counts outcomes per runtime (the hot path: a map lookup and a few additions); sends them in batches. */
class BatchSink implements OutcomeSink {
  readonly runs = new Map<ExperimentRuntime, LocalRun>();
  /** Sends the batch now (a sticky buffer is full). */
  full: () => void = () => undefined;

  observe(
    rt: ExperimentRuntime,
    isCanary: boolean,
    bad: boolean,
    timedOut: boolean,
    latencyMs: number,
    sessionKey: number,
  ): void {
    let run = this.runs.get(rt);
    if (run === undefined || run.runId !== rt.runId) run = this.fresh(rt);
    const c = run.cum;
    const a = isCanary ? 0 : 1;
    c.requests[a] += 1;
    if (bad) c.errors[a] += 1;
    if (timedOut) c.timeouts[a] += 1;
    const lat = c.latency[a];
    if (lat != null && latencyMs >= 0 && latencyMs < Infinity) lat[HIST.bucketOf(latencyMs)]! += 1;
    run.changed = true;
    const rec = run.rec;
    if (rec !== null) {
      // Two numbers per request into a preallocated buffer: no allocation on the request path.
      const i = 2 * run.n++;
      rec[i] = (sessionKey >>> 0) + ((isCanary ? 1 : 0) | (bad ? 2 : 0) | (timedOut ? 4 : 0)) * FLAGS;
      rec[i + 1] = latencyMs;
      if (run.n === RECORDS_MAX) this.full();
    }
  }

  fresh(rt: ExperimentRuntime): LocalRun {
    const run = new LocalRun(
      rt.runId,
      rt.spec.guardrails.some((g) => g.metric === 'latency'),
      rt.stickyKind !== null,
    );
    this.runs.set(rt, run);
    return run;
  }
}

function send(msg: FromWorker, done?: () => void): void {
  if (process.connected) process.send?.({ tag: TAG, ...msg }, undefined, undefined, done);
  else done?.();
}

export class WorkerHost {
  readonly metrics: Metrics = createMetrics();
  readonly table: ExperimentTable;
  readonly engine: Engine;
  readonly listeners = new Map<string, Listener>();
  /**
   * `ext_proc` runs here like a listener: grpc-js binds through net's listen, so the workers share its
   * port (node:cluster); decisions read this worker's pushed states, outcomes go into its batches.
   */
  extProc: ExtProcServer | null = null;
  private readonly pools = new UpstreamPools();
  private readonly sink = new BatchSink();
  /** The primary's epoch each local runtime mirrors (a new epoch: fresh evidence here too). */
  private readonly epochs = new WeakMap<ExperimentRuntime, string>();
  /** The primary's run each local runtime mirrors (a new run: counts from zero here too). */
  private readonly runKeys = new WeakMap<ExperimentRuntime, string>();
  /**
   * Runtimes this worker killed itself (its guard, an error) that the primary has not yet pushed as
   * killed: a push it sent before it heard of the kill must not undo it (only a new run may).
   */
  private readonly localKills = new WeakSet<ExperimentRuntime>();
  /** The intensity step applied to each local runtime (a ramp's; absent: the fault as configured). */
  private readonly intensities = new WeakMap<ExperimentRuntime, number>();
  /** Counts total of each runtime at its last send (outcomes still finishing change them after a kill). */
  private readonly sentTotals = new WeakMap<ExperimentRuntime, number>();
  /** Requests counted by this worker's listeners at the last send of its traffic totals. */
  private sentTraffic = 0;
  private timer: NodeJS.Timeout | null = null;
  private tracer: OtelRequestTracer | null = null;
  private stopping: Promise<void> | null = null;

  constructor(
    readonly index: number,
    private config: ConfigSpec,
  ) {
    this.table = new ExperimentTable(new NoStore(), this.metrics);
    // Before any runtime exists: outcomes go to the batches, and runtimes start without permission to
    // inject until the primary's state says so.
    this.table.pooled = this.sink;
    this.sink.full = () => this.flush();
    this.config = untimed(config);
    this.engine = new Engine(this.table);
    // A kill decided here (a listener's max_error_rate guard, an uncaught error) is the primary's to
    // record and push to every worker. Kills pushed by the primary never pass through the table here.
    this.table.on('event', (e) => {
      if (e.type !== 'killed' || e.experiment === undefined) return;
      const rt = this.table.get(e.experiment);
      if (rt !== undefined) this.localKills.add(rt);
      send({
        t: 'kill',
        id: e.experiment,
        cause: e.cause ?? 'manual',
        reason: e.reason ?? '',
        by: e.by ?? '',
        evidence: e.evidence ?? null,
      });
    });
  }

  async start(states: WorkerState[]): Promise<void> {
    const cfg = this.config;
    await this.table.init();
    if (cfg.tracing.enabled) {
      this.tracer = new OtelRequestTracer(cfg.tracing, '0.0.0');
      this.engine.tracer = this.tracer;
    }
    const experiments = this.table.prepare(cfg.experiments);
    this.tag(experiments);
    const plans = compileListenerPlans(cfg, this.pools, this.metrics, experiments);
    this.activate(experiments, states);
    for (const spec of cfg.listeners) {
      const listener = new Listener(
        spec,
        plans.get(spec.name)!,
        this.metrics,
        this.engine,
        cfg.listeners.length,
      );
      this.listeners.set(spec.name, listener);
      const addr = await listener.listen();
      send({ t: 'listening', listener: spec.name, address: addr.address, port: addr.port });
    }
    // After the listeners in every worker: a port 0 binding is shared by its order (node:cluster).
    const xp = compileExtProcPlan(cfg, experiments);
    if (xp !== null && cfg.ext_proc !== undefined) {
      this.extProc = new ExtProcServer(this.engine, xp, this.metrics);
      const addr = await this.extProc.listen(cfg.ext_proc.address, cfg.ext_proc.port);
      send({ t: 'listening', listener: cfg.ext_proc.name, address: addr.address, port: addr.port });
    }
    this.timer = setInterval(() => this.flush(), BATCH_MS);
    this.timer.unref();
  }

  /** The primary's validated config (it checked bindings; an invalid file never reaches a worker). */
  reload(config: ConfigSpec, states: WorkerState[]): void {
    const cfg = untimed(config);
    const experiments = this.table.prepare(cfg.experiments);
    this.tag(experiments);
    const plans = compileListenerPlans(cfg, this.pools, this.metrics, experiments);
    for (const spec of cfg.listeners) this.listeners.get(spec.name)?.swapPlan(plans.get(spec.name)!, spec);
    const xp = compileExtProcPlan(cfg, experiments);
    if (xp !== null) this.extProc?.swapPlan(xp);
    // Outcomes of runtimes the reload replaces go out first.
    this.flush();
    this.activate(experiments, states);
    this.config = cfg;
    const keep = new Set([...plans.values()].flatMap((p) => p.routes.map((r) => r.pool)));
    void this.pools.retain(keep, () => this.heldPools());
  }

  /**
   * The table starts runs on its own rules; the primary's states replace that at once, before any
   * request sees it (the specs carry no duration here, so the table sets no timer: ends are the primary's).
   */
  private activate(experiments: Map<string, ExperimentRuntime>, states: WorkerState[]): void {
    this.table.activate(experiments);
    this.apply(states);
  }

  /** Mirror the primary's states: synchronous, so the next request sees them. */
  apply(states: WorkerState[]): void {
    for (const s of states) {
      const rt = this.table.get(s.id);
      if (rt === undefined) continue;
      const known = this.epochs.get(rt);
      const sameRun = this.runKeys.get(rt) === s.run;
      if (known !== undefined && known !== s.epoch) {
        // The old epoch's last outcomes go out first. A new run on the primary (arm, schedule): a fresh
        // run here. A ramp's next step: fresh evidence only (runId, as the ramp does), counts go on.
        this.flush();
        if (this.runKeys.get(rt) !== s.run) rt.resetRun(rt.newAnalyzer());
        else rt.runId++;
      }
      this.epochs.set(rt, s.epoch);
      this.runKeys.set(rt, s.run);
      this.step(rt, s);
      rt.maxActiveFaults = maxActiveShare(s.maxActive, workerCount(this.config.workers), this.index);
      const wasAssigning = rt.assigning;
      // Killed here (this worker's guard) while the primary's push was on its way: only a new run (an
      // arm, a reload) lifts such a kill; an older state of the same run never does.
      if (this.localKills.has(rt)) {
        if (s.state !== 'killed' && sameRun) continue;
        this.localKills.delete(rt);
      }
      if (rt.state !== s.state) rt.setState(s.state);
      if (rt.granted !== s.granted || rt.injecting !== (s.state === 'running' && s.granted))
        rt.setGranted(s.granted);
      if (wasAssigning && !rt.assigning) rt.releaseHeld();
    }
  }

  /** The ramp step the primary chose (split, fault intensity): in force before the next request. */
  private step(rt: ExperimentRuntime, s: WorkerState): void {
    if (rt.splitPercent !== s.split) rt.setSplit(s.split);
    const have = this.intensities.get(rt);
    if (have === (s.intensity ?? undefined)) return;
    if (s.intensity === null) {
      this.intensities.delete(rt);
      rt.fault = compileFault(rt.spec.fault);
      rt.faultBuckets = Math.round((rt.spec.fault.percent * BUCKETS) / 100);
    } else {
      this.intensities.set(rt, s.intensity);
      const f = stepFault(rt.spec, s.intensity);
      rt.fault = f.fault;
      rt.faultBuckets = f.faultBuckets;
    }
  }

  /**
   * `arm_header: true` (a debug and load-test header) also says which worker served:
   * `<id>; group=canary; worker=2`. Set once per runtime, so the hot path is unchanged.
   */
  private tag(experiments: Map<string, ExperimentRuntime>): void {
    for (const rt of experiments.values()) {
      const marks = rt.armMarks;
      if (marks[1]?.includes('; worker=')) continue;
      (rt as { armMarks: readonly (string | null)[] }).armMarks = marks.map((m) =>
        m === null ? null : `${m}; worker=${this.index}`,
      );
    }
  }

  /** Send the changed cumulative counts (idempotent: the primary consumes deltas). */
  flush(): void {
    const entries: BatchEntry[] = [];
    for (const rt of this.table.all()) {
      const epoch = this.epochs.get(rt);
      const runKey = this.runKeys.get(rt);
      if (epoch === undefined || runKey === undefined) continue;
      let run = this.sink.runs.get(rt);
      if (run === undefined || run.runId !== rt.runId) run = this.sink.fresh(rt);
      let total = 0;
      for (let i = 0; i < rt.counts.length; i++) total += rt.counts[i]!;
      total += rt.assigned[1]! + rt.assigned[2]!;
      if (!run.changed && total === this.sentTotals.get(rt)) continue;
      run.changed = false;
      this.sentTotals.set(rt, total);
      const c = run.cum;
      const rec = run.take();
      entries.push({
        id: rt.id,
        epoch,
        run: runKey,
        ...(rec !== undefined ? { rec } : {}),
        req: [...c.requests],
        err: [...c.errors],
        tmo: [...c.timeouts],
        lat: [sparse(c.latency[0]), sparse(c.latency[1])],
        counts: Array.from(rt.counts),
        assigned: Array.from(rt.assigned),
        active: rt.activeFaults,
      });
    }
    const traffic = this.trafficChanged();
    if (entries.length > 0 || traffic !== undefined)
      send(traffic === undefined ? { t: 'batch', entries } : { t: 'batch', entries, traffic });
  }

  /**
   * This worker's listener/route totals when any request finished since the last send: the primary's
   * traffic probes and suggestions read them (its own listeners' counters: it has none). One read of
   * two metric families per batch, off the request path.
   */
  private trafficChanged(): ReturnType<typeof routeTotals> | undefined {
    const totals = routeTotals(this.metrics);
    let n = 0;
    for (const t of totals) n += t.requests;
    if (n === this.sentTraffic) return undefined;
    this.sentTraffic = n;
    return totals;
  }

  private heldPools(): Set<Dispatcher> {
    const pools = new Set<Dispatcher>();
    for (const t of this.table.heldTargets()) if (t instanceof Exchange) pools.add(t.route.pool);
    return pools;
  }

  /** Drain the listeners, send the last counts, close. */
  stop(drainMs: number): Promise<void> {
    this.stopping ??= (async () => {
      this.table.stop();
      await Promise.all([
        ...[...this.listeners.values()].map((l) => l.drain(drainMs)),
        this.extProc?.close(drainMs),
      ]);
      if (this.timer !== null) clearInterval(this.timer);
      this.flush();
      await this.tracer?.shutdown().catch(() => undefined);
      await this.pools.destroyAll();
    })();
    return this.stopping;
  }

  /** Prometheus samples of this worker, without the ones the primary owns. */
  async metricsJson(): Promise<Extract<FromWorker, { t: 'metrics' }>['json']> {
    const all = await this.metrics.registry.getMetricsAsJSON();
    return all.filter((m) => !PRIMARY_OWNED.test(m.name));
  }
}

/**
 * The process of one worker (cluster.isWorker): waits for the primary's init, serves, and exits once
 * the primary says stop (or the IPC channel is gone: an orphan must not keep serving stale state).
 */
export function runWorker(): Promise<number> {
  return new Promise<number>((resolve) => {
    let host: WorkerHost | null = null;
    const exit = (code: number) => {
      // The last batch is on its way out before the process ends.
      send({ t: 'batch', entries: [] }, () => resolve(code));
    };
    const stop = (drainMs: number) => {
      if (host === null) return resolve(0);
      host.stop(drainMs).then(
        () => exit(0),
        () => exit(1),
      );
    };
    // SIGINT/SIGHUP from a terminal reach the whole process group: the primary decides, workers ignore.
    process.on('SIGINT', () => undefined);
    process.on('SIGHUP', () => undefined);
    process.on('SIGTERM', () => stop(10_000));
    process.on('disconnect', () => stop(1000));
    process.on('message', (raw: { tag?: string } & ToWorker) => {
      if (raw?.tag !== TAG) return;
      switch (raw.t) {
        case 'init': {
          const index = raw.index;
          // Every log line of this worker says which one it is.
          setLogSink((line) =>
            process.stderr.write(`${line.slice(0, -1)},"worker":${index},"pid":${process.pid}}\n`),
          );
          host = new WorkerHost(index, raw.config);
          installUncaught(() => host);
          host.start(raw.states).then(
            () => send({ t: 'ready' }),
            (err: unknown) => {
              send({ t: 'fatal', message: (err as Error).message }, () => resolve(1));
            },
          );
          return;
        }
        case 'state':
          host?.apply(raw.states);
          return;
        case 'reload':
          try {
            host?.reload(raw.config, raw.states);
          } catch (err) {
            // The primary compiled the same config: this is a bug, not a bad file. Injection stops here.
            log('error', 'worker could not apply a reload; fault injection stopped in this worker', {
              error: (err as Error).message,
            });
            host?.table.killAll(
              'manual',
              `worker reload failed: ${(err as Error).message}`,
              'faultline:worker',
            );
          }
          return;
        case 'metrics':
          void host?.metricsJson().then((json) => send({ t: 'metrics', req: raw.req, json }));
          return;
        case 'stop':
          stop(raw.drainMs);
          return;
      }
    });
    send({ t: 'hello' });
  });
}

/** As Faultline's policy (src/main.ts): an uncaught error kills every experiment (via the primary), serving goes on. */
function installUncaught(host: () => WorkerHost | null): void {
  const on = (kind: string, err: unknown) => {
    try {
      const killed = host()?.table.killAll(
        'manual',
        `internal error in a worker (uncaught ${kind}): ${(err as Error)?.message ?? String(err)}`,
        'faultline:uncaught_error',
      );
      log('error', 'uncaught error; still serving, fault injection stopped', {
        kind,
        error: (err as Error)?.stack ?? String(err),
        killed,
      });
    } catch {
      // must not throw from the handler
    }
  };
  process.on('uncaughtException', (err) => on('exception', err));
  process.on('unhandledRejection', (reason) => on('rejection', reason));
}

/** The config without experiment durations: a worker's table must not end runs on its own timers. */
function untimed(cfg: ConfigSpec): ConfigSpec {
  return { ...cfg, experiments: cfg.experiments.map(({ duration: _d, ...e }) => e) };
}

export const isWorker = (): boolean => cluster.isWorker;
