/**
 * One fault suite over every host (Envoy's INSTANTIATE_TEST_SUITE_P habit): the same experiments, one per
 * fault kind, run through HTTP/1.1, h2c and TLS h2 listeners, gRPC through the proxy, an in-process
 * undici interceptor and an in-process grpc-js interceptor. Each case checks what a real client sees and
 * ends on the counters in /metrics: faults injected, canary and control outcomes at the host's hop.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { Agent, request, type Dispatcher } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConfigInput } from '../../src/config/schema.js';
import { createFaultline, type InProcessFaultline } from '../../src/inprocess/index.js';
import {
  echoClient,
  grpc,
  startGrpcServer,
  unary,
  type EchoClient,
  type GrpcServer,
} from '../helpers/grpc.js';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { metricSum, scrape, startUpstream, type Upstream } from '../helpers/servers.js';
import { stickyKeyIn } from '../helpers/sticky.js';

const BODY_BYTES = 20_000;
const KINDS = ['abort', 'timeout', 'reset', 'latency', 'throttle', 'truncate'] as const;
type Kind = (typeof KINDS)[number];
const SPECS: Record<Kind, Record<string, unknown>> = {
  abort: { kind: 'abort', status: 503, grpc_status: 'UNAVAILABLE' },
  timeout: { kind: 'timeout', ms: 100 },
  reset: { kind: 'reset' },
  latency: { kind: 'latency', ms: 150 },
  throttle: { kind: 'throttle', bytes_per_s: 40_000 },
  truncate: { kind: 'truncate', after_bytes: 100 },
};
/** What the observing hop records for a canary request of each fault. */
const CANARY_OUTCOME: Record<Kind, string> = {
  abort: 'error',
  timeout: 'timeout',
  reset: 'reset',
  latency: 'ok',
  throttle: 'ok',
  truncate: 'reset',
};
const CANARY_CALLS = 3;
const CONTROL_CALLS = 2;
const PERCENT = 50;

const experiments = (hop: string, kinds: readonly Kind[]) =>
  kinds.map((k) => ({
    id: `f-${k}`,
    hypothesis: `callers cope with ${k}`,
    match: { listener: hop, headers: { 'x-fault': k } },
    split: { percent: PERCENT, allow_above_cap: true, sticky: 'header:x-user' },
    fault: SPECS[k],
    min_samples: 1000,
  }));
const keyOf = (arm: 'canary' | 'control', k: Kind) => stickyKeyIn(arm, `f-${k}`, PERCENT, `${arm}-`);

/** What a client saw: a status (HTTP, or the gRPC code), or a failure with no complete answer. */
interface Seen {
  status: number;
  failed: boolean;
  bytes: number;
  ms: number;
}

interface Running {
  call(kind: Kind, user: string): Promise<Seen>;
  admin: string;
  stop(): Promise<void>;
}

interface Host {
  name: string;
  /** The listener or point name the host's counters carry. */
  hop: string;
  grpc: boolean;
  kinds: readonly Kind[];
  start(): Promise<Running>;
}

let upstream: Upstream;
let grpcUpstream: GrpcServer;
let certDir: string;
let cert: Buffer;
const BODY = Buffer.alloc(BODY_BYTES, 0x61);

beforeAll(async () => {
  upstream = await startUpstream((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BODY_BYTES });
      res.end(BODY);
    });
  });
  grpcUpstream = await startGrpcServer();
  certDir = mkdtempSync(join(tmpdir(), 'faultline-cert-'));
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem'), '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'ignore' }); // prettier-ignore
  cert = readFileSync(join(certDir, 'cert.pem'));
});

afterAll(async () => {
  await upstream.close();
  await grpcUpstream.close();
  rmSync(certDir, { recursive: true, force: true });
});

