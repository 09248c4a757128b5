/**
 * Issue 18, 1,000 connections: a connect burst larger than Node's default listen backlog (511) used to
 * overflow the accept queue; the kernel then dropped the handshake's last ACK, and each client whose
 * connection was not yet accepted waited for the SYN-ACK retransmit (1 s) with its request sent: the
 * -c1000 p99 of ~1 s. The listener now asks for a 4096 backlog (capped by net.core.somaxconn).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { proxyConfig, removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { startUpstream, type Upstream } from '../helpers/servers.js';

let up: Upstream;
let fl: TestFaultline;

beforeAll(async () => {
  up = await startUpstream((_req, res) => res.end('ok'));
  fl = await startFaultline(proxyConfig(up.url, { max_connections: 64 }));
});

afterAll(async () => {
  await fl?.stop();
  await up?.close();
  if (fl) await removeDir(fl.stateDir);
});

/** One GET on its own connection; resolves to the status line's code (0 on error/close). */
function get(port: number): Promise<number> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    s.setEncoding('latin1');
    s.on('connect', () => s.write('GET /burst HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'));
    s.on('data', (d: string) => (buf += d));
    s.on('error', () => resolve(0));
    s.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(buf)?.[1] ?? 0)));
  });
}

describe('accept burst', () => {
  it('listens with a 4096 backlog (or the kernel cap), not Node’s 511', () => {
    const port = Number(new URL(fl.url()).port);
    // For a listening socket `ss` shows the backlog as Send-Q (the 4th column of -H output).
    const ss = spawnSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' });
    expect(ss.status, ss.stderr).toBe(0);
    const cols = ss.stdout.trim().split(/\s+/);
    const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim());
    expect(Number(cols[2])).toBe(Math.min(4096, somaxconn));
  });

  it('serves 1,000 connections opened at once, every one answered', async () => {
    const port = Number(new URL(fl.url()).port);
    const codes = await Promise.all(Array.from({ length: 1000 }, () => get(port)));
    const notOk = codes.filter((c) => c !== 200);
    expect(notOk.length).toBe(0);
  }, 30_000);
});
