/**
 * Fleet mode: replicas of one service (each a Faultline) run one experiment set through Redis.
 *
 * - State: kills, expiries and arms go through RedisStateStore (merged in Redis, published); each
 *   replica applies what it hears (pub/sub, and the state hash polled every tick as a backstop).
 * - Grants: a replica injects only while the experiment's grant key exists (PX grant_ttl_ms). The
 *   evaluator renews grants of running experiments every tick; a kill deletes the grant. A replica
 *   that cannot reach Redis keeps its last grant until it runs out, then stops injecting (traffic flows).
 * - Pooled statistics: every replica writes its cumulative per-arm counts (requests, errors, timeouts,
 *   latency log-histogram) to one hash per experiment run every flush_ms (HSET of a cumulative value:
 *   idempotent, a retry cannot double count). Every replica reads the hash, feeds the deltas to the
 *   experiment's analyzer as a batch (ExperimentAnalyzer.recordBatch; same alpha: batch ends are a
 *   subsequence of the per-request looks), so every replica shows the pooled evidence; only the
 *   evaluator (the replica holding the lease key, SET NX PX) kills on a breach. A failover loses no
 *   evidence: the new holder's analyzer already saw the same cumulative counts.
 * - Sticky experiments: a bad event's session bit (the SessionFilter's own hash) is set in one Redis
 *   bitmap per run and metric by a script that counts it only when the bit was clear, in the same
 *   atomic write as the replica's counts: one bad event per session fleet-wide, whichever replica saw it.
 * - Fleet-wide limits (approximate, from what every replica writes each flush): max_active_faults is
 *   split into fixed shares over the live replicas; the listeners' error-rate guards are judged on the
 *   sum of the replicas' windows; max_duration counts from the fleet's start (a Redis key that lives
 *   while any replica does); a run's start is the one recorded in Redis.
 * Nothing here runs per request except `observe` (a map lookup and a few additions).
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Gauge } from 'prom-client';
import type { ConfigSpec } from '../config/schema.js';
import { countsOf, type ArmCounts, type ExperimentRuntime } from '../experiments/runtime.js';
import type { ExperimentTable, OutcomeSink } from '../experiments/table.js';
import { recordIssues, type PersistedExperiment } from '../killswitch/store.js';
import type { ErrorRateWindow } from '../killswitch/guards.js';
import { fmix32 } from '../split/hash.js';
import type { ArmBatch } from '../stats/analyzer.js';
import { LogHistogram } from '../stats/histogram.js';
import { log } from '../telemetry/log.js';
import type { Metrics } from '../telemetry/metrics.js';
import { fleetKeys, mergeRecord, RedisStateStore, type FleetKeys } from './store.js';

export type FleetSpec = NonNullable<ConfigSpec['fleet']>;

/** Lease + grants in one script: take or renew the evaluator lease; the holder renews grants. */
const LEASE_LUA = `
local h = redis.call('GET', KEYS[1])
if not h then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  h = ARGV[1]
elseif h == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if h == ARGV[1] then
  for i = 3, #KEYS do
    local rec = redis.call('HGET', KEYS[2], ARGV[i])
    if rec and cjson.decode(rec).state == 'running' then
      redis.call('SET', KEYS[i], '1', 'PX', ARGV[2])
    end
  end
end
return h
`;

/**
 * One replica's write of one run, atomic (a reader sees its counts and its session bits together):
 * sticky experiments' bad-event bits (bit * 2 + arm, per metric) are set in the run's bitmaps, and a
 * bit that was clear counts one bad session in the hash's "#<metric>:<arm>" field. Setting a bit is
 * idempotent, so a retried write counts nothing twice. Then the replica's cumulative entry.
 * KEYS: counts hash, error bitmap, timeout bitmap. ARGV: field, entry, ttl ms, error bits, timeout bits.
 */
const WRITE_LUA = `
for m = 1, 2 do
  local list = ARGV[3 + m]
  if list ~= '' then
    for v in string.gmatch(list, '%d+') do
      local n = tonumber(v)
      local arm = n % 2
      if redis.call('SETBIT', KEYS[1 + m], (n - arm) / 2, 1) == 0 then
        redis.call('HINCRBY', KEYS[1], '#' .. m .. ':' .. arm, 1)
      end
    end
    redis.call('PEXPIRE', KEYS[1 + m], ARGV[3])
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`;

/** The fleet's start (max_duration counts from it): set by the first replica, kept alive by every tick. */
const START_LUA = `
redis.call('SET', KEYS[1], ARGV[1], 'NX')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('GET', KEYS[1])
`;

/** How long the fleet's start outlives its last replica (a rolling restart keeps it, a fleet down this long starts anew). */
const START_TTL_MS = 60_000;
/** The evaluator drops replica entries not seen for this long (pods that went away). */
const REPLICA_FORGET_MS = 10 * 60_000;
/** Session bitmaps: 2^20 bits (128 KiB) per run and metric, the SessionFilter's size and hash. */
const SESSION_SHIFT = 12;
/** Run data in Redis outlives its run this long (reports of a recent run still read it). */
const RUN_TTL_MS = 7 * 24 * 3600_000;

