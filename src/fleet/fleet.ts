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
 * Nothing here runs per request except `observe` (a map lookup and a few additions).
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Gauge } from 'prom-client';
import type { ConfigSpec } from '../config/schema.js';
import { countsOf, type ArmCounts, type ExperimentRuntime } from '../experiments/runtime.js';
import type { ExperimentTable, OutcomeSink } from '../experiments/table.js';
import type { PersistedExperiment } from '../killswitch/store.js';
import type { ArmBatch } from '../stats/analyzer.js';
import { LogHistogram } from '../stats/histogram.js';
import { log } from '../telemetry/log.js';
import type { Metrics } from '../telemetry/metrics.js';
import { fleetKeys, RedisStateStore, type FleetKeys } from './store.js';

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

  constructor(runId: number, withLatency: boolean) {
    this.runId = runId;
    this.cum = newCumulative(withLatency);
  }
}

/** What the pooled analysis of one run has consumed from each replica so far. */
class PooledRun {
  readonly consumed = new Map<string, Cumulative>();
  readonly replicas = new Map<string, ReplicaEntry>();
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
  private connected = false;
  private disconnectedSince: number | null = null;
  private tickTimer: NodeJS.Timeout | null = null;
  private gateTimer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  private stopped = false;
  private readonly gConnected: Gauge;
  private readonly gGrant: Gauge<'experiment'>;
  private readonly gEvaluator: Gauge;

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
    for (const c of [this.redis, this.sub]) c.on('error', () => undefined);
    this.redis.on('ready', () => this.setConnected(true));
    this.redis.on('close', () => this.setConnected(false));
    this.redis.defineCommand('faultlineLease', { lua: LEASE_LUA });
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
  ): void {
    let pool = this.pools.get(rt);
    if (pool === undefined || pool.runId !== rt.runId) {
      pool = new LocalPool(
        rt.runId,
        rt.spec.guardrails.some((g) => g.metric === 'latency'),
      );
      this.pools.set(rt, pool);
    }
    const c = pool.cum;
    const a = isCanary ? 0 : 1;
    c.requests[a] += 1;
    if (bad) c.errors[a] += 1;
    if (timedOut) c.timeouts[a] += 1;
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
      pool = new LocalPool(
        rt.runId,
        rt.spec.guardrails.some((g) => g.metric === 'latency'),
      );
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
      const m = JSON.parse(message) as { id: string; rec: PersistedExperiment };
      this.apply(m.id, m.rec);
    } catch (err) {
      log('warn', 'fleet: unreadable state message ignored', { error: (err as Error).message });
    }
  }

  private apply(id: string, rec: PersistedExperiment): void {
    const rt = this.table?.get(id);
    if (rec.state !== 'running') this.grantUntil.delete(id);
    this.table?.adopt(id, rec);
    if (rt) this.gate(rt);
  }

  private setConnected(up: boolean): void {
    if (up === this.connected) return;
    this.connected = up;
    this.gConnected.set(up ? 1 : 0);
    if (up) {
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
    p.hset(this.keys.replicas, this.field, JSON.stringify({ replica: this.replica, at: t0 }));
    p.hgetall(this.keys.state);
    // Reply positions: lease (0), replicas hset (1), state (2), then per experiment its pttl and counts.
    let n = 3;
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
        pool = new LocalPool(
          rt.runId,
          rt.spec.guardrails.some((g) => g.metric === 'latency'),
        );
        this.pools.set(rt, pool);
      }
      const total = sumOf(rt.counts);
      if (pool.changed || total !== pool.countsTotal) {
        pool.changed = false;
        pool.countsTotal = total;
        p.hset(key, this.field, JSON.stringify(entryOf(this.replica, t0, pool.cum, rt.counts)));
        p.pexpire(key, 7 * 24 * 3600_000);
        n += 2;
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
    for (const run of runs) {
      const pttl = value(run.pttlAt) as number;
      if (pttl > 0) this.grantUntil.set(run.rt.id, t0 + Math.min(pttl, this.spec.grant_ttl_ms));
      if (run.runKey !== null && run.rt.runId === run.runId)
        this.pool(run.rt, run.runId, run.runKey, value(run.countsAt) as Record<string, string>);
    }
    for (const rt of rts) {
      const raw = states[rt.id];
      if (raw !== undefined) this.apply(rt.id, JSON.parse(raw) as PersistedExperiment);
      this.gate(rt);
    }
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

  /** Feed the new pooled outcomes (every replica's cumulative counts minus what was consumed). */
  private pool(rt: ExperimentRuntime, runId: number, runKey: string, entries: Record<string, string>): void {
    let run = this.pooledRuns.get(rt.id);
    if (run === undefined || run.runId !== runId || run.runKey !== runKey) {
      run = new PooledRun(runId, runKey);
      this.pooledRuns.set(rt.id, run);
    }
    const withLatency = rt.spec.guardrails.some((g) => g.metric === 'latency');
    const c = emptyBatch(withLatency);
    const k = emptyBatch(withLatency);
    for (const [field, raw] of Object.entries(entries)) {
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
    if (c.requests + k.requests > 0) rt.analyzer.recordBatch(c, k);
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
      pooled: { canary: countsOf(pooled, 1), control: countsOf(pooled, 2) },
      replicas,
    };
  }

  /** One line for /ready: traffic is served either way, so readiness itself does not change. */
  readyDetail(): string {
    if (this.connected) return `fleet ${this.spec.name}: connected (replica ${this.replica})`;
    const since =
      this.disconnectedSince === null ? '' : ` since ${new Date(this.disconnectedSince).toISOString()}`;
    return `fleet ${this.spec.name}: Redis unreachable${since}; injection paused until a fresh grant`;
  }

  /** Stop injecting, write the last counts (a clean shutdown loses nothing), close the connections. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    if (this.tickTimer) clearInterval(this.tickTimer);
    if (this.gateTimer) clearInterval(this.gateTimer);
    await this.ticking;
    if (this.table !== null) for (const rt of this.table.all()) rt.setGranted(false);
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
}

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
