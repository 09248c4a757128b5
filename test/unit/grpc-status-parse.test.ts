import { describe, expect, it } from 'vitest';
import { GRPC_CODE_LABELS, grpcCodeIndex, parseGrpcStatus } from '../../src/core/vocab.js';

describe('parseGrpcStatus', () => {
  it('reads every code 0-16, with or without a leading zero', () => {
    for (let c = 0; c <= 16; c++) expect(parseGrpcStatus(String(c))).toBe(c);
    expect(parseGrpcStatus('05')).toBe(5);
  });

  it('anything else is UNKNOWN (2), so no bad value becomes a label of its own', () => {
    for (const v of ['', '2.5', '1e1', '-1', '+3', ' 3', '3 ', '17', '99', '123', 'ok', '0x1', '١'])
      expect(parseGrpcStatus(v), JSON.stringify(v)).toBe(2);
    // Every result maps to a real label (never "undefined").
    for (const v of ['2.5', '1e1', '17'])
      expect(GRPC_CODE_LABELS[grpcCodeIndex(true, parseGrpcStatus(v))]).toBe('UNKNOWN');
  });
});
