/** Structured JSON logs, one line each. Nothing here runs per request unless the access log is on. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const levelRank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
let minRank = levelRank[(process.env['FAULTLINE_LOG_LEVEL'] as LogLevel | undefined) ?? 'info'] ?? 20;
let sink: (line: string) => void = (line) => process.stderr.write(line + '\n');

export function setLogLevel(level: LogLevel): void {
  minRank = levelRank[level];
}

/** Tests capture log lines through this. */
export function setLogSink(fn: (line: string) => void): void {
  sink = fn;
}

export function log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
  if (levelRank[level] < minRank) return;
  sink(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }));
}
