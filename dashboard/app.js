// Faultline live dashboard. Plain browser JavaScript (no build step), served by the admin listener with
// uPlot from the package. Reads GET /experiments, /experiments/{id}/report (with `ramp` and, in fleet mode,
// `fleet`), /experiments/{id}/series and the run journal (/experiments/{id}/runs[/{n}]);
// live updates from the SSE stream /events plus a 1 s poll of the series. Mutating calls (kill, arm,
// kill everything) send the admin token from sessionStorage (never the URL) as a Bearer header and a JSON
// content type; the admin port's CSRF guard accepts them because the page is same-origin.
/* global uPlot */
'use strict';

const TOKEN_KEY = 'faultline.adminToken';
const WINDOW_S = 10; // rates are over a sliding 10 s window: one-second rates at low traffic are noise
const KEEP = 3600;
const COLORS = { canary: '#d9480f', control: '#1c7ed6', threshold: '#c92a2a', insufficient: '#868e96' };
const GUARD_COLORS = ['#5f3dc4', '#2b8a3e', '#e67700', '#0b7285', '#a61e4d'];

const cards = new Map(); // id -> card state
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

async function getJson(path) {
  const r = await fetch(path, { cache: 'no-store' });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

function notice(text, kind) {
  const n = $('notice');
  n.textContent = text;
  n.className = kind || '';
}

// ---- admin token and mutating calls ----

let pendingRetry = null;

function askToken(message, retry) {
  pendingRetry = retry || null;
  $('token-form').hidden = false;
  if (message) notice(message, 'error');
  $('token-input').value = '';
  $('token-input').focus();
}

$('token-btn').addEventListener('click', () => askToken('', null));
$('token-cancel').addEventListener('click', () => {
  $('token-form').hidden = true;
  pendingRetry = null;
});
$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const v = $('token-input').value.trim();
  if (v) sessionStorage.setItem(TOKEN_KEY, v);
  else sessionStorage.removeItem(TOKEN_KEY);
  $('token-form').hidden = true;
  const retry = pendingRetry;
  pendingRetry = null;
  if (retry) void retry();
});

async function mutate(path, body) {
  const headers = { 'content-type': 'application/json' };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.authorization = `Bearer ${token}`;
  const r = await fetch(path, { method: 'POST', headers, body: JSON.stringify(body || {}) });
  let data = null;
  try {
    data = await r.json();
  } catch {
    // not JSON
  }
  if (r.status === 401) {
    askToken(
      token ? 'The admin token was refused: enter it again.' : 'This call needs the admin token.',
      () => mutate(path, body),
    );
    return null;
  }
  if (!r.ok) {
    notice(`${path}: ${(data && data.error && data.error.message) || `HTTP ${r.status}`}`, 'error');
    return null;
  }
  notice(`${path}: done`, 'ok');
  void refresh();
  return data;
}

$('kill-all').addEventListener('click', () => {
  void mutate('/kill', { reason: 'kill everything (dashboard)' });
});

// ---- experiment cards ----

