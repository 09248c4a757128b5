// `workers: 2` vs `workers: 1` (issue 13): throughput, CPU per request and whether the kill still lands
// on the next request. Both variants run at once (only one is loaded at a time), reps interleaved with
// alternating order, medians and the ratio against workers: 1 at the end. Nothing is pinned: two workers
// need both cores, so wrk and the upstream share them (as in a pod with two cores and a sidecar).
//   node bench/workers.mjs [--reps 5] [--duration 5] [--connections 64] [--port 18900] [--out FILE.json]
//       [--upstream nginx|node] [--sticky] [--rr]
//
// The upstream: nginx serving a static 1 KB file (default when nginx is installed) or bench/upstream.mjs.
// What the second worker can add is bounded by the CPU wrk and the upstream leave free: on 2 cores a
// Node upstream takes ~0.4 of a core at the proxy's rate, nginx ~0.1, so the Node upstream caps the
// ratio well below what Faultline itself scales to. The table reports the CPU of all three (proxy,
// upstream, wrk) per request, so the ceiling can be read off the run.
// --sticky: every throughput request is also in a sticky dry-run experiment (keyed by Host, so all in
// one arm): with workers each judged outcome goes to the primary (16 bytes in the 100 ms batch) and is
// judged there one by one; this measures that cost against one process doing the same judging.
//
// Kill phase (per variant, after the throughput reps): an experiment on its own route (100% abort on a
// 10% canary, error-rate guardrail) gets closed-loop traffic (8 in flight, fresh connections) until the
// kill; reported: the decision time (admin ended_at), the last request that still carried a mark, and
// how many requests started after the decision (+0 ms, +10 ms, +50 ms) still got one. With one process
// the kill is taken on the request path (synchronous); with workers the primary decides on a batch
// (every 100 ms) and pushes the kill (IPC), so marks may still appear until the push arrives.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuMicros } from './procstat.mjs';
import { ROOT, faultlineEntry, faultlineNodeFlags, nginxStaticConfig, startReady, which } from './peers.mjs';
import { runWrk } from './wrk.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const reps = Number(opt('reps', '5'));
const durationS = Number(opt('duration', '5'));
const connections = Number(opt('connections', '64'));
const basePort = Number(opt('port', '18900'));
const out = opt('out', '');
const nginx = which('nginx');
const upstreamKind = opt('upstream', nginx ? 'nginx' : 'node');
if (upstreamKind === 'nginx' && !nginx) {
  console.error('bench/workers: --upstream nginx needs nginx (apt-get install nginx)');
  process.exit(2);
}
const sticky = args.includes('--sticky');
const tmp = mkdtempSync(join(tmpdir(), 'fl-workers-'));
const children = [];
const entry = faultlineEntry();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Whatever happens (a variant that does not start), no child outlives the bench.
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

const start = async (cmd, argv, readyRe) => (await startReady([cmd, ...argv], readyRe, { children })).child;

function config({ workers, port, adminPort, upstreamPort, stateDir }) {
  const up = `http://127.0.0.1:${upstreamPort}`;
  return `workers: ${workers}
state_dir: ${stateDir}
arm_header: true
admin: { address: 127.0.0.1, port: ${adminPort} }
listeners:
  - name: ingress
    address: 127.0.0.1
    port: ${port}
    routes:
      - { name: kill, path_prefix: /kill/, upstream: "${up}", timeout_ms: 30000 }
      - { name: api, path_prefix: /, upstream: "${up}", timeout_ms: 30000 }
experiments:
  - id: k
    hypothesis: "the bench's kill phase"
    match: { listener: ingress, route: kill }
    split: { percent: 10, allow_above_cap: true }
    fault: { kind: abort, status: 503, percent: 100 }
    exclude_injected: false
    min_samples: 20
    guardrails: [{ metric: error_rate }]
${
  sticky
    ? `  - id: s
    hypothesis: "the bench's sticky judging"
    match: { listener: ingress, route: api }
    split: { percent: 50, allow_above_cap: true, sticky: "header:host" }
    fault: { kind: abort, status: 503 }
    dry_run: true
    guardrails: [{ metric: error_rate }, { metric: latency, quantile: 0.99 }]
`
    : ''
}`;
}

/** One GET on a fresh connection: start time and whether it carried an experiment mark. */
function get(port, path) {
  const t = Date.now();
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      const marked =
        res.headers['x-faultline-arm'] !== undefined || res.headers['x-faultline-injected'] !== undefined;
      res.on('end', () => resolve({ t, marked }));
    });
    req.on('error', () => resolve({ t, marked: false }));
    req.end();
  });
}

async function killPhase(v) {
  const sent = [];
  let decision = null;
  let stop = false;
  const poll = (async () => {
    while (!stop && decision === null) {
      const j = await (await fetch(`${v.admin}/experiments/k`)).json();
      if (j.state === 'killed') decision = Date.parse(j.ended_at);
      else await sleep(20);
    }
  })();
  const deadline = Date.now() + 30_000;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      // Traffic goes on for 500 ms after the decision (or until the deadline).
      while (Date.now() < deadline && (decision === null || Date.now() < decision + 500))
        sent.push(await get(v.port, '/kill/x'));
    }),
  );
  stop = true;
  await poll;
  if (decision === null) return { killed: false, requests: sent.length };
  const marked = sent.filter((s) => s.marked);
  const lastMarked = marked.length === 0 ? null : Math.max(...marked.map((s) => s.t)) - decision;
  const after = (ms) => marked.filter((s) => s.t > decision + ms).length;
  return {
    killed: true,
    requests: sent.length,
    requests_after_decision: sent.filter((s) => s.t > decision).length,
    last_marked_start_ms_after_decision: lastMarked,
    marked_after: { '0ms': after(0), '10ms': after(10), '50ms': after(50) },
    lands_on_next_request: after(0) === 0,
  };
}

