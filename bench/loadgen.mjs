// Paced (open-loop) load for the fixed-rate latency figures: runs the project's own load harness
// (src/load, compiled to dist/load) in its own process so it can be pinned next to the upstream.
// Usage: node bench/loadgen.mjs <faultline load flags...>   (prints the JSON report)
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('../dist/load/command.js', import.meta.url));
if (!existsSync(entry)) {
  process.stderr.write('loadgen: dist/load/command.js missing; run `npm run build` first\n');
  process.exit(2);
}
const { runLoadCommand } = await import(entry);
const code = await runLoadCommand([...process.argv.slice(2), '--json'], {
  stdout: process.stdout,
  stderr: process.stderr,
  progressMs: 0,
});
process.exitCode = code;
