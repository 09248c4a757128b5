/**
 * The ext_proc wire contract checked against hand-computed protobuf bytes (field numbers from
 * envoyproxy/data-plane-api): a wrong field number or wire type in proto/ cannot pass unnoticed.
 */
import { describe, expect, it } from 'vitest';
import {
  CONTINUE_BYTES,
  CONTINUE_REQUEST_SKIP_RESPONSE,
  decodeProcessingRequest,
  encodeHeadersReply,
  encodeImmediateResponse,
  KIND_REQUEST_HEADERS,
  KIND_RESPONSE_HEADERS,
  KIND_RESPONSE_TRAILERS,
} from '../../src/extproc/codec.js';
import { extProcService } from '../../src/extproc/proto.js';

const method = extProcService().Process!;
const hex = (b: Buffer) => b.toString('hex');
const bytes = (...parts: (number[] | string)[]) =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));

describe('ext_proc wire format', () => {
  it('ProcessingRequest.request_headers (2) > HttpHeaders.headers (1) > HeaderMap.headers (1) > HeaderValue key (1) / raw_value (3); end_of_stream (3)', () => {
    const enc = method.requestSerialize({
      request_headers: {
        headers: { headers: [{ key: ':path', raw_value: Buffer.from('/a') }] },
        end_of_stream: true,
      },
    });
    const hv = bytes([0x0a, 5], ':path', [0x1a, 2], '/a');
    const hm = bytes([0x0a, hv.length], hv.toString('latin1'));
    const hh = bytes([0x0a, hm.length], hm.toString('latin1'), [0x18, 1]);
    expect(hex(enc)).toBe(hex(bytes([0x12, hh.length], hh.toString('latin1'))));
    // ... and the server decodes those bytes back, with unknown fields (10: observability_mode) ignored.
    const dec = method.requestDeserialize(Buffer.concat([enc, Buffer.from([0x50, 0x01])])) as Record<
      string,
      unknown
    >;
    expect(dec.request).toBe('request_headers');
  });

  it('response_headers (3) and response_trailers (7), HeaderValue.value (2)', () => {
    expect(hex(method.requestSerialize({ response_headers: { end_of_stream: true } }))).toBe('1a021801');
    const t = method.requestSerialize({
      response_trailers: { trailers: { headers: [{ key: 'grpc-status', value: '0' }] } },
    });
    const hv = bytes([0x0a, 11], 'grpc-status', [0x12, 1], '0');
    expect(hex(t)).toBe(
      hex(bytes([0x3a, hv.length + 4, 0x0a, hv.length + 2, 0x0a, hv.length], hv.toString('latin1'))),
    );
  });

  it('ProcessingResponse.immediate_response (7): status (1) HttpStatus.code (1), body (3), grpc_status (4), details (5)', () => {
    const enc = method.responseSerialize({
      immediate_response: { status: { code: 503 }, body: 'x', grpc_status: { status: 14 }, details: 'd' },
    });
    expect(hex(enc)).toBe('3a0f' + '0a0308f703' + '1a0178' + '2202080e' + '2a0164');
  });

  it('request_headers (1) > CommonResponse (1) > header_mutation (2) > set_headers (1) {header (1), append_action (3)} / remove_headers (2)', () => {
    const enc = method.responseSerialize({
      request_headers: {
        response: {
          header_mutation: {
            set_headers: [{ header: { key: 'baggage', raw_value: Buffer.from('a=1') }, append_action: 2 }],
            remove_headers: ['x'],
          },
        },
      },
    });
    const hv = '0a07' + Buffer.from('baggage').toString('hex') + '1a03' + Buffer.from('a=1').toString('hex');
    const hvo = '0a0e' + hv + '1802';
    const mut = '0a12' + hvo + '120178';
    expect(hex(enc)).toBe('0a1b' + '0a19' + '1217' + mut);
    // An empty CONTINUE is the oneof's tag with length 0.
    expect(hex(method.responseSerialize({ response_trailers: {} }))).toBe('3200');
  });
});

/**
 * The server's own codec (src/extproc/codec.ts) against the same hand-computed bytes, and against
 * protobufjs (proto-loader on proto/) both ways: a field number or length it got wrong shows here.
 */