/** Same state of the same run (a record Redis holds as this replica wrote it, or one it adopted). */
function sameRecord(a: PersistedExperiment | undefined, b: PersistedExperiment): boolean {
  return a !== undefined && a.state === b.state && a.startedAt === b.startedAt && a.at === b.at;
}

/** A listener's global error-rate guard, pooled over the fleet (main.ts lists them). */
export interface PooledGuard {
  listener: string;
  threshold: number;
  window_s: number;
  min_requests: number;
  window: ErrorRateWindow;
}

/** The script queued on a pipeline (its reply comes with the pipeline's). */
type LeaseCommand = (nkeys: number, ...args: string[]) => unknown;

/** Layout of the default LogHistogram (the analyzer's): pooled latency bucket counts use it. */
const HIST = new LogHistogram();
export const NBUCKETS = HIST.counts.length;

/** One replica's cumulative outcomes of one run, as written to Redis. */
export interface Cumulative {
  requests: [number, number];
  errors: [number, number];
  timeouts: [number, number];
  latency: [Float64Array | null, Float64Array | null];
}

/** A replica's line in the fleet's replicas hash, rewritten every tick. */
interface ReplicaInfo {
  replica: string;
  at: number;
  /** its listeners' guard windows: [requests, errors] */
  guards?: Record<string, [number, number]>;
}

interface ReplicaEntry {
  replica: string;
  at: number;
  req: [number, number];
  err: [number, number];
  tmo: [number, number];
  /** sparse latency buckets per arm: [index, count, index, count, ...] */
  lat: [number[], number[]];
  /** the runtime's counts array (arms' outcomes and status classes) */
  counts: number[];
}

/** This replica's outcomes of the current run of one experiment (what observe() adds to). */
class LocalPool {
  runId: number;
  runKey: string | null = null;
  readonly cum: Cumulative;
  changed = true;
  /** Sum of the runtime's counts at the last write (requests still finishing after a kill change them). */
  countsTotal = 0;
  /** Sticky: session bits (bit * 2 + arm) not yet written, per metric (errors, timeouts)... */
  readonly bits: [number[], number[]] | null;
  /** ...and a local bitmap of those already queued (the fleet's bitmap decides; this saves traffic). */
  private readonly queued: [Uint32Array, Uint32Array] | null;
  /** Every bit queued in this run, so a changed run key (the fleet's start adopted) gets them all again. */
  private readonly history: [number[], number[]] | null;

  constructor(runId: number, withLatency: boolean, sticky: boolean) {
    this.runId = runId;
    this.cum = newCumulative(withLatency);
    this.bits = sticky ? [[], []] : null;
    const words = 2 ** (32 - SESSION_SHIFT - 5);
    this.queued = sticky ? [new Uint32Array(words), new Uint32Array(words)] : null;
    this.history = sticky ? [[], []] : null;
  }

  /** The run is written under another key now: every session bit of the run goes again. */
  rekey(runKey: string): void {
    if (this.runKey !== null && this.runKey !== runKey && this.bits !== null && this.history !== null) {
      this.bits[0] = this.history[0].slice();
      this.bits[1] = this.history[1].slice();
      this.changed = true;
    }
    this.runKey = runKey;
  }

  /** Queue the session bit of a bad event (m: 0 errors, 1 timeouts), once per session and arm. */
  queueBit(m: 0 | 1, sessionKey: number, a: 0 | 1): void {
    // The SessionFilter's hash: the arm mixed in, so a key's canary and control sessions differ.
    const bit = fmix32((sessionKey ^ (a === 0 ? 0x9e3779b9 : 0x7f4a7c15)) >>> 0) >>> SESSION_SHIFT;
    const q = this.queued![m];
    const w = bit >>> 5;
    const mask = 1 << (bit & 31);
    if ((q[w]! & mask) !== 0) return;
    q[w] = q[w]! | mask;
    this.bits![m].push(bit * 2 + a);
    this.history![m].push(bit * 2 + a);
  }
}

/** What the pooled analysis of one run has consumed from each replica so far. */
class PooledRun {
  readonly consumed = new Map<string, Cumulative>();
  readonly replicas = new Map<string, ReplicaEntry>();
  /** Sticky: bad sessions consumed so far: [errors canary, errors control, timeouts canary, timeouts control]. */
  readonly sessions = [0, 0, 0, 0];
  constructor(
    readonly runId: number,
    readonly runKey: string,
  ) {}
}

export interface FleetExperimentView {
  name: string;
  replica: string;
  connected: boolean;
  evaluator: string | null;
  this_replica_evaluates: boolean;
  grant: { fresh: boolean; expires_in_ms: number };
  contributing_replicas: number;
  /** When the fleet started (max_duration counts from it); null before the first answer from Redis. */
  fleet_started_at: string | null;
  /** The replicas seen within the last grant TTL (they share max_active_faults). */
  live_replicas: number;
  /** max_active_faults: the fleet's limit and this replica's share of it (null: no limit). */
  max_active_faults: { fleet: number; this_replica: number } | null;
  pooled: { canary: ArmCounts; control: ArmCounts };
  replicas: { replica: string; last_seen: string; canary: ArmCounts; control: ArmCounts }[];
}

