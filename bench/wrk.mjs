// Runs wrk (closed loop, saturation) and parses what it prints. A Lua `done` hook adds one
// machine-readable line (FL_WRK ...) with p99.9, which wrk's own --latency table lacks; the parser
// reads both and prefers the exact FL_WRK figures where present.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const UNIT_US = { us: 1, ms: 1000, s: 1e6, m: 60e6, h: 3600e6 };
const SIZE = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };

/** "642.00us" | "0.96ms" | "1.2s" -> microseconds */
export function parseDurationUs(text) {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  return m ? Number(m[1]) * UNIT_US[m[2]] : null;
}

export function parseWrk(output) {
  const r = {
    requests: null,
    durationS: null,
    bytesRead: null,
    rps: null,
    non2xx: 0,
    errors: { connect: 0, read: 0, write: 0, timeout: 0, status: 0 },
    latencyUs: { mean: null, max: null, p50: null, p75: null, p90: null, p99: null, p999: null },
  };
  let m;
  if ((m = /^\s*(\d+) requests in ([\d.]+\w+), ([\d.]+)(B|KB|MB|GB|TB) read/m.exec(output))) {
    r.requests = Number(m[1]);
    r.durationS = parseDurationUs(m[2]) / 1e6;
    r.bytesRead = Math.round(Number(m[3]) * SIZE[m[4]]);
  }
  if ((m = /^Requests\/sec:\s+([\d.]+)/m.exec(output))) r.rps = Number(m[1]);
  if ((m = /^\s*Non-2xx or 3xx responses:\s+(\d+)/m.exec(output))) r.non2xx = Number(m[1]);
  if ((m = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output))) {
    r.errors = { connect: +m[1], read: +m[2], write: +m[3], timeout: +m[4], status: r.non2xx };
  } else {
    r.errors.status = r.non2xx;
  }
  if ((m = /^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)/m.exec(output))) {
    r.latencyUs.mean = parseDurationUs(m[1]);
    r.latencyUs.max = parseDurationUs(m[3]);
  }
  for (const [pct, key] of [
    ['50', 'p50'],
    ['75', 'p75'],
    ['90', 'p90'],
    ['99', 'p99'],
  ]) {
    const re = new RegExp(`^\\s*${pct}%\\s+(\\S+)`, 'm');
    if ((m = re.exec(output))) r.latencyUs[key] = parseDurationUs(m[1]);
  }
  if ((m = /^FL_WRK (.*)$/m.exec(output))) {
    const kv = Object.fromEntries(m[1].split(' ').map((p) => p.split('=')));
    r.requests = Number(kv.requests);
    r.durationS = Number(kv.duration_us) / 1e6;
    r.bytesRead = Number(kv.bytes);
    r.rps = r.requests / r.durationS;
    for (const k of ['connect', 'read', 'write', 'timeout', 'status']) r.errors[k] = Number(kv[k]);
    r.latencyUs.p50 = Number(kv.p50);
    r.latencyUs.p90 = Number(kv.p90);
    r.latencyUs.p99 = Number(kv.p99);
    r.latencyUs.p999 = Number(kv['p99.9']);
    r.latencyUs.mean = Number(kv.mean);
    r.latencyUs.max = Number(kv.max);
  }
  return r;
}

/** Lua for wrk: optional request body, plus the FL_WRK summary line. */
export function wrkScript({ method = 'GET', bodyBytes = 0 } = {}) {
  const lines = [];
  if (method !== 'GET' || bodyBytes > 0) {
    lines.push(`wrk.method = "${method}"`);
    lines.push(`wrk.body = string.rep("x", ${bodyBytes})`);
    lines.push('wrk.headers["Content-Type"] = "application/octet-stream"');
  }
  lines.push(
    'done = function(summary, latency, requests)',
    '  io.write(string.format("FL_WRK requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d",',
    '    summary.requests, summary.duration, summary.bytes, summary.errors.connect, summary.errors.read,',
    '    summary.errors.write, summary.errors.status, summary.errors.timeout))',
    '  for _, p in ipairs({50, 90, 99, 99.9}) do io.write(string.format(" p%s=%d", tostring(p), latency:percentile(p))) end',
    '  io.write(string.format(" mean=%.1f max=%d\\n", latency.mean, latency.max))',
    'end',
  );
  return `${lines.join('\n')}\n`;
}

/** Runs wrk pinned with `pin` (a taskset prefix array, may be empty); resolves to the parsed result. */
export function runWrk({
  url,
  connections,
  durationS,
  method,
  bodyBytes,
  tmpDir,
  pin = [],
  timeoutS = 30,
  threads = 1,
}) {
  const script = join(tmpDir, `wrk-${method ?? 'GET'}-${bodyBytes ?? 0}.lua`);
  writeFileSync(script, wrkScript({ method, bodyBytes }));
  const args = [
    `-t${threads}`,
    `-c${connections}`,
    `-d${durationS}s`,
    '--latency',
    `--timeout`,
    `${timeoutS}s`,
    '-s',
    script,
    url,
  ];
  const [cmd, ...rest] = pin.length ? [...pin, 'wrk', ...args] : ['wrk', ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`wrk exited ${code}: ${err.trim() || out.trim()}`));
      else resolve({ ...parseWrk(out), raw: out });
    });
  });
}
