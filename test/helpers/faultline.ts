/** Start a real Faultline in-process on ephemeral loopback ports, with its own state dir. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { validateConfig } from '../../src/config/load.js';
import { Faultline } from '../../src/main.js';

export interface TestFaultline {
  fl: Faultline;
  /** http://127.0.0.1:PORT of a listener. */
  url(listener?: string): string;
  admin: string;
  stateDir: string;
  configFile: string;
  stop(): Promise<void>;
}

/** `config` is the YAML object without ports; listeners default to port 0, admin to port 0. */
export async function startFaultline(
  config: Record<string, unknown>,
  opts: { stateDir?: string; watch?: boolean } = {},
): Promise<TestFaultline> {
  const stateDir = opts.stateDir ?? (await mkdtemp(join(tmpdir(), 'faultline-state-')));
  const full = {
    state_dir: stateDir,
    admin: { address: '127.0.0.1', port: 0 },
    drain_timeout_ms: 2000,
    ...config,
  };
  const configFile = join(stateDir, 'config.yaml');
  await writeFile(configFile, stringify(full));
  const fl = await Faultline.start({
    configFile,
    config: validateConfig(full, configFile),
    ...(opts.watch !== undefined ? { watch: opts.watch } : {}),
  });
  const firstListener = [...fl.listeners.keys()][0] as string;
  return {
    fl,
    url: (listener = firstListener) => `http://127.0.0.1:${fl.port(listener)}`,
    admin: `http://127.0.0.1:${fl.adminPort}`,
    stateDir,
    configFile,
    stop: async () => {
      await fl.stop(200);
    },
  };
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** One route to `upstream` on a listener named `ingress`. */
export function proxyConfig(
  upstream: string,
  route: Record<string, unknown> = {},
  listener: Record<string, unknown> = {},
) {
  return {
    listeners: [
      {
        name: 'ingress',
        address: '127.0.0.1',
        port: 0,
        ...listener,
        routes: [{ name: 'api', path_prefix: '/', upstream, timeout_ms: 2000, ...route }],
      },
    ],
  };
}
