// Bench driver: `npm run bench -- [--scenario ID]... [--duration S] [--reps N] [--quick]
//                 [--peers direct,nginx,http-proxy,faultline] [--no-install]`
// Writes bench/results/<timestamp>.json and bench/results/<timestamp>.md (the same markdown it
// prints on stdout), and on a full run of every scenario and peer also refreshes bench/RESULTS.md.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  PEERS,
  ROOT,
  peerAvailability,
  startPeer,
  startUpstream,
  stopAll,
  toolVersion,
  which,
} from './peers.mjs';
import { cpuMicros, foreignCpuWindow, peakRssKb } from './procstat.mjs';
import { runWrk } from './wrk.mjs';
import { SCENARIOS } from './scenarios.mjs';
import { goals, markdown, median } from './report.mjs';

const { values: args } = parseArgs({
  options: {
    scenario: { type: 'string', multiple: true },
    duration: { type: 'string' },
    reps: { type: 'string' },
    quick: { type: 'boolean', default: false },
    peers: { type: 'string' },
    'no-install': { type: 'boolean', default: false },
    'no-grpc': { type: 'boolean', default: false },
    'no-h2': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  process.stdout.write(
    `usage: node bench/run.mjs [--scenario ID]... [--duration S] [--reps N] [--quick] [--peers a,b] [--no-install] [--no-grpc] [--no-h2]\nscenarios: ${SCENARIOS.map((s) => s.id).join(', ')}\npeers: ${PEERS.join(', ')}\n`,
  );
  process.exit(0);
}
const log = (s) => process.stderr.write(`bench: ${s}\n`);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    log(`${sig}: stopping the peers`);
    stopAll();
    process.exit(130);
  });
}
const quick = args.quick;
const durationS = Number(args.duration ?? (quick ? 1 : 5));
const reps = Number(args.reps ?? (quick ? 1 : 5));
// --quick skips the separate warm-up pass (the smoke test keeps the whole run under a minute)
const warmupS = quick ? 0 : 2;
if (!(durationS > 0) || !(reps >= 1) || !Number.isInteger(reps)) {
  log('--duration must be > 0 and --reps a positive integer');
  process.exit(3);
}
// --quick (the smoke test) leaves out the scenarios marked `notQuick` unless asked for by name.
const wanted =
  args.scenario?.flatMap((s) => s.split(',')) ??
  SCENARIOS.filter((s) => !(quick && s.notQuick)).map((s) => s.id);
const unknown = wanted.filter((id) => !SCENARIOS.some((s) => s.id === id));
if (unknown.length) {
  log(`unknown scenario(s) ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.id).join(', ')}`);
  process.exit(3);
}
const peerNames = args.peers
  ? args.peers
      .split(',')
      .map((p) => p.trim())
      .filter((p) => p !== '')
  : PEERS;
const badPeers = peerNames.filter((p) => !PEERS.includes(p));
if (badPeers.length > 0 || peerNames.length === 0) {
  log(
    `--peers: ${badPeers.length > 0 ? `unknown peer(s) ${badPeers.join(', ')}` : 'no peer given'}; valid peers: ${PEERS.join(', ')}`,
  );
  process.exit(2);
}
const notes = [];
const note = (s) => {
  notes.push(s);
  log(s);
};

// --- tools -------------------------------------------------------------------------------------
function ensureTools() {
  const missing = [];
  if (!which('wrk')) missing.push('wrk');
  if (!which('nginx') && peerNames.includes('nginx')) missing.push('nginx-light');
  if (!which('h2load') && !quick && !args.scenario && !args['no-h2']) missing.push('nghttp2-client');
  if (missing.length === 0) return;
  const cmd = `apt-get install -y ${missing.join(' ')}`;
  if (process.getuid?.() === 0 && !args['no-install']) {
    log(`installing ${missing.join(', ')}: ${cmd}`);
    let r = spawnSync('apt-get', ['install', '-y', ...missing], {
      stdio: 'ignore',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    if (r.status !== 0) {
      spawnSync('apt-get', ['update'], { stdio: 'ignore' });
      r = spawnSync('apt-get', ['install', '-y', ...missing], {
        stdio: 'ignore',
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      });
    }
    if (r.status !== 0)
      note(`could not install ${missing.join(', ')}; run as root: apt-get update && ${cmd}`);
  } else {
    note(`missing ${missing.join(', ')}; install with: sudo apt-get install -y ${missing.join(' ')}`);
  }
}
ensureTools();
const haveWrk = which('wrk') !== null;
if (!haveWrk) note('wrk missing: saturation measures are skipped (apt-get install -y wrk)');

const loadEntry = join(ROOT, 'dist/load/command.js');
if (!existsSync(loadEntry)) {
  log('dist/load missing; compiling src (npx tsc -p tsconfig.build.json)');
  spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'ignore' });
}
const havePaced = existsSync(loadEntry);
if (!havePaced) note('dist/load/command.js missing: fixed-rate measures are skipped (npm run build)');
for (const p of peerNames) {
  const why = peerAvailability(p);
  if (why) note(`peer ${p} skipped: ${why}`);
}

