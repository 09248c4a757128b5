// ext_proc decisions per second and server CPU per decision, driven by a grpc-js Envoy stand-in in
// this process (the client's own CPU is included in the process CPU: an upper bound for the server).
// Usage: npm run build && node bench/extproc.mjs [streams=4000] [concurrency=64]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { Faultline } from '../dist/main.js';
import { validateConfig } from '../dist/config/load.js';
import { EXT_PROC_PROTO, PROTO_DIR } from '../dist/extproc/proto.js';

const N = Number(process.argv[2] ?? 4000);
const C = Number(process.argv[3] ?? 64);
const state = mkdtempSync(join(tmpdir(), 'fl-bench-extproc-'));
const cfg = {
  state_dir: state,
  admin: { port: 0 },
  ext_proc: { name: 'envoy', port: 0 },
  experiments: [
    {
      id: 'abort',
      hypothesis: 'bench',
      match: { listener: 'envoy', path_prefix: '/abort' },
      split: { percent: 50, allow_above_cap: true },
      fault: { kind: 'abort', status: 503 },
    },
  ],
};
const fl = await Faultline.start({
  configFile: join(state, 'x.yaml'),
  config: validateConfig(cfg, 'bench'),
  watch: false,
});
const def = loadSync(EXT_PROC_PROTO, {
  includeDirs: [PROTO_DIR],
  keepCase: true,
  longs: Number,
  enums: Number,
  defaults: false,
  oneofs: true,
});
const Ctor = loadPackageDefinition(def).envoy.service.ext_proc.v3.ExternalProcessor;
const client = new Ctor(`127.0.0.1:${fl.port('envoy')}`, credentials.createInsecure());
const hm = (h) => ({ headers: Object.entries(h).map(([key, v]) => ({ key, raw_value: Buffer.from(v) })) });

function one(path) {
  return new Promise((resolve) => {
    const s = client.Process();
    let step = 0;
    s.on('data', (r) => {
      if (step === 0 && r.response === 'request_headers') {
        step = 1;
        s.write({ response_headers: { headers: hm({ ':status': '200' }), end_of_stream: true } });
      } else s.end();
    });
    s.on('status', () => resolve());
    s.on('error', () => resolve());
    s.write({
      request_headers: {
        headers: hm({
          ':method': 'GET',
          ':path': path,
          ':authority': 'svc',
          'user-agent': 'bench',
          accept: '*/*',
        }),
        end_of_stream: true,
      },
    });
  });
}

async function run(label, path) {
  let next = 0;
  const worker = async () => {
    while (next < N) {
      next++;
      await one(path);
    }
  };
  await Promise.all(Array.from({ length: 50 }, () => one(path))); // warm-up
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: C }, worker));
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const cpuUs = (cpu.user + cpu.system) / N;
  console.log(
    `${label.padEnd(32)} ${(N / (ms / 1000)).toFixed(0).padStart(6)} streams/s   ${cpuUs.toFixed(0)} µs CPU/stream (client + server)`,
  );
}

await run('untouched (no match)', '/other');
await run('assigned (50% canary abort)', '/abort');
client.close();
await fl.stop(100);
rmSync(state, { recursive: true, force: true });