async function undiciCall(url: string, kind: Kind, user: string, dispatcher?: Dispatcher): Promise<Seen> {
  const t0 = performance.now();
  try {
    const res = await request(url, {
      headers: { 'x-fault': kind, 'x-user': user },
      ...(dispatcher ? { dispatcher } : {}),
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, failed: false, bytes: body.length, ms: performance.now() - t0 };
  } catch {
    return { status: 0, failed: true, bytes: 0, ms: performance.now() - t0 };
  }
}

function h2Call(session: http2.ClientHttp2Session, kind: Kind, user: string): Promise<Seen> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const s = session.request({ ':path': '/', 'x-fault': kind, 'x-user': user });
    let status = 0;
    let bytes = 0;
    let ended = false;
    s.on('response', (h) => (status = Number(h[':status'])));
    s.on('data', (c: Buffer) => (bytes += c.length));
    s.on('end', () => (ended = true));
    s.on('error', () => undefined);
    s.on('close', () =>
      resolve({
        status,
        failed: !ended || s.rstCode !== http2.constants.NGHTTP2_NO_ERROR,
        bytes,
        ms: performance.now() - t0,
      }),
    );
    s.end();
  });
}

async function grpcCall(client: EchoClient, kind: Kind, user: string): Promise<Seen> {
  const t0 = performance.now();
  const md = new grpc.Metadata();
  md.set('x-fault', kind);
  md.set('x-user', user);
  const { status, reply } = await unary(client, { message: 'hi', payload: BODY }, md);
  return {
    status: status.code,
    failed: status.code !== 0,
    bytes: reply?.payload.length ?? 0,
    ms: performance.now() - t0,
  };
}

function proxyHost(name: string, protocol: 'http1' | 'h2c' | 'tls'): Host {
  return {
    name,
    hop: 'edge',
    grpc: false,
    kinds: KINDS,
    async start() {
      const fl: TestFaultline = await startFaultline({
        listeners: [
          {
            name: 'edge',
            port: 0,
            protocol,
            ...(protocol === 'tls'
              ? { tls: { cert: join(certDir, 'cert.pem'), key: join(certDir, 'key.pem') } }
              : {}),
            routes: [{ name: 'api', upstream: upstream.url, timeout_ms: 5000 }],
          },
        ],
        experiments: experiments('edge', KINDS),
      });
      const port = fl.fl.port('edge');
      let session: http2.ClientHttp2Session | null = null;
      if (protocol !== 'http1')
        session =
          protocol === 'h2c'
            ? http2.connect(`http://127.0.0.1:${port}`)
            : http2.connect(`https://127.0.0.1:${port}`, { ca: cert, servername: 'localhost' });
      session?.on('error', () => undefined);
      return {
        call: (kind, user) =>
          session ? h2Call(session, kind, user) : undiciCall(`${fl.url('edge')}/`, kind, user),
        admin: fl.admin,
        stop: async () => {
          session?.close();
          await fl.stop();
          await removeDir(fl.stateDir);
        },
      };
    },
  };
}

const grpcKinds: readonly Kind[] = KINDS;
const grpcProxyHost: Host = {
  name: 'gRPC via the proxy',
  hop: 'edge',
  grpc: true,
  kinds: grpcKinds,
  async start() {
    const fl = await startFaultline({
      listeners: [
        {
          name: 'edge',
          port: 0,
          protocol: 'h2c',
          routes: [{ name: 'echo', upstream: `http://${grpcUpstream.address}`, upstream_protocol: 'h2c' }],
        },
      ],
      experiments: experiments('edge', grpcKinds),
    });
    const client = echoClient(`127.0.0.1:${fl.fl.port('edge')}`);
    return {
      call: (kind, user) => grpcCall(client, kind, user),
      admin: fl.admin,
      stop: async () => {
        client.close();
        await fl.stop();
        await removeDir(fl.stateDir);
      },
    };
  },
};

async function inProcess(
  point: string,
  kinds: readonly Kind[],
): Promise<{ fl: InProcessFaultline; admin: string; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'faultline-inproc-'));
  const fl = await createFaultline({
    config: {
      state_dir: dir,
      points: [{ name: point, role: 'outbound' }],
      experiments: experiments(point, kinds),
    } as unknown as ConfigInput,
  });
  const addr = await fl.admin.listen(0, '127.0.0.1');
  return { fl, admin: `http://127.0.0.1:${addr.port}`, dir };
}

const undiciHost: Host = {
  name: 'in-process undici',
  hop: 'dep',
  grpc: false,
  kinds: KINDS,
  async start() {
    const { fl, admin, dir } = await inProcess('dep', KINDS);
    const dispatcher = new Agent().compose(fl.undiciInterceptor('dep'));
    return {
      call: (kind, user) => undiciCall(`${upstream.url}/`, kind, user, dispatcher),
      admin,
      stop: async () => {
        await dispatcher.close();
        await fl.close();
        await removeDir(dir);
      },
    };
  },
};

