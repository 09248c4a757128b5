// ext_proc decisions per second and the SERVER's CPU per decision, with the Envoy stand-in (a grpc-js
// client sending pre-encoded ProcessingRequest bytes, as Envoy does over one HTTP/2 connection) in this
// process and every server in a child process of its own, so the client's CPU is never counted.
//
// Servers: one Faultline per --variant (its dist build), and "echo": an empty grpc-js bidi server that
// answers each message with constant bytes (no decode, no decision): grpc-js's own floor per stream.
// Phases, each driven the way Envoy drives it:
//   untouched  experiments loaded, none matches, Envoy with allow_mode_override: true (examples/envoy):
//              request_headers -> CONTINUE + mode_override skipping the response messages; Envoy ends
//              the stream: one exchange
//   untouched, no mode_override  the same request through an Envoy without allow_mode_override, which
//              ignores the override: request_headers -> CONTINUE, response_headers -> CONTINUE
//   assigned   control arm: request_headers -> CONTINUE + baggage mutation, response_headers -> outcome recorded
//   aborted    canary arm:  request_headers -> immediate_response 503 (Envoy ends the stream)
// Then, per server, a weighted figure for a realistic mix of the three (--mix untouched,assigned,aborted
// in percent; default 97,2,1), with and without allow_mode_override, and every figure against the HTTP
// proxy host's CPU per proxied request (an untouched 1 KB GET) measured in the same run.
// Arms are sticky on x-request-id, so the bench probes ids once and drives each phase with ids of one arm.
// Every rep runs every server once per phase, order alternating (interleaved A/B); medians at the end.
// Server CPU: process.cpuUsage() read in the server process over IPC before and after each run.
//
//   npm run build && node bench/extproc.mjs [--streams 3000] [--concurrency 64] [--reps 3] [--warmup 1000]
//       [--variant new=dist] [--variant base=dist-base] [--no-echo] [--echo-channelz] [--echo-http2] [--no-proxy]
//       [--mix 97,2,1] [--phases untouched,no-override,assigned,aborted]
//       [--server-flags --cpu-prof,--cpu-prof-dir=/tmp/p]
//       [--proxy-us 60.2] [--out bench/results/extproc]
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Server, ServerCredentials, credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import { Pool } from 'undici';
import { faultlineNodeFlags } from './peers.mjs';
import { loadSync } from '@grpc/proto-loader';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PATH = '/envoy.service.ext_proc.v3.ExternalProcessor/Process';
const raw = (b) => b;
const RAW_METHOD = {
  path: PATH,
  requestStream: true,
  responseStream: true,
  requestSerialize: raw,
  requestDeserialize: raw,
  responseSerialize: raw,
  responseDeserialize: raw,
};

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};

// ---- server side (a child process) ---------------------------------------------------------------

async function serveFaultline(dist, upstreamPort) {
  const { Faultline } = await import(pathToFileURL(join(dist, 'main.js')).href);
  const { validateConfig } = await import(pathToFileURL(join(dist, 'config/load.js')).href);
  const state = mkdtempSync(join(tmpdir(), 'fl-bench-extproc-'));
  const cfg = {
    state_dir: state,
    admin: { port: 0 },
    // `proxy`: the same experiment behind the HTTP proxy host, for its CPU per request in this run.
    listeners: upstreamPort
      ? [
          {
            name: 'ingress',
            address: '127.0.0.1',
            port: 0,
            routes: [{ name: 'api', path_prefix: '/', upstream: `http://127.0.0.1:${upstreamPort}` }],
          },
        ]
      : [],
    ext_proc: { name: 'envoy', port: 0 },
    experiments: [
      {
        id: 'abort',
        hypothesis: 'bench',
        match: { listener: upstreamPort ? 'ingress' : 'envoy', path_prefix: '/checkout' },
        split: { percent: 50, allow_above_cap: true, sticky: 'request_id' },
        fault: { kind: 'abort', status: 503 },
      },
    ],
  };
  const fl = await Faultline.start({
    configFile: join(state, 'x.yaml'),
    config: validateConfig(cfg, 'bench'),
    watch: false,
  });
  return {
    port: fl.port(upstreamPort ? 'ingress' : 'envoy'),
    stop: async () => {
      await fl.stop(100);
      rmSync(state, { recursive: true, force: true });
    },
  };
}

