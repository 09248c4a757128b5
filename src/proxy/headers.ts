/**
 * Header rewriting for the forward and return legs (RFC 9110 §7.6.1: hop-by-hop fields are not
 * forwarded; RFC 7239-style x-forwarded-* and `via` are added).
 */
import type { IncomingHttpHeaders } from 'node:http';

export const VIA = '1.1 faultline';

/** Field names that are connection-specific. Proxy-* is matched by prefix. */
function isHopByHop(lower: string): boolean {
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

/** The list carries an HTTP/2 :authority (pseudo-headers come first; only reached on a second Host). */
function hasAuthority(raw: readonly string[]): boolean {
  for (let i = 0; i < raw.length && (raw[i] as string).charCodeAt(0) === 58; i += 2)
    if (raw[i] === ':authority') return true;
  return false;
}

/** Extra names listed in `Connection` (other than close/keep-alive), lower-cased; null when none. */
function connectionTokens(value: string): Set<string> | null {
  // The usual values name no extra field: skip the split.
  if (value.length <= 10 && /^(keep-alive|close)$/i.test(value)) return null;
  let out: Set<string> | null = null;
  for (const raw of value.split(',')) {
    const t = raw.trim().toLowerCase();
    if (t === '' || t === 'close' || t === 'keep-alive') continue;
    (out ??= new Set()).add(t);
  }
  return out;
}

export interface ForwardContext {
  clientIp: string;
  proto: 'http' | 'https';
  /** Value to write as `baggage`, or null to forward the incoming one unchanged. */
  baggage: string | null;
  /** Join HTTP/2 cookie crumbs into one field (HTTP/2 client, HTTP/1.1 upstream). */
  joinCookies: boolean;
  /** Output: whether the client's request has a body (Content-Length > 0 or Transfer-Encoding). */
  hasBody: boolean;
  /**
   * The upstream speaks HTTP/2: `te: trailers` is the one TE value HTTP/2 allows (RFC 9113 §8.2.2),
   * and gRPC servers require it, so it is forwarded instead of dropped as hop-by-hop.
   */
  teTrailers: boolean;
  /**
   * Output: why the request must not be forwarded (null: it may). Found in the same pass that copies
   * the headers, so a normal request pays nothing for it: a second Host line (RFC 9112 §3.2: 400), or
   * a transfer coding other than chunked (Node decodes only chunked: `gzip, chunked` would reach the
   * upstream still gzipped and undeclared; RFC 9112 §6.1: 501).
   */
  refusal: 'duplicate_host' | 'unsupported_coding' | null;
}

/**
 * Builds the upstream request headers as a flat [name, value, ...] list from the client's raw headers,
 * preserving order, case and repeats, dropping hop-by-hop fields and appending forwarding fields.
 */
export function buildUpstreamHeaders(raw: readonly string[], ctx: ForwardContext): string[] {
  const out: string[] = [];
  ctx.hasBody = false;
  ctx.refusal = null;
  let xff: string | null = null;
  let host: string | null = null;
  let via: string | null = null;
  let connection: string | null = null;
  let cookie: string | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
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
        if (value.length !== 7 || value.toLowerCase() !== 'chunked') ctx.refusal = 'unsupported_coding';
        continue;
      case 'content-length':
        if (value !== '0') ctx.hasBody = true;
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
        if (ctx.baggage !== null) continue;
        break;
      case 'cookie':
        // HTTP/2 splits Cookie into crumbs; HTTP/1.1 needs one field joined with "; " (RFC 9113 §8.2.3).
        if (ctx.joinCookies) {
          cookie = cookie === null ? value : `${cookie}; ${value}`;
          continue;
        }
        break;
      case 'host':
        if (host !== null) {
          // HTTP/2 may send Host beside :authority; a second Host line in HTTP/1.1 is malformed.
          if (!hasAuthority(raw)) ctx.refusal = 'duplicate_host';
          continue;
        }
        host = value;
        break;
      case 'te':
        if (ctx.teTrailers && /\btrailers\b/i.test(value)) out.push('te', 'trailers');
        continue;
      default:
        if (isHopByHop(lower)) continue;
    }
    out.push(name, value);
  }
  // Names listed in Connection are hop-by-hop too (RFC 9110 §7.6.1); rare, so filtered afterwards.
  const listed = connection === null ? null : connectionTokens(connection);
  if (listed !== null) {
    for (let i = out.length - 2; i >= 0; i -= 2)
      if (listed.has((out[i] as string).toLowerCase())) out.splice(i, 2);
  }
  if (cookie !== null) out.push('cookie', cookie);
  out.push('x-forwarded-for', xff === null ? ctx.clientIp : `${xff}, ${ctx.clientIp}`);
  out.push('x-forwarded-proto', ctx.proto);
  if (host !== null) out.push('x-forwarded-host', host);
  out.push('via', via === null ? VIA : `${via}, ${VIA}`);
  if (ctx.baggage !== null && ctx.baggage !== '') out.push('baggage', ctx.baggage);
  return out;
}

/**
 * The upstream response's headers for the client: hop-by-hop fields dropped, `via` appended and, for
 * injected responses, the injection mark. Copies into a fresh object rather than deleting in place
 * (delete turns the object into a slow dictionary that Node then has to iterate).
 */
export function clientResponseHeaders(
  headers: IncomingHttpHeaders,
  injectedMark: string | null,
  armMark: string | null,
  toH2: boolean,
): IncomingHttpHeaders {
  const conn = headers['connection'];
  const listed = conn === undefined ? null : connectionTokens(Array.isArray(conn) ? conn.join(',') : conn);
  const out: IncomingHttpHeaders = {};
  for (const name in headers) {
    if (isHopByHop(name) || (listed !== null && listed.has(name))) continue;
    const value = headers[name];
    // HTTP/2 refuses repeats of single-value fields; an HTTP/1.1 upstream may send them. Joined as a
    // list (RFC 9110 §5.3), except Set-Cookie, which HTTP/2 carries as separate fields.
    out[name] = toH2 && Array.isArray(value) && name !== 'set-cookie' ? value.join(', ') : value;
  }
  const via = headers['via'];
  out['via'] = via === undefined ? VIA : `${Array.isArray(via) ? via.join(', ') : via}, ${VIA}`;
  if (injectedMark !== null) out['x-faultline-injected'] = injectedMark;
  if (armMark !== null) out['x-faultline-arm'] = armMark;
  return out;
}