function faultText(f) {
  if (!f || typeof f !== 'object') return String(f);
  const rest = Object.entries(f)
    .filter(([k]) => k !== 'kind')
    .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`);
  return `${f.kind}${rest.length ? ` (${rest.join(', ')})` : ''}`;
}

function pct(n, d) {
  return d > 0 ? `${((100 * n) / d).toFixed(2)}%` : '-';
}

function fmtE(x) {
  if (x === null || x === undefined || !Number.isFinite(x)) return String(x);
  if (x >= 1e6 || (x > 0 && x < 1e-3)) return x.toExponential(2);
  return x >= 100 ? String(Math.round(x)) : String(Number(x.toPrecision(3)));
}

function guardName(g) {
  return g.quantile !== undefined && g.quantile !== null
    ? `${g.metric} p${Number((g.quantile * 100).toPrecision(6))}`
    : g.metric;
}

function createCard(id) {
  const c = {
    id,
    root: el('article', { class: 'exp', 'data-testid': `exp-${id}`, 'data-id': id }),
    data: null, // series columns
    lastT: 0,
    charts: {},
    layoutKey: '',
  };
  c.title = el('h2', {}, id);
  c.state = el('span', { class: 'chip', 'data-testid': 'state' });
  c.verdict = el('span', { class: 'chip', 'data-testid': 'verdict' });
  c.hypothesis = el('p', { class: 'hypothesis', 'data-testid': 'hypothesis' });
  c.verdictReason = el('p', { class: 'reason', 'data-testid': 'verdict-reason' });
  c.blast = el('dl', { class: 'blast', 'data-testid': 'blast' });
  c.counts = el('p', { class: 'counts', 'data-testid': 'counts' });
  c.guards = el('ul', { class: 'guards', 'data-testid': 'guardrails' });
  c.reason = el('input', {
    type: 'text',
    placeholder: 'reason for the kill',
    'aria-label': 'kill reason',
    'data-testid': 'kill-reason',
  });
  c.kill = el(
    'button',
    {
      type: 'button',
      class: 'danger',
      'data-testid': 'kill',
      onclick: () =>
        void mutate(`/experiments/${encodeURIComponent(id)}/kill`, {
          reason: c.reason.value.trim() || 'killed from the dashboard',
        }),
    },
    'Kill',
  );
  c.arm = el(
    'button',
    {
      type: 'button',
      'data-testid': 'arm',
      onclick: () => void mutate(`/experiments/${encodeURIComponent(id)}/arm`, {}),
    },
    'Arm',
  );
  c.chartsBox = el('div', { class: 'charts', 'data-testid': 'charts' });
  c.ramp = el('section', { class: 'ramp', 'data-testid': 'ramp', hidden: '' });
  c.fleet = el('section', { class: 'fleet', 'data-testid': 'fleet', hidden: '' });
  c.runs = el('div', { class: 'runs', 'data-testid': 'runs' });
  c.runView = el('div', { class: 'run-view', 'data-testid': 'run-report', hidden: '' });
  c.timeline = el('ol', { class: 'timeline', 'data-testid': 'timeline' });
  c.root.append(
    el('div', { class: 'head' }, c.title, c.state, c.verdict),
    c.hypothesis,
    c.verdictReason,
    el('div', { class: 'actions' }, c.reason, c.kill, c.arm),
    c.blast,
    c.counts,
    c.guards,
    c.ramp,
    c.fleet,
    c.chartsBox,
    el('details', { open: '' }, el('summary', {}, 'Timeline'), c.timeline),
    el('details', { 'data-testid': 'runs-section' }, el('summary', {}, 'Past runs'), c.runs, c.runView),
  );
  $('experiments').append(c.root);
  cards.set(id, c);
  return c;
}

function renderReport(c, r) {
  c.report = r;
  c.hypothesis.textContent = r.hypothesis;
  c.state.textContent = r.state;
  c.state.className = `chip state-${r.state}`;
  c.root.dataset.state = r.state;
  c.verdict.textContent = r.verdict;
  c.verdict.className = `chip verdict-${r.verdict}`;
  c.verdictReason.textContent = r.verdict_reason;
  const running = r.state === 'running' || r.state === 'dry_run';
  c.kill.disabled = !running;
  c.arm.disabled = running || r.state === 'disabled';

  const sticky = r.split.sticky ? `, sticky ${r.split.sticky}` : '';
  const hops = Object.keys(r.hops || {});
  const rows = [
    ['split', `${r.split.percent}% canary + ${r.split.percent}% control${sticky}`],
    ['fault', faultText(r.fault)],
    [
      'injected',
      r.inject === 'here' ? 'here' : `downstream${r.inject_at ? ` at ${r.inject_at.join(', ')}` : ''}`,
    ],
    ['hops', hops.length ? hops.join(', ') : '-'],
    ['active faults', String(r.active_faults)],
    ['started', r.started_at || '-'],
    [r.ended_at ? 'ended' : 'ends', r.ended_at || r.ends_at || 'when stopped'],
  ];
  if (r.ended && r.ended.reason)
    rows.push(['ended by', `${r.ended.cause || ''} ${r.ended.by || ''}: ${r.ended.reason}`]);
  c.blast.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));

  const a = r.arms;
  c.counts.textContent =
    `canary ${a.canary.requests} req, errors ${pct(a.canary.error, a.canary.requests)}, timeouts ${pct(a.canary.timeout, a.canary.requests)}, injected ${a.canary.injected}` +
    ` · control ${a.control.requests} req, errors ${pct(a.control.error, a.control.requests)}, timeouts ${pct(a.control.timeout, a.control.requests)}`;
  c.counts.dataset.canaryRequests = String(a.canary.requests);
  c.counts.dataset.controlRequests = String(a.control.requests);

  c.guards.replaceChildren(
    ...r.guardrails.map((g) =>
      el(
        'li',
        { class: `guard status-${g.status}`, 'data-status': g.status },
        el('b', {}, guardName(g)),
        ` ${g.status.replace('_', ' ')} · e = ${fmtE(g.eValue)} of ${fmtE(g.threshold)} (1/α)`,
        el('small', {}, ` ${g.detail}`),
      ),
    ),
  );

  renderRamp(c, r.ramp || null);
  renderFleet(c, r.fleet || null);

  c.timeline.replaceChildren(
    ...r.timeline.map((e) =>
      el(
        'li',
        { class: `ev ev-${e.type}` },
        el('time', {}, e.at.replace('T', ' ').replace(/\.\d+Z$/, 'Z')),
        ` ${e.type}${e.cause ? ` (${e.cause})` : ''}${e.reason ? `: ${e.reason}` : ''}${e.by ? ` by ${e.by}` : ''}`,
        e.evidence ? el('small', { class: 'evidence' }, ` evidence: ${evidenceText(e.evidence)}`) : null,
      ),
    ),
  );
}

function table(testid, head, rows) {
  return el(
    'div',
    { class: 'table-wrap' },
    el(
      'table',
      { 'data-testid': testid },
      el('thead', {}, el('tr', {}, ...head.map((h) => el('th', {}, h)))),
      el('tbody', {}, ...rows),
    ),
  );
}

function fmtTime(iso) {
  return iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-';
}

function ago(iso) {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 90 ? `${s.toFixed(1)} s ago` : `${Math.round(s / 60)} min ago`;
}

// Breaking-point ramp (`ramp:`): the step in force and each step's counts and outcome.
function renderRamp(c, ramp) {
  c.ramp.hidden = ramp === null;
  if (ramp === null) return c.ramp.replaceChildren();
  const cur = ramp.steps[ramp.current];
  const rows = ramp.steps.map((st, i) =>
    el(
      'tr',
      {
        class: `step status-${st.status}${i === ramp.current ? ' current' : ''}`,
        'data-step': String(st.step),
        'data-status': st.status,
      },
      el('td', {}, String(st.step)),
      el('td', {}, `${st.magnitude} ${ramp.unit}`),
      el('td', {}, st.status),
      el('td', {}, String(st.canary)),
      el('td', {}, String(st.control)),
      el('td', {}, String(st.canary_bad)),
      el('td', {}, String(st.needed)),
      el('td', { class: 'detail' }, st.detail || ''),
    ),
  );
  c.ramp.replaceChildren(
    el(
      'h3',
      {},
      'Ramp ',
      el(
        'span',
        { 'data-testid': 'ramp-current' },
        // the server's step numbers (from 0), as in the timeline's ramp_step events
        cur
          ? `step ${cur.step}: ${cur.magnitude} ${ramp.unit} (${cur.status}), ${ramp.current + 1} of ${ramp.steps.length}`
          : '-',
      ),
    ),
    el('p', { class: 'reason', 'data-testid': 'ramp-summary' }, ramp.summary),
    table(
      'ramp-steps',
      ['step', 'magnitude', 'status', 'canary', 'control', 'canary bad', 'needed', ''],
      rows,
    ),
  );
}

// Fleet mode: pooled arms over every replica, each replica's counts and last report, the lease holder.
function renderFleet(c, f) {
  c.fleet.hidden = f === null;
  if (f === null) return c.fleet.replaceChildren();
  const armText = (a) => `${a.requests} req, errors ${pct(a.error, a.requests)}`;
  const rows = f.replicas.map((r) =>
    el(
      'tr',
      { 'data-replica': r.replica },
      el(
        'td',
        {},
        r.replica,
        r.replica === f.evaluator ? el('span', { class: 'chip lease' }, 'evaluator') : null,
      ),
      el('td', {}, String(r.canary.requests)),
      el('td', {}, String(r.control.requests)),
      el('td', { title: r.last_seen }, ago(r.last_seen)),
    ),
  );
  c.fleet.replaceChildren(
    el(
      'h3',
      {},
      `Fleet ${f.name} `,
      el(
        'span',
        { class: `chip ${f.connected ? 'live' : 'down'}` },
        f.connected ? 'connected' : 'Redis unreachable',
      ),
    ),
    el(
      'dl',
      { class: 'blast' },
      el('dt', {}, 'evaluator (lease)'),
      el('dd', { 'data-testid': 'fleet-evaluator' }, f.evaluator || 'none'),
      el('dt', {}, 'this replica'),
      el('dd', {}, `${f.replica}${f.this_replica_evaluates ? ' (evaluates)' : ''}`),
      el('dt', {}, 'grant'),
      el('dd', {}, f.grant.fresh ? `fresh (${f.grant.expires_in_ms} ms left)` : 'stale: injection paused'),
      el('dt', {}, 'pooled canary'),
      el('dd', { 'data-testid': 'fleet-pooled-canary' }, armText(f.pooled.canary)),
      el('dt', {}, 'pooled control'),
      el('dd', {}, armText(f.pooled.control)),
    ),
    table('fleet-replicas', ['replica', 'canary req', 'control req', 'last seen'], rows),
  );
}

// ---- past runs (the run journal) ----

async function refreshRuns(c) {
  let data;
  try {
    data = await getJson(`/experiments/${encodeURIComponent(c.id)}/runs`);
  } catch {
    return; // 404: no runs and no such experiment any more
  }
  const runs = data.runs.slice().reverse(); // newest first
  const key = runs.map((r) => r.run).join(',');
  if (key === c.runsKey) return;
  c.runsKey = key;
  if (runs.length === 0) {
    c.runs.replaceChildren(el('p', { class: 'empty' }, 'No finished runs yet.'));
    return;
  }
  c.runs.replaceChildren(
    table(
      'runs-table',
      ['run', 'verdict', 'started', 'ended', 'ended by', ''],
      runs.map((r) =>
        el(
          'tr',
          { 'data-run': String(r.run) },
          el('td', {}, `#${r.run}`),
          el('td', {}, el('span', { class: `chip verdict-${r.verdict}` }, r.verdict)),
          el('td', {}, fmtTime(r.started_at)),
          el('td', {}, fmtTime(r.ended_at)),
          el('td', {}, `${r.state}${r.cause ? ` (${r.cause})` : ''} ${r.ended_by}`),
          el(
            'td',
            {},
            el(
              'button',
              { type: 'button', 'data-testid': `view-run-${r.run}`, onclick: () => void showRun(c, r.run) },
              'Report',
            ),
          ),
        ),
      ),
    ),
  );
}

