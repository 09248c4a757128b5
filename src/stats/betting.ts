// Absolute-margin part of the failure test (statistics.md §6.1b): a design-based betting e-process
// (Waudby-Smith & Ramdas, JRSSB 2024) on Horvitz-Thompson increments (Ham et al., arXiv 2210.08639).
// Z = Y·(1[canary]/ρ − 1[control]/(1−ρ)) has E[Z | past] = p_canary − p_control exactly, by the
// randomisation alone; under H0 (difference <= Δ) every K_g = Π(1 + λ_g(Z − Δ)) is a test
// supermartingale, and so is their average (the mixture over a fixed grid of bets).

/** Bet sizes as fractions of the largest bet keeping 1 + λ(Z − Δ) > 0 (evalue_lib BettingMixture). */
export const DEFAULT_BET_FRACTIONS: readonly number[] = [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.5];

export class HTBettingTest {
  /** latched: the mixture reached 1/α at some point */
  crossed = false;
  /** ln E at the moment of crossing */
  lnEAtCross = -Infinity;
  private readonly logK: Float64Array;
  // Z takes only three values, so each bet's log-increment is one of three constants: the update is
  // an addition per bet (no log1p on the hot path).
  private readonly incGood: Float64Array;
  private readonly incCanaryBad: Float64Array;
  private readonly incControlBad: Float64Array;
  private readonly lnThreshold: number;
  private readonly lnSize: number;
  private maxLogK = 0;

  constructor(
    readonly delta: number,
    readonly alpha: number,
    readonly rho = 0.5,
    fractions: readonly number[] = DEFAULT_BET_FRACTIONS,
  ) {
    if (!(delta >= 0 && delta < 1)) throw new RangeError(`delta must be in [0,1), got ${delta}`);
    if (!(rho > 0 && rho < 1)) throw new RangeError(`rho must be in (0,1), got ${rho}`);
    const g = fractions.length;
    this.logK = new Float64Array(g);
    this.incGood = new Float64Array(g);
    this.incCanaryBad = new Float64Array(g);
    this.incControlBad = new Float64Array(g);
    const zMin = -1 / (1 - rho);
    for (let i = 0; i < g; i++) {
      const lam = (fractions[i] ?? 0) / (delta - zMin);
      this.incGood[i] = Math.log1p(-lam * delta);
      this.incCanaryBad[i] = Math.log1p(lam * (1 / rho - delta));
      this.incControlBad[i] = Math.log1p(lam * (zMin - delta));
    }
    this.lnThreshold = Math.log(1 / alpha);
    this.lnSize = Math.log(g);
  }

  /** Feed one experiment request (call for every request of both arms); returns the latched flag. */
  onRequest(isCanary: boolean, bad: boolean): boolean {
    const inc = !bad ? this.incGood : isCanary ? this.incCanaryBad : this.incControlBad;
    const k = this.logK;
    let m = -Infinity;
    for (let i = 0; i < k.length; i++) {
      const v = (k[i] ?? 0) + (inc[i] ?? 0);
      k[i] = v;
      if (v > m) m = v;
    }
    this.maxLogK = m;
    // mean_g K_g <= max_g K_g, so the exact log-mean is only needed once the best bet is past 1/α
    if (!this.crossed && m >= this.lnThreshold) {
      const le = this.logE();
      if (le >= this.lnThreshold) {
        this.crossed = true;
        this.lnEAtCross = le;
      }
    }
    return this.crossed;
  }

  /**
   * Feed a batch of requests at once: each K_g is a product of per-request factors, so its value after
   * the batch does not depend on the order inside it (the mixture looked at after the batch only).
   */
  onBatch(good: number, canaryBad: number, controlBad: number): boolean {
    const k = this.logK;
    let m = -Infinity;
    for (let i = 0; i < k.length; i++) {
      const v =
        (k[i] ?? 0) +
        good * (this.incGood[i] ?? 0) +
        canaryBad * (this.incCanaryBad[i] ?? 0) +
        controlBad * (this.incControlBad[i] ?? 0);
      k[i] = v;
      if (v > m) m = v;
    }
    this.maxLogK = m;
    if (!this.crossed && m >= this.lnThreshold) {
      const le = this.logE();
      if (le >= this.lnThreshold) {
        this.crossed = true;
        this.lnEAtCross = le;
      }
    }
    return this.crossed;
  }

  /** ln of the mixture e-value, ln mean_g K_g (log-sum-exp). */
  logE(): number {
    const k = this.logK;
    const m = this.maxLogK;
    let acc = 0;
    for (let i = 0; i < k.length; i++) acc += Math.exp((k[i] ?? 0) - m);
    return m + Math.log(acc) - this.lnSize;
  }
}
