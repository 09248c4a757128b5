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

/**
 * At most `perInterval` lines per interval for events an attacker (or an outage) can repeat at will,
 * e.g. refused connections: the first ones are logged, the rest counted and reported with the next line.
 */
export class LogLimiter {
  private windowStartMs = 0;
  private inWindow = 0;
  /** Events not logged since the last line that was. */
  suppressed = 0;

  constructor(
    private readonly intervalMs = 10_000,
    private readonly perInterval = 5,
  ) {}

  /** True when this event may be logged now (then `suppressed` holds how many were skipped before). */
  allow(nowMs = Date.now()): boolean {
    if (nowMs - this.windowStartMs >= this.intervalMs) {
      this.windowStartMs = nowMs;
      this.inWindow = 0;
    }
    if (this.inWindow >= this.perInterval) {
      this.suppressed++;
      return false;
    }
    this.inWindow++;
    return true;
  }

  /** The suppressed count to report with the line being logged, reset to 0. */
  takeSuppressed(): number {
    const n = this.suppressed;
    this.suppressed = 0;
    return n;
  }
}
