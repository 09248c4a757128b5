// Micro-benchmark of the edge's baggage rewrite (issue 11, item 8), in ns/op, using the compiled
// module in dist/ (npm run build). Usage: node bench/baggage.mjs [--ops N]
// Figures are quoted in src/split/baggage.ts.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const mod = fileURLToPath(new URL('../dist/split/baggage.js', import.meta.url));
if (!existsSync(mod)) {
  process.stdout.write('baggage bench: skipped: dist/split/baggage.js not built (npm run build)\n');
  process.exit(0);
}
const { values } = parseArgs({ options: { ops: { type: 'string' } } });
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

function bench(name, header) {
  let sink = 0;
  for (let i = 0; i < ops / 10; i++) sink += rewrite(header).length;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) sink += rewrite(header).length;
  const ns = Number(process.hrtime.bigint() - t0) / ops;
  process.stdout.write(`${name.padEnd(36)} ${ns.toFixed(1).padStart(9)} ns/op  (${sink % 7})\n`);
}

bench('no incoming baggage', undefined);
bench('3 members', small);
bench('3 members, %-encoded value', encoded);
bench('forged faultline%2Eexp (stripped)', forged);
bench('200 members', big);
