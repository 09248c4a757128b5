/**
 * `npm start` / `faultline demo`: the ChAP loop on loopback. Starts the auth dependency (:9002) and the
 * checkout service (:9000, calls auth through the egress with a 1 s timeout and fallback), Faultline
 * with config/demo.yaml, and a light open-loop load (100 req/s) so the experiment fills with data.
 * The sample hypothesis is refuted on purpose within about a minute: the kill switch is the demo.
 */
import { fileURLToPath } from 'node:url';
import { startDependency, startService } from '../demo/services.js';
import { LoadGenerator } from '../load/generator.js';
import { Faultline } from '../main.js';
import { handleSignals } from '../cli.js';
export const DEMO_CONFIG = fileURLToPath(new URL('../../config/demo.yaml', import.meta.url));
export async function demoCommand(args) {
    const rateArg = args.indexOf('--rate');
    const rate = rateArg >= 0 ? Number(args[rateArg + 1]) : 100;
    const signals = handleSignals();
    const dependency = await startDependency(9002);
    const service = await startService({
        dependencyUrl: 'http://127.0.0.1:8081',
        timeoutMs: 1000,
        fallback: true,
        port: 9000,
    });
    let fl;
    try {
        fl = await Faultline.start({ configFile: DEMO_CONFIG, watch: true });
    }
    catch (err) {
        process.stderr.write(`faultline demo: ${err.message}\n`);
        await Promise.all([service.close(), dependency.close()]);
        return 1;
    }
    // A demo starts fresh: an experiment killed in an earlier demo run is re-armed (in production only
    // an operator's `arm` does that).
    for (const rt of fl.table.all())
        if (!rt.assigning && fl.table.arm(rt.id, 'demo'))
            process.stdout.write(`re-armed ${rt.id} from an earlier run\n`);
    let load = null;
    if (!args.includes('--no-load') && rate > 0) {
        load = new LoadGenerator({
            target: new URL('http://127.0.0.1:8080/checkout'),
            ratePerS: rate,
            durationMs: 7 * 24 * 3_600_000,
            concurrency: 64,
            method: 'GET',
            body: undefined,
            headers: {},
            experiment: undefined,
        });
        void load.run();
    }
    process.stdout.write(`
Faultline demo is running (config ${DEMO_CONFIG}).
  proxy (ingress)   http://127.0.0.1:8080/checkout   -> checkout :9000 -> egress :8081 -> auth :9002
  admin             http://127.0.0.1:9901  (/experiments, /experiments/auth-latency/report, /metrics, /events)
  load              ${load ? `${rate} req/s into the ingress` : 'off'}

Try:
  curl -s localhost:8080/checkout
  npx faultline status
  npx faultline report auth-latency
  npx faultline kill auth-latency --reason "seen enough"
Ctrl-C stops everything.
`);
    const code = await signals.serve(fl);
    await load?.abort();
    await Promise.all([service.close(), dependency.close()]);
    return code;
}
//# sourceMappingURL=demo.js.map