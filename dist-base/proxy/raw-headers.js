/** Lookups in Node's flat rawHeaders list, so the hot path never builds a header object it does not need. */
/** First value of a header, by lower-case name; undefined when absent. */
export function rawHeader(raw, lowerName) {
    const len = lowerName.length;
    for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i];
        if (name.length === len && (name === lowerName || name.toLowerCase() === lowerName))
            return raw[i + 1];
    }
    return undefined;
}
/** All values of a header joined with ", " (RFC 9110 §5.3), by lower-case name; undefined when absent. */
export function rawHeaderJoined(raw, lowerName) {
    const len = lowerName.length;
    let out;
    for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i];
        if (name.length === len && (name === lowerName || name.toLowerCase() === lowerName))
            out = out === undefined ? raw[i + 1] : `${out}, ${raw[i + 1]}`;
    }
    return out;
}
/** Value of one cookie from the Cookie header(s); undefined when absent. */
export function rawCookie(raw, cookieName) {
    for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i];
        if (name.length !== 6 || name.toLowerCase() !== 'cookie')
            continue;
        const value = raw[i + 1];
        let start = 0;
        while (start < value.length) {
            let end = value.indexOf(';', start);
            if (end < 0)
                end = value.length;
            const eq = value.indexOf('=', start);
            if (eq > 0 && eq < end && value.slice(start, eq).trim() === cookieName)
                return value.slice(eq + 1, end).trim();
            start = end + 1;
        }
    }
    return undefined;
}
//# sourceMappingURL=raw-headers.js.map