/**
 * faultline run --config FILE          start the proxy (SIGHUP or a file change reloads; SIGTERM drains)
 * faultline validate FILE              check a config file without starting
 * faultline demo                       demo upstream + sample experiment + light load (npm start)
 * faultline status|kill ID|kill --all|arm ID|report ID|history   talk to a running instance's admin port
 * faultline experiment run ...         run one experiment as a CI gate (exit 0 held, 1 refuted, 2 inconclusive)
 * faultline load ...                   open-loop load generator with a per-arm report
 * faultline schema                     print the config's JSON Schema
 * faultline import istio|envoy FILE     convert Istio / Envoy fault configs into experiments
 * Every command parses its arguments with src/cli/args.ts: --help/-h, unknown flags exit 2.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { EXIT_USAGE, parseCommand, usageError } from './cli/args.js';
import type { Faultline } from './main.js';

// Each command's module is imported when that command runs: the proxy's graph (OpenTelemetry,
// undici, grpc-js, prom-client) took `faultline --version` or `faultline status` to 1.3 s of start-up
// on this machine; a command now loads what it uses.

const USAGE = `usage: faultline <command> [options]      (faultline <command> --help for its options)
  run --config FILE [--no-watch]     start Faultline
  validate FILE                      check a config file and exit (0 valid, 1 invalid)
  demo [--no-load] [--rate N]        run the embedded demo (ports 8080, 8081, 9000, 9002, admin 9901)
  status [ID] [--json]               experiments and their arms (admin API)
  kill ID [--reason TEXT]            kill one running experiment
  kill --all [--reason TEXT]         kill every running experiment
  arm ID                             re-arm a killed or expired experiment
  report ID [--run N] [--json|--html FILE]  the experiment's report (markdown, JSON, or an HTML file); --run: a past run
  history [ID] [--json]              the run journal: recorded runs and their verdicts
  fleet [ID] [--json]                fleet mode: pooled arms, replicas, evaluator (any replica)
  suggest [--json] [--top N]         experiments worth running, ranked from the traffic seen (with YAML)
  experiment run --config FILE --experiment ID [--duration 2m] [--load URL,RATE] [--json] [--junit FILE]
  load --target URL --rate R --duration D [...]
  schema                             print the config JSON Schema
  import istio|envoy FILE [--listener NAME]   Istio/Envoy fault config -> experiments (YAML)
  --version                          print the version
admin commands use --admin URL (default $FAULTLINE_ADMIN_URL or http://127.0.0.1:9901) and
$FAULTLINE_ADMIN_TOKEN for authorization. A usage error (unknown flag, missing argument) exits 2.`;

const RUN_USAGE = `usage: faultline run --config FILE [--no-watch]
  start Faultline; SIGHUP, a change of FILE or POST /config/reload reloads it; SIGTERM/SIGINT drain
  -c, --config FILE   the config file (YAML, or JSON if it ends in .json)
  --no-watch          do not reload when the file changes (SIGHUP and POST /config/reload still do)
  -h, --help          show this help`;

const VALIDATE_USAGE = `usage: faultline validate FILE
  check a config file and exit: 0 valid (warnings on stderr), 1 invalid (every bad field listed)
  -h, --help          show this help`;

const SCHEMA_USAGE = `usage: faultline schema
  print the config's JSON Schema (config/faultline.schema.json is this output)
  -h, --help          show this help`;

const EXPERIMENT_USAGE = `usage: faultline experiment run --config FILE --experiment ID [--duration D] [--load URL,RATE] [--json]
  (faultline experiment run --help for details)`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'run':
      return runCommand(rest);
    case 'validate':
      return validateCommand(rest);
    case 'demo': {
      (await import('./proxy/lean-bind.js')).installLeanAsyncBind(); // see runCommand
      return (await import('./cli/demo.js')).demoCommand(rest);
    }
    case 'status':
    case 'kill':
    case 'arm':
    case 'report':
    case 'history':
    case 'fleet':
    case 'suggest':
      return (await import('./cli/admin-client.js')).adminCommand(cmd, rest);
    case 'experiment':
      if (rest[0] === 'run')
        return (await import('./cli/experiment-run.js')).experimentRunCommand(rest.slice(1));
      if (rest[0] === '--help' || rest[0] === '-h') {
        process.stdout.write(`${(await import('./cli/experiment-run.js')).EXPERIMENT_RUN_USAGE}\n`);
        return 0;
      }
      // Exit 3 (error), not 2: `experiment run` exits 2 for "inconclusive", and a CI gate that lets
      // inconclusive runs pass must not pass `faultline experiment rnu` too.
      return usageError(
        'experiment',
        EXPERIMENT_USAGE,
        rest[0] === undefined ? 'missing subcommand' : `unknown subcommand '${rest[0]}'`,
        3,
      );
    case 'load':
      return (await import('./load/command.js')).runLoadCommand(rest);
    case 'import':
      return (await import('./cli/import.js')).importCommand(rest);
    case 'schema': {
      const parsed = parseCommand('schema', SCHEMA_USAGE, rest, {}, 0);
      if (typeof parsed === 'number') return parsed;
      const { configJsonSchema } = await import('./config/json-schema.js');
      process.stdout.write(JSON.stringify(configJsonSchema(), null, 2) + '\n');
      return 0;
    }
    case '--version':
    case 'version':
      process.stdout.write(`faultline ${version()}\n`);
      return 0;
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE + '\n');
      return 0;
    case undefined:
      process.stderr.write(USAGE + '\n');
      return EXIT_USAGE;
    default:
      process.stderr.write(`faultline: unknown command '${cmd}'\n${USAGE}\n`);
      return EXIT_USAGE;
  }
}

async function validateCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(
    'validate',
    VALIDATE_USAGE,
    args,
    { config: { type: 'string', short: 'c' } },
    1,
  );
  if (typeof parsed === 'number') return parsed;
  const file = parsed.positionals[0] ?? parsed.string('config');
  if (!file) return usageError('validate', VALIDATE_USAGE, 'missing FILE');
  const [{ loadConfigFile }, { adminGuardIssue }, { configWarnings }, { ConfigError }] = await Promise.all([
    import('./config/load.js'),
    import('./config/admin-guard.js'),
    import('./config/warnings.js'),
    import('./errors.js'),
  ]);
  try {
    const cfg = await loadConfigFile(file);
    // What `run` would refuse although the file itself is valid (it depends on the environment).
    const unguarded = adminGuardIssue(cfg);
    if (unguarded !== null) throw new ConfigError(file, [unguarded]);
    process.stdout.write(
      `${file}: valid (${cfg.listeners.length} listener(s), ${cfg.experiments.length} experiment(s))\n`,
    );
    for (const w of configWarnings(cfg)) process.stderr.write(`warning: ${w.path}: ${w.reason}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 1;
  }
}

async function runCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(
    'run',
    RUN_USAGE,
    args,
    { config: { type: 'string', short: 'c' }, 'no-watch': { type: 'boolean' } },
    0,
  );
  if (typeof parsed === 'number') return parsed;
  const file = parsed.string('config');
  if (!file) return usageError('run', RUN_USAGE, 'missing --config FILE');
  // Node 20 builds two util.deprecate wrappers inside every HTTP/2 session.request() (lean-bind.ts).
  // The fix patches a Node core method process-wide, so only the process Faultline owns installs it
  // (`faultline run`, its workers and the demo), never a library host embedding the engine.
  (await import('./proxy/lean-bind.js')).installLeanAsyncBind();
  const { default: cluster } = await import('node:cluster');
  // A worker of `workers: N` (src/cluster): its config and states come from the primary.
  if (cluster.isWorker && process.env['FAULTLINE_WORKER'] !== undefined)
    return (await import('./cluster/worker.js')).runWorker();
  const [
    { handleSignals },
    { loadConfigFile },
    { Faultline: FaultlineHost },
    { workerCount },
    { ConfigError },
    { log },
  ] = await Promise.all([
    import('./cli/signals.js'),
    import('./config/load.js'),
    import('./main.js'),
    import('./cluster/protocol.js'),
    import('./errors.js'),
    import('./telemetry/log.js'),
  ]);
  const signals = handleSignals();
  let fl: Faultline;
  try {
    const configFile = resolve(file);
    const config = await loadConfigFile(configFile);
    fl = await FaultlineHost.start({
      configFile,
      config,
      watch: !parsed.flag('no-watch'),
      workers: workerCount(config.workers),
    });
  } catch (err) {
    if (err instanceof ConfigError) log('error', 'invalid config', { file: err.file, issues: err.issues });
    else log('error', 'cannot start', { error: (err as Error).message });
    process.stderr.write(`${(err as Error).message}\n`);
    return 1;
  }
  return signals.serve(fl);
}
