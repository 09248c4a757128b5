import { readFileSync } from 'node:fs';
export class UsageError extends Error {
    code = 'FL_LOAD_USAGE';
}
export const USAGE = `usage: faultline load --target URL --rate R --duration D [options]

Open-loop load generator: sends R requests per second on a fixed schedule for D, measures latency
from each request's scheduled send time (no coordinated omission) and reports per experiment arm:
canary (x-faultline-arm group=canary, or x-faultline-injected), control (group=control) and
untouched (neither). Faultline sets x-faultline-arm when its config has \`arm_header: true\`;
without it, control is shown from the admin's counts (--admin).

  --target URL          http(s) URL to load (required)
  --rate R              requests per second, > 0 (required)
  --duration D          run time: 10s, 500ms, 2m, or plain seconds (required)
  --concurrency C       max connections to the target (default: 64)
  --method M            HTTP method (default: GET, or POST when --body is given)
  --body STR|@file      request body, literally or read from a file
  --header 'k: v'       extra request header; repeatable
  --admin URL           Faultline admin base URL; reads GET /experiments/{id} (or GET /experiments
                        without --experiment) before, during and after the run
  --experiment ID       experiment to report on (default: every experiment's marks, and every
                        experiment the admin lists)
  --json                print the report as JSON on stdout
  -h, --help            show this help

exit codes: 0 done, 1 no request succeeded, 3 bad arguments, 4 the experiment was killed during the run`;
const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m)?$/;
export function parseDurationMs(text) {
    const m = DURATION_RE.exec(text.trim());
    if (!m)
        throw new UsageError(`--duration: expected e.g. 10s, 500ms, 2m; got '${text}'`);
    const n = Number(m[1]);
    const unit = m[2] ?? 's';
    const ms = unit === 'ms' ? n : unit === 'm' ? n * 60_000 : n * 1000;
    if (!(ms > 0))
        throw new UsageError(`--duration: must be > 0; got '${text}'`);
    return ms;
}
function parseUrl(flag, text) {
    let url;
    try {
        url = new URL(text);
    }
    catch {
        throw new UsageError(`${flag}: not a URL: '${text}'`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw new UsageError(`${flag}: must be http:// or https://; got '${url.protocol}'`);
    }
    return url;
}
function parsePositive(flag, text, integer) {
    const n = Number(text);
    if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
        throw new UsageError(`${flag}: expected a ${integer ? 'positive integer' : 'number > 0'}; got '${text}'`);
    }
    return n;
}
/** Returns null for --help. Throws UsageError naming the flag and the rule it broke. */
export function parseLoadArgs(argv) {
    let target;
    let ratePerS;
    let durationMs;
    let concurrency = 64;
    let method;
    let body;
    const headers = {};
    let admin;
    let experiment;
    let json = false;
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i] ?? '';
        if (arg === '-h' || arg === '--help')
            return null;
        if (arg === '--json') {
            json = true;
            continue;
        }
        // Accept both `--flag value` and `--flag=value`.
        let flag = arg;
        let value;
        const eq = arg.indexOf('=');
        if (arg.startsWith('--') && eq > 0) {
            flag = arg.slice(0, eq);
            value = arg.slice(eq + 1);
        }
        const known = [
            '--target',
            '--rate',
            '--duration',
            '--concurrency',
            '--method',
            '--body',
            '--header',
            '--admin',
            '--experiment',
        ];
        if (!known.includes(flag))
            throw new UsageError(`unknown argument '${arg}'`);
        if (value === undefined) {
            value = argv[++i];
            if (value === undefined)
                throw new UsageError(`${flag}: missing value`);
        }
        switch (flag) {
            case '--target':
                target = parseUrl(flag, value);
                break;
            case '--rate':
                ratePerS = parsePositive(flag, value, false);
                break;
            case '--duration':
                durationMs = parseDurationMs(value);
                break;
            case '--concurrency':
                concurrency = parsePositive(flag, value, true);
                break;
            case '--method':
                if (!/^[A-Za-z]+$/.test(value))
                    throw new UsageError(`--method: not a method name: '${value}'`);
                method = value.toUpperCase();
                break;
            case '--body':
                if (value.startsWith('@')) {
                    try {
                        body = readFileSync(value.slice(1));
                    }
                    catch (err) {
                        throw new UsageError(`--body: cannot read '${value.slice(1)}': ${err.message}`);
                    }
                }
                else {
                    body = Buffer.from(value);
                }
                break;
            case '--header': {
                const colon = value.indexOf(':');
                const name = colon > 0 ? value.slice(0, colon).trim().toLowerCase() : '';
                if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) {
                    throw new UsageError(`--header: expected 'name: value'; got '${value}'`);
                }
                headers[name] = value.slice(colon + 1).trim();
                break;
            }
            case '--admin':
                admin = parseUrl(flag, value);
                break;
            case '--experiment':
                if (value.length === 0)
                    throw new UsageError('--experiment: must not be empty');
                experiment = value;
                break;
        }
    }
    if (!target)
        throw new UsageError('--target is required');
    if (ratePerS === undefined)
        throw new UsageError('--rate is required');
    if (durationMs === undefined)
        throw new UsageError('--duration is required');
    return {
        target,
        ratePerS,
        durationMs,
        concurrency,
        method: method ?? (body ? 'POST' : 'GET'),
        body,
        headers,
        admin,
        experiment,
        json,
    };
}
//# sourceMappingURL=args.js.map