/**
 * ProcessingResponse{request_headers: {}, mode_override: {response_header_mode, request_trailer_mode,
 * response_trailer_mode: SKIP}}: what Faultline answers an untouched request. The echo servers answer
 * every request_headers with it; the client honours it only in the phase whose Envoy allows it.
 */
const ECHO_CONT_REQ = '0a00' + '4a06100228023002';

/**
 * grpc-js with nothing on top: each message answered with the constant reply its kind gets. With
 * channelz off, as Faultline's server runs (`echo-channelz`: grpc-js's defaults, to show what that saves).
 */
async function serveEcho(channelz) {
  const CONT_REQ = Buffer.from(ECHO_CONT_REQ, 'hex');
  const CONT_RESP = Buffer.from('1200', 'hex'); // ProcessingResponse{response_headers: {}}
  const server = new Server(channelz ? {} : { 'grpc.enable_channelz': 0 });
  server.addService(
    { Process: RAW_METHOD },
    {
      Process(stream) {
        stream.on('data', (b) => stream.write(b[0] === 0x12 ? CONT_REQ : CONT_RESP));
        stream.on('end', () => stream.end());
        stream.on('error', () => {});
      },
    },
  );
  const port = await new Promise((res, rej) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
  return { port, stop: () => new Promise((r) => server.tryShutdown(r)) };
}

/**
 * The same echo on node:http2 alone (gRPC's 5-byte message framing by hand, no grpc-js): how much of
 * grpc-js's floor is Node's HTTP/2 itself. Assumes each DATA chunk holds whole messages, as the
 * bench's small messages do.
 */
async function serveHttp2Echo() {
  const { createServer, constants } = await import('node:http2');
  const frame = (hex) => {
    const m = Buffer.from(hex, 'hex');
    const b = Buffer.alloc(5 + m.length);
    b.writeUInt32BE(m.length, 1);
    m.copy(b, 5);
    return b;
  };
  const CONT_REQ = frame(ECHO_CONT_REQ);
  const CONT_RESP = frame('1200');
  const HEAD = { [constants.HTTP2_HEADER_STATUS]: 200, 'content-type': 'application/grpc+proto' };
  const server = createServer();
  server.on('stream', (stream) => {
    stream.respond(HEAD, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.on('data', (chunk) => {
      for (let i = 0; i + 5 <= chunk.length; i += 5 + chunk.readUInt32BE(i + 1))
        stream.write(chunk[i + 5] === 0x12 ? CONT_REQ : CONT_RESP);
    });
    stream.on('end', () => stream.end());
    stream.on('error', () => {});
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.address().port, stop: () => new Promise((r) => server.close(r)) };
}

if (args[0] === '--serve') {
  const kind = args[1];
  const s =
    kind === 'echo-http2'
      ? await serveHttp2Echo()
      : kind.startsWith('echo')
        ? await serveEcho(kind === 'echo-channelz')
        : await serveFaultline(resolve(ROOT, args[2]), kind === 'proxy' ? Number(args[3]) : 0);
  process.on('message', async (m) => {
    if (m === 'cpu') {
      const u = process.cpuUsage();
      process.send({ cpu: u.user + u.system });
    } else if (m === 'stop') {
      await s.stop();
      process.exit(0);
    }
  });
  process.send({ port: s.port });
} else await main();

// ---- client side (this process) -------------------------------------------------------------------

async function main() {
  const N = Number(opt('streams', '3000'));
  const C = Number(opt('concurrency', '64'));
  const reps = Number(opt('reps', '3'));
  const serverFlags = opt('server-flags', '');
  const proxyUs = opt('proxy-us', null);
  const out = opt('out', join(ROOT, 'bench/results/extproc'));
  const variants = [];
  for (let i = 0; i < args.length; i++) if (args[i] === '--variant') variants.push(args[++i].split('='));
  if (variants.length === 0) variants.push(['faultline', 'dist']);
  const withEcho = !args.includes('--no-echo');
  const withProxy = !args.includes('--no-proxy');
  const mix = opt('mix', '97,2,1').split(',').map(Number);
  if (mix.length !== 3 || mix.some((x) => !(x >= 0)) || mix[0] + mix[1] + mix[2] <= 0)
    throw new Error('--mix: three percentages, untouched,assigned,aborted (e.g. 97,2,1)');
  const mixLabel = mix.join('/');

  // The client encodes with proto-loader from the repo's .proto files once, up front: per stream it
  // only writes Buffers, so its own cost stays small and out of the servers' figures anyway.
  const def = loadSync('envoy/service/ext_proc/v3/external_processor.proto', {
    includeDirs: [join(ROOT, 'proto')],
    keepCase: true,
    longs: Number,
    enums: Number,
    defaults: false,
    oneofs: true,
  });
  const method = def['envoy.service.ext_proc.v3.ExternalProcessor'].Process;
  const hm = (h) => ({ headers: Object.entries(h).map(([key, v]) => ({ key, raw_value: Buffer.from(v) })) });
  // What Envoy sends for a plain GET through its router (request and response header modes SEND).
  const reqHeaders = (path, id) =>
    method.requestSerialize({
      request_headers: {
        headers: hm({
          ':authority': 'shop.example',
          ':path': path,
          ':method': 'GET',
          ':scheme': 'http',
          'user-agent': 'curl/8.5.0',
          accept: '*/*',
          'x-forwarded-proto': 'http',
          'x-request-id': id,
          'x-envoy-expected-rq-timeout-ms': '15000',
        }),
        end_of_stream: true,
      },
    });
  const RESP = method.requestSerialize({
    response_headers: {
      headers: hm({
        ':status': '200',
        'content-type': 'application/json',
        'content-length': '1024',
        date: 'Tue, 01 Dec 2026 11:00:00 GMT',
        'x-envoy-upstream-service-time': '1',
      }),
      end_of_stream: true,
    },
  });

  const all = []; // every child, for cleanup
  let upstream = null;
  // Every server runs with the node flags Faultline ships with (dist/bin.js's shebang), echo included.
  const nodeFlags = [...faultlineNodeFlags(), ...(serverFlags ? serverFlags.split(',') : [])];
  const startServer = (name, kind, dist, extra = '') =>
    new Promise((res, rej) => {
      const child = fork(fileURLToPath(import.meta.url), ['--serve', kind, dist ?? '', extra], {
        execArgv: nodeFlags,
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
        env: { ...process.env, FAULTLINE_LOG_LEVEL: 'error' },
      });
      const waiters = [];
      child.on('message', (m) => {
        if (m.port !== undefined) {
          const client =
            kind === 'proxy'
              ? new Pool(`http://127.0.0.1:${m.port}`, { connections: C })
              : new (makeGenericClientConstructor({ Process: RAW_METHOD }, 'Raw'))(
                  `127.0.0.1:${m.port}`,
                  credentials.createInsecure(),
                );
          const srv = {
            name,
            kind,
            child,
            client,
            cpu: () => new Promise((r) => (waiters.push(r), child.send('cpu'))),
          };
          all.push(srv);
          res(srv);
        } else if (m.cpu !== undefined) waiters.shift()(m.cpu);
      });
      child.once('exit', (code) => rej(new Error(`${name} exited (${code})`)));
    });

  /**
   * Does a reply carry a mode_override with response_header_mode SKIP (what Envoy with
   * allow_mode_override acts on)? Top-level fields and the override's are one-byte tags and values here.
   */
  function skipsResponse(b) {
    let i = 0;
    while (i < b.length) {
      const tag = b[i++];
      if ((tag & 7) !== 2) return false;
      let len = 0;
      for (let shift = 0, x = 0x80; x & 0x80; shift += 7) len |= ((x = b[i++]) & 0x7f) << shift;
      if (tag >> 3 === 9) {
        for (let j = i; j + 1 < i + len; j += 2) if (b[j] === 0x10 && b[j + 1] === 2) return true;
        return false;
      }
      i += len;
    }
    return false;
  }

  /**
   * One stream as Envoy runs it; resolves with the first reply's oneof tag (0x0a CONTINUE, 0x3a
   * immediate), plus 0x100 when the reply's mode_override made the stream one exchange (`allowOverride`:
   * the phase's Envoy has allow_mode_override: true).
   */
  function one(srv, first, twoLegs, allowOverride = false) {
    return new Promise((resolve) => {
      const s = srv.client.Process();
      let tag = 0;
      s.on('data', (b) => {
        if (tag === 0) {
          tag = b[0];
          if (twoLegs && tag === 0x0a) {
            if (!(allowOverride && skipsResponse(b))) {
              s.write(RESP);
              return;
            }
            tag |= 0x100;
          }
        }
        s.end();
      });
      s.on('status', () => resolve(tag));
      s.on('error', () => resolve(-1));
      s.write(first);
    });
  }

  /** One 1 KB GET through the proxy host; resolves with the status. */
  async function get(pool) {
    const r = await pool.request({ path: '/catalog/item', method: 'GET' });
    await r.body.dump();
    return r.statusCode;
  }

  async function drive(srv, p, n) {
    const { msgs, twoLegs, allowOverride } = p;
    let next = 0;
    const tags = new Map();
    const worker = async () => {
      while (next < n) {
        const m = msgs[next++ % msgs.length];
        const t = srv.kind === 'proxy' ? await get(srv.client) : await one(srv, m, twoLegs, allowOverride);
        tags.set(t, (tags.get(t) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: C }, worker));
    return tags;
  }

  try {
    for (const [name, dist] of variants) await startServer(name, 'faultline', dist);
    if (withEcho) await startServer('echo', 'echo');
    if (args.includes('--echo-channelz')) await startServer('echo-channelz', 'echo-channelz');
    if (args.includes('--echo-http2')) await startServer('echo-http2', 'echo-http2');
    let proxy = null;
    if (withProxy) {
      upstream = fork(join(ROOT, 'bench/upstream.mjs'), [], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
      const upPort = await new Promise((res) =>
        upstream.stdout.on('data', (d) => {
          const m = /READY (\d+)/.exec(String(d));
          if (m) res(Number(m[1]));
        }),
      );
      proxy = await startServer('proxy', 'proxy', variants[0][1], String(upPort));
    }
    const servers = all.filter((x) => x !== proxy);

    // Probe ids once: the arm of an id is sticky (x-request-id), the same in every Faultline build.
    const probe = servers[0];
    const control = [];
    const canary = [];
    for (let i = 0; i < 400; i++) {
      const id = `bench-${i.toString(16).padStart(8, '0')}`;
      const m = reqHeaders('/checkout/pay', id);
      ((await one(probe, m, false)) === 0x3a ? canary : control).push(m);
    }
    const untouchedMsgs = [reqHeaders('/catalog/item', 'bench-untouched')];
    const only = opt('phases', null)?.split(',');
    const phases = [
      {
        id: 'untouched',
        key: 'untouched',
        msgs: untouchedMsgs,
        twoLegs: true,
        allowOverride: true,
        expect: 0x10a,
      },
      {
        id: 'untouched, no mode_override',
        key: 'no-override',
        msgs: untouchedMsgs,
        twoLegs: true,
        expect: 0x0a,
      },
      { id: 'assigned', key: 'assigned', msgs: control, twoLegs: true, expect: 0x0a },
      { id: 'aborted', key: 'aborted', msgs: canary, twoLegs: false, expect: 0x3a },
    ].filter((p) => only === undefined || only.includes(p.key));
    console.error(`servers: ${all.map((x) => `${x.name} pid ${x.child.pid}`).join(', ')}`);
    const warm = Number(opt('warmup', '1000'));
    for (const srv of servers) for (const p of phases) await drive(srv, p, warm);
    // The proxy host, same build, same run: an untouched 1 KB GET, the figure bench/RESULTS.md reports.
    const proxyPhase = { id: 'http proxy, 1 KB GET', msgs: [null], twoLegs: false, expect: 200 };
    if (proxy) await drive(proxy, proxyPhase, warm);
    const units = phases.map((p) => [p, servers]);
    if (proxy) units.push([proxyPhase, [proxy]]);

    const samples = []; // { rep, server, phase, streamsPerS, cpuUs, purity }
    for (let rep = 0; rep < reps; rep++) {
      // Phases and servers both in alternating order: neither goes first every time.
      for (const [p, list] of rep % 2 === 0 ? units : [...units].reverse())
        for (const srv of rep % 2 === 0 ? list : [...list].reverse()) {
          const c0 = await srv.cpu();
          const t0 = performance.now();
          const tags = await drive(srv, p, N);
          const ms = performance.now() - t0;
          const c1 = await srv.cpu();
          console.error(
            `rep ${rep} ${p.id} ${srv.name}: ${((c1 - c0) / N).toFixed(1)} us/stream, ${(N / (ms / 1000)).toFixed(0)}/s`,
          );
          samples.push({
            rep,
            server: srv.name,
            phase: p.id,
            streamsPerS: N / (ms / 1000),
            cpuUs: (c1 - c0) / N,
            purity: srv.kind.startsWith('echo') ? 1 : (tags.get(p.expect) ?? 0) / N,
          });
        }
    }

    const median = (xs) => {
      const s = [...xs].sort((a, b) => a - b);
      return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    };
    const rows = [];
    for (const [p, list] of units)
      for (const srv of list) {
        const mine = samples.filter((s) => s.phase === p.id && s.server === srv.name);
        rows.push({
          phase: p.id,
          server: srv.name,
          decisions_per_s: median(mine.map((s) => s.streamsPerS)),
          cpu_us_per_stream: median(mine.map((s) => s.cpuUs)),
          cpu_us_samples: mine.map((s) => +s.cpuUs.toFixed(1)),
          phase_purity: Math.min(...mine.map((s) => s.purity)),
        });
      }
    // Ratios are paired per rep (the two servers measured back to back), then the median over reps:
    // load from other processes moves both sides of a pair alike, far less than it moves medians.
    const paired = (r, other, fn) => {
      const xs = [];
      for (let rep = 0; rep < reps; rep++) {
        const a = samples.find((x) => x.rep === rep && x.phase === r.phase && x.server === r.server);
        const b = samples.find((x) => x.rep === rep && x.phase === r.phase && x.server === other);
        if (a && b) xs.push(fn(a.cpuUs, b.cpuUs));
      }
      return xs.length ? median(xs) : null;
    };
    const proxyRow = rows.find((r) => r.server === 'proxy');
    const proxyRef = proxyRow ? proxyRow.cpu_us_per_stream : proxyUs ? Number(proxyUs) : null;
    const baseName = variants.length > 1 ? variants[variants.length - 1][0] : null;
    const proxySample = (rep) => samples.find((x) => x.rep === rep && x.server === 'proxy')?.cpuUs;
    for (const r of rows) {
      r.x_echo_floor = withEcho ? paired(r, 'echo', (a, b) => a / b) : null;
      r.over_floor_us = withEcho ? paired(r, 'echo', (a, b) => a - b) : null;
      r.x_base =
        baseName && variants.some(([n]) => n === r.server) ? paired(r, baseName, (a, b) => a / b) : null;
      // Against the proxy: per rep too when it was measured in this run.
      const xp = [];
      if (proxyRow)
        for (let rep = 0; rep < reps; rep++) {
          const a = samples.find((x) => x.rep === rep && x.phase === r.phase && x.server === r.server);
          if (a && proxySample(rep)) xp.push(a.cpuUs / proxySample(rep));
        }
      r.x_proxy = xp.length ? median(xp) : proxyRef ? r.cpu_us_per_stream / proxyRef : null;
    }

    // The mix: per rep, the weighted mean of the server's CPU per decision in the three phases (each
    // measured in that rep), then against the proxy's CPU per request of the same rep; medians over reps.
    const mixRows = [];
    const weight = mix[0] + mix[1] + mix[2];
    const weighted = (rep, server, untouchedPhase) => {
      const at = (phase) =>
        samples.find((x) => x.rep === rep && x.phase === phase && x.server === server)?.cpuUs;
      const u = at(untouchedPhase);
      const a = at('assigned');
      const b = at('aborted');
      return u === undefined || a === undefined || b === undefined
        ? null
        : (mix[0] * u + mix[1] * a + mix[2] * b) / weight;
    };
    for (const [label, untouchedPhase] of [
      ['allow_mode_override: true', 'untouched'],
      ['no allow_mode_override', 'untouched, no mode_override'],
    ])
      for (const srv of servers) {
        const us = [];
        const xp = [];
        const xe = [];
        for (let rep = 0; rep < reps; rep++) {
          const w = weighted(rep, srv.name, untouchedPhase);
          if (w === null) continue;
          us.push(w);
          if (proxySample(rep)) xp.push(w / proxySample(rep));
          const e = withEcho ? weighted(rep, 'echo', untouchedPhase) : null;
          if (e) xe.push(w / e);
        }
        if (us.length === 0) continue; // --phases left one of the three out
        mixRows.push({
          mix: mixLabel,
          envoy: label,
          server: srv.name,
          cpu_us_per_request: us.length ? median(us) : null,
          x_echo_floor: xe.length ? median(xe) : null,
          x_proxy: xp.length ? median(xp) : proxyRef && us.length ? median(us) / proxyRef : null,
        });
      }

    const f = (x, d = 1) => (x === null || x === undefined ? '-' : x.toFixed(d));
    const result = {
      run: new Date().toISOString(),
      command: `node bench/extproc.mjs ${args.join(' ')}`,
      machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
      streams: N,
      concurrency: C,
      reps,
      proxy_cpu_us_per_request: proxyRef,
      proxy_cpu_source: proxyRow ? 'measured in this run' : proxyUs ? 'bench/RESULTS.md (--proxy-us)' : null,
      rows,
      mix: { untouched: mix[0], assigned: mix[1], aborted: mix[2], rows: mixRows },
    };
    const md = [
      `# ext_proc: server CPU per decision`,
      '',
      `Run ${result.run}: \`${result.command}\`; ${reps} rep(s) x ${N} streams, ${C} in flight on one HTTP/2`,
      `connection; servers in their own processes, order alternating per rep; medians (ratios: per rep, then the median). Machine: ${result.machine.cpus} CPUs,`,
      `${result.machine.model}; node ${result.machine.node}. "echo" is an empty grpc-js bidi server (constant replies,`,
      `no decode): grpc-js's floor.` +
        (proxyRow
          ? ` "x proxy": against the HTTP proxy host's CPU per 1 KB GET measured in this run (${f(proxyRef)} us, first variant's build, undici client, ${C} connections).`
          : proxyUs
            ? ` "x proxy": against the proxy's CPU per 1 KB GET in bench/RESULTS.md (${proxyUs} us).`
            : ''),
      '',
      '| phase | server | decisions/s | server CPU us/decision | x echo floor | over floor us | x base | x proxy | phase purity | samples us |',
      '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
      ...rows.map(
        (r) =>
          `| ${r.phase} | ${r.server} | ${f(r.decisions_per_s, 0)} | ${f(r.cpu_us_per_stream)} | ${f(r.x_echo_floor, 2)} | ${f(r.over_floor_us)} | ${f(r.x_base, 2)} | ${f(r.x_proxy, 2)} | ${f(r.phase_purity * 100, 0)}% | ${r.cpu_us_samples.join(' ')} |`,
      ),
      '',
      `Mix of ${mix[0]}% untouched, ${mix[1]}% assigned (control), ${mix[2]}% aborted requests: the weighted server CPU`,
      `per request (per rep, then the median), and against the proxy host's CPU per proxied request.`,
      '',
      '| Envoy | server | server CPU us/request | x echo floor | x proxy |',
      '| --- | --- | ---: | ---: | ---: |',
      ...mixRows.map(
        (r) =>
          `| ${r.envoy} | ${r.server} | ${f(r.cpu_us_per_request)} | ${f(r.x_echo_floor, 2)} | ${f(r.x_proxy, 2)} |`,
      ),
      '',
    ].join('\n');
    writeFileSync(`${out}.json`, JSON.stringify(result, null, 2));
    writeFileSync(`${out}.md`, md);
    console.log(md);
    console.log(`wrote ${out}.json, ${out}.md`);
  } finally {
    for (const s of all) {
      s.client.close();
      s.child.removeAllListeners('exit');
      s.child.send('stop');
    }
    // Up to 5 s to stop cleanly (a --cpu-prof child writes its profile on exit), then SIGKILL.
    const exited = all.map((x) =>
      x.child.exitCode === null ? new Promise((r) => x.child.once('exit', r)) : null,
    );
    await Promise.race([Promise.all(exited), new Promise((r) => setTimeout(r, 5000))]);
    for (const s of all) if (s.child.exitCode === null) s.child.kill('SIGKILL');
    if (upstream) upstream.kill('SIGTERM');
  }
}