// Faults that act on the response's bytes need a host that carries them: not a grpc-js interceptor.
const grpcJsKinds: readonly Kind[] = ['abort', 'timeout', 'reset', 'latency'];
const grpcJsHost: Host = {
  name: 'in-process grpc-js',
  hop: 'ledger',
  grpc: true,
  kinds: grpcJsKinds,
  async start() {
    const { fl, admin, dir } = await inProcess('ledger', grpcJsKinds);
    const client = echoClient(grpcUpstream.address, { interceptors: [fl.grpcInterceptor('ledger')] });
    return {
      call: (kind, user) => grpcCall(client, kind, user),
      admin,
      stop: async () => {
        client.close();
        await fl.close();
        await removeDir(dir);
      },
    };
  },
};

const HOSTS: Host[] = [
  proxyHost('HTTP/1.1 listener', 'http1'),
  proxyHost('h2c listener', 'h2c'),
  proxyHost('TLS h2 listener', 'tls'),
  grpcProxyHost,
  undiciHost,
  grpcJsHost,
];

/** What a client must see for a canary request of each fault. */
function expectCanary(host: Host, kind: Kind, seen: Seen): void {
  const grpcCode = (name: string) => grpc.status[name as keyof typeof grpc.status];
  switch (kind) {
    case 'abort':
      expect(seen.status).toBe(host.grpc ? grpcCode('UNAVAILABLE') : 503);
      break;
    case 'timeout':
      expect(seen.status).toBe(host.grpc ? grpcCode('DEADLINE_EXCEEDED') : 504);
      break;
    case 'reset':
      if (host.grpc) expect(seen.status).toBe(grpcCode('CANCELLED'));
      else expect(seen.failed).toBe(true);
      break;
    case 'latency':
      expect(seen.failed).toBe(false);
      expect(seen.ms).toBeGreaterThanOrEqual(140);
      expect(seen.bytes).toBe(BODY_BYTES);
      break;
    case 'throttle':
      // 20,000 bytes at 40,000 B/s: about half a second, complete.
      expect(seen.failed).toBe(false);
      expect(seen.bytes).toBe(BODY_BYTES);
      expect(seen.ms).toBeGreaterThanOrEqual(400);
      break;
    case 'truncate':
      // Never a complete answer.
      expect(seen.failed).toBe(true);
      expect(seen.bytes).toBeLessThan(BODY_BYTES);
      break;
  }
}

describe.each(HOSTS)('faults through $name', (host) => {
  let running: Running;
  beforeAll(async () => {
    running = await host.start();
  });
  afterAll(async () => {
    await running.stop();
  });

  it.each(host.kinds)('%s: canary gets the fault, control does not; counters say so', async (kind) => {
    const canary = await Promise.all(
      Array.from({ length: CANARY_CALLS }, () => running.call(kind, keyOf('canary', kind))),
    );
    for (const seen of canary) expectCanary(host, kind, seen);
    for (let i = 0; i < CONTROL_CALLS; i++) {
      const seen = await running.call(kind, keyOf('control', kind));
      expect(seen.failed).toBe(false);
      expect(seen.status).toBe(host.grpc ? 0 : 200);
    }
    const m = await scrape(running.admin);
    const id = `f-${kind}`;
    expect(metricSum(m, 'faultline_faults_injected_total', { experiment: id })).toBe(CANARY_CALLS);
    expect(
      metricSum(m, 'faultline_experiment_requests_total', {
        experiment: id,
        group: 'canary',
        listener: host.hop,
        outcome: CANARY_OUTCOME[kind],
      }),
    ).toBe(CANARY_CALLS);
    expect(
      metricSum(m, 'faultline_experiment_requests_total', {
        experiment: id,
        group: 'canary',
        listener: host.hop,
      }),
    ).toBe(CANARY_CALLS);
    expect(
      metricSum(m, 'faultline_experiment_requests_total', {
        experiment: id,
        group: 'control',
        listener: host.hop,
        outcome: 'ok',
      }),
    ).toBe(CONTROL_CALLS);
  });
});

