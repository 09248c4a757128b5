// Failure / timeout rate guardrail (statistics.md §6.1): "canary is worse by more than R× AND by
// more than Δ" = latched AND of the one-sided conditional-label test (ratio) and the HT betting test
// (absolute margin). The acceptable region is "ratio <= R OR difference <= Δ"; at least one component
// null holds there, so P(trip) <= α with both components run at the same α.
import { HTBettingTest } from './betting.js';
import { ConditionalLabelTest, thetaForRatio } from './conditional-label.js';
import type { SessionFilter } from './session-filter.js';

export class RateTest {
  /** null when implied by the absolute part (R <= 1 with Δ > 0) */
  readonly ratio: ConditionalLabelTest | null;
  /** null when Δ = 0 (then "worse by any margin" is the ratio test with R = 1) */
  readonly abs: HTBettingTest | null;
  crossed = false;
  canaryBadCounted = 0;
  controlBadCounted = 0;

  constructor(
    readonly maxIncrease: number,
    readonly maxRatio: number,
    alpha: number,
    rho: number,
    private readonly filter: SessionFilter | null = null,
  ) {
    if (!(maxRatio >= 1)) throw new RangeError(`maxRatio must be >= 1, got ${maxRatio}`);
    if (!(maxIncrease >= 0 && maxIncrease < 1)) throw new RangeError(`maxIncrease must be in [0,1)`);
    this.ratio =
      maxRatio > 1 || maxIncrease === 0
        ? new ConditionalLabelTest(thetaForRatio(maxRatio, rho), alpha)
        : null;
    this.abs = maxIncrease > 0 ? new HTBettingTest(maxIncrease, alpha, rho) : null;
  }

  /** Feed every experiment request; returns the latched AND. */
  onRequest(isCanary: boolean, bad: boolean, sessionKey: number | undefined): boolean {
    let counted = bad;
    if (bad && this.filter !== null && sessionKey !== undefined) {
      counted = this.filter.firstTime(sessionKey, isCanary);
    }
    if (counted) {
      if (isCanary) this.canaryBadCounted++;
      else this.controlBadCounted++;
      this.ratio?.onBadEvent(isCanary);
    }
    this.abs?.onRequest(isCanary, counted);
    if (!this.crossed) {
      this.crossed = (this.ratio === null || this.ratio.crossed) && (this.abs === null || this.abs.crossed);
    }
    return this.crossed;
  }

  /**
   * A batch of requests (pooled outcomes of a fleet): both components at the batch's end. Sessions
   * cannot be deduplicated from counts, so a sticky test refuses batches.
   */
  onBatch(
    canaryN: number,
    canaryBad: number,
    controlN: number,
    controlBad: number,
    sessionsDeduped = false,
  ): boolean {
    // A fleet deduplicates sessions before pooling (one Redis bitmap, the filter's own rule): its
    // counts are already per session; anyone else's batch would bypass the filter.
    if (this.filter !== null && !sessionsDeduped)
      throw new Error('RateTest.onBatch: sticky (session-filtered) tests take single requests');
    this.canaryBadCounted += canaryBad;
    this.controlBadCounted += controlBad;
    this.ratio?.onBadEvents(canaryBad, controlBad);
    this.abs?.onBatch(canaryN - canaryBad + controlN - controlBad, canaryBad, controlBad);
    if (!this.crossed) {
      this.crossed = (this.ratio === null || this.ratio.crossed) && (this.abs === null || this.abs.crossed);
    }
    return this.crossed;
  }

  /** Evidence for reports: the weaker component, each taken at max(now, at crossing). */
  logE(): number {
    let le = Infinity;
    if (this.ratio !== null) le = Math.min(le, Math.max(this.ratio.logE(), this.ratio.lnEAtCross));
    if (this.abs !== null) le = Math.min(le, Math.max(this.abs.logE(), this.abs.lnEAtCross));
    return le;
  }
}
