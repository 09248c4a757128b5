/**
 * Experiment states of a fleet: every write goes to the local file (FileStateStore, so a replica
 * restarted without Redis still knows its kills) and to one Redis hash shared by the fleet, through a
 * Lua merge that keeps the first end of a run (one kill record however many replicas see the breach)
 * and lets an arm replace it. An accepted record deletes the experiment's injection grant when it ends
 * a run and is published, so every replica applies it within one pub/sub delivery.
 *
 * Merge rule (no clocks compared across replicas except run starts, which an arm follows by a human's
 * reaction time): a record of the same state family (running/running, ended/ended) never replaces
 * another; an end replaces a running record of the same run (same startedAt) or one no operator armed
 * (`by` empty: a replica started it from its config, knowing of no end); a running record replaces an
 * end only when it is an operator's arm (`by` set) of a run that started later. A stale write of an
 * older run loses to an arm; a replica that started the experiment while cut off, or after Redis lost
 * its records (a restart without persistence, FLUSHALL), loses to any replica's end: the replicas
 * push their records again whenever Redis's differ from theirs in a way the merge accepts.
 */
import type { Redis } from 'ioredis';
import {
  FileStateStore,
  recordIssues,
  type PersistedExperiment,
  type PersistedState,
  type StateStore,
} from '../killswitch/store.js';
import { log } from '../telemetry/log.js';

export const MERGE_LUA = `
local out = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local raw = ARGV[i + 1]
  local new = cjson.decode(raw)
  local cur = redis.call('HGET', KEYS[1], id)
  local ok = false
  if not cur then
    ok = true
  else
    local old = cjson.decode(cur)
    local oldRun = old.state == 'running'
    local newRun = new.state == 'running'
    if oldRun and not newRun then
      ok = (new.startedAt == nil) or (new.startedAt == old.startedAt) or (old.by == nil) or (old.by == '')
    elseif newRun and not oldRun then
      ok = (new.by ~= nil and new.by ~= '') and ((old.startedAt == nil) or (new.startedAt ~= nil and new.startedAt > old.startedAt))
    end
  end
  if ok then
    redis.call('HSET', KEYS[1], id, raw)
    if new.state ~= 'running' then redis.call('DEL', ARGV[1] .. id) end
    redis.call('PUBLISH', ARGV[2], '{"id":' .. cjson.encode(id) .. ',"rec":' .. raw .. '}')
    out[#out + 1] = id
  end
end
return out
`;

/** The same rule in TypeScript: which of two records of one experiment stands (boot-time merge). */
export function mergeRecord(
  cur: PersistedExperiment | undefined,
  next: PersistedExperiment | undefined,
): PersistedExperiment | undefined {
  if (cur === undefined) return next;
  if (next === undefined) return cur;
  const oldRun = cur.state === 'running';
  const newRun = next.state === 'running';
  if (oldRun && !newRun)
    return next.startedAt === undefined || next.startedAt === cur.startedAt || (cur.by ?? '') === ''
      ? next
      : cur;
  if (newRun && !oldRun)
    return (next.by ?? '') !== '' &&
      (cur.startedAt === undefined || (next.startedAt !== undefined && next.startedAt > cur.startedAt))
      ? next
      : cur;
  return cur;
}

export interface FleetKeys {
  state: string;
  channel: string;
  grantPrefix: string;
  lease: string;
  replicas: string;
  countsPrefix: string;
  /** the fleet's start (ms, text): max_duration counts from it */
  started: string;
}

/** Keys of one fleet; the {name} hash tag keeps them in one Redis Cluster slot (scripts touch several). */
export function fleetKeys(name: string): FleetKeys {
  const p = `faultline:{${name}}:`;
  return {
    state: `${p}state`,
    channel: `${p}events`,
    grantPrefix: `${p}grant:`,
    lease: `${p}evaluator`,
    replicas: `${p}replicas`,
    countsPrefix: `${p}counts:`,
    started: `${p}started`,
  };
}

type MergeCommand = (nkeys: number, ...args: string[]) => Promise<string[]>;