export class Fleet implements OutcomeSink {
  readonly spec: FleetSpec;
  readonly store: RedisStateStore;
  readonly replica: string;
  /** This process's field in the fleet's hashes: the replica name plus a boot id (a restart is new). */
  private readonly field: string;
  private readonly keys: FleetKeys;
  private readonly redis: Redis;
  private readonly sub: Redis;
  private table: ExperimentTable | null = null;
  private readonly pools = new Map<ExperimentRuntime, LocalPool>();
  private readonly pooledRuns = new Map<string, PooledRun>();
  /** Local time (ms) until which each experiment's grant is fresh. */
  private readonly grantUntil = new Map<string, number>();
  private holder: string | null = null;
  /** The last error Redis's client reported (null: none since the last connect). */
  private redisError: string | null = null;
  private readonly onRedisError = (err: Error): void => {
    if (err.message === this.redisError) return;
    this.redisError = err.message;
    log('warn', 'fleet: Redis error', { fleet: this.spec.name, error: err.message });
  };
  /** The last tick wrote our states again (the warning is said once per episode). */
  private repushing = false;
  /** Unreadable records already warned about (by their text). */
  private readonly badRecords = new Set<string>();
  private connected = false;
  private disconnectedSince: number | null = null;
  private tickTimer: NodeJS.Timeout | null = null;
  private gateTimer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  private stopped = false;
  private readonly gConnected: Gauge;
  private readonly gGrant: Gauge<'experiment'>;
  private readonly gEvaluator: Gauge;
  /** The listeners' global guards, pooled here (set by the host; none by default). */
  guards: () => PooledGuard[] = () => [];
  /** Called when the fleet's start is first known or changes (the host moves its max_duration deadline). */
  onFleetStart: ((ms: number) => void) | null = null;
  fleetStartMs: number | null = null;
  /** Live replicas' fields, sorted (max_active_faults shares follow this order). */
  private live: string[] = [];
  /** When each listener's pooled guard last tripped (its window must refill before it judges again). */
  private readonly guardTripAt = new Map<string, number>();

  constructor(spec: FleetSpec, stateDir: string, metrics: Metrics) {
    this.spec = spec;
    this.replica = spec.replica ?? `${hostname()}-${process.pid}`;
    this.field = `${this.replica}/${randomBytes(4).toString('hex')}`;
    this.keys = fleetKeys(spec.name);
    const opts = {
      // Fail fast instead of queueing: a command that cannot be sent now is a missed tick, not a backlog.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: Math.max(250, Math.min(1000, spec.grant_ttl_ms / 2)),
      connectTimeout: 1000,
      retryStrategy: (n: number) => Math.min(100 * n, 1000),
    };
    this.redis = new Redis(spec.redis, opts);
    // A subscriber connection cannot run other commands; it queues SUBSCRIBE until it is connected.
    this.sub = new Redis(spec.redis, { ...opts, enableOfflineQueue: true, commandTimeout: undefined });
    // ioredis emits an error per failed attempt (every second while Redis is away): say each new one
    // once (a wrong password, a refused connection), and show the last in /ready.
    for (const c of [this.redis, this.sub]) c.on('error', this.onRedisError);
    this.redis.on('ready', () => this.setConnected(true));
    this.redis.on('close', () => this.setConnected(false));
    this.redis.defineCommand('faultlineLease', { lua: LEASE_LUA });
    this.redis.defineCommand('faultlineWrite', { lua: WRITE_LUA });
    this.redis.defineCommand('faultlineStart', { lua: START_LUA });
    this.store = new RedisStateStore(stateDir, this.redis, this.keys);
    const registers = [metrics.registry];
    this.gConnected = new Gauge({
      name: 'faultline_fleet_connected',
      help: '1 while this replica reaches the fleet Redis (fleet mode).',
      registers,
    });
    this.gGrant = new Gauge({
      name: 'faultline_fleet_grant',
      help: '1 while this replica holds a fresh injection grant for the experiment (fleet mode; 0: injection paused).',
      labelNames: ['experiment'],
      registers,
    });
    this.gEvaluator = new Gauge({
      name: 'faultline_fleet_evaluator',
      help: '1 while this replica holds the evaluator lease (it kills on pooled breaches).',
      registers,
    });
  }

  /** Take over the table's outcomes (before the first runtime is created) and start the loop. */
  attach(table: ExperimentTable): void {
    this.table = table;
    table.pooled = this;
  }

