/**
 * Schedules: experiments with `schedule:` run in windows (a cron expression opens one, `for` closes it).
 * Between windows they wait in `scheduled`; each window starts one fresh run and ends it when the window
 * closes (or sooner, at the experiment's own duration). Experiments naming the same top-level schedule
 * take turns, one per window: in config order after the one that ran last, or a seeded random pick.
 * A killed member pauses its whole schedule until an operator arms it (no automatic re-run of a known
 * failure). All state is derived from the table (states, start times; persisted), so a restart keeps
 * the rotation and the pause. Time comes from an injected clock; croner only does the calendar.
 */
import type { Cron } from 'croner';
import type { ConfigSpec, ExperimentSpec } from '../config/schema.js';
import { fnv1a } from '../split/hash.js';
import { log } from '../telemetry/log.js';
import { compileCron, nextFire, previousFire } from './cron.js';
import type { ExperimentTable } from './table.js';
import { windowsOf } from './windows.js';

/**
 * Fleet mode: decides a window's run once for the whole fleet. Given the local pick, resolves to the
 * member every replica runs in the window opening at `windowStart` (the first claim wins), or null
 * when none may run (a member is killed fleet-wide). Rejects when the fleet cannot be asked: no run
 * starts then (a replica cut off from the fleet injects nothing anyway).
 */
export type WindowClaim = (
  schedule: string,
  windowStart: number,
  pick: string,
  members: readonly string[],
  ttlMs: number,
) => Promise<string | null>;

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Timers are re-armed at least this often (long waits, clock changes). */
const MAX_WAIT_MS = 3_600_000;

interface Compiled {
  name: string;
  cron: Cron;
  forMs: number;
  order: 'in_turn' | 'random';
  seed: number;
  /** Member experiment ids, in config order. */
  members: string[];
  /** Members' own durations (a run ends at the earlier of its duration and the window's end). */
  durations: Map<string, number | undefined>;
  key: string;
}

export class Scheduler {
  private readonly table: ExperimentTable;
  private readonly clock: Clock;
  private schedules = new Map<string, Compiled>();
  private readonly timers = new Map<string, unknown>();
  private stopped = false;
  /** Set in fleet mode (src/fleet): one run per window fleet-wide instead of one per replica. */
  claim: WindowClaim | null = null;

  constructor(table: ExperimentTable, clock: Clock = realClock) {
    this.table = table;
    this.clock = clock;
    // A scheduled run that ended waits for the next window; a kill pauses the schedule.
    table.on('run_ended', (rt) => {
      const s = this.scheduleOf(rt.spec);
      if (s) queueMicrotask(() => this.reconcile(s));
    });
    // Armed by an operator: a paused schedule resumes.
    table.on('event', (e) => {
      const spec = e.type === 'armed' && e.experiment ? table.get(e.experiment)?.spec : undefined;
      const s = spec ? this.scheduleOf(spec) : undefined;
      if (s) queueMicrotask(() => this.reconcile(s));
    });
  }

  private scheduleOf(spec: ExperimentSpec): Compiled | undefined {
    if (spec.schedule === undefined) return undefined;
    return this.schedules.get(typeof spec.schedule === 'string' ? spec.schedule : `experiment:${spec.id}`);
  }

  /** After each config (re)load, once the table holds the new experiments. */
  apply(cfg: ConfigSpec): void {
    const next = new Map<string, Compiled>();
    for (const e of cfg.experiments) {
      if (e.schedule === undefined || !e.enabled) continue;
      const named =
        typeof e.schedule === 'string' ? cfg.schedules.find((s) => s.name === e.schedule) : undefined;
      const spec = typeof e.schedule === 'string' ? named : e.schedule;
      if (!spec) continue;
      const name = typeof e.schedule === 'string' ? e.schedule : `experiment:${e.id}`;
      let c = next.get(name);
      if (!c) {
        c = {
          name,
          cron: compileCron(spec),
          forMs: spec.for,
          order: named?.order ?? 'in_turn',
          seed: named?.seed ?? 1,
          members: [],
          durations: new Map(),
          key: JSON.stringify(spec),
        };
        next.set(name, c);
      }
      c.members.push(e.id);
      c.durations.set(e.id, e.duration);
    }
    for (const name of this.schedules.keys()) this.clearTimer(name);
    this.schedules = next;
    for (const s of next.values()) this.reconcile(s);
  }

  /** Brings one schedule's members in line with the clock and sets its next timer. */
  private reconcile(s: Compiled): void {
    if (this.stopped || this.schedules.get(s.name) !== s) return;
    this.clearTimer(s.name);
    const now = this.clock.now();
    const windowStart = previousFire(s.cron, now);
    const windowEnd = windowStart === null ? null : windowStart + s.forMs;
    let running: string | null = null;
    for (const id of s.members) {
      const rt = this.table.get(id);
      if (!rt?.assigning) continue;
      const startedAt = Date.parse(this.table.lifecycleOf(id)?.startedAt ?? '');
      // A run resumed after a restart belongs to the window it started in; past that window it ends now.
      if (windowStart === null || windowEnd === null || now >= windowEnd || !(startedAt >= windowStart)) {
        this.table.complete(id, 'its schedule window ended');
        continue;
      }
      running = id;
    }
    if (running !== null) {
      const endsAt = this.endOf(s, running, windowEnd as number);
      this.arm(s, endsAt - now);
      return;
    }
    const killed = s.members.find((id) => this.table.get(id)?.state === 'killed');
    if (killed !== undefined) {
      for (const id of s.members) this.table.schedulePaused(id, this.pausedReason(s, killed));
      return;
    }
    const fire = this.nextAllowedFire(s, now);
    for (const id of s.members) {
      const st = this.table.get(id)?.state;
      // An expired run of a scheduled experiment goes back to waiting.
      if (st === 'scheduled' || st === 'expired') this.table.toScheduled(id, fire);
    }
    if (fire !== null) this.arm(s, fire - now);
  }

