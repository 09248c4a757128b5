/**
 * The per-request baggage rewrite of an assigned request (issue 18): both paths, byte for byte.
 * - Fast path, no incoming baggage (or nothing left after stripping): the precomputed member string
 *   itself, no parsing, no OpenTelemetry propagation round-trip.
 * - Merge path, the client sent members: ours first, then the client's header verbatim (spacing,
 *   properties and percent-encoding untouched). OTel's own W3C propagator reads the result as the
 *   assignment plus every client entry, decoded as the client meant them.
 * `rewrite` is the sequence assign() runs (src/split/assign.ts) on an untrusted listener.
 */
import { ROOT_CONTEXT, defaultTextMapGetter, propagation } from '@opentelemetry/api';
import { W3CBaggagePropagator } from '@opentelemetry/core';
import { describe, expect, it } from 'vitest';
import {
  assignmentFits,
  assignmentMembers,
  joinBaggage,
  mentionsFaultline,
  readAssignment,
  stripFaultline,
} from '../../src/split/baggage.js';

const members = assignmentMembers('auth-abort');

function rewrite(header: string | undefined, arm: 1 | 2): string | null {
  const rest = header === undefined ? '' : mentionsFaultline(header) ? stripFaultline(header) : header;
  return assignmentFits(members, rest) ? joinBaggage(members[arm], rest) : null;
}

const otel = new W3CBaggagePropagator();
function otelEntries(header: string): Record<string, { value: string; metadata?: string }> {
  const bag = propagation.getBaggage(otel.extract(ROOT_CONTEXT, { baggage: header }, defaultTextMapGetter));
  return Object.fromEntries(
    (bag?.getAllEntries() ?? []).map(([k, v]) => [
      k,
      v.metadata ? { value: v.value, metadata: v.metadata.toString() } : { value: v.value },
    ]),
  );
}

describe('baggage rewrite of an assigned request', () => {
  it('fast path: no incoming baggage is the precomputed constant, byte for byte', () => {
    expect(rewrite(undefined, 1)).toBe('faultline.exp=auth-abort,faultline.group=canary');
    expect(rewrite(undefined, 2)).toBe('faultline.exp=auth-abort,faultline.group=control');
    // The same string object every time: nothing is built per request.
    expect(rewrite(undefined, 1)).toBe(members[1]);
    expect(rewrite('', 1)).toBe(members[1]);
    // Only forged members: stripped to nothing, so the constant again.
    expect(rewrite('faultline.exp=x,faultline%2Egroup=canary', 2)).toBe(members[2]);
    expect(otelEntries(members[1])).toEqual({
      'faultline.exp': { value: 'auth-abort' },
      'faultline.group': { value: 'canary' },
    });
  });

  it('merge path: ours first, the client header verbatim after, every member preserved', () => {
    const client =
      'userId=alice, url=https%3A%2F%2Fexample.com%2Fa%20b ;ttl=30,tenant=acme%2Cinc,  k2 = v%25';
    const out = rewrite(client, 1);
    expect(out).toBe(`faultline.exp=auth-abort,faultline.group=canary,${client}`);
    expect(readAssignment(out as string)).toEqual({ experimentId: 'auth-abort', group: 'canary' });
    // What an OTel service reads: the assignment and every client entry, percent-decoded once.
    expect(otelEntries(out as string)).toEqual({
      'faultline.exp': { value: 'auth-abort' },
      'faultline.group': { value: 'canary' },
      userId: { value: 'alice' },
      url: { value: 'https://example.com/a b', metadata: 'ttl=30' },
      tenant: { value: 'acme,inc' },
      k2: { value: 'v%' },
    });
    expect(otelEntries(out as string)).toMatchObject(otelEntries(client));
  });

  it('merge path with forged members: those go, the others stay byte for byte and in order', () => {
    const out = rewrite('a=%E2%82%AC,faultline%2Eexp=evil,b=2;p,FAULTLINE.group=canary,c=%2C', 2);
    expect(out).toBe('faultline.exp=auth-abort,faultline.group=control,a=%E2%82%AC,b=2;p,c=%2C');
    expect(otelEntries(out as string)).toMatchObject({ a: { value: '€' }, c: { value: ',' } });
    expect(readAssignment(out as string)).toEqual({ experimentId: 'auth-abort', group: 'control' });
  });

  it('a client header with no room for the assignment is not assigned', () => {
    expect(rewrite(`k=${'v'.repeat(8192)}`, 1)).toBeNull();
  });
});
