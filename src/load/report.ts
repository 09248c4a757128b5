import { ArmStats, summarizeArm } from './arms.js';
import type { ArmSummary } from './arms.js';
import type { LoadGenerator, WarmupCounts } from './generator.js';
import type { LoadOptions } from './args.js';
import { adminArmSummary, armDelta } from './admin.js';
import type { AdminArmSummary, ExperimentSnapshot } from './admin.js';

export interface ExperimentReport {
  id: string;
  stateBefore: string | null;
  stateAfter: string | null;
  killed: boolean;
  /** Seconds into the run when the admin first showed state "killed". */
  killedAfterS: number | null;
  /** Change over the run of the admin's per-arm counters (quantiles: last value seen). */
  canary: Record<string, number>;
  control: Record<string, number>;
  /** Requests and error rate (error + timeout + reset outcomes) from the admin's counts. */
  canarySummary: AdminArmSummary | null;
  controlSummary: AdminArmSummary | null;
  /** Our completed requests the admin did not count in canary or control; null without `requests`. */
  untouched: number | null;
}

export interface AdminReport {
  url: string;
  error: string | null;
  experiments: ExperimentReport[];
}

export interface CanarySummary extends ArmSummary {
  /** Canary responses that carried the experiment's x-faultline-injected mark. */
  injected: number;
}

/** Where the report's control figures come from. */
export type ControlSource = 'client' | 'admin' | 'none';

/**
 * The generator's own health over the measured window. When `saturated`, the latencies measure the
 * generator (late sends, a busy event loop), not the target: `warnings` says which limit was passed.
 */
export interface GeneratorReport {
  achievedRatePerS: number;
  /** Actual send - scheduled send of measured requests: this much of every latency is the generator's. */
  sendLatenessMs: { p50: number; p99: number; max: number };
  /** Share of the measured window the generator's event loop was busy, 0..1. */
  eventLoopUtilization: number;
  /** Generator process CPU over the window, % of one core. */
  cpuPct: number;
  /** The generator's GC pauses in the window (each one is in every latency then in flight). */
  gcPausesMs: { count: number; total: number; max: number };
  /** --busy-poll: the loop never slept, so its utilisation and CPU are ~100% by design. */
  busyPoll: boolean;
  saturated: boolean;
  warnings: string[];
}

/**
 * Limits past which the generator, not the target, shapes the figures. Sends leave on a 1 ms timer,
 * so up to ~1 ms of lateness is the floor; past 2 ms at p99 the tail is being made by the generator.
 */
export const SATURATION = {
  latenessP99Ms: 2,
  /**
   * A longer GC pause is in the tail (and the max) of whatever was in flight. Steady-state scavenges
   * of this generator at 2,000 req/s are 1-2.5 ms about once a second (--trace-gc).
   */
  gcPauseMs: 5,
  eventLoopUtilization: 0.9,
  cpuPct: 90,
  /** Busy-polling takes a whole core; less means another process had part of it. */
  busyPollCpuPct: 80,
  /** achieved / requested below this */
  rateShortfall: 0.97,
} as const;

export interface LoadReport {
  target: string;
  method: string;
  ratePerS: number;
  durationS: number;
  /** Unrecorded warm-up before the measured window (same rate, same target); not in any figure below. */
  warmup: WarmupCounts & { durationS: number };
  concurrency: number;
  scheduled: number;
  sent: number;
  completed: number;
  dropped: number;
  errors: number;
  errorRate: number;
  transportErrors: number;
  elapsedS: number;
  /** sent / (time from first due send to last send + one interval) */
  achievedRatePerS: number;
  rateErrorPct: number;
  latencyMs: ArmSummary['latencyMs'];
  /** Responses that carried an x-faultline-arm mark (any experiment). */
  armMarked: number;
  /**
   * canary: x-faultline-arm group=canary or an injected mark; control: group=control; untouched:
   * neither. control and untouched are null when no response carried x-faultline-arm: the client
   * cannot tell them apart then, and `controlOrUntouched` holds both (see `controlSource`).
   */
  arms: {
    canary: CanarySummary;
    control: ArmSummary | null;
    untouched: ArmSummary | null;
    controlOrUntouched: ArmSummary;
  };
  /** Every response without a selected experiment's injected mark (the "non-faulted" traffic). */
  notInjected: ArmSummary;
  controlSource: ControlSource;
  /** Control from the admin's counts when the client cannot see it (needs --admin, one experiment). */
  adminControl: (AdminArmSummary & { experiment: string; untouched: number | null }) | null;
  injectedBy: Record<string, number>;
  admin: AdminReport | null;
  killed: boolean;
  generator: GeneratorReport;
}

