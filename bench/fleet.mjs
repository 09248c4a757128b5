// Fleet mode (Redis) costs and kill propagation. Needs `npm run build`, wrk and redis-server.
//
// 1. cpu: fleet on vs off on one replica. Two Faultlines run the same experiment (5 % split, 5 %
//    aborts), one with `fleet` (a real redis-server), one without, both pinned to core 0 (only one
//    loaded at a time); wrk and the upstream on core 1. Reps interleave A/B (order alternating, as
//    bench/ab.mjs does); medians of CPU us/request (Faultline process) and req/s; the ratio on/off
//    (target: within 5 %: nothing per request touches Redis). Redis's own CPU per request is reported
//    apart (the batched writes cost it, not the proxy).
// 2. kill: kill propagation over 3 replicas (default grant_ttl_ms/flush_ms) under steady load. Each
//    round kills the experiment on one replica (POST /experiments/ID/kill, rotating), takes the kill
//    record's time in Redis as the decision, and per replica the lag from it to the last request that
//    was injected (send time; negative: the last injected request was sent before the decision); then
//    re-arms it on another replica and waits for injection on all three. p50/p99/max over all lags.
//
//   node bench/fleet.mjs [--part cpu,kill] [--reps 5] [--duration 5] [--kills 20] [--connections 32]
//                        [--json FILE] [--md FILE]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { Redis } from 'ioredis';
import { parse, stringify } from 'yaml';
import { cpuMicros } from './procstat.mjs';
import { faultlineConfig, faultlineEntry, freePort, startUpstream, stopAll } from './peers.mjs';
import { runWrk } from './wrk.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const parts = opt('part', 'cpu,kill').split(',');
const reps = Number(opt('reps', '5'));
const durationS = Number(opt('duration', '5'));
const kills = Number(opt('kills', '20'));
const connections = Number(opt('connections', '32'));
const jsonFile = opt('json', null);
const mdFile = opt('md', null);
const core0 = ['taskset', '-c', '0'];
const core1 = ['taskset', '-c', '1'];
const tmp = mkdtempSync(join(tmpdir(), 'fl-fleet-bench-'));
const entry = faultlineEntry();
if (entry === null) {
  console.error('dist/bin.js missing: npm run build');
  process.exit(2);
}
const children = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const EXPERIMENT = {
  id: 'bench',
  hypothesis: 'the service copes with aborts',
  split: { percent: 5 },
  fault: { kind: 'abort', status: 503, percent: 5 },
  min_samples: 100000000,
  guardrails: [{ metric: 'error_rate' }],
};

function spawnLogged(cmd, argv, name) {
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let logs = '';
  const keep = (d) => (logs = (logs + d).slice(-4000));
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.logsOf = () => `[${name}] ${logs}`;
  return child;
}

async function startRedis() {
  const port = await freePort();
  const dir = join(tmp, `redis-${port}`);
  rmSync(dir, { recursive: true, force: true });
  const child = spawnLogged(
    core1[0],
    [
      ...core1.slice(1),
      'redis-server',
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--dir',
      tmp,
    ],
    'redis',
  );
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    const c = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.ping();
      c.disconnect();
      return { url, child };
    } catch {
      c.disconnect();
      await sleep(100);
    }
  }
  throw new Error(`redis-server did not start: ${child.logsOf()}`);
}

/** One Faultline process pinned to `pin`; `fleet` adds the fleet block. */
async function startFaultline(name, upstreamPort, pin, fleet, extra = {}) {
  const port = await freePort();
  const adminPort = await freePort();
  const dir = join(tmp, name);
  // bench/peers.mjs's listener and admin, this bench's experiment and fleet.
  const config = parse(faultlineConfig({ port, adminPort, upstreamPort }));
  config.state_dir = dir;
  config.experiments = [{ ...EXPERIMENT, match: { listener: 'ingress', route: 'api' }, ...extra }];
  if (fleet) config.fleet = { redis: fleet.url, name: 'bench', replica: name };
  const cfg = join(tmp, `${name}.yaml`);
  writeFileSync(cfg, stringify(config));
  const [cmd, ...argv] = [...pin, 'node', entry, 'run', '--config', cfg, '--no-watch'];
  const child = spawnLogged(cmd, argv, name);
  const url = `http://127.0.0.1:${port}`;
  const admin = `http://127.0.0.1:${adminPort}`;
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(`${admin}/ready`);
      await r.arrayBuffer();
      if (r.status === 200) return { name, url, admin, child };
    } catch {
      // not up yet
    }
    if (child.exitCode !== null) break;
    await sleep(100);
  }
  throw new Error(`faultline ${name} did not start: ${child.logsOf()}`);
}

const med = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
};

