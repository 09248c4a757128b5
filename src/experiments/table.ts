/**
 * Every experiment of the running config and its lifecycle: state transitions (running, killed,
 * expired, disabled, dry_run), the persisted kill switch, duration timers, the analyzer's verdicts and
 * the event stream. A kill flips the hot-path flags synchronously; persisting follows asynchronously.
 */
import { EventEmitter } from 'node:events';
import type { HeldTarget, HoldTracer } from '../engine/hold.js';
import { FaultlineError } from '../errors.js';
import { controlHealth } from './control-health.js';
import type { ExperimentSpec } from '../config/schema.js';
import type { PersistedExperiment, PersistedState, StateStore } from '../killswitch/store.js';
import { log } from '../telemetry/log.js';
import type { Metrics } from '../telemetry/metrics.js';
import {
  ARM_CANARY,
  ExperimentRuntime,
  OUTCOME_CLIENT_ABORT,
  OUTCOME_OK,
  OUTCOME_TIMEOUT,
  type Arm,
  type ExperimentState,
  type Outcome,
} from './runtime.js';
import { windowsOf, type WindowStatus } from './windows.js';

/**
 * Where outcomes go instead of the local analyzer when a fleet pools them (fleet mode): one call per
 * judged request, allocation-free; the fleet feeds the pooled batches to `rt.analyzer`.
 */
export interface OutcomeSink {
  observe(
    rt: ExperimentRuntime,
    isCanary: boolean,
    bad: boolean,
    timedOut: boolean,
    latencyMs: number,
    sessionKey: number,
  ): void;
}

export type KillCause = 'guardrail' | 'global_error_rate' | 'duration' | 'manual' | 'stop_condition';

/** Why a run may not start (a steady-state probe failed before it): the reason and the probes' results. */
export interface GateRefusal {
  reason: string;
  evidence: unknown;
}

/**
 * Checked before a run starts (src/probes): null when the experiment has no such check, else a promise of
 * null (start) or the refusal. The run stays `pending` (assigning nothing) while it is being checked.
 */
export type StartGate = (rt: ExperimentRuntime) => Promise<GateRefusal | null> | null;

export interface ExperimentEvent {
  type:
    | 'started'
    | 'killed'
    | 'expired'
    | 'armed'
    | 'removed'
    | 'config_reloaded'
    | 'config_invalid'
    | 'scheduled'
    | 'schedule_paused'
    // Steady-state probes and ramps (src/probes): a run refused at the gate, probe phases, ramp steps.
    | 'not_started'
    | 'steady_state'
    | 'ramp_step'
    // A run ended with its control arm failing (src/experiments/control-health.ts): not held.
    | 'control_unhealthy';
  at: string;
  experiment?: string;
  cause?: KillCause;
  reason?: string;
  by?: string;
  evidence?: unknown;
}

export interface Lifecycle {
  state: ExperimentState;
  startedAt: string | null;
  /** Who started the current run: "config", an operator (arm), a schedule. */
  startedBy: string | null;
  endsAt: string | null;
  /** Scheduled experiments: when the next window opens (null: paused, or not scheduled). */
  nextStartAt: string | null;
  endedAt: string | null;
  cause: KillCause | null;
  reason: string | null;
  by: string | null;
  evidence: unknown;
  timeline: ExperimentEvent[];
  /** Experiments with `windows:`: inside one now, when it closes or the next opens (src/experiments/windows.ts). */
  window?: WindowStatus;
}

const STATE_NAMES: readonly ExperimentState[] = [
  'pending',
  'scheduled',
  'running',
  'killed',
  'expired',
  'disabled',
  'dry_run',
  'blocked',
];

/**
 * `run_ended`: a run just ended (killed, expired, or replaced by a reload while running); the lifecycle
 * holds its end. The run journal listens here.
 */
export interface TableEvents {
  event: [ExperimentEvent];
  run_ended: [ExperimentRuntime, Lifecycle];
}

