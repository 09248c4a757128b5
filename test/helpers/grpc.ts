/**
 * A real @grpc/grpc-js test service (test/fixtures/grpc/echo.proto: unary, server-, client- and bidi
 * streaming) on 127.0.0.1 and an ephemeral port, plus typed clients. Request metadata drives the
 * server: `x-fail: <code>` fails the call (trailers-only when nothing was sent), `x-hang: 1` never
 * answers (until the caller cancels, which is recorded), and every call echoes its `x-*` metadata
 * back as response metadata and sets fixed custom trailers, one of them binary.
 */
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ServerSurfaceCall } from '@grpc/grpc-js/build/src/server-call.js';

const PROTO = fileURLToPath(new URL('../fixtures/grpc/echo.proto', import.meta.url));

export interface EchoRequest {
  message?: string;
  payload?: Buffer;
  count?: number;
  delay_ms?: number;
}
export interface EchoReply {
  message: string;
  payload: Buffer;
  seq: number;
}

type UnaryCb = (err: grpc.ServiceError | null, reply?: EchoReply) => void;
export interface EchoClient extends grpc.Client {
  Unary(req: EchoRequest, md: grpc.Metadata, opts: grpc.CallOptions, cb: UnaryCb): grpc.ClientUnaryCall;
  ServerStream(
    req: EchoRequest,
    md: grpc.Metadata,
    opts?: grpc.CallOptions,
  ): grpc.ClientReadableStream<EchoReply>;
  ClientStream(
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: UnaryCb,
  ): grpc.ClientWritableStream<EchoRequest>;
  Bidi(md: grpc.Metadata, opts?: grpc.CallOptions): grpc.ClientDuplexStream<EchoRequest, EchoReply>;
}

const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, defaults: true });
const pkg = grpc.loadPackageDefinition(definition) as unknown as {
  faultline: { test: { Echo: grpc.ServiceClientConstructor } };
};
const Echo = pkg.faultline.test.Echo;

/** The trailers every successful call ends with (a text one and a `-bin` one). */
export const TRAILER_TEXT = 'trailer-value';
export const TRAILER_BIN = Buffer.from([0, 1, 2, 0xfe, 0xff]);

/** Deterministic payload of message `seq` of a server stream: `size` bytes. */
export function streamPayload(seq: number, size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (seq * 31 + i * 7) & 0xff;
  return b;
}

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export interface GrpcServer {
  port: number;
  address: string;
  /** Calls the server saw cancelled by the caller (method names). */
  cancelled: string[];
  /** Calls received, by method. */
  calls: Map<string, number>;
  /** Request metadata of the last call. */
  lastMetadata: grpc.Metadata | null;
  /** Deadline of the last call (from the grpc-timeout it received), or Infinity. */
  lastDeadline: number;
  close(): Promise<void>;
}

function echoMetadata(md: grpc.Metadata): grpc.Metadata {
  const out = new grpc.Metadata();
  for (const [k, v] of Object.entries(md.getMap())) if (k.startsWith('x-')) out.set(k, v);
  return out;
}

function trailers(): grpc.Metadata {
  const t = new grpc.Metadata();
  t.set('x-trailer', TRAILER_TEXT);
  t.set('x-trailer-bin', TRAILER_BIN);
  return t;
}

/** Error status from `x-fail`, or null. */
function failure(md: grpc.Metadata): grpc.ServerErrorResponse | null {
  const v = md.get('x-fail')[0];
  if (v === undefined) return null;
  return Object.assign(new Error(`failed on request (${String(v)})`), {
    code: Number(v),
    details: `failed on request (${String(v)})`,
    metadata: trailers(),
  });
}

