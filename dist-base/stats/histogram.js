// Fixed log-spaced latency histogram (HDR-style, statistics.md §6.2): O(buckets) memory, O(1) insert,
// no allocation after construction. Bucket i holds (edge[i-1], edge[i]]; the last bucket is overflow.
export class LogHistogram {
    edges;
    counts;
    total = 0;
    lnMin;
    lnGrowth;
    constructor(opts = {}) {
        const minMs = opts.minMs ?? 0.1;
        const maxMs = opts.maxMs ?? 600_000;
        const growth = opts.growth ?? 1.01;
        this.lnMin = Math.log(minMs);
        this.lnGrowth = Math.log(growth);
        // same construction as numpy exp(arange(ln min, ln max, ln growth)) in research/sim/sim_latency.py
        const n = Math.ceil((Math.log(maxMs) - this.lnMin) / this.lnGrowth);
        this.edges = new Float64Array(n);
        for (let i = 0; i < n; i++)
            this.edges[i] = Math.exp(this.lnMin + i * this.lnGrowth);
        this.counts = new Float64Array(n + 1);
    }
    /** Index of the first edge >= v (numpy searchsorted 'left'); edges.length = overflow. */
    bucketOf(v) {
        const e = this.edges;
        if (!(v > (e[0] ?? 0)))
            return 0;
        let i = Math.ceil((Math.log(v) - this.lnMin) / this.lnGrowth);
        if (i > e.length)
            i = e.length;
        // the log estimate can be off by one at an edge; fix it against the stored edges
        while (i > 0 && (e[i - 1] ?? 0) >= v)
            i--;
        while (i < e.length && (e[i] ?? Infinity) < v)
            i++;
        return i;
    }
    add(v) {
        const b = this.bucketOf(v);
        this.counts[b] = (this.counts[b] ?? 0) + 1;
        this.total++;
    }
    /**
     * Upper edge of the bucket holding the ceil(p·total)-th smallest value (+Infinity in overflow,
     * NaN when empty). Biased up by at most one bucket (1 %), as in the reference simulation.
     */
    quantileUpper(p) {
        if (this.total <= 0)
            return NaN;
        const target = Math.max(Math.ceil(p * this.total), 1);
        let cum = 0;
        const c = this.counts;
        for (let i = 0; i < c.length; i++) {
            cum += c[i] ?? 0;
            if (cum >= target)
                return this.edges[i] ?? Infinity;
        }
        return Infinity;
    }
}
//# sourceMappingURL=histogram.js.map