/**
 * Cron expressions, through croner (https://github.com/hexagon/croner): maintained, no dependencies,
 * IANA time zones and DST handled, and it computes the next and previous fire times for any instant,
 * so the scheduler runs on an injected clock and never uses croner's own timers. Chosen over
 * cron-parser, which pulls in luxon for time zones.
 */
import { Cron } from 'croner';

export interface CronSpec {
  cron: string;
  timezone: string;
}

/** A paused croner job: only its calendar arithmetic is used. */
export function compileCron(spec: CronSpec): Cron {
  return new Cron(spec.cron, { timezone: spec.timezone, paused: true });
}

/** Why `expr` (in time zone `tz`) is not usable; null when it is. */
export function cronIssue(expr: string, tz: string | undefined): string | null {
  try {
    const c = new Cron(expr, { paused: true, ...(tz !== undefined ? { timezone: tz } : {}) });
    if (c.nextRun(new Date(0)) === null) return 'never fires';
    return null;
  } catch (err) {
    return `invalid cron expression: ${(err as Error).message}`;
  }
}

/** The first fire time strictly after `afterMs`, or null. */
export function nextFire(c: Cron, afterMs: number): number | null {
  return c.nextRun(new Date(afterMs))?.getTime() ?? null;
}

/** The last fire time at or before `atMs` (within a year), or null. */
export function previousFire(c: Cron, atMs: number): number | null {
  const runs = c.previousRuns(1, new Date(atMs + 1));
  return runs[0]?.getTime() ?? null;
}