export class ExperimentTable extends EventEmitter<TableEvents> {
  private runtimes = new Map<string, ExperimentRuntime>();
  private readonly lifecycles = new Map<string, Lifecycle>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private persisted: PersistedState = { version: 1, experiments: {} };
  /** Outcome of the latest queued write: each write carries the whole state, so the latest decides. */
  private lastSave: Promise<Error | null> = Promise.resolve(null);
  private readonly store: StateStore;
  private readonly metrics: Metrics;
  /** The clock of lifecycle times (tests of schedules inject one). */
  readonly now: () => number;
  /** Steady-state gate (src/probes/supervisor.ts), set by the host that owns the probes. */
  gate: StartGate | null = null;
  /** The gate check each pending runtime waits for: an older check's answer is dropped. */
  private readonly gating = new Map<ExperimentRuntime, number>();
  private gateSeq = 0;
  /** Fleet mode: outcomes are pooled there, and new runtimes start without a grant. */
  pooled: OutcomeSink | null = null;
  /** Tracing on: every runtime created from now on reports its holds as span events. */
  holdTracer: HoldTracer | null = null;

  constructor(store: StateStore, metrics: Metrics, now: () => number = Date.now) {
    super();
    this.store = store;
    this.metrics = metrics;
    this.now = now;
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }

  async init(): Promise<void> {
    await this.store.prepare();
    this.persisted = await this.store.load();
  }

  /** Runtimes for a new config; unchanged experiments keep their runtime (and counts). */
  prepare(specs: readonly ExperimentSpec[]): Map<string, ExperimentRuntime> {
    const next = new Map<string, ExperimentRuntime>();
    for (const spec of specs) {
      const current = this.runtimes.get(spec.id);
      next.set(spec.id, current && current.specKey === JSON.stringify(spec) ? current : this.create(spec));
    }
    return next;
  }

  private create(spec: ExperimentSpec): ExperimentRuntime {
    const rt = new ExperimentRuntime(spec, this.metrics);
    if (this.pooled !== null) rt.setGranted(false);
    rt.tracer = this.holdTracer;
    return rt;
  }

  /** Makes `next` the live set (called after the plan referencing it is swapped in). */
  activate(next: Map<string, ExperimentRuntime>): void {
    for (const [id, rt] of this.runtimes) {
      if (next.get(id) === rt) continue;
      const wasRunning = rt.assigning;
      // Replaced or removed: stop it so held faults do not outlive their definition.
      rt.setState('disabled');
      if (wasRunning) {
        const life = this.lifecycle(id);
        Object.assign(life, {
          endedAt: this.iso(),
          cause: null,
          reason: next.has(id) ? 'its spec changed' : 'removed from the config',
          by: 'config',
        });
        this.emit('run_ended', rt, life);
      }
      rt.releaseHeld();
      this.clearTimer(id);
      if (!next.has(id)) {
        this.event({ type: 'removed', experiment: id });
        this.lifecycles.delete(id);
        this.metrics.experimentState.remove({ experiment: id });
      }
    }
    const previous = this.runtimes;
    this.runtimes = next;
    for (const rt of next.values()) if (previous.get(rt.id) !== rt) this.start(rt);
  }

