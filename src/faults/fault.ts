/**
 * The fault contract (Toxiproxy's `Pipe` habit: one small interface, one module per fault, the draw made
 * once outside the fault). A fault receives a canary request at the injecting hop as a `FaultTarget` and
 * owns it until it forwards it, answers it or resets it; it never sees the host's protocol objects.
 * How to add one: src/faults/README.md.
 */
import type { FaultSpec } from '../config/schema.js';
import type { Outcome } from '../core/vocab.js';
import type { FaultTarget, ResponseHeaders } from '../engine/target.js';

/** Every fault kind, derived from the config schema's tagged union. */
export type FaultKind = FaultSpec['kind'];
/** The config of one fault kind. */
export type FaultSpecOf<K extends FaultKind> = Extract<FaultSpec, { kind: K }>;

/**
 * What the analyzer judges of a request the fault was injected into, when the experiment keeps
 * `exclude_injected: true` (the default):
 * - `skip`: nothing. The response *is* the fault (an injected 503, a reset): counting it would only
 *   measure the fault.
 * - `consequences`: the outcome (errors and timeouts the fault provoked downstream of it) but not the
 *   latency, which the fault sets itself (an injected delay, a throttled body).
 */
export type JudgingPolicy = 'skip' | 'consequences';

export interface Fault {
  readonly kind: FaultKind;
  readonly judging: JudgingPolicy;
  /**
   * The outcome of a request whose caller gave up while this fault held it. A timeout fault simulates
   * exactly that (OUTCOME_TIMEOUT); for others it is a client abort.
   */
  readonly callerLeftDuringHold: Outcome;
  /**
   * Envoy's response flag for an injected request, for access logs that existing pipelines classify:
   * `DI` (delay injected) when the fault delays or slows an answer, `FI` (fault injected) when it
   * answers, cuts or drops it itself.
   */
  readonly responseFlag: 'FI' | 'DI';
  /** The fault ends the request with no answer at all (a reset, a hang): hosts that can only answer refuse it. */
  readonly dropsRequest: boolean;
  /** The request-leg hold this fault always takes, in ms (0: none, or a random one): hosts bound it. */
  readonly fixedHoldMs: number;
  /** Start the fault on this canary request. */
  start(t: FaultTarget): void;
  /**
   * A hold the fault started (hold or holdResponse) has ended: its timer fired (released = false), or
   * the experiment was killed and the request is let go at once (released = true: forward, answer or
   * stream on; never keep waiting).
   */
  holdEnded(t: FaultTarget, released: boolean): void;
  /**
   * Response leg (optional): called for an injected request when the response head arrives, before the
   * host sends it on; the fault may keep it back (t.holdResponse).
   */
  onResponseStart?(t: FaultTarget, status: number, headers: ResponseHeaders): void;
  /** Response leg: one body chunk; the fault writes it (t.writeResponseData) now, later or in part. */
  onResponseData?(t: FaultTarget, chunk: Buffer): void;
  /** Response leg: the body ended; the fault ends it (t.endResponse) or breaks it (t.breakResponse). */
  onResponseEnd?(t: FaultTarget): void;
}

/** The fault acts on the response's bytes: only hosts that carry them (proxy, undici) can inject it. */
export function actsOnResponse(f: Fault): boolean {
  return f.onResponseStart !== undefined || f.onResponseData !== undefined || f.onResponseEnd !== undefined;
}

/** A rule between a fault's own fields that the schema's field types cannot say (path under `fault`). */
export interface FaultIssue {
  path: string[];
  message: string;
}

/**
 * How a ramp (src/probes/ramp.ts) turns a fault up: the field it steps, in which unit, and which way is
 * more intense. A fault without one ramps its `percent` (the share of canary requests that get it).
 */
export interface Intensity<K extends FaultKind> {
  readonly unit: string;
  /** More intense is a smaller value (less bandwidth), not a larger one. */
  readonly decreasing: boolean;
  /** The spec at intensity `m`. */
  at(spec: FaultSpecOf<K>, m: number): FaultSpecOf<K>;
  /** Steps (or a spec) this fault cannot ramp, as issues under `ramp`. */
  check(spec: FaultSpecOf<K>, steps: readonly number[]): FaultIssue[];
}
