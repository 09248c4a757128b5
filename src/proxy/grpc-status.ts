/** gRPC status codes and their labels: they live in the shared vocabulary (src/core/vocab.ts). */
export {
  GRPC_STATUS_NAMES,
  GRPC_DEADLINE_EXCEEDED,
  GRPC_UNAVAILABLE,
  GRPC_CODE_LABELS,
  GRPC_NO_STATUS_LABEL,
  grpcCodeIndex,
  grpcStatusCode,
} from '../core/vocab.js';
