/**
 * The one duration grammar, for the config (`duration: 10m`) and every command line (`--duration 10s`):
 * a decimal number and a unit, `ms`, `s`, `m` or `h`. A bare number on a command line is refused (it
 * meant seconds to the load generator and milliseconds to the config); in YAML a number is milliseconds.
 */
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

export const DURATION_HINT = 'a duration like "500ms", "30s", "10m" or "2h"';

/** Milliseconds (rounded), or NaN when `text` is not a duration. */
export function parseDurationMs(text: string): number {
  const m = DURATION.exec(text.trim());
  if (m === null) return NaN;
  return Math.round(Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS]);
}