export class RedisStateStore implements StateStore {
  readonly file: FileStateStore;
  /** Latest state not yet accepted by Redis (an outage); pushed again by the fleet's next tick. */
  pending: PersistedState | null = null;
  /** This replica's latest state (loaded or saved): what it pushes again when Redis lost records. */
  latest: PersistedState = { version: 1, experiments: {} };
  private readonly redis: Redis;
  private readonly keys: FleetKeys;
  private chain: Promise<void> = Promise.resolve();

  constructor(dir: string, redis: Redis, keys: FleetKeys) {
    this.file = new FileStateStore(dir);
    this.redis = redis;
    this.keys = keys;
    redis.defineCommand('faultlineMerge', { lua: MERGE_LUA });
  }

  /** The local file must take durable writes (Redis need not be up: a replica without it injects nothing). */
  prepare(): Promise<void> {
    return this.file.prepare();
  }

  /** The local file merged with the fleet's records (when Redis answers within a second). */
  async load(): Promise<PersistedState> {
    const local = await this.file.load();
    let remote: Record<string, string> | null = null;
    try {
      await waitReady(this.redis, 1000);
      remote = await this.redis.hgetall(this.keys.state);
    } catch (err) {
      log(
        'warn',
        'fleet: Redis unreachable at start; using the local state file, injection waits for a grant',
        {
          error: (err as Error).message,
        },
      );
      this.pending = local;
      this.latest = local;
      return local;
    }
    const out: PersistedState = { version: 1, experiments: { ...local.experiments } };
    for (const [id, raw] of Object.entries(remote)) {
      try {
        const rec = JSON.parse(raw) as unknown;
        const issues = recordIssues(id, rec);
        if (issues.length > 0) throw new Error(issues.join('; '));
        const merged = mergeRecord(out.experiments[id], rec as PersistedExperiment);
        if (merged) out.experiments[id] = merged;
      } catch (err) {
        log('warn', 'fleet: unreadable state record in Redis ignored', {
          experiment: id,
          error: (err as Error).message,
        });
      }
    }
    // Local ends Redis has not heard of (killed while cut off) go to the fleet now.
    this.pending = out;
    this.latest = out;
    return out;
  }

  /**
   * Durable once state_dir has it (a restart keeps it; an arm or a kill stands): Redis's copy follows,
   * and one Redis did not take stays pending for the fleet's next tick (the admin's answer says so).
   * Failing the save on Redis alone would report a kill as unsaved and an arm as refused while both
   * were on disk and would reach the fleet later.
   */
  save(state: PersistedState): Promise<void> {
    this.latest = state;
    const file = this.file.save(state);
    this.push(state).catch((err: unknown) => {
      log('warn', 'fleet: state saved in state_dir, not yet in Redis', { error: (err as Error).message });
    });
    return file;
  }

  /** Push `state` to Redis (serialised); on failure it stays pending for the next attempt. */
  push(state: PersistedState): Promise<void> {
    const next = this.chain.then(async () => {
      const args = [this.keys.state, this.keys.grantPrefix, this.keys.channel];
      for (const [id, rec] of Object.entries(state.experiments)) args.push(id, JSON.stringify(rec));
      try {
        if (this.redis.status !== 'ready') throw new Error(`Redis connection is ${this.redis.status}`);
        await (this.redis as unknown as { faultlineMerge: MergeCommand }).faultlineMerge(1, ...args);
        if (this.pending === state) this.pending = null;
      } catch (err) {
        // A newer state replaces an older pending one: each carries every record.
        this.pending = state;
        throw new Error(
          `fleet state not written to Redis (${(err as Error).message}); kept locally and pushed when Redis is back`,
          { cause: err },
        );
      }
    });
    this.chain = next.catch(() => undefined);
    return next;
  }

  async flush(): Promise<void> {
    await Promise.all([this.file.flush(), this.chain]);
  }
}

/** Resolves when the client is ready, rejects after `ms`. */
export function waitReady(redis: Redis, ms: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      redis.off('ready', done);
      resolve();
    };
    const timer = setTimeout(() => {
      redis.off('ready', done);
      reject(new Error(`Redis not ready within ${ms} ms (${redis.status})`));
    }, ms);
    redis.on('ready', done);
  });
}
