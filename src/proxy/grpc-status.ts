/** gRPC status codes: they live in the shared vocabulary (src/core/vocab.ts). */
export {
  GRPC_STATUS_NAMES,
  GRPC_DEADLINE_EXCEEDED,
  GRPC_UNAVAILABLE,
  grpcStatusCode,
} from '../core/vocab.js';
