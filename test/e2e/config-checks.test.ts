/**
 * Issue 11 item 14: `validate` rejects what `run` would then fail on, a reload applies a new webhook,
 * and a rejected reload answers the documented {"error": {"code", "message"}} shape.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { parseConfigText } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { exp, oneRoute } from '../helpers/experiments.js';
import { startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { runCli } from '../helpers/process.js';
import { startBaggageEcho } from '../helpers/servers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

const JSON_CT = { 'content-type': 'application/json' };

function configText(admin: string, listenerAddress = '127.0.0.1', port = 8080): string {
  return `
listeners:
  - name: ingress
    address: "${listenerAddress}"
    port: ${port}
    routes:
      - { name: api, path_prefix: /, upstream: http://127.0.0.1:9000, timeout_ms: 1000 }
admin: ${admin}
`;
}

function issuesOf(text: string): { path: string; reason: string }[] {
  try {
    parseConfigText(text, 'c.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).issues];
  }
  return [];
}

async function tempFile(name: string, text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'faultline-validate-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, name);
  await writeFile(file, text);
  return file;
}

describe('validate rejects what run would fail on', () => {
  it('an admin port equal to a listener port on an overlapping address, naming both fields', () => {
    for (const [admin, listener] of [
      ['127.0.0.1', '127.0.0.1'],
      ['0.0.0.0', '127.0.0.1'],
      ['127.0.0.1', '0.0.0.0'],
      ['::', '127.0.0.1'],
      ['::1', '::'],
    ] as const) {
      const issues = issuesOf(
        configText(`{ address: "${admin}", port: 8080, token: a-very-long-admin-token }`, listener),
      );
      expect(issues.length, `${admin} vs ${listener}`).toBe(1);
      expect(issues[0]?.path).toBe('admin.port');
      expect(issues[0]?.reason).toContain('listeners[0].port');
      expect(issues[0]?.reason).toContain('admin.address');
    }
    // Different addresses of one family, a different port, or port 0 (ephemeral) are fine.
    expect(issuesOf(configText('{ address: 127.0.0.1, port: 8080 }', '127.0.0.2'))).toEqual([]);
    expect(issuesOf(configText('{ address: "::1", port: 8080 }', '0.0.0.0'))).toEqual([]);
    expect(issuesOf(configText('{ address: 127.0.0.1, port: 9901 }'))).toEqual([]);
    expect(issuesOf(configText('{ address: 127.0.0.1, port: 0 }', '127.0.0.1', 0))).toEqual([]);
  });

  it('`faultline validate` exits 1 on the port clash and on a non-loopback admin without a token', async () => {
    const clash = await tempFile('clash.yaml', configText('{ address: 127.0.0.1, port: 8080 }'));
    const p1 = runCli(['validate', clash]);
    expect(await p1.exited).toBe(1);
    expect(p1.stderr()).toMatch(/admin\.port: 8080 is also listeners\[0\]\.port/);

    const open = await tempFile('open.yaml', configText('{ address: 0.0.0.0, port: 9901 }'));
    const env = { FAULTLINE_ADMIN_TOKEN: '' };
    const p2 = runCli(['validate', open], env);
    expect(await p2.exited).toBe(1);
    expect(p2.stderr()).toMatch(
      /admin\.address: 0\.0\.0\.0 is not loopback; set admin\.token or FAULTLINE_ADMIN_TOKEN/,
    );
    // ...and `run` refuses it the same way.
    const r = runCli(['run', '--config', open, '--no-watch'], env);
    cleanup.push(async () => void r.child.kill('SIGKILL'));
    expect(await r.exited).toBe(1);
    expect(r.stderr()).toContain('admin.address: 0.0.0.0 is not loopback');

    // A token from the environment is what run would use: then the file is fine.
    const p3 = runCli(['validate', open], { FAULTLINE_ADMIN_TOKEN: 'a-very-long-admin-token' });
    expect(await p3.exited).toBe(0);
    // ...as long as it is as long as admin.token must be.
    const p4 = runCli(['validate', open], { FAULTLINE_ADMIN_TOKEN: 'x' });
    expect(await p4.exited).toBe(1);
    expect(p4.stderr()).toMatch(
      /admin\.token: FAULTLINE_ADMIN_TOKEN is 1 characters; it must be at least 16/,
    );
    const r2 = runCli(['run', '--config', open, '--no-watch'], { FAULTLINE_ADMIN_TOKEN: 'x' });
    cleanup.push(async () => void r2.child.kill('SIGKILL'));
    expect(await r2.exited).toBe(1);
    expect(r2.stderr()).toContain('FAULTLINE_ADMIN_TOKEN is 1 characters');
  });
});

interface Receiver {
  url: string;
  events: { type: string; experiment?: string }[];
}

async function receiver(): Promise<Receiver> {
  const events: Receiver['events'] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      events.push(JSON.parse(body) as Receiver['events'][number]);
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, events };
}

async function until(pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('reload', () => {
  async function faultline(): Promise<TestFaultline> {
    const up = await startBaggageEcho();
    cleanup.push(() => up.close());
    const fl = await startFaultline(oneRoute(up.url, [exp({}), exp({ id: 'e2' })]));
    cleanup.push(() => fl.stop());
    return fl;
  }

  async function rewrite(
    fl: TestFaultline,
    change: (cfg: Record<string, unknown>) => void,
  ): Promise<Response> {
    const cfg = parse(await readFile(fl.configFile, 'utf8')) as Record<string, unknown>;
    change(cfg);
    await writeFile(fl.configFile, stringify(cfg));
    return fetch(`${fl.admin}/config/reload`, { method: 'POST', headers: JSON_CT });
  }

  const kill = (fl: TestFaultline, id: string) =>
    fetch(`${fl.admin}/experiments/${id}/kill`, { method: 'POST', headers: JSON_CT });

  it('a reload that adds a webhook applies it; one that changes it moves notifications over', async () => {
    const fl = await faultline();
    const first = await receiver();
    expect((await rewrite(fl, (c) => (c['webhook'] = { url: first.url }))).status).toBe(200);
    expect((await kill(fl, 'e1')).status).toBe(200);
    await until(() => first.events.length === 1);
    expect(first.events[0]).toMatchObject({ type: 'killed', experiment: 'e1' });

    const second = await receiver();
    expect((await rewrite(fl, (c) => (c['webhook'] = { url: second.url }))).status).toBe(200);
    expect((await kill(fl, 'e2')).status).toBe(200);
    await until(() => second.events.length === 1);
    expect(second.events[0]).toMatchObject({ type: 'killed', experiment: 'e2' });
    expect(first.events.length).toBe(1);
  });

  it('a rejected reload answers 422 with {"error": {"code", "message"}} and the issues', async () => {
    const fl = await faultline();
    const r = await rewrite(fl, (c) => (c['drain_timeout_ms'] = -1));
    expect(r.status).toBe(422);
    const body = (await r.json()) as {
      error: { code: string; message: string; issues: { path: string; reason: string }[] };
    };
    expect(body.error.code).toBe('config_invalid');
    expect(body.error.message).toContain('drain_timeout_ms');
    expect(body.error.issues.map((i) => i.path)).toContain('drain_timeout_ms');
  });
});
