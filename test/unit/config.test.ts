import { readFile, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { configJsonSchema } from '../../src/config/json-schema.js';
import { loadConfigFile, parseConfigText, validateConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { configWarnings } from '../../src/config/warnings.js';

const MINIMAL = `
listeners:
  - name: ingress
    address: 127.0.0.1
    port: 8080
    routes:
      - name: api
        path_prefix: /          # also: host
        upstream: http://127.0.0.1:9000
        timeout_ms: 1000
admin: { address: 127.0.0.1, port: 9901 }
`;

function issuesOf(text: string, file = 'bad.yaml'): { path: string; reason: string }[] {
  try {
    parseConfigText(text, file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).issues];
  }
  throw new Error('config was accepted');
}

const withRoute = (route: string) =>
  MINIMAL.replace('        timeout_ms: 1000', `        timeout_ms: 1000\n${route}`);

describe('config validation', () => {
  it('accepts the minimal file from the README as written, with defaults', () => {
    const cfg = parseConfigText(MINIMAL, 'minimal.yaml');
    expect(cfg.listeners[0]?.routes[0]?.upstream).toBe('http://127.0.0.1:9000');
    expect(cfg.listeners[0]?.protocol).toBe('http1');
    expect(cfg.admin.port).toBe(9901);
    expect(cfg.experiments).toEqual([]);
  });

  it('accepts the experiment example from the experiments issue as written', () => {
    const cfg = parseConfigText(
      `${MINIMAL}
state_dir: /var/lib/faultline
experiments:
  - id: checkout-abort
    hypothesis: "If checkout answers 503 for 5% of calls, the web tier retries and users see no error."
    match: { listener: ingress, route: api, headers: { x-tenant: internal } }
    split: { percent: 5, sticky: "header:x-user-id" }
    fault: { kind: abort, status: 503 }
`,
      'exp.yaml',
    );
    expect(cfg.experiments[0]?.split.percent).toBe(5);
    expect(cfg.experiments[0]?.guardrails.length).toBeGreaterThan(0);
    // Valid, but an abort injected at the observing hop with exclude_injected leaves nothing to judge.
    expect(configWarnings(cfg)).toEqual([
      { path: 'experiments[0].fault.percent', reason: expect.stringMatching(/nothing to judge/) as string },
    ]);
    const partial = parseConfigText(
      `${MINIMAL}
experiments:
  - id: e1
    hypothesis: h
    split: { percent: 5 }
    fault: { kind: abort, status: 503, percent: 10 }
`,
      'exp.yaml',
    );
    expect(configWarnings(partial)).toEqual([]);
  });

  it.each([
    [
      withRoute('      - name: b\n        upstream: ftp://x'),
      'listeners[0].routes[1].upstream',
      /http\(s\) URL/,
    ],
    [
      withRoute('      - name: b\n        upstream: http://h/path'),
      'listeners[0].routes[1].upstream',
      /no path/,
    ],
    [MINIMAL.replace('port: 8080', 'port: 70000'), 'listeners[0].port', /65535/],
    [MINIMAL.replace('port: 8080', 'port: "x"'), 'listeners[0].port', /number/],
    [
      MINIMAL.replace('        upstream: http://127.0.0.1:9000\n', ''),
      'listeners[0].routes[0].upstream',
      /required/,
    ],
    [
      MINIMAL.replace('path_prefix: /  ', 'path_prefix: api'),
      'listeners[0].routes[0].path_prefix',
      /start with/,
    ],
    [
      MINIMAL.replace('timeout_ms: 1000', 'timeout_ms: 1000\n        colour: red'),
      'listeners[0].routes[0]',
      /unknown field.*colour/,
    ],
    [
      withRoute('      - name: api\n        upstream: http://a:1'),
      'listeners[0].routes[1].name',
      /duplicate route/,
    ],
    [
      MINIMAL.replace('address: 127.0.0.1\n    port', 'address: localhost-ish\n    port'),
      'listeners[0].address',
      /IP address/,
    ],
    ['listeners: []', 'listeners', /at least one listener/],
  ])('rejects %#: names the field', (text, path, reason) => {
    const issues = issuesOf(text);
    const hit = issues.find((i) => i.path === path);
    expect(hit, JSON.stringify(issues)).toBeDefined();
    expect(hit?.reason).toMatch(reason);
  });

  it.each([
    ['split: { percent: 10 }', 'experiments[0].split.percent', /at most 5/],
    ['split: { percent: 10, allow_above_cap: true }', null, null],
    ['split: { percent: 0.001 }', 'experiments[0].split.percent', /multiple of 0.01/],
    [
      'split: { percent: 2 }\n    fault: { kind: abort, status: 503, percent: 0.001 }',
      'experiments[0].fault.percent',
      /multiple of 0.01/,
    ],
    ['split: { percent: 2 }\n    duration: 900h', 'experiments[0].duration', /at most 596h/],
    ['split: { percent: 2, sticky: "body:x" }', 'experiments[0].split.sticky', /header:NAME/],
    ['split: { percent: 2 }\n    fault: { kind: abort }', 'experiments[0].fault', /status/],
    ['split: { percent: 2 }\n    fault: { kind: latency }', 'experiments[0].fault', /exactly one/],
    [
      'split: { percent: 2 }\n    fault: { kind: teleport }',
      'experiments[0].fault.kind',
      /latency, abort, timeout, reset/,
    ],
    [
      'split: { percent: 2 }\n    fault: { kind: abort, grpc_status: NOPE }',
      'experiments[0].fault.grpc_status',
      /gRPC status/,
    ],
    [
      'split: { percent: 2 }\n    match: { route: nope }',
      'experiments[0].match.route',
      /no route named "nope"/,
    ],
    ['split: { percent: 2 }\n    duration: 10 minutes', 'experiments[0].duration', /duration like/],
    [
      'split: { percent: 2 }\n    fault: { kind: abort, status: 503, headers: { Transfer-Encoding: chunked } }',
      'experiments[0].fault.headers.Transfer-Encoding',
      /set by Faultline/,
    ],
    [
      'split: { percent: 2 }\n    fault: { kind: abort, status: 503, headers: { x-a: "bad\\r\\nvalue" } }',
      'experiments[0].fault.headers.x-a',
      /characters not allowed/,
    ],
  ])('experiment %s', (line, path, reason) => {
    const text = `${MINIMAL}
experiments:
  - id: e1
    hypothesis: h
    ${line}
${line.includes('fault') ? '' : '    fault: { kind: abort, status: 503 }\n'}`;
    if (path === null) {
      expect(parseConfigText(text, 'x.yaml').experiments[0]?.split.percent).toBe(10);
      return;
    }
    const hit = issuesOf(text).find((i) => i.path === path);
    expect(hit, JSON.stringify(issuesOf(text))).toBeDefined();
    expect(hit?.reason).toMatch(reason as RegExp);
  });

  it('requires a hypothesis', () => {
    const issues = issuesOf(
      `${MINIMAL}\nexperiments:\n  - id: e1\n    hypothesis: "  "\n    split: { percent: 1 }\n    fault: { kind: reset }\n`,
    );
    expect(issues.find((i) => i.path === 'experiments[0].hypothesis')?.reason).toMatch(/hypothesis/);
  });

  it('reports YAML syntax errors and unreadable files with the file name', async () => {
    expect(() => parseConfigText('listeners: [\n', 'broken.yaml')).toThrow(/broken\.yaml[\s\S]*invalid YAML/);
    await expect(loadConfigFile('/nonexistent/faultline.yaml')).rejects.toThrow(/cannot read file/);
    expect(() => parseConfigText('{"listeners": ', 'c.json')).toThrow(/invalid JSON/);
  });

  it('reads JSON config files too', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fl-cfg-'));
    const file = join(dir, 'c.json');
    await writeFile(
      file,
      JSON.stringify({
        listeners: [{ name: 'a', port: 1, routes: [{ name: 'r', upstream: 'http://127.0.0.1:2' }] }],
      }),
    );
    expect((await loadConfigFile(file)).listeners[0]?.routes[0]?.timeout_ms).toBe(15_000);
  });

  it('publishes a JSON Schema that is current (regenerate with npm run schema)', async () => {
    const published = JSON.parse(
      await readFile(new URL('../../config/faultline.schema.json', import.meta.url), 'utf8'),
    ) as unknown;
    expect(published).toEqual(JSON.parse(JSON.stringify(configJsonSchema())));
  });

  it('every shipped config file is valid', async () => {
    for (const f of ['demo.yaml', 'minimal.yaml', 'docker.yaml', 'inprocess.yaml'])
      await loadConfigFile(new URL(`../../config/${f}`, import.meta.url).pathname);
  });

  it('the Kubernetes sidecar manifest carries a valid config', async () => {
    const manifest = await readFile(new URL('../../deploy/kubernetes/sidecar.yaml', import.meta.url), 'utf8');
    const configMaps = parseAllDocuments(manifest)
      .map((d) => d.toJS() as { kind?: string; data?: Record<string, string> })
      .filter((d) => d.kind === 'ConfigMap' && d.data?.['faultline.yaml'] !== undefined);
    expect(configMaps.length).toBe(1);
    const cfg = parseConfigText(configMaps[0]?.data?.['faultline.yaml'] as string, 'sidecar.yaml');
    expect(cfg.listeners.map((l) => l.name)).toEqual(['ingress', 'egress']);
    expect(configWarnings(cfg)).toEqual([]);
  });

  it('the Kubernetes fleet manifest carries a valid fleet config', async () => {
    const manifest = await readFile(new URL('../../deploy/kubernetes/fleet.yaml', import.meta.url), 'utf8');
    const configMaps = parseAllDocuments(manifest)
      .map((d) => d.toJS() as { kind?: string; data?: Record<string, string> })
      .filter((d) => d.kind === 'ConfigMap' && d.data?.['faultline.yaml'] !== undefined);
    expect(configMaps.length).toBe(1);
    const cfg = parseConfigText(configMaps[0]?.data?.['faultline.yaml'] as string, 'fleet.yaml');
    expect(cfg.fleet).toMatchObject({ name: 'checkout', grant_ttl_ms: 2000, flush_ms: 200 });
    expect(configWarnings(cfg)).toEqual([]);
  });

  it('fleet config errors name the field and the rule', () => {
    const base = { experiments: [] };
    expect(() => validateConfig({ ...base, fleet: { redis: 'http://x', name: 'c' } }, 'f.yaml')).toThrow(
      /fleet\.redis.*redis:\/\//,
    );
    expect(() =>
      validateConfig(
        { ...base, fleet: { redis: 'redis://r:6379', name: 'c', flush_ms: 800, grant_ttl_ms: 1000 } },
        'f.yaml',
      ),
    ).toThrow(/fleet\.flush_ms.*half/);
  });

  it('sticky splits in a fleet: error/timeout guardrails pool per session; a latency guardrail is refused, saying why', () => {
    const e = (guardrails?: unknown[]) => ({
      id: 's',
      hypothesis: 'h',
      split: { percent: 5, sticky: 'header:x-user' },
      fault: { kind: 'abort', status: 503 },
      ...(guardrails ? { guardrails } : {}),
    });
    const cfg = (x: unknown) => ({
      listeners: [{ name: 'l', port: 0, routes: [{ name: 'r', upstream: 'http://127.0.0.1:1' }] }],
      fleet: { redis: 'redis://r:6379', name: 'c' },
      experiments: [x],
    });
    expect(() =>
      validateConfig(cfg(e([{ metric: 'error_rate' }, { metric: 'timeout_rate' }])), 'f.yaml'),
    ).not.toThrow();
    // The default guardrails include latency: the message says what to list instead.
    expect(() => validateConfig(cfg(e()), 'f.yaml')).toThrow(
      /experiments\[0\]\.guardrails\[1\]: a latency guardrail cannot judge a sticky split in a fleet .* use error_rate\/timeout_rate guardrails/,
    );
  });
});
