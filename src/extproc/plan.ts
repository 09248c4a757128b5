/**
 * The compiled plan of the ext_proc host: the candidates and settings one ProcessingRequest stream
 * reads. Rebuilt on every config load; the server holds a ref and reads `plan` per stream, so a reload
 * swaps it without touching streams in flight.
 */
import type { ConfigSpec } from '../config/schema.js';
import type { ExperimentRuntime } from '../experiments/runtime.js';
import type { DecidePoint } from '../split/assign.js';
import { ARM_CANARY, ARM_CONTROL } from '../core/vocab.js';
import { encodeHeadersReply, KIND_REQUEST_HEADERS } from './codec.js';

export interface ExtProcPlan extends DecidePoint {
  /** Experiments that name this ext_proc in match.listener, in config order. */
  readonly candidates: readonly ExperimentRuntime[];
  readonly maxHoldMs: number;
  readonly envoyFaultHeaders: boolean;
  /** Header mutations carry raw_value (Envoy >= 1.27) rather than value. */
  readonly rawValue: boolean;
  readonly injectedHeader: boolean;
  readonly armHeader: boolean;
  /**
   * Per candidate, by arm: the request_headers CONTINUE that writes the assignment's baggage (the
   * reply of every assigned request without incoming baggage), encoded once per config load.
   */
  readonly continueWithBaggage: ReadonlyMap<ExperimentRuntime, readonly (Buffer | undefined)[]>;
}

export interface ExtProcRef {
  plan: ExtProcPlan;
}

export function compileExtProcPlan(
  cfg: ConfigSpec,
  experiments: ReadonlyMap<string, ExperimentRuntime>,
): ExtProcPlan | null {
  const x = cfg.ext_proc;
  if (x === undefined) return null;
  const rawValue = x.header_value_field === 'raw_value';
  // Named explicitly, as points are: an experiment without match.listener is a proxy experiment
  // and may carry faults (throttle, truncate) that ext_proc cannot inject.
  const candidates = [...experiments.values()].filter((e) => e.matcher.listener === x.name);
  const continueWithBaggage = new Map<ExperimentRuntime, (Buffer | undefined)[]>();
  for (const e of candidates)
    continueWithBaggage.set(
      e,
      [ARM_CANARY, ARM_CONTROL].reduce<(Buffer | undefined)[]>((a, arm) => {
        const set = ['baggage', e.baggageMembers[arm] as string];
        a[arm] = encodeHeadersReply(KIND_REQUEST_HEADERS, { set, remove: [], rawValue });
        return a;
      }, []),
    );
  return Object.freeze({
    name: x.name,
    trustAssignment: x.trust_assignment,
    experimentsById: experiments,
    candidates: Object.freeze(candidates),
    maxHoldMs: x.max_hold_ms,
    envoyFaultHeaders: x.envoy_fault_headers,
    rawValue,
    injectedHeader: cfg.injected_header,
    armHeader: cfg.arm_header,
    continueWithBaggage,
  });
}

/** Fields of ext_proc that a reload cannot change without rebinding its socket. */
export function extProcBindingKey(cfg: ConfigSpec): string {
  const x = cfg.ext_proc;
  return x === undefined ? 'none' : JSON.stringify([x.name, x.address, x.port]);
}