  start(): void {
    this.sub.on('message', (_channel: string, message: string) => this.onMessage(message));
    void this.sub.subscribe(this.keys.channel).catch(() => undefined);
    this.tickTimer = setInterval(() => this.tickSoon(), this.spec.flush_ms);
    this.tickTimer.unref();
    // Grants run out on the local clock even while a tick hangs on a dead connection.
    this.gateTimer = setInterval(() => this.checkGates(), 50);
    this.gateTimer.unref();
    this.tickSoon();
  }

  // ---- hot path ----

  observe(
    rt: ExperimentRuntime,
    isCanary: boolean,
    bad: boolean,
    timedOut: boolean,
    latencyMs: number,
    sessionKey: number,
  ): void {
    let pool = this.pools.get(rt);
    if (pool === undefined || pool.runId !== rt.runId) {
      pool = newPool(rt);
      this.pools.set(rt, pool);
    }
    const c = pool.cum;
    const a = isCanary ? 0 : 1;
    c.requests[a] += 1;
    if (bad) {
      c.errors[a] += 1;
      if (pool.bits !== null) pool.queueBit(0, sessionKey, a);
    }
    if (timedOut) {
      c.timeouts[a] += 1;
      if (pool.bits !== null) pool.queueBit(1, sessionKey, a);
    }
    const lat = c.latency[a];
    if (lat != null && latencyMs >= 0 && latencyMs < Infinity) lat[HIST.bucketOf(latencyMs)]! += 1;
    pool.changed = true;
  }

  /**
   * Workers (src/cluster): one worker's new outcomes as a batch (deltas of its cumulative counts), added
   * to this replica's pool as `observe` would add them one by one.
   */
  absorb(rt: ExperimentRuntime, canary: ArmBatch, control: ArmBatch): void {
    let pool = this.pools.get(rt);
    if (pool === undefined || pool.runId !== rt.runId) {
      pool = newPool(rt);
      this.pools.set(rt, pool);
    }
    const c = pool.cum;
    for (const [a, b] of [
      [0, canary],
      [1, control],
    ] as const) {
      c.requests[a] += b.requests;
      c.errors[a] += b.errors;
      c.timeouts[a] += b.timeouts;
      const lat = c.latency[a];
      if (lat != null && b.latency !== null) for (let j = 0; j < lat.length; j++) lat[j]! += b.latency[j]!;
    }
    pool.changed = true;
  }

  // ---- state ----

  private onMessage(message: string): void {
    try {
      const m = JSON.parse(message) as { id: string; rec: unknown };
      const issues = recordIssues(String(m.id), m.rec);
      if (issues.length > 0) throw new Error(issues.join('; '));
      this.apply(m.id, m.rec as PersistedExperiment);
    } catch (err) {
      log('warn', 'fleet: unreadable state message ignored', { error: (err as Error).message });
    }
  }

  /** A state record read from Redis's hash; one this code does not understand is ignored (once said). */
  private record(id: string, raw: string | undefined): PersistedExperiment | undefined {
    if (raw === undefined) return undefined;
    let rec: unknown;
    let issues: string[];
    try {
      rec = JSON.parse(raw) as unknown;
      issues = recordIssues(id, rec);
    } catch (err) {
      issues = [(err as Error).message];
    }
    if (issues.length === 0) return rec as PersistedExperiment;
    if (!this.badRecords.has(raw)) {
      this.badRecords.add(raw);
      log('warn', 'fleet: unreadable state record in Redis ignored', {
        experiment: id,
        error: issues.join('; '),
      });
    }
    return undefined;
  }

  private apply(id: string, rec: PersistedExperiment): void {
    const rt = this.table?.get(id);
    if (rec.state !== 'running') this.grantUntil.delete(id);
    // The run in force is the one Redis recorded first (two replicas that started it at once, or one
    // that resumed an older run from its own file): take its start, so `duration` counts from it and
    // the counts pool under one run. Not while our own records wait to be written (cut off at start).
    if (
      rt !== undefined &&
      rec.state === 'running' &&
      rt.assigning &&
      this.store.pending === null &&
      rec.startedAt !== undefined &&
      this.table?.lifecycleOf(id)?.startedAt !== rec.startedAt
    )
      this.table?.adoptStart(id, rec);
    else this.table?.adopt(id, rec);
    if (rt) this.gate(rt);
  }

  private setConnected(up: boolean): void {
    if (up === this.connected) return;
    this.connected = up;
    this.gConnected.set(up ? 1 : 0);
    if (up) {
      this.redisError = null;
      log('info', 'fleet: Redis reachable; injection resumes on the next fresh grant', {
        fleet: this.spec.name,
        replica: this.replica,
      });
      this.disconnectedSince = null;
    } else if (!this.stopped) {
      this.disconnectedSince = Date.now();
      // Cut off, it renews nothing: the lease is as good as gone (it expires in Redis on its own).
      this.holder = null;
      this.gEvaluator.set(0);
      log(
        'warn',
        'fleet: Redis unreachable; injection stops when the grants run out, traffic keeps flowing',
        {
          fleet: this.spec.name,
          replica: this.replica,
          grant_ttl_ms: this.spec.grant_ttl_ms,
        },
      );
    }
  }