  /** `fresh`: an operator armed a new run (its running record is already written; check it anyway). */
  private start(rt: ExperimentRuntime, fresh = false): void {
    const saved = this.persisted.experiments[rt.id];
    const life = this.lifecycle(rt.id);
    life.startedBy = saved?.startedBy ?? 'config';
    // A scheduled experiment waits for its window; a killed one stays killed (its schedule is paused
    // until an operator arms it) and one that was running resumes (the scheduler ends it with its window).
    if (
      rt.spec.schedule !== undefined &&
      rt.enabled &&
      saved?.state !== 'killed' &&
      saved?.state !== 'running'
    ) {
      life.startedAt = saved?.startedAt ?? null;
      life.endedAt = saved?.at ?? null;
      this.setState(rt, 'scheduled');
      return;
    }
    if (saved && (saved.state === 'killed' || saved.state === 'expired')) {
      life.startedAt = saved.startedAt ?? null;
      life.endedAt = saved.at;
      life.reason = saved.reason;
      life.by = saved.by;
      life.cause = (saved.state === 'killed' ? (saved.cause ?? 'manual') : null) as KillCause | null;
      life.evidence = saved.evidence ?? null;
      this.setState(rt, saved.state);
      return;
    }
    if (!rt.enabled) {
      this.setState(rt, 'disabled');
      return;
    }
    // Outside its allowed windows a fresh start waits for the next one (the window guard starts it).
    const w = windowsOf(rt.spec);
    if (w !== null && (!saved || fresh) && !w.inside(this.now())) {
      this.toScheduled(rt.id, w.nextOpen(this.now()));
      return;
    }
    // A fresh run checks its steady state first; a resumed one (saved as running) already started.
    const checking = saved && !fresh ? null : (this.gate?.(rt) ?? null);
    if (checking !== null) {
      this.setState(rt, 'pending');
      const seq = ++this.gateSeq;
      this.gating.set(rt, seq);
      void checking.then(
        (refused) => this.gated(rt, seq, refused),
        (err: unknown) =>
          this.gated(rt, seq, { reason: `steady-state check failed: ${String(err)}`, evidence: null }),
      );
      return;
    }
    this.begin(rt, saved);
  }

  /** The gate answered: start, or record why not (unless a reload or kill replaced the run meanwhile). */
  private gated(rt: ExperimentRuntime, seq: number, refused: GateRefusal | null): void {
    if (this.gating.get(rt) !== seq) return;
    this.gating.delete(rt);
    if (this.runtimes.get(rt.id) !== rt || rt.state !== 'pending') return;
    if (refused === null) return this.begin(rt, undefined);
    this.refuseAtGate(rt, refused);
  }

  /** A run the steady-state gate refused: `blocked`, with the probes' evidence, and not persisted. */
  private refuseAtGate(rt: ExperimentRuntime, refused: GateRefusal): void {
    const life = this.lifecycle(rt.id);
    Object.assign(life, {
      endedAt: new Date(this.now()).toISOString(),
      reason: refused.reason,
      by: 'steady_state',
    });
    life.evidence = refused.evidence;
    this.setState(rt, 'blocked');
    // Not persisted as a run: a restart (or an arm) checks the steady state again.
    if (this.persisted.experiments[rt.id]?.state === 'running') {
      delete this.persisted.experiments[rt.id];
      this.persist();
    }
    this.event({
      type: 'not_started',
      experiment: rt.id,
      reason: refused.reason,
      by: 'steady_state',
      evidence: refused.evidence,
    });
    log('warn', 'experiment not started: steady state not met', {
      experiment: rt.id,
      reason: refused.reason,
    });
  }

  private begin(rt: ExperimentRuntime, saved: PersistedState['experiments'][string] | undefined): void {
    const life = this.lifecycle(rt.id);
    const now = this.now();
    const startedAt = saved?.startedAt ?? new Date(now).toISOString();
    life.startedAt = startedAt;
    this.setState(rt, rt.dryRun ? 'dry_run' : 'running');
    if (!saved) {
      this.persisted.experiments[rt.id] = { state: 'running', reason: '', by: '', at: startedAt, startedAt };
      this.persist();
    }
    this.event({ type: 'started', experiment: rt.id });
    this.startDuration(rt, startedAt);
  }

  /** `duration` counts from the run's recorded start (a restart, or a fleet's first replica). */
  private startDuration(rt: ExperimentRuntime, startedAt: string): void {
    const durationMs = rt.durationMs;
    if (durationMs === undefined) return;
    const now = this.now();
    const endsAt = Date.parse(startedAt) + durationMs;
    this.clearTimer(rt.id);
    this.lifecycle(rt.id).endsAt = new Date(endsAt).toISOString();
    // Restarted after its duration ran out: it ends now, before any request is assigned.
    if (endsAt <= now) return this.expire(rt.id);
    const timer = setTimeout(() => this.expire(rt.id), endsAt - now);
    timer.unref();
    this.timers.set(rt.id, timer);
  }

