/**
 * The ext_proc wire contract checked against hand-computed protobuf bytes (field numbers from
 * envoyproxy/data-plane-api): a wrong field number or wire type in proto/ cannot pass unnoticed.
 */
import { describe, expect, it } from 'vitest';
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