async function showRun(c, n) {
  let r;
  try {
    r = await getJson(`/experiments/${encodeURIComponent(c.id)}/runs/${n}`);
  } catch (err) {
    notice(err.message, 'error');
    return;
  }
  const a = r.arms;
  c.runView.hidden = false;
  c.runView.dataset.run = String(r.run);
  c.runView.replaceChildren(
    el(
      'div',
      { class: 'head' },
      el('h3', {}, `Run #${r.run}`),
      el('span', { class: `chip verdict-${r.verdict}`, 'data-testid': 'run-verdict' }, r.verdict),
      el('button', { type: 'button', onclick: () => (c.runView.hidden = true) }, 'Close'),
    ),
    el('p', { class: 'hypothesis' }, r.hypothesis),
    el('p', { class: 'reason', 'data-testid': 'run-verdict-reason' }, r.verdict_reason),
    el(
      'dl',
      { class: 'blast' },
      ...[
        ['fault', faultText(r.fault)],
        ['split', `${r.split_percent}%`],
        ['started', `${fmtTime(r.started_at)} by ${r.started_by}`],
        ['ended', `${fmtTime(r.ended_at)} by ${r.ended_by}: ${r.state}${r.reason ? `, ${r.reason}` : ''}`],
        ['revision', `config ${r.config_revision}, spec ${r.spec_revision}`],
        ['replicas', String(r.replicas)],
        [
          'arms',
          `canary ${a.canary.requests} req, errors ${pct(a.canary.error, a.canary.requests)}, timeouts ${pct(a.canary.timeout, a.canary.requests)} · control ${a.control.requests} req, errors ${pct(a.control.error, a.control.requests)}, timeouts ${pct(a.control.timeout, a.control.requests)}`,
        ],
        ['history', r.history ? r.history.summary : '-'],
      ].flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]),
    ),
    el(
      'ul',
      { class: 'guards' },
      ...r.guardrails.map((g) =>
        el(
          'li',
          { class: `guard status-${g.status}` },
          el('b', {}, guardName(g)),
          ` ${g.status.replace('_', ' ')} · e = ${fmtE(g.eValue)} of ${fmtE(g.threshold)} (1/α)`,
          el('small', {}, ` ${g.detail}`),
        ),
      ),
    ),
  );
  if (r.history && r.history.regression)
    c.runView.querySelector('.head').append(el('span', { class: 'chip verdict-refuted' }, 'regression'));
}