  /**
   * Fleet: the running run's start as the fleet recorded it (another replica started it first); the
   * duration counts from there. Counts and evidence stay (the fleet re-pools them under that run).
   */
  adoptStart(id: string, rec: PersistedExperiment): void {
    const rt = this.runtimes.get(id);
    if (!rt?.assigning || rec.state !== 'running' || rec.startedAt === undefined) return;
    this.persisted.experiments[id] = { ...rec };
    const life = this.lifecycle(id);
    life.startedAt = rec.startedAt;
    life.startedBy = rec.startedBy ?? life.startedBy;
    if (rt.spec.schedule === undefined) this.startDuration(rt, rec.startedAt);
  }

  private setState(rt: ExperimentRuntime, state: ExperimentState): void {
    rt.setState(state);
    this.lifecycle(rt.id).state = state;
    for (const s of STATE_NAMES)
      this.metrics.experimentState.set({ experiment: rt.id, state: s }, s === state ? 1 : 0);
  }

  private lifecycle(id: string): Lifecycle {
    let life = this.lifecycles.get(id);
    if (!life) {
      life = {
        state: 'pending',
        startedAt: null,
        startedBy: null,
        endsAt: null,
        nextStartAt: null,
        endedAt: null,
        cause: null,
        reason: null,
        by: null,
        evidence: null,
        timeline: [],
      };
      this.lifecycles.set(id, life);
    }
    return life;
  }

  private clearTimer(id: string): void {
    const t = this.timers.get(id);
    if (t) clearTimeout(t);
    this.timers.delete(id);
  }

  private expire(id: string): void {
    this.complete(id, 'duration elapsed');
  }

  /** End a running experiment as having run its course (verdict from the evidence so far). */
  complete(id: string, reason: string): void {
    const rt = this.runtimes.get(id);
    if (!rt || !rt.assigning) return;
    this.end(rt, 'expired', null, reason, 'duration', null);
  }

  /** Kill one experiment: no request is assigned after this returns; held faults are released. */
  kill(id: string, cause: KillCause, reason: string, by: string, evidence: unknown = null): boolean {
    const rt = this.runtimes.get(id);
    // A run still being checked (pending at the steady-state gate) can be killed before it starts.
    if (!rt || (!rt.assigning && rt.state !== 'pending')) return false;
    this.end(rt, 'killed', cause, reason, by, evidence);
    this.metrics.killSwitchTrips.inc({ experiment: id, reason: cause });
    return true;
  }

  killAll(cause: KillCause, reason: string, by: string): string[] {
    const killed: string[] = [];
    for (const id of this.runtimes.keys()) if (this.kill(id, cause, reason, by)) killed.push(id);
    return killed;
  }

  private end(
    rt: ExperimentRuntime,
    state: 'killed' | 'expired',
    cause: KillCause | null,
    reason: string,
    by: string,
    evidence: unknown,
  ): void {
    this.setState(rt, state);
    rt.releaseHeld();
    this.clearTimer(rt.id);
    const life = this.lifecycle(rt.id);
    const at = this.iso();
    Object.assign(life, { endedAt: at, cause, reason, by, evidence });
    this.persisted.experiments[rt.id] = {
      state,
      reason,
      by,
      at,
      evidence,
      ...(cause ? { cause } : {}),
      ...(life.startedAt ? { startedAt: life.startedAt } : {}),
      ...(life.startedBy ? { startedBy: life.startedBy } : {}),
    };
    this.persist();
    this.emit('run_ended', rt, life);
    const ev: Omit<ExperimentEvent, 'at'> =
      state === 'killed'
        ? { type: 'killed', experiment: rt.id, cause: cause ?? 'manual', reason, by, evidence }
        : { type: 'expired', experiment: rt.id, reason };
    this.event(ev);
    const health = controlHealth(rt);
    if (health.status === 'unhealthy')
      this.event({ type: 'control_unhealthy', experiment: rt.id, reason: health.detail, evidence: health });
    log(state === 'killed' ? 'warn' : 'info', `experiment ${state}`, {
      experiment: rt.id,
      cause,
      reason,
      by,
      evidence,
    });
  }