export interface AdminTrack {
  url: string;
  error: string | null;
  before: ExperimentSnapshot[] | null;
  after: ExperimentSnapshot[] | null;
  killedAfterS: Map<string, number>;
}

function experimentReports(
  track: AdminTrack,
  only: string | undefined,
  completed: number,
): ExperimentReport[] {
  const ids = new Set<string>();
  for (const e of [...(track.before ?? []), ...(track.after ?? [])]) ids.add(e.id);
  const out: ExperimentReport[] = [];
  for (const id of ids) {
    if (only !== undefined && id !== only) continue;
    const b = track.before?.find((e) => e.id === id);
    const a = track.after?.find((e) => e.id === id);
    const canary = armDelta(b?.arms['canary'], a?.arms['canary']);
    const control = armDelta(b?.arms['control'], a?.arms['control']);
    const counted =
      canary['requests'] !== undefined && control['requests'] !== undefined
        ? canary['requests'] + control['requests']
        : undefined;
    const killedAt = track.killedAfterS.get(id);
    out.push({
      id,
      stateBefore: b?.state ?? null,
      stateAfter: a?.state ?? null,
      killed: killedAt !== undefined,
      killedAfterS: killedAt ?? null,
      canary,
      control,
      canarySummary: adminArmSummary(canary),
      controlSummary: adminArmSummary(control),
      untouched: counted === undefined ? null : completed - counted,
    });
  }
  return out;
}

function generatorReport(
  gen: LoadGenerator,
  ratePerS: number,
  achieved: number,
  dropped: number,
): GeneratorReport {
  const h = gen.health();
  const l = gen.lateness;
  const ms = (us: number): number => (Number.isFinite(us) ? Math.round(us) / 1000 : Number.NaN);
  const lateness = {
    p50: ms(l.quantileUs(0.5)),
    p99: ms(l.quantileUs(0.99)),
    max: ms(l.count === 0 ? Number.NaN : l.maxUs),
  };
  const warnings: string[] = [];
  if (dropped > 0) warnings.push(`${dropped} sends dropped: too many requests outstanding`);
  if (gen.sent > 0 && achieved < ratePerS * SATURATION.rateShortfall)
    warnings.push(`achieved ${Math.round(achieved)}/s of the ${ratePerS}/s asked`);
  if (lateness.p99 > SATURATION.latenessP99Ms)
    warnings.push(
      `sends left late: p99 ${lateness.p99} ms, max ${lateness.max} ms after their scheduled time`,
    );
  const gc = h.gcPauses;
  const gcPausesMs = { count: gc.count, total: round3(gc.totalMs), max: round3(gc.maxMs) };
  if (gc.maxMs > SATURATION.gcPauseMs)
    warnings.push(
      `GC paused the generator ${gc.count}x (max ${gcPausesMs.max} ms, total ${gcPausesMs.total} ms): latencies in flight then include it`,
    );
  const busyPoll = gen.opts.busyPoll === true;
  if (busyPoll) {
    // A spinning loop is always "busy": lateness above says whether it kept up; CPU says whether it
    // had its core to itself.
    if (h.cpuPct < SATURATION.busyPollCpuPct)
      warnings.push(
        `busy-polling got only ${h.cpuPct.toFixed(0)}% of a core: another process shares the generator's core`,
      );
  } else {
    if (h.eventLoopUtilization > SATURATION.eventLoopUtilization)
      warnings.push(`event loop busy ${(h.eventLoopUtilization * 100).toFixed(0)}% of the window`);
    if (h.cpuPct > SATURATION.cpuPct) warnings.push(`CPU ${h.cpuPct.toFixed(0)}% of a core`);
    // Late or "busy" while using little CPU: the time went to other processes (the loop was descheduled).
    if (warnings.length > 0 && h.cpuPct < (h.eventLoopUtilization * 100) / 2)
      warnings.push(`only ${h.cpuPct.toFixed(0)}% CPU used: the machine is busy, the generator was starved`);
  }
  return {
    achievedRatePerS: Math.round(achieved * 10) / 10,
    sendLatenessMs: lateness,
    eventLoopUtilization: Math.round(h.eventLoopUtilization * 1000) / 1000,
    cpuPct: Math.round(h.cpuPct * 10) / 10,
    gcPausesMs,
    busyPoll,
    saturated: warnings.length > 0,
    warnings,
  };
}

