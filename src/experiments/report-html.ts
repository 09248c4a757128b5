/**
 * `faultline report ID --html FILE`: the post-run report as one self-contained HTML file for a
 * post-mortem (hypothesis, verdict, evidence, guardrails, timeline and the dashboard's charts as static
 * SVG). No script and no external resource: it opens anywhere, offline, and can be attached to a ticket.
 */
import type { ExperimentReport } from './report.js';
import type { SeriesView } from './series.js';

const CANARY = '#d9480f';
const CONTROL = '#1c7ed6';
const THRESHOLD = '#c92a2a';
const GUARD_COLORS = ['#5f3dc4', '#2b8a3e', '#e67700', '#0b7285', '#a61e4d'];
const WINDOW_S = 10;

interface Line {
  label: string;
  color: string;
  values: readonly (number | null)[];
  dash?: boolean;
}

export function reportHtml(r: ExperimentReport, s: SeriesView | null): string {
  const pct = (n: number, d: number) => (d > 0 ? `${((100 * n) / d).toFixed(2)}%` : '-');
  const arm = (name: string, a: ExperimentReport['arms']['canary']) =>
    `<tr><td>${name}</td><td>${a.requests}</td><td>${pct(a.error, a.requests)}</td><td>${pct(a.timeout, a.requests)}</td><td>${pct(a.reset, a.requests)}</td><td>${a.injected}</td></tr>`;
  const charts: string[] = [];
  if (s !== null && s.t.length > 1) {
    const t = s.t;
    charts.push(
      chart('Requests per second', t, [
        { label: 'canary', color: CANARY, values: s.canary.requests },
        { label: 'control', color: CONTROL, values: s.control.requests },
      ]),
      chart(
        `Error rate (${WINDOW_S} s window)`,
        t,
        [
          { label: 'canary', color: CANARY, values: windowRate(s.canary.errors, s.canary.requests) },
          { label: 'control', color: CONTROL, values: windowRate(s.control.errors, s.control.requests) },
        ],
        { percent: true },
      ),
      chart(
        `Timeout rate (${WINDOW_S} s window)`,
        t,
        [
          { label: 'canary', color: CANARY, values: windowRate(s.canary.timeouts, s.canary.requests) },
          { label: 'control', color: CONTROL, values: windowRate(s.control.timeouts, s.control.requests) },
        ],
        { percent: true },
      ),
    );
    const lat = s.guardrails.filter((g) => g.metric === 'latency');
    if (lat.length > 0)
      charts.push(
        chart(
          'Guarded latency quantiles (ms)',
          t,
          lat.flatMap((g) => [
            { label: `canary p${fmtQ(g.quantile)}`, color: CANARY, values: g.canary_ms },
            { label: `control T_p p${fmtQ(g.quantile)}`, color: CONTROL, values: g.control_ms, dash: true },
          ]),
        ),
      );
    charts.push(
      chart(
        'Evidence: e-value vs 1/alpha (log scale)',
        t,
        s.guardrails.flatMap((g, i) => [
          {
            label: `${g.metric}${g.quantile !== null ? ` p${fmtQ(g.quantile)}` : ''} e`,
            color: GUARD_COLORS[i % GUARD_COLORS.length] as string,
            values: g.e,
          },
          { label: `1/alpha`, color: THRESHOLD, values: g.e.map(() => g.threshold), dash: true },
        ]),
        { log: true },
      ),
    );
  }
  const guard = (g: ExperimentReport['guardrails'][number]) =>
    `<tr class="${esc(g.status)}"><td>${esc(g.metric)}${g.quantile !== undefined ? ` p${fmtQ(g.quantile)}` : ''}</td><td>${esc(g.status)}</td><td>${fmtE(g.eValue)}</td><td>${fmtE(g.threshold)}</td><td>${esc(g.detail)}</td></tr>`;
  const evidence =
    r.evidence === null ? '' : `<h2>Evidence</h2><pre>${esc(JSON.stringify(r.evidence, null, 2))}</pre>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Faultline report: ${esc(r.id)} (${esc(r.verdict)})</title>
<style>
body{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#212529}
h1{font-size:22px} h2{font-size:17px;margin-top:24px} table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #dee2e6;padding:4px 8px;text-align:left;vertical-align:top}
.verdict{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600;background:#dee2e6}
.v-held{background:#d3f9d8;color:#2b8a3e}.v-refuted{background:#ffe3e3;color:#a51111}
.v-aborted,.v-inconclusive{background:#fff3bf;color:#8f5b00}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:12px}
figure{margin:0} figcaption{font-size:13px;color:#495057;font-weight:600}
pre{background:#f8f9fa;padding:8px;overflow:auto;font-size:12px} tr.breached td{background:#fff5f5}
</style></head><body>
<h1>Experiment <code>${esc(r.id)}</code> <span class="verdict v-${esc(r.verdict)}">${esc(r.verdict)}</span></h1>
<p><b>Hypothesis:</b> ${esc(r.hypothesis)}</p>
<p><b>Verdict:</b> ${esc(r.verdict)}: ${esc(r.verdict_reason)}</p>
<table>
<tr><th>state</th><td>${esc(r.state)}</td></tr>
<tr><th>split</th><td>${r.split.percent}% canary + ${r.split.percent}% control${r.split.sticky ? ` (sticky ${esc(r.split.sticky)})` : ''}</td></tr>
<tr><th>fault</th><td><code>${esc(JSON.stringify(r.fault))}</code>, injected ${esc(r.inject)}${r.inject_at ? ` at ${esc(r.inject_at.join(', '))}` : ''}</td></tr>
<tr><th>started</th><td>${esc(r.started_at ?? '-')}</td></tr>
<tr><th>${r.ended_at ? 'ended' : 'ends'}</th><td>${esc(r.ended_at ?? r.ends_at ?? 'when stopped')}${r.ended?.reason ? `: ${esc(r.ended.reason)} (${esc(r.ended.cause ?? '')}, by ${esc(r.ended.by ?? '')})` : ''}</td></tr>
</table>
<h2>Arms</h2>
<table><tr><th>group</th><th>requests</th><th>errors</th><th>timeouts</th><th>resets</th><th>injected</th></tr>
${arm('canary', r.arms.canary)}
${arm('control', r.arms.control)}</table>
<h2>Guardrails</h2>
<table><tr><th>metric</th><th>status</th><th>e-value</th><th>1/alpha</th><th>detail</th></tr>
${r.guardrails.map(guard).join('\n')}</table>
${evidence}
<h2>Charts</h2>
${charts.length > 0 ? `<div class="charts">${charts.join('\n')}</div>` : '<p>No history (the process kept none for this run).</p>'}
<h2>Timeline</h2>
<ul>
${r.timeline.map((e) => `<li>${esc(e.at)} <b>${esc(e.type)}</b>${e.cause ? ` (${esc(e.cause)})` : ''}${e.reason ? `: ${esc(e.reason)}` : ''}${e.by ? ` by ${esc(e.by)}` : ''}</li>`).join('\n')}
</ul>
<p><small>Generated by faultline report --html at ${new Date().toISOString()}.</small></p>
</body></html>
`;
}

