/**
 * Runs every experiment's steady-state probes (Chaos Toolkit's steady-state hypothesis, AWS FIS's stop
 * conditions, evaluated in-process):
 * - before: the table's start gate; every `before` probe must hold or the run does not start;
 * - during: each probe on its own timer (`every`); a breach, or `error_limit` consecutive evaluation
 *   errors, kills the experiment at once with cause `stop_condition`;
 * - after: once the run ends (expired or killed), after `settle`, checked every `every` until it holds
 *   ("recovered in N s") or `recovery_window` passes ("did not recover").
 * All of it runs on timers and promises off the request path; requests never wait for a probe.
 */
import { Counter, Gauge } from 'prom-client';
import type { ExperimentEvent, ExperimentTable, GateRefusal } from '../experiments/table.js';
import type { ExperimentRuntime } from '../experiments/runtime.js';
import { log } from '../telemetry/log.js';
import type { Metrics } from '../telemetry/metrics.js';
import { compileProbe, type Probe } from './probe.js';
import { hasRamp, RampController } from './ramp.js';
import type { ProbeResult, ProbeView, SteadyStateView } from './types.js';

interface Compiled {
  rt: ExperimentRuntime;
  probes: Probe[];
  views: ProbeView[];
  /** Timers and in-flight marks of the current run's `during` checks. */
  timers: NodeJS.Timeout[];
  /** Bumped when a run starts or ends: answers of an older phase are dropped. */
  generation: number;
  after: Promise<void> | null;
  /** The breaking-point ramp, when the experiment has one. */
  ramp: RampController | null;
}

export class SteadyStateSupervisor {
  private readonly table: ExperimentTable;
  private readonly metrics: Metrics;
  private compiled = new Map<ExperimentRuntime, Compiled>();
  private readonly value: Gauge<string>;
  private readonly ok: Gauge<string>;
  private readonly checks: Counter<string>;
  private readonly onEvent = (e: ExperimentEvent) => this.event(e);
  private stopped = false;

  constructor(table: ExperimentTable, metrics: Metrics) {
    this.table = table;
    this.metrics = metrics;
    const registers = [metrics.registry];
    this.value = new Gauge({
      name: 'faultline_probe_value',
      help: 'Last value measured by a steady-state probe (NaN: it could not be evaluated).',
      labelNames: ['experiment', 'probe'],
      registers,
    });
    this.ok = new Gauge({
      name: 'faultline_probe_ok',
      help: 'Whether the last check of a steady-state probe held (1) or not (0).',
      labelNames: ['experiment', 'probe'],
      registers,
    });
    this.checks = new Counter({
      name: 'faultline_probe_checks_total',
      help: 'Steady-state probe checks by experiment, probe, phase (before, during, after) and result (ok, breach, error).',
      labelNames: ['experiment', 'probe', 'phase', 'result'],
      registers,
    });
    table.gate = (rt) => this.before(rt);
    table.on('event', this.onEvent);
  }

  /** Compile the probes of a new experiment set (config load); kept runtimes keep theirs. */
  compile(experiments: ReadonlyMap<string, ExperimentRuntime>): void {
    const next = new Map<ExperimentRuntime, Compiled>();
    for (const rt of experiments.values()) {
      const have = this.compiled.get(rt);
      if (have) {
        next.set(rt, have);
        continue;
      }
      if (rt.spec.steady_state.length === 0 && !hasRamp(rt.spec)) continue;
      const probes = rt.spec.steady_state.map((s) => compileProbe(s, this.metrics));
      const ramp = hasRamp(rt.spec) ? new RampController(rt, this.table) : null;
      const c: Compiled = {
        rt,
        probes,
        views: probes.map(emptyView),
        timers: [],
        generation: 0,
        after: null,
        ramp,
      };
      if (probes.length > 0) rt.steadyState = { probes: c.views } satisfies SteadyStateView;
      next.set(rt, c);
    }
    for (const [rt, c] of this.compiled) if (!next.has(rt)) this.dispose(c);
    this.compiled = next;
  }

  /** Resolves when the after-checks of the experiment's last run are done (at once when there are none). */
  async settled(id: string): Promise<void> {
    const rt = this.table.get(id);
    const c = rt ? this.compiled.get(rt) : undefined;
    await c?.after;
  }

  stop(): void {
    this.stopped = true;
    this.table.off('event', this.onEvent);
    if (this.table.gate !== null) this.table.gate = null;
    for (const c of this.compiled.values()) this.dispose(c);
    this.compiled.clear();
  }

  // ---- before ------------------------------------------------------------------------------------------

  private before(rt: ExperimentRuntime): Promise<GateRefusal | null> | null {
    const c = this.compiled.get(rt);
    if (!c) return null;
    const idx = c.probes.flatMap((p, i) => (p.spec.when.includes('before') ? [i] : []));
    if (idx.length === 0) return null;
    return this.checkBefore(c, idx);
  }

  private async checkBefore(c: Compiled, idx: number[]): Promise<GateRefusal | null> {
    const results = await Promise.all(
      idx.map(async (i) => {
        const p = c.probes[i] as Probe;
        await p.ready();
        const r = await p.evaluate();
        (c.views[i] as ProbeView).before = r;
        this.count(c.rt.id, p, 'before', r);
        return { probe: p.spec.name, kind: p.kind, ...r };
      }),
    );
    const failed = results.filter((r) => !r.ok);
    const evidence = { phase: 'before', probes: results };
    this.table.note({
      type: 'steady_state',
      experiment: c.rt.id,
      reason:
        failed.length === 0
          ? `before: ${results.length} probe(s) held`
          : `before: ${failed.map((r) => `${r.probe} failed (${r.detail})`).join('; ')}`,
      evidence,
    });
    if (failed.length === 0) return null;
    return {
      reason: `steady state not met before the run: ${failed.map((r) => `probe ${r.probe}: ${r.detail}`).join('; ')}`,
      evidence,
    };
  }

