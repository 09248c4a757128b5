/**
 * `workers: N`: one Faultline process forks N workers (node:cluster) that share the listening ports.
 * The primary holds the experiment state and the analyzers; the workers serve traffic. These are the
 * messages between them (IPC, structured-clone serialisation: a ConfigSpec goes as it is).
 *
 *   worker -> primary: hello, listening, ready, fatal, batch (cumulative counts), kill, metrics
 *   primary -> worker: init (config + states), state (pushed on every change), reload, metrics, stop
 */
import { availableParallelism } from 'node:os';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { ConfigSpec } from '../config/schema.js';
import type { ExperimentState } from '../experiments/runtime.js';
import type { TrafficTotals } from '../telemetry/shared-traffic.js';

/** What a worker mirrors of one experiment: the primary decides all of it. */
export interface WorkerState {
  id: string;
  state: ExperimentState;
  /** Injection allowed (false in a fleet without a fresh grant). */
  granted: boolean;
  /**
   * The primary's runtime and runId: a change is fresh evidence in the worker (a new run, or a ramp's
   * next step); outcomes of requests assigned before it are not judged, as in one process.
   */
  epoch: string;
  /** The primary's runtime and run (runStart): a change starts a fresh run in the worker (counts from zero). */
  run: string;
  /** The split in force (an exposure ramp's step). */
  split: number;
  /** The intensity step in force (an intensity ramp), null: the fault as configured. */
  intensity: number | null;
  /**
   * max_active_faults for the whole process (in a fleet: this replica's share), null: no limit. Each
   * worker holds a fixed share of it (maxActiveShare), so the process never holds more than the limit.
   */
  maxActive: number | null;
}

/**
 * A worker's fixed share of a max_active_faults limit: floor(C / N), the remainder to the first workers
 * (index 1..N), the way the fleet shares it over replicas. Approximate in the same way: a worker whose
 * share is in use passes its canary requests unfaulted (overflow) while another may have headroom.
 */
export function maxActiveShare(limit: number | null, workers: number, index: number): number {
  if (limit === null) return Number.POSITIVE_INFINITY;
  return Math.floor(limit / workers) + (index - 1 < limit % workers ? 1 : 0);
}

/**
 * One worker's cumulative outcomes of one run (the fleet's ReplicaEntry shape: idempotent, so the
 * primary consumes deltas and a lost or repeated batch cannot double count).
 */
export interface BatchEntry {
  id: string;
  /** The step the outcomes (req..lat, rec) belong to: the analyzer takes only the current one. */
  epoch: string;
  /** The run the counts (counts, assigned) belong to: they go on across a ramp's steps. */
  run: string;
  req: [number, number];
  err: [number, number];
  tmo: [number, number];
  /** Sparse latency buckets per arm: [index, count, ...] (LogHistogram layout). */
  lat: [number[], number[]];
  /** The runtime's counts array (arm rows of outcomes and status classes). */
  counts: number[];
  /** Requests assigned per arm at this worker ([none, canary, control]). */
  assigned: number[];
  /** Faults in progress in this worker now. */
  active: number;
  /**
   * Sticky experiments: every judged outcome since the last batch, in order, as pairs
   * [session key + flags * 2^32, latency ms] (flags: 1 canary, 2 bad, 4 timed out). The primary feeds
   * them one by one to the analyzer, which counts one bad event per session as one process does.
   */
  rec?: Float64Array;
}

export type ToWorker =
  | { t: 'init'; index: number; config: ConfigSpec; states: WorkerState[] }
  | { t: 'state'; states: WorkerState[] }
  | { t: 'reload'; config: ConfigSpec; states: WorkerState[] }
  | { t: 'metrics'; req: number }
  | { t: 'stop'; drainMs: number };

export type FromWorker =
  | { t: 'hello' }
  | { t: 'listening'; listener: string; address: string; port: number }
  | { t: 'ready' }
  | { t: 'fatal'; message: string }
  /** `traffic`: the worker's cumulative listener/route totals, when they changed (traffic probes, suggest). */
  | { t: 'batch'; entries: BatchEntry[]; traffic?: TrafficTotals[] }
  | { t: 'kill'; id: string; cause: string; reason: string; by: string; evidence: unknown }
  | { t: 'metrics'; req: number; json: MetricObjectWithValues<MetricValue<string>>[] };

/** Every message carries this tag: other cluster traffic (prom-client's) passes by. */
export const TAG = 'faultline';

/** `workers` of the config as a number of processes: `auto` is the cores this process may use. */
export function workerCount(spec: ConfigSpec['workers']): number {
  return spec === 'auto' ? availableParallelism() : spec;
}

/**
 * Metrics the primary owns (experiment state, kills, evidence, config, fleet, probes): the workers'
 * copies of these are dropped before aggregation, everything else is summed over the processes.
 */
export const PRIMARY_OWNED =
  /^faultline_(experiment_state|kill_switch_trips_total|guardrail_|config_|fleet_|probe_)/;
