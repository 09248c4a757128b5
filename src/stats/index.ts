// Public surface of the statistics package (kill-switch analyzer and its building blocks).
export { ExperimentAnalyzer, splitAlpha } from './analyzer.js';
export type {
  AnalyzerConfig,
  Arm,
  ArmBatch,
  ArmSummary,
  Breach,
  GuardrailSpec,
  GuardrailState,
  GuardrailStatus,
} from './analyzer.js';
export {
  BoundaryTable,
  ConditionalLabelTest,
  boundaryTable,
  conditionalLabelLogE,
  thetaForRatio,
} from './conditional-label.js';
export { HTBettingTest, DEFAULT_BET_FRACTIONS } from './betting.js';
export { DEFAULT_WARMUP, ExceedanceTest, REFERENCE_WARMUP } from './exceedance.js';
export type { ExceedanceOptions } from './exceedance.js';
export { LogHistogram } from './histogram.js';
export type { HistogramOptions } from './histogram.js';
export { RateTest } from './rate-test.js';
export { SessionFilter } from './session-filter.js';
export { createPrng, gaussian } from './prng.js';
export { betaInc, lgamma, logBeta, logBetaInc } from './special.js';
