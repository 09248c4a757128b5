/**
 * The shared vocabulary: arms, outcomes, status classes, gRPC codes and the names Faultline puts on the
 * wire. A leaf module (it imports nothing), so every layer (engine, faults, stats, hosts, load
 * generator) can use it without an import cycle.
 */

// ---- arms --------------------------------------------------------------------------------------------
export const ARM_NONE = 0;
export const ARM_CANARY = 1;
export const ARM_CONTROL = 2;
/** Index into GROUP_NAMES: none (untouched), canary (gets the fault), control (watched, no fault). */
export type Arm = 0 | 1 | 2;
export const GROUP_NAMES = ['none', 'canary', 'control'] as const;
export type GroupName = (typeof GROUP_NAMES)[number];

// ---- outcomes ----------------------------------------------------------------------------------------
export const OUTCOME_OK = 0;
export const OUTCOME_ERROR = 1;
export const OUTCOME_TIMEOUT = 2;
export const OUTCOME_RESET = 3;
export const OUTCOME_CLIENT_ABORT = 4;
export const OUTCOMES = ['ok', 'error', 'timeout', 'reset', 'client_abort'] as const;
/** What a request came to, as the analyzer and the counts see it (index into OUTCOMES). */
export type Outcome = 0 | 1 | 2 | 3 | 4;

// ---- HTTP status classes and methods (metric labels) -------------------------------------------------
export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'error'] as const;
/** STATUS_CLASSES index of "no HTTP status was sent" (a reset, a client abort, a body cut short). */
export const STATUS_CLASS_NONE = 5;

/** 0..4 for 1xx..5xx, 5 for "no HTTP status" (reset, client abort, upstream died mid-body). */
export function statusClassIndex(status: number): number {
  return status >= 100 && status < 600 ? ((status / 100) | 0) - 1 : STATUS_CLASS_NONE;
}

export const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'other'] as const;

export function methodIndex(method: string | undefined): number {
  switch (method) {
    case 'GET':
      return 0;
    case 'HEAD':
      return 1;
    case 'POST':
      return 2;
    case 'PUT':
      return 3;
    case 'DELETE':
      return 4;
    case 'PATCH':
      return 5;
    case 'OPTIONS':
      return 6;
    default:
      return 7;
  }
}

// ---- gRPC status codes (grpc/doc/statuscodes.md) -----------------------------------------------------
export const GRPC_STATUS_NAMES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;
export const GRPC_OK = 0;
export const GRPC_CANCELLED = 1;
export const GRPC_DEADLINE_EXCEEDED = 4;
export const GRPC_INTERNAL = 13;
export const GRPC_UNAVAILABLE = 14;

/** OK is ok, DEADLINE_EXCEEDED a timeout, every other code an error (no status: caller decides). */
export function grpcCodeOutcome(code: number): Outcome {
  if (code === GRPC_OK) return OUTCOME_OK;
  if (code === GRPC_DEADLINE_EXCEEDED) return OUTCOME_TIMEOUT;
  return OUTCOME_ERROR;
}

/**
 * grpc-message value: percent-encoded UTF-8, where only bytes outside 0x20-0x7E and '%' itself are
 * encoded (PROTOCOL-HTTP2.md, "Responses"); clients decode exactly that, so encodeURIComponent's
 * extra escapes (':', '/', ...) would show up verbatim.
 */
