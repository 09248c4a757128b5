/** Standard normal by Box-Muller (one of the pair is discarded: cheap enough per canary request). */
function standardNormal() {
    const u = 1 - Math.random();
    const v = Math.random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}
/** z such that P(Z <= z) = 0.99. */
const Z99 = 2.326347874;
export function compileDelay(spec) {
    if (spec.ms !== undefined) {
        const ms = spec.ms;
        return () => ms;
    }
    const d = spec.distribution;
    switch (d?.type) {
        case 'uniform': {
            const { min, max } = d;
            return () => min + Math.random() * (max - min);
        }
        case 'normal': {
            const { mean, stddev } = d;
            return () => Math.max(0, mean + stddev * standardNormal());
        }
        case 'lognormal': {
            // Parameterised by median and p99, which operators know, rather than mu/sigma.
            const mu = Math.log(d.median);
            const sigma = (Math.log(d.p99) - mu) / Z99;
            return () => Math.exp(mu + sigma * standardNormal());
        }
        default:
            return () => 0;
    }
}
//# sourceMappingURL=distributions.js.map