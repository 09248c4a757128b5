/**
 * Global guard: the error rate of all traffic through a listener over a sliding window of one-second
 * buckets. O(1) per request, fixed memory; trips once per window when the rate passes the threshold.
 * In a fleet the replicas' window sums are pooled and judged there (src/fleet/fleet.ts, FleetGuards).
 */
export class ErrorRateWindow {
  private readonly totals: Uint32Array;
  private readonly errors: Uint32Array;
  private readonly seconds: Float64Array;
  private sumTotal = 0;
  private sumErrors = 0;
  private readonly windowS: number;
  private readonly threshold: number;
  private readonly minRequests: number;

  constructor(windowS: number, threshold: number, minRequests: number) {
    this.windowS = windowS;
    this.threshold = threshold;
    this.minRequests = minRequests;
    this.totals = new Uint32Array(windowS);
    this.errors = new Uint32Array(windowS);
    this.seconds = new Float64Array(windowS).fill(-1);
  }

  /** Records one request; true when the window's error rate is above the threshold. */
  record(isError: boolean, nowMs: number): boolean {
    const sec = Math.floor(nowMs / 1000);
    const slot = sec % this.windowS;
    if (this.seconds[slot] !== sec) this.evictStale(sec);
    if (this.seconds[slot] !== sec) {
      this.seconds[slot] = sec;
      this.totals[slot] = 0;
      this.errors[slot] = 0;
    }
    this.totals[slot]! += 1;
    this.sumTotal += 1;
    if (isError) {
      this.errors[slot]! += 1;
      this.sumErrors += 1;
    }
    return this.sumTotal >= this.minRequests && this.sumErrors / this.sumTotal > this.threshold;
  }

  rate(): { requests: number; errors: number } {
    return { requests: this.sumTotal, errors: this.sumErrors };
  }

  /** The window's sums at `nowMs` (seconds that slid out are dropped first: a quiet listener reads 0). */
  rateAt(nowMs: number): { requests: number; errors: number } {
    this.evictStale(Math.floor(nowMs / 1000));
    return this.rate();
  }

  private evictStale(sec: number): void {
    for (let i = 0; i < this.windowS; i++) {
      const s = this.seconds[i] as number;
      if (s >= 0 && s <= sec - this.windowS) {
        this.sumTotal -= this.totals[i] as number;
        this.sumErrors -= this.errors[i] as number;
        this.totals[i] = 0;
        this.errors[i] = 0;
        this.seconds[i] = -1;
      }
    }
  }

  reset(): void {
    this.totals.fill(0);
    this.errors.fill(0);
    this.seconds.fill(-1);
    this.sumTotal = 0;
    this.sumErrors = 0;
  }
}
