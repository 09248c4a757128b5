/**
 * `faultline experiment run`: chaos as a CI gate. Starts Faultline with one experiment (re-armed if a
 * previous run left it killed), optionally drives load, waits for a kill or the duration, prints the
 * report and exits 0 held, 1 refuted, 2 inconclusive, 3 error or aborted.
 */
import { resolve } from 'node:path';
import { loadConfigFile } from '../config/load.js';
import { parseDuration } from '../config/schema.js';
import { experimentReport, reportMarkdown } from '../experiments/report.js';
import { LoadGenerator } from '../load/generator.js';
import { Faultline } from '../main.js';
const EXIT = { held: 0, refuted: 1, inconclusive: 2, error: 3 };
function opt(args, name) {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
}
export async function experimentRunCommand(args) {
    const file = opt(args, '--config');
    const id = opt(args, '--experiment');
    const durationText = opt(args, '--duration') ?? '2m';
    const loadSpec = opt(args, '--load');
    if (!file || !id) {
        process.stderr.write('usage: faultline experiment run --config FILE --experiment ID --duration 2m [--load URL,RATE] [--json]\n');
        return EXIT.error;
    }
    let durationMs;
    let load = null;
    try {
        durationMs = parseDuration(durationText);
        if (loadSpec) {
            const [u, r] = loadSpec.split(',');
            const rate = Number(r);
            if (!u || !(rate > 0))
                throw new Error(`--load must be URL,RATE (got "${loadSpec}")`);
            load = { url: new URL(u), rate };
        }
    }
    catch (err) {
        process.stderr.write(`faultline experiment run: ${err.message}\n`);
        return EXIT.error;
    }
    let fl;
    try {
        const cfg = await loadConfigFile(resolve(file));
        const spec = cfg.experiments.find((e) => e.id === id);
        if (!spec)
            throw new Error(`${file}: no experiment "${id}"`);
        cfg.experiments = [{ ...spec, enabled: true }];
        fl = await Faultline.start({ configFile: resolve(file), config: cfg });
    }
    catch (err) {
        process.stderr.write(`faultline experiment run: ${err.message}\n`);
        return EXIT.error;
    }
    const table = fl.table;
    if (table.get(id)?.assigning === false)
        table.arm(id, 'experiment-run');
    const ended = new Promise((done) => {
        const timer = setTimeout(done, durationMs);
        table.on('event', (e) => {
            if (e.experiment === id && (e.type === 'killed' || e.type === 'expired')) {
                clearTimeout(timer);
                done();
            }
        });
    });
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
    const rt = table.get(id);
    const report = rt ? experimentReport(rt, table.lifecycleOf(id)) : null;
    await fl.stop(1000);
    if (!report)
        return EXIT.error;
    process.stdout.write(args.includes('--json') ? JSON.stringify(report, null, 2) + '\n' : reportMarkdown(report));
    switch (report.verdict) {
        case 'held':
            return EXIT.held;
        case 'refuted':
            return EXIT.refuted;
        case 'inconclusive':
            return EXIT.inconclusive;
        default:
            return EXIT.error;
    }
}
//# sourceMappingURL=experiment-run.js.map