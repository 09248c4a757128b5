/** The response marks of the in-process hosts, as the proxy's (x-faultline-injected, x-faultline-arm). */
import { HEADER_ARM, HEADER_INJECTED } from '../core/vocab.js';
import type { PointPlan } from '../engine/point.js';
import type { Assignment } from '../engine/target.js';

export function addMarks(plan: PointPlan, a: Assignment, out: Record<string, string | number>): void {
  const exp = a.exp;
  if (exp === null) return;
  if (a.injected && plan.injectedHeader) out[HEADER_INJECTED] = exp.injectedMark;
  const arm = plan.armHeader ? exp.armMarks[a.arm] : null;
  if (arm) out[HEADER_ARM] = arm;
}