const W = 360;
const H = 170;
const PAD = { l: 48, r: 8, t: 8, b: 36 };

/** One static SVG line chart: time on x, lines on a linear (or log10) y axis, a legend below. */
function chart(
  title: string,
  t: readonly number[],
  lines: readonly Line[],
  opts: { percent?: boolean; log?: boolean } = {},
): string {
  const t0 = t[0] ?? 0;
  const t1 = t[t.length - 1] ?? t0 + 1;
  const all = lines.flatMap((l) => l.values.filter((v): v is number => v !== null && Number.isFinite(v)));
  const f = opts.log ? (v: number) => Math.log10(Math.max(v, 1e-30)) : (v: number) => v;
  let lo = opts.log ? Math.floor(Math.min(-2, ...all.map(f))) : 0;
  let hi = opts.log ? Math.ceil(Math.max(0, ...all.map(f))) : Math.max(...all, opts.percent ? 0.01 : 1) * 1.1;
  if (hi <= lo) hi = lo + 1;
  if (!Number.isFinite(lo)) lo = 0;
  const x = (ms: number) => PAD.l + ((ms - t0) / Math.max(1, t1 - t0)) * (W - PAD.l - PAD.r);
  const y = (v: number) => PAD.t + (1 - (f(v) - lo) / (hi - lo)) * (H - PAD.t - PAD.b);
  const paths = lines.map((l) => {
    let d = '';
    let pen = false;
    l.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${x(t[i] ?? t0).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    return `<path d="${d}" fill="none" stroke="${l.color}" stroke-width="1.5"${l.dash ? ' stroke-dasharray="5 3"' : ''}/>`;
  });
  const ticks: string[] = [];
  const steps = opts.log ? Math.min(6, hi - lo) : 4;
  for (let i = 0; i <= steps; i++) {
    const fv = lo + ((hi - lo) * i) / steps;
    const v = opts.log ? 10 ** fv : fv;
    const label = opts.percent ? `${+(v * 100).toFixed(2)}%` : opts.log ? fmtE(v) : `${+v.toPrecision(3)}`;
    const yy = y(v).toFixed(1);
    ticks.push(
      `<line x1="${PAD.l}" x2="${W - PAD.r}" y1="${yy}" y2="${yy}" stroke="#e9ecef"/><text x="${PAD.l - 4}" y="${yy}" text-anchor="end" dominant-baseline="middle">${label}</text>`,
    );
  }
  const time = (ms: number) => new Date(ms).toISOString().slice(11, 19);
  const legend = lines
    .filter((l, i, a) => a.findIndex((o) => o.label === l.label) === i)
    .map((l) => `<span style="color:${l.color}">&#9632; ${esc(l.label)}</span>`)
    .join(' ');
  return `<figure><figcaption>${esc(title)}</figcaption>
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="100%" font-size="10" font-family="sans-serif" role="img" aria-label="${esc(title)}">
${ticks.join('\n')}
<text x="${PAD.l}" y="${H - 20}">${time(t0)}</text><text x="${W - PAD.r}" y="${H - 20}" text-anchor="end">${time(t1)} UTC</text>
${paths.join('\n')}
</svg><div style="font-size:11px">${legend}</div></figure>`;
}

function windowRate(bad: readonly (number | null)[], total: readonly (number | null)[]): (number | null)[] {
  const out: (number | null)[] = [];
  let sb = 0;
  let st = 0;
  for (let i = 0; i < total.length; i++) {
    sb += bad[i] ?? 0;
    st += total[i] ?? 0;
    if (i >= WINDOW_S) {
      sb -= bad[i - WINDOW_S] ?? 0;
      st -= total[i - WINDOW_S] ?? 0;
    }
    out.push(st > 0 ? sb / st : null);
  }
  return out;
}

function fmtQ(q: number | null): string {
  return q === null ? '' : String(Number((q * 100).toPrecision(6)));
}

function fmtE(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x >= 1e6 || (x > 0 && x < 1e-3)) return x.toExponential(2);
  return x >= 100 ? String(Math.round(x)) : String(Number(x.toPrecision(3)));
}

function esc(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );
}
