/**
 * Allowed windows (`windows:` on an experiment): the hours in which its runs may start or continue,
 * e.g. the low-traffic nights `{days: mon-fri, from: "02:00", to: "05:00", timezone: Europe/Berlin}`.
 * Each window is two croner calendars in its time zone (the opening `MM HH * * DAYS`, the closing
 * `MM HH * * *`), so days, time zones and DST are croner's, never hand-written date arithmetic; a
 * window whose `to` is not after `from` runs overnight (it closes on the next day).
 *
 * - Outside every window a fresh run does not start: the config's start waits in `scheduled` (this
 *   guard starts it when a window opens), an operator's arm is refused (FL_OUTSIDE_WINDOW), and a
 *   schedule's window that opens outside them is skipped.
 * - A run in progress ends when its window closes: `expired`, judged by its evidence so far (as a
 *   duration's end is), never carried into the hours it was meant to stay out of.
 * The guard keeps each experiment's window status (inside, closes_at, next_open_at) in its lifecycle,
 * updated at every opening and closing on the injected clock.
 */
import type { Cron } from 'croner';
import type { ConfigSpec, ExperimentSpec } from '../config/schema.js';
import { log } from '../telemetry/log.js';
import { compileCron, nextFire, previousFire } from './cron.js';
import type { Clock } from './scheduler.js';
import type { ExperimentTable } from './table.js';

export interface WindowSpec {
  days: string;
  from: string;
  to: string;
  timezone: string;
}

/** What status and admin JSON show (`window` of an experiment with `windows:`). */
export interface WindowStatus {
  inside: boolean;
  /** Inside: when the current window closes. */
  closes_at: string | null;
  /** Outside: when the next window opens (null: none within a year). */
  next_open_at: string | null;
  windows: string[];
}

interface OneWindow {
  open: Cron;
  close: Cron;
  text: string;
}

export class AllowedWindows {
  private readonly list: OneWindow[];

  constructor(specs: readonly WindowSpec[]) {
    this.list = specs.map((w) => ({
      open: compileCron({ cron: cronAt(w.from, w.days), timezone: w.timezone }),
      close: compileCron({ cron: cronAt(w.to, '*'), timezone: w.timezone }),
      text: `${w.days} ${w.from}-${w.to} ${w.timezone}`,
    }));
  }

  /** When the window containing `t` closes (the latest, if several overlap); null when outside all. */
  closesAt(t: number): number | null {
    let end: number | null = null;
    for (const w of this.list) {
      const opened = previousFire(w.open, t);
      if (opened === null) continue;
      const closes = nextFire(w.close, opened);
      if (closes !== null && t < closes && (end === null || closes > end)) end = closes;
    }
    return end;
  }

  inside(t: number): boolean {
    return this.closesAt(t) !== null;
  }

  /** The first opening strictly after `t`. */
  nextOpen(t: number): number | null {
    let next: number | null = null;
    for (const w of this.list) {
      const at = nextFire(w.open, t);
      if (at !== null && (next === null || at < next)) next = at;
    }
    return next;
  }

  status(t: number): WindowStatus {
    const closes = this.closesAt(t);
    const open = closes === null ? this.nextOpen(t) : null;
    return {
      inside: closes !== null,
      closes_at: closes === null ? null : new Date(closes).toISOString(),
      next_open_at: open === null ? null : new Date(open).toISOString(),
      windows: this.list.map((w) => w.text),
    };
  }

  describe(): string {
    return this.list.map((w) => w.text).join(', ');
  }
}

/** "HH:MM" + croner day field -> "MM HH * * DAYS". */
function cronAt(hhmm: string, days: string): string {
  const [h, m] = hhmm.split(':');
  return `${Number(m)} ${Number(h)} * * ${days}`;
}

/** Why a window spec is unusable (config validation), or null. */
export function windowIssue(w: WindowSpec): string | null {
  try {
    new AllowedWindows([w]);
    return null;
  } catch (err) {
    return `days "${w.days}": ${(err as Error).message}`;
  }
}

const compiled = new WeakMap<ExperimentSpec, AllowedWindows | null>();

/** An experiment's allowed windows (compiled once per spec object), or null when it has none. */
export function windowsOf(spec: ExperimentSpec): AllowedWindows | null {
  let w = compiled.get(spec);
  if (w === undefined) {
    w = spec.windows !== undefined && spec.windows.length > 0 ? new AllowedWindows(spec.windows) : null;
    compiled.set(spec, w);
  }
  return w;
}

