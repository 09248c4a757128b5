// Bench upstream: a small, fast Node server on loopback. Bodies are allocated once at start so the
// upstream costs as little CPU per request as Node allows and the proxies are what differs.
//   GET /          1 KB       GET /128k   128 KB      GET /10m   10 MB
//   GET /slow?ms=N 1 KB after N ms (cancelled when the client goes away)
//   POST (any)     drains the request body, answers 1 KB
import { createServer } from 'node:http';

const bodies = {
  '/': Buffer.alloc(1024, 'a'),
  '/128k': Buffer.alloc(128 * 1024, 'b'),
  '/10m': Buffer.alloc(10 * 1024 * 1024, 'c'),
};
const small = bodies['/'];

function send(res, body) {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
  res.end(body);
}

function onSlowClose() {
  clearTimeout(this.slowTimer);
}

const server = createServer((req, res) => {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    req.on('end', () => send(res, small));
    req.resume();
    return;
  }
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  if (path === '/slow') {
    const ms = Number(new URLSearchParams(req.url.slice(q + 1)).get('ms') ?? '1000');
    res.slowTimer = setTimeout(send, ms, res, small);
    res.on('close', onSlowClose);
    return;
  }
  send(res, bodies[path] ?? small);
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
server.requestTimeout = 0;
server.maxRequestsPerSocket = 0;
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`READY ${server.address().port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
