import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { ARM_HEADER, ArmStats, INJECTED_HEADER, classify, parseInjectedMark, splitMarks } from './arms.js';
/** Per-request state; it is also the undici handler, so no closures are allocated per request. */
class Exchange {
    gen;
    dueAt;
    status = 0;
    injected = undefined;
    arm = undefined;
    constructor(gen, dueAt) {
        this.gen = gen;
        this.dueAt = dueAt;
    }
    // undici only treats a handler as the new-style API when onRequestStart exists.
    onRequestStart() { }
    onResponseStart(_c, statusCode, headers) {
        this.status = statusCode;
        this.injected = headers[INJECTED_HEADER];
        this.arm = headers[ARM_HEADER];
    }
    onResponseData() {
        // Bodies are read and discarded; undici counts nothing for us, nor do we need it.
    }
    onResponseEnd() {
        this.gen.finish(this, false);
    }
    onResponseError() {
        this.gen.finish(this, true);
    }
}
export class LoadGenerator {
    opts;
    /** Canary responses that carried the selected experiment's x-faultline-injected mark. */
    canaryInjected = new ArmStats();
    /** Canary responses (by x-faultline-arm) without an injected mark. */
    canaryPlain = new ArmStats();
    /** x-faultline-arm group=control (only ever filled when the hop sets `arm_header: true`). */
    control = new ArmStats();
    /** Neither mark: not assigned, or assigned to control by a hop that does not set the arm header. */
    untouched = new ArmStats();
    /** Responses that carried any x-faultline-arm mark: without one, control and untouched look alike. */
    armMarked = 0;
    /** Injected marks by experiment id, including ones not selected by --experiment. */
    injectedBy = new Map();
    sent = 0;
    completed = 0;
    dropped = 0;
    inFlight = 0;
    startedAt = 0;
    lastSendAt = 0;
    endedAt = 0;
    pool;
    total;
    intervalMs;
    path;
    maxOutstanding;
    drainMs;
    timer;
    drainTimer;
    resolveDone;
    tickBound = () => this.tick();
    dispatchOpts;
    constructor(opts) {
        this.opts = opts;
        this.total = Math.round((opts.ratePerS * opts.durationMs) / 1000);
        this.intervalMs = 1000 / opts.ratePerS;
        this.path = opts.target.pathname + opts.target.search;
        this.maxOutstanding = opts.maxOutstanding ?? Math.max(10_000, opts.concurrency * 4);
        this.drainMs = opts.drainMs ?? 10_000;
        this.pool = new Pool(opts.target.origin, {
            connections: opts.concurrency,
            pipelining: 1,
            headersTimeout: 30_000,
            bodyTimeout: 30_000,
        });
        const headers = { ...opts.headers };
        if (opts.body && headers['content-type'] === undefined)
            headers['content-type'] = 'application/octet-stream';
        // One frozen option object shared by every request: the body Buffer is re-sent as is.
        this.dispatchOpts = Object.freeze({
            path: this.path,
            method: opts.method,
            headers,
            body: opts.body ?? null,
        });
    }
    get scheduled() {
        return this.total;
    }
    run() {
        return new Promise((resolve) => {
            this.resolveDone = resolve;
            this.startedAt = performance.now();
            this.tick();
        });
    }
    snapshot() {
        const now = this.endedAt || performance.now();
        return {
            elapsedMs: now - this.startedAt,
            sent: this.sent,
            completed: this.completed,
            inFlight: this.inFlight,
            dropped: this.dropped,
            errors: this.canaryInjected.errors + this.canaryPlain.errors + this.control.errors + this.untouched.errors,
        };
    }
    /** The four client-side buckets, merged: canary, and everything there is. */
    canary() {
        const c = new ArmStats();
        c.merge(this.canaryInjected);
        c.merge(this.canaryPlain);
        return c;
    }
    all() {
        const a = this.canary();
        a.merge(this.control);
        a.merge(this.untouched);
        return a;
    }
    tick() {
        const now = performance.now();
        let i = this.sent + this.dropped;
        while (i < this.total) {
            const dueAt = this.startedAt + i * this.intervalMs;
            if (dueAt > now)
                break;
            this.fire(dueAt);
            i++;
        }
        if (i < this.total) {
            const wait = this.startedAt + i * this.intervalMs - performance.now();
            this.timer = setTimeout(this.tickBound, wait > 1 ? Math.floor(wait) : 0);
        }
        else {
            this.timer = undefined;
            this.drainTimer = setTimeout(() => void this.pool.destroy().catch(() => { }), this.drainMs);
            this.drainTimer.unref();
            this.maybeDone();
        }
    }
    fire(dueAt) {
        if (this.inFlight >= this.maxOutstanding) {
            this.dropped++;
            return;
        }
        this.sent++;
        this.lastSendAt = performance.now();
        this.inFlight++;
        const ex = new Exchange(this, dueAt);
        try {
            this.pool.dispatch(this.dispatchOpts, ex);
        }
        catch {
            this.finish(ex, true);
        }
    }
    finish(ex, failed) {
        const latencyUs = (performance.now() - ex.dueAt) * 1000;
        this.inFlight--;
        this.completed++;
        let arm = this.untouched;
        // Fast path: most responses carry no mark at all.
        if (ex.injected !== undefined || ex.arm !== undefined) {
            const injected = splitMarks(ex.injected);
            const seen = new Set();
            for (const v of injected) {
                const { experiment } = parseInjectedMark(v);
                if (seen.has(experiment))
                    continue;
                seen.add(experiment);
                this.injectedBy.set(experiment, (this.injectedBy.get(experiment) ?? 0) + 1);
            }
            const c = classify(injected, splitMarks(ex.arm), this.opts.experiment);
            if (c.armMarked)
                this.armMarked++;
            if (c.arm === 'canary')
                arm = c.injected ? this.canaryInjected : this.canaryPlain;
            else if (c.arm === 'control')
                arm = this.control;
        }
        arm.record(latencyUs, ex.status, failed);
        this.maybeDone();
    }
    maybeDone() {
        if (this.timer !== undefined || this.inFlight > 0 || this.sent + this.dropped < this.total)
            return;
        if (this.endedAt !== 0)
            return;
        this.endedAt = performance.now();
        if (this.drainTimer)
            clearTimeout(this.drainTimer);
        const resolve = this.resolveDone;
        void this.pool
            .close()
            .catch(() => { })
            .then(() => resolve?.());
    }
    /** Stop early (e.g. on SIGINT): cancels what is in flight; those count as transport errors. */
    async abort() {
        if (this.timer)
            clearTimeout(this.timer);
        this.timer = undefined;
        this.dropped += this.total - this.sent - this.dropped;
        await this.pool.destroy().catch(() => { });
        this.maybeDone();
    }
}
//# sourceMappingURL=generator.js.map