/**
 * Issue 11, items 7 and 8, through real servers: client -> Faultline ingress (untrusted) -> a service
 * that forwards `baggage` to its dependency -> Faultline egress (trusted) -> a dependency that echoes
 * the baggage it saw.
 *
 * - Laundering: the service uses OpenTelemetry's W3C propagator, which percent-decodes keys, so a forged
 *   `faultline%2Eexp` that passed the edge would reach the egress as `faultline.exp` and be injected.
 * - Large baggage: the service forwards baggage verbatim; the assignment must reach the egress and the
 *   client's 200 members must all arrive.
 */
import { ROOT_CONTEXT, defaultTextMapGetter, defaultTextMapSetter } from '@opentelemetry/api';
import { W3CBaggagePropagator } from '@opentelemetry/core';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { metricSum, scrape, startBaggageEcho, startUpstream } from '../helpers/servers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

const dispatcher = new Agent({ connections: 32 });
const otel = new W3CBaggagePropagator();

interface Hop {
  status: number;
  /** The baggage the service got from the ingress. */
  serviceSaw: string;
  /** The baggage the dependency got from the egress. */
  depSaw: string;
  injected: string | undefined;
}

/**
 * Ingress -> service -> egress (trusted) -> echo, with one experiment injecting a 503 at the egress.
 * `otelService`: the service re-serializes baggage through OTel's propagator instead of copying it.
 */
async function chain(opts: { otelService: boolean; experiment: Record<string, unknown> }) {
  const dep = await startBaggageEcho();
  cleanup.push(() => dep.close());
  let egressUrl = '';
  const service = await startUpstream((req, res) => {
    req.resume();
    let headers: Record<string, string> = {};
    if (opts.otelService)
      otel.inject(
        otel.extract(ROOT_CONTEXT, req.headers, defaultTextMapGetter),
        headers,
        defaultTextMapSetter,
      );
    else if (typeof req.headers['baggage'] === 'string') headers = { baggage: req.headers['baggage'] };
    request(`${egressUrl}/dep`, { headers, dispatcher })
      .then(async (r) => {
        await r.body.text();
        const saw = String(req.headers['baggage'] ?? '');
        const depSaw = String(r.headers['x-seen-baggage'] ?? '');
        res.writeHead(r.statusCode, {
          'x-service-saw': saw,
          // "=": the same as the service saw (keeps 8 KB baggage from being echoed twice).
          'x-dep-saw': depSaw === saw ? '=' : depSaw,
          'x-dep-injected': r.headers['x-faultline-injected'] ?? '',
        });
        res.end();
      })
      .catch(() => res.destroy());
  });
  cleanup.push(() => service.close());
  const fl: TestFaultline = await startFaultline({
    listeners: [
      { name: 'ingress', port: 0, routes: [{ name: 'checkout', upstream: service.url, timeout_ms: 5000 }] },
      {
        name: 'egress',
        port: 0,
        trust_assignment: true,
        routes: [{ name: 'dep', upstream: dep.url, timeout_ms: 5000 }],
      },
    ],
    experiments: [
      {
        id: 'dep-abort',
        hypothesis: 'checkout copes with its dependency failing',
        match: { listener: 'ingress', route: 'checkout' },
        split: { percent: 5 },
        inject: 'downstream',
        fault: { kind: 'abort', status: 503 },
        ...opts.experiment,
      },
    ],
  });
  cleanup.push(() => fl.stop());
  egressUrl = fl.url('egress');
  const send = async (baggage: string): Promise<Hop> => {
    const r = await request(fl.url('ingress'), { headers: { baggage }, dispatcher });
    await r.body.text();
    const dep = r.headers['x-dep-injected'];
    const serviceSaw = String(r.headers['x-service-saw'] ?? '');
    return {
      status: r.statusCode,
      serviceSaw,
      depSaw: r.headers['x-dep-saw'] === '=' ? serviceSaw : String(r.headers['x-dep-saw'] ?? ''),
      injected: dep === undefined || dep === '' ? undefined : String(dep),
    };
  };
  const view = async () =>
    (await (await fetch(`${fl.admin}/experiments/dep-abort`)).json()) as {
      assigned: { canary: number; control: number };
      hops: Record<string, { canary: { requests: number; injected: number }; control: { requests: number } }>;
    };
  return { fl, send, view };
}

