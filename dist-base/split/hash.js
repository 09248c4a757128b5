/**
 * Sticky bucketing: FNV-1a over (experiment seed, key) with murmur3's fmix32 finaliser for avalanche,
 * into 10,000 buckets. Stable across processes, restarts and platforms (pure 32-bit integer math).
 */
export const BUCKETS = 10_000;
export function fnv1a(s, seed = 0x811c9dc5) {
    let h = seed >>> 0;
    for (let i = 0; i < s.length; i++) {
        h ^= s.charCodeAt(i);
        h = Math.imul(h, 0x01000193);
    }
    return h >>> 0;
}
/** murmur3's 32-bit finaliser: a bijection that spreads every input bit over the output. */
export function fmix32(h) {
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h >>> 0;
}
/** `seed` is fnv1a(experiment id + "\0"), computed once per experiment at compile time. */
export function stickyHash(seed, key) {
    return fmix32(fnv1a(key, seed));
}
export function bucketOf(hash) {
    return hash % BUCKETS;
}
//# sourceMappingURL=hash.js.map