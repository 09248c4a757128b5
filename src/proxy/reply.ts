/** Replies Faultline writes itself: errors (502/504/...) and injected responses. */
import type { ServerResponse } from 'node:http';
import { constants as h2constants, type ServerHttp2Stream } from 'node:http2';

/** Stable codes sent in `x-faultline-error`, one per failure. */
export type ProxyErrorCode =
  | 'no_route'
  | 'bad_request'
  | 'upstream_refused'
  | 'upstream_unreachable'
  | 'upstream_timeout'
  | 'upstream_reset'
  | 'upstream_protocol'
  | 'request_timeout'
  | 'header_too_large'
  | 'http_version'
  | 'duplicate_host'
  | 'unsupported_coding'
  | 'internal';

/** Status and body of each code (exported for the docs check). */
export const MESSAGES: Readonly<Record<ProxyErrorCode, [number, string]>> = {
  no_route: [404, 'no route matches this request\n'],
  bad_request: [400, 'bad request\n'],
  upstream_refused: [502, 'upstream refused the connection\n'],
  upstream_unreachable: [502, 'upstream unreachable\n'],
  upstream_timeout: [504, 'upstream did not answer in time\n'],
  upstream_reset: [502, 'upstream closed the connection before answering\n'],
  upstream_protocol: [502, 'upstream sent an invalid response\n'],
  request_timeout: [408, 'request not received in time (too slow)\n'],
  header_too_large: [431, 'request head too large (over 16 KiB or 1000 header lines)\n'],
  http_version: [505, 'only HTTP/1.0 and HTTP/1.1 are served on this port\n'],
  duplicate_host: [400, 'more than one Host header\n'],
  unsupported_coding: [501, 'transfer coding not supported (only chunked)\n'],
  internal: [500, 'internal error\n'],
};

/**
 * Answers with the error's status and a short text body; `marks` are extra headers (the experiment's
 * response marks). Once a response's headers are out no error can be told honestly: the connection is
 * broken instead (status 0), never a body that looks complete.
 */
export function replyError(
  res: ServerResponse,
  code: ProxyErrorCode,
  marks: Readonly<Record<string, string>> | null = null,
): number {
  if (res.headersSent) {
    res.destroy();
    return 0;
  }
  const [status, body] = MESSAGES[code];
  res.writeHead(status, {
    ...marks,
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-faultline-error': code,
    'cache-control': 'no-store',
  });
  res.end(body);
  return status;
}

/** replyError on an HTTP/2 stream (served without the compat layer): RST_STREAM once headers are out. */
export function replyErrorH2(
  stream: ServerHttp2Stream,
  code: ProxyErrorCode,
  marks: Readonly<Record<string, string>> | null = null,
): number {
  if (stream.headersSent) {
    if (!stream.destroyed) stream.close(h2constants.NGHTTP2_INTERNAL_ERROR);
    return 0;
  }
  const [status, body] = MESSAGES[code];
  // A stream the client already reset cannot be answered; its close event ends the exchange.
  if (stream.destroyed || stream.closed) return status;
  stream.respond({
    ...marks,
    ':status': status,
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-faultline-error': code,
    'cache-control': 'no-store',
  });
  // respond() already ended a HEAD response: no body may follow.
  if (!stream.writableEnded) stream.end(body);
  return status;
}
