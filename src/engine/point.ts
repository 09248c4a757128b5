/**
 * The compiled plan of one in-process point (createFaultline): the protocol-neutral twin of a proxy
 * listener's plan. Rebuilt on every config load; hosts hold a PointRef and read `plan` per call, so a
 * reload swaps it without rewrapping handlers.
 */
import type { ExperimentRuntime } from '../experiments/runtime.js';
import type { DecidePoint } from '../split/assign.js';
import type { PointTraffic } from '../telemetry/point-traffic.js';

export interface PointPlan extends DecidePoint {
  readonly name: string;
  readonly role: 'inbound' | 'outbound';
  /** Experiments that may match calls at this point, in config order. */
  readonly candidates: readonly ExperimentRuntime[];
  /** Mark injected responses (x-faultline-injected) and arms (x-faultline-arm), as listeners do. */
  readonly injectedHeader: boolean;
  readonly armHeader: boolean;
  /** Inbound points a `traffic` probe watches: every request is counted here (src/probes); else null. */
  readonly traffic: PointTraffic | null;
}

export interface PointRef {
  plan: PointPlan;
}
