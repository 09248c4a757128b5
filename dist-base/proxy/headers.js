export const VIA = '1.1 faultline';
/** Field names that are connection-specific. Proxy-* is matched by prefix. */
function isHopByHop(lower) {
    switch (lower) {
        case 'connection':
        case 'keep-alive':
        case 'te':
        case 'trailer':
        case 'transfer-encoding':
        case 'upgrade':
        case 'http2-settings':
            return true;
        default:
            return lower.startsWith('proxy-');
    }
}
/** Extra names listed in `Connection` (other than close/keep-alive), lower-cased; null when none. */
function connectionTokens(value) {
    // The usual values name no extra field: skip the split.
    if (value.length <= 10 && /^(keep-alive|close)$/i.test(value))
        return null;
    let out = null;
    for (const raw of value.split(',')) {
        const t = raw.trim().toLowerCase();
        if (t === '' || t === 'close' || t === 'keep-alive')
            continue;
        (out ??= new Set()).add(t);
    }
    return out;
}
/**
 * Builds the upstream request headers as a flat [name, value, ...] list from the client's raw headers,
 * preserving order, case and repeats, dropping hop-by-hop fields and appending forwarding fields.
 */
export function buildUpstreamHeaders(raw, ctx) {
    const out = [];
    ctx.hasBody = false;
    let xff = null;
    let host = null;
    let via = null;
    let connection = null;
    let cookie = null;
    for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i];
        const value = raw[i + 1];
        if (name.charCodeAt(0) === 58 /* ':' */) {
            // HTTP/2 pseudo-headers: only :authority carries over, as Host (RFC 9113 §8.3.1).
            if (name === ':authority' && host === null) {
                host = value;
                out.push('host', value);
            }
            continue;
        }
        const lower = name.toLowerCase();
        switch (lower) {
            case 'connection':
                connection = connection === null ? value : `${connection},${value}`;
                continue;
            case 'transfer-encoding':
                ctx.hasBody = true;
                continue;
            case 'content-length':
                if (value !== '0')
                    ctx.hasBody = true;
                break;
            case 'x-forwarded-for':
                xff = xff === null ? value : `${xff}, ${value}`;
                continue;
            case 'via':
                via = via === null ? value : `${via}, ${value}`;
                continue;
            case 'x-forwarded-proto':
            case 'x-forwarded-host':
                continue;
            case 'expect':
                // Node's server already answered `100-continue` to the client; the upstream gets the body
                // straight away (undici refuses Expect on HTTP/1.1).
                continue;
            case 'baggage':
                if (ctx.baggage !== null)
                    continue;
                break;
            case 'cookie':
                // HTTP/2 splits Cookie into crumbs; HTTP/1.1 needs one field joined with "; " (RFC 9113 §8.2.3).
                if (ctx.joinCookies) {
                    cookie = cookie === null ? value : `${cookie}; ${value}`;
                    continue;
                }
                break;
            case 'host':
                if (host !== null)
                    continue;
                host = value;
                break;
            case 'te':
                if (ctx.teTrailers && /\btrailers\b/i.test(value))
                    out.push('te', 'trailers');
                continue;
            default:
                if (isHopByHop(lower))
                    continue;
        }
        out.push(name, value);
    }
    // Names listed in Connection are hop-by-hop too (RFC 9110 §7.6.1); rare, so filtered afterwards.
    const listed = connection === null ? null : connectionTokens(connection);
    if (listed !== null) {
        for (let i = out.length - 2; i >= 0; i -= 2)
            if (listed.has(out[i].toLowerCase()))
                out.splice(i, 2);
    }
    if (cookie !== null)
        out.push('cookie', cookie);
    out.push('x-forwarded-for', xff === null ? ctx.clientIp : `${xff}, ${ctx.clientIp}`);
    out.push('x-forwarded-proto', ctx.proto);
    if (host !== null)
        out.push('x-forwarded-host', host);
    out.push('via', via === null ? VIA : `${via}, ${VIA}`);
    if (ctx.baggage !== null && ctx.baggage !== '')
        out.push('baggage', ctx.baggage);
    return out;
}
/**
 * The upstream response's headers for the client: hop-by-hop fields dropped, `via` appended and, for
 * injected responses, the injection mark. Copies into a fresh object rather than deleting in place
 * (delete turns the object into a slow dictionary that Node then has to iterate).
 */
export function clientResponseHeaders(headers, injectedMark, armMark, toH2) {
    const conn = headers['connection'];
    const listed = conn === undefined ? null : connectionTokens(Array.isArray(conn) ? conn.join(',') : conn);
    const out = {};
    for (const name in headers) {
        if (isHopByHop(name) || (listed !== null && listed.has(name)))
            continue;
        const value = headers[name];
        // HTTP/2 refuses repeats of single-value fields; an HTTP/1.1 upstream may send them. Joined as a
        // list (RFC 9110 §5.3), except Set-Cookie, which HTTP/2 carries as separate fields.
        out[name] = toH2 && Array.isArray(value) && name !== 'set-cookie' ? value.join(', ') : value;
    }
    const via = headers['via'];
    out['via'] = via === undefined ? VIA : `${Array.isArray(via) ? via.join(', ') : via}, ${VIA}`;
    if (injectedMark !== null)
        out['x-faultline-injected'] = injectedMark;
    if (armMark !== null)
        out['x-faultline-arm'] = armMark;
    return out;
}
//# sourceMappingURL=headers.js.map