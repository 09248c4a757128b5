// Starts and stops the processes a bench run compares: the upstream and the proxy peers
// (direct = no proxy, nginx, http-proxy, Faultline). Each peer is pinned with taskset when the
// layout asks for it; a peer whose tool is missing is returned as skipped with the reason.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const PEERS = ['direct', 'nginx', 'http-proxy', 'faultline'];

export function which(cmd) {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/local/sbin']) {
    if (dir && existsSync(join(dir, cmd))) return join(dir, cmd);
  }
  return null;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function httpGet(url, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const req = request(url, { agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

async function waitFor(check, timeoutMs, child) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child && child.exitCode !== null) return false;
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/** Every process this module started and has not yet seen exit; stopAll() ends them by pid. */
const running = new Set();

export function stopAll() {
  for (const child of running) child.kill('SIGKILL');
}

function spawnPinned(pin, cmd, args, opts = {}) {
  const [c, ...rest] = pin.length ? [...pin, cmd, ...args] : [cmd, ...args];
  const child = spawn(c, rest, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  running.add(child);
  child.once('exit', () => running.delete(child));
  child.logs = '';
  const keep = (d) => {
    child.logs = (child.logs + d).slice(-4000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  return child;
}

/**
 * Spawns argv and resolves once its stdout or stderr matches `readyRe` (at once when it is null), with
 * the match; rejects if it exits or is not ready within `timeoutMs`. The child goes into `children`
 * (the caller's list to kill at the end) and into this module's stopAll().
 */
export function startReady(argv, readyRe, { children = [], timeoutMs = 30_000 } = {}) {
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  running.add(child);
  child.once('exit', () => running.delete(child));
  if (!readyRe) return Promise.resolve({ child, match: null });
  return new Promise((res, rej) => {
    let out = '';
    const t = setTimeout(
      () => rej(new Error(`${argv.join(' ')}: not ready in ${timeoutMs} ms\n${out}`)),
      timeoutMs,
    );
    const on = (d) => {
      out += d;
      const m = readyRe.exec(out);
      if (m) {
        clearTimeout(t);
        res({ child, match: m });
      }
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.once('exit', (code) => {
      clearTimeout(t);
      rej(new Error(`${argv.join(' ')} exited ${code}\n${out}`));
    });
  });
}

async function stopChild(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(t);
}

export async function startUpstream({ pin }) {
  const port = await freePort();
  const child = spawnPinned(pin, process.execPath, [join(ROOT, 'bench/upstream.mjs'), String(port)]);
  const ok = await waitFor(async () => (await httpGet(`http://127.0.0.1:${port}/`)) === 200, 5000, child);
  if (!ok) throw new Error(`upstream did not start: ${child.logs}`);
  return { port, pid: child.pid, url: `http://127.0.0.1:${port}`, stop: () => stopChild(child) };
}

/**
 * The part of both nginx configs up to the open `http {` block: one process doing the work
 * (master_process off, so /proc/<pid>/stat is its whole CPU cost), files under `dir`.
 */
function nginxMain(dir) {
  return `daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 16384;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;`;
}

/**
 * nginx as an upstream that answers every path with the same static 1 KB file (the size
 * bench/upstream.mjs sends for GET /), for benches where a Node upstream would take CPU from what is
 * measured. Writes DIR/www/1k; the config is returned.
 */
export function nginxStaticConfig({ dir, port }) {
  mkdirSync(join(dir, 'www'), { recursive: true });
  writeFileSync(join(dir, 'www', '1k'), Buffer.alloc(1024, 'a'));
  return `${nginxMain(dir)}
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  server {
    listen 127.0.0.1:${port} backlog=4096;
    root ${dir}/www;
    default_type application/octet-stream;
    location / { try_files /1k =404; }
  }
}
`;
}

export function nginxConfig({ dir, port, upstreamPort }) {
  // master_process off: one process does the work, so /proc/<pid>/stat is its whole CPU cost.
  // Upstream keep-alive needs HTTP/1.1 and an empty Connection header (nginx docs, "keepalive").
  // Bodies stream both ways (no request buffering, no temp files), like the Node proxies do.
  return `${nginxMain(dir)}
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  upstream bench_upstream {
    server 127.0.0.1:${upstreamPort};
    keepalive 128;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    client_max_body_size 64m;
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_max_temp_file_size 0;
      proxy_read_timeout 60s;
    }
  }
}
`;
}

/** Faultline YAML for the bench; `experiments` is a list of plain objects (written as flow maps). */
export function faultlineConfig({ port, adminPort, upstreamPort, experiments = [] }) {
  const flow = (o) =>
    `{ ${Object.entries(o)
      .map(
        ([k, v]) =>
          `${k}: ${typeof v === 'object' ? flow(v) : typeof v === 'string' ? JSON.stringify(v) : v}`,
      )
      .join(', ')} }`;
  const lines = [
    'listeners:',
    '  - name: ingress',
    '    address: 127.0.0.1',
    `    port: ${port}`,
    '    routes:',
    `      - { name: other, path_prefix: /__bench_other/, upstream: http://127.0.0.1:${upstreamPort}, timeout_ms: 30000 }`,
    `      - { name: api, path_prefix: /, upstream: http://127.0.0.1:${upstreamPort}, timeout_ms: 30000 }`,
    `admin: { address: 127.0.0.1, port: ${adminPort} }`,
  ];
  if (experiments.length) {
    lines.push('experiments:');
    for (const e of experiments) {
      const { id, ...rest } = e;
      lines.push(`  - id: ${id}`);
      for (const [k, v] of Object.entries(rest)) {
        lines.push(`    ${k}: ${typeof v === 'object' ? flow(v) : JSON.stringify(v)}`);
      }
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The executable entry: dist/bin.js (package.json "bin"), or dist/cli.js from before that split. */
export function faultlineEntry() {
  for (const f of ['dist/bin.js', 'dist/cli.js']) {
    const p = join(ROOT, f);
    if (existsSync(p) && (f === 'dist/bin.js' || !existsSync(join(ROOT, 'dist/bin.js')))) return p;
  }
  return null;
}

/** The node flags Faultline ships with: read from dist/bin.js's shebang, their one source. */
export function faultlineNodeFlags(entry = faultlineEntry()) {
  if (entry === null) return [];
  const first = readFileSync(entry, 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!\/usr\/bin\/env -S node (.*)$/.exec(first);
  return m ? m[1].trim().split(/\s+/) : [];
}

export function peerAvailability(name) {
  if (name === 'direct') return null;
  if (name === 'nginx') {
    return which('nginx') ? null : 'nginx not installed (as root: apt-get install -y nginx-light)';
  }
  if (name === 'http-proxy') {
    try {
      import.meta.resolve('http-proxy');
      return null;
    } catch {
      return 'http-proxy not installed (npm ci installs it as a devDependency)';
    }
  }
  if (name === 'faultline') {
    return faultlineEntry()
      ? null
      : 'dist/bin.js not built (npm run build; or the proxy core has not landed)';
  }
  return `unknown peer ${name}`;
}

/**
 * Starts one peer in front of the upstream. Resolves to {name, url, pid, stop} or
 * {name, skipped: reason}. `experiments` only applies to Faultline.
 */
export async function startPeer(name, { upstream, pin, tmpDir, experiments = [] }) {
  const missing = peerAvailability(name);
  if (missing) return { name, skipped: missing };
  if (name === 'direct') return { name, url: upstream.url, pid: null, stop: async () => {} };

  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let child;
  let adminUrl = null;
  if (name === 'nginx') {
    const dir = join(tmpDir, `nginx-${port}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'nginx.conf'), nginxConfig({ dir, port, upstreamPort: upstream.port }));
    child = spawnPinned(pin, which('nginx'), [
      '-p',
      dir,
      '-c',
      join(dir, 'nginx.conf'),
      '-e',
      join(dir, 'error.log'),
    ]);
  } else if (name === 'http-proxy') {
    child = spawnPinned(pin, process.execPath, [
      join(ROOT, 'bench/httpproxy-peer.mjs'),
      String(port),
      upstream.url,
    ]);
  } else {
    const adminPort = await freePort();
    adminUrl = `http://127.0.0.1:${adminPort}`;
    const cfg = join(tmpDir, `faultline-${port}.yaml`);
    writeFileSync(cfg, faultlineConfig({ port, adminPort, upstreamPort: upstream.port, experiments }));
    const entry = faultlineEntry();
    child = spawnPinned(
      pin,
      process.execPath,
      [...faultlineNodeFlags(entry), entry, 'run', '--config', cfg, '--no-watch'],
      {
        cwd: tmpDir,
      },
    );
  }
  const ready = await waitFor(
    async () =>
      (adminUrl === null || (await httpGet(`${adminUrl}/ready`)) === 200) &&
      (await httpGet(`${url}/`)) === 200,
    10_000,
    child,
  );
  if (!ready) {
    const logs = child.logs.trim().split('\n').slice(-5).join(' | ');
    await stopChild(child);
    let extra = '';
    if (name === 'nginx') {
      try {
        extra = readFileSync(join(tmpDir, `nginx-${port}`, 'error.log'), 'utf8')
          .trim()
          .split('\n')
          .slice(-2)
          .join(' | ');
      } catch {
        // no log
      }
    }
    return { name, skipped: `did not become ready in 10 s: ${logs} ${extra}`.trim() };
  }
  return { name, url, adminUrl, pid: child.pid, stop: () => stopChild(child) };
}

export function toolVersion(cmd, args) {
  // `wrk -v` exits non-zero and `nginx -v` prints on stderr: read both streams either way.
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] || null;
}
