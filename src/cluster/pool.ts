/**
 * The primary of `workers: N` (see protocol.ts): forks the workers, pushes every state change to them,
 * and pools their outcome batches into the one analyzer of each experiment.
 *
 * Pooling is the fleet's (src/fleet/fleet.ts): each worker reports cumulative per-arm counts of the
 * current run; the primary feeds the deltas to ExperimentAnalyzer.recordBatch (same anytime-valid alpha:
 * batch ends are a subsequence of the per-request looks), and the runtime's counts are the sum of the
 * workers' counts, so admin, reports and the journal show what one process would. With `fleet:` the
 * deltas go to the fleet's pool instead (this process is the fleet member; workers never reach Redis).
 *
 * Sticky experiments send every judged outcome too (BatchEntry.rec), replayed one by one into the
 * analyzer (its own per-session filter: one bad event per session, whichever worker saw it). Ramps: the
 * primary's RampController picks the step; the state push carries it (split, intensity) and a new
 * epoch, so outcomes of the old step never reach the new step's analyzer, while the run's counts go on.
 *
 * Latency of a kill: a worker's outcome reaches the analyzer within BATCH_MS (+ IPC); the kill is pushed
 * to every worker at once and is in force for each worker's next request after the push arrives.
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { ConfigSpec } from '../config/schema.js';
import { FaultlineError } from '../errors.js';
import { ARM_CANARY, ARM_CONTROL, countsOf, type ExperimentRuntime } from '../experiments/runtime.js';
import type { ExperimentTable, KillCause } from '../experiments/table.js';
import {
  addDelta,
  cumulativeOf,
  emptyBatch,
  newCumulative,
  type Cumulative,
  type Fleet,
} from '../fleet/fleet.js';
import { currentIntensity, recordPooled } from '../probes/ramp.js';
import { log } from '../telemetry/log.js';
import type { Metrics } from '../telemetry/metrics.js';
import { setSharedTraffic, type TrafficTotals } from '../telemetry/shared-traffic.js';
import { TAG, type BatchEntry, type FromWorker, type ToWorker, type WorkerState } from './protocol.js';

/** What the pool needs of the Faultline it serves (src/main.ts). */
export interface PoolHost {
  readonly table: ExperimentTable;
  readonly metrics: Metrics;
  readonly fleet: Fleet | null;
}

/** A worker is re-forked after a crash at most this often (a crash loop must not spin the CPU). */
const RESTARTS_PER_MINUTE = 10;
const BOOT_TIMEOUT_MS = 30_000;
/** How often grants (fleet) and other changes without an event are checked and pushed. */
const POLL_MS = 50;

interface Slot {
  index: number;
  worker: Worker | null;
  ready: boolean;
  /** Worker id -> pid, for the per-worker view. */
  pid: number;
}

/** One worker's last report for the current run of one experiment. */
interface WorkerEntry {
  worker: number;
  pid: number;
  at: number;
  /** The step (epoch) `cum` belongs to: a ramp's next step starts the worker's outcomes from zero. */
  epoch: string;
  cum: Cumulative;
  counts: number[];
  assigned: number[];
  active: number;
}

/** The pooled current run of one experiment: what each worker (by fork id) reported last. */
class PooledRun {
  readonly entries = new Map<number, WorkerEntry>();
  /** The run key (WorkerState.run). */
  constructor(readonly epoch: string) {}
}

const FLAGS = 2 ** 32;

/**
 * A sticky experiment's outcomes (BatchEntry.rec), fed one by one as one process feeds them: the
 * analyzer's own SessionFilter counts one bad event per session and arm, whichever worker saw it, and
 * a latency guardrail judges each request against control's threshold at its turn. With a fleet they
 * go through the fleet's `observe` (its session bitmaps), as a single replica's would.
 */
