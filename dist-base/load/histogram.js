/**
 * Log-spaced latency histogram: fixed memory, ~1% relative error, mergeable.
 *
 * Values are microseconds. Bucket i covers (MIN_US * G^(i-1), MIN_US * G^i]; quantiles report the
 * geometric middle of the bucket, so the relative error is at most sqrt(G) - 1 (about 0.5%).
 * A per-request array would grow with rate x duration; this stays at BUCKETS x 4 bytes.
 */
const MIN_US = 1;
const MAX_US = 300_000_000; // 5 minutes: anything slower is clamped into the last bucket
const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);
export const BUCKETS = Math.ceil(Math.log(MAX_US / MIN_US) / LOG_GROWTH) + 2;
export class LatencyHistogram {
    counts = new Uint32Array(BUCKETS);
    count = 0;
    sumUs = 0;
    minUs = Number.POSITIVE_INFINITY;
    maxUs = 0;
    record(valueUs) {
        const v = valueUs > MIN_US ? valueUs : MIN_US;
        let i = Math.ceil(Math.log(v / MIN_US) / LOG_GROWTH);
        if (i >= BUCKETS)
            i = BUCKETS - 1;
        this.counts[i] = (this.counts[i] ?? 0) + 1;
        this.count++;
        this.sumUs += valueUs;
        if (valueUs < this.minUs)
            this.minUs = valueUs;
        if (valueUs > this.maxUs)
            this.maxUs = valueUs;
    }
    merge(other) {
        for (let i = 0; i < BUCKETS; i++)
            this.counts[i] = (this.counts[i] ?? 0) + (other.counts[i] ?? 0);
        this.count += other.count;
        this.sumUs += other.sumUs;
        if (other.minUs < this.minUs)
            this.minUs = other.minUs;
        if (other.maxUs > this.maxUs)
            this.maxUs = other.maxUs;
    }
    /** q in [0, 1]; NaN when empty. Clamped to the observed min/max so small samples stay honest. */
    quantileUs(q) {
        if (this.count === 0)
            return Number.NaN;
        // Nearest-rank definition: the smallest value with at least q x count values at or below it.
        const rank = Math.max(1, Math.ceil(q * this.count));
        let seen = 0;
        for (let i = 0; i < BUCKETS; i++) {
            seen += this.counts[i] ?? 0;
            if (seen >= rank) {
                const mid = i === 0 ? MIN_US : MIN_US * Math.pow(GROWTH, i - 0.5);
                return Math.min(this.maxUs, Math.max(this.minUs, mid));
            }
        }
        return this.maxUs;
    }
    meanUs() {
        return this.count === 0 ? Number.NaN : this.sumUs / this.count;
    }
}
//# sourceMappingURL=histogram.js.map