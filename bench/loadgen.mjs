// Paced (open-loop) load for the fixed-rate latency figures: runs the project's own load harness
// (src/load, compiled to dist/load) in its own process so it can be pinned next to the upstream.
// Usage: node bench/loadgen.mjs [--warmup S] <faultline load flags...>   (prints the JSON report)
// --warmup runs the same load for S seconds first, unrecorded, so the harness's own JIT warm-up
// and connection setup do not land in the measured tail.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('../dist/load/command.js', import.meta.url));
if (!existsSync(entry)) {
  process.stderr.write('loadgen: dist/load/command.js missing; run `npm run build` first\n');
  process.exit(2);
}
const { runLoadCommand } = await import(entry);
const argv = process.argv.slice(2);
let warmupS = 0;
const w = argv.indexOf('--warmup');
if (w >= 0) {
  warmupS = Number(argv[w + 1]);
  argv.splice(w, 2);
}
const quiet = { write: () => true };
if (warmupS > 0) {
  const d = argv.indexOf('--duration');
  const warm = [...argv];
  warm[d + 1] = `${warmupS}s`;
  // Warm-up against the same target but without the admin, so it does not read /experiments.
  const a = warm.indexOf('--admin');
  if (a >= 0) warm.splice(a, 2);
  await runLoadCommand([...warm, '--json'], { stdout: quiet, stderr: quiet, progressMs: 0 });
}
const code = await runLoadCommand([...argv, '--json'], {
  stdout: process.stdout,
  stderr: process.stderr,
  progressMs: 0,
});
process.exitCode = code;
