/**
 * Persisted experiment states (killed, expired): written to a temp file, fsynced, renamed over the
 * old one (atomic on POSIX), so a crash mid-write leaves the previous state, never a torn file.
 * Writes are serialised; the hot path never waits for them.
 */
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { FaultlineError } from '../errors.js';
import { log } from '../telemetry/log.js';

/** Temp files of interrupted writes: `experiments.json.<pid>.tmp` (any pid, a previous process's too). */
const STALE_TMP = /^experiments\.json\..+\.tmp$/;
const PROBE_FILE = '.faultline-probe';

export interface PersistedExperiment {
  state: 'running' | 'killed' | 'expired';
  /** What killed it: guardrail, global_error_rate or manual. */
  cause?: string;
  reason: string;
  by: string;
  at: string;
  evidence?: unknown;
  startedAt?: string;
  /** Who started the run (config, an operator, a schedule): the run journal records it. */
  startedBy?: string;
}

export interface PersistedState {
  version: 1;
  experiments: Record<string, PersistedExperiment>;
}

/**
 * Where experiment states live. The engine needs only this; the file store below is the default, and a
 * shared store (the fleet) implements the same four calls.
 */
export interface StateStore {
  /** Proves the store takes durable writes; throws (refuse to start) when it cannot. */
  prepare(): Promise<void>;
  load(): Promise<PersistedState>;
  /** Queue a write of `state`; resolves once it is durable, rejects when it could not be made so. */
  save(state: PersistedState): Promise<void>;
  /** Resolves when every queued write has finished. */
  flush(): Promise<void>;
}

const STATES: ReadonlySet<unknown> = new Set(['running', 'killed', 'expired']);

/** What is wrong with one persisted record (a local file's or a fleet's), each naming its field. */
export function recordIssues(id: string, rec: unknown): string[] {
  const at = `experiments.${id}`;
  if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) return [`${at}: not an object`];
  const r = rec as Record<string, unknown>;
  const out: string[] = [];
  if (!STATES.has(r['state']))
    out.push(`${at}.state: ${JSON.stringify(r['state'])} is not one of running, killed, expired`);
  for (const f of ['reason', 'by', 'at', 'cause', 'startedAt', 'startedBy'])
    if (r[f] !== undefined && typeof r[f] !== 'string') out.push(`${at}.${f}: not a string`);
  return out;
}

/** Every problem of a parsed state file, field by field; none: it is a state Faultline wrote. */
export function stateIssues(parsed: unknown): string[] {
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    return ['(root): not an object'];
  const p = parsed as Record<string, unknown>;
  const out: string[] = [];
  if (p['version'] !== 1) out.push(`version: ${JSON.stringify(p['version'])} is not 1`);
  const ex = p['experiments'];
  if (ex === null || typeof ex !== 'object' || Array.isArray(ex))
    return [...out, 'experiments: not an object of records by experiment id'];
  for (const [id, rec] of Object.entries(ex)) out.push(...recordIssues(id, rec));
  return out;
}

/** The default store: one JSON file in `state_dir`. */
export class FileStateStore implements StateStore {
  readonly file: string;
  private readonly dir: string;
  private chain: Promise<void> = Promise.resolve();

  constructor(dir: string) {
    this.dir = dir;
    this.file = join(dir, 'experiments.json');
  }

  /**
   * Proves `state_dir` takes a durable write the way `save` does it (write, fsync, rename, fsync the
   * directory) and removes temp files left by interrupted writes. A kill that cannot be persisted
   * would be undone by the next restart, so a store that cannot be written refuses to start.
   */
  async prepare(): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true });
      for (const name of await readdir(this.dir))
        if (STALE_TMP.test(name)) {
          await unlink(join(this.dir, name));
          log('info', 'removed a stale kill-switch temp file', { file: join(this.dir, name) });
        }
      const probe = join(this.dir, PROBE_FILE);
      await this.writeDurably(`${probe}.${process.pid}.tmp`, probe, 'probe\n');
      await unlink(probe);
    } catch (err) {
      throw new FaultlineError(
        'FL_STATE_UNWRITABLE',
        `state_dir: ${this.dir} is not writable (${(err as Error).message}); killed experiments could not be kept across restarts, so Faultline does not start`,
      );
    }
  }

  async load(): Promise<PersistedState> {
    let issues: string[];
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(this.file, 'utf8')) as unknown;
      issues = stateIssues(parsed);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, experiments: {} };
      issues = [(err as Error).message];
    }
    if (issues.length === 0) return parsed as PersistedState;
    // Refusing to start is safer than silently resuming experiments that were killed: a record this
    // code does not understand (a hand edit, a newer version's state) is never read as "running".
    throw new FaultlineError(
      'FL_STATE_INVALID',
      `cannot read kill-switch state ${this.file}:\n${issues.map((i) => `  ${i}`).join('\n')}\nFaultline does not start on it (it could resume killed experiments): restore the file, or move it away to start every experiment afresh`,
    );
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
    try {
      await this.writeDurably(tmp, this.file, text);
    } catch (err) {
      // A half-written temp file is garbage; the next start removes it if this cannot.
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
  }

  private async writeDurably(tmp: string, file: string, text: string): Promise<void> {
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
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
