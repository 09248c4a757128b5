/** Drop the connection without a response (HTTP/2: RST_STREAM on that one stream only). */
export function resetFault() {
    return {
        kind: 'reset',
        start: (ex) => ex.resetClient(),
        holdEnded: () => undefined,
    };
}
//# sourceMappingURL=reset.js.map