export async function startGrpcServer(): Promise<GrpcServer> {
  const server = new grpc.Server();
  const state: GrpcServer = {
    port: 0,
    address: '',
    cancelled: [],
    calls: new Map(),
    lastMetadata: null,
    lastDeadline: Infinity,
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 500).unref();
      }),
  };
  const seen = (name: string, call: ServerSurfaceCall) => {
    state.calls.set(name, (state.calls.get(name) ?? 0) + 1);
    state.lastMetadata = call.metadata;
    const d = call.getDeadline();
    state.lastDeadline = d instanceof Date ? d.getTime() : d;
  };
  const hang = (call: ServerSurfaceCall, name: string): boolean => {
    if (call.metadata.get('x-hang')[0] === undefined) return false;
    call.on('cancelled', () => state.cancelled.push(name));
    return true;
  };
  server.addService(Echo.service, {
    Unary: (call: grpc.ServerUnaryCall<EchoRequest, EchoReply>, cb: grpc.sendUnaryData<EchoReply>) => {
      seen('Unary', call);
      if (hang(call, 'Unary')) return;
      const fail = failure(call.metadata);
      if (fail) return cb(fail);
      const reply = () => {
        call.sendMetadata(echoMetadata(call.metadata));
        cb(
          null,
          { message: call.request.message ?? '', payload: call.request.payload ?? Buffer.alloc(0), seq: 0 },
          trailers(),
        );
      };
      const delay = call.request.delay_ms ?? 0;
      if (delay > 0) setTimeout(reply, delay);
      else reply();
    },
    ServerStream: (call: grpc.ServerWritableStream<EchoRequest, EchoReply>) => {
      seen('ServerStream', call);
      if (hang(call, 'ServerStream')) return;
      call.on('cancelled', () => state.cancelled.push('ServerStream'));
      call.sendMetadata(echoMetadata(call.metadata));
      const count = call.request.count ?? 1;
      const size = call.request.payload?.length ?? 64;
      let seq = 0;
      // Respect the stream's backpressure, so a slow reader is a real flow-control test.
      const pump = () => {
        while (seq < count) {
          const ok = call.write({ message: `m${seq}`, payload: streamPayload(seq, size), seq });
          seq++;
          if (!ok) return void call.once('drain', pump);
        }
        call.end(trailers());
      };
      pump();
    },
    ClientStream: (
      call: grpc.ServerReadableStream<EchoRequest, EchoReply>,
      cb: grpc.sendUnaryData<EchoReply>,
    ) => {
      seen('ClientStream', call);
      const h = createHash('sha256');
      let n = 0;
      call.on('data', (m: EchoRequest) => {
        n++;
        h.update(m.payload ?? Buffer.alloc(0));
      });
      call.on('cancelled', () => state.cancelled.push('ClientStream'));
      call.on('end', () => {
        call.sendMetadata(echoMetadata(call.metadata));
        cb(null, { message: h.digest('hex'), payload: Buffer.alloc(0), seq: n }, trailers());
      });
    },
    Bidi: (call: grpc.ServerDuplexStream<EchoRequest, EchoReply>) => {
      seen('Bidi', call);
      call.on('cancelled', () => state.cancelled.push('Bidi'));
      call.sendMetadata(echoMetadata(call.metadata));
      let seq = 0;
      call.on('data', (m: EchoRequest) => {
        call.write({ message: m.message ?? '', payload: m.payload ?? Buffer.alloc(0), seq: seq++ });
      });
      call.on('end', () => call.end(trailers()));
    },
  });
  state.port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    ),
  );
  state.address = `127.0.0.1:${state.port}`;
  return state;
}

/** A plaintext (h2c) client of the Echo service. One client is one channel: calls share a connection. */
export function echoClient(target: string, options: grpc.ClientOptions = {}): EchoClient {
  return new Echo(target, grpc.credentials.createInsecure(), options) as unknown as EchoClient;
}

/** A unary call as a promise of {reply, metadata, status} (status includes the trailers). */
export function unary(
  client: EchoClient,
  req: EchoRequest,
  md: grpc.Metadata = new grpc.Metadata(),
  opts: grpc.CallOptions = {},
): Promise<{
  err: grpc.ServiceError | null;
  reply?: EchoReply;
  metadata?: grpc.Metadata;
  status: grpc.StatusObject;
}> {
  return new Promise((resolve) => {
    let metadata: grpc.Metadata | undefined;
    let result: { err: grpc.ServiceError | null; reply?: EchoReply } | null = null;
    let status: grpc.StatusObject | null = null;
    const done = () => {
      if (result !== null && status !== null)
        resolve({ ...result, ...(metadata ? { metadata } : {}), status });
    };
    const call = client.Unary(req, md, opts, (err, reply) => {
      result = { err, ...(reply ? { reply } : {}) };
      done();
    });
    call.on('metadata', (m: grpc.Metadata) => (metadata = m));
    call.on('status', (s: grpc.StatusObject) => {
      status = s;
      done();
    });
  });
}

export { grpc };
