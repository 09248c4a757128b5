/**
 * `faultline experiment run`: chaos as a CI gate. Starts Faultline with one experiment (re-armed if a
 * previous run left it killed), optionally drives load, waits for a kill or the duration, prints the
 * report and exits 0 held, 1 refuted, 2 inconclusive, 3 error or aborted, 4 stopped (a steady-state stop
 * condition), 5 not started (a `before` probe failed), 6 inconclusive because the control arm itself
 * was unhealthy (its own code: a CI gate may retry 2 later, 6 says the service was sick without the fault).
 */
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { loadConfigFile } from '../config/load.js';
import { parseDuration } from '../config/schema.js';
import { experimentReport, reportMarkdown } from '../experiments/report.js';
import { LoadGenerator } from '../load/generator.js';
import { Faultline } from '../main.js';
import { parseCommand, usageError, type OptionSpecs } from './args.js';
import { junitXml } from './junit.js';

const EXIT = {
  held: 0,
  refuted: 1,
  inconclusive: 2,
  error: 3,
  stopped: 4,
  not_started: 5,
  control_unhealthy: 6,
} as const;

export const EXPERIMENT_RUN_USAGE = `usage: faultline experiment run --config FILE --experiment ID [--duration D] [--load URL,RATE] [--json] [--junit FILE]
  chaos as a CI gate: starts Faultline from FILE with only experiment ID (re-armed), optionally drives
  load, waits for a kill or the duration, prints the report
  -c, --config FILE     the config file
  --experiment ID       the experiment to run (required)
  --duration D          how long at most: 90s, 2m, 500ms (default 2m)
  --load URL,RATE       open-loop load of RATE req/s to URL while it runs
  --json                print the report as JSON instead of markdown
  --junit FILE          also write the result as JUnit XML (one test case per guardrail) for CI
  -h, --help            show this help
exit codes: 0 held, 1 refuted, 2 inconclusive, 3 error, aborted or a usage error (2 means inconclusive here),
  4 stopped by a steady-state stop condition, 5 not started (a before probe failed),
  6 inconclusive: the control arm itself was unhealthy (error or timeout rate above control_health)`;

const FLAGS: OptionSpecs = {
  config: { type: 'string', short: 'c' },
  experiment: { type: 'string' },
  duration: { type: 'string' },
  load: { type: 'string' },
  json: { type: 'boolean' },
  junit: { type: 'string' },
};

export async function experimentRunCommand(args: string[]): Promise<number> {
  // Usage errors exit 3 here, not 2: a CI gate must not read a typo as "inconclusive".
  const parsed = parseCommand('experiment run', EXPERIMENT_RUN_USAGE, args, FLAGS, 0, EXIT.error);
  if (typeof parsed === 'number') return parsed;
  const file = parsed.string('config');
  const id = parsed.string('experiment');
  const durationText = parsed.string('duration') ?? '2m';
  const loadSpec = parsed.string('load');
  if (!file || !id)
    return usageError(
      'experiment run',
      EXPERIMENT_RUN_USAGE,
      `missing ${file ? '--experiment ID' : '--config FILE'}`,
      EXIT.error,
    );
  let durationMs: number;
  let load: { url: URL; rate: number } | null = null;
  try {
    durationMs = parseDuration(durationText);
    if (loadSpec) {
      const [u, r] = loadSpec.split(',');
      const rate = Number(r);
      if (!u || !(rate > 0)) throw new Error(`--load must be URL,RATE (got "${loadSpec}")`);
      load = { url: new URL(u), rate };
    }
  } catch (err) {
    process.stderr.write(`faultline experiment run: ${(err as Error).message}\n`);
    return EXIT.error;
  }

  let fl: Faultline;
  try {
    const cfg = await loadConfigFile(resolve(file));
    const spec = cfg.experiments.find((e) => e.id === id);
    if (!spec) throw new Error(`${file}: no experiment "${id}"`);
    // A CI run is one run now: the experiment's schedule, if any, does not apply here.
    const now = { ...spec, enabled: true };
    delete now.schedule;
    cfg.experiments = [now];
    fl = await Faultline.start({ configFile: resolve(file), config: cfg });
  } catch (err) {
    process.stderr.write(`faultline experiment run: ${(err as Error).message}\n`);
    return EXIT.error;
  }
  const table = fl.table;
  const state = table.get(id)?.state;
  if (state === 'killed' || state === 'expired') {
    try {
      await table.arm(id, 'experiment-run');
    } catch (err) {
      process.stderr.write(`faultline experiment run: cannot re-arm ${id}: ${(err as Error).message}\n`);
      await fl.stop(0);
      return EXIT.error;
    }
  }

  const ended = new Promise<void>((done) => {
    const timer = setTimeout(done, durationMs);
    // The steady-state gate may have refused the run before this listener was added.
    if (table.get(id)?.state === 'blocked') done();
    table.on('event', (e) => {
      if (e.experiment === id && (e.type === 'killed' || e.type === 'expired' || e.type === 'not_started')) {
        clearTimeout(timer);
        done();
      }
    });
  });
  const startedMs = Date.now();
  const gen = load
    ? new LoadGenerator({
        target: load.url,
        ratePerS: load.rate,
        durationMs,
        concurrency: 256,
        method: 'GET',
        body: undefined,
        headers: {},
        experiment: undefined,
      })
    : null;
  void gen?.run();
  await ended;
  await gen?.abort();
  table.complete(id, 'experiment run finished its duration');
  // The report waits for the steady-state recovery checks (bounded by each probe's recovery_window).
  await fl.probes.settled(id);
  const rt = table.get(id);
  const report = rt ? experimentReport(rt, table.lifecycleOf(id)) : null;
  await fl.stop(1000);
  if (!report) return EXIT.error;
  const junit = parsed.string('junit');
  if (junit !== undefined) {
    try {
      await writeFile(junit, junitXml(report, (Date.now() - startedMs) / 1000));
    } catch (err) {
      process.stderr.write(
        `faultline experiment run: cannot write --junit ${junit}: ${(err as Error).message}\n`,
      );
      return EXIT.error;
    }
  }
  process.stdout.write(parsed.flag('json') ? JSON.stringify(report, null, 2) + '\n' : reportMarkdown(report));
  switch (report.verdict) {
    case 'held':
      return EXIT.held;
    case 'refuted':
      return EXIT.refuted;
    case 'inconclusive':
      return report.verdict_cause === 'control_unhealthy' ? EXIT.control_unhealthy : EXIT.inconclusive;
    case 'stopped':
      return EXIT.stopped;
    case 'not_started':
      return EXIT.not_started;
    default:
      return EXIT.error;
  }
}
