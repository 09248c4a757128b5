// Paced (open-loop) load for the fixed-rate latency figures: runs the project's own load harness
// (src/load, compiled to dist/load) in its own process so it can be pinned next to the upstream.
// Usage: node bench/loadgen.mjs [--warmup S] <faultline load flags...>   (prints the JSON report)
// --warmup S (seconds, a bare number) becomes the harness's own `--warmup Ss`: the same schedule
// runs S seconds first, unrecorded, on the same connections, so the harness's JIT warm-up and
// connection setup do not land in the measured tail. Without it the harness's default applies.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('../dist/load/command.js', import.meta.url));
if (!existsSync(entry)) {
  process.stderr.write('loadgen: dist/load/command.js missing; run `npm run build` first\n');
  process.exit(2);
}
const { runLoadCommand } = await import(entry);
const argv = process.argv.slice(2);
const w = argv.indexOf('--warmup');
if (w >= 0 && /^\d+(\.\d+)?$/.test(argv[w + 1] ?? '')) argv[w + 1] = `${argv[w + 1]}s`;
const code = await runLoadCommand([...argv, '--json'], {
  stdout: process.stdout,
  stderr: process.stderr,
  progressMs: 0,
});
process.exitCode = code;
