// gRPC through Faultline vs direct: unary and server-streaming calls driven by @grpc/grpc-js.
//
//   npm run build && node bench/grpc.mjs [--quick]
//
// The upstream (a grpc-js server, test/fixtures/grpc/echo.proto) and Faultline (dist/bin.js, h2c
// listener -> h2c upstream) run as child processes; this process is the load driver. Per peer and
// case: a closed-loop run for throughput (calls/s), then a paced run at a fixed rate below saturation
// for latency (p50/p99: closed loops hide tail latency), and Faultline's CPU per call from
// /proc/<pid>/stat (saturated and paced). Results go to bench/results/grpc-<time>.json and a
// markdown table on stdout. `--h2-clients` instead compares undici's HTTP/2 client with node:http2.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { cpuMicros } from './procstat.mjs';
import { faultlineNodeFlags } from './peers.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const PROTO = join(ROOT, 'test/fixtures/grpc/echo.proto');
const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const UNARY_PAYLOAD = Buffer.alloc(100, 1);
const STREAM_MESSAGES = 100;
const STREAM_PAYLOAD = Buffer.alloc(1024, 1);

const pkg = grpc.loadPackageDefinition(
  protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, defaults: true }),
);
const Echo = pkg.faultline.test.Echo;

// ---- upstream mode (child process) --------------------------------------------------------------

if (argv[0] === '--upstream') {
  const server = new grpc.Server();
  server.addService(Echo.service, {
    Unary: (call, cb) => cb(null, { message: call.request.message, payload: call.request.payload, seq: 0 }),
    ServerStream: (call) => {
      const n = call.request.count;
      const payload = Buffer.alloc(call.request.payload.length || 1024, 7);
      let seq = 0;
      const pump = () => {
        while (seq < n)
          if (!call.write({ message: '', payload, seq: seq++ })) return void call.once('drain', pump);
        call.end();
      };
      pump();
    },
    ClientStream: (call, cb) => {
      call.on('data', () => {});
      call.on('end', () => cb(null, {}));
    },
    Bidi: (call) => {
      call.on('data', (m) => call.write(m));
      call.on('end', () => call.end());
    },
  });
  server.bindAsync(`127.0.0.1:${argv[1]}`, grpc.ServerCredentials.createInsecure(), (err) => {
    if (err) throw err;
    process.stdout.write('ready\n');
  });
} else if (argv[0] === '--h2-clients') {
  await compareH2Clients();
} else {
  await main();
}

// ---- undici vs node:http2 as Faultline's HTTP/2 upstream client -----------------------------------

/**
 * `node bench/grpc.mjs --h2-clients`: the measurement behind src/proxy/h2-upstream.ts. Same h2c
 * upstream (responds with a body and grpc-status trailers), same handler-style calls, 50 in flight:
 * undici 7's h2c Pool vs a bare node:http2 session. Reports calls/s, CPU per call of this process
 * (client and server together) and whether the trailers arrived.
 */