function evidenceText(ev) {
  if (ev && ev.guardrail)
    return `${guardName(ev.guardrail)} e=${fmtE(ev.guardrail.eValue)} ≥ ${fmtE(ev.guardrail.threshold)}`;
  return JSON.stringify(ev);
}

// ---- charts ----

function chartSize(box) {
  const w = Math.max(240, Math.floor(box.clientWidth || 300));
  return { width: w, height: Math.round(Math.min(180, Math.max(120, w * 0.42))) };
}

function makeChart(c, key, title, series, opts) {
  const box = el('div', { class: 'chart', 'data-testid': `chart-${key}` }, el('h3', {}, title));
  c.chartsBox.append(box);
  const size = chartSize(box); // the grid cell's width
  const u = new uPlot(
    {
      ...size,
      legend: { show: true, live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, ...(opts.scales || {}) },
      axes: [{}, { size: 56, values: opts.values }],
      series: [{}, ...series],
    },
    [[], ...series.map(() => [])],
    box,
  );
  c.charts[key] = { u, box };
}

function buildCharts(c, s) {
  for (const ch of Object.values(c.charts)) ch.u.destroy();
  c.charts = {};
  c.chartsBox.replaceChildren();
  const arm = (name, label) => ({ label, stroke: COLORS[name], width: 2, spanGaps: true });
  const pctFmt = (_u, ticks) => ticks.map((v) => `${+(v * 100).toFixed(2)}%`);
  makeChart(c, 'requests', 'Requests per second', [arm('canary', 'canary'), arm('control', 'control')], {});
  makeChart(
    c,
    'errors',
    `Error rate (${WINDOW_S} s window)`,
    [arm('canary', 'canary'), arm('control', 'control')],
    {
      values: pctFmt,
      scales: { y: { range: (_u, _min, max) => [0, Math.max(0.01, max * 1.1)] } },
    },
  );
  makeChart(
    c,
    'timeouts',
    `Timeout rate (${WINDOW_S} s window)`,
    [arm('canary', 'canary'), arm('control', 'control')],
    {
      values: pctFmt,
      scales: { y: { range: (_u, _min, max) => [0, Math.max(0.01, max * 1.1)] } },
    },
  );
  const lat = s.guardrails.filter((g) => g.metric === 'latency');
  if (lat.length > 0) {
    const ser = lat.flatMap((g) => [
      { ...arm('canary', `canary ${guardName(g)}`) },
      { ...arm('control', `control T_p ${guardName(g)}`), dash: [6, 4] },
    ]);
    makeChart(c, 'latency', 'Guarded latency quantiles (ms, since start)', ser, {});
  }
  const evSeries = s.guardrails.flatMap((g, i) => {
    const color = GUARD_COLORS[i % GUARD_COLORS.length];
    return [
      { label: `${guardName(g)} e`, stroke: color, width: 2 },
      { label: `${guardName(g)} (insufficient data)`, stroke: COLORS.insufficient, width: 2, dash: [3, 3] },
      { label: `1/α ${guardName(g)}`, stroke: COLORS.threshold, width: 1, dash: [8, 4] },
    ];
  });
  const maxThreshold = Math.max(...s.guardrails.map((g) => g.threshold));
  const pow10 = (v) => Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-6;
  makeChart(c, 'evidence', 'Evidence: e-value vs 1/α (log scale)', evSeries, {
    scales: {
      y: {
        distr: 3,
        log: 10,
        // whole decades from at most 0.01 to above the highest boundary, so the boundary is always in view
        range: (_u, min, max) => [
          10 ** Math.floor(Math.log10(Math.min(0.01, min > 0 ? min : 0.01))),
          10 ** Math.ceil(Math.log10(Math.max(maxThreshold * 2, max || 1))),
        ],
      },
    },
    // label the decades only: uPlot also ticks 2..9 between them
    values: (_u, ticks) => ticks.map((v) => (pow10(v) ? fmtE(v) : '')),
  });
}

