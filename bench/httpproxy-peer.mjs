// http-proxy peer: the common Node reverse proxy, with a keep-alive agent to the upstream
// (without one http-proxy sends `connection: close` and every request pays a TCP handshake).
// Usage: node bench/httpproxy-peer.mjs PORT UPSTREAM_URL
import { createServer, Agent } from 'node:http';
import httpProxy from 'http-proxy';

const [port, target] = process.argv.slice(2);
const agent = new Agent({ keepAlive: true, maxSockets: 512, keepAliveMsecs: 10_000 });
const proxy = httpProxy.createProxyServer({ target, agent });
proxy.on('error', (_err, _req, res) => {
  // res is a ServerResponse for web requests; a socket for upgrades (none here).
  if (typeof res.writeHead === 'function' && !res.headersSent) res.writeHead(502);
  res.end();
});
const server = createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 120_000;
server.listen(Number(port), '127.0.0.1', () => process.stdout.write(`READY ${server.address().port}\n`));
process.on('SIGTERM', () => process.exit(0));
