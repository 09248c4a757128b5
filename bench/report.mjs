// Turns a results object into the markdown tables and the goal checks.
const fmt = (x, digits = 0) =>
  x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);
const ms = (us) => fmt(us === null || us === undefined ? null : us / 1000, 2);

export function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

function medianOf(name, sc, label) {
  return sc.peers[name]?.median?.[label] ?? null;
}

function wrkTable(sc, m) {
  const rows = [
    '| peer | req/s | % of direct | x http-proxy | p50 ms | p99 ms | p99.9 ms | errors (incl. injected 5xx) | CPU us/req | peak RSS MB |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  const direct = medianOf('direct', sc, m.label)?.rps;
  const hp = medianOf('http-proxy', sc, m.label)?.rps;
  for (const [name, p] of Object.entries(sc.peers)) {
    if (p.skipped) {
      rows.push(`| ${name} | skipped: ${p.skipped} | | | | | | | | |`);
      continue;
    }
    const r = p.median?.[m.label];
    if (!r) continue;
    rows.push(
      `| ${name} | ${fmt(r.rps)} | ${direct ? fmt((100 * r.rps) / direct, 1) : '-'} | ${hp ? fmt(r.rps / hp, 2) : '-'} | ${ms(r.p50Us)} | ${ms(r.p99Us)} | ${ms(r.p999Us)} | ${fmt(r.errors)} | ${name === 'direct' ? '-' : fmt(r.cpuUsPerReq, 1)} | ${p.peakRssKb ? fmt(p.peakRssKb / 1024, 1) : '-'} |`,
    );
  }
  return rows;
}

function pacedTable(sc, m) {
  const rows = [
    '| peer | achieved req/s | p50 ms | p99 ms | p99.9 ms | +p99 vs direct ms | non-injected p99 ms | injected | errors | CPU us/req |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  const direct = medianOf('direct', sc, m.label)?.p99Ms;
  for (const [name, p] of Object.entries(sc.peers)) {
    if (p.skipped) {
      rows.push(`| ${name} | skipped: ${p.skipped} | | | | | | | | |`);
      continue;
    }
    const r = p.median?.[m.label];
    if (!r) continue;
    rows.push(
      `| ${name} | ${fmt(r.achievedRate, 1)} | ${fmt(r.p50Ms, 3)} | ${fmt(r.p99Ms, 3)} | ${fmt(r.p999Ms, 3)} | ${direct !== null && direct !== undefined && name !== 'direct' ? fmt(r.p99Ms - direct, 3) : '-'} | ${fmt(r.otherP99Ms, 3)} | ${fmt(r.injected)} | ${fmt(r.errors)} | ${name === 'direct' ? '-' : fmt(r.cpuUsPerReq, 1)} |`,
    );
  }
  return rows;
}

function stormTable(sc, m) {
  const rows = [
    '| peer | connections opened | plain request status | plain request ms (max over reps) | served < 1 s | peak RSS MB |',
    '| --- | ---: | ---: | ---: | --- | ---: |',
  ];
  for (const [name, p] of Object.entries(sc.peers)) {
    if (p.skipped) {
      rows.push(`| ${name} | skipped: ${p.skipped} | | | | |`);
      continue;
    }
    const r = p.median?.[m.label];
    if (!r) continue;
    rows.push(
      `| ${name} | ${fmt(r.connected)} | ${fmt(r.plainStatus)} | ${fmt(r.plainMsMax, 1)} | ${r.allOk ? 'yes' : 'NO'} | ${p.peakRssKb ? fmt(p.peakRssKb / 1024, 1) : '-'} |`,
    );
  }
  return rows;
}

/**
 * Why a goal has no value: its scenario was not selected ("not run"), a peer it compares was not
 * selected, was skipped (tool missing) or crashed, or the measure produced no result.
 */
function missingReason(results, deps) {
  for (const [id] of deps) {
    if (!results.scenarios.some((s) => s.id === id)) return 'not run';
  }
  for (const [id, peer, label] of deps) {
    const p = results.scenarios.find((s) => s.id === id)?.peers?.[peer];
    if (!p) return `not run (peer ${peer} not selected)`;
    if (p.skipped) return `n/a (${peer} skipped)`;
    if (p.crashed) return `n/a (${peer} crashed)`;
    if (!p.median?.[label]) return `n/a (no ${label} result for ${peer})`;
  }
  return 'n/a';
}

export function goals(results) {
  const sc = (id) => results.scenarios.find((s) => s.id === id);
  const get = (id, peer, label, key) => sc(id)?.peers?.[peer]?.median?.[label]?.[key] ?? null;
  const ratio = (a, b) => (a !== null && b !== null && b !== 0 ? a / b : null);
  const out = [];
  // deps: the [scenario, peer, measure label] cells the value is computed from
  const add = (goal, value, target, ok, deps) =>
    out.push({
      goal,
      value,
      target,
      met: value === null ? null : ok(value),
      unit: '',
      note: value === null ? missingReason(results, deps) : null,
    });
  const both = (id, a, b, label) => [
    [id, a, label],
    [id, b, label],
  ];
  add(
    'throughput, pass-through, x http-proxy',
    ratio(
      get('passthrough-1k', 'faultline', 'saturation', 'rps'),
      get('passthrough-1k', 'http-proxy', 'saturation', 'rps'),
    ),
    '>= 1.5',
    (v) => v >= 1.5,
    both('passthrough-1k', 'faultline', 'http-proxy', 'saturation'),
  );
  add(
    'throughput, 5% abort active, x http-proxy',
    ratio(get('abort5', 'faultline', 'saturation', 'rps'), get('abort5', 'http-proxy', 'saturation', 'rps')),
    '>= 2',
    (v) => v >= 2,
    both('abort5', 'faultline', 'http-proxy', 'saturation'),
  );
  const cpu = (peer) => get('passthrough-1k', peer, 'saturation', 'cpuUsPerReq');
  add(
    'CPU/request, x http-proxy',
    ratio(cpu('faultline'), cpu('http-proxy')),
    '<= 0.6',
    (v) => v <= 0.6,
    both('passthrough-1k', 'faultline', 'http-proxy', 'saturation'),
  );
  add(
    'CPU/request, x nginx',
    ratio(cpu('faultline'), cpu('nginx')),
    '<= 2',
    (v) => v <= 2,
    both('passthrough-1k', 'faultline', 'nginx', 'saturation'),
  );
  const p99 = get('passthrough-1k', 'faultline', 'fixed 2000/s', 'p99Ms');
  const p99d = get('passthrough-1k', 'direct', 'fixed 2000/s', 'p99Ms');
  add(
    '+p99 vs direct at 2000 req/s (ms)',
    p99 !== null && p99d !== null ? p99 - p99d : null,
    '<= 1',
    (v) => v <= 1,
    both('passthrough-1k', 'faultline', 'direct', 'fixed 2000/s'),
  );
  const lat = get('latency1', 'faultline', 'fixed 2000/s', 'otherP99Ms');
  const latd = get('latency1', 'direct', 'fixed 2000/s', 'p99Ms');
  add(
    '1% latency active: non-injected p99 minus direct p99 (ms)',
    lat !== null && latd !== null ? lat - latd : null,
    '<= 1 (unchanged)',
    (v) => v <= 1,
    both('latency1', 'faultline', 'direct', 'fixed 2000/s'),
  );
  for (const label of ['GET 128 KB', 'POST 128 KB']) {
    add(
      `${label} throughput, x nginx`,
      ratio(get('body-128k', 'faultline', label, 'rps'), get('body-128k', 'nginx', label, 'rps')),
      '>= 0.9',
      (v) => v >= 0.9,
      both('body-128k', 'faultline', 'nginx', label),
    );
  }
  // Issue 18: at 1,000 connections Faultline's tail no worse than http-proxy's.
  add(
    'p99 at -c1000, x http-proxy',
    ratio(
      get('c1000', 'faultline', 'saturation c1000', 'p99Us'),
      get('c1000', 'http-proxy', 'saturation c1000', 'p99Us'),
    ),
    '<= 1',
    (v) => v <= 1,
    both('c1000', 'faultline', 'http-proxy', 'saturation c1000'),
  );
  return out;
}

export function markdown(results) {
  const m = results.machine;
  const lines = [];
  lines.push(`# Faultline bench results`);
  lines.push('');
  lines.push(
    `Run ${results.startedAt} (${results.options.quick ? 'quick' : 'full'}): ${results.options.reps} rep(s) x ${results.options.durationS} s per measure, alternating peer order, medians shown.`,
  );
  lines.push('');
  lines.push(`- machine: ${m.nproc} CPUs, ${m.cpuModel}; node ${m.node}; ${m.kernel}`);
  lines.push(`- tools: ${m.wrk ?? 'wrk missing'}; ${m.nginx ?? 'nginx missing'}; undici ${m.undici ?? '?'}`);
  lines.push(`- layout: ${results.layout.description}`);
  lines.push(
    `- saturation: wrk -t1 (closed loop). Fixed rate: the project's open-loop load harness (src/load, undici Pool, 64 connections), latency from each request's scheduled send time.`,
  );
  lines.push(
    `- CPU us/req: proxy process utime+stime delta from /proc/<pid>/stat over the measure / requests. Peak RSS: VmHWM at the end of the scenario (the proxy is restarted per scenario).`,
  );
  lines.push('');
  for (const s of results.scenarios) {
    lines.push(`## ${s.id}: ${s.title}`);
    lines.push('');
    if (s.foreignCpuPct?.max !== null && s.foreignCpuPct?.max !== undefined) {
      lines.push(
        `CPU used by processes outside the bench during the measures: median ${s.foreignCpuPct.median}%, max ${s.foreignCpuPct.max}% of the machine.`,
        '',
      );
    }
    for (const meas of s.measures) {
      lines.push(`### ${meas.label}`);
      lines.push('');
      const rows =
        meas.kind === 'wrk'
          ? wrkTable(s, meas)
          : meas.kind === 'paced'
            ? pacedTable(s, meas)
            : stormTable(s, meas);
      lines.push(...rows, '');
    }
  }
  lines.push('## Goals (reported, not asserted)');
  lines.push('');
  lines.push('| goal | value | target | met |');
  lines.push('| --- | ---: | --- | --- |');
  for (const g of results.goals) {
    lines.push(
      `| ${g.goal} | ${g.value === null ? '-' : g.value.toFixed(2)} | ${g.target} | ${g.met === null ? (g.note ?? 'n/a') : g.met ? 'yes' : 'no'} |`,
    );
  }
  lines.push('');
  if (results.notes.length) {
    lines.push('## Notes');
    lines.push('');
    for (const n of results.notes) lines.push(`- ${n}`);
    lines.push('');
  }
  return lines.join('\n');
}
