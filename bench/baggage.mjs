// Micro-benchmark of the edge's baggage rewrite (issue 11, item 8), in ns/op, using the compiled
// module in dist/ (npm run build). Usage: node bench/baggage.mjs [--ops N] [--otel]
// Figures are quoted in src/split/baggage.ts. --otel also times, in the same run, the OpenTelemetry
// propagation round-trip the hand-written rewrite replaced (extract, setEntry x2, inject: the old
// rewriteBaggage) on the same headers, and prints the ratio.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const mod = fileURLToPath(new URL('../dist/split/baggage.js', import.meta.url));
if (!existsSync(mod)) {
  process.stdout.write('baggage bench: skipped: dist/split/baggage.js not built (npm run build)\n');
  process.exit(0);
}
const { values } = parseArgs({ options: { ops: { type: 'string' }, otel: { type: 'boolean' } } });
const ops = Number(values.ops ?? 1_000_000);
const { assignmentMembers, assignmentFits, joinBaggage, mentionsFaultline, stripFaultline } = await import(
  mod
);

const members = assignmentMembers('auth-abort');
const small = 'userId=alice,tenant=acme,session=abc123';
const encoded = 'userId=alice,url=https%3A%2F%2Fexample.com%2Fx,tenant=acme';
const forged = 'userId=alice,faultline%2Eexp=auth-abort,faultline%2Egroup=canary,tenant=acme';
const big = Array.from({ length: 200 }, (_, i) => `member${i}=value${i}`).join(',');

/** What assign() does per request on an untrusted listener, for one incoming header. */
function rewrite(header) {
  const tagged = mentionsFaultline(header);
  const rest = header === undefined ? '' : tagged ? stripFaultline(header) : header;
  return assignmentFits(members, rest) ? joinBaggage(members[1], rest) : rest;
}

/** The replaced path: the header through OTel's propagation API and back (old rewriteBaggage). */
let otelRewrite = null;
if (values.otel) {
  const { ROOT_CONTEXT, defaultTextMapGetter, defaultTextMapSetter, propagation } =
    await import('@opentelemetry/api');
  const { W3CBaggagePropagator } = await import('@opentelemetry/core');
  const prop = new W3CBaggagePropagator();
  otelRewrite = (header) => {
    const ctx = prop.extract(
      ROOT_CONTEXT,
      header === undefined ? {} : { baggage: header },
      defaultTextMapGetter,
    );
    const bag = (propagation.getBaggage(ctx) ?? propagation.createBaggage())
      .setEntry('faultline.exp', { value: 'auth-abort' })
      .setEntry('faultline.group', { value: 'canary' });
    const carrier = {};
    prop.inject(propagation.setBaggage(ctx, bag), carrier, defaultTextMapSetter);
    return carrier.baggage ?? '';
  };
}

function time(fn, header, n) {
  let sink = 0;
  for (let i = 0; i < n / 10; i++) sink += fn(header).length;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sink += fn(header).length;
  return { ns: Number(process.hrtime.bigint() - t0) / n, sink };
}

const rows = [];
function bench(name, header) {
  const now = time(rewrite, header, ops);
  let line = `${name.padEnd(36)} ${now.ns.toFixed(1).padStart(9)} ns/op`;
  const row = { case: name, ns: Math.round(now.ns * 10) / 10 };
  if (otelRewrite) {
    // The OTel path is ~100x slower: fewer ops keep the run short.
    const before = time(otelRewrite, header, Math.max(1000, Math.round(ops / 50)));
    row.otelNs = Math.round(before.ns);
    row.speedup = Math.round((before.ns / now.ns) * 10) / 10;
    line += `   OTel round-trip ${before.ns.toFixed(0).padStart(8)} ns/op   x${row.speedup}`;
  }
  rows.push(row);
  process.stdout.write(`${line}  (${now.sink % 7})\n`);
}

bench('no incoming baggage', undefined);
bench('3 members', small);
bench('3 members, %-encoded value', encoded);
bench('forged faultline%2Eexp (stripped)', forged);
bench('200 members', big);
if (otelRewrite) {
  process.stdout.write(`\n${JSON.stringify({ ops, rows })}\n`);
}
