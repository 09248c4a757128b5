/**
 * A real Prometheus (Debian's `prometheus` package; .ci/run installs it) for the steady-state probe
 * tests: started on a free loopback port with its own data dir, scraping the given targets every
 * `scrapeMs`. Missing binary: the start throws (the test fails, it does not skip).
 * Kept apart from other Prometheus helpers on purpose (a parallel branch adds its own).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closedPort } from './servers.js';

export interface RunningPrometheus {
  url: string;
  port: number;
  stop(): Promise<void>;
  /** True once every target has been scraped successfully at least once. */
  targetsUp(): Promise<boolean>;
}

export async function startPrometheus(targets: string[], scrapeMs = 250): Promise<RunningPrometheus> {
  const dir = await mkdtemp(join(tmpdir(), 'fl-prom-'));
  const port = await closedPort();
  const cfg = [
    'global:',
    `  scrape_interval: ${scrapeMs}ms`,
    `  scrape_timeout: ${scrapeMs}ms`,
    `  evaluation_interval: ${scrapeMs}ms`,
    'scrape_configs:',
    '  - job_name: probe-test',
    '    static_configs:',
    `      - targets: [${targets.map((t) => `"${t}"`).join(', ')}]`,
    '',
  ].join('\n');
  await writeFile(join(dir, 'prometheus.yml'), cfg);
  const child: ChildProcess = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const spawnError = new Promise<never>((_, reject) =>
    child.once('error', (e) =>
      reject(new Error(`cannot start prometheus (apt-get install prometheus): ${e.message}`)),
    ),
  );
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    }
    await rm(dir, { recursive: true, force: true });
  };
  const ready = async () => {
    const until = Date.now() + 15_000;
    while (Date.now() < until) {
      if (child.exitCode !== null) throw new Error(`prometheus exited ${child.exitCode}: ${stderr}`);
      try {
        const r = await fetch(`${url}/-/ready`);
        if (r.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`prometheus not ready in 15 s: ${stderr}`);
  };
  try {
    await Promise.race([ready(), spawnError]);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url,
    port,
    stop,
    targetsUp: async () => {
      const r = (await (await fetch(`${url}/api/v1/targets`)).json()) as {
        data: { activeTargets: { health: string }[] };
      };
      const t = r.data.activeTargets;
      return t.length === targets.length && t.every((x) => x.health === 'up');
    },
  };
}

/** A tiny exporter: one gauge (`probe_test_gauge`) whose value the test sets. */
export interface Exporter {
  target: string;
  set(v: number): void;
  close(): Promise<void>;
}

export async function startExporter(initial = 0): Promise<Exporter> {
  let value = initial;
  const server: Server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    res.end(
      `# HELP probe_test_gauge A value the test controls.\n# TYPE probe_test_gauge gauge\nprobe_test_gauge ${value}\n`,
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    target: `127.0.0.1:${port}`,
    set: (v) => (value = v),
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