  /**
   * Re-arm a killed or expired experiment: explicit operator action, starts a fresh run. Fails closed:
   * the state file is written first and the experiment only runs once that is durable (a kill record
   * still on disk after an arm in memory is the safe way round; the reverse would not be).
   * Returns false when the experiment is not armable; throws when the state could not be written.
   */
  async arm(id: string, by: string): Promise<boolean> {
    const armable = (rt: ExperimentRuntime | undefined): rt is ExperimentRuntime =>
      rt !== undefined && !rt.assigning && rt.state !== 'pending' && rt.enabled;
    if (!armable(this.runtimes.get(id))) return false;
    const startedAt = this.iso();
    const scheduled = this.runtimes.get(id)?.spec.schedule !== undefined;
    const w = windowsOf(this.runtimes.get(id)!.spec);
    if (!scheduled && w !== null && !w.inside(this.now())) {
      const open = w.nextOpen(this.now());
      throw new FaultlineError(
        'FL_OUTSIDE_WINDOW',
        `experiment "${id}" was not armed: it may run only inside its windows (${w.describe()}); the next opens at ${open === null ? 'no time within a year' : new Date(open).toISOString()}`,
      );
    }
    // Arming a scheduled experiment resumes its schedule: it waits for the next window, not runs now.
    const entry = scheduled
      ? ({
          state: 'expired',
          reason: `schedule resumed by ${by}`,
          by,
          at: startedAt,
          // The last run's start stays: the rotation picks the member after the one that ran last.
          ...(this.lifecycles.get(id)?.startedAt
            ? { startedAt: this.lifecycles.get(id)?.startedAt as string }
            : {}),
        } as const)
      : // `by` marks an operator's arm: in a fleet only an arm may replace a kill (a replica's own start may not).
        ({
          state: 'running',
          reason: '',
          by: by || 'operator',
          at: startedAt,
          startedAt,
          startedBy: by,
        } as const);
    await this.saveWith(id, entry);
    // Re-checked after the write: a reload or a concurrent arm may have come first.
    const rt = this.runtimes.get(id);
    // In a fleet this arm may already be in force: our own published record came back first.
    if (rt?.assigning && this.persisted.experiments[id]?.startedAt === startedAt) return true;
    if (!armable(rt)) return false;
    this.persisted.experiments[id] = { ...entry };
    // Same runtime object (the routing plan references it), fresh counts and evidence.
    rt.resetRun(rt.newAnalyzer());
    const life = this.lifecycle(id);
    Object.assign(life, { endsAt: null, endedAt: null, cause: null, reason: null, by: null, evidence: null });
    // A scheduled one waits (the scheduler hears `armed` and sets its next start).
    if (scheduled) this.setState(rt, 'scheduled');
    this.event({ type: 'armed', experiment: id, by });
    if (!scheduled) this.start(rt, true);
    return true;
  }

  /**
   * Schedule hook: starts a fresh run of an experiment waiting in `scheduled` (durable first, as arm),
   * ending at `endsAtMs` (the scheduler's timer ends it). False when it is not waiting.
   */
  async startRun(id: string, by: string, endsAtMs: number, startedAtMs?: number): Promise<boolean> {
    const gated = this.runtimes.get(id);
    if (gated?.state !== 'scheduled') return false;
    // A run a schedule or a window starts passes the same steady-state gate as the config's start:
    // `before` probes must hold before anything is injected.
    const checking = this.gate?.(gated) ?? null;
    if (checking !== null) {
      this.setState(gated, 'pending');
      const refused = await checking.catch((err: unknown): GateRefusal => ({
        reason: `steady-state check failed: ${String(err)}`,
        evidence: null,
      }));
      const after = this.runtimes.get(id);
      // A reload or a kill while the probes ran replaced or ended this run: it does not start.
      if (after !== gated || after.state !== 'pending') return false;
      if (refused !== null) {
        this.refuseAtGate(gated, refused);
        return false;
      }
      this.setState(gated, 'scheduled');
    }
    // A schedule passes its window's opening: every replica of a fleet names the same run.
    const startedAt = new Date(startedAtMs ?? this.now()).toISOString();
    // `by` set: in a fleet the run's record replaces the previous run's end (the merge takes an end
    // over only for a start someone decided: an operator, or the fleet's one claim of the window).
    const entry = { state: 'running', reason: '', by, at: startedAt, startedAt, startedBy: by } as const;
    await this.saveWith(id, entry);
    const rt = this.runtimes.get(id);
    if (rt?.state !== 'scheduled') return false;
    this.persisted.experiments[id] = { ...entry };
    rt.resetRun(rt.newAnalyzer());
    const life = this.lifecycle(id);
    Object.assign(life, {
      startedAt,
      startedBy: by,
      endsAt: new Date(endsAtMs).toISOString(),
      nextStartAt: null,
      endedAt: null,
      cause: null,
      reason: null,
      by: null,
      evidence: null,
    });
    this.setState(rt, rt.dryRun ? 'dry_run' : 'running');
    this.event({ type: 'started', experiment: id, by });
    return true;
  }