function windowRate(bad, total) {
  const out = new Array(total.length);
  let sb = 0;
  let st = 0;
  for (let i = 0; i < total.length; i++) {
    sb += bad[i] || 0;
    st += total[i] || 0;
    if (i >= WINDOW_S) {
      sb -= bad[i - WINDOW_S] || 0;
      st -= total[i - WINDOW_S] || 0;
    }
    out[i] = st > 0 ? sb / st : null;
  }
  return out;
}

function appendSeries(c, s) {
  if (!c.data) {
    c.data = {
      t: [],
      canary: {},
      control: {},
      guardrails: s.guardrails.map((g) => ({ ...g, e: [], status: [], canary_ms: [], control_ms: [] })),
    };
    for (const arm of ['canary', 'control']) for (const f of Object.keys(s[arm])) c.data[arm][f] = [];
  }
  const d = c.data;
  const push = (dst, src) => {
    for (const v of src) dst.push(v);
    if (dst.length > KEEP) dst.splice(0, dst.length - KEEP);
  };
  push(d.t, s.t);
  for (const arm of ['canary', 'control']) for (const f of Object.keys(s[arm])) push(d[arm][f], s[arm][f]);
  s.guardrails.forEach((g, i) => {
    const dg = d.guardrails[i];
    if (!dg) return;
    for (const f of ['e', 'status', 'canary_ms', 'control_ms']) push(dg[f], g[f]);
  });
  if (s.t.length > 0) c.lastT = s.t[s.t.length - 1];
}