// --- layout ------------------------------------------------------------------------------------
const nproc = availableParallelism();
const canPin = nproc >= 2 && which('taskset') !== null;
const pinProxy = canPin ? ['taskset', '-c', '0'] : [];
const pinLoad = canPin ? ['taskset', '-c', '1'] : [];
const layout = canPin
  ? {
      pinned: true,
      proxyCores: [0],
      upstreamCores: [1],
      loadCores: [1],
      description:
        'taskset: proxy alone on core 0; upstream (Node) + load generator (wrk or harness) on core 1; "direct" = load generator straight to the upstream, both on core 1',
    }
  : {
      pinned: false,
      description: `not pinned (${nproc} CPU(s)${which('taskset') ? '' : ', taskset missing'}): figures mix proxy, upstream and load on shared cores`,
    };
if (!canPin) note(layout.description);

// --- measures ----------------------------------------------------------------------------------
function runPaced({ url, rate, durationS: d, experiment, adminUrl }) {
  const argv = [
    '--warmup',
    String(quick ? 0.25 : 1),
    '--target',
    url,
    '--rate',
    String(rate),
    '--duration',
    `${d}s`,
    '--concurrency',
    '64',
  ];
  if (experiment) argv.push('--experiment', experiment);
  if (adminUrl && experiment) argv.push('--admin', adminUrl);
  const [cmd, ...rest] = [...pinLoad, process.execPath, join(ROOT, 'bench/loadgen.mjs'), ...argv];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (x) => (out += x));
    child.stderr.on('data', (x) => (err += x));
    child.on('close', (code) => {
      try {
        resolve({ code, report: JSON.parse(out) });
      } catch {
        reject(new Error(`loadgen exited ${code}: ${err.trim().slice(-300)}`));
      }
    });
  });
}

function runStorm({ url, connections, holdMs }) {
  const [cmd, ...rest] = [
    ...pinLoad,
    process.execPath,
    join(ROOT, 'bench/storm.mjs'),
    url,
    String(connections),
    String(holdMs),
  ];
  const r = spawnSync(cmd, rest, { encoding: 'utf8', timeout: 30_000 });
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

const alive = (pid) => {
  if (pid === null) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function measure(peer, m, d, tmpDir) {
  const url = `${peer.url}${m.path ?? '/'}`;
  const cpu0 = peer.pid ? cpuMicros(peer.pid) : null;
  const foreign = foreignCpuWindow(nproc);
  let row;
  if (m.kind === 'wrk') {
    const w = await runWrk({
      url,
      connections: m.connections,
      durationS: d,
      method: m.method,
      bodyBytes: m.bodyBytes,
      threads: m.threads,
      tmpDir,
      pin: pinLoad,
    });
    row = {
      requests: w.requests,
      rps: w.rps,
      p50Us: w.latencyUs.p50,
      p99Us: w.latencyUs.p99,
      p999Us: w.latencyUs.p999,
      errors: Object.values(w.errors).reduce((a, b) => a + b, 0),
      errorDetail: w.errors,
    };
  } else if (m.kind === 'paced') {
    const { report: r } = await runPaced({
      url,
      rate: m.rate,
      // --quick: half a second of paced load is enough to prove the path works (wrk needs whole seconds)
      durationS: quick ? Math.min(d, 0.5) : d,
      experiment: m.experiment,
      adminUrl: peer.adminUrl,
    });
    row = {
      requests: r.completed,
      achievedRate: r.achievedRatePerS,
      p50Ms: r.latencyMs.p50,
      p99Ms: r.latencyMs.p99,
      p999Ms: r.latencyMs.p999,
      // Everything without the experiment's x-faultline-injected mark: the "non-faulted" traffic.
      otherP99Ms: r.notInjected.latencyMs.p99,
      injected: r.arms.canary.injected,
      errors: r.errors,
      dropped: r.dropped,
      admin: r.admin,
    };
  } else {
    const s = runStorm({ url: peer.url, connections: m.connections, holdMs: m.holdMs });
    row = { ...s, requests: null };
  }
  if (cpu0 !== null && row.requests) row.cpuUsPerReq = (cpuMicros(peer.pid) - cpu0) / row.requests;
  // CPU used meanwhile by processes outside this bench: other work on the machine skews every figure.
  row.foreignCpuPct = Math.round(foreign() * 10) / 10;
  return row;
}

function summarize(m, rows) {
  if (m.kind === 'storm') {
    return {
      connected: median(rows.map((r) => r.connected)),
      plainStatus: rows.every((r) => r.plainStatus === 200)
        ? 200
        : (rows.find((r) => r.plainStatus !== 200)?.plainStatus ?? null),
      plainMsMax: Math.max(...rows.map((r) => r.plainMs)),
      allOk: rows.every((r) => r.ok),
    };
  }
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))].filter((k) =>
    rows.some((r) => typeof r[k] === 'number'),
  );
  return Object.fromEntries(keys.map((k) => [k, median(rows.map((r) => r[k]))]));
}