export function buildReport(opts: LoadOptions, gen: LoadGenerator, track: AdminTrack | null): LoadReport {
  const total = summarizeArm(gen.all());
  const transportErrors =
    gen.canaryInjected.transportErrors +
    gen.canaryPlain.transportErrors +
    gen.control.transportErrors +
    gen.untouched.transportErrors;
  const windowMs = gen.sent > 0 ? gen.lastSendAt - gen.measureStartAt + 1000 / opts.ratePerS : 0;
  const achieved = windowMs > 0 ? (gen.sent * 1000) / windowMs : 0;
  const experiments = track ? experimentReports(track, opts.experiment, gen.completed) : [];

  const canaryStats = gen.canary();
  const canary: CanarySummary = { ...summarizeArm(canaryStats), injected: gen.canaryInjected.count };
  const rest = new ArmStats();
  rest.merge(gen.control);
  rest.merge(gen.untouched);
  const notInjected = new ArmStats();
  notInjected.merge(gen.canaryPlain);
  notInjected.merge(rest);

  const splitOnClient = gen.armMarked > 0;
  const only = experiments.length === 1 ? experiments[0] : undefined;
  const adminControl =
    !splitOnClient && only?.controlSummary
      ? { experiment: only.id, ...only.controlSummary, untouched: only.untouched }
      : null;
  return {
    target: opts.target.href,
    method: opts.method,
    ratePerS: opts.ratePerS,
    durationS: opts.durationMs / 1000,
    warmup: { durationS: opts.warmupMs / 1000, ...gen.warmup },
    concurrency: opts.concurrency,
    scheduled: gen.scheduled,
    sent: gen.sent,
    completed: gen.completed,
    dropped: gen.dropped,
    errors: total.errors,
    errorRate: total.errorRate,
    transportErrors,
    elapsedS: Math.max(0, (gen.endedAt || gen.measureStartAt) - gen.measureStartAt) / 1000,
    achievedRatePerS: Math.round(achieved * 10) / 10,
    rateErrorPct: Math.round(((achieved - opts.ratePerS) / opts.ratePerS) * 10_000) / 100,
    latencyMs: total.latencyMs,
    armMarked: gen.armMarked,
    arms: {
      canary,
      control: splitOnClient ? summarizeArm(gen.control) : null,
      untouched: splitOnClient ? summarizeArm(gen.untouched) : null,
      controlOrUntouched: summarizeArm(rest),
    },
    notInjected: summarizeArm(notInjected),
    controlSource: splitOnClient ? 'client' : adminControl ? 'admin' : 'none',
    adminControl,
    injectedBy: Object.fromEntries(gen.injectedBy),
    admin: track ? { url: track.url, error: track.error, experiments } : null,
    killed: experiments.some((e) => e.killed),
    generator: generatorReport(gen, opts.ratePerS, achieved, gen.dropped),
  };
}

const pct = (x: number): string => `${(x * 100).toFixed(2)}%`;
const num = (x: number): string => (Number.isFinite(x) ? String(x) : '-');
const pad = (s: string, n: number): string => s.padEnd(n);
const padl = (s: string, n: number): string => s.padStart(n);

const WIDTHS = [9, 9, 9, 9, 10, 10];
const ROW = (name: string, cells: readonly string[]): string =>
  (pad(name, 30) + cells.map((c, i) => padl(c, WIDTHS[i] ?? 10)).join('')).trimEnd();

function armRow(name: string, a: ArmSummary, completed: number): string {
  const share = completed === 0 ? 0 : a.count / completed;
  return ROW(name, [
    String(a.count),
    pct(share),
    String(a.errors),
    pct(a.errorRate),
    num(a.latencyMs.p50),
    num(a.latencyMs.p99),
  ]);
}