async function compareH2Clients() {
  const http2 = await import('node:http2');
  const { Pool } = await import('undici');
  const srv = http2.createServer();
  srv.on('stream', (s) => {
    s.on('data', () => {});
    s.on('end', () => {
      s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0', 'x-trailer-bin': 'AAEC' }));
      s.end(UNARY_PAYLOAD);
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${srv.address().port}`;
  const headers = { 'content-type': 'application/grpc', te: 'trailers' };
  const pool = new Pool(origin, { connections: 1, allowH2: true, connect: { useH2c: true } });
  const undiciCall = () =>
    new Promise((resolve, reject) =>
      pool.dispatch(
        { path: '/x', method: 'POST', headers: Object.entries(headers).flat(), body: UNARY_PAYLOAD },
        {
          onRequestStart() {},
          onResponseStart() {},
          onResponseData() {},
          onResponseEnd: (_c, trailers) => resolve(trailers['grpc-status'] === '0'),
          onResponseError: (_c, e) => reject(e),
        },
      ),
    );
  const session = http2.connect(origin);
  const nodeCall = () =>
    new Promise((resolve, reject) => {
      const s = session.request({ ':method': 'POST', ':path': '/x', ...headers });
      let ok = false;
      s.on('data', () => {});
      s.on('trailers', (t) => (ok = t['grpc-status'] === '0'));
      s.on('end', () => resolve(ok));
      s.on('error', reject);
      s.end(UNARY_PAYLOAD);
    });
  const n = QUICK ? 5000 : 20000;
  const run = async (one) => {
    let i = 0;
    let trailers = 0;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (i++ < n) if (await one()) trailers++;
      }),
    );
    const cpu = process.cpuUsage(cpu0);
    return {
      callsPerSec: Math.round((n / (performance.now() - t0)) * 1000),
      cpuUsPerCall: Math.round((cpu.user + cpu.system) / n),
      trailersDelivered: `${trailers}/${n}`,
    };
  };
  const rows = [];
  for (let round = 0; round < 2; round++) {
    for (const [name, one] of [
      ['undici 7 Pool (allowH2, useH2c)', undiciCall],
      ['node:http2 session', nodeCall],
    ]) {
      const r = await run(one);
      if (round === 1) rows.push({ client: name, ...r });
    }
  }
  await pool.close();
  session.close();
  srv.close();
  console.log('| HTTP/2 client | calls/s | CPU/call (client+server) | trailers delivered |');
  console.log('|---|---|---|---|');
  for (const r of rows)
    console.log(`| ${r.client} | ${r.callsPerSec} | ${r.cpuUsPerCall} us | ${r.trailersDelivered} |`);
}

// ---- driver -------------------------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function startChild(args, readyLine, env = {}) {
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child did not start: ${out}`)), 15_000);
    const onData = (c) => {
      out += c.toString();
      if (out.includes(readyLine)) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => reject(new Error(`child exited ${code}: ${out}`)));
  });
}

function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** One call of the case; resolves to true on OK. */
function callOnce(client, kind) {
  return new Promise((resolve) => {
    if (kind === 'unary') {
      client.Unary({ message: 'bench', payload: UNARY_PAYLOAD }, (err) => resolve(err == null));
      return;
    }
    const s = client.ServerStream({ count: STREAM_MESSAGES, payload: STREAM_PAYLOAD });
    let n = 0;
    s.on('data', () => n++);
    s.on('status', (st) => resolve(st.code === 0 && n === STREAM_MESSAGES));
    s.on('error', () => undefined);
  });
}

/** Closed loop: `concurrency` callers back to back for `ms`. */
async function closedLoop(client, kind, concurrency, ms, pid = null) {
  const until = performance.now() + ms;
  const cpu0 = pid ? cpuMicros(pid) : 0;
  let ok = 0;
  let failed = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        if (await callOnce(client, kind)) ok++;
        else failed++;
      }
    }),
  );
  const cpu = pid ? cpuMicros(pid) - cpu0 : null;
  return {
    callsPerSec: (ok / (performance.now() - t0)) * 1000,
    ok,
    failed,
    cpuUsPerCall: cpu === null ? null : cpu / Math.max(1, ok),
  };
}

/** Paced (open loop): calls started at a fixed rate; latency from the scheduled start. */
async function paced(client, kind, rate, ms, pid) {
  const lat = [];
  let failed = 0;
  const n = Math.floor((rate * ms) / 1000);
  const interval = 1000 / rate;
  const cpu0 = pid ? cpuMicros(pid) : 0;
  const t0 = performance.now();
  const inflight = [];
  for (let i = 0; i < n; i++) {
    const at = t0 + i * interval;
    const wait = at - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    // From the scheduled start when the loop runs late (no coordinated omission), else the actual one.
    const start = Math.min(at, performance.now());
    inflight.push(
      callOnce(client, kind).then((ok) => {
        if (ok) lat.push(performance.now() - start);
        else failed++;
      }),
    );
  }
  await Promise.all(inflight);
  const elapsed = performance.now() - t0;
  const cpu = pid ? cpuMicros(pid) - cpu0 : null;
  lat.sort((a, b) => a - b);
  return {
    rate,
    achievedPerSec: (lat.length / elapsed) * 1000,
    p50Ms: quantile(lat, 0.5),
    p99Ms: quantile(lat, 0.99),
    failed,
    cpuUsPerCall: cpu === null ? null : cpu / n,
  };
}