function drawCharts(c) {
  const d = c.data;
  if (!d) return;
  const x = d.t.map((t) => t / 1000);
  const set = (key, ys) => c.charts[key] && c.charts[key].u.setData([x, ...ys]);
  set('requests', [d.canary.requests, d.control.requests]);
  set('errors', [
    windowRate(d.canary.errors, d.canary.requests),
    windowRate(d.control.errors, d.control.requests),
  ]);
  set('timeouts', [
    windowRate(d.canary.timeouts, d.canary.requests),
    windowRate(d.control.timeouts, d.control.requests),
  ]);
  const lat = d.guardrails.filter((g) => g.metric === 'latency');
  if (lat.length > 0)
    set(
      'latency',
      lat.flatMap((g) => [g.canary_ms, g.control_ms]),
    );
  set(
    'evidence',
    d.guardrails.flatMap((g) => [
      g.e.map((v, i) => (g.status[i] === 0 ? null : v)),
      // the insufficient-data stretch overlaps the first judged sample so the line is continuous
      g.e.map((v, i) => (g.status[i] === 0 || g.status[i - 1] === 0 ? v : null)),
      g.e.map(() => g.threshold),
    ]),
  );
  c.chartsBox.dataset.samples = String(d.t.length);
  c.chartsBox.dataset.canaryRequests = String(d.canary.requests.reduce((a, b) => a + (b || 0), 0));
}

