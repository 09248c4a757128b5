// ns per AsyncResource.bind, Node's vs Faultline's lean one (src/proxy/lean-bind.ts): the bind that
// every node:http2 session.request() does. Two processes, so the patch cannot leak into Node's run.
//   npm run build && node bench/async-bind-micro.mjs
import { spawnSync } from 'node:child_process';
import { AsyncResource } from 'node:async_hooks';
import { fileURLToPath } from 'node:url';

const N = 200_000;
if (process.argv[2] === '--child') {
  if (process.argv[3] === 'lean') (await import('../dist/proxy/lean-bind.js')).installLeanAsyncBind();
  const f = () => {};
  let sink = null;
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const t0 = process.cpuUsage();
    for (let i = 0; i < N; i++) sink = new AsyncResource('PendingRequest').bind(f);
    const t = process.cpuUsage(t0);
    best = Math.min(best, ((t.user + t.system) * 1000) / N);
  }
  process.stdout.write(`${best.toFixed(0)}${sink ? '' : '?'}\n`);
} else {
  const me = fileURLToPath(import.meta.url);
  const run = (which) =>
    Number(spawnSync(process.execPath, [me, '--child', which], { encoding: 'utf8' }).stdout.trim());
  const node = run('node');
  const lean = run('lean');
  console.log('| AsyncResource.bind | ns/op (best of 5 x 200k, CPU time) |');
  console.log('| --- | ---: |');
  console.log(`| Node ${process.version} | ${node} |`);
  console.log(`| lean (src/proxy/lean-bind.ts) | ${lean} |`);
}