function replay(host: PoolHost, rt: ExperimentRuntime, rec: Float64Array, workers: number): void {
  const fleet = host.fleet;
  const runId = rt.runId;
  for (let i = 0; i + 1 < rec.length; i += 2) {
    // A kill ends the judging at once, as table.observe does for requests finishing after it; so does
    // a ramp's new step (plateau, bisection) taken on one of these outcomes: the rest were the old step's.
    if (!rt.assigning || rt.runId !== runId) return;
    const v = rec[i]!;
    const flags = Math.floor(v / FLAGS);
    const key = (v - flags * FLAGS) >>> 0;
    const canary = (flags & 1) !== 0;
    const bad = (flags & 2) !== 0;
    const timedOut = (flags & 4) !== 0;
    const latency = rec[i + 1]!;
    if (fleet !== null) {
      fleet.observe(rt, canary, bad, timedOut, latency, key);
      continue;
    }
    const breach = rt.analyzer.record(canary ? 'canary' : 'control', bad, timedOut, latency, key);
    if (breach !== null)
      host.table.kill(rt.id, 'guardrail', breach.reason, 'guardrail', {
        ...breach,
        at: new Date().toISOString(),
        workers,
      });
  }
}

export interface WorkerView {
  worker: number;
  pid: number;
  last_seen: string;
  canary: number;
  control: number;
}

