/**
 * The load generator's latency histogram, in microseconds: a view of the one log-bucket histogram
 * (src/stats/histogram.ts, the analyzer's), built from 1 µs to 5 minutes with 1 % buckets. Fixed memory,
 * mergeable; quantiles are the geometric middle of their bucket (within 0.5 %), clamped to the observed
 * min and max. A per-request array would grow with rate x duration; this stays at ~2,000 buckets.
 */
import { LogHistogram } from '../stats/histogram.js';

const OPTIONS = { minMs: 0.001, maxMs: 300_000, growth: 1.01 };

export class LatencyHistogram {
  private readonly h = new LogHistogram(OPTIONS);

  get count(): number {
    return this.h.total;
  }
  get minUs(): number {
    return this.h.min * 1000;
  }
  get maxUs(): number {
    return this.h.max * 1000;
  }
  get sumUs(): number {
    return this.h.sum * 1000;
  }

  record(valueUs: number): void {
    this.h.add(valueUs / 1000);
  }

  merge(other: LatencyHistogram): void {
    this.h.merge(other.h);
  }

  /** q in [0, 1]; NaN when empty (nearest rank, see LogHistogram.quantileMid). */
  quantileUs(q: number): number {
    return this.h.quantileMid(q) * 1000;
  }

  meanUs(): number {
    return this.h.total === 0 ? Number.NaN : (this.h.sum / this.h.total) * 1000;
  }
}
