const levelRank = { debug: 10, info: 20, warn: 30, error: 40 };
let minRank = levelRank[process.env['FAULTLINE_LOG_LEVEL'] ?? 'info'] ?? 20;
let sink = (line) => process.stderr.write(line + '\n');
export function setLogLevel(level) {
    minRank = levelRank[level];
}
/** Tests capture log lines through this. */
export function setLogSink(fn) {
    sink = fn;
}
export function log(level, msg, fields) {
    if (levelRank[level] < minRank)
        return;
    sink(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }));
}
//# sourceMappingURL=log.js.map