// What OpenTelemetry tracing costs the proxy, as CPU per request (the proxy pinned alone on core 0, wrk
// and the upstream on core 1), interleaved through bench/ab.mjs on one upstream in the same run:
//   base  the --base commit's build, tracing off (the commit before the tracing change)
//   off   this build, tracing off: must match base within noise (tracing off is one comparison)
//   on    this build, tracing on, every assigned request traced (sample_ratio 1), exported over
//         OTLP/HTTP every 200 ms to a sink in this process that accepts and discards
// All three run the abort5 scenario: split 5% (5% canary + 5% control = 10% of requests assigned).
// Usage: node bench/tracing.mjs [--base REF | --base-dist DIR] [--reps 5] [--duration 5] [--measure get1k]
// Needs `npm run build` (dist/) and wrk. Writes bench/results/tracing-<time>.{json,md}.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT } from './peers.mjs';

const { values } = parseArgs({
  options: {
    base: { type: 'string', default: 'HEAD~1' },
    'base-dist': { type: 'string' },
    reps: { type: 'string', default: '5' },
    duration: { type: 'string', default: '5' },
    measure: { type: 'string', default: 'get1k' },
    port: { type: 'string', default: '18800' },
  },
});
const ASSIGNED_SHARE = 0.1; // abort5: 5% canary + 5% control
const tmp = mkdtempSync(join(tmpdir(), 'fl-tracing-bench-'));
if (!existsSync(join(ROOT, 'dist/bin.js'))) throw new Error('run `npm run build` first (dist/bin.js)');

/** The --base commit built in a throwaway worktree (sharing this checkout's node_modules). */
function buildBase(ref) {
  const dir = join(tmp, 'base');
  execFileSync('git', ['-C', ROOT, 'worktree', 'add', '--detach', dir, ref], { stdio: 'ignore' });
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  process.stderr.write(`building ${ref} in ${dir}\n`);
  execFileSync(join(ROOT, 'node_modules/.bin/tsc'), ['-p', join(dir, 'tsconfig.build.json')], {
    stdio: 'inherit',
  });
  return dir;
}

let worktree = null;
let baseDist = values['base-dist'];
if (baseDist === undefined) {
  worktree = buildBase(values.base);
  baseDist = join(worktree, 'dist');
}

// The OTLP sink: reads each export and answers 200, nothing else (the cost measured is the proxy's).
let otlpBytes = 0;
const sink = http.createServer((req, res) => {
  let bytes = 0;
  req.on('data', (c) => (bytes += c.length));
  req.on('end', () => {
    otlpBytes += bytes; // a check that the export happened
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
});
await new Promise((r) => sink.listen(0, '127.0.0.1', r));
// Each variant its own state dir: two processes must not share one.
const appendFile = (name, lines) => {
  const file = join(tmp, `${name}.yaml`);
  writeFileSync(file, [`state_dir: ${join(tmp, `state-${name}`)}`, ...lines, ''].join('\n'));
  return file;
};
const tracingYaml = appendFile('on', [
  'tracing:',
  '  enabled: true',
  `  endpoint: http://127.0.0.1:${sink.address().port}/v1/traces`,
  '  sample_ratio: 1',
  '  export_interval_ms: 200',
  '  max_queue: 65536',
]);

const argv = [
  join(ROOT, 'bench/ab.mjs'),
  '--variant',
  `base=${baseDist}`,
  '--variant',
  'off=dist',
  '--variant',
  'on=dist',
  '--append',
  `base=${appendFile('base', [])}`,
  '--append',
  `off=${appendFile('off', [])}`,
  '--append',
  `on=${tracingYaml}`,
  '--scenario',
  'abort5',
  '--measure',
  values.measure,
  '--reps',
  values.reps,
  '--duration',
  values.duration,
  '--port',
  values.port,
];
process.stderr.write(`node ${argv.map((a) => a.replace(ROOT + '/', '')).join(' ')}\n`);
let out;
try {
  out = await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit'], cwd: ROOT });
    let text = '';
    child.stdout.on('data', (d) => (text += d));
    child.once('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`ab.mjs exited ${code}`))));
  });
} finally {
  sink.close();
  if (worktree !== null)
    execFileSync('git', ['-C', ROOT, 'worktree', 'remove', '--force', worktree], { stdio: 'ignore' });
  rmSync(tmp, { recursive: true, force: true });
}

// ab.mjs's markdown rows: | measure | variant | req/s | x base | CPU us/req | p99 ms | errors |
const rows = {};
for (const line of out.split('\n')) {
  const m = /^\| (\w+) \| (base|off|on) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (\d+) \|$/.exec(line);
  if (m) rows[m[2]] = { rps: +m[3], cpu_us_per_req: +m[5], p99_ms: +m[6], errors: +m[7] };
}
if (!rows.base || !rows.off || !rows.on) throw new Error(`could not read ab.mjs output:\n${out}`);
const result = {
  measure: values.measure,
  reps: +values.reps,
  duration_s: +values.duration,
  base: values['base-dist'] ?? values.base,
  assigned_share: ASSIGNED_SHARE,
  variants: rows,
  off_vs_base_cpu: rows.off.cpu_us_per_req / rows.base.cpu_us_per_req,
  on_vs_off_cpu: rows.on.cpu_us_per_req / rows.off.cpu_us_per_req,
  // The extra CPU per request, spread over the traced (assigned) ones: what one span costs.
  us_per_traced_request: (rows.on.cpu_us_per_req - rows.off.cpu_us_per_req) / ASSIGNED_SHARE,
  otlp_bytes_received: otlpBytes,
};
const md = [
  `# Tracing cost (${values.measure}, ${values.reps} reps x ${values.duration} s, medians)`,
  '',
  out.trim(),
  '',
  `- tracing off vs ${result.base}: CPU x${result.off_vs_base_cpu.toFixed(3)} (1.00 = unchanged)`,
  `- tracing on (all assigned = ${ASSIGNED_SHARE * 100}% of requests) vs off: CPU x${result.on_vs_off_cpu.toFixed(3)}, ` +
    `${result.us_per_traced_request.toFixed(1)} us CPU per traced request; ${result.otlp_bytes_received} OTLP bytes exported`,
  '',
].join('\n');
mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
writeFileSync(join(ROOT, `bench/results/tracing-${stamp}.json`), JSON.stringify(result, null, 2) + '\n');
writeFileSync(join(ROOT, `bench/results/tracing-${stamp}.md`), md);
console.log(md);
