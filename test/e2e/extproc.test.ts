/**
 * The ext_proc host end to end: a real Faultline serves envoy.service.ext_proc.v3.ExternalProcessor on
 * a loopback port and a grpc-js client plays Envoy (tests/helpers/envoy.ts), one Process stream per
 * HTTP request, over the real protobuf wire format. Envoy itself is not installable here (no Debian
 * package); the stand-in sends what Envoy sends with request/response header and response trailer
 * modes SEND.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { loadConfigFile, validateConfig } from '../../src/config/load.js';
import { EnvoyStandIn, headerMap, rawClient, setHeaders, SKIP, type Resp } from '../helpers/envoy.js';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { metricSum, scrape } from '../helpers/servers.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Report {
  state: string;
  verdict: string;
  arms: Record<'canary' | 'control', { requests: number; ok: number; error: number; client_abort: number }>;
}

async function start(
  experiments: Record<string, unknown>[],
  extProc: Record<string, unknown> = {},
): Promise<{ fl: TestFaultline; envoy: EnvoyStandIn }> {
  const fl = await startFaultline({
    listeners: [],
    ext_proc: { name: 'envoy', port: 0, ...extProc },
    experiments,
  });
  const envoy = new EnvoyStandIn(fl.fl.port('envoy'));
  cleanups.push(async () => {
    envoy.close();
    await fl.stop();
    await removeDir(fl.stateDir);
  });
  return { fl, envoy };
}

const experiment = (over: Record<string, unknown>) => ({
  id: 'checkout-abort',
  hypothesis: 'checkout copes with a failing dependency',
  match: { listener: 'envoy', path_prefix: '/checkout' },
  split: { percent: 50, allow_above_cap: true },
  fault: { kind: 'abort', status: 503, grpc_status: 'UNAVAILABLE' },
  ...over,
});

async function report(fl: TestFaultline, id: string): Promise<Report> {
  return (await (await fetch(`${fl.admin}/experiments/${id}/report`)).json()) as Report;
}

/** The mode_override of an untouched request's reply: no response messages. */
const SKIP_RESPONSE = { response_header_mode: SKIP, request_trailer_mode: SKIP, response_trailer_mode: SKIP };
const UNTOUCHED = { request_headers: {}, response: 'request_headers', mode_override: SKIP_RESPONSE };

const group = (r: Resp | null) =>
  /faultline\.group=(\w+)/.exec(setHeaders(r?.request_headers?.response?.header_mutation).baggage ?? '')?.[1];

