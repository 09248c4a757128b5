// Micro-benchmark of the in-process hosts' cost per call, in ns/op (no network): the engine's
// decide + record for an untouched call and an assigned one, and the undici interceptor's untouched
// fast path. Uses dist/ (npm run build). Usage: node bench/inprocess-micro.mjs [--ops N] [--reps R]
// [--tracing]: with OpenTelemetry tracing on (every assigned call traced, exported over OTLP/HTTP to a
// local sink that accepts and discards), to price a span per assigned request.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { createFaultline } from '../dist/index.js';

const { values } = parseArgs({
  options: {
    ops: { type: 'string' },
    reps: { type: 'string' },
    tracing: { type: 'boolean' },
    json: { type: 'boolean' },
  },
});
let sink = null;
if (values.tracing) {
  sink = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('{}'));
  });
  await new Promise((r) => sink.listen(0, '127.0.0.1', r));
}
const ops = Number(values.ops ?? 1_000_000);
const reps = Number(values.reps ?? 5);
const dir = mkdtempSync(join(tmpdir(), 'fl-micro-'));
const experiment = (id, point, percent) => ({
  id,
  hypothesis: 'bench',
  match: { listener: point },
  split: { percent, allow_above_cap: true },
  fault: { kind: 'abort', status: 503 },
  inject: 'downstream',
  min_samples: 1_000_000_000,
});
const fl = await createFaultline({
  config: {
    state_dir: dir,
    points: [
      { name: 'none', role: 'inbound' },
      { name: 'five', role: 'inbound' },
      { name: 'all', role: 'inbound' },
      { name: 'dep', role: 'outbound' },
    ],
    experiments: [experiment('five', 'five', 5), experiment('all', 'all', 50)],
    ...(sink
      ? {
          tracing: {
            enabled: true,
            endpoint: `http://127.0.0.1:${sink.address().port}/v1/traces`,
            export_interval_ms: 200,
          },
        }
      : {}),
  },
});
const engine = fl.engine;
const plan = (name) => fl.faultline.points.get(name).plan;
const view = {
  method: 'GET',
  path: '/checkout',
  rawHeaders: ['host', 'x', 'user-agent', 'bench', 'accept', '*/*'],
};
const slot = () => ({
  exp: null,
  arm: 0,
  observe: false,
  injectNow: false,
  injected: false,
  baggageOut: null,
  sessionKey: 0,
  runId: 0,
});

/** decide + record per call on a fresh slot (what a host allocates per request anyway). */
function decideRecord(p) {
  let assigned = 0;
  for (let i = 0; i < ops; i++) {
    const s = slot();
    engine.decide(p, p.candidates, view, s);
    if (s.exp !== null) {
      assigned++;
      engine.record(s, p.name, 0, 1, 0, 1.5);
    }
  }
  return assigned;
}

const dispatch = fl.undiciInterceptor('dep')(() => true);
const opts = { method: 'GET', path: '/price', origin: 'http://127.0.0.1:1', headers: { accept: '*/*' } };
function interceptorUntouched() {
  for (let i = 0; i < ops; i++) dispatch(opts, null);
  return 0;
}
function slotOnly() {
  let n = 0;
  for (let i = 0; i < ops; i++) n += slot().arm;
  return n;
}

const cases = [
  ['slot allocation only (baseline)', slotOnly],
  ['decide + record, no experiment at the point', () => decideRecord(plan('none'))],
  ['decide + record, 5% split (most calls untouched)', () => decideRecord(plan('five'))],
  ['decide + record, every call assigned (canary or control)', () => decideRecord(plan('all'))],
  ['undici interceptor, untouched call', interceptorUntouched],
];
const rows = [];
for (const [name, fn] of cases) {
  fn(); // warm up
  const times = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    fn();
    times.push(Number(process.hrtime.bigint() - t0) / ops);
  }
  times.sort((a, b) => a - b);
  rows.push({ case: name, ns_per_op: Number(times[Math.floor(times.length / 2)].toFixed(1)) });
}
for (const r of rows) console.log(`${r.ns_per_op.toFixed(1).padStart(8)} ns/op  ${r.case}`);
if (process.argv.includes('--json')) console.log(JSON.stringify(rows));
await fl.close();
sink?.close();
rmSync(dir, { recursive: true, force: true });