  private gate(rt: ExperimentRuntime): void {
    const fresh = (this.grantUntil.get(rt.id) ?? 0) > Date.now();
    if (fresh !== rt.granted) rt.setGranted(fresh);
    this.gGrant.set({ experiment: rt.id }, fresh ? 1 : 0);
  }

  private checkGates(): void {
    if (this.table === null) return;
    for (const rt of this.table.all()) this.gate(rt);
  }

  // ---- the loop ----

  private tickSoon(): void {
    if (this.ticking !== null || this.stopped) return;
    this.ticking = this.tick()
      .catch((err: unknown) => {
        log('debug', 'fleet tick failed', { error: (err as Error).message });
      })
      .finally(() => {
        this.ticking = null;
      });
  }

  /** One round trip: write our counts, renew lease/grants, read state, grants and everyone's counts. */
  private async tick(): Promise<void> {
    const table = this.table;
    if (table === null || this.redis.status !== 'ready') return;
    const pending = this.store.pending;
    if (pending !== null) await this.store.push(pending).catch(() => undefined);
    const t0 = Date.now();
    const rts = [...table.all()];
    const p = this.redis.pipeline();
    const ids = rts.map((rt) => rt.id);
    (p as unknown as { faultlineLease: LeaseCommand }).faultlineLease(
      2 + ids.length,
      this.keys.lease,
      this.keys.state,
      ...ids.map((id) => this.keys.grantPrefix + id),
      this.field,
      String(this.spec.grant_ttl_ms),
      ...ids,
    );
    const guards = this.guards();
    const info: ReplicaInfo = { replica: this.replica, at: t0 };
    if (guards.length > 0) {
      info.guards = {};
      for (const g of guards) {
        const w = g.window.rateAt(t0);
        info.guards[g.listener] = [w.requests, w.errors];
      }
    }
    p.hset(this.keys.replicas, this.field, JSON.stringify(info));
    p.hgetall(this.keys.state);
    p.hgetall(this.keys.replicas);
    (p as unknown as { faultlineStart: LeaseCommand }).faultlineStart(
      1,
      this.keys.started,
      String(t0),
      String(Math.max(START_TTL_MS, 10 * this.spec.grant_ttl_ms)),
    );
    // Reply positions: lease (0), replicas hset (1), state (2), replicas (3), fleet start (4), then per
    // experiment its pttl and counts.
    let n = 5;
    const sending: { pool: LocalPool; bits: [number[], number[]] }[] = [];
    const runs: {
      rt: ExperimentRuntime;
      runId: number;
      runKey: string | null;
      pttlAt: number;
      countsAt: number;
    }[] = [];
    for (const rt of rts) {
      const runKey = table.lifecycleOf(rt.id)?.startedAt ?? null;
      p.pttl(this.keys.grantPrefix + rt.id);
      const run = { rt, runId: rt.runId, runKey, pttlAt: n++, countsAt: -1 };
      runs.push(run);
      if (runKey === null) continue;
      const key = `${this.keys.countsPrefix}${rt.id}:${runKey}`;
      let pool = this.pools.get(rt);
      if (pool === undefined || pool.runId !== rt.runId) {
        pool = newPool(rt);
        this.pools.set(rt, pool);
      }
      pool.rekey(runKey);
      const total = sumOf(rt.counts);
      if (pool.changed || total !== pool.countsTotal) {
        pool.changed = false;
        pool.countsTotal = total;
        let bits: [number[], number[]] = [[], []];
        if (pool.bits !== null) {
          bits = [pool.bits[0].splice(0), pool.bits[1].splice(0)];
          sending.push({ pool, bits });
        }
        (p as unknown as { faultlineWrite: LeaseCommand }).faultlineWrite(
          3,
          key,
          `${key}:sessions:errors`,
          `${key}:sessions:timeouts`,
          this.field,
          JSON.stringify(entryOf(this.replica, t0, pool.cum, rt.counts)),
          String(RUN_TTL_MS),
          bits[0].join(','),
          bits[1].join(','),
        );
        n += 1;
      }
      p.hgetall(key);
      run.countsAt = n++;
    }
    let res: Awaited<ReturnType<typeof p.exec>>;
    try {
      res = await p.exec();
      if (res === null) throw new Error('pipeline discarded');
      for (const [err] of res) if (err) throw err;
    } catch (err) {
      for (const run of runs) {
        const pool = this.pools.get(run.rt);
        if (pool !== undefined) pool.changed = true;
      }
      // Session bits not written go out with the next write (setting a bit twice counts once).
      for (const x of sending) for (const m of [0, 1] as const) x.pool.bits?.[m].push(...x.bits[m]);
      throw err;
    }
    const value = (i: number): unknown => res[i]?.[1];
    const holder = value(0) as string;
    if (holder !== this.holder) {
      if (holder === this.field)
        log('info', 'fleet: this replica is the evaluator', { replica: this.replica });
      this.holder = holder;
      this.gEvaluator.set(holder === this.field ? 1 : 0);
    }
    const states = value(2) as Record<string, string>;
    this.replicasSeen(value(3) as Record<string, string>, t0, rts);
    const start = Number(value(4));
    if (Number.isFinite(start) && start > 0 && start !== this.fleetStartMs) {
      this.fleetStartMs = start;
      this.onFleetStart?.(start);
    }
    for (const run of runs) {
      const pttl = value(run.pttlAt) as number;
      if (pttl > 0) this.grantUntil.set(run.rt.id, t0 + Math.min(pttl, this.spec.grant_ttl_ms));
      if (run.runKey !== null && run.rt.runId === run.runId)
        this.pool(run.rt, run.runId, run.runKey, value(run.countsAt) as Record<string, string>);
    }
    let repush = false;
    for (const rt of rts) {
      const remote = this.record(rt.id, states[rt.id]);
      // Redis lacks our record or holds one ours replaces (it restarted without persistence, was
      // flushed, or a replica started a run unaware of our end): write ours again, through the merge.
      const mine = this.store.latest.experiments[rt.id];
      if (mine !== undefined && mergeRecord(remote, mine) === mine && !sameRecord(remote, mine))
        repush = true;
      if (remote !== undefined) this.apply(rt.id, remote);
      this.gate(rt);
    }
    if (repush && this.store.pending === null) {
      if (!this.repushing)
        log(
          'warn',
          "fleet: Redis lacks or contradicts this replica's experiment states; writing them again",
          {
            fleet: this.spec.name,
            replica: this.replica,
          },
        );
      await this.store.push(this.store.latest).catch(() => undefined);
    }
    this.repushing = repush;
    // The evaluator acts on a breach its analyzer latched (now or before it took over).
    if (this.holder === this.field)
      for (const rt of rts) {
        const b = rt.analyzer.breached();
        if (b !== null && rt.assigning)
          table.kill(rt.id, 'guardrail', b.reason, 'guardrail', {
            ...b,
            at: new Date().toISOString(),
            fleet: { evaluator: this.replica, replicas: this.pooledRuns.get(rt.id)?.replicas.size ?? 0 },
          });
      }
  }