async function pollSeries(c) {
  // one poll at a time per card: two answers for the same `since` would append the samples twice
  if (c.polling) return;
  c.polling = true;
  try {
    await pollSeriesOnce(c);
  } finally {
    c.polling = false;
  }
}

async function pollSeriesOnce(c) {
  let s;
  try {
    s = await getJson(`/experiments/${encodeURIComponent(c.id)}/series?since=${c.lastT}`);
  } catch {
    return;
  }
  const key = s.guardrails.map(guardName).join('|');
  if (key !== c.layoutKey) {
    // First poll, or new guardrails (a reload changed the spec): build the charts, take the whole history.
    if (c.lastT !== 0) {
      c.lastT = 0;
      return pollSeriesOnce(c);
    }
    c.layoutKey = key;
    c.data = null;
    buildCharts(c, s);
  }
  appendSeries(c, s);
  drawCharts(c);
}

// ---- refresh loop ----

let refreshing = null;
async function refresh() {
  if (refreshing) return refreshing;
  refreshing = (async () => {
    try {
      const list = await getJson('/experiments');
      const ids = new Set(list.experiments.map((e) => e.id));
      for (const [id, c] of cards)
        if (!ids.has(id)) {
          for (const ch of Object.values(c.charts)) ch.u.destroy();
          c.root.remove();
          cards.delete(id);
        }
      await Promise.all(
        list.experiments.map(async (e) => {
          const c = cards.get(e.id) || createCard(e.id);
          renderReport(c, await getJson(`/experiments/${encodeURIComponent(e.id)}/report`));
          await refreshRuns(c);
        }),
      );
      if (list.experiments.length === 0)
        $('experiments').replaceChildren(
          el('p', { class: 'empty' }, 'No experiments in the running config.'),
        );
      else $('experiments').querySelector('.empty')?.remove();
    } catch (err) {
      notice(`refresh failed: ${err.message}`, 'error');
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

function addEvent(e) {
  const li = el(
    'li',
    { class: `ev ev-${e.type}` },
    el('time', {}, (e.at || '').replace('T', ' ').replace(/\.\d+Z$/, 'Z')),
    ` ${e.type}${e.experiment ? ` ${e.experiment}` : ''}${e.cause ? ` (${e.cause})` : ''}${e.reason ? `: ${e.reason}` : ''}${e.by ? ` by ${e.by}` : ''}`,
  );
  const list = $('events');
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
}

function connect() {
  const es = new EventSource('/events');
  es.onopen = () => {
    $('conn').textContent = 'live';
    $('conn').className = 'chip live';
  };
  es.onerror = () => {
    $('conn').textContent = 'reconnecting';
    $('conn').className = 'chip down';
  };
  for (const type of [
    'started',
    'killed',
    'expired',
    'armed',
    'removed',
    'config_reloaded',
    'config_invalid',
  ])
    es.addEventListener(type, (m) => {
      try {
        addEvent(JSON.parse(m.data));
      } catch {
        // ignore a malformed frame
      }
      void refresh();
    });
}

let resizeTimer = null;
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    for (const c of cards.values()) {
      c.layoutKey = '';
      c.lastT = 0;
      c.data = null;
      void pollSeries(c);
    }
  }, 200);
});

async function tick() {
  await Promise.all([...cards.values()].map((c) => pollSeries(c)));
}

void refresh().then(tick);
connect();
setInterval(() => void tick(), 1000);
setInterval(() => void refresh(), 2000);