  private pausedReason(s: Compiled, killed: string): string {
    const life = this.table.lifecycleOf(killed);
    return `schedule ${s.name} paused: ${killed} was killed (${life?.cause ?? 'manual'}: ${life?.reason ?? ''}); \`faultline arm ${killed}\` resumes it`;
  }

  private endOf(s: Compiled, id: string, windowEnd: number): number {
    const d = s.durations.get(id);
    const started = Date.parse(this.table.lifecycleOf(id)?.startedAt ?? '');
    return d !== undefined && Number.isFinite(started) ? Math.min(windowEnd, started + d) : windowEnd;
  }

  private arm(s: Compiled, delayMs: number): void {
    const h = this.clock.setTimeout(() => this.tick(s), Math.max(0, Math.min(delayMs, MAX_WAIT_MS)));
    this.timers.set(s.name, h);
  }

  /** A timer fired: a window opens, a run's end is due, or a long wait is re-checked. */
  private tick(s: Compiled): void {
    this.timers.delete(s.name);
    if (this.stopped || this.schedules.get(s.name) !== s) return;
    const now = this.clock.now();
    const windowStart = previousFire(s.cron, now);
    const running = s.members.find((id) => this.table.get(id)?.assigning === true);
    if (running !== undefined) {
      const end = windowStart === null ? now : this.endOf(s, running, windowStart + s.forMs);
      if (now >= end) this.table.complete(running, 'its schedule window ended');
      return this.reconcile(s);
    }
    // Opened just now (this tick is the window's start), not a long wait re-checked mid-window.
    if (windowStart !== null && now - windowStart < 1000) {
      const local = this.pick(s, windowStart, now);
      if (local === null) {
        const outside = s.members.find((id) => this.table.get(id)?.state === 'scheduled');
        if (outside !== undefined)
          this.table.note({
            type: 'not_started',
            experiment: outside,
            reason: `schedule ${s.name}: the window opening at ${new Date(windowStart).toISOString()} is outside the allowed windows`,
            by: 'schedule',
          });
      }
      if (local !== null) {
        const claimed = this.claim
          ? this.claim(s.name, windowStart, local, s.members, s.forMs + 60_000)
          : Promise.resolve(local);
        claimed
          .then((pick) => {
            if (pick === null || this.stopped) return false;
            const picked = this.table.get(pick);
            const allowedClose = picked ? windowsOf(picked.spec)?.closesAt(now) : null;
            const endsAt = Math.min(
              windowStart + s.forMs,
              now + (s.durations.get(pick) ?? Number.POSITIVE_INFINITY),
              allowedClose ?? Number.POSITIVE_INFINITY,
            );
            // The run is named by its window's opening: in a fleet every replica starts the same run.
            return this.table.startRun(pick, `schedule:${s.name}`, endsAt, windowStart);
          })
          .then((ok) => {
            if (!ok) log('info', 'scheduled run not started here', { schedule: s.name, pick: local });
            this.reconcile(s);
          })
          .catch((err: unknown) => {
            log('error', 'scheduled run not started: its claim or record failed', {
              schedule: s.name,
              experiment: local,
              error: (err as Error).message,
            });
            this.reconcile(s);
          });
        return;
      }
    }
    this.reconcile(s);
  }

  /** The member that runs in the window opening at `windowStart`. */
  private pick(s: Compiled, windowStart: number, now: number): string | null {
    const ready = s.members.filter(
      (id) => this.table.get(id)?.state === 'scheduled' && this.allowed(id, now),
    );
    if (ready.length === 0) return null;
    if (s.order === 'random') return ready[fnv1a(`${s.seed}:${windowStart}`) % ready.length] ?? null;
    // In turn: the member after the one that started last (start times survive restarts).
    let last = -1;
    let lastAt = -Infinity;
    s.members.forEach((id, i) => {
      const at = Date.parse(this.table.lifecycleOf(id)?.startedAt ?? '');
      if (at > lastAt) {
        lastAt = at;
        last = i;
      }
    });
    for (let k = 1; k <= s.members.length; k++) {
      const id = s.members[(last + k) % s.members.length] as string;
      if (ready.includes(id)) return id;
    }
    return null;
  }

  /** Inside the experiment's allowed `windows:` at `t` (always, without them). */
  private allowed(id: string, t: number): boolean {
    const rt = this.table.get(id);
    const w = rt ? windowsOf(rt.spec) : null;
    return w === null || w.inside(t);
  }

  /** The next opening at which some member may run (its allowed windows), within 1000 openings. */
  private nextAllowedFire(s: Compiled, now: number): number | null {
    let t = now;
    for (let i = 0; i < 1000; i++) {
      const f = nextFire(s.cron, t);
      if (f === null || s.members.some((id) => this.allowed(id, f))) return f;
      t = f;
    }
    return null;
  }

  private clearTimer(name: string): void {
    const h = this.timers.get(name);
    if (h !== undefined) this.clock.clearTimeout(h);
    this.timers.delete(name);
  }

  stop(): void {
    this.stopped = true;
    for (const name of [...this.timers.keys()]) this.clearTimer(name);
  }
}