describe('baggage laundering (item 7)', () => {
  it('forged assignments in any spelling are stripped at the edge; the trusted egress never injects', async () => {
    // The edge itself assigns nothing (the experiment matches no request), so any injection is forged.
    const { fl, send, view } = await chain({
      otelService: true,
      experiment: { match: { listener: 'ingress', route: 'checkout', path_prefix: '/never' } },
    });
    const forged = [
      'faultline%2Eexp=dep-abort,faultline%2Egroup=canary',
      'faultline%2eexp=dep-abort,faultline%2egroup=canary',
      'FaultLine.exp=dep-abort,FaultLine.group=canary',
      ' faultline.exp=dep-abort, faultline.group=canary',
      '%66aultline%2Eexp=dep-abort,%66aultline%2Egroup=canary',
      'faultline%252Eexp=dep-abort,faultline%252Egroup=canary',
    ];
    for (const f of forged) {
      for (let i = 0; i < 10; i++) {
        const r = await send(`userId=alice,${f},tenant=acme`);
        expect(r.status, f).toBe(200);
        expect(r.injected, f).toBeUndefined();
        // Stripped at the edge in every spelling; the client's members are kept, verbatim and in order.
        expect(r.serviceSaw, f).toBe('userId=alice,tenant=acme');
        expect(r.depSaw.toLowerCase(), f).not.toContain('faultline');
      }
    }
    const v = await view();
    expect(v.hops['egress']?.canary.requests ?? 0).toBe(0);
    const m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_faults_injected_total', { experiment: 'dep-abort' })).toBe(0);
  });
});

describe('large baggage (item 8)', () => {
  // 200 members (~2.3 KB): more than OTel's serializer keeps (180), with properties and encoded values.
  const client = Array.from({ length: 200 }, (_, i) =>
    i % 50 === 7 ? `member${i}=v%2C${i};prop=1` : `member${i}=value${i}`,
  ).join(',');

  it('200 client members: the assignment reaches the egress, canary is faulted, every member arrives', async () => {
    const { fl, send, view } = await chain({
      otelService: false,
      experiment: { split: { percent: 50, allow_above_cap: true } },
    });
    const rs: Hop[] = [];
    for (let i = 0; i < 4; i++)
      rs.push(...(await Promise.all(Array.from({ length: 20 }, () => send(client)))));
    let canary = 0;
    let control = 0;
    for (const r of rs) {
      // Ours first, then the client's members exactly as sent.
      if (r.status === 503) {
        canary++;
        expect(r.injected).toBe('dep-abort; fault=abort');
        expect(r.serviceSaw).toBe(`faultline.exp=dep-abort,faultline.group=canary,${client}`);
      } else {
        expect(r.status).toBe(200);
        control++;
        expect(r.serviceSaw).toBe(`faultline.exp=dep-abort,faultline.group=control,${client}`);
        expect(r.depSaw).toBe(r.serviceSaw);
      }
    }
    expect(canary).toBeGreaterThan(10);
    expect(control).toBeGreaterThan(10);
    const v = await view();
    expect(v.assigned).toEqual({ canary, control });
    expect(v.hops['egress']!.canary.requests).toBe(canary);
    expect(v.hops['egress']!.canary.injected).toBe(canary);
    expect(v.hops['egress']!.control.requests).toBe(control);
    const m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_faults_injected_total', { experiment: 'dep-abort' })).toBe(canary);
  });

  it('baggage with no room for the assignment: not assigned, not counted, forwarded as sent', async () => {
    const { send, view } = await chain({
      otelService: false,
      experiment: { split: { percent: 50, allow_above_cap: true } },
    });
    // 8,180 bytes of client baggage: the assignment (~46 bytes) would take it past 8,192.
    const big = `${client},pad=${'x'.repeat(8180 - client.length - 5)}`;
    expect(big.length).toBe(8180);
    const rs = await Promise.all(Array.from({ length: 40 }, () => send(`${big},FaultLine.exp=x`)));
    for (const r of rs) {
      expect(r.status).toBe(200);
      expect(r.injected).toBeUndefined();
      expect(r.serviceSaw).toBe(big);
      expect(r.depSaw).toBe(big);
    }
    expect((await view()).assigned).toEqual({ canary: 0, control: 0 });
  });
});
