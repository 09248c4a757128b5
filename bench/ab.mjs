// Interleaved A/B of Faultline builds (and optionally http-proxy / nginx) on the same upstream, for
// perf work: every variant runs at once on core 0 (only one is loaded at a time), the upstream and
// wrk on core 1. Each rep runs every variant once, order alternating; medians and ratios at the end.
//   node bench/ab.mjs --variant base=dist-base --variant new=dist [--peer http-proxy] [--peer nginx]
//        [--variant gc=dist@--max-semi-space-size=32] [--reps 5] [--duration 5] [--measure get128k,post128k,get10m,post10m,get1k,c1000] [--port 18700]
//        [--scenario abort5]   (a scenario of bench/scenarios.mjs whose experiments every Faultline variant runs)
//        [--append name=FILE]  (YAML appended to that variant's config, e.g. a `tracing:` block)
//        [--upstream node|nginx] (the upstream on core 1: bench/upstream.mjs (default) or nginx serving a
//                                 static 1 KB file, which leaves wrk most of core 1)
//        [--peer node-http]      (no proxy: a bare node:http server answering 1 KB itself on core 0,
//                                 the floor any Node server sits on, e.g. for the -c1000 tail)
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { cpuMicros } from './procstat.mjs';
import { ROOT, faultlineConfig, nginxConfig, nginxStaticConfig, startReady, which } from './peers.mjs';
import { SCENARIOS } from './scenarios.mjs';
import { runWrk } from './wrk.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const variants = [];
const peers = [];
const appended = new Map();
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--append') {
    const spec = args[++i];
    appended.set(spec.slice(0, spec.indexOf('=')), readFileSync(spec.slice(spec.indexOf('=') + 1), 'utf8'));
    continue;
  }
  if (args[i] === '--variant') {
    // name=dir or name=dir@--node-flag,--other-flag
    const spec = args[++i];
    const name = spec.slice(0, spec.indexOf('='));
    const rest = spec.slice(spec.indexOf('=') + 1);
    const [dir, flags] = rest.split('@');
    variants.push({ name, dir: resolve(ROOT, dir), flags: flags ? flags.split(',') : [] });
  } else if (args[i] === '--peer') peers.push(args[++i]);
}
const reps = Number(opt('reps', '5'));
const durationS = Number(opt('duration', '5'));
const basePort = Number(opt('port', '18700'));
const extra = opt('node-args', '');
const upstreamKind = opt('upstream', 'node');
const MEASURES = {
  get1k: { path: '/', connections: 50 },
  // 1,000 clients at once (issue 18): the tail (p99) against http-proxy's is the figure that matters.
  c1000: { path: '/', connections: 1000, threads: 2 },
  get128k: { path: '/128k', connections: 32 },
  post128k: { path: '/', connections: 32, method: 'POST', bodyBytes: 128 * 1024 },
  get10m: { path: '/10m', connections: 4 },
  post10m: { path: '/', connections: 4, method: 'POST', bodyBytes: 10 * 1024 * 1024 },
};
const measures = opt('measure', 'get128k,post128k').split(',');
const scenarioId = opt('scenario', '');
const scenario = scenarioId ? SCENARIOS.find((s) => s.id === scenarioId) : null;
if (scenarioId && !scenario) {
  console.error(`unknown --scenario ${scenarioId}; one of ${SCENARIOS.map((s) => s.id).join(', ')}`);
  process.exit(2);
}
const tmp = mkdtempSync(join(tmpdir(), 'fl-ab-'));
const children = [];
const core0 = ['taskset', '-c', '0'];
const core1 = ['taskset', '-c', '1'];

const start = async (cmd, argv, readyRe) => (await startReady([cmd, ...argv], readyRe, { children })).child;

async function waitHttp(url) {
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`no answer from ${url}`);
}

const upPort = basePort;
if (upstreamKind === 'nginx') {
  const dir = join(tmp, 'nginx-upstream');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'nginx.conf'), nginxStaticConfig({ dir, port: upPort }));
  const up = spawn(core1[0], [...core1.slice(1), which('nginx'), '-c', join(dir, 'nginx.conf'), '-p', dir], {
    stdio: 'ignore',
  });
  children.push(up);
  await waitHttp(`http://127.0.0.1:${upPort}/`);
} else
  await start(
    core1[0],
    [...core1.slice(1), 'node', join(ROOT, 'bench/upstream.mjs'), String(upPort)],
    /READY/,
  );
