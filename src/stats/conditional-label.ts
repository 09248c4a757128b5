// One-sided conditional-label e-process (statistics.md §6.1a; Lindon & Malek, NeurIPS 2022, made
// one-sided by truncating the Beta prior to [θ0, 1]). Each bad event is labelled canary/control; under
// H0 P(label = canary | bad event, past) <= θ0, whatever the traffic or base rate does, so
//   E(S, N) = ∫_{θ0}^1 (θ/θ0)^S ((1−θ)/(1−θ0))^(N−S) π(θ) dθ
// is a test supermartingale and Ville's inequality bounds P(ever E >= 1/α) by α.
import { logBeta, logBetaInc } from './special.js';

/** ln ∫_{θ0}^1 t^(x−1) (1−t)^(y−1) dt = ln B(x, y) + ln I_{1−θ0}(y, x). */
function logTruncBeta(x: number, y: number, theta0: number): number {
  return logBeta(x, y) + logBetaInc(1 - theta0, y, x);
}

/** ln E(S, N) for canary count S among N bad events, Beta(a, b) prior truncated to [θ0, 1]. */
export function conditionalLabelLogE(S: number, N: number, theta0: number, a = 1, b = 1): number {
  return (
    logTruncBeta(a + S, b + N - S, theta0) -
    logTruncBeta(a, b, theta0) -
    S * Math.log(theta0) -
    (N - S) * Math.log1p(-theta0)
  );
}

/** θ0 for the null "canary rate <= R × control rate" with canary share ρ (statistics.md §6.1a). */
export function thetaForRatio(maxRatio: number, rho: number): number {
  return (rho * maxRatio) / (rho * maxRatio + 1 - rho);
}

/**
 * Integer trip boundary s*(N): the smallest S with ln E(S, N) >= ln(1/α), or N + 1 if none.
 * ln E rises with S, and s*(N) <= s*(N+1) <= s*(N) + 1 (one more control event can only lower E,
 * one more canary event only raise it), so each new entry costs one ln E evaluation. Tables grow
 * lazily and are shared by every test with the same parameters; memory is 4 bytes per bad event
 * of the longest-running test (1e5 bad events = 400 kB).
 */
export class BoundaryTable {
  private table: Int32Array = new Int32Array(1024);
  private length = 1;
  private readonly lnThreshold: number;

  constructor(
    readonly theta0: number,
    readonly alpha: number,
    readonly a = 1,
    readonly b = 1,
  ) {
    if (!(theta0 > 0 && theta0 < 1)) throw new RangeError(`theta0 must be in (0,1), got ${theta0}`);
    if (!(alpha > 0 && alpha < 1)) throw new RangeError(`alpha must be in (0,1), got ${alpha}`);
    this.lnThreshold = Math.log(1 / alpha);
    this.table[0] = 1; // N = 0: impossible
  }

  /** s*(n); extends the table as needed. */
  at(n: number): number {
    while (this.length <= n) this.grow();
    return this.table[n] ?? n + 1;
  }

  /** The smallest N at which a trip is possible (all N events from canary). */
  firstPossibleTrip(limit = 1_000_000): number {
    for (let n = 1; n <= limit; n++) if (this.at(n) <= n) return n;
    return -1;
  }

  private grow(): void {
    if (this.length === this.table.length) {
      const next = new Int32Array(this.table.length * 2);
      next.set(this.table);
      this.table = next;
    }
    const n = this.length;
    const prev = this.table[n - 1] ?? n;
    const keep = prev <= n && conditionalLabelLogE(prev, n, this.theta0, this.a, this.b) >= this.lnThreshold;
    this.table[n] = keep ? prev : prev + 1;
    this.length = n + 1;
  }
}

const sharedTables = new Map<string, BoundaryTable>();

/** Shared, lazily grown boundary table for (θ0, α, a, b). */
export function boundaryTable(theta0: number, alpha: number, a = 1, b = 1): BoundaryTable {
  const key = `${theta0}|${alpha}|${a}|${b}`;
  let t = sharedTables.get(key);
  if (t === undefined) {
    t = new BoundaryTable(theta0, alpha, a, b);
    sharedTables.set(key, t);
  }
  return t;
}

/** Streaming test: two integers per guardrail, an integer comparison per bad event. */
export class ConditionalLabelTest {
  /** bad events from both arms */
  n = 0;
  /** bad events from canary */
  s = 0;
  /** latched: E reached 1/α at some point */
  crossed = false;
  /** ln E at the moment of crossing (for reports; E itself may fall afterwards) */
  lnEAtCross = -Infinity;
  private readonly table: BoundaryTable;

  constructor(
    readonly theta0: number,
    readonly alpha: number,
    readonly a = 1,
    readonly b = 1,
  ) {
    this.table = boundaryTable(theta0, alpha, a, b);
  }

  /** Feed one bad event; returns true once the e-process has (ever) crossed 1/α. */
  onBadEvent(isCanary: boolean): boolean {
    this.n++;
    if (isCanary) this.s++;
    if (!this.crossed && this.s >= this.table.at(this.n)) {
      this.crossed = true;
      this.lnEAtCross = this.logE();
    }
    return this.crossed;
  }

  /**
   * Feed a batch of bad events at once. E(S, N) depends on the counts only (the Beta mixture is
   * exchangeable), so this is the per-event e-process looked at after the batch: a subsequence of its
   * looks, still valid by Ville's inequality; a crossing inside the batch that fell back by its end is
   * not seen (conservative).
   */
  onBadEvents(canary: number, control: number): boolean {
    this.n += canary + control;
    this.s += canary;
    if (!this.crossed && this.n > 0 && this.s >= this.table.at(this.n)) {
      this.crossed = true;
      this.lnEAtCross = this.logE();
    }
    return this.crossed;
  }

  /** Current ln E (special functions; for reports, not the hot path). */
  logE(): number {
    return conditionalLabelLogE(this.s, this.n, this.theta0, this.a, this.b);
  }
}
