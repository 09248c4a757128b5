// Client-abort storm: opens N connections that each send a request the upstream holds (GET
// /slow), waits until the proxy has forwarded them, destroys every client socket at once, then
// times one plain request through the proxy. The proxy passes if that request is served in < 1 s.
// Usage: node bench/storm.mjs PROXY_URL N HOLD_MS     (prints one JSON line)
import { connect } from 'node:net';
import { request } from 'node:http';

const [base, nText = '1000', holdText = '5000'] = process.argv.slice(2);
const n = Number(nText);
const { hostname, port } = new URL(base);
const sockets = [];
let connected = 0;
let failed = 0;
const head = `GET /slow?ms=${holdText} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n\r\n`;

await new Promise((resolve) => {
  let pending = n;
  const done = () => --pending === 0 && resolve();
  for (let i = 0; i < n; i++) {
    const s = connect(Number(port), hostname);
    s.on('connect', () => {
      connected++;
      s.write(head);
      done();
    });
    s.on('error', () => {
      failed++;
      done();
    });
    s.on('data', () => {});
    sockets.push(s);
  }
});
// Give the proxy time to forward the held requests upstream before the clients vanish.
await new Promise((r) => setTimeout(r, 500));
const abortedAt = performance.now();
for (const s of sockets) s.destroy();

const t0 = performance.now();
const status = await new Promise((resolve) => {
  const req = request(`${base}/`, { agent: false, timeout: 5000 }, (res) => {
    res.resume();
    res.on('end', () => resolve(res.statusCode));
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', () => resolve(0));
  req.end();
});
const plainMs = performance.now() - t0;
process.stdout.write(
  `${JSON.stringify({ connections: n, connected, failed, abortedAfterMs: Math.round(abortedAt), plainStatus: status, plainMs: Math.round(plainMs * 100) / 100, ok: status === 200 && plainMs < 1000 })}\n`,
);
