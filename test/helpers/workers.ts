/**
 * `faultline run` as a user starts it (dist/bin.js, a real primary forking real workers), and the
 * client side of telling which worker served: one request per fresh connection (the workers share
 * the listening socket, so fresh connections spread over them), the arm mark's `worker=N` and the upstream connection
 * port that serves it.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { runCli, type Spawned } from './process.js';

export interface RunningFaultline {
  proc: Spawned;
  admin: string;
  dir: string;
  file: string;
  /** Worker pids from the "workers started" line. */
  pids: number[];
  /** The shared port of a listener (or ext_proc) by name, from the primary's "listener started" lines. */
  port(name: string): Promise<number>;
  json(path: string): Promise<unknown>;
  stop(): Promise<void>;
}

/**
 * Writes `config` (state_dir, admin on 127.0.0.1:0 and a 2 s drain added) and runs `faultline run` on
 * it until the primary says it started; `cleanup` gets the stop.
 */
export async function runFaultline(
  config: Record<string, unknown>,
  cleanup: (() => Promise<void>)[],
): Promise<RunningFaultline> {
  const dir = await mkdtemp(join(tmpdir(), 'faultline-run-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'faultline.yaml');
  await writeFile(
    file,
    stringify({
      state_dir: join(dir, 'state'),
      admin: { address: '127.0.0.1', port: 0 },
      drain_timeout_ms: 2000,
      ...config,
    }),
  );
  const proc = runCli(['run', '--config', file]);
  const stop = async () => {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
    proc.child.kill('SIGTERM');
    const t = setTimeout(() => proc.child.kill('SIGKILL'), 8000);
    await proc.exited;
    clearTimeout(t);
  };
  cleanup.push(stop);
  const started = await proc.waitForLog((l) => l['msg'] === 'faultline started', 40_000);
  const workers = await proc.waitForLog((l) => l['msg'] === 'workers started', 1000).catch(() => null);
  const admin = `http://${started['admin'] as string}`;
  return {
    proc,
    admin,
    dir,
    file,
    pids: (workers?.['pids'] as number[] | undefined) ?? [],
    port: async (name) =>
      (
        await proc.waitForLog(
          (l) =>
            (l['msg'] === 'listener started' && l['listener'] === name) ||
            (l['msg'] === 'ext_proc started' && l['ext_proc'] === name),
        )
      )['port'] as number,
    json: async (path) => (await fetch(`${admin}${path}`)).json(),
    stop,
  };
}

export interface Sent {
  start: number;
  /** Date.now() when the response ended. */
  end: number;
  status: number;
  arm: string | undefined;
  injected: string | undefined;
  /** The upstream connection's port (the upstream echoes it as x-up-port): which worker's pool sent it. */
  upPort: string | undefined;
}

/** One request on a fresh connection (the workers share the socket: fresh connections spread over them). */
export function get(port: number, path = '/', headers: Record<string, string> = {}): Promise<Sent> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent: false, headers }, (res) => {
      res.resume();
      res.on('end', () =>
        resolve({
          start,
          end: Date.now(),
          status: res.statusCode ?? 0,
          arm: res.headers['x-faultline-arm'] as string | undefined,
          injected: res.headers['x-faultline-injected'] as string | undefined,
          upPort: res.headers['x-up-port'] as string | undefined,
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * Which worker served each request: a tagged response (`worker=N` in the arm mark) teaches which
 * upstream connection belongs to that worker; an untagged one is identified by its connection. The
 * key is `<tag>/<worker>` so requests of several processes (replicas) do not mix.
 */
export function workerOf(
  sent: { tag: string; s: Sent }[],
): (x: { tag: string; s: Sent }) => string | undefined {
  const byPort = new Map<string, string>();
  for (const { tag, s } of sent) {
    const w = /worker=(\d+)/.exec(s.arm ?? '')?.[1];
    if (w !== undefined && s.upPort !== undefined) byPort.set(s.upPort, `${tag}/${w}`);
  }
  return ({ tag, s }) => {
    const w = /worker=(\d+)/.exec(s.arm ?? '')?.[1];
    if (w !== undefined) return `${tag}/${w}`;
    return s.upPort === undefined ? undefined : byPort.get(s.upPort);
  };
}
