/** Sticky keys known in advance to land in an arm, computed with the product's own bucket hash. */
import { BUCKETS, bucketOf, fnv1a, stickyHash } from '../../src/split/hash.js';

/** The first key `prefix` + n that experiment `id` at `percent` puts in `arm`. */
export function stickyKeyIn(arm: 'canary' | 'control', id: string, percent: number, prefix: string): string {
  const canary = Math.round((percent * BUCKETS) / 100);
  const [from, to] = arm === 'canary' ? [0, canary] : [canary, 2 * canary];
  const seed = fnv1a(`${id}\u0000`);
  for (let i = 0; ; i++) {
    const b = bucketOf(stickyHash(seed, `${prefix}${i}`));
    if (b >= from && b < to) return `${prefix}${i}`;
  }
}