describe('throttle and truncate, measured at the client', () => {
  it('throttle: bytes/s at the client within 10% of bytes_per_s (HTTP/1.1 proxy, h2c proxy, undici in-process)', async () => {
    const size = 100_000;
    const rate = 100_000;
    const big = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': size });
      res.end(Buffer.alloc(size, 0x62));
    });
    const exp = {
      id: 'slow',
      hypothesis: 'callers cope with a slow body',
      split: { percent: 50, allow_above_cap: true, sticky: 'header:x-user' },
      fault: { kind: 'throttle', bytes_per_s: rate },
      min_samples: 1000,
    };
    const user = stickyKeyIn('canary', 'slow', 50, 'u-');
    const fl = await startFaultline({
      listeners: [
        { name: 'h1', port: 0, routes: [{ name: 'api', upstream: big.url }] },
        { name: 'h2', port: 0, protocol: 'h2c', routes: [{ name: 'api', upstream: big.url }] },
      ],
      experiments: [exp],
    });
    const dir = mkdtempSync(join(tmpdir(), 'faultline-inproc-'));
    const ip = await createFaultline({
      config: {
        state_dir: dir,
        points: [{ name: 'dep', role: 'outbound' }],
        experiments: [{ ...exp, match: { listener: 'dep' } }],
      } as unknown as ConfigInput,
    });
    const dispatcher = new Agent().compose(ip.undiciInterceptor('dep'));
    try {
      /** Bytes per second from the response head to the end of the body. */
      const viaUndici = async (url: string, d?: Dispatcher) => {
        const res = await request(url, { headers: { 'x-user': user }, ...(d ? { dispatcher: d } : {}) });
        const t0 = performance.now();
        const n = (await res.body.arrayBuffer()).byteLength;
        expect(n).toBe(size);
        return n / ((performance.now() - t0) / 1000);
      };
      const viaH2 = () =>
        new Promise<number>((resolve, reject) => {
          const session = http2.connect(`http://127.0.0.1:${fl.fl.port('h2')}`);
          const s = session.request({ ':path': '/', 'x-user': user });
          let t0 = 0;
          let n = 0;
          s.on('response', () => (t0 = performance.now()));
          s.on('data', (c: Buffer) => (n += c.length));
          s.on('end', () => {
            session.close();
            if (n !== size) reject(new Error(`got ${n} bytes`));
            else resolve(n / ((performance.now() - t0) / 1000));
          });
          s.on('error', reject);
          s.end();
        });
      const rates = [
        await viaUndici(`${fl.url('h1')}/`),
        await viaH2(),
        await viaUndici(`${big.url}/`, dispatcher),
      ];
      for (const r of rates) {
        expect(r).toBeGreaterThan(rate * 0.9);
        expect(r).toBeLessThan(rate * 1.1);
      }
    } finally {
      await dispatcher.close();
      await ip.close();
      await fl.stop();
      await big.close();
      await removeDir(fl.stateDir);
      await removeDir(dir);
    }
  }, 30_000);

  it('truncate: curl sees a failure, never a complete body', async () => {
    const fl = await startFaultline({
      listeners: [{ name: 'edge', port: 0, routes: [{ name: 'api', upstream: upstream.url }] }],
      experiments: [
        {
          id: 'cut',
          hypothesis: 'callers detect a cut body',
          split: { percent: 50, allow_above_cap: true, sticky: 'header:x-user' },
          fault: { kind: 'truncate', after_bytes: 100 },
          min_samples: 1000,
        },
      ],
    });
    try {
      const user = stickyKeyIn('canary', 'cut', 50, 'u-');
      const curl = (extra: string[]) =>
        promisify(execFile)(
          'curl',
          ['-sS', '-o', '/dev/null', '-w', '%{size_download}', ...extra, `${fl.url()}/`],
          {
            timeout: 10_000,
          },
        ).then(
          ({ stdout }) => ({ code: 0, size: Number(stdout) }),
          (err: { code: number; stdout: string }) => ({ code: err.code, size: Number(err.stdout) }),
        );
      const cut = await curl(['-H', `x-user: ${user}`]);
      // 18: "partial file" (the body ended before its Content-Length).
      expect(cut.code).toBe(18);
      expect(cut.size).toBe(100);
      const whole = await curl(['-H', `x-user: ${stickyKeyIn('control', 'cut', 50, 'u-')}`]);
      expect(whole).toEqual({ code: 0, size: BODY_BYTES });
    } finally {
      await fl.stop();
      await removeDir(fl.stateDir);
    }
  });
});
