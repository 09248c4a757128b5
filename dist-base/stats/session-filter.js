// "At most one bad event per session" for sticky assignment (statistics.md §6.0: with per-session
// randomisation, errors cluster in sessions and a request-level count reached 42.9 % A/A false trips;
// counting each session once restored 0.15 %).
//
// Bounded memory: a one-hash Bloom bitset (default 2^20 bits = 128 KiB) instead of an exact set.
// Tradeoff: a false positive (bit already set by another session) drops a genuine first event. The
// hash is re-mixed, so the drop is independent of the event's arm: it costs power, never validity.
// The drop probability is the fill fraction: ~1 % after 10k distinct bad sessions per guardrail and
// ~9 % after 100k; experiments that large already have ample evidence.
import { fmix32 as mix32 } from '../split/hash.js';
const DEFAULT_LOG2_BITS = 20;
export class SessionFilter {
    words;
    shift;
    /** sessions recorded so far (for the fill-fraction estimate) */
    inserted = 0;
    constructor(log2Bits = DEFAULT_LOG2_BITS) {
        if (!(log2Bits >= 5 && log2Bits <= 30))
            throw new RangeError('log2Bits must be in [5, 30]');
        this.words = new Uint32Array(2 ** (log2Bits - 5));
        this.shift = 32 - log2Bits;
    }
    /** True the first time (key, arm) is seen; marks it. */
    firstTime(key, isCanary) {
        const bit = mix32((key ^ (isCanary ? 0x9e3779b9 : 0x7f4a7c15)) >>> 0) >>> this.shift;
        const w = bit >>> 5;
        const mask = 1 << (bit & 31);
        const cur = this.words[w] ?? 0;
        if ((cur & mask) !== 0)
            return false;
        this.words[w] = cur | mask;
        this.inserted++;
        return true;
    }
}
//# sourceMappingURL=session-filter.js.map