async function benchCpu(up, redis) {
  const off = await startFaultline('off', up.port, core0, null);
  const on = await startFaultline('on', up.port, core0, redis);
  const targets = [off, on];
  const rows = { off: [], on: [] };
  const spec = { path: '/', connections };
  for (const t of targets) await runWrk({ ...spec, url: t.url + '/', durationS: 1, tmpDir: tmp, pin: core1 });
  for (let r = 0; r < reps; r++) {
    const order = r % 2 === 0 ? targets : [...targets].reverse();
    for (const t of order) {
      const c0 = cpuMicros(t.child.pid);
      const rc0 = cpuMicros(redis.child.pid);
      const w = await runWrk({ ...spec, url: t.url + '/', durationS, tmpDir: tmp, pin: core1 });
      const c1 = cpuMicros(t.child.pid);
      const rc1 = cpuMicros(redis.child.pid);
      rows[t.name].push({
        rps: w.rps,
        cpu: (c1 - c0) / w.requests,
        redisCpu: (rc1 - rc0) / w.requests,
        p99: w.latencyUs.p99 / 1000,
      });
      process.stderr.write(
        `cpu rep${r} ${t.name}: ${w.rps.toFixed(0)} req/s, ${((c1 - c0) / w.requests).toFixed(2)} us/req\n`,
      );
    }
  }
  const sum = (name) => ({
    rps: med(rows[name].map((x) => x.rps)),
    cpu_us_per_req: med(rows[name].map((x) => x.cpu)),
    redis_cpu_us_per_req: med(rows[name].map((x) => x.redisCpu)),
    p99_ms: med(rows[name].map((x) => x.p99)),
  });
  const result = { off: sum('off'), on: sum('on'), reps: rows };
  result.cpu_ratio_on_off = result.on.cpu_us_per_req / result.off.cpu_us_per_req;
  result.rps_ratio_on_off = result.on.rps / result.off.rps;
  off.child.kill('SIGKILL');
  on.child.kill('SIGKILL');
  return result;
}

async function adminPost(admin, path, body) {
  const r = await fetch(admin + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`${path}: ${r.status} ${text}`);
}

async function benchKill(up, redis) {
  const replicas = [];
  for (const name of ['k0', 'k1', 'k2'])
    replicas.push(
      await startFaultline(name, up.port, [], redis, {
        // Every canary request injected: the last injected request is close to the last assigned one.
        split: { percent: 50, allow_above_cap: true },
        fault: { kind: 'abort', status: 503, percent: 100 },
        exclude_injected: false,
      }),
    );
  const rc = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  // Steady load: 2 requests in flight per replica; every response's send time and injected flag.
  const agent = new Agent({ connections: 8 });
  const lastInjected = replicas.map(() => 0);
  let running = true;
  const loops = replicas.flatMap((rep, i) =>
    [0, 1].map(async () => {
      while (running) {
        const t = Date.now();
        try {
          const res = await request(`${rep.url}/`, { dispatcher: agent });
          await res.body.dump();
          if (res.headers['x-faultline-injected'] !== undefined)
            lastInjected[i] = Math.max(lastInjected[i], t);
        } catch {
          await sleep(10);
        }
      }
    }),
  );
  const lags = [];
  try {
    for (let k = 0; k < kills; k++) {
      // Injecting on every replica (after the previous re-arm).
      const since = Date.now();
      for (let w = 0; w < 200 && !lastInjected.every((t) => t > since); w++) await sleep(25);
      if (!lastInjected.every((t) => t > since))
        throw new Error(`round ${k}: not injecting on every replica`);
      await sleep(200);
      await adminPost(replicas[k % 3].admin, '/experiments/bench/kill', {
        reason: `bench kill ${k}`,
        by: 'bench',
      });
      const rec = JSON.parse(await rc.hget('faultline:{bench}:state', 'bench'));
      const decision = Date.parse(rec.at);
      // A replica that missed the message stops at the latest when its grant runs out (2 s).
      await sleep(2500);
      for (let i = 0; i < 3; i++) lags.push(lastInjected[i] - decision);
      process.stderr.write(`kill ${k}: lags ${lags.slice(-3).join(', ')} ms\n`);
      await adminPost(replicas[(k + 1) % 3].admin, '/experiments/bench/arm', { by: 'bench' });
    }
  } finally {
    running = false;
    await Promise.all(loops);
    await agent.close();
    rc.disconnect();
    for (const r of replicas) r.child.kill('SIGKILL');
  }
  return {
    kills,
    lags_ms: lags,
    p50_ms: quantile(lags, 0.5),
    p99_ms: quantile(lags, 0.99),
    max_ms: Math.max(...lags),
  };
}

const out = { at: new Date().toISOString(), reps, duration_s: durationS, connections };
try {
  const up = await startUpstream({ pin: core1 });
  const redis = await startRedis();
  if (parts.includes('cpu')) out.cpu = await benchCpu(up, redis);
  if (parts.includes('kill')) out.kill = await benchKill(up, redis);
  await up.stop();
} finally {
  for (const c of children) c.kill('SIGKILL');
  stopAll();
}
const md = ['## Fleet mode (bench/fleet.mjs)', ''];
if (out.cpu) {
  const c = out.cpu;
  md.push(
    `Fleet on vs off, one replica, GET 1 KB, ${connections} connections, ${reps} interleaved reps of ${durationS} s (medians):`,
    '',
    '| variant | req/s | CPU us/req | x off | Redis CPU us/req | p99 ms |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    `| off | ${c.off.rps.toFixed(0)} | ${c.off.cpu_us_per_req.toFixed(2)} | 1.00 | - | ${c.off.p99_ms.toFixed(2)} |`,
    `| on | ${c.on.rps.toFixed(0)} | ${c.on.cpu_us_per_req.toFixed(2)} | ${c.cpu_ratio_on_off.toFixed(3)} | ${c.on.redis_cpu_us_per_req.toFixed(3)} | ${c.on.p99_ms.toFixed(2)} |`,
    '',
  );
}
if (out.kill) {
  const k = out.kill;
  md.push(
    `Kill propagation, 3 replicas, ${k.kills} kills (decision = the kill record's time; lag = last injected request per replica minus it): p50 ${k.p50_ms} ms, p99 ${k.p99_ms} ms, max ${k.max_ms} ms.`,
    '',
  );
}
console.log(md.join('\n'));
if (jsonFile) writeFileSync(jsonFile, JSON.stringify(out, null, 2));
if (mdFile) writeFileSync(mdFile, md.join('\n'));
rmSync(tmp, { recursive: true, force: true });
process.exit(0);