  /**
   * The replicas hash: who is live (seen within a grant TTL; they share max_active_faults), and, on
   * the evaluator, the pooled guard windows and the pruning of replicas long gone.
   */
  private replicasSeen(raw: Record<string, string>, now: number, rts: ExperimentRuntime[]): void {
    const infos = new Map<string, ReplicaInfo>();
    const gone: string[] = [];
    for (const [field, text] of Object.entries(raw)) {
      try {
        const e = JSON.parse(text) as ReplicaInfo;
        if (now - e.at <= Math.max(this.spec.grant_ttl_ms, 3 * this.spec.flush_ms)) infos.set(field, e);
        else if (now - e.at > REPLICA_FORGET_MS) gone.push(field);
      } catch {
        gone.push(field);
      }
    }
    // Our own line was written in this round trip; it is live even if the clocks disagree.
    if (!infos.has(this.field)) infos.set(this.field, { replica: this.replica, at: now });
    this.live = [...infos.keys()].sort();
    // max_active_faults in fixed shares: floor(C / N), the remainder to the first replicas by field.
    // The shares add up to C, so the fleet never holds more than C faults while the replicas agree on
    // who is live (one flush interval after a join the others still count one replica fewer).
    const k = this.live.indexOf(this.field);
    const nLive = this.live.length;
    for (const rt of rts) {
      const c = rt.spec.max_active_faults;
      if (c !== undefined) rt.maxActiveFaults = Math.floor(c / nLive) + (k < c % nLive ? 1 : 0);
    }
    if (this.holder !== this.field) return;
    if (gone.length > 0) void this.redis.hdel(this.keys.replicas, ...gone).catch(() => undefined);
    for (const g of this.guards()) {
      // After a trip the window refills with what came after it before the guard judges again.
      if (now - (this.guardTripAt.get(g.listener) ?? -Infinity) < g.window_s * 1000) continue;
      let requests = 0;
      let errors = 0;
      let replicas = 0;
      for (const e of infos.values()) {
        const w = e.guards?.[g.listener];
        if (w === undefined) continue;
        requests += w[0];
        errors += w[1];
        replicas++;
      }
      if (requests < g.min_requests || errors / requests <= g.threshold) continue;
      this.guardTripAt.set(g.listener, now);
      const reason = `listener ${g.listener}, fleet ${this.spec.name}: error rate ${((100 * errors) / requests).toFixed(2)}% of ${requests} requests from ${replicas} replicas over ${g.window_s}s exceeds ${(g.threshold * 100).toFixed(2)}%`;
      const killed = this.table?.killAll('global_error_rate', reason, `guard:${g.listener}`) ?? [];
      if (killed.length > 0)
        log('warn', 'fleet: global guard tripped', { listener: g.listener, killed, reason });
    }
  }