describe('ext_proc host', () => {
  it('untouched requests get CONTINUE without mutation; forged assignments are stripped', async () => {
    const { envoy } = await start([experiment({})]);
    const r = await envoy.exchange({ headers: { ':path': '/other' }, response: { status: 200 } });
    expect(r.request).toEqual(UNTOUCHED);
    // This Envoy has no allow_mode_override: it still sends response_headers, and gets CONTINUE.
    expect(r.response).toEqual({ response_headers: {}, response: 'response_headers' });
    const forged = await envoy.exchange({
      headers: { ':path': '/other', baggage: 'faultline.exp=checkout-abort,faultline.group=canary' },
    });
    expect(forged.request?.request_headers?.response?.header_mutation?.remove_headers).toEqual(['baggage']);
    const kept = await envoy.exchange({
      headers: { ':path': '/other', baggage: 'faultline.group=canary,user=1' },
    });
    expect(setHeaders(kept.request?.request_headers?.response?.header_mutation)).toEqual({
      baggage: 'user=1',
    });
  });

  it('mode_override: with allow_mode_override an untouched request is one exchange; assigned ones keep SEND; without it Envoy still asks and gets CONTINUE', async () => {
    const { fl, envoy } = await start([experiment({ split: { percent: 50, allow_above_cap: true } })]);
    const allow = new EnvoyStandIn(fl.fl.port('envoy'), { allowModeOverride: true });
    cleanups.push(() => allow.close());
    const grpc = {
      status: 200,
      headers: { 'content-type': 'application/grpc' },
      trailers: { 'grpc-status': '0' },
    };
    // Untouched, Envoy honours the override: request_headers only, nothing after it.
    const one = await allow.exchange({ headers: { ':path': '/other' }, response: grpc });
    expect(one.request).toEqual(UNTOUCHED);
    expect([one.response, one.trailers, one.messages]).toEqual([null, null, 1]);
    // ... and the server ends that stream cleanly when Envoy closes its side.
    const s = allow.open();
    const first = await s.send({
      request_headers: { headers: headerMap({ ':path': '/x', ':method': 'GET' }) },
    });
    expect(first?.mode_override).toEqual(SKIP_RESPONSE);
    s.close();
    expect(await s.next()).toBeNull();
    expect(s.status?.code).toBe(0);
    // A stripped forged assignment is untouched too: the mutation and the override in one reply.
    const forged = await allow.exchange({
      headers: { ':path': '/other', baggage: 'faultline.exp=checkout-abort,faultline.group=canary' },
      response: { status: 200 },
    });
    expect(forged.request?.request_headers?.response?.header_mutation?.remove_headers).toEqual(['baggage']);
    expect(forged.request?.mode_override).toEqual(SKIP_RESPONSE);
    expect(forged.messages).toBe(1);
    // The same untouched request through an Envoy without allow_mode_override: all three messages.
    const three = await envoy.exchange({ headers: { ':path': '/other' }, response: grpc });
    expect(three.request?.mode_override).toEqual(SKIP_RESPONSE);
    expect(three.response).toEqual({ response_headers: {}, response: 'response_headers' });
    expect(three.trailers).toEqual({ response_trailers: {}, response: 'response_trailers' });
    expect(three.messages).toBe(3);
    // Assigned (control) requests: no override, response_headers and trailers sent, outcome recorded.
    let control = 0;
    for (let i = 0; i < 30; i++) {
      const r = await allow.exchange({
        headers: { ':method': 'POST', ':path': '/checkout.Pay/Do', 'content-type': 'application/grpc' },
        response: grpc,
      });
      if (r.request?.immediate_response !== undefined) continue;
      control++;
      expect(group(r.request)).toBe('control');
      expect(r.request?.mode_override).toBeUndefined();
      expect(r.response?.response).toBe('response_headers');
      expect(r.trailers?.response).toBe('response_trailers');
      expect(r.messages).toBe(3);
    }
    expect(control).toBeGreaterThan(5);
    await new Promise((r) => setTimeout(r, 50));
    const rep = await report(fl, 'checkout-abort');
    expect(rep.arms.control.requests).toBe(control);
    expect(rep.arms.control.ok).toBe(control);
    expect(rep.arms.control.client_abort).toBe(0);
  });

  it('no experiment on this ext_proc: every request gets the untouched reply', async () => {
    const { fl } = await start([]);
    const allow = new EnvoyStandIn(fl.fl.port('envoy'), { allowModeOverride: true });
    cleanups.push(() => allow.close());
    const r = await allow.exchange({ headers: { ':path': '/checkout' }, response: { status: 200 } });
    expect(r.request).toEqual(UNTOUCHED);
    expect(r.messages).toBe(1);
  });

  it('canary aborts come back as immediate_response (HTTP status or grpc_status); control continues with baggage; outcomes are counted', async () => {
    const { fl, envoy } = await start([experiment({})]);
    let aborted = 0;
    let control = 0;
    for (let i = 0; i < 60; i++) {
      const r = await envoy.exchange({ headers: { ':path': '/checkout/pay' }, response: { status: 200 } });
      const imm = r.request?.immediate_response;
      if (imm !== undefined) {
        aborted++;
        expect(imm.status?.code).toBe(503);
        expect(imm.grpc_status).toBeUndefined();
        expect(setHeaders(imm.headers)['x-faultline-injected']).toBe('checkout-abort; fault=abort');
        expect(r.response).toBeNull();
      } else {
        control++;
        expect(group(r.request)).toBe('control');
        expect(setHeaders(r.request?.request_headers?.response?.header_mutation).baggage).toBe(
          'faultline.exp=checkout-abort,faultline.group=control',
        );
        expect(r.response?.response).toBe('response_headers');
      }
    }
    expect(aborted).toBeGreaterThan(10);
    expect(control).toBeGreaterThan(10);
    // gRPC requests get a grpc_status (UNAVAILABLE) on an HTTP 503.
    let grpcAborts = 0;
    for (let i = 0; i < 30 && grpcAborts === 0; i++) {
      const r = await envoy.exchange({
        headers: { ':method': 'POST', ':path': '/checkout.Pay/Do', 'content-type': 'application/grpc' },
        response: {
          status: 200,
          headers: { 'content-type': 'application/grpc' },
          trailers: { 'grpc-status': '0' },
        },
      });
      const imm = r.request?.immediate_response;
      if (imm) {
        grpcAborts++;
        expect(imm.grpc_status?.status).toBe(14);
        expect(imm.status?.code).toBe(503);
      }
    }
    expect(grpcAborts).toBe(1);
    const rep = await report(fl, 'checkout-abort');
    expect(rep.arms.control.ok).toBeGreaterThanOrEqual(control);
    expect(rep.arms.canary.error).toBe(aborted + grpcAborts);
    const m = await scrape(fl.admin);
    expect(
      metricSum(m, 'faultline_experiment_requests_total', {
        experiment: 'checkout-abort',
        group: 'canary',
        outcome: 'error',
        listener: 'envoy',
      }),
    ).toBe(aborted + grpcAborts);
    expect(metricSum(m, 'faultline_faults_injected_total', { experiment: 'checkout-abort' })).toBe(
      aborted + grpcAborts,
    );
    expect(
      metricSum(m, 'faultline_experiment_responses_total', {
        experiment: 'checkout-abort',
        grpc_code: 'UNAVAILABLE',
      }),
    ).toBe(grpcAborts);
  });

  it('latency: a short delay holds the reply; a long one goes to Envoy fault headers; a timeout stops at x-envoy-expected-rq-timeout-ms', async () => {
    const { envoy } = await start(
      [
        experiment({
          id: 'short',
          match: { listener: 'envoy', path_prefix: '/short' },
          fault: { kind: 'latency', ms: 80 },
          split: { percent: 50, allow_above_cap: true },
        }),
        experiment({
          id: 'long',
          match: { listener: 'envoy', path_prefix: '/long' },
          fault: { kind: 'latency', ms: 1500 },
        }),
        experiment({
          id: 'slowdep',
          match: { listener: 'envoy', path_prefix: '/slowdep' },
          fault: { kind: 'timeout', ms: 5000 },
        }),
        experiment({
          id: 'deadline',
          match: { listener: 'envoy', path_prefix: '/deadline' },
          fault: { kind: 'timeout', ms: 120 },
        }),
      ],
      { envoy_fault_headers: true, max_hold_ms: 150 },
    );
    const canary = async (path: string, extra: Record<string, string> = {}) => {
      for (let i = 0; i < 40; i++) {
        const r = await envoy.exchange({ headers: { ':path': path, ...extra }, response: { status: 200 } });
        if (r.request?.immediate_response || group(r.request) === 'canary') return r;
      }
      throw new Error('no canary draw');
    };
    const short = await canary('/short');
    expect(short.elapsedMs).toBeGreaterThanOrEqual(75);
    expect(
      setHeaders(short.response?.response_headers?.response?.header_mutation)['x-faultline-injected'],
    ).toBe('short; fault=latency');
    const long = await canary('/long');
    expect(long.elapsedMs).toBeLessThan(150);
    expect(
      setHeaders(long.request?.request_headers?.response?.header_mutation)['x-envoy-fault-delay-request'],
    ).toBe('1500');
    const slow = await canary('/slowdep');
    const h = setHeaders(slow.request?.request_headers?.response?.header_mutation);
    expect(h['x-envoy-fault-delay-request']).toBe('5000');
    expect(h['x-envoy-fault-abort-request']).toBe('504');
    const dl = await canary('/deadline', { 'x-envoy-expected-rq-timeout-ms': '30' });
    expect(dl.request?.immediate_response?.status?.code).toBe(504);
    expect(dl.elapsedMs).toBeLessThan(110);
  });

  it('a fragile upstream (5xx on canary requests) trips the kill switch; the next request gets plain CONTINUE', async () => {
    const { fl, envoy } = await start([
      experiment({
        id: 'fragile',
        fault: { kind: 'latency', ms: 5 },
        guardrails: [{ metric: 'error_rate', max_increase: 0.01, max_ratio: 1.5 }],
        min_samples: 20,
      }),
    ]);
    let killedAfter = -1;
    for (let i = 0; i < 400; i++) {
      const s = envoy.open();
      const req = await s.send({
        request_headers: {
          headers: headerMap({ ':method': 'GET', ':path': '/checkout' }),
          end_of_stream: true,
        },
      });
      const g = group(req);
      if (g === undefined) {
        killedAfter = i;
        s.close();
        break;
      }
      await s.send({
        response_headers: {
          headers: headerMap({ ':status': g === 'canary' ? '500' : '200' }),
          end_of_stream: true,
        },
      });
      s.close();
    }
    expect(killedAfter).toBeGreaterThan(0);
    const rep = await report(fl, 'fragile');
    expect(rep.state).toBe('killed');
    expect(rep.verdict).toBe('refuted');
    const after = await envoy.exchange({ headers: { ':path': '/checkout' }, response: { status: 200 } });
    expect(after.request).toEqual(UNTOUCHED);
    const m = await scrape(fl.admin);
    expect(
      metricSum(m, 'faultline_kill_switch_trips_total', { experiment: 'fragile', reason: 'guardrail' }),
    ).toBe(1);
  });

  it('a stream that ends without a response counts as client_abort; a cancelled hold too', async () => {
    const { fl, envoy } = await start([experiment({ id: 'gone', fault: { kind: 'latency', ms: 100 } })]);
    let ended = 0;
    for (let i = 0; i < 10; i++) {
      const r = await envoy.exchange({ headers: { ':path': '/checkout' } });
      if (group(r.request) === 'control') ended++;
    }
    // A canary held for 100 ms whose stream Envoy resets (the client went away) mid-hold.
    let cancelled = 0;
    for (let i = 0; i < 20 && cancelled === 0; i++) {
      const s = envoy.open();
      s.call.write({ request_headers: { headers: headerMap({ ':method': 'GET', ':path': '/checkout' }) } });
      const first = await Promise.race([s.next(), new Promise<null>((r) => setTimeout(() => r(null), 30))]);
      if (first === null) {
        s.call.cancel();
        cancelled++;
      } else s.close();
    }
    expect(cancelled).toBe(1);
    await new Promise((r) => setTimeout(r, 50));
    const rep = await report(fl, 'gone');
    expect(rep.arms.control.client_abort).toBeGreaterThanOrEqual(ended);
    expect(rep.arms.canary.client_abort).toBeGreaterThanOrEqual(1);
    const m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_active_faults', { experiment: 'gone' })).toBe(0);
  });

  it('fails open: garbage bytes, an empty message and unexpected orders never crash or stall the server', async () => {
    const { fl, envoy } = await start([experiment({})]);
    const raw = rawClient(fl.fl.port('envoy'));
    cleanups.push(() => raw.close());
    const bad: ClientDuplexStream<Buffer, Buffer> = raw.open();
    const status = await new Promise<{ code: number }>((resolve) => {
      bad.on('status', resolve);
      bad.on('error', () => undefined);
      bad.on('data', () => undefined);
      bad.write(Buffer.from([0x12, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    });
    // An error status: Envoy with failure_mode_allow: true goes on without ext_proc.
    expect(status.code).not.toBe(0);
    // No oneof set: closed cleanly (OK), which tells Envoy to continue without the processor.
    const empty = envoy.open();
    expect(await empty.send({ async_mode: false })).toBeNull();
    expect(empty.status?.code).toBe(0);
    // Response before request, bodies nobody asked for, unknown fields: each answered in kind.
    const odd = envoy.open();
    expect(
      (await odd.send({ response_headers: { headers: headerMap({ ':status': '200' }) } }))?.response,
    ).toBe('response_headers');
    expect(
      (await odd.send({ request_body: { body: Buffer.from('x'), end_of_stream: true } }))?.response,
    ).toBe('request_body');
    odd.close();
    const withUnknown = rawClient(fl.fl.port('envoy'));
    cleanups.push(() => withUnknown.close());
    const u = withUnknown.open();
    // request_headers{headers{headers{key ":path" raw_value "/x"}}} + field 10 (observability_mode) + field 99.
    const hv = Buffer.concat([
      Buffer.from([0x0a, 5]),
      Buffer.from(':path'),
      Buffer.from([0x1a, 2]),
      Buffer.from('/x'),
    ]);
    const hm = Buffer.concat([Buffer.from([0x0a, hv.length]), hv]);
    const hh = Buffer.concat([Buffer.from([0x0a, hm.length]), hm]);
    const msg = Buffer.concat([
      Buffer.from([0x12, hh.length]),
      hh,
      Buffer.from([0x50, 0x01, 0x98, 0x06, 0x07]),
    ]);
    const reply = await new Promise<Buffer>((resolve) => {
      u.on('data', resolve);
      u.write(msg);
    });
    // ProcessingResponse{request_headers{}}: field 1, length 0; mode_override (9) {2: SKIP, 5: SKIP, 6: SKIP}.
    expect([...reply]).toEqual([0x0a, 0x00, 0x4a, 0x06, 0x10, 0x02, 0x28, 0x02, 0x30, 0x02]);
    u.end();
    const ok = await envoy.exchange({ headers: { ':path': '/other' }, response: { status: 200 } });
    expect(ok.request?.response).toBe('request_headers');
    const m = await scrape(fl.admin);
    expect(metricSum(m, 'faultline_ext_proc_fail_open_total', { reason: 'unknown_message' })).toBe(1);
    expect(metricSum(m, 'faultline_uncaught_errors_total')).toBe(0);
  });

  it('200 concurrent streams', async () => {
    const { fl, envoy } = await start([experiment({ fault: { kind: 'latency', ms: 20 } })]);
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        envoy.exchange({ headers: { ':path': i % 2 ? '/checkout' : '/other' }, response: { status: 200 } }),
      ),
    );
    expect(results.every((r) => r.request?.response === 'request_headers')).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    const full = await report(fl, 'checkout-abort');
    expect(full.arms.canary.requests + full.arms.control.requests).toBe(100);
  });
});

describe('ext_proc config validation', () => {
  const base = { listeners: [], ext_proc: { name: 'envoy', port: 0 } };
  const check =
    (fault: Record<string, unknown>, ext: Record<string, unknown> = {}) =>
    () =>
      validateConfig(
        { ...base, ext_proc: { ...base.ext_proc, ...ext }, experiments: [experiment({ fault })] },
        'test.yaml',
      );
  it('rejects faults Envoy carries the bytes of, resets, hangs, and holds past max_hold_ms', () => {
    expect(check({ kind: 'throttle', bytes_per_s: 100 })).toThrow(/throttle acts on the response bytes/);
    expect(check({ kind: 'truncate', after_bytes: 10 })).toThrow(/truncate acts on the response bytes/);
    expect(check({ kind: 'reset' })).toThrow(/cannot reset a stream/);
    expect(check({ kind: 'timeout', hang: true })).toThrow(/hang/);
    expect(check({ kind: 'latency', ms: 500 })).toThrow(/longer than ext_proc.max_hold_ms \(150\)/);
    expect(check({ kind: 'latency', ms: 500 }, { envoy_fault_headers: true })).not.toThrow();
    expect(check({ kind: 'latency', ms: 100 })).not.toThrow();
  });

  it('examples/envoy: the Faultline config validates, the Envoy config is YAML with the filters in order', async () => {
    const cfg = await loadConfigFile(
      new URL('../../examples/envoy/faultline.yaml', import.meta.url).pathname,
    );
    expect(cfg.ext_proc?.port).toBe(9002);
    const envoy = parse(
      await readFile(new URL('../../examples/envoy/envoy.yaml', import.meta.url), 'utf8'),
    ) as {
      static_resources: {
        listeners: {
          filter_chains: {
            filters: {
              typed_config: { http_filters: { name: string; typed_config: Record<string, unknown> }[] };
            }[];
          }[];
        }[];
      };
    };
    const filters =
      envoy.static_resources.listeners[0]!.filter_chains[0]!.filters[0]!.typed_config.http_filters;
    expect(filters.map((f) => f.name)).toEqual([
      'envoy.filters.http.ext_proc',
      'envoy.filters.http.fault',
      'envoy.filters.http.router',
    ]);
    // Untouched requests in one exchange: Envoy honours Faultline's mode_override only with this.
    expect(filters[0]!.typed_config.allow_mode_override).toBe(true);
  });
});
