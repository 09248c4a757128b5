/**
 * `faultline import istio|envoy FILE` (dist/bin.js, as a user runs it): Istio VirtualService faults and
 * Envoy HTTPFault configs become experiments that validate, say what they could not map, and behave as
 * the source would for the canary (run here through a real Faultline proxy).
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, startFaultline } from '../helpers/faultline.js';
import { startUpstream } from '../helpers/servers.js';

const BIN = new URL('../../dist/bin.js', import.meta.url).pathname;
let dir: string;

interface Exp {
  id: string;
  hypothesis: string;
  match: unknown;
  split: unknown;
  fault: unknown;
  guardrails: { metric: string }[];
  enabled?: boolean;
  max_active_faults?: number;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'faultline-import-'));
});
afterAll(async () => {
  await removeDir(dir);
});

async function runImport(kind: string, text: string, ...extra: string[]) {
  const file = join(dir, `${kind}-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(file, text);
  const r = spawnSync(process.execPath, [BIN, 'import', kind, file, ...extra], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  const out = r.status === 0 ? (parse(r.stdout) as { experiments: Exp[] }) : null;
  return { status: r.status, experiments: out?.experiments ?? [], stderr: r.stderr };
}

const VS = `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: { name: ratings }
spec:
  hosts: [ratings]
  http:
    - name: jason
      match:
        - headers: { end-user: { exact: jason } }
          uri: { prefix: /ratings }
          method: { exact: GET }
        - sourceLabels: { app: reviews }
      fault:
        abort: { httpStatus: 503, percentage: { value: 40 } }
        delay: { fixedDelay: 1.5s, percentage: { value: 0.5 } }
      route: [{ destination: { host: ratings } }]
    - match: [{ uri: { regex: "^/v[0-9]+/grpc" } }]
      fault:
        abort: { grpcStatus: UNAVAILABLE, percentage: { value: 2 } }
      route: [{ destination: { host: ratings } }]
---
apiVersion: v1
kind: Service
metadata: { name: ratings }
`;

describe('faultline import', () => {
  it('istio: delay, abort, gRPC abort, header/uri/method match, mixed percentages; warns on what it cannot map', async () => {
    const r = await runImport('istio', VS);
    expect(r.status).toBe(0);
    const byId = Object.fromEntries(r.experiments.map((e) => [e.id, e])) as Record<string, Exp>;
    expect(Object.keys(byId)).toEqual([
      'ratings-jason-m0-abort',
      'ratings-jason-m0-delay',
      'ratings-jason-m1-abort',
      'ratings-jason-m1-delay',
      'ratings-1-abort',
    ]);
    const a = byId['ratings-jason-m0-abort'] as Exp;
    expect(a.match).toEqual({
      listener: 'ingress',
      headers: { 'end-user': 'jason' },
      path_prefix: '/ratings',
      methods: ['GET'],
    });
    expect(a.split).toEqual({ percent: 40, allow_above_cap: true });
    expect(a.fault).toEqual({ kind: 'abort', status: 503 });
    expect(a.guardrails.map((g) => g.metric)).toEqual(['error_rate', 'latency']);
    expect(a.hypothesis).toMatch(/^TODO/);
    expect(a.enabled).toBeUndefined();
    // Two faults on the same requests: the second experiment waits its turn.
    expect(byId['ratings-jason-m0-delay']!.fault).toEqual({ kind: 'latency', ms: 1500 });
    expect(byId['ratings-jason-m0-delay']!.split).toEqual({ percent: 0.5 });
    expect(byId['ratings-jason-m0-delay']!.enabled).toBe(false);
    // sourceLabels / regex URI cannot be matched on: broader than the source, imported disabled.
    expect(byId['ratings-jason-m1-abort']!.enabled).toBe(false);
    expect(byId['ratings-1-abort']!.fault).toEqual({ kind: 'abort', grpc_status: 'UNAVAILABLE' });
    expect(byId['ratings-1-abort']!.enabled).toBe(false);
    expect(r.stderr).toMatch(/sourceLabels .* has no Faultline equivalent/);
    expect(r.stderr).toMatch(/regex URIs cannot be mapped/);
    expect(r.stderr).toMatch(/kind Service skipped/);
    expect(r.stderr).toMatch(/above Faultline's 5% safety cap/);
    expect(r.stderr).toMatch(/-abort" answers every canary request with the abort[\s\S]*inject: downstream/);
  });

  it('envoy: an HTTPFault inside an Envoy config, per-ten-thousand percentages, header matchers', async () => {
    const r = await runImport(
      'envoy',
      `static_resources:
  listeners:
    - filter_chains:
        - filters:
            - typed_config:
                http_filters:
                  - name: envoy.filters.http.fault
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                      max_active_faults: 10
                      abort: { http_status: 502, percentage: { numerator: 250, denominator: TEN_THOUSAND } }
                      delay: { fixed_delay: 0.2s, header_delay: {} }
                      headers:
                        - { name: x-tenant, string_match: { exact: acme } }
                        - { name: ":method", exact_match: POST }
`,
      '--listener',
      'envoy',
    );
    expect(r.status).toBe(0);
    const [abort, delay] = r.experiments;
    expect(abort?.split).toEqual({ percent: 2.5 });
    expect(abort?.fault).toEqual({ kind: 'abort', status: 502 });
    expect(abort?.match).toEqual({ listener: 'envoy', methods: ['POST'], headers: { 'x-tenant': 'acme' } });
    expect(abort?.max_active_faults).toBe(10);
    expect(delay?.fault).toEqual({ kind: 'latency', ms: 200 });
    expect(delay?.split).toEqual({ percent: 50, allow_above_cap: true });
    expect(r.stderr).toMatch(/header_delay: header-controlled delays/);
  });

  it('the imported abort behaves as the source for the canary: matching requests, at its rate', async () => {
    const r = await runImport(
      'istio',
      `kind: VirtualService
metadata: { name: shop }
spec:
  http:
    - match: [{ uri: { prefix: /pay }, headers: { x-user: { exact: a } } }]
      fault: { abort: { httpStatus: 503, percentage: { value: 30 } } }
`,
    );
    expect(r.status).toBe(0);
    const up = await startUpstream((req, res) => {
      req.resume();
      res.end('ok');
    });
    const fl = await startFaultline({
      listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url }] }],
      arm_header: true,
      experiments: r.experiments,
    });
    try {
      let canary = 0;
      let aborted = 0;
      for (let i = 0; i < 200; i++) {
        const res = await fetch(`${fl.url()}/pay/x`, { headers: { 'x-user': 'a' } });
        await res.text();
        if (res.headers.get('x-faultline-arm')?.endsWith('canary')) {
          canary++;
          if (res.status === 503) aborted++;
        }
      }
      expect(aborted).toBe(canary);
      // 30% canary of 200: well inside 35..85 (binomial sd about 6.5).
      expect(canary).toBeGreaterThan(35);
      expect(canary).toBeLessThan(85);
      // Not matched: other paths and other users are untouched.
      for (const [path, user] of [
        ['/other', 'a'],
        ['/pay', 'b'],
      ] as const) {
        const res = await fetch(`${fl.url()}${path}`, { headers: { 'x-user': user } });
        await res.text();
        expect(res.headers.get('x-faultline-arm')).toBeNull();
      }
    } finally {
      await fl.stop();
      await up.close();
      await removeDir(fl.stateDir);
    }
  });

  it('nothing to import, or bad input: exit 1 with the reason; a bad source name is a usage error', async () => {
    const none = await runImport(
      'istio',
      'kind: VirtualService\nmetadata: { name: x }\nspec: { http: [] }\n',
    );
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/no http\[\]\.fault found/);
    const bad = await runImport('envoy', 'a: [');
    expect(bad.status).toBe(1);
    expect((await runImport('linkerd', 'x: 1')).status).toBe(2);
  });
});