  /** Feed the new pooled outcomes (every replica's cumulative counts minus what was consumed). */
  private pool(rt: ExperimentRuntime, runId: number, runKey: string, entries: Record<string, string>): void {
    let run = this.pooledRuns.get(rt.id);
    if (run === undefined || run.runId !== runId || run.runKey !== runKey) {
      // Same run, other key: this replica adopted the fleet's start of it; what it consumed under its
      // own key (its own first counts) comes again under the fleet's, so the evidence starts over.
      if (run !== undefined && run.runId === runId) rt.analyzer = rt.newAnalyzer();
      run = new PooledRun(runId, runKey);
      this.pooledRuns.set(rt.id, run);
    }
    const withLatency = rt.spec.guardrails.some((g) => g.metric === 'latency');
    const sticky = rt.stickyKind !== null;
    const c = emptyBatch(withLatency);
    const k = emptyBatch(withLatency);
    for (const [field, raw] of Object.entries(entries)) {
      if (field.startsWith('#')) continue;
      let e: ReplicaEntry;
      try {
        e = JSON.parse(raw) as ReplicaEntry;
      } catch {
        continue;
      }
      run.replicas.set(field, e);
      const cur = cumulativeOf(e, withLatency);
      const prev = run.consumed.get(field) ?? newCumulative(withLatency);
      // A replica's cumulative counts only grow; anything else is not its data (skip, never subtract).
      if (cur.requests[0] < prev.requests[0] || cur.requests[1] < prev.requests[1]) continue;
      addDelta(c, cur, prev, 0);
      addDelta(k, cur, prev, 1);
      run.consumed.set(field, cur);
    }
    if (sticky) {
      // Bad events enter the tests once per session and arm, fleet-wide (the bitmap's counters).
      const now = [
        Number(entries['#1:0'] ?? 0),
        Number(entries['#1:1'] ?? 0),
        Number(entries['#2:0'] ?? 0),
        Number(entries['#2:1'] ?? 0),
      ];
      const d = now.map((x, i) => Math.max(0, x - run.sessions[i]!));
      for (let i = 0; i < 4; i++) run.sessions[i] = Math.max(run.sessions[i]!, now[i]!);
      c.errors = d[0]!;
      k.errors = d[1]!;
      c.timeouts = d[2]!;
      k.timeouts = d[3]!;
    }
    if (c.requests + k.requests + c.errors + k.errors + c.timeouts + k.timeouts > 0)
      rt.analyzer.recordBatch(c, k, sticky);
  }

  // ---- views ----

  /** The fleet view of one experiment for admin and reports. */
  view(rt: ExperimentRuntime): FleetExperimentView {
    const run = this.pooledRuns.get(rt.id);
    const pooled = new Float64Array(rt.counts.length);
    const replicas: FleetExperimentView['replicas'] = [];
    if (run !== undefined && run.runId === rt.runId)
      for (const e of run.replicas.values()) {
        for (let j = 0; j < pooled.length; j++) pooled[j]! += e.counts[j] ?? 0;
        replicas.push({
          replica: e.replica,
          last_seen: new Date(e.at).toISOString(),
          canary: countsOf(e.counts, 1),
          control: countsOf(e.counts, 2),
        });
      }
    const until = this.grantUntil.get(rt.id) ?? 0;
    const left = Math.max(0, until - Date.now());
    return {
      name: this.spec.name,
      replica: this.replica,
      connected: this.connected,
      evaluator: this.holder === null ? null : (this.holder.split('/')[0] ?? this.holder),
      this_replica_evaluates: this.holder === this.field,
      grant: { fresh: left > 0, expires_in_ms: left },
      contributing_replicas: replicas.length,
      fleet_started_at: this.fleetStartMs === null ? null : new Date(this.fleetStartMs).toISOString(),
      live_replicas: this.live.length,
      max_active_faults:
        rt.spec.max_active_faults === undefined
          ? null
          : { fleet: rt.spec.max_active_faults, this_replica: rt.maxActiveFaults },
      pooled: { canary: countsOf(pooled, 1), control: countsOf(pooled, 2) },
      replicas,
    };
  }

  /**
   * After a kill or an arm (once its writes have settled): what the operator must know when Redis did
   * not take it, else null.
   */
  async pendingNote(): Promise<string | null> {
    await this.store.flush();
    if (this.store.pending === null) return null;
    return `saved in this replica's state_dir, but Redis is unreachable from this replica (${this.redisError ?? this.redis.status}): the other replicas hear of it when Redis is back (pushed automatically); a kill meant for the whole fleet now should be repeated on a replica that reaches Redis`;
  }

  /** One line for /ready: traffic is served either way, so readiness itself does not change. */
  readyDetail(): string {
    if (this.connected) return `fleet ${this.spec.name}: connected (replica ${this.replica})`;
    const since =
      this.disconnectedSince === null ? '' : ` since ${new Date(this.disconnectedSince).toISOString()}`;
    const why = this.redisError === null ? '' : ` (${this.redisError})`;
    return `fleet ${this.spec.name}: Redis unreachable${since}${why}; injection paused until a fresh grant`;
  }

