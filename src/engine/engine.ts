/**
 * The engine: one object every host calls, with no knowledge of any protocol. A host describes a request
 * (RequestView), keeps the decision in its own per-request object (Assignment), implements FaultTarget,
 * and reports how the request ended; the engine decides, starts faults, counts, judges and kills.
 *
 *   decide(point, candidates, view, slot)   which experiment and arm; inject here or not
 *   inject(target)                          start the drawn fault (only when slot.injectNow)
 *   record(slot, hop, outcome, ...)         counts, metrics, analyzer; a breach kills at once
 *   kill / killAll / arm / get / all / on('event')
 */
import type { Outcome } from '../core/vocab.js';
import type { ExperimentEvent, ExperimentTable, KillCause } from '../experiments/table.js';
import type { ExperimentRuntime } from '../experiments/runtime.js';
import { assign, inherit, type DecidePoint } from '../split/assign.js';
import type { Arm } from '../core/vocab.js';
import type { HoldTracer } from './hold.js';
import type { Assignment, FaultTarget, RequestView } from './target.js';

/**
 * Per-request traces (src/telemetry/tracing.ts). The engine calls it for assigned requests; a host that
 * reports how its untouched requests end (the proxy) may call startUntouched/end for those too.
 */
export interface EngineTracer extends HoldTracer {
  start(slot: Assignment, view: RequestView): void;
  /** An in-process call that took over the assignment of `from` (the inbound request it runs for). */
  inherited(slot: Assignment, view: RequestView, from: Assignment): void;
  /** An untouched request: a span only when `tracing.untouched_sample_ratio` draws it. */
  startUntouched(slot: Assignment, view: RequestView): void;
  injected(t: FaultTarget): void;
  end(slot: Assignment, hop: string, outcome: Outcome, statusClass: number, grpcCode: number): void;
}

export class Engine {
  readonly table: ExperimentTable;
  /** Null unless `tracing.enabled`: the untraced path pays one comparison. */
  tracer: EngineTracer | null = null;

  constructor(table: ExperimentTable) {
    this.table = table;
  }

  /** Decide one request; writes into `slot` only when the request takes part in an experiment. */
  decide(
    point: DecidePoint,
    candidates: readonly ExperimentRuntime[],
    view: RequestView,
    slot: Assignment,
  ): void {
    assign(point, candidates, view, slot);
    if (this.tracer !== null && slot.exp !== null) this.tracer.start(slot, view);
  }

  /**
   * Take over an assignment made earlier in this process (in-process context propagation). With `view`
   * and `from` (the inbound request's slot) a traced inbound request gets a child span for the call.
   */
  inherit(
    point: DecidePoint,
    slot: Assignment,
    exp: ExperimentRuntime,
    arm: Arm,
    runId: number,
    view?: RequestView,
    from?: Assignment,
  ): void {
    if (!exp.assigning) return;
    inherit(point, slot, exp, arm, runId);
    if (this.tracer !== null && view !== undefined && from !== undefined)
      this.tracer.inherited(slot, view, from);
  }

  /** Start the drawn fault on a request the decision marked `injectNow`. */
  inject(t: FaultTarget): void {
    const exp = t.exp as ExperimentRuntime;
    t.injected = true;
    exp.injectedCounter.inc();
    if (this.tracer !== null) this.tracer.injected(t);
    exp.fault.start(t);
  }

  /**
   * How an assigned request ended, seen at `hop` (a listener or point name). `statusClass` indexes
   * STATUS_CLASSES; `grpcCode` indexes GRPC_CODE_LABELS (grpcCodeIndex: 0 when not gRPC).
   */
  record(
    slot: Assignment,
    hop: string,
    outcome: Outcome,
    statusClass: number,
    grpcCode: number,
    latencyMs: number,
  ): void {
    const exp = slot.exp;
    if (exp === null) return;
    exp.recordOutcome(hop, slot.arm, outcome, statusClass, grpcCode, latencyMs, slot.injected, slot.observe);
    if (this.tracer !== null) this.tracer.end(slot, hop, outcome, statusClass, grpcCode);
    if (slot.observe && slot.runId === exp.runId)
      this.table.observe(exp, slot.arm, outcome, latencyMs, slot.injected, slot.sessionKey);
  }

  kill(
    id: string,
    reason: string,
    by: string,
    cause: KillCause = 'manual',
    evidence: unknown = null,
  ): boolean {
    return this.table.kill(id, cause, reason, by, evidence);
  }

  killAll(reason: string, by: string, cause: KillCause = 'manual'): string[] {
    return this.table.killAll(cause, reason, by);
  }

  arm(id: string, by: string): Promise<boolean> {
    return this.table.arm(id, by);
  }

  get(id: string): ExperimentRuntime | undefined {
    return this.table.get(id);
  }

  all(): IterableIterator<ExperimentRuntime> {
    return this.table.all();
  }

  on(listener: (e: ExperimentEvent) => void): void {
    this.table.on('event', listener);
  }

  off(listener: (e: ExperimentEvent) => void): void {
    this.table.off('event', listener);
  }
}