async function runScenario(sc, tmpDir) {
  log(`scenario ${sc.id}: ${sc.title}`);
  const upstream = await startUpstream({ pin: pinLoad });
  const peers = {};
  const live = [];
  for (const name of peerNames) {
    const p = await startPeer(name, { upstream, pin: pinProxy, tmpDir, experiments: sc.experiments ?? [] });
    if (p.skipped) {
      peers[name] = { skipped: p.skipped };
      if (peerAvailability(name) === null) note(`${sc.id}: peer ${name} skipped: ${p.skipped}`);
    } else {
      peers[name] = { runs: [] };
      live.push(p);
    }
  }
  const measures = sc.measures.filter((m) => {
    if (m.kind === 'wrk' && !haveWrk) return false;
    if (m.kind === 'paced' && !havePaced) return false;
    return true;
  });
  try {
    // Warm-up: JIT, connection pools and upstream keep-alive sockets, not recorded.
    for (const p of warmupS > 0 ? live : []) {
      for (const m of measures.filter((x) => x.kind !== 'storm')) {
        await measure(p, m, warmupS, tmpDir).catch((e) => log(`warm-up ${p.name}: ${e.message}`));
      }
    }
    // A scenario may cap its repetitions (the abort storm holds 1,000 sockets for seconds per rep).
    const n = Math.min(reps, (quick ? sc.quickMaxReps : undefined) ?? sc.maxReps ?? reps);
    for (let rep = 0; rep < n; rep++) {
      // Alternate the order so drift over the run (thermal, page cache) does not favour one peer.
      const order = rep % 2 === 0 ? live : [...live].reverse();
      for (const p of order) {
        if (peers[p.name].crashed) continue;
        for (const m of measures) {
          try {
            const row = await measure(p, m, Math.max(durationS, m.minDurationS ?? 0), tmpDir);
            peers[p.name].runs.push({ rep, measure: m.label, ...row });
          } catch (err) {
            peers[p.name].runs.push({ rep, measure: m.label, error: err.message });
            log(`${sc.id} ${p.name} ${m.label}: ${err.message}`);
          }
          if (!alive(p.pid)) {
            peers[p.name].crashed = `process exited during ${m.label}`;
            note(`${sc.id}: ${p.name} exited during ${m.label}`);
            break;
          }
        }
      }
    }
    for (const p of live) {
      const rec = peers[p.name];
      if (p.pid && alive(p.pid)) rec.peakRssKb = peakRssKb(p.pid);
      rec.median = {};
      for (const m of measures) {
        const rows = rec.runs.filter((r) => r.measure === m.label && !r.error);
        if (rows.length) rec.median[m.label] = summarize(m, rows);
      }
    }
  } finally {
    for (const p of live) await p.stop();
    await upstream.stop();
  }
  const foreignPcts = Object.values(peers).flatMap((p) => (p.runs ?? []).map((r) => r.foreignCpuPct ?? 0));
  const foreignCpuPct = {
    median: median(foreignPcts),
    max: foreignPcts.length ? Math.max(...foreignPcts) : null,
  };
  if ((foreignCpuPct.max ?? 0) > 5) {
    note(
      `${sc.id}: other processes used up to ${foreignCpuPct.max}% of the machine's CPU during a measure (median ${foreignCpuPct.median}%): figures are skewed`,
    );
  }
  return {
    id: sc.id,
    title: sc.title,
    measures: sc.measures.filter((m) => measures.includes(m)),
    peers,
    foreignCpuPct,
  };
}

