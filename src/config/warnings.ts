/**
 * Configs that are valid but will not do what their author most likely wants. Reported (validate,
 * start, reload), never rejected: the issue's own examples rely on the defaults involved.
 */
import type { ConfigIssue } from '../errors.js';
import { compileFault } from '../faults/registry.js';
import { formatPath } from './load.js';
import type { ConfigSpec } from './schema.js';

export function configWarnings(cfg: ConfigSpec): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  cfg.experiments.forEach((e, i) => {
    // A fault whose injected responses are not judged at all, on every canary request.
    const answersEveryCanary = compileFault(e.fault).judging === 'skip' && e.fault.percent >= 100;
    if (e.inject === 'here' && e.exclude_injected && answersEveryCanary && !e.dry_run)
      out.push({
        path: formatPath(['experiments', i, 'fault', 'percent']),
        reason:
          'every canary request is answered by the fault at this hop and exclude_injected drops those, so the guardrails have nothing to judge (the verdict can only be inconclusive): set fault.percent below 100, inject: downstream, or exclude_injected: false',
      });
  });
  return out;
}
