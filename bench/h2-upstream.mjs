// h2c bench upstream: node:http2 with prior knowledge, answering every stream with a 1 KB body
// allocated once (GET) or after draining the request body (POST), so the proxy in front is what
// differs. Usage: node bench/h2-upstream.mjs PORT
import http2 from 'node:http2';

const body = Buffer.alloc(1024, 'a');
const headers = { ':status': 200, 'content-type': 'application/octet-stream', 'content-length': 1024 };
const server = http2.createServer({ settings: { maxConcurrentStreams: 1000 } });
server.on('stream', (stream) => {
  stream.on('error', () => {});
  if (stream.writableEnded || stream.readableEnded) {
    stream.respond(headers);
    stream.end(body);
    return;
  }
  stream.on('end', () => {
    stream.respond(headers);
    stream.end(body);
  });
  stream.resume();
});
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`READY ${server.address().port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
