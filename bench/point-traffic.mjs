// Cost of a `traffic` probe on an in-process inbound point (README "Steady state..."): ns per request
// through fl.inbound() for a request outside every experiment, at a point no probe watches (A, the
// baseline: nothing added) and at one a traffic probe watches (B: one close listener, three additions).
// Interleaved A/B in one process, fake req/res (no network: the wrapper's own cost), medians + ratio.
// Uses dist/ (npm run build). Usage: node bench/point-traffic.mjs [--ops N] [--reps R] [--json]
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createFaultline } from '../dist/index.js';

const { values } = parseArgs({
  options: { ops: { type: 'string' }, reps: { type: 'string' }, json: { type: 'boolean' } },
});
const ops = Number(values.ops ?? 300_000);
const reps = Number(values.reps ?? 5);

async function variant(watched) {
  const dir = mkdtempSync(join(tmpdir(), 'fl-bench-pt-'));
  const fl = await createFaultline({
    config: {
      state_dir: dir,
      points: [{ name: 'checkout', role: 'inbound' }],
      experiments: [
        {
          id: 'e',
          hypothesis: 'bench',
          match: { listener: 'checkout', path_prefix: '/exp' },
          split: { percent: 5 },
          fault: { kind: 'latency', ms: 1 },
          steady_state: watched
            ? [
                {
                  name: 't',
                  traffic: { point: 'checkout', metric: 'error_rate', max: 0.5 },
                  when: ['during'],
                },
              ]
            : [],
        },
      ],
    },
  });
  const handler = fl.inbound('checkout', (_req, res) => {
    res.writableFinished = true;
    res.emit('close');
  });
  return { fl, dir, handler };
}

function run(handler, n) {
  const req = {
    method: 'GET',
    url: '/other',
    rawHeaders: ['host', 'x'],
    headers: { host: 'x' },
    socket: null,
  };
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const res = new EventEmitter();
    res.statusCode = 200;
    res.writableFinished = false;
    res.setHeader = () => {};
    handler(req, res);
  }
  return Number(process.hrtime.bigint() - t0) / n;
}

const a = await variant(false);
const b = await variant(true);
run(a.handler, ops / 5);
run(b.handler, ops / 5);
const ns = { unwatched: [], watched: [] };
for (let r = 0; r < reps; r++) {
  // Alternate the order so drift and GC do not favour one side.
  const order = r % 2 === 0 ? ['unwatched', 'watched'] : ['watched', 'unwatched'];
  for (const k of order) ns[k].push(run(k === 'watched' ? b.handler : a.handler, ops));
}
const med = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const out = {
  ops,
  reps,
  ns_per_request: { unwatched: med(ns.unwatched), watched: med(ns.watched) },
  ratio_watched_to_unwatched: med(ns.watched) / med(ns.unwatched),
  samples: ns,
};
for (const v of [a, b]) {
  await v.fl.close();
  rmSync(v.dir, { recursive: true, force: true });
}
if (values.json) console.log(JSON.stringify(out, null, 1));
else
  console.log(
    [
      '| point | ns/request (median) |',
      '|---|---|',
      `| unwatched (baseline) | ${out.ns_per_request.unwatched.toFixed(1)} |`,
      `| watched by a traffic probe | ${out.ns_per_request.watched.toFixed(1)} |`,
      '',
      `ratio watched / unwatched: ${out.ratio_watched_to_unwatched.toFixed(2)} (${ops} requests x ${reps} reps, interleaved)`,
    ].join('\n'),
  );
