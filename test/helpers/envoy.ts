/**
 * An Envoy stand-in for the ext_proc host: a grpc-js client built from the same .proto files, which
 * opens one Process stream per HTTP request and sends ProcessingRequest messages in Envoy's order
 * (request_headers, then response_headers and response_trailers when the request was not answered and
 * the processing mode in force sends them). With `allowModeOverride` it honours a reply's mode_override
 * as Envoy's filter with allow_mode_override: true does (only on the reply to a headers message; a
 * DEFAULT header mode keeps the mode in force); without it the override is ignored, as Envoy ignores it.
 */
import {
  credentials,
  loadPackageDefinition,
  makeGenericClientConstructor,
  type Client,
  type ClientDuplexStream,
  type GrpcObject,
  type ServiceClientConstructor,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { EXT_PROC_PROTO, PROTO_DIR } from '../../src/extproc/proto.js';

export interface Resp {
  request_headers?: { response?: { header_mutation?: Mutation } };
  response_headers?: { response?: { header_mutation?: Mutation } };
  response_trailers?: object;
  immediate_response?: {
    status?: { code?: number };
    headers?: Mutation;
    body?: string;
    grpc_status?: { status?: number };
    details?: string;
  };
  response?: string;
  mode_override?: ProcessingMode;
}
/** envoy.extensions.filters.http.ext_proc.v3.ProcessingMode (enums as numbers). */
export interface ProcessingMode {
  request_header_mode?: number;
  response_header_mode?: number;
  request_body_mode?: number;
  response_body_mode?: number;
  request_trailer_mode?: number;
  response_trailer_mode?: number;
}
/** ProcessingMode.HeaderSendMode */
export const DEFAULT = 0;
export const SEND = 1;
export const SKIP = 2;
export interface Mutation {
  set_headers?: { header?: { key?: string; value?: string; raw_value?: Buffer }; append_action?: number }[];
  remove_headers?: string[];
}

const def = loadSync(EXT_PROC_PROTO, {
  includeDirs: [PROTO_DIR],
  keepCase: true,
  longs: Number,
  enums: Number,
  defaults: false,
  oneofs: true,
});
const pkg = loadPackageDefinition(def) as GrpcObject;
const Ctor = ((pkg.envoy as GrpcObject).service as GrpcObject).ext_proc as GrpcObject;
const ExternalProcessor = (Ctor.v3 as GrpcObject).ExternalProcessor as ServiceClientConstructor;

/** Header list as Envoy >= 1.27 sends it: lower-case keys, values in raw_value. */
export function headerMap(h: Record<string, string>, field: 'raw_value' | 'value' = 'raw_value') {
  return {
    headers: Object.entries(h).map(([key, v]) =>
      field === 'raw_value' ? { key, raw_value: Buffer.from(v) } : { key, value: v },
    ),
  };
}

/** Set headers of a mutation as name -> value. */
export function setHeaders(m: Mutation | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of m?.set_headers ?? [])
    out[s.header?.key ?? ''] = s.header?.raw_value?.length
      ? s.header.raw_value.toString('latin1')
      : (s.header?.value ?? '');
  return out;
}

export class EnvoyStream {
  readonly call: ClientDuplexStream<object, Resp>;
  private readonly queue: Resp[] = [];
  private waiters: ((r: Resp | null) => void)[] = [];
  ended = false;
  status: { code: number; details: string } | null = null;

  constructor(call: ClientDuplexStream<object, Resp>) {
    this.call = call;
    call.on('data', (r: Resp) => {
      const w = this.waiters.shift();
      if (w) w(r);
      else this.queue.push(r);
    });
    const done = () => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w(null);
    };
    call.on('end', done);
    call.on('error', done);
    call.on('status', (s: { code: number; details: string }) => {
      this.status = s;
      done();
    });
  }

  /** The next ProcessingResponse, or null when the server ended the stream. */
  next(timeoutMs = 2000): Promise<Resp | null> {
    const r = this.queue.shift();
    if (r) return Promise.resolve(r);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no ProcessingResponse in time')), timeoutMs);
      this.waiters.push((x) => {
        clearTimeout(t);
        resolve(x);
      });
    });
  }

  async send(msg: object, timeoutMs?: number): Promise<Resp | null> {
    this.call.write(msg);
    return this.next(timeoutMs);
  }

  close(): void {
    this.call.end();
  }
}

export interface HttpExchange {
  /** Request headers, pseudo-headers included (`:method`, `:path` default to GET /). */
  headers: Record<string, string>;
  /** Upstream's answer; omitted: the stream ends after request_headers (client went away). */
  response?: { status: number; headers?: Record<string, string>; trailers?: Record<string, string> };
}

