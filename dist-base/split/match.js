import { rawHeader } from '../proxy/raw-headers.js';
export function compileMatcher(match) {
    return Object.freeze({
        listener: match.listener ?? null,
        route: match.route ?? null,
        methods: match.methods ? new Set(match.methods) : null,
        pathPrefix: match.path_prefix ?? null,
        headers: Object.entries(match.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
    });
}
/** Listener and route are resolved at compile time; this checks the per-request parts. */
export function matchesRequest(m, method, url, rawHeaders) {
    if (m.methods !== null && !m.methods.has(method))
        return false;
    if (m.pathPrefix !== null && !url.startsWith(m.pathPrefix))
        return false;
    for (let i = 0; i < m.headers.length; i++) {
        const h = m.headers[i];
        if (rawHeader(rawHeaders, h[0]) !== h[1])
            return false;
    }
    return true;
}
//# sourceMappingURL=match.js.map