const targets = [];
let port = basePort + 10;
for (const v of variants) {
  const p = port++;
  const cfg = join(tmp, `${v.name}.yaml`);
  writeFileSync(
    cfg,
    faultlineConfig({
      port: p,
      adminPort: p + 40,
      upstreamPort: upPort,
      experiments: scenario?.experiments ?? [],
    }) + (appended.get(v.name) ?? ''),
  );
  const nodeArgs = [...(extra ? extra.split(' ') : []), ...v.flags];
  const child = spawn(
    core0[0],
    [...core0.slice(1), 'node', ...nodeArgs, join(v.dir, 'bin.js'), 'run', '--config', cfg, '--no-watch'],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  child.stderr.on('data', (d) => process.stderr.write(`[${v.name}] ${d}`));
  children.push(child);
  targets.push({ name: v.name, url: `http://127.0.0.1:${p}`, child });
}
for (const name of peers) {
  const p = port++;
  let child;
  if (name === 'http-proxy') {
    child = spawn(
      core0[0],
      [
        ...core0.slice(1),
        'node',
        join(ROOT, 'bench/httpproxy-peer.mjs'),
        String(p),
        `http://127.0.0.1:${upPort}`,
      ],
      { stdio: 'ignore' },
    );
  } else if (name === 'node-http') {
    child = spawn(core0[0], [...core0.slice(1), 'node', join(ROOT, 'bench/upstream.mjs'), String(p)], {
      stdio: 'ignore',
    });
  } else if (name === 'nginx') {
    const dir = join(tmp, 'nginx');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'nginx.conf'), nginxConfig({ dir, port: p, upstreamPort: upPort }));
    child = spawn(core0[0], [...core0.slice(1), which('nginx'), '-c', join(dir, 'nginx.conf'), '-p', dir], {
      stdio: 'ignore',
    });
  }
  children.push(child);
  targets.push({ name, url: `http://127.0.0.1:${p}`, child });
}
const results = {};
try {
  for (const t of targets) await waitHttp(t.url + '/');
  for (const m of measures) {
    const spec = MEASURES[m];
    results[m] = Object.fromEntries(targets.map((t) => [t.name, []]));
    // warm-up
    for (const t of targets)
      await runWrk({ ...spec, url: t.url + spec.path, durationS: 1, tmpDir: tmp, pin: core1 });
    for (let r = 0; r < reps; r++) {
      const order = r % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) {
        const c0 = cpuMicros(t.child.pid);
        const w = await runWrk({ ...spec, url: t.url + spec.path, durationS, tmpDir: tmp, pin: core1 });
        const c1 = cpuMicros(t.child.pid);
        const errs = Object.values(w.errors).reduce((a, b) => a + b, 0);
        results[m][t.name].push({
          rps: w.rps,
          cpu: (c1 - c0) / w.requests,
          p99: w.latencyUs.p99 / 1000,
          errs,
        });
        process.stderr.write(
          `${m} rep${r} ${t.name}: ${w.rps.toFixed(0)} req/s, ${((c1 - c0) / w.requests).toFixed(1)} us/req, errs ${errs}\n`,
        );
      }
    }
  }
} finally {
  for (const c of children) c.kill('SIGKILL');
}
const med = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const first = targets[0].name;
console.log(`\nreps=${reps} duration=${durationS}s; medians; ratio = req/s vs ${first}\n`);
console.log('| measure | variant | req/s | x ' + first + ' | CPU us/req | p99 ms | errors |');
console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: |');
for (const m of measures) {
  const baseRps = med(results[m][first].map((x) => x.rps));
  for (const t of targets) {
    const xs = results[m][t.name];
    const rps = med(xs.map((x) => x.rps));
    console.log(
      `| ${m} | ${t.name} | ${rps.toFixed(0)} | ${(rps / baseRps).toFixed(2)} | ${med(xs.map((x) => x.cpu)).toFixed(1)} | ${med(xs.map((x) => x.p99)).toFixed(2)} | ${xs.reduce((a, x) => a + x.errs, 0)} |`,
    );
  }
}
process.exit(0);