/** Timers are re-armed at least this often (long waits, clock changes). */
const MAX_WAIT_MS = 3_600_000;

/** Starts waiting runs when a window opens, ends runs when it closes; keeps the window status. */
export class WindowGuard {
  private readonly table: ExperimentTable;
  private readonly clock: Clock;
  private readonly timers = new Map<string, unknown>();
  private ids: string[] = [];
  private stopped = false;

  constructor(table: ExperimentTable, clock: Clock) {
    this.table = table;
    this.clock = clock;
    table.on('run_ended', (rt) => {
      if (windowsOf(rt.spec) !== null) queueMicrotask(() => this.reconcile(rt.id));
    });
    table.on('event', (e) => {
      const rt = e.experiment !== undefined ? table.get(e.experiment) : undefined;
      if ((e.type === 'armed' || e.type === 'started') && rt && windowsOf(rt.spec) !== null)
        queueMicrotask(() => this.reconcile(rt.id));
    });
  }

  apply(cfg: ConfigSpec): void {
    for (const id of [...this.timers.keys()]) this.clearTimer(id);
    this.ids = cfg.experiments.filter((e) => windowsOf(e) !== null).map((e) => e.id);
    for (const id of this.ids) this.reconcile(id);
  }

  private reconcile(id: string): void {
    if (this.stopped || !this.ids.includes(id)) return;
    const rt = this.table.get(id);
    const w = rt ? windowsOf(rt.spec) : null;
    const life = this.table.lifecycleOf(id);
    if (!rt || w === null || life === undefined) return;
    this.clearTimer(id);
    const now = this.clock.now();
    const status = w.status(now);
    life.window = status;
    if (rt.assigning) {
      if (!status.inside) return this.table.complete(id, `its allowed window closed (${w.describe()})`);
      const closes = Date.parse(status.closes_at as string);
      return this.arm(id, closes - now);
    }
    // The config's start of an unscheduled experiment waits for a window (table.start put it here).
    if (rt.state === 'scheduled' && rt.spec.schedule === undefined) {
      if (status.inside) {
        const closes = Date.parse(status.closes_at as string);
        const endsAt = Math.min(closes, now + (rt.durationMs ?? Number.POSITIVE_INFINITY));
        this.table
          .startRun(id, 'config', endsAt)
          .catch((err: unknown) =>
            log('error', 'run not started at its window: state not saved', {
              experiment: id,
              error: (err as Error).message,
            }),
          )
          .finally(() => this.reconcile(id));
        return;
      }
      this.table.toScheduled(id, status.next_open_at === null ? null : Date.parse(status.next_open_at));
    }
    // Between runs: wake at the next transition so the status stays true.
    const next = status.inside
      ? Date.parse(status.closes_at as string)
      : Date.parse(status.next_open_at ?? '');
    if (Number.isFinite(next)) this.arm(id, next - now);
  }

  private arm(id: string, delayMs: number): void {
    const rt = this.table.get(id);
    // A run started in the window ends at its own duration too (startRun sets no duration timer).
    const life = this.table.lifecycleOf(id);
    const own = rt?.assigning === true && rt.spec.schedule === undefined;
    if (own && life?.endsAt) delayMs = Math.min(delayMs, Date.parse(life.endsAt) - this.clock.now());
    const h = this.clock.setTimeout(
      () => {
        this.timers.delete(id);
        const r = this.table.get(id);
        const l = this.table.lifecycleOf(id);
        const ownEnd = r?.assigning === true && r.spec.schedule === undefined && l?.endsAt;
        const now = this.clock.now();
        // The window's close wins when both fall due (reconcile ends the run with that reason).
        if (ownEnd && Date.parse(ownEnd) <= now && r !== undefined && windowsOf(r.spec)?.inside(now))
          this.table.complete(id, 'duration elapsed');
        this.reconcile(id);
      },
      Math.max(0, Math.min(delayMs, MAX_WAIT_MS)),
    );
    this.timers.set(id, h);
  }

  private clearTimer(id: string): void {
    const h = this.timers.get(id);
    if (h !== undefined) this.clock.clearTimeout(h);
    this.timers.delete(id);
  }

  stop(): void {
    this.stopped = true;
    for (const id of [...this.timers.keys()]) this.clearTimer(id);
  }
}
