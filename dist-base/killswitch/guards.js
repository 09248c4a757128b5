/**
 * Global guard: the error rate of all traffic through a listener over a sliding window of one-second
 * buckets. O(1) per request, fixed memory; trips once per window when the rate passes the threshold.
 */
export class ErrorRateWindow {
    totals;
    errors;
    seconds;
    sumTotal = 0;
    sumErrors = 0;
    windowS;
    threshold;
    minRequests;
    constructor(windowS, threshold, minRequests) {
        this.windowS = windowS;
        this.threshold = threshold;
        this.minRequests = minRequests;
        this.totals = new Uint32Array(windowS);
        this.errors = new Uint32Array(windowS);
        this.seconds = new Float64Array(windowS).fill(-1);
    }
    /** Records one request; true when the window's error rate is above the threshold. */
    record(isError, nowMs) {
        const sec = Math.floor(nowMs / 1000);
        const slot = sec % this.windowS;
        if (this.seconds[slot] !== sec)
            this.evictStale(sec);
        if (this.seconds[slot] !== sec) {
            this.seconds[slot] = sec;
            this.totals[slot] = 0;
            this.errors[slot] = 0;
        }
        this.totals[slot] += 1;
        this.sumTotal += 1;
        if (isError) {
            this.errors[slot] += 1;
            this.sumErrors += 1;
        }
        return this.sumTotal >= this.minRequests && this.sumErrors / this.sumTotal > this.threshold;
    }
    rate() {
        return { requests: this.sumTotal, errors: this.sumErrors };
    }
    evictStale(sec) {
        for (let i = 0; i < this.windowS; i++) {
            const s = this.seconds[i];
            if (s >= 0 && s <= sec - this.windowS) {
                this.sumTotal -= this.totals[i];
                this.sumErrors -= this.errors[i];
                this.totals[i] = 0;
                this.errors[i] = 0;
                this.seconds[i] = -1;
            }
        }
    }
    reset() {
        this.totals.fill(0);
        this.errors.fill(0);
        this.seconds.fill(-1);
        this.sumTotal = 0;
        this.sumErrors = 0;
    }
}
//# sourceMappingURL=guards.js.map