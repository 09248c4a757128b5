/**
 * Answer without contacting the upstream: an HTTP status, or for gRPC calls a trailers-only response
 * (HTTP 200 + grpc-status, per the gRPC HTTP/2 protocol spec) when `grpc_status` is set.
 */
export function abortFault(spec) {
    const status = spec.status ?? 503;
    const body = spec.body ?? (spec.message !== undefined ? `${spec.message}\n` : `injected fault: HTTP ${status}\n`);
    const headers = { 'content-type': 'text/plain; charset=utf-8', ...spec.headers };
    const grpcStatus = spec.grpc_status;
    const grpcMessage = spec.message ?? 'injected fault';
    return {
        kind: 'abort',
        start: (ex) => {
            if (grpcStatus !== undefined && ex.isGrpc)
                ex.replyGrpcStatus(grpcStatus, grpcMessage);
            else
                ex.replyInjected(status, headers, body);
        },
        holdEnded: () => undefined,
    };
}
//# sourceMappingURL=abort.js.map