export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly runs = new Map<string, PooledRun>();
  /** Runtime object -> generation: with the runtime's runId, the epoch a worker's counts belong to. */
  private readonly gens = new WeakMap<ExperimentRuntime, number>();
  private nextGen = 1;
  private config: ConfigSpec;
  private lastPushed = '';
  private holding = false;
  private stopping = false;
  private started = false;
  private poll: NodeJS.Timeout | null = null;
  // Kept so stop() can remove them (a second Faultline in the process must not double-handle).
  private readonly onExit = (w: Worker, code: number | null, signal: string | null): void =>
    this.exited(w, code, signal);
  private readonly onTableEvent = (): void => this.push();
  private readonly restarts: number[] = [];
  private readonly ports = new Map<string, number>();
  private req = 0;
  private readonly waiting = new Map<number, { left: number; json: unknown[]; done: () => void }>();
  /** Each live worker's (by fork id) last cumulative listener/route totals... */
  private readonly traffic = new Map<number, TrafficTotals[]>();
  /** ...and those of workers that exited, summed, so the totals never go back (probe windows). */
  private readonly retired = new Map<string, TrafficTotals>();

  constructor(
    private readonly host: PoolHost,
    readonly size: number,
    config: ConfigSpec,
  ) {
    this.config = config;
  }

  /** Fork the workers; resolves once every one listens (rejects when one cannot). */
  async start(): Promise<void> {
    // kernel (default): each worker accepts from the shared socket itself (SCHED_NONE), with its own
    // accept fan-out. Node's round robin (the primary accepts and hands a worker one connection, then
    // waits for it to take it) drained a 1,000-connection burst at one connection per worker loop
    // turn: -c1000 p99 11.8 s with 2 workers vs 0.93 s with kernel balance (bench/ab.mjs). Its price:
    // the split follows which worker is free (wrk -c64: 36/28 to 23/41), not an exact alternation.
    // Set before setupPrimary, which freezes it.
    cluster.schedulingPolicy =
      this.config.workers_balance === 'round_robin' ? cluster.SCHED_RR : cluster.SCHED_NONE;
    // Structured clone over IPC: a ConfigSpec (undefined fields, Infinity) goes as it is.
    cluster.setupPrimary({ serialization: 'advanced' });
    cluster.on('exit', this.onExit);
    this.host.table.on('event', this.onTableEvent);
    // The listeners' traffic is counted here: traffic probes and suggestions read the workers' totals.
    setSharedTraffic(this.host.metrics, () => this.trafficTotals());
    for (let i = 0; i < this.size; i++) this.slots.push({ index: i + 1, worker: null, ready: false, pid: 0 });
    await Promise.all(this.slots.map((s) => this.fork(s)));
    this.started = true;
    this.poll = setInterval(() => this.push(), POLL_MS);
    this.poll.unref();
    log('info', 'workers started', { workers: this.size, pids: this.slots.map((s) => s.pid) });
  }

  private fork(slot: Slot): Promise<void> {
    const w = cluster.fork({ FAULTLINE_WORKER: String(slot.index) });
    slot.worker = w;
    slot.ready = false;
    slot.pid = w.process.pid ?? 0;
    w.on('error', () => undefined);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => fail(`worker ${slot.index} did not start within ${BOOT_TIMEOUT_MS} ms`),
        BOOT_TIMEOUT_MS,
      );
      const fail = (message: string) => {
        clearTimeout(timer);
        w.off('exit', onExit);
        reject(new FaultlineError('FL_WORKER_START', message));
      };
      const onExit = (code: number | null, signal: string | null) =>
        fail(`worker ${slot.index} exited during its start (code ${code}, signal ${signal})`);
      w.once('exit', onExit);
      w.on('message', (raw: { tag?: string } & FromWorker) => {
        if (raw?.tag !== TAG) return;
        if (raw.t === 'ready') {
          clearTimeout(timer);
          w.off('exit', onExit);
          slot.ready = true;
          // States that changed while it booted (push() skips workers not ready yet): a kill decided
          // then must reach it now, not at the next change. A reload in progress sends them itself.
          if (!this.holding) this.send(w, { t: 'state', states: this.states() });
          resolve();
        } else if (raw.t === 'fatal') fail(`worker ${slot.index}: ${raw.message}`);
        else this.message(slot, w, raw);
      });
    });
  }

  private send(w: Worker, msg: ToWorker): void {
    // A worker that just died: its exit is handled in `exited`, the send error is moot.
    if (w.isConnected()) w.send({ tag: TAG, ...msg }, undefined, () => undefined);
  }

  private message(slot: Slot, w: Worker, m: FromWorker): void {
    switch (m.t) {
      case 'hello':
        this.send(w, { t: 'init', index: slot.index, config: this.config, states: this.states() });
        return;
      case 'listening':
        if (!this.ports.has(m.listener)) {
          this.ports.set(m.listener, m.port);
          // The same lines as one process logs (ext_proc's names its server, not a listener).
          if (m.listener === this.config.ext_proc?.name)
            log('info', 'ext_proc started', {
              ext_proc: m.listener,
              address: m.address,
              port: m.port,
              workers: this.size,
            });
          else
            log('info', 'listener started', {
              listener: m.listener,
              address: m.address,
              port: m.port,
              workers: this.size,
            });
        }
        return;
      case 'batch':
        for (const e of m.entries) this.pool(slot, w.id, e);
        // A batch read after the exit (the IPC channel can drain after 'exit'): its totals were retired
        // already; adding them again would count them twice (the lost part is at most one batch).
        if (m.traffic !== undefined && slot.worker === w) this.traffic.set(w.id, m.traffic);
        return;
      case 'kill':
        // A worker's own guard (max_error_rate) or error: recorded once here, pushed to every worker.
        this.host.table.kill(m.id, m.cause as KillCause, m.reason, m.by, m.evidence);
        return;
      case 'metrics':
        this.answered(m.req, m.json);
        return;
      default:
        return;
    }
  }

  // ---- state to the workers ----

  private genOf(rt: ExperimentRuntime): number {
    let gen = this.gens.get(rt);
    if (gen === undefined) {
      gen = this.nextGen++;
      this.gens.set(rt, gen);
    }
    return gen;
  }

  /** The evidence the analyzer takes now: a new run, or a ramp's new step. */
  private epochOf(rt: ExperimentRuntime): string {
    return `${this.genOf(rt)}.${rt.runId}`;
  }

  /** The run the counts belong to (a ramp's steps share it). */
  private runOf(rt: ExperimentRuntime): string {
    return `${this.genOf(rt)}.${rt.runStart}`;
  }

  private states(): WorkerState[] {
    return [...this.host.table.all()].map((rt) => ({
      id: rt.id,
      state: rt.state,
      granted: rt.granted,
      epoch: this.epochOf(rt),
      run: this.runOf(rt),
      // A ramp's step, decided here (the primary has the analyzers): the workers serve it.
      split: rt.splitPercent,
      intensity: currentIntensity(rt),
      maxActive: Number.isFinite(rt.maxActiveFaults) ? rt.maxActiveFaults : null,
    }));
  }

  /** Push the states when they changed (every table event, and every POLL_MS for grants). */
  private push(): void {
    if (this.holding || this.stopping) return;
    const states = this.states();
    const key = JSON.stringify(states);
    if (key === this.lastPushed) return;
    this.lastPushed = key;
    for (const s of this.slots) if (s.worker !== null && s.ready) this.send(s.worker, { t: 'state', states });
  }

  /**
   * Apply a reload here (`activate`) and send it to the workers with the states it leads to: no push
   * in between, so no worker hears of a runtime before it has the config that makes it.
   */
  reload(cfg: ConfigSpec, activate: () => void): void {
    this.holding = true;
    try {
      activate();
    } finally {
      this.holding = false;
    }
    this.config = cfg;
    const states = this.states();
    this.lastPushed = JSON.stringify(states);
    for (const s of this.slots)
      if (s.worker !== null) this.send(s.worker, { t: 'reload', config: cfg, states });
  }

  // ---- outcomes from the workers ----

  private pool(slot: Slot, workerId: number, e: BatchEntry): void {
    const rt = this.host.table.get(e.id);
    // The run's counts are taken from any step of it (the workers' last batch of a step that ended
    // counts too), its outcomes only while the step is the one the analyzer judges.
    if (rt === undefined || this.runOf(rt) !== e.run) return;
    let run = this.runs.get(e.id);
    if (run === undefined || run.epoch !== e.run) {
      run = new PooledRun(e.run);
      this.runs.set(e.id, run);
    }
    const withLatency = rt.spec.guardrails.some((g) => g.metric === 'latency');
    const cur = cumulativeOf(e, withLatency);
    const last = run.entries.get(workerId);
    const prev = last !== undefined && last.epoch === e.epoch ? last.cum : newCumulative(withLatency);
    // A worker's cumulative counts only grow; anything else is not its data (skip, never subtract).
    if (cur.requests[0] < prev.requests[0] || cur.requests[1] < prev.requests[1]) return;
    run.entries.set(workerId, {
      worker: slot.index,
      pid: slot.pid,
      at: Date.now(),
      epoch: e.epoch,
      cum: cur,
      counts: e.counts,
      assigned: e.assigned,
      active: e.active,
    });
    const c = emptyBatch(withLatency);
    const k = emptyBatch(withLatency);
    addDelta(c, cur, prev, 0);
    addDelta(k, cur, prev, 1);
    // The runtime's counts are the workers' sum: admin, reports and the journal read them as one process's.
    rt.counts.fill(0);
    rt.assigned.fill(0);
    let active = 0;
    for (const entry of run.entries.values()) {
      for (let j = 0; j < rt.counts.length; j++) rt.counts[j]! += entry.counts[j] ?? 0;
      for (let j = 0; j < rt.assigned.length; j++) rt.assigned[j]! += entry.assigned[j] ?? 0;
      active += entry.active;
    }
    rt.activeFaults = active;
    if (this.epochOf(rt) !== e.epoch) return;
    if (e.rec !== undefined) return replay(this.host, rt, e.rec, run.entries.size);
    if (c.requests + k.requests === 0 || !rt.assigning) return;
    const fleet = this.host.fleet;
    if (fleet !== null) return fleet.absorb(rt, c, k);
    // A ramp's step analyzer hears of its breach first (plateau, bisection), as with one process.
    const breach = recordPooled(rt.analyzer, c, k);
    if (breach !== null)
      this.host.table.kill(rt.id, 'guardrail', breach.reason, 'guardrail', {
        ...breach,
        at: new Date().toISOString(),
        workers: run.entries.size,
      });
  }

  /** Per-worker counts of an experiment's current run (admin JSON). */
  view(rt: ExperimentRuntime): WorkerView[] {
    const run = this.runs.get(rt.id);
    if (run === undefined || run.epoch !== this.runOf(rt)) return [];
    return [...run.entries.values()]
      .map((e) => ({
        worker: e.worker,
        pid: e.pid,
        last_seen: new Date(e.at).toISOString(),
        canary: countsOf(e.counts, ARM_CANARY).requests,
        control: countsOf(e.counts, ARM_CONTROL).requests,
      }))
      .sort((a, b) => a.worker - b.worker || a.pid - b.pid);
  }

  /** Every worker's listener/route totals, live and exited, summed per listener/route. */
  private trafficTotals(): TrafficTotals[] {
    if (this.traffic.size === 0) return [...this.retired.values()];
    const sum = new Map<string, TrafficTotals>();
    for (const t of this.retired.values()) addTotals(sum, t);
    for (const list of this.traffic.values()) for (const t of list) addTotals(sum, t);
    return [...sum.values()];
  }

  /** A worker's totals stay counted after it exits (its replacement counts from zero). */
  private retire(workerId: number): void {
    const list = this.traffic.get(workerId);
    if (list === undefined) return;
    this.traffic.delete(workerId);
    for (const t of list) addTotals(this.retired, t);
  }

  /** Ask every worker for something and wait (at most 1 s) for the answers. */
  private ask(msg: (req: number) => ToWorker): Promise<unknown[]> {
    const live = this.slots.filter((s) => s.worker !== null && s.ready && s.worker.isConnected());
    const req = ++this.req;
    return new Promise((resolve) => {
      const json: unknown[] = [];
      const done = () => {
        clearTimeout(timer);
        this.waiting.delete(req);
        resolve(json);
      };
      const timer = setTimeout(done, 1000);
      this.waiting.set(req, { left: live.length, json, done });
      if (live.length === 0) return done();
      for (const s of live) this.send(s.worker as Worker, msg(req));
    });
  }

  private answered(req: number, json: unknown): void {
    const w = this.waiting.get(req);
    if (w === undefined) return;
    w.json.push(json);
    if (--w.left <= 0) w.done();
  }

  /** Prometheus text: the primary's metrics and every worker's, summed by prom-client's aggregator. */
  async metricsText(): Promise<string> {
    const workers = (await this.ask((req) => ({ t: 'metrics', req }))) as MetricObjectWithValues<
      MetricValue<string>
    >[][];
    const own = await this.host.metrics.registry.getMetricsAsJSON();
    return AggregatorRegistry.aggregate([own, ...workers]).metrics();
  }

  /** One line for /ready: how many workers serve (a missing one is being replaced or gave up). */
  readyDetail(): string {
    const serving = this.slots.filter((s) => s.ready).length;
    return `workers: ${serving}/${this.size} serving (pids ${this.slots.map((s) => s.pid).join(', ')})`;
  }

  port(listener: string): number | undefined {
    return this.ports.get(listener);
  }

  // ---- lifecycle ----

  private exited(w: Worker, code: number | null, signal: string | null): void {
    const slot = this.slots.find((s) => s.worker === w);
    if (slot === undefined) return;
    // Its last batch was read before the exit (the channel closes after the last message).
    this.retire(w.id);
    slot.worker = null;
    slot.ready = false;
    // A worker that fails its first start fails the boot (fork rejects); stopping workers just end.
    if (this.stopping || !this.started) return;
    log('warn', 'worker exited', { worker: slot.index, pid: slot.pid, code, signal });
    const now = Date.now();
    while (this.restarts.length > 0 && (this.restarts[0] as number) < now - 60_000) this.restarts.shift();
    if (this.restarts.length >= RESTARTS_PER_MINUTE) {
      log('error', 'worker not replaced: restart limit reached', {
        worker: slot.index,
        limit_per_minute: RESTARTS_PER_MINUTE,
        serving: this.slots.filter((s) => s.worker !== null).length,
      });
      return;
    }
    this.restarts.push(now);
    this.fork(slot).then(
      () => log('info', 'worker replaced', { worker: slot.index, pid: slot.pid }),
      (err: unknown) =>
        log('error', 'worker replacement failed', { worker: slot.index, error: (err as Error).message }),
    );
  }

  /** Every worker drains (up to drainMs) and sends its last counts; resolves when all have exited. */
  async stop(drainMs: number): Promise<void> {
    this.stopping = true;
    if (this.poll !== null) clearInterval(this.poll);
    this.host.table.off('event', this.onTableEvent);
    const live = this.slots.map((s) => s.worker).filter((w): w is Worker => w !== null);
    await Promise.all(
      live.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.isDead()) return resolve();
            const timer = setTimeout(() => {
              log('warn', 'worker did not stop in time; killed', { pid: w.process.pid });
              w.process.kill('SIGKILL');
            }, drainMs + 5000);
            // Exit and the channel's close: the last batch is read before the close is seen.
            let left = w.isConnected() ? 2 : 1;
            const one = () => {
              if (--left > 0) return;
              clearTimeout(timer);
              resolve();
            };
            w.once('exit', one);
            if (left === 2) w.once('disconnect', one);
            this.send(w, { t: 'stop', drainMs });
          }),
      ),
    );
    cluster.off('exit', this.onExit);
  }
}

/** Add `t` into `into` (keyed by listener and route), copying on first sight. */
function addTotals(into: Map<string, TrafficTotals>, t: TrafficTotals): void {
  const key = `${t.listener}\0${t.route}`;
  const have = into.get(key);
  if (have === undefined) {
    into.set(key, { ...t, buckets: Float64Array.from(t.buckets) });
    return;
  }
  have.requests += t.requests;
  have.errors += t.errors;
  for (let i = 0; i < have.buckets.length; i++) have.buckets[i]! += t.buckets[i] ?? 0;
}
