/**
 * Every experiment of the running config and its lifecycle: state transitions (running, killed,
 * expired, disabled, dry_run), the persisted kill switch, duration timers, the analyzer's verdicts and
 * the event stream. A kill flips the hot-path flags synchronously; persisting follows asynchronously.
 */
import { EventEmitter } from 'node:events';
import { ExperimentAnalyzer } from '../stats/analyzer.js';
import { log } from '../telemetry/log.js';
import { ARM_CANARY, ExperimentRuntime, OUTCOME_CLIENT_ABORT, OUTCOME_OK, OUTCOME_TIMEOUT, } from './runtime.js';
const STATE_NAMES = [
    'pending',
    'running',
    'killed',
    'expired',
    'disabled',
    'dry_run',
];
export class ExperimentTable extends EventEmitter {
    runtimes = new Map();
    lifecycles = new Map();
    timers = new Map();
    persisted = { version: 1, experiments: {} };
    store;
    metrics;
    constructor(store, metrics) {
        super();
        this.store = store;
        this.metrics = metrics;
    }
    async init() {
        this.persisted = await this.store.load();
    }
    /** Runtimes for a new config; unchanged experiments keep their runtime (and counts). */
    prepare(specs) {
        const next = new Map();
        for (const spec of specs) {
            const current = this.runtimes.get(spec.id);
            next.set(spec.id, current && current.specKey === JSON.stringify(spec) ? current : this.create(spec));
        }
        return next;
    }
    create(spec) {
        return new ExperimentRuntime(spec, this.metrics, newAnalyzer(spec));
    }
    /** Makes `next` the live set (called after the plan referencing it is swapped in). */
    activate(next) {
        for (const [id, rt] of this.runtimes) {
            if (next.get(id) === rt)
                continue;
            // Replaced or removed: stop it so held faults do not outlive their definition.
            rt.setState('disabled');
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
        for (const rt of next.values())
            if (previous.get(rt.id) !== rt)
                this.start(rt);
    }
    start(rt) {
        const saved = this.persisted.experiments[rt.id];
        const life = this.lifecycle(rt.id);
        if (saved && (saved.state === 'killed' || saved.state === 'expired')) {
            life.startedAt = saved.startedAt ?? null;
            life.endedAt = saved.at;
            life.reason = saved.reason;
            life.by = saved.by;
            life.cause = (saved.state === 'killed' ? (saved.cause ?? 'manual') : null);
            life.evidence = saved.evidence ?? null;
            this.setState(rt, saved.state);
            return;
        }
        if (!rt.spec.enabled) {
            this.setState(rt, 'disabled');
            return;
        }
        const now = Date.now();
        const startedAt = saved?.startedAt ?? new Date(now).toISOString();
        life.startedAt = startedAt;
        this.setState(rt, rt.spec.dry_run ? 'dry_run' : 'running');
        if (!saved) {
            this.persisted.experiments[rt.id] = { state: 'running', reason: '', by: '', at: startedAt, startedAt };
            void this.persist();
        }
        this.event({ type: 'started', experiment: rt.id });
        const durationMs = rt.spec.duration;
        if (durationMs !== undefined) {
            const endsAt = Date.parse(startedAt) + durationMs;
            life.endsAt = new Date(endsAt).toISOString();
            // Restarted after its duration ran out: it ends now, before any request is assigned.
            if (endsAt <= now)
                return this.expire(rt.id);
            const timer = setTimeout(() => this.expire(rt.id), endsAt - now);
            timer.unref();
            this.timers.set(rt.id, timer);
        }
    }
    setState(rt, state) {
        rt.setState(state);
        this.lifecycle(rt.id).state = state;
        for (const s of STATE_NAMES)
            this.metrics.experimentState.set({ experiment: rt.id, state: s }, s === state ? 1 : 0);
    }
    lifecycle(id) {
        let life = this.lifecycles.get(id);
        if (!life) {
            life = {
                state: 'pending',
                startedAt: null,
                endsAt: null,
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
    clearTimer(id) {
        const t = this.timers.get(id);
        if (t)
            clearTimeout(t);
        this.timers.delete(id);
    }
    expire(id) {
        this.complete(id, 'duration elapsed');
    }
    /** End a running experiment as having run its course (verdict from the evidence so far). */
    complete(id, reason) {
        const rt = this.runtimes.get(id);
        if (!rt || !rt.assigning)
            return;
        this.end(rt, 'expired', null, reason, 'duration', null);
    }
    /** Kill one experiment: no request is assigned after this returns; held faults are released. */
    kill(id, cause, reason, by, evidence = null) {
        const rt = this.runtimes.get(id);
        if (!rt || !rt.assigning)
            return false;
        this.end(rt, 'killed', cause, reason, by, evidence);
        this.metrics.killSwitchTrips.inc({ experiment: id, reason: cause });
        return true;
    }
    killAll(cause, reason, by) {
        const killed = [];
        for (const id of this.runtimes.keys())
            if (this.kill(id, cause, reason, by))
                killed.push(id);
        return killed;
    }
    end(rt, state, cause, reason, by, evidence) {
        this.setState(rt, state);
        rt.releaseHeld();
        this.clearTimer(rt.id);
        const life = this.lifecycle(rt.id);
        const at = new Date().toISOString();
        Object.assign(life, { endedAt: at, cause, reason, by, evidence });
        this.persisted.experiments[rt.id] = {
            state,
            reason,
            by,
            at,
            evidence,
            ...(cause ? { cause } : {}),
            ...(life.startedAt ? { startedAt: life.startedAt } : {}),
        };
        void this.persist();
        const ev = state === 'killed'
            ? { type: 'killed', experiment: rt.id, cause: cause ?? 'manual', reason, by, evidence }
            : { type: 'expired', experiment: rt.id, reason };
        this.event(ev);
        log(state === 'killed' ? 'warn' : 'info', `experiment ${state}`, {
            experiment: rt.id,
            cause,
            reason,
            by,
            evidence,
        });
    }
    /** Re-arm a killed or expired experiment: explicit operator action, starts a fresh run. */
    arm(id, by) {
        const rt = this.runtimes.get(id);
        if (!rt || rt.assigning || !rt.spec.enabled)
            return false;
        delete this.persisted.experiments[id];
        // Same runtime object (the routing plan references it), fresh counts and evidence.
        rt.resetRun(newAnalyzer(rt.spec));
        const life = this.lifecycle(id);
        Object.assign(life, { endsAt: null, endedAt: null, cause: null, reason: null, by: null, evidence: null });
        this.event({ type: 'armed', experiment: id, by });
        this.start(rt);
        return true;
    }
    /**
     * Feed one outcome observed at the splitting hop to the experiment's analyzer; a breach kills the
     * experiment before the next request is assigned.
     */
    observe(rt, arm, outcome, latencyMs, injected, sessionKey) {
        if (!rt.assigning || outcome === OUTCOME_CLIENT_ABORT)
            return;
        if (injected && rt.excludeInjected) {
            // Judge what the fault caused, not the fault itself: an injected error or reset is the fault,
            // and so is an injected delay, but the errors and timeouts a delay provokes are consequences.
            if (rt.fault.kind !== 'latency')
                return;
            latencyMs = -1;
        }
        const bad = outcome !== OUTCOME_OK;
        const breach = rt.analyzer.record(arm === ARM_CANARY ? 'canary' : 'control', bad, outcome === OUTCOME_TIMEOUT, latencyMs, rt.stickyKind === null ? undefined : sessionKey);
        if (breach !== null)
            this.kill(rt.id, 'guardrail', breach.reason, 'guardrail', { ...breach, at: new Date().toISOString() });
    }
    get(id) {
        return this.runtimes.get(id);
    }
    all() {
        return this.runtimes.values();
    }
    lifecycleOf(id) {
        return this.lifecycles.get(id);
    }
    recordConfigEvent(type, reason) {
        this.event(reason !== undefined ? { type, reason } : { type });
    }
    event(e) {
        const ev = { at: new Date().toISOString(), ...e };
        if (ev.experiment)
            this.lifecycle(ev.experiment).timeline.push(ev);
        this.emit('event', ev);
    }
    async persist() {
        try {
            await this.store.save(structuredClone(this.persisted));
        }
        catch {
            // Logged by the store; the in-memory kill stays in force.
        }
    }
    async flush() {
        await this.store.flush();
    }
    /** Upstream pools that held faults will forward through when they are released. */
    heldPools() {
        const pools = new Set();
        for (const rt of this.runtimes.values())
            for (const ex of rt.held)
                pools.add(ex.route.pool);
        return pools;
    }
    /** Shutting down: start no new faults (not persisted: a restart resumes) and release held ones. */
    stop() {
        for (const id of [...this.timers.keys()])
            this.clearTimer(id);
        for (const rt of this.runtimes.values()) {
            rt.injecting = false;
            rt.releaseHeld();
        }
    }
}
function newAnalyzer(spec) {
    return new ExperimentAnalyzer({
        alpha: 1 - spec.confidence,
        minSamples: spec.min_samples,
        guardrails: spec.guardrails.map(toGuardrailSpec),
        sticky: spec.split.sticky !== undefined,
    });
}
function toGuardrailSpec(g) {
    switch (g.metric) {
        case 'error_rate':
        case 'timeout_rate':
            return { metric: g.metric, maxIncrease: g.max_increase, maxRatio: g.max_ratio };
        case 'latency':
            return {
                metric: 'latency',
                quantile: g.quantile,
                maxRatio: g.max_ratio,
                maxIncreaseMs: g.max_increase_ms,
            };
    }
}
//# sourceMappingURL=table.js.map