export interface ExchangeResult {
  request: Resp | null;
  response: Resp | null;
  /** The reply to response_trailers, when they were sent. */
  trailers: Resp | null;
  /** ProcessingRequest messages sent on the stream. */
  messages: number;
  elapsedMs: number;
}

export interface EnvoyOptions {
  /** The filter's allow_mode_override (default false, as in Envoy). */
  allowModeOverride?: boolean;
  /**
   * A channel that shares no connection with other stand-ins (grpc-js pools them per address by
   * default), so several stand-ins spread over the workers of `workers: N` as Envoys would.
   */
  ownConnection?: boolean;
}

export class EnvoyStandIn {
  readonly client: Client;
  readonly allowModeOverride: boolean;

  constructor(port: number, opts: EnvoyOptions = {}) {
    this.client = new ExternalProcessor(
      `127.0.0.1:${port}`,
      credentials.createInsecure(),
      opts.ownConnection === true ? { 'grpc.use_local_subchannel_pool': 1 } : {},
    );
    this.allowModeOverride = opts.allowModeOverride ?? false;
  }

  /**
   * The processing mode after a reply: Envoy applies mode_override only with allow_mode_override and
   * only while it waits on a headers reply; header modes left DEFAULT keep the mode in force.
   */
  applyOverride(mode: Required<ProcessingMode>, reply: Resp | null): void {
    const o = reply?.mode_override;
    if (!this.allowModeOverride || o === undefined) return;
    if (reply?.response !== 'request_headers' && reply?.response !== 'response_headers') return;
    for (const k of [
      'request_header_mode',
      'response_header_mode',
      'request_trailer_mode',
      'response_trailer_mode',
    ] as const)
      if ((o[k] ?? DEFAULT) !== DEFAULT) mode[k] = o[k] as number;
    mode.request_body_mode = o.request_body_mode ?? 0;
    mode.response_body_mode = o.response_body_mode ?? 0;
  }

  open(): EnvoyStream {
    return new EnvoyStream(
      (this.client as unknown as { Process(): ClientDuplexStream<object, Resp> }).Process(),
    );
  }

  /**
   * One HTTP request as Envoy runs it with examples/envoy/envoy.yaml's processing mode (request and
   * response headers and response trailers SEND, bodies NONE), changed by a mode_override it honours.
   */
  async exchange(x: HttpExchange): Promise<ExchangeResult> {
    const t0 = performance.now();
    const mode: Required<ProcessingMode> = {
      request_header_mode: SEND,
      response_header_mode: SEND,
      request_body_mode: 0,
      response_body_mode: 0,
      request_trailer_mode: SKIP,
      response_trailer_mode: SEND,
    };
    const s = this.open();
    const headers = { ':method': 'GET', ':path': '/', ':authority': 'svc', ...x.headers };
    const request = await s.send({ request_headers: { headers: headerMap(headers), end_of_stream: true } });
    let messages = 1;
    this.applyOverride(mode, request);
    let response: Resp | null = null;
    let trailersReply: Resp | null = null;
    if (request?.response === 'request_headers' && x.response !== undefined) {
      const { status, headers: rh = {}, trailers } = x.response;
      if (mode.response_header_mode !== SKIP) {
        response = await s.send({
          response_headers: {
            headers: headerMap({ ':status': String(status), ...rh }),
            end_of_stream: trailers === undefined,
          },
        });
        messages++;
        this.applyOverride(mode, response);
      }
      if (trailers !== undefined && mode.response_trailer_mode === SEND) {
        trailersReply = await s.send({ response_trailers: { trailers: headerMap(trailers) } });
        messages++;
      }
    }
    s.close();
    return { request, response, trailers: trailersReply, messages, elapsedMs: performance.now() - t0 };
  }

  close(): void {
    this.client.close();
  }
}

/** A client that sends raw bytes as a ProcessingRequest (to feed the server malformed messages). */
export function rawClient(port: number): { open(): ClientDuplexStream<Buffer, Buffer>; close(): void } {
  const Raw = makeGenericClientConstructor(
    {
      Process: {
        path: '/envoy.service.ext_proc.v3.ExternalProcessor/Process',
        requestStream: true,
        responseStream: true,
        requestSerialize: (b: Buffer) => b,
        requestDeserialize: (b: Buffer) => b,
        responseSerialize: (b: Buffer) => b,
        responseDeserialize: (b: Buffer) => b,
      },
    },
    'Raw',
  );
  const c = new Raw(`127.0.0.1:${port}`, credentials.createInsecure());
  return {
    open: () => (c as unknown as { Process(): ClientDuplexStream<Buffer, Buffer> }).Process(),
    close: () => c.close(),
  };
}
