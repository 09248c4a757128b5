/**
 * OpenTelemetry traces end to end: a real Faultline with `tracing.enabled` exports through the OTel SDK's
 * OTLP/HTTP exporter to a receiver in this test (OTLP/JSON on /v1/traces); the spans carry the
 * feature-flag conventions and Faultline's attributes and continue the caller's traceparent.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { createFaultline } from '../../src/inprocess/index.js';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { startBaggageEcho, type Upstream } from '../helpers/servers.js';

interface OtlpAttr {
  key: string;
  value: { stringValue?: string; boolValue?: boolean; intValue?: string | number; doubleValue?: number };
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: OtlpAttr[];
  events?: { name: string; attributes?: OtlpAttr[] }[];
  status?: { code?: number };
}
interface Received {
  resource: Record<string, unknown>;
  span: OtlpSpan;
  attrs: Record<string, unknown>;
}

const attrMap = (list: OtlpAttr[] | undefined): Record<string, unknown> =>
  Object.fromEntries(
    (list ?? []).map((a) => [
      a.key,
      a.value.stringValue ??
        a.value.boolValue ??
        (a.value.intValue !== undefined ? Number(a.value.intValue) : a.value.doubleValue),
    ]),
  );

async function startReceiver(): Promise<{
  url: string;
  spans: Received[];
  contentTypes: Set<string>;
  close(): Promise<void>;
}> {
  const spans: Received[] = [];
  const contentTypes = new Set<string>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      contentTypes.add(String(req.headers['content-type']));
      if (req.url === '/v1/traces' && String(req.headers['content-type']).startsWith('application/json')) {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          resourceSpans: { resource: { attributes: OtlpAttr[] }; scopeSpans: { spans: OtlpSpan[] }[] }[];
        };
        for (const rs of body.resourceSpans)
          for (const ss of rs.scopeSpans)
            for (const span of ss.spans)
              spans.push({
                resource: attrMap(rs.resource.attributes),
                span,
                attrs: attrMap(span.attributes),
              });
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`,
    spans,
    contentTypes,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function experiment(extra: Record<string, unknown> = {}) {
  return {
    id: 'pay-abort',
    hypothesis: 'checkout survives payment errors',
    match: { listener: 'ingress', route: 'api' },
    split: { percent: 20, allow_above_cap: true, sticky: 'header:x-user' },
    fault: { kind: 'abort', status: 503 },
    guardrails: [{ metric: 'error_rate', max_increase: 0.9 }],
    ...extra,
  };
}

async function start(
  tracing: Record<string, unknown> | undefined,
  exp: Record<string, unknown> = experiment(),
): Promise<{ fl: TestFaultline; up: Upstream }> {
  const up = await startBaggageEcho();
  const fl = await startFaultline({
    listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url, timeout_ms: 5000 }] }],
    experiments: [exp],
    ...(tracing ? { tracing } : {}),
  });
  cleanup.push(async () => {
    await fl.stop();
    await up.close();
    await removeDir(fl.stateDir);
  });
  return { fl, up };
}

describe('OpenTelemetry traces', () => {
  it('is off by default: the engine has no tracer', async () => {
    const { fl } = await start(undefined);
    expect(fl.fl.engine.tracer).toBeNull();
  });

  it('exports a span per assigned request over OTLP/HTTP, continuing the traceparent, with feature-flag attributes', async () => {
    const rx = await startReceiver();
    cleanup.push(() => rx.close());
    const { fl } = await start({
      enabled: true,
      endpoint: rx.url,
      export_interval_ms: 100,
      service_name: 'edge-proxy',
    });
    const dispatcher = new Agent({ connections: 8 });
    cleanup.push(() => dispatcher.close());
    const sent = new Map<string, { parent: string; status: number }>();
    const n = 300;
    for (let i = 0; i < n; i += 20) {
      await Promise.all(
        Array.from({ length: 20 }, async (_, j) => {
          const traceId = randomBytes(16).toString('hex');
          const parent = randomBytes(8).toString('hex');
          const r = await request(`${fl.url()}/pay?i=${i + j}`, {
            dispatcher,
            headers: { traceparent: `00-${traceId}-${parent}-01`, 'x-user': `user-${i + j}` },
          });
          await r.body.dump();
          sent.set(traceId, { parent, status: r.statusCode });
        }),
      );
    }
    const view = (await (await request(`${fl.admin}/experiments/pay-abort`)).body.json()) as {
      assigned: { canary: number; control: number };
    };
    const assigned = view.assigned.canary + view.assigned.control;
    expect(view.assigned.canary).toBeGreaterThan(20);
    expect(view.assigned.control).toBeGreaterThan(20);
    await until(() => rx.spans.length >= assigned, 10_000, `${assigned} spans (have ${rx.spans.length})`);
    await new Promise((r) => setTimeout(r, 300));
    // One span per assigned request, none for the untouched ones.
    expect(rx.spans.length).toBe(assigned);
    expect([...rx.contentTypes]).toEqual(['application/json']);

    const byVariant = { canary: 0, control: 0 };
    for (const { span, attrs, resource } of rx.spans) {
      expect(resource['service.name']).toBe('edge-proxy');
      // The caller's trace continues: same trace id, the caller's span is the parent.
      const req = sent.get(span.traceId);
      expect(req, `trace ${span.traceId} was not sent`).toBeDefined();
      expect(span.parentSpanId).toBe(req?.parent);
      expect(span.name).toBe('GET');
      expect(span.kind).toBe(2); // SERVER
      expect(attrs['feature_flag.key']).toBe('pay-abort');
      expect(attrs['feature_flag.provider.name']).toBe('faultline');
      expect(attrs['feature_flag.context.id']).toMatch(/^[0-9a-f]{8}$/);
      expect(attrs['http.request.method']).toBe('GET');
      expect(attrs['url.path']).toBe('/pay');
      expect(attrs['faultline.fault.kind']).toBe('abort');
      expect(attrs['faultline.hop']).toBe('ingress');
      const variant = attrs['feature_flag.result.variant'] as 'canary' | 'control';
      byVariant[variant]++;
      if (variant === 'canary') {
        expect(req?.status).toBe(503);
        expect(attrs['faultline.injected']).toBe(true);
        expect(attrs['faultline.fault.status']).toBe(503);
        expect(attrs['faultline.outcome']).toBe('error');
        expect(span.status?.code).toBe(2); // ERROR
        expect(span.events?.map((e) => e.name)).toContain('faultline.fault.start');
      } else {
        expect(variant).toBe('control');
        expect(req?.status).toBe(200);
        expect(attrs['faultline.injected']).toBe(false);
        expect(attrs['faultline.outcome']).toBe('ok');
      }
    }
    expect(byVariant).toEqual(view.assigned);
  }, 30_000);

  it('a held fault shows its delay, and a kill while it is held is an event on the span', async () => {
    const rx = await startReceiver();
    cleanup.push(() => rx.close());
    const { fl } = await start(
      { enabled: true, endpoint: rx.url, export_interval_ms: 100 },
      experiment({ fault: { kind: 'latency', ms: 5000 }, split: { percent: 50, allow_above_cap: true } }),
    );
    const dispatcher = new Agent({ connections: 20 });
    cleanup.push(() => dispatcher.close());
    const pending = Array.from({ length: 20 }, async (_, i) => {
      const r = await request(`${fl.url()}/slow`, { dispatcher, headers: { 'x-user': `u${i}` } });
      await r.body.dump();
    });
    const active = async () =>
      ((await (await request(`${fl.admin}/experiments/pay-abort`)).body.json()) as { active_faults: number })
        .active_faults;
    const end = Date.now() + 5000;
    while ((await active()) === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    expect(await active()).toBeGreaterThan(0);
    const k = await request(`${fl.admin}/experiments/pay-abort/kill`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'trace test' }),
    });
    await k.body.dump();
    await Promise.all(pending);
    await until(() => rx.spans.some((s) => s.attrs['faultline.injected'] === true), 5000, 'canary spans');
    await new Promise((r) => setTimeout(r, 300));
    const held = rx.spans.filter((s) => s.attrs['faultline.injected'] === true);
    expect(held.length).toBeGreaterThan(0);
    for (const { span, attrs } of held) {
      expect(attrs['faultline.fault.delay_ms']).toBe(5000);
      const kill = span.events?.find((e) => e.name === 'faultline.kill');
      expect(kill, 'kill event').toBeDefined();
      expect(attrMap(kill?.attributes)['faultline.kill.reason']).toBe('trace test');
      // The hold: started for 5000 ms, ended early because the kill released it.
      const names = span.events?.map((e) => e.name) ?? [];
      const start = span.events?.find((e) => e.name === 'faultline.hold.start');
      expect(attrMap(start?.attributes)['faultline.hold.ms']).toBe(5000);
      const end = span.events?.find((e) => e.name === 'faultline.hold.end');
      expect(attrMap(end?.attributes)['faultline.hold.end']).toBe('released');
      expect(names.indexOf('faultline.hold.start')).toBeLessThan(names.indexOf('faultline.kill'));
    }
    // No trace header came in: each span is the root of its own trace.
    for (const { span } of rx.spans) expect(span.parentSpanId ?? '').toBe('');
  }, 20_000);

  it('a hold that runs out: hold start and end (elapsed) events, the delay between them', async () => {
    const rx = await startReceiver();
    cleanup.push(() => rx.close());
    const { fl } = await start(
      { enabled: true, endpoint: rx.url, export_interval_ms: 100 },
      experiment({ fault: { kind: 'latency', ms: 80 }, split: { percent: 50, allow_above_cap: true } }),
    );
    const dispatcher = new Agent({ connections: 10 });
    cleanup.push(() => dispatcher.close());
    await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const r = await request(`${fl.url()}/slow`, { dispatcher, headers: { 'x-user': `h${i}` } });
        await r.body.dump();
      }),
    );
    await until(() => rx.spans.some((s) => s.attrs['faultline.injected'] === true), 5000, 'canary spans');
    await new Promise((r) => setTimeout(r, 300));
    const held = rx.spans.filter((s) => s.attrs['faultline.injected'] === true);
    expect(held.length).toBeGreaterThan(0);
    for (const { span } of held) {
      const ev = span.events as { name: string; timeUnixNano: string; attributes?: OtlpAttr[] }[];
      const start = ev.find((e) => e.name === 'faultline.hold.start');
      const end = ev.find((e) => e.name === 'faultline.hold.end');
      expect(attrMap(end?.attributes)['faultline.hold.end']).toBe('elapsed');
      const heldMs = (Number(BigInt(end!.timeUnixNano) - BigInt(start!.timeUnixNano)) / 1e6) | 0;
      expect(heldMs).toBeGreaterThanOrEqual(75);
      expect(heldMs).toBeLessThan(1000);
    }
    // Control requests are never held: no hold events.
    for (const { span, attrs } of rx.spans)
      if (attrs['faultline.injected'] === false)
        expect(span.events?.map((e) => e.name) ?? []).not.toContain('faultline.hold.start');
  }, 20_000);

  it('untouched requests (none by default, see above): every one at untouched_sample_ratio 1, marked untouched', async () => {
    const rx = await startReceiver();
    cleanup.push(() => rx.close());
    const { fl } = await start({
      enabled: true,
      endpoint: rx.url,
      export_interval_ms: 100,
      untouched_sample_ratio: 1,
    });
    const dispatcher = new Agent({ connections: 8 });
    cleanup.push(() => dispatcher.close());
    const n = 100;
    const traceIds = new Set<string>();
    await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const traceId = randomBytes(16).toString('hex');
        traceIds.add(traceId);
        const r = await request(`${fl.url()}/u?i=${i}`, {
          dispatcher,
          headers: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01`, 'x-user': `u-${i}` },
        });
        await r.body.dump();
      }),
    );
    await until(() => rx.spans.length >= n, 10_000, `${n} spans (have ${rx.spans.length})`);
    await new Promise((r) => setTimeout(r, 300));
    expect(rx.spans.length).toBe(n);
    const untouched = rx.spans.filter((s) => s.attrs['faultline.untouched'] === true);
    const view = (await (await request(`${fl.admin}/experiments/pay-abort`)).body.json()) as {
      assigned: { canary: number; control: number };
    };
    expect(untouched.length).toBe(n - view.assigned.canary - view.assigned.control);
    expect(untouched.length).toBeGreaterThan(20);
    for (const { span, attrs } of untouched) {
      expect(traceIds.has(span.traceId)).toBe(true);
      expect(attrs['feature_flag.key']).toBeUndefined();
      expect(attrs['faultline.hop']).toBe('ingress');
      expect(attrs['faultline.outcome']).toBe('ok');
      expect(attrs['url.path']).toBe('/u');
    }
  }, 20_000);

  it('in-process: an outbound call that inherits the inbound arm gets a CLIENT span, child of the inbound span', async () => {
    const rx = await startReceiver();
    cleanup.push(() => rx.close());
    const dep = await startBaggageEcho();
    const stateDir = await mkdtemp(join(tmpdir(), 'faultline-trace-inproc-'));
    const fl = await createFaultline({
      config: {
        state_dir: stateDir,
        points: [
          { name: 'checkout', role: 'inbound' },
          { name: 'dep', role: 'outbound' },
        ],
        experiments: [
          {
            id: 'dep-slow',
            hypothesis: 'checkout copes with a slow dependency',
            match: { listener: 'checkout' },
            split: { percent: 25, allow_above_cap: true },
            inject: 'downstream',
            fault: { kind: 'latency', ms: 30 },
            guardrails: [{ metric: 'error_rate' }],
          },
        ],
        tracing: { enabled: true, endpoint: rx.url, export_interval_ms: 100 },
      },
    });
    const dispatcher = new Agent().compose(fl.undiciInterceptor('dep'));
    const server = http.createServer(
      fl.inbound('checkout', (_req, res) => {
        void (async () => {
          const r = await request(`${dep.url}/price`, { dispatcher });
          await r.body.dump();
          res.end('ok');
        })();
      }),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(async () => {
      await new Promise<void>((r) => server.close(() => r()));
      await dispatcher.close();
      await fl.close();
      await dep.close();
      await removeDir(stateDir);
    });
    const app = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = new Agent({ connections: 8 });
    cleanup.push(() => client.close());
    for (let i = 0; i < 80; i += 8)
      await Promise.all(
        Array.from({ length: 8 }, async () =>
          (await request(`${app}/buy`, { dispatcher: client })).body.dump(),
        ),
      );
    const hop = fl.engine.get('dep-slow')!.hopCounts()['checkout']!;
    const assigned = hop.canary.requests + hop.control.requests;
    expect(assigned).toBeGreaterThan(10);
    // Two spans per assigned request: the inbound SERVER span and its outbound CLIENT child.
    await until(
      () => rx.spans.length >= 2 * assigned,
      10_000,
      `${2 * assigned} spans (have ${rx.spans.length})`,
    );
    await new Promise((r) => setTimeout(r, 300));
    const server_ = rx.spans.filter((s) => s.span.kind === 2);
    const client_ = rx.spans.filter((s) => s.span.kind === 3);
    expect(server_.length).toBe(assigned);
    expect(client_.length).toBe(assigned);
    const byId = new Map(server_.map((s) => [s.span.spanId, s]));
    for (const c of client_) {
      const parent = byId.get(c.span.parentSpanId ?? '');
      expect(parent, 'the inbound span is the parent').toBeDefined();
      expect(c.span.traceId).toBe(parent!.span.traceId);
      expect(c.attrs['faultline.inherited']).toBe(true);
      expect(c.attrs['feature_flag.key']).toBe('dep-slow');
      expect(c.attrs['feature_flag.result.variant']).toBe(parent!.attrs['feature_flag.result.variant']);
      expect(c.attrs['faultline.hop']).toBe('dep');
      expect(c.attrs['url.path']).toBe('/price');
      // The fault is injected on the outbound call (inject: downstream): its hold is on the child span.
      const canary = c.attrs['feature_flag.result.variant'] === 'canary';
      expect(c.attrs['faultline.injected']).toBe(canary);
      expect((c.span.events ?? []).some((e) => e.name === 'faultline.hold.start')).toBe(canary);
      expect(parent!.attrs['faultline.injected']).toBe(false);
    }
  }, 30_000);
});
