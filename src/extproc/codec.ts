/**
 * The ext_proc host's own codec for the few ProcessingRequest / ProcessingResponse fields it uses, in
 * place of proto-loader's protobufjs objects on the server's hot path. The .proto files in proto/ stay
 * the contract (the Envoy stand-in in the tests encodes with them, and test/unit/extproc-wire.test.ts
 * checks this codec against both hand-computed bytes and protobufjs's encoding of the same messages).
 *
 * Why hand-written rather than protobufjs static code (pbjs): what the server needs from a
 * request_headers message is the header list as the flat [name, value, ...] strings every host's
 * matcher reads. Decoding straight into that array skips the per-header objects, the Buffer slice per
 * raw_value, proto-loader's object conversion and a second pass to flatten (protobufjs + proto-loader
 * were ~15% of the server's CPU per stream in a profile, more than Faultline's own decision); a reply
 * is one exact-size Buffer written in one pass, with no message objects built to describe it. Unknown fields (any wire type) are skipped
 * at every level, as proto3 requires; malformed bytes throw, and grpc-js answers the stream with an
 * INTERNAL status, as it did with protobufjs.
 */

/** ProcessingRequest's `request` oneof, by field number (0: none set). */
export const KIND_NONE = 0;
export const KIND_REQUEST_HEADERS = 2;
export const KIND_RESPONSE_HEADERS = 3;
export const KIND_REQUEST_BODY = 4;
export const KIND_RESPONSE_BODY = 5;
export const KIND_REQUEST_TRAILERS = 6;
export const KIND_RESPONSE_TRAILERS = 7;

/** One decoded ProcessingRequest: what the host reads of it. */
export interface ExtProcMessage {
  /** Field number of the `request` oneof member that came last (proto3: the last one wins), or 0. */
  kind: number;
  asyncMode: boolean;
  /** HttpHeaders.end_of_stream (headers kinds). */
  endOfStream: boolean;
  /** HttpHeaders.headers / HttpTrailers.trailers as [name, value, ...]; raw_value (latin1) wins over value. */
  headers: string[];
}

const NO_HEADERS: string[] = [];
const NO_BYTES = Buffer.alloc(0);

// ---- decode ----------------------------------------------------------------------------------------

function malformed(what: string): Error {
  return new Error(`ext_proc: malformed ProcessingRequest (${what})`);
}

/**
 * A cursor over one message's bytes. Module state rather than an object per message: decoding is
 * synchronous and never re-entered.
 */
let buf: Buffer = NO_BYTES;
let pos = 0;

function varint(end: number): number {
  let result = 0;
  let shift = 0;
  for (;;) {
    if (pos >= end) throw malformed('truncated varint');
    const b = buf[pos++] as number;
    if (shift < 28) result |= (b & 0x7f) << shift;
    else if (shift < 53) result += (b & 0x7f) * 2 ** shift;
    // Bits past 2^53 (a 64-bit varint of an unknown field): only skipped, never used as a length.
    if (b < 0x80) return shift < 28 ? result >>> 0 : result;
    shift += 7;
    if (shift > 63) throw malformed('varint too long');
  }
}

/** Length of a length-delimited field; the end it returns is checked against the enclosing end. */
function delimitedEnd(end: number): number {
  const len = varint(end);
  const e = pos + len;
  if (e > end) throw malformed('length past the end');
  return e;
}

function skip(wireType: number, end: number, field: number): void {
  switch (wireType) {
    case 0:
      varint(end);
      return;
    case 1:
      pos += 8;
      break;
    case 2:
      pos = delimitedEnd(end);
      return;
    case 5:
      pos += 4;
      break;
    case 3: {
      // A group (proto2): skip its fields up to the matching end-group tag.
      for (;;) {
        const tag = varint(end);
        if ((tag & 7) === 4) {
          if (tag >>> 3 !== field) throw malformed('unmatched end-group');
          return;
        }
        skip(tag & 7, end, tag >>> 3);
      }
    }
    default:
      throw malformed(`wire type ${wireType}`);
  }
  if (pos > end) throw malformed('truncated fixed-width field');
}

/** HeaderValue {1 key, 2 value, 3 raw_value} appended to out as two strings. */
function headerValue(end: number, out: string[]): void {
  let key = '';
  let value = '';
  let rawStart = -1;
  let rawEnd = -1;
  while (pos < end) {
    const tag = varint(end);
    const f = tag >>> 3;
    if ((tag & 7) === 2 && f >= 1 && f <= 3) {
      const e = delimitedEnd(end);
      if (f === 1) key = buf.toString('utf8', pos, e);
      else if (f === 2) value = buf.toString('utf8', pos, e);
      else {
        rawStart = pos;
        rawEnd = e;
      }
      pos = e;
    } else skip(tag & 7, end, f);
  }
  out.push(key, rawEnd > rawStart ? buf.toString('latin1', rawStart, rawEnd) : value);
}

