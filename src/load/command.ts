import { EXIT_USAGE } from '../cli/args.js';
import { USAGE, UsageError, parseLoadArgs } from './args.js';
import type { LoadOptions } from './args.js';
import { LoadGenerator } from './generator.js';
import type { GeneratorSnapshot } from './generator.js';
import { fetchExperiments } from './admin.js';
import { buildReport, formatReport } from './report.js';
import type { AdminTrack } from './report.js';

export const EXIT_OK = 0;
export const EXIT_NO_SUCCESS = 1;
export { EXIT_USAGE };
export const EXIT_KILLED = 4;

export interface LoadIo {
  readonly stdout: { write(s: string): unknown };
  readonly stderr: { write(s: string): unknown };
  /** Progress line period; 0 disables the progress line. */
  readonly progressMs?: number;
}

const defaultIo: LoadIo = { stdout: process.stdout, stderr: process.stderr };

function progressLine(s: GeneratorSnapshot, gen: LoadGenerator): string {
  const secs = s.elapsedMs / 1000;
  const rate = secs > 0 ? Math.round(s.sent / secs) : 0;
  const arms = [gen.canaryInjected, gen.canaryPlain, gen.control, gen.untouched];
  const p99 = (Math.max(...arms.map((a) => a.latency.quantileUs(0.99) || 0)) / 1000).toFixed(2);
  const canary = gen.canaryInjected.count + gen.canaryPlain.count;
  // Control is only visible here when the hop sets the arm header; otherwise it is inside "rest".
  const split =
    gen.armMarked > 0
      ? `canary ${canary}  control ${gen.control.count}  untouched ${gen.untouched.count}`
      : `canary ${canary}  rest ${gen.untouched.count}`;
  return (
    `${s.warmingUp ? 'warm-up' : 'load'} ${secs.toFixed(1).padStart(6)}s  sent ${s.sent} (${rate}/s)  done ${s.completed}  in-flight ${s.inFlight}` +
    `  errors ${s.errors}  dropped ${s.dropped}  ${split}  p99<=${p99}ms\n`
  );
}

/** Polls the admin while the run lasts; remembers when each experiment first shows "killed". */
class AdminWatcher {
  readonly track: AdminTrack;
  private busy = false;
  constructor(
    private readonly admin: URL,
    private readonly experiment: string | undefined,
    private readonly startedAt: () => number,
  ) {
    this.track = { url: admin.href, error: null, before: null, after: null, killedAfterS: new Map() };
  }

  private note(list: Awaited<ReturnType<typeof fetchExperiments>>): void {
    const at = (performance.now() - this.startedAt()) / 1000;
    for (const e of list) {
      const wasKilled = this.track.before?.find((b) => b.id === e.id)?.state === 'killed';
      if (e.state === 'killed' && !wasKilled && !this.track.killedAfterS.has(e.id)) {
        this.track.killedAfterS.set(e.id, Math.max(0, at));
      }
    }
  }

  async first(): Promise<void> {
    try {
      this.track.before = await fetchExperiments(this.admin, 2000, this.experiment);
    } catch (err) {
      this.track.error = `before the run: ${(err as Error).message}`;
    }
  }

  private rebasing: Promise<void> | null = null;

  /**
   * At the end of the warm-up: counters are reported as the change from here, so the warm-up's
   * requests stay out of them (those in flight at the mark land on either side). A kill during the
   * warm-up is still noted.
   */
  rebase(): void {
    this.rebasing = fetchExperiments(this.admin, 2000, this.experiment)
      .then((list) => {
        this.note(list);
        // New counters; the state stays the one from before the warm-up ("state before the run").
        const first = this.track.before;
        this.track.before = list.map((e) => ({
          ...e,
          state: first?.find((b) => b.id === e.id)?.state ?? e.state,
        }));
      })
      .catch(() => {
        // Keep the snapshot from before the warm-up: its counts then include the warm-up's.
      });
  }

  poll(): void {
    if (this.busy) return;
    this.busy = true;
    fetchExperiments(this.admin, 900, this.experiment)
      .then((list) => this.note(list))
      .catch(() => {
        // A missed poll is fine: the final read still happens, and it decides "killed".
      })
      .finally(() => {
        this.busy = false;
      });
  }

  async last(): Promise<void> {
    await this.rebasing;
    try {
      this.track.after = await fetchExperiments(this.admin, 2000, this.experiment);
      this.note(this.track.after);
    } catch (err) {
      this.track.error = `${this.track.error ? `${this.track.error}; ` : ''}after the run: ${(err as Error).message}`;
    }
  }
}

export async function runLoad(opts: LoadOptions, io: LoadIo = defaultIo): Promise<number> {
  const gen = new LoadGenerator(opts);
  const watcher = opts.admin ? new AdminWatcher(opts.admin, opts.experiment, () => gen.startedAt) : null;
  if (watcher) await watcher.first();
  if (watcher?.track.error) io.stderr.write(`load: admin ${watcher.track.error}\n`);
  if (watcher && opts.warmupMs > 0 && !watcher.track.error) gen.onMeasureStart = () => watcher.rebase();

  const progressMs = io.progressMs ?? 1000;
  const ticker =
    progressMs > 0
      ? setInterval(() => {
          io.stderr.write(progressLine(gen.snapshot(), gen));
          watcher?.poll();
        }, progressMs)
      : null;
  const onSigint = (): void => {
    io.stderr.write('load: interrupted, cancelling requests in flight\n');
    void gen.abort();
  };
  process.once('SIGINT', onSigint);
  try {
    await gen.run();
  } finally {
    process.removeListener('SIGINT', onSigint);
    if (ticker) clearInterval(ticker);
  }
  if (watcher) await watcher.last();

  const report = buildReport(opts, gen, watcher?.track ?? null);
  io.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatReport(report)}\n`);
  if (report.killed) return EXIT_KILLED;
  // Succeeded: a response below 500 (errors counts 5xx and transport errors alike).
  const succeeded = report.completed - report.errors;
  if (report.sent > 0 && succeeded === 0) {
    io.stderr.write(
      report.completed > report.transportErrors
        ? 'load: no request succeeded: every response was a 5xx or a transport error\n'
        : 'load: no request got a response from the target\n',
    );
    return EXIT_NO_SUCCESS;
  }
  return EXIT_OK;
}

/** Entry point for `faultline load ...`; argv is everything after `load`. Returns the exit code. */
export async function runLoadCommand(argv: string[], io: LoadIo = defaultIo): Promise<number> {
  let opts: LoadOptions | null;
  try {
    opts = parseLoadArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`faultline load: ${err.message}\n\n${USAGE}\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
  if (opts === null) {
    io.stdout.write(`${USAGE}\n`);
    return EXIT_OK;
  }
  return runLoad(opts, io);
}
