// Seeded PRNG for simulations and tests: xoshiro128** (Blackman & Vigna 2018), state seeded with
// splitmix32 so that nearby seeds give unrelated streams. Not for anything security-related.
function rotl(x, k) {
    return (x << k) | (x >>> (32 - k));
}
/** Returns a function yielding uniform doubles in [0, 1) with 32 random bits each. */
export function createPrng(seed) {
    let sm = seed >>> 0;
    const splitmix32 = () => {
        sm = (sm + 0x9e3779b9) | 0;
        let z = sm;
        z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
        z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
        return (z ^ (z >>> 16)) | 0;
    };
    let a = splitmix32();
    let b = splitmix32();
    let c = splitmix32();
    let d = splitmix32();
    if ((a | b | c | d) === 0)
        a = 1;
    return () => {
        const r = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
        const t = b << 9;
        c ^= a;
        d ^= b;
        b ^= c;
        a ^= d;
        c ^= t;
        d = rotl(d, 11);
        return r / 4294967296;
    };
}
/** Standard normal variate from a uniform source (Box-Muller, one value per call). */
export function gaussian(rand) {
    const u = 1 - rand(); // (0, 1]
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}
//# sourceMappingURL=prng.js.map