/** HeaderMap {1 repeated HeaderValue}. */
function headerMap(end: number, out: string[]): void {
  while (pos < end) {
    const tag = varint(end);
    if (tag === 0x0a) {
      const e = delimitedEnd(end);
      headerValue(e, out);
    } else skip(tag & 7, end, tag >>> 3);
  }
}

/** HttpHeaders {1 HeaderMap headers, 3 end_of_stream} or HttpTrailers {1 HeaderMap trailers}. */
function headersMessage(end: number, msg: ExtProcMessage, withEos: boolean): void {
  while (pos < end) {
    const tag = varint(end);
    if (tag === 0x0a) {
      const e = delimitedEnd(end);
      if (msg.headers === NO_HEADERS) msg.headers = [];
      headerMap(e, msg.headers);
    } else if (withEos && tag === 0x18) msg.endOfStream = varint(end) !== 0;
    else skip(tag & 7, end, tag >>> 3);
  }
}

/** grpc-js requestDeserialize: one ProcessingRequest's bytes to what the host reads. */
export function decodeProcessingRequest(bytes: Buffer): ExtProcMessage {
  const msg: ExtProcMessage = { kind: KIND_NONE, asyncMode: false, endOfStream: false, headers: NO_HEADERS };
  buf = bytes;
  pos = 0;
  const end = bytes.length;
  try {
    while (pos < end) {
      const tag = varint(end);
      const f = tag >>> 3;
      if (tag === 0x08) msg.asyncMode = varint(end) !== 0;
      else if ((tag & 7) === 2 && f >= KIND_REQUEST_HEADERS && f <= KIND_RESPONSE_TRAILERS) {
        const e = delimitedEnd(end);
        // A oneof: a later member replaces an earlier one.
        msg.kind = f;
        msg.endOfStream = false;
        msg.headers = NO_HEADERS;
        if (f === KIND_REQUEST_HEADERS || f === KIND_RESPONSE_HEADERS) headersMessage(e, msg, true);
        else if (f === KIND_REQUEST_TRAILERS || f === KIND_RESPONSE_TRAILERS) headersMessage(e, msg, false);
        // Bodies: not asked for and not read.
        pos = e;
      } else skip(tag & 7, end, f);
    }
  } finally {
    buf = NO_BYTES;
  }
  return msg;
}

// ---- encode ----------------------------------------------------------------------------------------

/** ProcessingResponse field of the reply to a message kind: request_headers (2) -> 1, ... */
const replyField = (kind: number) => kind - 1;

/** CONTINUE replies without mutations, by request kind: the oneof tag and length 0. */
export const CONTINUE_BYTES: readonly Buffer[] = [2, 3, 4, 5, 6, 7].reduce<Buffer[]>((a, k) => {
  a[k] = Buffer.from([(replyField(k) << 3) | 2, 0]);
  return a;
}, []);

/**
 * ProcessingResponse.mode_override (9): ProcessingMode{response_header_mode (2): SKIP, request_trailer_mode
 * (5): SKIP, response_trailer_mode (6): SKIP}, body modes NONE (0, left out). Sent with the
 * request_headers reply of a request Faultline leaves untouched: it records nothing of that request's
 * response, so an Envoy with allow_mode_override: true skips the response_headers / trailers messages
 * (and their replies) and the stream is one exchange. Every mode is spelt out (no DEFAULT): older Envoy
 * replaces the whole mode with the override, newer Envoy only the non-DEFAULT header modes.
 */
export const MODE_OVERRIDE_SKIP_RESPONSE: Buffer = Buffer.from([0x4a, 6, 0x10, 2, 0x28, 2, 0x30, 2]);

/** CONTINUE to request_headers, no mutation, with MODE_OVERRIDE_SKIP_RESPONSE: the untouched reply. */
export const CONTINUE_REQUEST_SKIP_RESPONSE: Buffer = Buffer.concat([
  CONTINUE_BYTES[2] as Buffer,
  MODE_OVERRIDE_SKIP_RESPONSE,
]);

function varintSize(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}
/** Size of a length-delimited field with a one-byte tag. */
function fieldSize(len: number): number {
  return 1 + varintSize(len) + len;
}

let out: Buffer = NO_BYTES;
let at = 0;

function putVarint(n: number): void {
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  out[at++] = n;
}
function putHead(tag: number, len: number): void {
  out[at++] = tag;
  putVarint(len);
}

/**
 * A header mutation as the host builds it: set_headers as [name, value, ...] (each
 * OVERWRITE_IF_EXISTS_OR_ADD), remove_headers as names. `rawValue`: values go in raw_value (latin1
 * bytes, Envoy >= 1.27) rather than value (UTF-8).
 */
export interface Mutation {
  set: readonly string[];
  remove: readonly string[];
  rawValue: boolean;
}

