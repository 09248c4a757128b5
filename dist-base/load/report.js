import { ArmStats, summarizeArm } from './arms.js';
import { adminArmSummary, armDelta } from './admin.js';
function experimentReports(track, only, completed) {
    const ids = new Set();
    for (const e of [...(track.before ?? []), ...(track.after ?? [])])
        ids.add(e.id);
    const out = [];
    for (const id of ids) {
        if (only !== undefined && id !== only)
            continue;
        const b = track.before?.find((e) => e.id === id);
        const a = track.after?.find((e) => e.id === id);
        const canary = armDelta(b?.arms['canary'], a?.arms['canary']);
        const control = armDelta(b?.arms['control'], a?.arms['control']);
        const counted = canary['requests'] !== undefined && control['requests'] !== undefined
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
export function buildReport(opts, gen, track) {
    const total = summarizeArm(gen.all());
    const transportErrors = gen.canaryInjected.transportErrors +
        gen.canaryPlain.transportErrors +
        gen.control.transportErrors +
        gen.untouched.transportErrors;
    const windowMs = gen.sent > 0 ? gen.lastSendAt - gen.startedAt + 1000 / opts.ratePerS : 0;
    const achieved = windowMs > 0 ? (gen.sent * 1000) / windowMs : 0;
    const experiments = track ? experimentReports(track, opts.experiment, gen.completed) : [];
    const canaryStats = gen.canary();
    const canary = { ...summarizeArm(canaryStats), injected: gen.canaryInjected.count };
    const rest = new ArmStats();
    rest.merge(gen.control);
    rest.merge(gen.untouched);
    const notInjected = new ArmStats();
    notInjected.merge(gen.canaryPlain);
    notInjected.merge(rest);
    const splitOnClient = gen.armMarked > 0;
    const only = experiments.length === 1 ? experiments[0] : undefined;
    const adminControl = !splitOnClient && only?.controlSummary
        ? { experiment: only.id, ...only.controlSummary, untouched: only.untouched }
        : null;
    return {
        target: opts.target.href,
        method: opts.method,
        ratePerS: opts.ratePerS,
        durationS: opts.durationMs / 1000,
        concurrency: opts.concurrency,
        scheduled: gen.scheduled,
        sent: gen.sent,
        completed: gen.completed,
        dropped: gen.dropped,
        errors: total.errors,
        errorRate: total.errorRate,
        transportErrors,
        elapsedS: ((gen.endedAt || gen.startedAt) - gen.startedAt) / 1000,
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
    };
}
const pct = (x) => `${(x * 100).toFixed(2)}%`;
const num = (x) => (Number.isFinite(x) ? String(x) : '-');
const pad = (s, n) => s.padEnd(n);
const padl = (s, n) => s.padStart(n);
const WIDTHS = [9, 9, 9, 9, 10, 10];
const ROW = (name, cells) => (pad(name, 30) + cells.map((c, i) => padl(c, WIDTHS[i] ?? 10)).join('')).trimEnd();
function armRow(name, a, completed) {
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
export function formatReport(r) {
    const lines = [];
    lines.push(`target ${r.method} ${r.target}  rate ${r.ratePerS}/s for ${r.durationS}s  concurrency ${r.concurrency}`);
    lines.push(`sent ${r.sent}/${r.scheduled} at ${r.achievedRatePerS}/s (${r.rateErrorPct >= 0 ? '+' : ''}${r.rateErrorPct}%)` +
        `  completed ${r.completed}  errors ${r.errors} (${pct(r.errorRate)})  dropped ${r.dropped}  elapsed ${r.elapsedS.toFixed(2)}s`);
    const l = r.latencyMs;
    lines.push(`latency from scheduled send (ms): p50 ${num(l.p50)}  p90 ${num(l.p90)}  p99 ${num(l.p99)}  p99.9 ${num(l.p999)}  max ${num(l.max)}`);
    lines.push('');
    lines.push(ROW('arm', ['count', 'share', 'errors', 'err%', 'p50 ms', 'p99 ms']));
    const c = r.arms.canary;
    lines.push(armRow(r.controlSource === 'client' ? 'canary' : 'canary (injected)', c, r.completed));
    lines.push(ROW('  of which injected', [String(c.injected)]));
    if (r.arms.control && r.arms.untouched) {
        lines.push(armRow('control', r.arms.control, r.completed));
        lines.push(armRow('untouched', r.arms.untouched, r.completed));
    }
    else {
        const a = r.adminControl;
        if (a) {
            const share = r.completed === 0 ? 0 : a.requests / r.completed;
            lines.push(ROW('control (admin counts)', [
                String(a.requests),
                pct(share),
                String(a.errors),
                pct(a.errorRate),
                '-',
                '-',
            ]));
            lines.push(ROW('untouched (admin arithmetic)', [a.untouched === null ? '-' : String(a.untouched)]));
        }
        else {
            lines.push(ROW('control', ['-', '-', '-', '-', '-', '-']));
        }
        lines.push(armRow('control + untouched (client)', r.arms.controlOrUntouched, r.completed));
        lines.push('note: no response carried x-faultline-arm, so control cannot be told apart from untouched on the', '  client side, and canary here means "carried x-faultline-injected". Set `arm_header: true` in the', '  Faultline config for client-side control and untouched figures (latency included).');
        if (a)
            lines.push(`  Control above is the admin's count for ${a.experiment} over the run (no client latency).`);
        else if (!r.admin)
            lines.push('  With --admin URL --experiment ID, control is shown from the admin counts.');
        else
            lines.push('  No admin control counts to show (pass --experiment ID when the admin lists several).');
    }
    const marks = Object.entries(r.injectedBy);
    if (marks.length > 0)
        lines.push(`injected marks by experiment: ${marks.map(([k, v]) => `${k}=${v}`).join(' ')}`);
    if (r.admin) {
        lines.push('');
        if (r.admin.error)
            lines.push(`admin ${r.admin.url}: ${r.admin.error}`);
        if (r.admin.experiments.length === 0)
            lines.push(`admin ${r.admin.url}: no matching experiment listed`);
        for (const e of r.admin.experiments) {
            const killed = e.killed ? `  KILLED after ${e.killedAfterS?.toFixed(1)}s` : '';
            lines.push(`experiment ${e.id}: state ${e.stateBefore ?? '-'} -> ${e.stateAfter ?? '-'}${killed}`);
            const keys = [...new Set([...Object.keys(e.canary), ...Object.keys(e.control)])];
            lines.push(`  ${pad('group', 11)}${keys.map((k) => padl(k, Math.max(10, k.length + 2))).join('')}${padl('err%', 10)}`);
            for (const [g, rec, sum] of [
                ['canary', e.canary, e.canarySummary],
                ['control', e.control, e.controlSummary],
            ]) {
                lines.push(`  ${pad(g, 11)}${keys.map((k) => padl(num(rec[k] ?? Number.NaN), Math.max(10, k.length + 2))).join('')}${padl(sum ? pct(sum.errorRate) : '-', 10)}`);
            }
            lines.push(`  ${pad('untouched', 11)}${padl(e.untouched === null ? '-' : String(e.untouched), 10)}`);
        }
    }
    return lines.join('\n');
}
//# sourceMappingURL=report.js.map