const upPort = basePort;
let upstream;
if (upstreamKind === 'nginx') {
  const dir = join(tmp, 'nginx');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'nginx.conf'), nginxStaticConfig({ dir, port: upPort }));
  upstream = spawn(nginx, ['-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: 'ignore' });
  children.push(upstream);
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`http://127.0.0.1:${upPort}/`).then(
      (r) => r.arrayBuffer().then(() => r.ok),
      () => false,
    );
    if (ok) break;
    await sleep(50);
  }
} else upstream = await start('node', [join(ROOT, 'bench/upstream.mjs'), String(upPort)], /READY/);
const flags = faultlineNodeFlags(entry);
const variants = [];
// --rr adds `workers: 2` with `workers_balance: round_robin` (node:cluster's hand-off) next to the
// default kernel balance; wrk reconnects every rep, so each rep is a fresh split of its connections.
const shapes = [
  [1, 'kernel', 'workers_1'],
  [2, 'kernel', 'workers_2'],
  ...(args.includes('--rr') ? [[2, 'round_robin', 'workers_2_rr']] : []),
];
for (const [i, [workers, balance, name]] of shapes.entries()) {
  const port = basePort + 10 + i;
  const adminPort = basePort + 20 + i;
  const cfg = join(tmp, `${name}.yaml`);
  writeFileSync(
    cfg,
    config({ workers, port, adminPort, upstreamPort: upPort, stateDir: join(tmp, `state_${name}`) }) +
      (balance === 'kernel' ? '' : `workers_balance: ${balance}\n`),
  );
  const child = await start(
    'node',
    [...flags, entry, 'run', '--config', cfg, '--no-watch'],
    /"faultline started"/,
  );
  variants.push({ name, workers, port, admin: `http://127.0.0.1:${adminPort}`, child });
}

const results = Object.fromEntries(variants.map((v) => [v.name, []]));
const kill = {};
try {
  for (const v of variants)
    await runWrk({ url: `http://127.0.0.1:${v.port}/`, connections, durationS: 1, tmpDir: tmp });
  for (let r = 0; r < reps; r++) {
    for (const v of r % 2 === 0 ? variants : [...variants].reverse()) {
      const c0 = cpuMicros(v.child.pid);
      const u0 = cpuMicros(upstream.pid);
      const w = await runWrk({ url: `http://127.0.0.1:${v.port}/`, connections, durationS, tmpDir: tmp });
      const c1 = cpuMicros(v.child.pid);
      const u1 = cpuMicros(upstream.pid);
      const errs = Object.values(w.errors).reduce((a, b) => a + b, 0);
      results[v.name].push({
        rps: w.rps,
        cpu_us_per_req: (c1 - c0) / w.requests,
        upstream_cpu_us_per_req: (u1 - u0) / w.requests,
        p99_ms: w.latencyUs.p99 / 1000,
        errs,
      });
      process.stderr.write(
        `rep${r} ${v.name}: ${w.rps.toFixed(0)} req/s, ${((c1 - c0) / w.requests).toFixed(1)} us/req, errs ${errs}\n`,
      );
    }
  }
  for (const v of variants) kill[v.name] = await killPhase(v);
} finally {
  for (const c of children) c.kill('SIGKILL');
}

const med = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const base = med(results.workers_1.map((x) => x.rps));
const summary = variants.map((v) => {
  const xs = results[v.name];
  const rps = med(xs.map((x) => x.rps));
  return {
    variant: v.name,
    rps,
    ratio: rps / base,
    cpu_us_per_req: med(xs.map((x) => x.cpu_us_per_req)),
    upstream_cpu_us_per_req: med(xs.map((x) => x.upstream_cpu_us_per_req)),
    p99_ms: med(xs.map((x) => x.p99_ms)),
    errors: xs.reduce((a, x) => a + x.errs, 0),
    kill: kill[v.name],
  };
});
const doc = {
  bench: 'workers',
  sticky,
  reps,
  duration_s: durationS,
  connections,
  upstream: upstreamKind,
  target_ratio: 1.35,
  summary,
  raw: results,
};
if (out) writeFileSync(out, JSON.stringify(doc, null, 2) + '\n');
console.log(
  `\n${sticky ? 'sticky dry-run experiment on every request; ' : ''}reps=${reps} duration=${durationS}s c=${connections} upstream=${upstreamKind}; medians; ratio = req/s vs workers: 1 (target >= 1.35)\n`,
);
console.log(
  '| variant | req/s | x workers_1 | CPU us/req | upstream CPU us/req | p99 ms | errors | kill: last mark after decision | marked after +0/+10/+50 ms |',
);
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const s of summary) {
  const k = s.kill;
  const km = k.killed ? `${k.last_marked_start_ms_after_decision} ms` : 'not killed';
  const ka = k.killed
    ? `${k.marked_after['0ms']}/${k.marked_after['10ms']}/${k.marked_after['50ms']} of ${k.requests_after_decision}`
    : '-';
  console.log(
    `| ${s.variant} | ${s.rps.toFixed(0)} | ${s.ratio.toFixed(2)} | ${s.cpu_us_per_req.toFixed(1)} | ${s.upstream_cpu_us_per_req.toFixed(1)} | ${s.p99_ms.toFixed(2)} | ${s.errors} | ${km} | ${ka} |`,
  );
}
process.exit(0);