  // ---- during / after ----------------------------------------------------------------------------------

  private event(e: ExperimentEvent): void {
    if (this.stopped || e.experiment === undefined) return;
    const rt = this.table.get(e.experiment);
    const c = rt ? this.compiled.get(rt) : undefined;
    if (!c) return;
    switch (e.type) {
      case 'armed':
        // A new run: fresh results.
        this.clearTimers(c);
        c.views.forEach((v, i) => Object.assign(v, emptyView(c.probes[i] as Probe)));
        return;
      case 'started':
        c.ramp?.start();
        this.startDuring(c);
        return;
      case 'killed':
      case 'expired':
        c.ramp?.end();
        this.clearTimers(c);
        c.after = this.checkAfter(c, Date.now());
        return;
      default:
        return;
    }
  }

  private startDuring(c: Compiled): void {
    this.clearTimers(c);
    const gen = c.generation;
    c.probes.forEach((p, i) => {
      if (!p.spec.when.includes('during')) return;
      const view = c.views[i] as ProbeView;
      let inFlight = false;
      const tick = async () => {
        // A slow probe (a Prometheus timeout) is not stacked: the next tick waits for it.
        if (inFlight) return;
        inFlight = true;
        const r = await p.evaluate();
        inFlight = false;
        if (gen !== c.generation || !c.rt.assigning) return;
        this.during(c, p, view, r);
      };
      const timer = setInterval(() => void tick(), p.spec.every);
      timer.unref();
      c.timers.push(timer);
    });
  }

  private during(c: Compiled, p: Probe, view: ProbeView, r: ProbeResult): void {
    const d = view.during;
    d.checks++;
    d.last = r;
    this.count(c.rt.id, p, 'during', r);
    if (r.error) {
      d.errors++;
      d.consecutive_errors++;
      if (d.consecutive_errors < p.spec.error_limit) return;
    } else {
      d.consecutive_errors = 0;
      if (r.ok) return;
    }
    d.breaches++;
    const reason = r.error
      ? `stop condition ${p.spec.name}: could not be evaluated ${d.consecutive_errors} times in a row (error_limit ${p.spec.error_limit}): ${r.detail}`
      : `stop condition ${p.spec.name}: ${r.detail}`;
    this.table.kill(c.rt.id, 'stop_condition', reason, `probe:${p.spec.name}`, {
      phase: 'during',
      probe: p.spec.name,
      kind: p.kind,
      ...r,
    });
  }

  private async checkAfter(c: Compiled, endedAt: number): Promise<void> {
    const gen = c.generation;
    const work = c.probes.map(async (p, i) => {
      if (!p.spec.when.includes('after')) return null;
      const view = c.views[i] as ProbeView;
      const a = (view.after = {
        status: 'waiting',
        recovered_in_s: null,
        checks: 0,
        last: null,
      } as NonNullable<ProbeView['after']>);
      if (p.spec.settle !== undefined) await sleep(p.spec.settle);
      a.status = 'checking';
      const deadline = endedAt + (p.spec.settle ?? 0) + p.spec.recovery_window;
      for (;;) {
        if (gen !== c.generation || this.stopped) return null;
        const r = await p.evaluate();
        a.checks++;
        a.last = r;
        this.count(c.rt.id, p, 'after', r);
        if (r.ok) {
          a.status = 'recovered';
          a.recovered_in_s = Math.round((Date.parse(r.at) - endedAt) / 100) / 10;
          break;
        }
        if (Date.now() + p.spec.every > deadline) {
          a.status = 'not_recovered';
          break;
        }
        await sleep(p.spec.every);
      }
      return { probe: p.spec.name, kind: p.kind, ...a };
    });
    const done = (await Promise.all(work)).filter((x) => x !== null);
    if (done.length === 0 || gen !== c.generation) return;
    const bad = done.filter((x) => x.status !== 'recovered');
    const text = done
      .map((x) =>
        x.status === 'recovered'
          ? `${x.probe} recovered in ${x.recovered_in_s} s`
          : `${x.probe} did not recover (${x.last?.detail ?? 'no check'})`,
      )
      .join('; ');
    this.table.note({
      type: 'steady_state',
      experiment: c.rt.id,
      reason: `after: ${text}`,
      evidence: { phase: 'after', probes: done },
    });
    if (bad.length > 0)
      log('warn', 'steady state did not recover after the run', { experiment: c.rt.id, text });
  }

  private count(id: string, p: Probe, phase: string, r: ProbeResult): void {
    const labels = { experiment: id, probe: p.spec.name };
    this.value.set(labels, typeof r.value === 'number' ? r.value : r.error ? NaN : r.ok ? 1 : 0);
    this.ok.set(labels, r.ok ? 1 : 0);
    this.checks.inc({ ...labels, phase, result: r.ok ? 'ok' : r.error ? 'error' : 'breach' });
  }

  private clearTimers(c: Compiled): void {
    c.generation++;
    for (const t of c.timers) clearInterval(t);
    c.timers.length = 0;
  }

  private dispose(c: Compiled): void {
    this.clearTimers(c);
    c.ramp?.stop();
    for (const p of c.probes) p.close();
  }
}

function emptyView(p: Probe): ProbeView {
  return {
    name: p.spec.name,
    kind: p.kind,
    when: [...p.spec.when],
    every_ms: p.spec.every,
    before: null,
    during: { checks: 0, breaches: 0, errors: 0, consecutive_errors: 0, last: null },
    after: null,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
