/**
 * faultline run --config FILE          start the proxy (SIGHUP or a file change reloads; SIGTERM drains)
 * faultline validate FILE              check a config file without starting
 * faultline demo                       demo upstream + sample experiment + light load (npm start)
 * faultline status|kill [ID]|arm ID|report ID   talk to a running instance's admin port
 * faultline experiment run ...         run one experiment as a CI gate (exit 0 held, 1 refuted, 2 inconclusive)
 * faultline load ...                   open-loop load generator with a per-arm report
 * faultline schema                     print the config's JSON Schema
 */
import { resolve } from 'node:path';
import { adminCommand } from './cli/admin-client.js';
import { demoCommand } from './cli/demo.js';
import { experimentRunCommand } from './cli/experiment-run.js';
import { configJsonSchema } from './config/json-schema.js';
import { loadConfigFile } from './config/load.js';
import { configWarnings } from './config/warnings.js';
import { ConfigError } from './errors.js';
import { runLoadCommand } from './load/command.js';
import { Faultline } from './main.js';
import { log } from './telemetry/log.js';
const USAGE = `usage: faultline <command> [options]
  run --config FILE [--no-watch]     start Faultline
  validate FILE                      check a config file and exit (0 valid, 1 invalid)
  demo [--no-load] [--rate N]        run the embedded demo (ports 8080, 8081, 9000, 9002, admin 9901)
  status [ID]                        experiments and their arms (admin API)
  kill [ID] [--reason TEXT]          kill one experiment, or every experiment without ID
  arm ID                             re-arm a killed or expired experiment
  report ID [--json]                 the experiment's report (markdown, or JSON)
  experiment run --config FILE --experiment ID --duration 2m [--load URL,RATE]
  load --target URL --rate R --duration D [...]   (faultline load --help)
  schema                             print the config JSON Schema
admin commands use --admin URL (default $FAULTLINE_ADMIN_URL or http://127.0.0.1:9901) and
$FAULTLINE_ADMIN_TOKEN for authorization.`;
export async function main(argv) {
    const [cmd, ...rest] = argv;
    switch (cmd) {
        case 'run':
            return runCommand(rest);
        case 'validate':
            return validateCommand(rest);
        case 'demo':
            return demoCommand(rest);
        case 'status':
        case 'kill':
        case 'arm':
        case 'report':
            return adminCommand(cmd, rest);
        case 'experiment':
            if (rest[0] === 'run')
                return experimentRunCommand(rest.slice(1));
            process.stderr.write('usage: faultline experiment run --config FILE --experiment ID --duration D\n');
            return 3;
        case 'load':
            return runLoadCommand(rest);
        case 'schema':
            process.stdout.write(JSON.stringify(configJsonSchema(), null, 2) + '\n');
            return 0;
        case undefined:
        case '-h':
        case '--help':
        case 'help':
            process.stdout.write(USAGE + '\n');
            return cmd === undefined ? 3 : 0;
        default:
            process.stderr.write(`faultline: unknown command "${cmd}"\n${USAGE}\n`);
            return 3;
    }
}
function flag(args, name) {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
}
async function validateCommand(args) {
    const file = args.find((a) => !a.startsWith('-')) ?? flag(args, '--config');
    if (!file) {
        process.stderr.write('usage: faultline validate FILE\n');
        return 3;
    }
    try {
        const cfg = await loadConfigFile(file);
        process.stdout.write(`${file}: valid (${cfg.listeners.length} listener(s), ${cfg.experiments.length} experiment(s))\n`);
        for (const w of configWarnings(cfg))
            process.stderr.write(`warning: ${w.path}: ${w.reason}\n`);
        return 0;
    }
    catch (err) {
        process.stderr.write(`${err.message}\n`);
        return 1;
    }
}
async function runCommand(args) {
    const file = flag(args, '--config') ?? flag(args, '-c');
    if (!file) {
        process.stderr.write('usage: faultline run --config FILE\n');
        return 3;
    }
    const signals = handleSignals();
    let fl;
    try {
        fl = await Faultline.start({ configFile: resolve(file), watch: !args.includes('--no-watch') });
    }
    catch (err) {
        if (err instanceof ConfigError)
            log('error', 'invalid config', { file: err.file, issues: err.issues });
        else
            log('error', 'cannot start', { error: err.message });
        process.stderr.write(`${err.message}\n`);
        return 1;
    }
    return signals.serve(fl);
}
/**
 * Signal handling, installed before anything starts (a SIGHUP that arrives while Faultline boots must
 * not kill it): SIGTERM/SIGINT drain and exit 0, SIGHUP reloads the config. `serve` resolves with the
 * exit code once a stop signal (also one received during the boot) has drained the instance.
 */
export function handleSignals() {
    let running = null;
    let pending = null;
    let stopping = false;
    let finish = () => undefined;
    const exitCode = new Promise((r) => (finish = r));
    const stop = (signal) => {
        if (running === null) {
            pending = signal;
            return;
        }
        if (stopping)
            return;
        stopping = true;
        log('info', 'signal received', { signal });
        running.stop().then(() => finish(0), (err) => {
            log('error', 'stop failed', { error: err.message });
            finish(1);
        });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => void running?.reload());
    return {
        serve(fl) {
            running = fl;
            if (pending !== null)
                stop(pending);
            return exitCode;
        },
    };
}
//# sourceMappingURL=cli.js.map