  /** Schedule hook: an experiment between runs waits for `nextStartMs` (null: paused or none). */
  toScheduled(id: string, nextStartMs: number | null): void {
    const rt = this.runtimes.get(id);
    if (!rt || rt.assigning || rt.state === 'killed' || rt.state === 'disabled') return;
    const life = this.lifecycle(id);
    const next = nextStartMs === null ? null : new Date(nextStartMs).toISOString();
    if (rt.state === 'scheduled' && life.nextStartAt === next) return;
    life.nextStartAt = next;
    this.setState(rt, 'scheduled');
    this.event({
      type: 'scheduled',
      experiment: id,
      reason: next ? `next run at ${next}` : 'no window ahead',
    });
  }

  /** Schedule hook: says in the event stream why a schedule will not start runs. */
  schedulePaused(id: string, reason: string): void {
    this.lifecycle(id).nextStartAt = null;
    this.event({ type: 'schedule_paused', experiment: id, reason });
  }

  /**
   * Feed one outcome observed at the splitting hop to the experiment's analyzer; a breach kills the
   * experiment before the next request is assigned.
   */
  observe(
    rt: ExperimentRuntime,
    arm: Arm,
    outcome: Outcome,
    latencyMs: number,
    injected: boolean,
    sessionKey: number,
  ): void {
    if (!rt.assigning || outcome === OUTCOME_CLIENT_ABORT) return;
    if (injected && rt.excludeInjected) {
      // Judge what the fault caused, not the fault itself (each fault declares which is which): an
      // injected error or reset is the fault, and so is an injected delay, but the errors and timeouts
      // a delay provokes are consequences.
      if (rt.fault.judging === 'skip') return;
      latencyMs = -1;
    }
    const bad = outcome !== OUTCOME_OK;
    if (this.pooled !== null) {
      this.pooled.observe(rt, arm === ARM_CANARY, bad, outcome === OUTCOME_TIMEOUT, latencyMs, sessionKey);
      return;
    }
    const breach = rt.analyzer.record(
      arm === ARM_CANARY ? 'canary' : 'control',
      bad,
      outcome === OUTCOME_TIMEOUT,
      latencyMs,
      rt.stickyKind === null ? undefined : sessionKey,
    );
    if (breach !== null)
      this.kill(rt.id, 'guardrail', breach.reason, 'guardrail', { ...breach, at: this.iso() });
  }

