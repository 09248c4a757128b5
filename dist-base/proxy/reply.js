const MESSAGES = {
    no_route: [404, 'no route matches this request\n'],
    bad_request: [400, 'bad request\n'],
    upstream_refused: [502, 'upstream refused the connection\n'],
    upstream_unreachable: [502, 'upstream unreachable\n'],
    upstream_timeout: [504, 'upstream did not answer in time\n'],
    upstream_reset: [502, 'upstream closed the connection before answering\n'],
    upstream_protocol: [502, 'upstream sent an invalid response\n'],
};
/**
 * Answers with the error's status and a short text body; `marks` are extra headers (the experiment's
 * response marks). Once a response's headers are out no error can be told honestly: the connection is
 * broken instead (status 0), never a body that looks complete.
 */
export function replyError(res, code, marks = null) {
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
//# sourceMappingURL=reply.js.map