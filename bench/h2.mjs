// HTTP/2 through the proxy, interleaved: h2load (-c10 -m10 by default) against
//   nginx        h2c listener (`listen ... http2`) -> HTTP/1.1 upstream (keep-alive): the baseline
//   <v>:h1       Faultline build <v>, h2c listener -> HTTP/1.1 upstream (bench/upstream.mjs)
//   <v>:h2c      Faultline build <v>, h2c listener -> h2c upstream (bench/h2-upstream.mjs)
//   direct:h2c   h2load straight to the h2c upstream (the floor)
//   node-bare:h2c  with --bare: bench/h2-bare-peer.mjs, node:http2 stream API both sides, no features
// --alloc: the Faultline variants run with a fixed 1 MB young generation and --trace-gc, and the table
// adds scavenges per 1,000 requests: JS heap allocation per request, which unlike CPU time does not
// move with other load on the machine (req/s in this mode is not the product's: its flags differ).
// Proxies on core 0, upstreams and h2load on core 1; each rep runs every target once, order
// alternating; medians and ratios vs nginx at the end (JSON + markdown to bench/results/).
//   npm run build && node bench/h2.mjs [--variant new=dist] [--variant base=dist-base]
//        [--reps 5] [--duration 5] [--clients 10] [--streams 10] [--no-nginx] [--bare] [--alloc] [--port 18800]
// Needs h2load (as root: apt-get install -y nghttp2-client) and nginx (apt-get install -y nginx-light).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { cpuMicros } from './procstat.mjs';
import { ROOT, faultlineNodeFlags, nginxConfig, startReady, which } from './peers.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const variants = [];
for (let i = 0; i < args.length; i++)
  if (args[i] === '--variant') {
    const [name, dir] = args[++i].split('=');
    variants.push({ name, dir: resolve(ROOT, dir) });
  }
if (variants.length === 0) variants.push({ name: 'faultline', dir: resolve(ROOT, 'dist') });
const reps = Number(opt('reps', '5'));
const durationS = Number(opt('duration', '5'));
const clients = Number(opt('clients', '10'));
const streams = Number(opt('streams', '10'));
const basePort = Number(opt('port', '18800'));
const allocMode = args.includes('--alloc');
/** Young generation fixed at 1 MB, so each scavenge stands for about 1 MB allocated (see --alloc). */
const ALLOC_FLAGS = [
  '--single-threaded-gc',
  '--max-semi-space-size=1',
  '--min-semi-space-size=1',
  '--trace-gc',
];
if (!which('h2load')) {
  console.error('h2load not installed (as root: apt-get install -y nghttp2-client)');
  process.exit(2);
}
// Without nginx the run still compares Faultline with the direct and bare-Node figures.
const withNginx = !args.includes('--no-nginx') && which('nginx') !== null;
if (!withNginx && !args.includes('--no-nginx'))
  console.error('nginx not installed (as root: apt-get install -y nginx-light): measuring without it');

const tmp = mkdtempSync(join(tmpdir(), 'fl-h2-'));
const children = [];
const core0 = ['taskset', '-c', '0'];
const core1 = ['taskset', '-c', '1'];

const start = async (argv, readyRe) => (await startReady(argv, readyRe, { children })).child;

/** h2load run; resolves to {rps, ok, failed, errored, p99Ms(max of per-request "time for request")}. */
function h2load(url, seconds) {
  const argv = [...core1, 'h2load', `-c${clients}`, `-m${streams}`, `-D${seconds}`, url];
  return new Promise((res, rej) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.once('exit', (code) => {
      const m = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out);
      const r =
        /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(
          out,
        );
      const t = /time for request:\s+(\S+)\s+(\S+)\s+(\S+)/.exec(out);
      if (code !== 0 || !m || !r) return rej(new Error(`h2load ${url} exited ${code}: ${out.slice(-400)}`));
      const toMs = (s) =>
        s.endsWith('us') ? parseFloat(s) / 1000 : s.endsWith('ms') ? parseFloat(s) : parseFloat(s) * 1000;
      res({
        rps: Number(m[1]),
        done: +r[3],
        ok: +r[4],
        failed: +r[5],
        errored: +r[6],
        meanMs: t ? toMs(t[3]) : null,
      });
    });
  });
}

function faultlineYaml({ port, adminPort, h1Port, h2Port, stateDir }) {
  return `state_dir: ${stateDir}
listeners:
  - name: ingress
    address: 127.0.0.1
    port: ${port}
    protocol: h2c
    routes:
      - { name: h2c, path_prefix: /h2c/, upstream: http://127.0.0.1:${h2Port}, upstream_protocol: h2c, timeout_ms: 30000 }
      - { name: h1, path_prefix: /, upstream: http://127.0.0.1:${h1Port}, timeout_ms: 30000 }
admin: { address: 127.0.0.1, port: ${adminPort} }
`;
}

