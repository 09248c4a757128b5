// Micro-benchmark of the per-request decision on the hot path: match + draw (assign) + record,
// in ns/op, using the compiled modules in dist/ (npm run build). Skips with a clear line when the
// split/experiment modules are not built. Usage: node bench/micro.mjs [--ops N] [--reps R]
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const dist = (p) => fileURLToPath(new URL(`../dist/${p}`, import.meta.url));
const needed = [
  'split/match.js',
  'experiments/runtime.js',
  'config/load.js',
  'telemetry/metrics.js',
  'stats/analyzer.js',
];
const missing = needed.filter((p) => !existsSync(dist(p)));
if (missing.length) {
  process.stdout.write(`micro: skipped: dist/${missing.join(', dist/')} not built (npm run build)\n`);
  process.exit(0);
}
const { values } = parseArgs({ options: { ops: { type: 'string' }, reps: { type: 'string' } } });
const ops = Number(values.ops ?? 2_000_000);
const reps = Number(values.reps ?? 5);

const { matchesRequest } = await import(dist('split/match.js'));
const { ExperimentRuntime } = await import(dist('experiments/runtime.js'));
const { validateConfig } = await import(dist('config/load.js'));
const { createMetrics } = await import(dist('telemetry/metrics.js'));
const { ExperimentAnalyzer } = await import(dist('stats/analyzer.js'));

function runtimeFor(split, match = { listener: 'ingress', route: 'api' }) {
  const cfg = validateConfig(
    {
      listeners: [
        {
          name: 'ingress',
          address: '127.0.0.1',
          port: 8080,
          routes: [{ name: 'api', path_prefix: '/', upstream: 'http://127.0.0.1:9000', timeout_ms: 1000 }],
        },
      ],
      admin: { address: '127.0.0.1', port: 9901 },
      experiments: [
        { id: 'micro', hypothesis: 'micro', match, split, fault: { kind: 'abort', status: 503 } },
      ],
    },
    'micro',
  );
  const spec = cfg.experiments[0];
  const analyzer = new ExperimentAnalyzer({
    alpha: 1 - spec.confidence,
    minSamples: spec.min_samples,
    // snake_case spec (defaults filled in by the schema) -> the analyzer's camelCase config
    guardrails: spec.guardrails.map((g) => ({
      metric: g.metric,
      maxIncrease: g.max_increase,
      maxRatio: g.max_ratio,
      quantile: g.quantile,
      maxIncreaseMs: g.max_increase_ms,
    })),
    sticky: spec.split.sticky !== undefined,
  });
  const rt = new ExperimentRuntime(spec, createMetrics(), analyzer);
  rt.setState('running');
  return rt;
}

const users = Array.from({ length: 1024 }, (_, i) => `user-${i}`);
const headerSets = users.map((u) => [
  'host',
  'example',
  'user-agent',
  'bench',
  'x-user-id',
  u,
  'accept',
  '*/*',
]);

function once(rt, n) {
  let hits = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const raw = headerSets[i & 1023];
    if (!matchesRequest(rt.matcher, 'GET', '/api/items', raw)) continue;
    const arm = rt.draw(raw);
    if (arm === 0) continue;
    hits++;
    rt.recordOutcome('ingress', arm, 0, 1, 1.5, arm === 1, true); // outcome ok, status class 2xx
  }
  return { ns: Number(process.hrtime.bigint() - t0) / n, hits };
}

const cases = [
  ['random 5%', runtimeFor({ percent: 5 })],
  ['sticky header 5%', runtimeFor({ percent: 5, sticky: 'header:x-user-id' })],
  [
    'method mismatch (POST only)',
    runtimeFor({ percent: 5 }, { listener: 'ingress', route: 'api', methods: ['POST'] }),
  ],
];
const median = (v) => [...v].sort((a, b) => a - b)[v.length >> 1];
process.stdout.write(`micro: ${ops} ops x ${reps} reps, node ${process.version}\n`);
for (const [name, rt] of cases) {
  const warm = once(rt, Math.min(ops, 200_000)); // warm-up for the JIT
  const runs = Array.from({ length: reps }, () => once(rt, ops));
  const share = runs[0].hits / ops;
  process.stdout.write(
    `${name.padEnd(30)} ${median(runs.map((r) => r.ns))
      .toFixed(1)
      .padStart(8)} ns/op  (in experiment ${(share * 100).toFixed(1)}%)\n`,
  );
  // What was recorded must add up, or the figure timed something else (e.g. a changed signature).
  const hop = rt.hopCounts()['ingress'];
  const recorded = hop ? hop.canary.requests + hop.control.requests : 0;
  const twoXx = hop ? hop.canary.status_classes['2xx'] + hop.control.status_classes['2xx'] : 0;
  const hits = runs.reduce((n, r) => n + r.hits, warm.hits);
  if (recorded !== hits || twoXx !== hits) {
    process.stderr.write(
      `micro: ${name}: ${hits} draws, ${recorded} recorded, ${twoXx} as 2xx: the record call is wrong\n`,
    );
    process.exit(1);
  }
}
