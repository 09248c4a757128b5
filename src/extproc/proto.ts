/**
 * Envoy's ext_proc wire contract, loaded from the .proto files in proto/ (package names and field
 * numbers as envoyproxy/data-plane-api publishes them) with @grpc/proto-loader: what clients (the
 * Envoy stand-in in the tests) and the wire test encode with. The loader's options are the message
 * shapes below: snake_case names, oneofs as a `request` / `response` discriminator, absent fields
 * absent (no defaults), bytes as Buffers. The server itself decodes and encodes with ./codec.ts
 * (extProcServerService).
 */
import { fileURLToPath } from 'node:url';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { decodeProcessingRequest, type ExtProcMessage } from './codec.js';

/** proto/ at the package root: two levels up from both src/extproc and dist/extproc. */
export const PROTO_DIR = fileURLToPath(new URL('../../proto', import.meta.url));
export const EXT_PROC_PROTO = 'envoy/service/ext_proc/v3/external_processor.proto';
export const EXT_PROC_SERVICE = 'envoy.service.ext_proc.v3.ExternalProcessor';

let cached: ServiceDefinition | null = null;

export function extProcService(): ServiceDefinition {
  if (cached !== null) return cached;
  const def = loadSync(EXT_PROC_PROTO, {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    longs: Number,
    enums: Number,
    defaults: false,
    oneofs: true,
  });
  cached = def[EXT_PROC_SERVICE] as ServiceDefinition;
  return cached;
}

const passBuffer = (b: Buffer): Buffer => b;

/**
 * The service as the server registers it: requests decoded by the host's codec, replies written as
 * the Buffers the codec (or a constant) made. The other two directions are a client's and unused.
 */
export const extProcServerService: ServiceDefinition = {
  Process: {
    path: `/${EXT_PROC_SERVICE}/Process`,
    requestStream: true,
    responseStream: true,
    requestSerialize: passBuffer,
    requestDeserialize: decodeProcessingRequest as (b: Buffer) => ExtProcMessage,
    responseSerialize: passBuffer,
    responseDeserialize: passBuffer,
  },
};

// ---- message shapes (the subset of fields the host uses) ---------------------------------------------

export interface HeaderValue {
  key?: string;
  value?: string;
  raw_value?: Buffer;
}

export interface HttpHeaders {
  headers?: { headers?: HeaderValue[] };
  end_of_stream?: boolean;
}

export interface HttpTrailers {
  trailers?: { headers?: HeaderValue[] };
}

export interface ProcessingRequest {
  async_mode?: boolean;
  request?:
    | 'request_headers'
    | 'response_headers'
    | 'request_body'
    | 'response_body'
    | 'request_trailers'
    | 'response_trailers';
  request_headers?: HttpHeaders;
  response_headers?: HttpHeaders;
  response_trailers?: HttpTrailers;
}

export interface HeaderValueOption {
  header: HeaderValue;
  append_action: number;
}

export interface HeaderMutation {
  set_headers?: HeaderValueOption[];
  remove_headers?: string[];
}

export interface ProcessingResponse {
  request_headers?: { response?: { header_mutation?: HeaderMutation } };
  response_headers?: { response?: { header_mutation?: HeaderMutation } };
  request_body?: object;
  response_body?: object;
  request_trailers?: object;
  response_trailers?: object;
  immediate_response?: {
    status: { code: number };
    headers?: HeaderMutation;
    body?: string;
    grpc_status?: { status: number };
    details?: string;
  };
}

/** HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD */
export const OVERWRITE_IF_EXISTS_OR_ADD = 2;