const h1Port = basePort;
const h2Port = basePort + 1;
await start([...core1, 'node', join(ROOT, 'bench/upstream.mjs'), String(h1Port)], /READY/);
await start([...core1, 'node', join(ROOT, 'bench/h2-upstream.mjs'), String(h2Port)], /READY/);
const targets = [{ name: 'direct:h2c', url: `http://127.0.0.1:${h2Port}/h2c/`, child: null }];
let port = basePort + 10;
if (withNginx) {
  const p = port++;
  const dir = join(tmp, 'nginx');
  mkdirSync(dir, { recursive: true });
  // The bench's nginx config with the listener switched to h2c (prior knowledge, no TLS).
  const conf = nginxConfig({ dir, port: p, upstreamPort: h1Port }).replace(
    `listen 127.0.0.1:${p} backlog=4096;`,
    `listen 127.0.0.1:${p} http2 backlog=4096;\n    http2_max_concurrent_streams 1000;`,
  );
  writeFileSync(join(dir, 'nginx.conf'), conf);
  const child = await start([...core0, which('nginx'), '-c', join(dir, 'nginx.conf'), '-p', dir]);
  targets.push({ name: 'nginx:h1', url: `http://127.0.0.1:${p}/`, child });
}
if (args.includes('--bare')) {
  const p = port++;
  const child = await start(
    [...core0, 'node', join(ROOT, 'bench/h2-bare-peer.mjs'), String(p), `http://127.0.0.1:${h2Port}`],
    /READY/,
  );
  targets.push({ name: 'node-bare:h2c', url: `http://127.0.0.1:${p}/h2c/`, child });
}
for (const v of variants) {
  const p = port++;
  const cfg = join(tmp, `${v.name}.yaml`);
  writeFileSync(
    cfg,
    faultlineYaml({ port: p, adminPort: p + 40, h1Port, h2Port, stateDir: join(tmp, `state-${v.name}`) }),
  );
  const entry = join(v.dir, 'bin.js');
  const flags = allocMode ? ALLOC_FLAGS : faultlineNodeFlags(entry);
  const child = await start([...core0, 'node', ...flags, entry, 'run', '--config', cfg, '--no-watch'], null);
  child.stderr.on('data', (d) => process.stderr.write(`[${v.name}] ${d}`));
  // --trace-gc writes one line per GC to stdout; always drained so the child never blocks on it.
  child.scavenges = 0;
  child.stdout.on('data', (d) => {
    for (let i = d.indexOf('Scavenge'); i >= 0; i = d.indexOf('Scavenge', i + 8)) child.scavenges++;
  });
  targets.push({ name: `${v.name}:h1`, url: `http://127.0.0.1:${p}/`, child });
  targets.push({ name: `${v.name}:h2c`, url: `http://127.0.0.1:${p}/h2c/`, child });
}

const results = Object.fromEntries(targets.map((t) => [t.name, []]));
try {
  // Readiness and warm-up in one: retry a 1 s run until it succeeds.
  for (const t of targets)
    for (let i = 0; ; i++) {
      try {
        const w = await h2load(t.url, 1);
        if (w.ok > 0) break;
      } catch (e) {
        if (i > 30) throw e;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  for (let r = 0; r < reps; r++) {
    const order = r % 2 === 0 ? targets : [...targets].reverse();
    for (const t of order) {
      const c0 = t.child ? cpuMicros(t.child.pid) : 0;
      const g0 = t.child?.scavenges ?? 0;
      const w = await h2load(t.url, durationS);
      const c1 = t.child ? cpuMicros(t.child.pid) : 0;
      const cpu = t.child ? (c1 - c0) / w.done : null;
      const gcPer1k =
        allocMode && t.child?.scavenges !== undefined ? ((t.child.scavenges - g0) * 1000) / w.done : null;
      results[t.name].push({ ...w, cpu, gcPer1k });
      process.stderr.write(
        `rep${r} ${t.name}: ${w.rps.toFixed(0)} req/s, ${cpu === null ? '-' : cpu.toFixed(1)} us/req${gcPer1k === null ? '' : `, ${gcPer1k.toFixed(1)} scavenges/1k req`}, failed ${w.failed + w.errored}\n`,
      );
    }
  }
} finally {
  for (const c of children) c.kill('SIGKILL');
}
const med = (xs) => {
  const s = xs.filter((x) => x !== null).sort((a, b) => a - b);
  if (s.length === 0) return null;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const base = withNginx ? 'nginx:h1' : targets[1].name;
const baseRps = med(results[base].map((x) => x.rps));
const lines = [
  `h2load -c${clients} -m${streams}, ${durationS} s x ${reps} reps (interleaved), medians; ratio = req/s vs ${base}`,
  '',
  `| target | req/s | x ${base} | proxy CPU us/req | mean ms | failed |${allocMode ? ' scavenges / 1k req |' : ''}`,
  `| --- | ---: | ---: | ---: | ---: | ---: |${allocMode ? ' ---: |' : ''}`,
];
const summary = {};
for (const t of targets) {
  const xs = results[t.name];
  const rps = med(xs.map((x) => x.rps));
  const cpu = med(xs.map((x) => x.cpu));
  const failed = xs.reduce((a, x) => a + x.failed + x.errored, 0);
  const gc = med(xs.map((x) => x.gcPer1k));
  summary[t.name] = { rps, ratio: rps / baseRps, cpuUsPerReq: cpu, scavengesPer1k: gc, failed, reps: xs };
  lines.push(
    `| ${t.name} | ${rps.toFixed(0)} | ${(rps / baseRps).toFixed(2)} | ${cpu === null ? '-' : cpu.toFixed(1)} | ${med(xs.map((x) => x.meanMs))?.toFixed(2) ?? '-'} | ${failed} |${allocMode ? ` ${gc === null ? '-' : gc.toFixed(1)} |` : ''}`,
  );
}
const md = lines.join('\n');
console.log(`\n${md}`);
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
writeFileSync(
  join(ROOT, `bench/results/h2-${stamp}.json`),
  JSON.stringify({ clients, streams, durationS, reps, base, allocMode, summary }, null, 2),
);
writeFileSync(join(ROOT, `bench/results/h2-${stamp}.md`), `${md}\n`);
process.exit(0);