// --- main --------------------------------------------------------------------------------------
const startedAt = new Date().toISOString();
const tmpDir = mkdtempSync(join(tmpdir(), 'faultline-bench-'));
let undiciVersion = null;
try {
  undiciVersion = JSON.parse(readFileSync(join(ROOT, 'node_modules/undici/package.json'), 'utf8')).version;
} catch {
  // not installed
}
const results = {
  startedAt,
  options: { quick, durationS, reps, warmupS, scenarios: wanted, peers: peerNames },
  machine: {
    nproc,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    kernel: `Linux ${release()}`,
    wrk: haveWrk ? toolVersion('wrk', ['-v']) : null,
    nginx: which('nginx') ? toolVersion(which('nginx'), ['-v']) : null,
    undici: undiciVersion,
  },
  layout,
  scenarios: [],
  goals: [],
  notes,
};
try {
  for (const sc of SCENARIOS.filter((s) => wanted.includes(s.id))) {
    results.scenarios.push(await runScenario(sc, tmpDir));
  }
} finally {
  rmSync(tmpDir, { recursive: true, force: true });
}
results.goals = goals(results);
let md = markdown(results);
// The gRPC cases (bench/grpc.mjs: unary and server-streaming, direct vs Faultline) run in the same
// invocation after the HTTP scenarios, unless a scenario filter or --no-grpc narrows the run.
if (!args.scenario && !args['no-grpc']) {
  log('gRPC cases: node bench/grpc.mjs');
  const g = spawnSync(process.execPath, [join(ROOT, 'bench/grpc.mjs'), ...(quick ? ['--quick'] : [])], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (g.status === 0) md += `\n\n## gRPC (bench/grpc.mjs)\n\n${g.stdout.trim()}\n`;
  else log(`gRPC cases failed (exit ${g.status}); HTTP results are still written`);
}
// HTTP/2 (bench/h2.mjs: h2load through h2c -> h1 and h2c -> h2c, vs nginx's h2c -> h1), same rule.
if (!args.scenario && !args['no-h2'] && quick)
  log('HTTP/2 cases skipped under --quick: node bench/h2.mjs --reps 1 --duration 1 runs them');
else if (!args.scenario && !args['no-h2'] && !which('h2load'))
  log('HTTP/2 cases skipped: h2load not installed (as root: apt-get install -y nghttp2-client)');
else if (!args.scenario && !args['no-h2']) {
  log('HTTP/2 cases: node bench/h2.mjs');
  const h2Args = ['--reps', String(reps)];
  const h = spawnSync(process.execPath, [join(ROOT, 'bench/h2.mjs'), ...h2Args], {
    encoding: 'utf8',
    timeout: 900_000,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  if (h.status === 0) md += `\n\n## HTTP/2 (bench/h2.mjs)\n\n${h.stdout.trim()}\n`;
  else log(`HTTP/2 cases failed (exit ${h.status}); other results are still written`);
}
const outDir = join(ROOT, 'bench/results');
mkdirSync(outDir, { recursive: true });
const stamp = startedAt.replace(/[:.]/g, '-');
const jsonPath = join(outDir, `${stamp}.json`);
const mdPath = join(outDir, `${stamp}.md`);
writeFileSync(jsonPath, `${JSON.stringify(results, null, 2)}\n`);
writeFileSync(mdPath, `${md}\n`);
if (!quick && !args.scenario && !args.peers) writeFileSync(join(ROOT, 'bench/RESULTS.md'), `${md}\n`);
process.stdout.write(`${md}\n`);
log(`results: ${jsonPath}`);
log(`markdown: ${mdPath}`);
