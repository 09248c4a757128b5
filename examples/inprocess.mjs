// In-process mode: an app hosts Faultline itself, no proxy. Run after `npm run build`:
//   node examples/inprocess.mjs
// A dependency (prices) and the app (checkout) start on free ports; 25% of checkout's requests are
// canary and their calls to prices get a 503. This app has no fallback, so the error-rate guardrail
// refutes the hypothesis and the kill switch stops the fault; the script prints the verdict.
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { createFaultline } from 'faultline';

const listen = (handler) =>
  new Promise((resolve) => {
    const server = http.createServer(handler).listen(0, '127.0.0.1', () => resolve(server));
  });
const url = (server) => `http://127.0.0.1:${server.address().port}`;

const prices = await listen((req, res) => res.end('4.20'));

const fl = await createFaultline({
  config: {
    // A fresh state dir per run: a kill persists, so reusing one would start this run killed.
    state_dir: mkdtempSync(join(tmpdir(), 'faultline-example-')),
    points: [
      { name: 'checkout', role: 'inbound' }, // splits and observes the app's requests
      { name: 'prices', role: 'outbound' }, // injects into canary calls to the dependency
    ],
    experiments: [
      {
        id: 'prices-down',
        hypothesis: 'checkout keeps answering when the price service fails',
        match: { listener: 'checkout' },
        split: { percent: 25, allow_above_cap: true },
        inject: 'downstream',
        fault: { kind: 'abort', status: 503 },
        guardrails: [{ metric: 'error_rate' }],
        min_samples: 30,
      },
    ],
  },
});

const dispatcher = new Agent().compose(fl.undiciInterceptor('prices'));
const app = await listen(
  fl.inbound('checkout', async (req, res) => {
    const dep = await request(`${url(prices)}/price`, { dispatcher });
    const body = await dep.body.text();
    res.writeHead(dep.statusCode === 200 ? 200 : 500).end(body); // no fallback: a fragile app
  }),
);

const admin = await fl.admin.listen(0, '127.0.0.1');
let errors = 0;
for (let i = 0; i < 400; i++) {
  const res = await request(`${url(app)}/checkout`);
  await res.body.text();
  if (res.statusCode !== 200) errors++;
}
const report = await (await fetch(`http://127.0.0.1:${admin.port}/experiments/prices-down/report`)).json();
console.log(
  `${errors} of 400 checkout requests failed; experiment ${report.state}, verdict ${report.verdict}`,
);
console.log(report.verdict_reason);

await dispatcher.close();
await fl.close();
app.close();
prices.close();
process.exitCode = report.verdict === 'refuted' ? 0 : 1;
