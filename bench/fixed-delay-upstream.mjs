// A fixed-delay upstream for the harness-accuracy bench: every request is answered (1 KB) D ms after
// it arrived, to ~0.1 ms, so what a load generator reports above D is the generator's (and the hops
// between), not the upstream's timer.
//
//   node bench/fixed-delay-upstream.mjs [PORT] [--delay-ms 5]      prints "READY <port>"
//   GET /anything?ms=N   answers after N ms (default --delay-ms)
//   GET /__hold          the measured hold times since the last reset (JSON, ms), and resets them
//
// Why not setTimeout(send, 5) (bench/upstream.mjs /slow): libuv's timers have 1 ms resolution and are
// set from the loop's cached clock, so a 5 ms timer fires 4.x-6 ms after the request, and that 1 ms
// spread lands in the p99 the bench holds against a 2 ms budget. Here a clock thread sleeps in
// Atomics.wait (sub-ms) until the earliest due time and wakes the main loop with a message, the same
// pacing the load generator uses for its sends.
import { createServer } from 'node:http';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const port = Number(args.find((a, i) => /^\d+$/.test(a) && !args[i - 1]?.startsWith('--')) ?? 0);
const defaultDelayMs = Number(opt('delay-ms', '5'));
// --spin: no clock thread and no sleeping: the loop turns on setImmediate and answers what is due on
// every turn, so neither a request nor a reply waits for the scheduler to wake the process (it takes
// a whole core: only with nothing else on it).
const spin = args.includes('--spin');
const body = Buffer.alloc(1024, 'a');

// wake[0]: absolute due time (timeOrigin-based ms) the clock sleeps until, 0 = nothing queued.
// flag[0]: bumped to interrupt the clock's wait when the earliest due time moves earlier.
const wake = new Float64Array(new SharedArrayBuffer(8));
const flag = new Int32Array(new SharedArrayBuffer(4));
const CLOCK = `
const { parentPort, workerData } = require('node:worker_threads');
const { performance } = require('node:perf_hooks');
const { wake, flag } = workerData;
for (;;) {
  const seen = Atomics.load(flag, 0);
  const due = wake[0];
  if (due === 0) { Atomics.wait(flag, 0, seen); continue; }
  const wait = due - (performance.timeOrigin + performance.now());
  if (wait > 0) { Atomics.wait(flag, 0, seen, wait); continue; }
  wake[0] = 0;
  parentPort.postMessage(0);
}
`;
const clock = spin ? null : new Worker(CLOCK, { eval: true, workerData: { wake, flag } });
clock?.unref();

// Pending replies ordered by due time. With one delay for all, arrivals are already in order and the
// insert is a push; a shorter ?ms= walks back from the tail.
const queue = [];
const holds = [];

function arm() {
  if (spin) return;
  wake[0] = queue.length === 0 ? 0 : performance.timeOrigin + queue[0].due;
  Atomics.add(flag, 0, 1);
  Atomics.notify(flag, 0);
}

function answer(entry, now) {
  holds.push(now - entry.at);
  const res = entry.res;
  if (res.destroyed) return;
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
  res.end(body);
}

function answerDue(slackMs) {
  const now = performance.now();
  let n = 0;
  while (n < queue.length && queue[n].due <= now + slackMs) answer(queue[n++], now);
  if (n > 0) queue.splice(0, n);
}
// Anything due within 50 µs goes now: a second wake-up for it would come later than that.
clock?.on('message', () => {
  answerDue(0.05);
  arm();
});
if (spin) {
  const turn = () => {
    answerDue(0);
    setImmediate(turn);
  };
  setImmediate(turn);
}

function quantile(sorted, q) {
  return sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

const server = createServer((req, res) => {
  const at = performance.now();
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  if (path === '/__hold') {
    const s = holds.splice(0).sort((a, b) => a - b);
    res.setHeader('content-type', 'application/json');
    res.end(
      JSON.stringify({ count: s.length, p50: quantile(s, 0.5), p99: quantile(s, 0.99), max: quantile(s, 1) }),
    );
    return;
  }
  const ms =
    q < 0 ? defaultDelayMs : Number(new URLSearchParams(req.url.slice(q + 1)).get('ms') ?? defaultDelayMs);
  const entry = { at, due: at + ms, res };
  let i = queue.length;
  while (i > 0 && queue[i - 1].due > entry.due) i--;
  queue.splice(i, 0, entry);
  if (i === 0) arm();
  req.resume();
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
server.requestTimeout = 0;
server.listen(port, '127.0.0.1', () => process.stdout.write(`READY ${server.address().port}\n`));
process.on('SIGTERM', () => process.exit(0));
