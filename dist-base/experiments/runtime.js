import { compileFault } from '../faults/registry.js';
import { BUCKETS, bucketOf, fnv1a, stickyHash } from '../split/hash.js';
import { compileMatcher } from '../split/match.js';
import { rawCookie, rawHeader } from '../proxy/raw-headers.js';
import { STATUS_CLASSES } from '../telemetry/metrics.js';
export const ARM_NONE = 0;
export const ARM_CANARY = 1;
export const ARM_CONTROL = 2;
export const GROUP_NAMES = ['none', 'canary', 'control'];
export const OUTCOME_OK = 0;
export const OUTCOME_ERROR = 1;
export const OUTCOME_TIMEOUT = 2;
export const OUTCOME_RESET = 3;
export const OUTCOME_CLIENT_ABORT = 4;
export const OUTCOMES = ['ok', 'error', 'timeout', 'reset', 'client_abort'];
export class ExperimentRuntime {
    id;
    spec;
    /** Canonical JSON of the spec: a reload keeps this runtime (and its counts) when it is unchanged. */
    specKey;
    matcher;
    fault;
    /** Canary takes buckets [0, canaryBuckets), control [canaryBuckets, controlEnd), of 10,000. */
    canaryBuckets;
    controlEnd;
    stickyKind;
    stickyName;
    seed;
    injectHere;
    injectedMark;
    /** x-faultline-arm values by arm ([none, canary, control]); none is never sent. */
    armMarks;
    maxActiveFaults;
    /** Of 10,000: the share of canary requests that get the fault (BUCKETS = all of them). */
    faultBuckets;
    excludeInjected;
    errorStatus;
    state = 'pending';
    /** Hot-path flags, derived from `state` by setState only. */
    assigning = false;
    injecting = false;
    activeFaults = 0;
    held = new Set();
    /** Counts of the hop that drew the arms (the observation point), laid out as in addCount. */
    counts = new Float64Array(3 * ROW);
    /** Requests assigned to each arm at this process's splitting hop ([none, canary, control]). */
    assigned = new Float64Array(3);
    /** Per-listener counts and metric children: one process may be both the splitting and the injecting hop. */
    hops = new Map();
    metrics;
    injectedCounter;
    overflowCounter;
    activeGauge;
    analyzer;
    /** 32-bit hash of the sticky key of the last draw(); assign() copies it onto the exchange at once. */
    lastKeyHash = 0;
    /** Incremented by each re-arm: outcomes of requests assigned in an earlier run are not judged. */
    runId = 0;
    constructor(spec, metrics, analyzer) {
        this.id = spec.id;
        this.analyzer = analyzer;
        this.spec = spec;
        this.specKey = JSON.stringify(spec);
        this.matcher = compileMatcher(spec.match);
        this.fault = compileFault(spec.fault);
        this.canaryBuckets = Math.max(1, Math.round((spec.split.percent * BUCKETS) / 100));
        this.controlEnd = Math.min(BUCKETS, 2 * this.canaryBuckets);
        const sticky = spec.split.sticky;
        if (sticky === undefined) {
            this.stickyKind = null;
            this.stickyName = '';
        }
        else if (sticky === 'trace') {
            this.stickyKind = 'trace';
            this.stickyName = 'traceparent';
        }
        else {
            const colon = sticky.indexOf(':');
            this.stickyKind = sticky.slice(0, colon);
            const n = sticky.slice(colon + 1);
            this.stickyName = this.stickyKind === 'header' ? n.toLowerCase() : n;
        }
        this.seed = fnv1a(`${spec.id}\u0000`);
        this.injectHere = spec.inject === 'here';
        this.injectedMark = `${spec.id}; fault=${spec.fault.kind}`;
        this.armMarks = [null, `${spec.id}; group=canary`, `${spec.id}; group=control`];
        this.maxActiveFaults = spec.max_active_faults ?? Number.POSITIVE_INFINITY;
        this.faultBuckets = Math.round((spec.fault.percent * BUCKETS) / 100);
        this.excludeInjected = spec.exclude_injected;
        this.errorStatus = new Uint8Array(600);
        if (spec.error_statuses)
            for (const s of spec.error_statuses)
                this.errorStatus[s] = 1;
        else
            this.errorStatus.fill(1, 500, 600);
        this.metrics = metrics;
        this.injectedCounter = metrics.faultsInjected.labels(spec.id, spec.fault.kind);
        this.overflowCounter = metrics.faultsOverflow.labels(spec.id);
        this.activeGauge = metrics.activeFaults.labels(spec.id);
    }
    setState(state) {
        this.state = state;
        this.assigning = state === 'running' || state === 'dry_run';
        this.injecting = state === 'running';
    }
    /** The arm of a request that matched this experiment: one draw, canary and control disjoint. */
    draw(rawHeaders) {
        let bucket;
        if (this.stickyKind === null) {
            bucket = (Math.random() * BUCKETS) | 0;
        }
        else {
            const key = this.stickyKey(rawHeaders);
            // Without its key a request cannot be kept sticky, so it takes no part.
            if (key === undefined || key === '')
                return ARM_NONE;
            this.lastKeyHash = stickyHash(this.seed, key);
            bucket = bucketOf(this.lastKeyHash);
        }
        if (bucket < this.canaryBuckets)
            return ARM_CANARY;
        if (bucket < this.controlEnd)
            return ARM_CONTROL;
        return ARM_NONE;
    }
    stickyKey(rawHeaders) {
        switch (this.stickyKind) {
            case 'header':
                return rawHeader(rawHeaders, this.stickyName);
            case 'cookie':
                return rawCookie(rawHeaders, this.stickyName);
            case 'trace': {
                // W3C traceparent: version "-" trace-id (32 hex) "-" parent-id "-" flags.
                const tp = rawHeader(rawHeaders, 'traceparent');
                return tp !== undefined && tp.length >= 35 ? tp.slice(3, 35) : undefined;
            }
            default:
                return undefined;
        }
    }
    /** Whether this canary request gets the fault: always at percent 100, else a second, independent draw. */
    drawFault() {
        return this.faultBuckets >= BUCKETS || ((Math.random() * BUCKETS) | 0) < this.faultBuckets;
    }
    isError(status) {
        return status >= 100 && status < 600 && this.errorStatus[status] === 1;
    }
    /**
     * Records an outcome as seen at `listener` (`statusClass` indexes STATUS_CLASSES); `observed` marks
     * the hop that drew the arm.
     */
    recordOutcome(listener, arm, outcome, statusClass, latencyMs, injected, observed) {
        let hop = this.hops.get(listener);
        if (hop === undefined) {
            hop = new HopRecorder(this.metrics, this.id, listener);
            this.hops.set(listener, hop);
        }
        hop.record(arm, outcome, statusClass, latencyMs, injected);
        if (observed)
            addCount(this.counts, arm, outcome, statusClass, injected);
    }
    armCounts(arm) {
        return countsOf(this.counts, arm);
    }
    /** Per-hop counts, by listener name. */
    hopCounts() {
        const out = {};
        for (const [name, hop] of this.hops)
            out[name] = { canary: countsOf(hop.counts, ARM_CANARY), control: countsOf(hop.counts, ARM_CONTROL) };
        return out;
    }
    /** A re-armed experiment starts a fresh run: new evidence, zeroed counts. */
    resetRun(analyzer) {
        this.analyzer = analyzer;
        this.runId++;
        this.counts.fill(0);
        this.assigned.fill(0);
        for (const hop of this.hops.values())
            hop.counts.fill(0);
    }
    /** Let every held fault go at once (kill): forwarded or answered, never left to run out. */
    releaseHeld() {
        for (const ex of [...this.held])
            ex.releaseHold();
    }
}
/** One row of counts per arm: outcomes at [0, 5), injected at 7, status classes at [8, 14). */
const ROW = 16;
const INJECTED_SLOT = 7;
const STATUS_SLOT = 8;
function addCount(counts, arm, outcome, statusClass, injected) {
    const row = arm * ROW;
    counts[row + outcome] += 1;
    counts[row + STATUS_SLOT + statusClass] += 1;
    if (injected)
        counts[row + INJECTED_SLOT] += 1;
}
function countsOf(c, arm) {
    const row = arm * ROW;
    const at = (i) => c[row + i] ?? 0;
    const statusClasses = {};
    STATUS_CLASSES.forEach((name, i) => (statusClasses[name] = at(STATUS_SLOT + i)));
    return {
        requests: at(0) + at(1) + at(2) + at(3) + at(4),
        ok: at(0),
        error: at(1),
        timeout: at(2),
        reset: at(3),
        client_abort: at(4),
        injected: at(INJECTED_SLOT),
        status_classes: statusClasses,
    };
}
/** One hop's view of an experiment: its counts and its metric label children, resolved once. */
class HopRecorder {
    counts = new Float64Array(3 * ROW);
    outcomeCounters = [];
    /** [arm * 6 + statusClass], resolved on first use so impossible combinations never show. */
    statusCounters = [];
    durations;
    metrics;
    id;
    listener;
    constructor(metrics, id, listener) {
        this.metrics = metrics;
        this.id = id;
        this.listener = listener;
        for (const group of GROUP_NAMES)
            for (const outcome of OUTCOMES)
                this.outcomeCounters.push(metrics.experimentRequests.labels(id, group, outcome, listener));
        this.durations = GROUP_NAMES.map((g) => metrics.experimentDuration.labels(id, g, listener));
    }
    record(arm, outcome, statusClass, latencyMs, injected) {
        addCount(this.counts, arm, outcome, statusClass, injected);
        this.outcomeCounters[arm * OUTCOMES.length + outcome]?.inc();
        const idx = arm * STATUS_CLASSES.length + statusClass;
        let status = this.statusCounters[idx];
        if (status === undefined) {
            status = this.metrics.experimentResponses.labels(this.id, GROUP_NAMES[arm], STATUS_CLASSES[statusClass], this.listener);
            this.statusCounters[idx] = status;
        }
        status.inc();
        this.durations[arm]?.observe(latencyMs / 1000);
    }
}
//# sourceMappingURL=runtime.js.map