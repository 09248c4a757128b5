// The floor of an HTTP/2 proxy in Node: node:http2's stream API on both sides, one upstream session,
// no routing, no timeouts, no faults, headers passed as they come (minus the pseudo-headers the
// client sets itself). What Faultline's h2c -> h2c path costs above this is Faultline's; the rest is
// node:http2's. Usage: node bench/h2-bare-peer.mjs PORT UPSTREAM_URL
import http2 from 'node:http2';

const [port, target] = process.argv.slice(2);
const session = http2.connect(target, { settings: { enablePush: false } });
session.on('error', (e) => {
  console.error(e.message);
  process.exit(1);
});
const server = http2.createServer({ settings: { maxConcurrentStreams: 1000 } });
server.on('stream', (down, headers) => {
  down.on('error', () => {});
  const end = down.readableEnded || headers[':method'] === 'GET';
  const up = session.request(
    { ':method': headers[':method'], ':path': headers[':path'], 'user-agent': headers['user-agent'] ?? '' },
    { endStream: end },
  );
  up.on('error', () => down.destroyed || down.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
  up.on('response', (h) => {
    if (!down.destroyed) down.respond(h);
  });
  up.pipe(down);
  if (!end) down.pipe(up);
});
server.listen(Number(port), '127.0.0.1', () => process.stdout.write(`READY ${server.address().port}\n`));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0)); // exit cleanly so --cpu-prof writes its profile