export function grpcMessageEncode(message: string): string {
  let plain = true;
  for (let i = 0; i < message.length; i++) {
    const c = message.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) return message;
  let out = '';
  for (const byte of Buffer.from(message, 'utf8'))
    out +=
      byte < 0x20 || byte > 0x7e || byte === 0x25
        ? `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
        : String.fromCharCode(byte);
  return out;
}
/** The headers of a trailers-only gRPC answer (HTTP 200, grpc-status and an encoded grpc-message). */
export function grpcStatusHeaders(code: number, message: string): Record<string, string> {
  return {
    'content-type': 'application/grpc',
    'grpc-status': String(code),
    'grpc-message': grpcMessageEncode(message),
  };
}

// ---- names on the wire -------------------------------------------------------------------------------
/** Response header marking an injected response: `<experiment>; fault=<kind>`. */
export const HEADER_INJECTED = 'x-faultline-injected';
/** Response header naming the arm of an assigned request: `<experiment>; group=canary|control`. */
export const HEADER_ARM = 'x-faultline-arm';
/** Response header with the stable code of an error Faultline answered itself. */
export const HEADER_ERROR = 'x-faultline-error';
/** W3C baggage keys of the assignment. */
export const BAGGAGE_EXP = 'faultline.exp';
export const BAGGAGE_GROUP = 'faultline.group';
export const BAGGAGE_PREFIX = 'faultline.';

/** A gRPC status from its number or name (any case); undefined when it is neither. */
export function grpcStatusCode(v: string | number): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 && v <= 16 ? v : undefined;
  if (/^\d+$/.test(v)) return grpcStatusCode(Number(v));
  const i = (GRPC_STATUS_NAMES as readonly string[]).indexOf(v.toUpperCase());
  return i >= 0 ? i : undefined;
}

/** Label of a gRPC call that ended without any grpc-status (stream reset, caller cancelled). */
export const GRPC_NO_STATUS_LABEL = 'none';

/**
 * grpc_code label values of faultline_requests_total and faultline_experiment_responses_total,
 * indexed by grpcCodeIndex(): "" for a request that is not a gRPC call (Prometheus reads an empty
 * label as an absent one, so HTTP series look as they did), the final grpc-status name, or "none"
 * when a gRPC call ended without a status (reset, cancelled, a reply without grpc-status).
 */
export const GRPC_CODE_LABELS: readonly string[] = ['', ...GRPC_STATUS_NAMES, GRPC_NO_STATUS_LABEL];

/**
 * A grpc-status header's code. Anything but one or two ASCII digits naming a code (a fraction, an
 * exponent, a sign, an unknown number) reads as UNKNOWN (2), as gRPC clients read it, so a bad value
 * never becomes a metric label of its own. No regex: it runs once per gRPC response.
 */
export function parseGrpcStatus(v: string): number {
  const n = v.length;
  if (n === 0 || n > 2) return 2;
  let code = 0;
  for (let i = 0; i < n; i++) {
    const d = v.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return 2;
    code = code * 10 + d;
  }
  return code < GRPC_STATUS_NAMES.length ? code : 2;
}

/** Index into GRPC_CODE_LABELS: 0 not gRPC, 1 + code, or the last slot for "none". */
export function grpcCodeIndex(isGrpc: boolean, status: number): number {
  if (!isGrpc) return 0;
  return status >= 0 && status < GRPC_STATUS_NAMES.length ? status + 1 : GRPC_STATUS_NAMES.length + 1;
}

/**
 * The HTTP status class of each gRPC code (google.rpc code.proto's HTTP mapping: NOT_FOUND 404,
 * RESOURCE_EXHAUSTED 429, UNKNOWN/INTERNAL/DATA_LOSS 500, UNIMPLEMENTED 501, UNAVAILABLE 503,
 * DEADLINE_EXCEEDED 504, ...). Every gRPC reply is HTTP 200; filing calls by their code's class lets
 * `status_class=~"5xx|error"` see UNAVAILABLE and DEADLINE_EXCEEDED as the server errors they are.
 */
const GRPC_STATUS_CLASS: readonly number[] = [1, 3, 4, 3, 4, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 3];

/**
 * status_class of a gRPC call that got an HTTP 2xx: its grpc-status's class; 5xx without a
 * grpc-status (clients report INTERNAL).
 */
export function grpcStatusClass(status: number): number {
  return status >= 0 && status < GRPC_STATUS_CLASS.length ? (GRPC_STATUS_CLASS[status] as number) : 4;
}