// Sizes computed once per encode and read back while writing (no per-header allocation).
const hvSizes: number[] = [];

function mutationSize(m: Mutation): number {
  let n = 0;
  const set = m.set;
  for (let i = 0; i < set.length; i += 2) {
    const k = Buffer.byteLength(set[i] as string);
    const v = m.rawValue ? (set[i + 1] as string).length : Buffer.byteLength(set[i + 1] as string);
    const hv = fieldSize(k) + fieldSize(v);
    hvSizes[i] = hv;
    hvSizes[i + 1] = v;
    // HeaderValueOption {1 header, 3 append_action = 2}
    n += fieldSize(fieldSize(hv) + 2);
  }
  for (const r of m.remove) n += fieldSize(Buffer.byteLength(r));
  return n;
}

function putString(tag: number, s: string): void {
  const len = Buffer.byteLength(s);
  putHead(tag, len);
  at += out.write(s, at, len, 'utf8');
}

/** Writes HeaderMutation's fields; mutationSize(m) must have run just before. */
function putMutation(m: Mutation): void {
  const set = m.set;
  for (let i = 0; i < set.length; i += 2) {
    const hv = hvSizes[i] as number;
    putHead(0x0a, fieldSize(hv) + 2); // set_headers (1): HeaderValueOption
    putHead(0x0a, hv); // header (1): HeaderValue
    putString(0x0a, set[i] as string); // key (1)
    const v = set[i + 1] as string;
    if (m.rawValue) {
      putHead(0x1a, hvSizes[i + 1] as number); // raw_value (3)
      at += out.write(v, at, v.length, 'latin1');
    } else putString(0x12, v); // value (2)
    out[at++] = 0x18; // append_action (3)
    out[at++] = 2; // OVERWRITE_IF_EXISTS_OR_ADD
  }
  for (const r of m.remove) putString(0x12, r); // remove_headers (2)
}

function begin(size: number): void {
  out = Buffer.allocUnsafe(size);
  at = 0;
}
function finish(): Buffer {
  const b = out;
  if (at !== b.length) throw new Error(`ext_proc codec: wrote ${at} of ${b.length} bytes`);
  out = NO_BYTES;
  return b;
}

/**
 * ProcessingResponse{<kind's reply>: HeadersResponse{response: CommonResponse{header_mutation}}}:
 * CONTINUE with a header mutation, for request_headers (kind 2) or response_headers (kind 3).
 * `skipResponse`: MODE_OVERRIDE_SKIP_RESPONSE follows (request_headers of an untouched request).
 */
export function encodeHeadersReply(kind: number, m: Mutation, skipResponse = false): Buffer {
  const mut = mutationSize(m);
  const common = fieldSize(mut); // CommonResponse.header_mutation (2)
  const headersResponse = fieldSize(common); // HeadersResponse.response (1)
  const skip = skipResponse ? MODE_OVERRIDE_SKIP_RESPONSE.length : 0;
  begin(fieldSize(headersResponse) + skip);
  putHead((replyField(kind) << 3) | 2, headersResponse);
  putHead(0x0a, common);
  putHead(0x12, mut);
  putMutation(m);
  if (skipResponse) at += MODE_OVERRIDE_SKIP_RESPONSE.copy(out, at);
  return finish();
}

/**
 * ProcessingResponse{immediate_response (7)}: status (1) HttpStatus{code}, headers (2), body (3),
 * grpc_status (4) GrpcStatus{status} when `grpcStatus` >= 0, details (5). Empty fields are left out.
 */
export function encodeImmediateResponse(
  status: number,
  headers: Mutation,
  body: string,
  grpcStatus: number,
  details: string,
): Buffer {
  const statusMsg = 1 + varintSize(status);
  const mut = mutationSize(headers);
  const bodyLen = Buffer.byteLength(body);
  const grpcMsg = grpcStatus >= 0 ? 1 + varintSize(grpcStatus) : 0;
  const detailsLen = Buffer.byteLength(details);
  const imm =
    fieldSize(statusMsg) +
    (mut > 0 ? fieldSize(mut) : 0) +
    (bodyLen > 0 ? fieldSize(bodyLen) : 0) +
    (grpcStatus >= 0 ? fieldSize(grpcMsg) : 0) +
    (detailsLen > 0 ? fieldSize(detailsLen) : 0);
  begin(fieldSize(imm));
  putHead(0x3a, imm);
  putHead(0x0a, statusMsg);
  out[at++] = 0x08;
  putVarint(status);
  if (mut > 0) {
    putHead(0x12, mut);
    putMutation(headers);
  }
  if (bodyLen > 0) putString(0x1a, body);
  if (grpcStatus >= 0) {
    putHead(0x22, grpcMsg);
    out[at++] = 0x08;
    putVarint(grpcStatus);
  }
  if (detailsLen > 0) putString(0x2a, details);
  return finish();
}