  /**
   * A state decided elsewhere in the fleet (another replica's kill, expiry or arm), applied here as it
   * was recorded: no new trip is counted and the write that follows is a no-op for the fleet.
   */
  adopt(id: string, rec: PersistedExperiment): void {
    const rt = this.runtimes.get(id);
    const cur = this.persisted.experiments[id];
    if (rec.state === 'running') {
      // A re-arm elsewhere: an operator's (`by` set) run that started after the one that ended here.
      // A running record nobody armed is a replica that started from its config knowing of no end
      // (booted cut off, or after Redis lost its records): never a permission to inject again.
      if (!rt || rt.assigning || !rt.enabled || cur === undefined || cur.state === 'running') return;
      if ((rec.by ?? '') === '') return;
      if (rec.startedAt === undefined || (cur.startedAt !== undefined && rec.startedAt <= cur.startedAt))
        return;
      this.persisted.experiments[id] = { ...rec };
      void this.store.save(structuredClone(this.persisted)).catch(() => undefined);
      rt.resetRun(rt.newAnalyzer());
      const life = this.lifecycle(id);
      Object.assign(life, {
        endsAt: null,
        endedAt: null,
        cause: null,
        reason: null,
        by: null,
        evidence: null,
      });
      this.event({ type: 'armed', experiment: id, by: rec.by || 'fleet' });
      this.start(rt);
      return;
    }
    if (!rt || !rt.assigning) {
      // Not running here: remember the end so a later start of this experiment starts killed.
      if (cur === undefined || cur.state === 'running') this.persisted.experiments[id] = { ...rec };
      return;
    }
    // The end of another run: stale when this replica runs an armed run; when it runs one it merely
    // started (booted while cut off from the fleet), the fleet's end wins.
    const startedAt = this.lifecycle(id).startedAt;
    const armedHere = (cur?.by ?? '') !== '';
    if (rec.startedAt !== undefined && startedAt !== null && rec.startedAt !== startedAt && armedHere) return;
    this.end(
      rt,
      rec.state,
      (rec.cause ?? (rec.state === 'killed' ? 'manual' : null)) as KillCause | null,
      rec.reason,
      rec.by,
      rec.evidence ?? null,
    );
  }

  get(id: string): ExperimentRuntime | undefined {
    return this.runtimes.get(id);
  }

  all(): IterableIterator<ExperimentRuntime> {
    return this.runtimes.values();
  }

  lifecycleOf(id: string): Lifecycle | undefined {
    return this.lifecycles.get(id);
  }

  /** An event from outside the table (probe results, ramp steps): timeline, listeners, webhook. */
  note(e: Omit<ExperimentEvent, 'at'>): void {
    this.event(e);
  }

  recordConfigEvent(type: 'config_reloaded' | 'config_invalid', reason?: string): void {
    this.event(reason !== undefined ? { type, reason } : { type });
  }

  private event(e: Omit<ExperimentEvent, 'at'>): void {
    const ev: ExperimentEvent = { at: this.iso(), ...e };
    if (ev.experiment) this.lifecycle(ev.experiment).timeline.push(ev);
    this.emit('event', ev);
  }

  private persist(): void {
    // Failures are logged by the store; an in-memory kill stays in force either way.
    this.track(this.store.save(structuredClone(this.persisted)));
  }

  /**
   * Writes the state with `entry` for `id` and resolves once it is durable (throws if it is not);
   * the memory state changes only after, so a start never runs ahead of its record (arm, startRun).
   */
  private async saveWith(id: string, entry: PersistedExperiment): Promise<void> {
    const next = structuredClone(this.persisted);
    next.experiments[id] = { ...entry };
    const saved = this.store.save(next);
    this.track(saved);
    await saved;
  }

  private track(saved: Promise<void>): void {
    this.lastSave = saved.then(
      () => null,
      (err: unknown) => err as Error,
    );
  }

  async flush(): Promise<void> {
    await this.store.flush();
  }

  /** Requests held by faults right now (a reload keeps the resources they will need). */
  heldTargets(): HeldTarget[] {
    const out: HeldTarget[] = [];
    for (const rt of this.runtimes.values()) for (const t of rt.held) out.push(t);
    return out;
  }

  /**
   * Waits for the queued writes; the error of the latest one if it failed (the state on disk is not
   * the state in memory). `retry` writes once more after a failure (an operator repeating a kill).
   */
  async persistError(retry = false): Promise<Error | null> {
    const err = await this.lastSave;
    if (err === null || !retry) return err;
    this.persist();
    return this.lastSave;
  }

  /** Shutting down: start no new faults (not persisted: a restart resumes) and release held ones. */
  stop(): void {
    for (const id of [...this.timers.keys()]) this.clearTimer(id);
    for (const rt of this.runtimes.values()) {
      rt.injecting = false;
      rt.releaseHeld();
    }
  }
}
