// The floor for `faultline load`'s accuracy on this machine: an open-loop generator with nothing in it
// but what any generator needs. Same schedule and pacing clock as src/load/generator.ts (a worker
// thread in Atomics.wait, latency from the due time), but no HTTP client library: keep-alive sockets,
// one pre-built request buffer, a response read as "headers, then content-length bytes". What it
// reports above the upstream's delay is the machine's (scheduler wake-ups, loopback, the upstream),
// so `faultline load`'s excess over this, in the same run, is the harness's own.
//
//   node bench/floor-generator.mjs --target URL --rate N --duration 10s [--warmup 2s] [--connections 64]
//
// Prints one JSON object shaped like the subset of `faultline load --json` that
// bench/harness-accuracy.mjs reads. Only for fixed-size, keep-alive, content-length responses (the
// fixed-delay upstream, or Faultline in front of it); anything else is an error, never a guess.
import { connect } from 'node:net';
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const durMs = (d) => {
  const m = /^(\d+(?:\.\d+)?)(ms|s)$/.exec(d);
  if (!m) throw new Error(`bad duration ${d}`);
  return Number(m[1]) * (m[2] === 's' ? 1000 : 1);
};
const target = new URL(opt('target'));
const rate = Number(opt('rate', '2000'));
const windowMs = durMs(opt('duration', '10s'));
const warmupMs = durMs(opt('warmup', '2s'));
const connections = Number(opt('connections', '64'));
// --spin: no clock thread and no sleeping: the loop turns on setImmediate, polling I/O without a
// timeout, so neither a send nor a response waits for a wake-up (a core is spent on it).
const spin = args.includes('--spin');
const intervalMs = 1000 / rate;
const warmN = Math.round((rate * warmupMs) / 1000);
const total = warmN + Math.round((rate * windowMs) / 1000);
const request = Buffer.from(
  `GET ${target.pathname}${target.search} HTTP/1.1\r\nhost: ${target.host}\r\nuser-agent: faultline-floor\r\n\r\n`,
  'latin1',
);
const CRLF2 = Buffer.from('\r\n\r\n');

// Latencies and lateness in µs, preallocated: the floor must not allocate per request either.
const latency = new Float64Array(total - warmN);
const lateness = new Float64Array(total - warmN);
let recorded = 0;
let late = 0;
let errors = 0;
let completed = 0;
let markAt = 0;
// Same shape as `faultline load --json`'s generator.gcPausesMs.
const gc = { count: 0, total: 0, max: 0 };

class Conn {
  constructor() {
    this.dueAt = 0;
    this.measured = false;
    this.need = -1;
    this.head = null;
    this.socket = connect(Number(target.port), target.hostname);
    this.socket.setNoDelay(true);
    this.socket.on('data', onData.bind(this));
    this.socket.on('error', onError);
  }
}
function onError() {
  errors++;
}
function onData(chunk) {
  if (this.need < 0) {
    this.head = this.head === null ? chunk : Buffer.concat([this.head, chunk]);
    const end = this.head.indexOf(CRLF2);
    if (end < 0) return;
    const head = this.head.latin1Slice(0, end).toLowerCase();
    const at = head.indexOf('\r\ncontent-length:');
    if (!head.startsWith('http/1.1 200') || at < 0) {
      process.stderr.write(`floor-generator: unexpected response: ${head.split('\r\n')[0]}\n`);
      process.exit(3);
    }
    const eol = head.indexOf('\r', at + 2);
    this.need = Number(head.slice(at + 17, eol < 0 ? undefined : eol)) - (this.head.length - end - 4);
    this.head = null;
  } else this.need -= chunk.length;
  if (this.need > 0) return;
  this.need = -1;
  done(this);
}

const idle = [];
for (let i = 0; i < connections; i++) idle.push(new Conn());
const backlogDue = [];
let next = 0;
let startedAt = 0;

function send(c, dueAt, measured) {
  c.dueAt = dueAt;
  c.measured = measured;
  if (measured) lateness[late++] = (performance.now() - dueAt) * 1000;
  c.socket.write(request);
}
function done(c) {
  completed++;
  if (c.measured) latency[recorded++] = (performance.now() - c.dueAt) * 1000;
  if (backlogDue.length > 0) {
    const due = backlogDue.shift();
    send(c, due, due >= markAt);
  } else idle.push(c);
  if (completed === total) finish();
}
function tick() {
  const now = performance.now();
  while (next < total) {
    const dueAt = startedAt + next * intervalMs;
    if (dueAt > now) break;
    next++;
    const c = idle.pop();
    if (c) send(c, dueAt, dueAt >= markAt);
    else backlogDue.push(dueAt);
  }
}

const CLOCK = `
const { parentPort, workerData } = require('node:worker_threads');
const { performance } = require('node:perf_hooks');
const { startAbs, intervalMs, count, flag } = workerData;
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const start = startAbs - performance.timeOrigin;
for (let i = 0; i < count; i++) {
  const due = start + i * intervalMs;
  for (;;) { const w = due - performance.now(); if (w <= 0) break; Atomics.wait(sleeper, 0, 0, w); }
  if (Atomics.compareExchange(flag, 0, 0, 1) === 0) parentPort.postMessage(0);
}`;
const flag = new Int32Array(new SharedArrayBuffer(4));

// Let the connections open before the schedule starts (the warm-up also covers it).
setTimeout(() => {
  startedAt = performance.now();
  markAt = startedAt + warmN * intervalMs;
  if (spin) {
    const turn = () => {
      tick();
      if (completed < total) setImmediate(turn);
    };
    setImmediate(turn);
  } else startClock();
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (e.startTime < markAt) continue;
      gc.count++;
      gc.total += e.duration;
      gc.max = Math.max(gc.max, e.duration);
    }
  }).observe({ entryTypes: ['gc'] });
}, 300);

function startClock() {
  const clock = new Worker(CLOCK, {
    eval: true,
    workerData: { startAbs: performance.timeOrigin + startedAt, intervalMs, count: total, flag },
  });
  clock.on('message', () => {
    Atomics.store(flag, 0, 0);
    tick();
  });
  clock.unref();
  setInterval(tick, 1).unref();
}
// Bounded: a run that cannot finish (a dead upstream) ends with what it has, as an error.
setTimeout(
  () => {
    errors += total - completed;
    finish();
  },
  warmupMs + windowMs + 15_000,
).unref();

function quantiles(xs, n) {
  const s = xs.subarray(0, n).sort();
  // µs -> ms to the µs, as the load report rounds.
  const q = (p) => (n === 0 ? null : Math.round(s[Math.min(n - 1, Math.ceil(p * n) - 1)]) / 1000);
  return { p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999), max: q(1) };
}
function finish() {
  const windowEnd = performance.now();
  const out = {
    sent: late,
    completed: recorded,
    errors,
    achievedRatePerS: Math.round((late / (windowEnd - markAt)) * 1000),
    latencyMs: quantiles(latency, recorded),
    arms: {},
    generator: {
      kind: 'floor',
      sendLatenessMs: quantiles(lateness, late),
      gcPausesMs: {
        count: gc.count,
        total: Math.round(gc.total * 1000) / 1000,
        max: Math.round(gc.max * 1000) / 1000,
      },
    },
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(0);
}
