// Fixed log-spaced latency histogram (HDR-style, statistics.md §6.2): O(buckets) memory, O(1) insert,
// no allocation after construction. Bucket i holds (edge[i-1], edge[i]]; the last bucket is overflow.

export interface HistogramOptions {
  /** first upper edge in ms (default 0.1 ms) */
  minMs?: number;
  /** largest finite edge in ms (default 10 min) */
  maxMs?: number;
  /** edge ratio (default 1.01: quantiles within 1 %) */
  growth?: number;
}

export class LogHistogram {
  readonly edges: Float64Array;
  readonly counts: Float64Array;
  total = 0;
  /** Smallest, largest and sum of the values added (NaN-free: +Infinity / 0 / 0 while empty). */
  min = Number.POSITIVE_INFINITY;
  max = 0;
  sum = 0;
  private readonly lnMin: number;
  private readonly lnGrowth: number;

  constructor(opts: HistogramOptions = {}) {
    const minMs = opts.minMs ?? 0.1;
    const maxMs = opts.maxMs ?? 600_000;
    const growth = opts.growth ?? 1.01;
    this.lnMin = Math.log(minMs);
    this.lnGrowth = Math.log(growth);
    // same construction as numpy exp(arange(ln min, ln max, ln growth)) in research/sim/sim_latency.py
    const n = Math.ceil((Math.log(maxMs) - this.lnMin) / this.lnGrowth);
    this.edges = new Float64Array(n);
    for (let i = 0; i < n; i++) this.edges[i] = Math.exp(this.lnMin + i * this.lnGrowth);
    this.counts = new Float64Array(n + 1);
  }

  /** Index of the first edge >= v (numpy searchsorted 'left'); edges.length = overflow. */
  bucketOf(v: number): number {
    const e = this.edges;
    if (!(v > (e[0] ?? 0))) return 0;
    let i = Math.ceil((Math.log(v) - this.lnMin) / this.lnGrowth);
    if (i > e.length) i = e.length;
    // the log estimate can be off by one at an edge; fix it against the stored edges
    while (i > 0 && (e[i - 1] ?? 0) >= v) i--;
    while (i < e.length && (e[i] ?? Infinity) < v) i++;
    return i;
  }

  add(v: number): void {
    const b = this.bucketOf(v);
    this.counts[b] = (this.counts[b] ?? 0) + 1;
    this.total++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  /** Adds another histogram's counts (built with the same options). */
  merge(other: LogHistogram): void {
    if (other.counts.length !== this.counts.length) throw new Error('LogHistogram.merge: different edges');
    for (let i = 0; i < this.counts.length; i++)
      this.counts[i] = (this.counts[i] ?? 0) + (other.counts[i] ?? 0);
    this.total += other.total;
    this.sum += other.sum;
    if (other.min < this.min) this.min = other.min;
    if (other.max > this.max) this.max = other.max;
  }

  /**
   * Nearest-rank quantile for reports: the geometric middle of the bucket holding the ceil(p·total)-th
   * smallest value (within half a bucket, 0.5 %), clamped to the observed min and max so small samples
   * stay honest. NaN when empty.
   */
  quantileMid(p: number): number {
    if (this.total <= 0) return NaN;
    const target = Math.max(Math.ceil(p * this.total), 1);
    let cum = 0;
    const c = this.counts;
    const e = this.edges;
    for (let i = 0; i < c.length; i++) {
      cum += c[i] ?? 0;
      if (cum < target) continue;
      const mid = i === 0 ? (e[0] ?? 0) : i >= e.length ? this.max : Math.sqrt((e[i - 1] ?? 0) * (e[i] ?? 0));
      return Math.min(this.max, Math.max(this.min, mid));
    }
    return this.max;
  }

  /** Add bucket counts laid out as `counts` (a batch from another histogram of the same options). */
  addCounts(counts: ArrayLike<number>): void {
    const c = this.counts;
    let added = 0;
    for (let i = 0; i < c.length; i++) {
      const v = counts[i] ?? 0;
      if (v !== 0) {
        c[i] = (c[i] ?? 0) + v;
        added += v;
      }
    }
    this.total += added;
  }

  /**
   * How many values of `counts` (this layout) are certainly greater than `cut`: the buckets whose lower
   * edge is >= cut. Exact when `cut` is an edge (T_p from quantileUpper); otherwise it leaves out the
   * bucket straddling `cut` (at most 1 % of the value), so a batch never finds more slow requests than
   * the per-request test would.
   */
  countAbove(counts: ArrayLike<number>, cut: number): number {
    if (!(cut < Infinity)) return 0;
    let n = 0;
    for (let i = this.bucketOf(cut) + 1; i < this.counts.length; i++) n += counts[i] ?? 0;
    return n;
  }

  /**
   * Upper edge of the bucket holding the ceil(p·total)-th smallest value (+Infinity in overflow,
   * NaN when empty). Biased up by at most one bucket (1 %), as in the reference simulation.
   */
  quantileUpper(p: number): number {
    if (this.total <= 0) return NaN;
    const target = Math.max(Math.ceil(p * this.total), 1);
    let cum = 0;
    const c = this.counts;
    for (let i = 0; i < c.length; i++) {
      cum += c[i] ?? 0;
      if (cum >= target) return this.edges[i] ?? Infinity;
    }
    return Infinity;
  }
}