  /** Stop injecting, write the last counts (a clean shutdown loses nothing), close the connections. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    if (this.tickTimer) clearInterval(this.tickTimer);
    if (this.gateTimer) clearInterval(this.gateTimer);
    await this.ticking;
    if (this.table !== null) for (const rt of this.table.all()) rt.setGranted(false);
    // The last tick only writes counts: the host is stopping, so no fleet start (a new deadline
    // timer) and no pooled guard (a kill on a stopped table) may act from it.
    this.onFleetStart = null;
    this.guards = () => [];
    try {
      await this.tick();
    } catch {
      // best effort: Redis may be gone
    }
    this.stopped = true;
  }

  async close(): Promise<void> {
    this.stopped = true;
    if (this.tickTimer) clearInterval(this.tickTimer);
    if (this.gateTimer) clearInterval(this.gateTimer);
    // Hand the lease over at once instead of making the fleet wait out its TTL.
    if (this.holder === this.field && this.redis.status === 'ready')
      await this.redis
        .eval(
          "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
          1,
          this.keys.lease,
          this.field,
        )
        .catch(() => undefined);
    this.redis.disconnect();
    this.sub.disconnect();
  }

  /**
   * Schedules in a fleet (src/experiments/scheduler.ts WindowClaim): the first replica to claim a window
   * (SET NX on a key per schedule and opening) decides which member runs in it; the others read that
   * answer and start the same run. A member killed anywhere in the fleet pauses the schedule here too.
   */
  async claimWindow(
    schedule: string,
    windowStart: number,
    pick: string,
    members: readonly string[],
    ttlMs: number,
  ): Promise<string | null> {
    const key = `faultline:{${this.spec.name}}:window:${schedule}:${windowStart}`;
    const got = (await this.redis.eval(
      CLAIM_LUA,
      2,
      key,
      this.keys.state,
      pick,
      String(ttlMs),
      ...members,
    )) as string;
    return got.startsWith('!') ? null : got;
  }
}

function newPool(rt: ExperimentRuntime): LocalPool {
  return new LocalPool(
    rt.runId,
    rt.spec.guardrails.some((g) => g.metric === 'latency'),
    rt.stickyKind !== null,
  );
}
/** Window claim: refuse while a member's fleet record is a kill; else first SET NX wins; the winner's pick. */
const CLAIM_LUA = `
for i = 3, #ARGV do
  local rec = redis.call('HGET', KEYS[2], ARGV[i])
  if rec and cjson.decode(rec).state == 'killed' then return '!' .. ARGV[i] end
end
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
return redis.call('GET', KEYS[1])
`;

export function newCumulative(withLatency: boolean): Cumulative {
  return {
    requests: [0, 0],
    errors: [0, 0],
    timeouts: [0, 0],
    latency: withLatency ? [new Float64Array(NBUCKETS), new Float64Array(NBUCKETS)] : [null, null],
  };
}

export function emptyBatch(withLatency: boolean): ArmBatch {
  return { requests: 0, errors: 0, timeouts: 0, latency: withLatency ? new Float64Array(NBUCKETS) : null };
}

export function sparse(a: Float64Array | null): number[] {
  const out: number[] = [];
  if (a !== null) for (let i = 0; i < a.length; i++) if (a[i] !== 0) out.push(i, a[i]!);
  return out;
}

function entryOf(replica: string, at: number, c: Cumulative, counts: Float64Array): ReplicaEntry {
  return {
    replica,
    at,
    req: [...c.requests],
    err: [...c.errors],
    tmo: [...c.timeouts],
    lat: [sparse(c.latency[0]), sparse(c.latency[1])],
    counts: Array.from(counts),
  };
}

export function cumulativeOf(
  e: Pick<ReplicaEntry, 'req' | 'err' | 'tmo' | 'lat'>,
  withLatency: boolean,
): Cumulative {
  const c = newCumulative(withLatency);
  for (const a of [0, 1] as const) {
    c.requests[a] = e.req?.[a] ?? 0;
    c.errors[a] = e.err?.[a] ?? 0;
    c.timeouts[a] = e.tmo?.[a] ?? 0;
    const dense = c.latency[a];
    const s = e.lat?.[a] ?? [];
    if (dense != null) for (let j = 0; j + 1 < s.length; j += 2) dense[s[j]!] = s[j + 1]!;
  }
  return c;
}

export function addDelta(b: ArmBatch, cur: Cumulative, prev: Cumulative, a: 0 | 1): void {
  b.requests += cur.requests[a] - prev.requests[a];
  b.errors += cur.errors[a] - prev.errors[a];
  b.timeouts += cur.timeouts[a] - prev.timeouts[a];
  const d = b.latency;
  const x = cur.latency[a];
  const y = prev.latency[a];
  if (d !== null && x != null && y != null)
    for (let j = 0; j < d.length; j++) {
      const v = x[j]! - y[j]!;
      if (v > 0) d[j]! += v;
    }
}

function sumOf(a: Float64Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) n += a[i]!;
  return n;
}