async function main() {
  const tmp = mkdtempSync(join(tmpdir(), 'faultline-grpc-bench-'));
  const children = [];
  const stopAll = () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  };
  process.on('SIGINT', () => {
    stopAll();
    process.exit(130);
  });
  try {
    const upPort = await freePort();
    children.push(await startChild([fileURLToPath(import.meta.url), '--upstream', String(upPort)], 'ready'));
    const flPort = await freePort();
    const adminPort = await freePort();
    const cfg = join(tmp, 'faultline.yaml');
    writeFileSync(
      cfg,
      [
        `state_dir: ${join(tmp, 'state')}`,
        'admin: { address: 127.0.0.1, port: ' + adminPort + ' }',
        'listeners:',
        '  - name: grpc',
        '    address: 127.0.0.1',
        `    port: ${flPort}`,
        '    protocol: h2c',
        '    routes:',
        '      - name: echo',
        '        path_prefix: /',
        `        upstream: http://127.0.0.1:${upPort}`,
        '        upstream_protocol: h2c',
        '',
      ].join('\n'),
    );
    const fl = await startChild(
      [...faultlineNodeFlags(), join(ROOT, 'dist/bin.js'), 'run', '--config', cfg, '--no-watch'],
      'faultline started',
      { FAULTLINE_LOG_LEVEL: 'info' },
    );
    children.push(fl);

    const peers = [
      { name: 'direct', target: `127.0.0.1:${upPort}`, pid: null },
      { name: 'faultline', target: `127.0.0.1:${flPort}`, pid: fl.pid },
    ];
    const cases = [
      { kind: 'unary', concurrency: 32, rate: QUICK ? 500 : 1000 },
      { kind: 'server-stream', concurrency: 8, rate: QUICK ? 50 : 100 },
    ];
    const closedMs = QUICK ? 2000 : 8000;
    const pacedMs = QUICK ? 2000 : 8000;
    const results = [];
    for (const c of cases) {
      for (const p of peers) {
        const client = new Echo(p.target, grpc.credentials.createInsecure());
        const kind = c.kind === 'unary' ? 'unary' : 'stream';
        await closedLoop(client, kind, c.concurrency, QUICK ? 300 : 1000); // warm-up
        const cl = await closedLoop(client, kind, c.concurrency, closedMs, p.pid);
        const pc = await paced(client, kind, c.rate, pacedMs, p.pid);
        client.close();
        results.push({
          case: c.kind,
          peer: p.name,
          concurrency: c.concurrency,
          callsPerSec: Math.round(cl.callsPerSec),
          closedFailed: cl.failed,
          pacedRate: c.rate,
          p50Ms: round(pc.p50Ms),
          p99Ms: round(pc.p99Ms),
          pacedFailed: pc.failed,
          cpuUsPerCallClosed: cl.cpuUsPerCall === null ? null : Math.round(cl.cpuUsPerCall),
          cpuUsPerCallPaced: pc.cpuUsPerCall === null ? null : Math.round(pc.cpuUsPerCall),
          ...(c.kind === 'server-stream' ? { messagesPerCall: STREAM_MESSAGES, messageBytes: 1024 } : {}),
        });
        process.stderr.write(`${c.kind} ${p.name}: ${JSON.stringify(results.at(-1))}\n`);
      }
    }
    const out = {
      bench: 'grpc',
      quick: QUICK,
      node: process.version,
      date: new Date().toISOString(),
      notes:
        'closed loop for calls/s and CPU per call at saturation; paced (open loop) run at pacedRate for p50/p99 ' +
        'and CPU per call below saturation (includes idle overhead); ' +
        'driver, upstream and Faultline share this machine',
      results,
    };
    const dir = join(ROOT, 'bench/results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `grpc-${out.date.replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
    // stdout is the markdown table only (bench/run.mjs pastes it into RESULTS.md); the path goes
    // to stderr.
    console.log(table(results));
    process.stderr.write(`results: ${file}\n`);
  } finally {
    stopAll();
    rmSync(tmp, { recursive: true, force: true });
  }
}

function round(x) {
  return Math.round(x * 100) / 100;
}

function us(x) {
  return x === null ? '-' : `${x} us`;
}

function table(rows) {
  const lines = [
    '| case | peer | calls/s (closed, conc.) | Faultline CPU/call at saturation | paced rate | p50 ms | p99 ms | Faultline CPU/call paced |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows)
    lines.push(
      `| ${r.case}${r.messagesPerCall ? ` (${r.messagesPerCall} x 1 KiB)` : ''} | ${r.peer} | ${r.callsPerSec} (${r.concurrency}) | ${us(r.cpuUsPerCallClosed)} | ${r.pacedRate}/s | ${r.p50Ms} | ${r.p99Ms} | ${us(r.cpuUsPerCallPaced)} |`,
    );
  return lines.join('\n');
}
