/**
 * Persisted experiment states (killed, expired): written to a temp file, fsynced, renamed over the
 * old one (atomic on POSIX), so a crash mid-write leaves the previous state, never a torn file.
 * Writes are serialised; the hot path never waits for them.
 */
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { log } from '../telemetry/log.js';

export interface PersistedExperiment {
  state: 'running' | 'killed' | 'expired';
  /** What killed it: guardrail, global_error_rate or manual. */
  cause?: string;
  reason: string;
  by: string;
  at: string;
  evidence?: unknown;
  startedAt?: string;
}

export interface PersistedState {
  version: 1;
  experiments: Record<string, PersistedExperiment>;
}

export class StateStore {
  readonly file: string;
  private readonly dir: string;
  private chain: Promise<void> = Promise.resolve();

  constructor(dir: string) {
    this.dir = dir;
    this.file = join(dir, 'experiments.json');
  }

  async load(): Promise<PersistedState> {
    try {
      const parsed = JSON.parse(await readFile(this.file, 'utf8')) as PersistedState;
      if (parsed.version === 1 && typeof parsed.experiments === 'object' && parsed.experiments !== null)
        return parsed;
      throw new Error('unknown format');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, experiments: {} };
      // Refusing to start is safer than silently resuming experiments that were killed.
      throw new Error(`cannot read kill-switch state ${this.file}: ${(err as Error).message}`);
    }
  }

  /** Queue a write of `state`; resolves once it is durable. */
  save(state: PersistedState): Promise<void> {
    const text = JSON.stringify(state, null, 2) + '\n';
    const next = this.chain.then(() => this.write(text));
    this.chain = next.catch((err: unknown) => {
      log('error', 'kill-switch state write failed', { file: this.file, error: (err as Error).message });
    });
    return next;
  }

  private async write(text: string): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.file);
    // fsync the directory so the rename itself survives a power cut.
    const dh = await open(this.dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }

  async flush(): Promise<void> {
    await this.chain;
  }
}
