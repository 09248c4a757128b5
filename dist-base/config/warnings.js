import { formatPath } from './load.js';
export function configWarnings(cfg) {
    const out = [];
    cfg.experiments.forEach((e, i) => {
        const answersEveryCanary = e.fault.kind !== 'latency' && e.fault.percent >= 100;
        if (e.inject === 'here' && e.exclude_injected && answersEveryCanary && !e.dry_run)
            out.push({
                path: formatPath(['experiments', i, 'fault', 'percent']),
                reason: 'every canary request is answered by the fault at this hop and exclude_injected drops those, so the guardrails have nothing to judge (the verdict can only be inconclusive): set fault.percent below 100, inject: downstream, or exclude_injected: false',
            });
    });
    return out;
}
//# sourceMappingURL=warnings.js.map