export function formatReport(r: LoadReport): string {
  const lines: string[] = [];
  lines.push(
    `target ${r.method} ${r.target}  rate ${r.ratePerS}/s for ${r.durationS}s  concurrency ${r.concurrency}`,
  );
  lines.push(
    `sent ${r.sent}/${r.scheduled} at ${r.achievedRatePerS}/s (${r.rateErrorPct >= 0 ? '+' : ''}${r.rateErrorPct}%)` +
      `  completed ${r.completed}  errors ${r.errors} (${pct(r.errorRate)})  dropped ${r.dropped}  elapsed ${r.elapsedS.toFixed(2)}s`,
  );
  const l = r.latencyMs;
  lines.push(
    `latency from scheduled send (ms): p50 ${num(l.p50)}  p90 ${num(l.p90)}  p99 ${num(l.p99)}  p99.9 ${num(l.p999)}  max ${num(l.max)}`,
  );
  const w = r.warmup;
  if (w.scheduled > 0)
    lines.push(
      `warm-up (not in any figure): ${w.durationS}s, sent ${w.sent}, completed ${w.completed}, errors ${w.errors}, dropped ${w.dropped}`,
    );
  const g = r.generator;
  const lt = g.sendLatenessMs;
  lines.push(
    `generator: ${g.achievedRatePerS}/s  send lateness (ms) p50 ${num(lt.p50)}  p99 ${num(lt.p99)}  max ${num(lt.max)}` +
      (g.busyPoll
        ? `  busy-polling: CPU ${g.cpuPct}% of a core`
        : `  event loop ${(g.eventLoopUtilization * 100).toFixed(0)}% busy  CPU ${g.cpuPct}% of a core`) +
      `  GC pauses ${g.gcPausesMs.count} (max ${num(g.gcPausesMs.max)} ms, total ${num(g.gcPausesMs.total)} ms)`,
  );
  if (g.saturated)
    lines.push(
      `WARNING: the load generator was saturated (${g.warnings.join('; ')}):`,
      "  the numbers are the generator's, not the target's. Lower --rate, or run the generator on its own core.",
    );
  lines.push('');
  lines.push(ROW('arm', ['count', 'share', 'errors', 'err%', 'p50 ms', 'p99 ms']));
  const c = r.arms.canary;
  lines.push(armRow(r.controlSource === 'client' ? 'canary' : 'canary (injected)', c, r.completed));
  lines.push(ROW('  of which injected', [String(c.injected)]));
  if (r.arms.control && r.arms.untouched) {
    lines.push(armRow('control', r.arms.control, r.completed));
    lines.push(armRow('untouched', r.arms.untouched, r.completed));
  } else {
    const a = r.adminControl;
    if (a) {
      const share = r.completed === 0 ? 0 : a.requests / r.completed;
      lines.push(
        ROW('control (admin counts)', [
          String(a.requests),
          pct(share),
          String(a.errors),
          pct(a.errorRate),
          '-',
          '-',
        ]),
      );
      lines.push(ROW('untouched (admin arithmetic)', [a.untouched === null ? '-' : String(a.untouched)]));
    } else {
      lines.push(ROW('control', ['-', '-', '-', '-', '-', '-']));
    }
    lines.push(armRow('control + untouched (client)', r.arms.controlOrUntouched, r.completed));
    lines.push(
      'note: no response carried x-faultline-arm, so control cannot be told apart from untouched on the',
      '  client side, and canary here means "carried x-faultline-injected". Set `arm_header: true` in the',
      '  Faultline config for client-side control and untouched figures (latency included).',
    );
    if (a)
      lines.push(
        `  Control above is the admin's count for ${a.experiment} over the run (no client latency).`,
      );
    else if (!r.admin)
      lines.push('  With --admin URL --experiment ID, control is shown from the admin counts.');
    else lines.push('  No admin control counts to show (pass --experiment ID when the admin lists several).');
  }
  const marks = Object.entries(r.injectedBy);
  if (marks.length > 0)
    lines.push(`injected marks by experiment: ${marks.map(([k, v]) => `${k}=${v}`).join(' ')}`);
  if (r.admin) {
    lines.push('');
    if (r.admin.error) lines.push(`admin ${r.admin.url}: ${r.admin.error}`);
    if (r.admin.experiments.length === 0) lines.push(`admin ${r.admin.url}: no matching experiment listed`);
    for (const e of r.admin.experiments) {
      const killed = e.killed ? `  KILLED after ${e.killedAfterS?.toFixed(1)}s` : '';
      lines.push(`experiment ${e.id}: state ${e.stateBefore ?? '-'} -> ${e.stateAfter ?? '-'}${killed}`);
      const keys = [...new Set([...Object.keys(e.canary), ...Object.keys(e.control)])];
      lines.push(
        `  ${pad('group', 11)}${keys.map((k) => padl(k, Math.max(10, k.length + 2))).join('')}${padl('err%', 10)}`,
      );
      for (const [g, rec, sum] of [
        ['canary', e.canary, e.canarySummary],
        ['control', e.control, e.controlSummary],
      ] as const) {
        lines.push(
          `  ${pad(g, 11)}${keys.map((k) => padl(num(rec[k] ?? Number.NaN), Math.max(10, k.length + 2))).join('')}${padl(sum ? pct(sum.errorRate) : '-', 10)}`,
        );
      }
      lines.push(`  ${pad('untouched', 11)}${padl(e.untouched === null ? '-' : String(e.untouched), 10)}`);
    }
  }
  return lines.join('\n');
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