describe('ext_proc server codec', () => {
  const hv = (key: string, f: 2 | 3, v: string) =>
    bytes([0x0a, key.length], key, [f === 2 ? 0x12 : 0x1a, Buffer.byteLength(v)], v);
  const ld = (tag: number, b: Buffer) => Buffer.concat([Buffer.from([tag, b.length]), b]);

  it('decodes request_headers into [name, value, ...], skipping unknown fields of every wire type at every level', () => {
    // Fields 10-14 (varint, fixed64, fixed32, bytes, a proto2 group) are unknown at every level.
    const unknowns = bytes(
      [0x50, 0x96, 0x01],
      [0x59, 1, 2, 3, 4, 5, 6, 7, 8],
      [0x65, 1, 2, 3, 4],
      [0x6a, 1, 0x41],
    );
    const group = bytes([0x73, 0x08, 0x01, 0x74]);
    const path = Buffer.concat([hv(':path', 3, '/a'), unknowns]);
    const map = Buffer.concat([ld(0x0a, path), ld(0x0a, hv('x-v', 2, 'é')), unknowns, group]);
    const headers = Buffer.concat([ld(0x0a, map), bytes([0x18, 1]), unknowns]);
    const msg = Buffer.concat([bytes([0x08, 1]), ld(0x12, headers), unknowns, group]);
    expect(decodeProcessingRequest(msg)).toEqual({
      kind: KIND_REQUEST_HEADERS,
      asyncMode: true,
      endOfStream: true,
      headers: [':path', '/a', 'x-v', 'é'],
    });
  });

  it('raw_value wins over value; response_trailers (7); an empty message has no kind', () => {
    const both = Buffer.concat([hv('k', 3, 'raw'), bytes([0x12, 1], 'v')]);
    const t = ld(0x3a, ld(0x0a, ld(0x0a, Buffer.concat([hv('grpc-status', 2, '0')]))));
    expect(decodeProcessingRequest(t).headers).toEqual(['grpc-status', '0']);
    expect(decodeProcessingRequest(t).kind).toBe(KIND_RESPONSE_TRAILERS);
    expect(decodeProcessingRequest(ld(0x1a, ld(0x0a, ld(0x0a, both)))).headers).toEqual(['k', 'raw']);
    expect(decodeProcessingRequest(Buffer.alloc(0))).toMatchObject({ kind: 0, headers: [] });
  });

  it('decodes what protobufjs encodes (long values, many headers, every kind)', () => {
    const long = 'b'.repeat(300);
    const headers = Array.from({ length: 40 }, (_, i) => ({ key: `h${i}`, raw_value: Buffer.from(`${i}`) }));
    headers.push({ key: 'baggage', raw_value: Buffer.from(long) });
    for (const kind of ['request_headers', 'response_headers'] as const) {
      const enc = method.requestSerialize({ [kind]: { headers: { headers }, end_of_stream: true } });
      const dec = decodeProcessingRequest(enc);
      expect(dec.kind).toBe(kind === 'request_headers' ? KIND_REQUEST_HEADERS : KIND_RESPONSE_HEADERS);
      expect(dec.endOfStream).toBe(true);
      expect(dec.headers).toEqual(headers.flatMap((h) => [h.key, h.raw_value.toString('latin1')]));
    }
    expect(
      decodeProcessingRequest(method.requestSerialize({ request_body: { body: Buffer.from('x') } })).kind,
    ).toBe(4);
  });

  it('malformed bytes throw (grpc-js answers the stream with INTERNAL)', () => {
    expect(() => decodeProcessingRequest(Buffer.from([0x12, 0x05, 0x0a]))).toThrow(/length past the end/);
    expect(() => decodeProcessingRequest(Buffer.from([0x12]))).toThrow(/truncated varint/);
    expect(() => decodeProcessingRequest(Buffer.from([0x0f]))).toThrow(/wire type 7/);
  });

  it('encodes replies byte for byte as the hand-computed encodings above', () => {
    const none = { set: [], remove: [], rawValue: true };
    expect(hex(encodeImmediateResponse(503, none, 'x', 14, 'd'))).toBe(
      '3a0f' + '0a0308f703' + '1a0178' + '2202080e' + '2a0164',
    );
    const m = { set: ['baggage', 'a=1'], remove: ['x'], rawValue: true };
    const h = '0a07' + Buffer.from('baggage').toString('hex') + '1a03' + Buffer.from('a=1').toString('hex');
    expect(hex(encodeHeadersReply(KIND_REQUEST_HEADERS, m))).toBe(
      '0a1b0a191217' + '0a12' + '0a0e' + h + '1802' + '120178',
    );
    expect(CONTINUE_BYTES.map((b) => (b ? hex(b) : null)).slice(2)).toEqual([
      '0a00',
      '1200',
      '1a00',
      '2200',
      '2a00',
      '3200',
    ]);
  });

  it('the untouched reply: request_headers (1) CONTINUE + mode_override (9) ProcessingMode{response_header_mode (2), request_trailer_mode (5), response_trailer_mode (6): SKIP (2)}', () => {
    // Tags: (1 << 3) | 2 = 0x0a; (9 << 3) | 2 = 0x4a; varints (2 << 3) = 0x10, (5 << 3) = 0x28, (6 << 3) = 0x30.
    expect(hex(CONTINUE_REQUEST_SKIP_RESPONSE)).toBe('0a00' + '4a06' + '1002' + '2802' + '3002');
    // The same message as protobufjs encodes it from proto/ (processing_mode.proto's names and numbers).
    const SKIP = 2;
    const mode = { response_header_mode: SKIP, request_trailer_mode: SKIP, response_trailer_mode: SKIP };
    expect(hex(method.responseSerialize({ request_headers: {}, mode_override: mode }))).toBe(
      hex(CONTINUE_REQUEST_SKIP_RESPONSE),
    );
    expect(method.responseDeserialize(CONTINUE_REQUEST_SKIP_RESPONSE)).toEqual({
      request_headers: {},
      response: 'request_headers',
      mode_override: mode,
    });
    // With a header mutation (a stripped forged assignment): the override follows the oneof.
    const m = { set: [], remove: ['baggage'], rawValue: true };
    expect(hex(encodeHeadersReply(KIND_REQUEST_HEADERS, m, true))).toBe(
      '0a0d0a0b1209' + '1207' + Buffer.from('baggage').toString('hex') + '4a06100228023002',
    );
  });

  it('protobufjs decodes what the codec encodes (value and raw_value, multi-byte lengths, UTF-8)', () => {
    const long = 'faultline.exp=x,faultline.group=canary,' + 'u'.repeat(200);
    for (const rawValue of [true, false]) {
      const m = {
        set: ['baggage', long, 'x-faultline-arm', 'canary', 'x-u', 'ü'],
        remove: ['a', 'b'],
        rawValue,
      };
      const dec = method.responseDeserialize(encodeHeadersReply(KIND_RESPONSE_HEADERS, m)) as {
        response: string;
        response_headers: {
          response: { header_mutation: { set_headers: unknown[]; remove_headers: string[] } };
        };
      };
      expect(dec.response).toBe('response_headers');
      const mut = dec.response_headers.response.header_mutation;
      expect(mut.remove_headers).toEqual(['a', 'b']);
      expect(
        (
          mut.set_headers as {
            header: { key: string; value?: string; raw_value?: Buffer };
            append_action: number;
          }[]
        ).map((s) => [
          s.header.key,
          rawValue ? s.header.raw_value?.toString('latin1') : s.header.value,
          s.append_action,
        ]),
      ).toEqual([
        ['baggage', long, 2],
        ['x-faultline-arm', 'canary', 2],
        ['x-u', 'ü', 2],
      ]);
    }
    const imm = method.responseDeserialize(
      encodeImmediateResponse(
        503,
        { set: ['retry-after', '1'], remove: [], rawValue: false },
        'é'.repeat(100),
        -1,
        'faultline_fault_injected',
      ),
    ) as { immediate_response: Record<string, unknown> };
    expect(imm.immediate_response).toEqual({
      status: { code: 503 },
      headers: { set_headers: [{ header: { key: 'retry-after', value: '1' }, append_action: 2 }] },
      body: 'é'.repeat(100),
      details: 'faultline_fault_injected',
    });
  });
});
