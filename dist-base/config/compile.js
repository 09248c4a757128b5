export function compileListenerPlans(cfg, pools, metrics, experiments) {
    const plans = new Map();
    for (const l of cfg.listeners)
        plans.set(l.name, compileListener(cfg, l, pools, metrics, experiments));
    return plans;
}
function compileListener(cfg, l, pools, metrics, experiments) {
    const all = [...experiments.values()];
    const routes = l.routes.map((r) => Object.freeze({
        name: r.name,
        listener: l.name,
        pathPrefix: r.path_prefix,
        host: r.host?.toLowerCase() ?? null,
        upstream: r.upstream,
        upstreamProtocol: r.upstream_protocol,
        pool: pools.get(r),
        timeoutMs: r.timeout_ms,
        experiments: Object.freeze(all.filter((e) => (e.matcher.listener === null || e.matcher.listener === l.name) &&
            (e.matcher.route === null || e.matcher.route === r.name))),
        requestCounters: [],
        duration: metrics.requestDuration.labels(l.name, r.name),
        upstreamErrors: new Map(),
        metrics,
    }));
    return Object.freeze({
        name: l.name,
        trustAssignment: l.trust_assignment,
        routes: Object.freeze(routes),
        hostRouting: routes.some((r) => r.host !== null),
        injectedHeader: cfg.injected_header,
        armHeader: cfg.arm_header,
        accessLog: cfg.access_log,
        experimentsById: experiments,
    });
}
/** Fields of a listener that a reload cannot change without rebinding its socket. */
export function listenerBindingKey(l) {
    return JSON.stringify([l.address, l.port, l.protocol, l.tls ?? null]);
}
//# sourceMappingURL=compile.js.map