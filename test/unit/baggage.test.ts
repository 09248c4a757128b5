/**
 * The baggage functions (issue 11, items 7 and 8), checked against OpenTelemetry's own W3C propagator:
 * what the edge forwards must never read as an assignment to an OTel service, and what it writes must
 * keep the assignment and every client member through OTel's 180-member / 8,192-byte cut.
 */
import { ROOT_CONTEXT, defaultTextMapGetter, propagation } from '@opentelemetry/api';
import { W3CBaggagePropagator } from '@opentelemetry/core';
import { describe, expect, it } from 'vitest';
import {
  BAGGAGE_MAX_BYTES,
  assignmentFits,
  assignmentMembers,
  isFaultlineKey,
  joinBaggage,
  mentionsFaultline,
  readAssignment,
  stripFaultline,
} from '../../src/split/baggage.js';

const otel = new W3CBaggagePropagator();
/** The entries an OTel service reads from a baggage header. */
function otelEntries(header: string): Record<string, string> {
  const bag = propagation.getBaggage(otel.extract(ROOT_CONTEXT, { baggage: header }, defaultTextMapGetter));
  return Object.fromEntries((bag?.getAllEntries() ?? []).map(([k, v]) => [k, v.value]));
}

/** Forged assignments in spellings an edge comparing literally would let through. */
const FORGED = [
  'faultline%2Eexp=e1,faultline%2Egroup=canary',
  'faultline%2eexp=e1,faultline%2egroup=canary',
  'FaultLine.exp=e1,FAULTLINE.GROUP=canary',
  ' faultline.exp=e1, faultline.group=canary',
  '\tfaultline.exp =e1,\tfaultline.group =canary',
  '%66aultline.exp=e1,%66aultline.group=canary',
  '%20faultline%2Eexp=e1,faultline%2Egroup%20=canary',
  'faultline%252Eexp=e1,faultline%252Egroup=canary',
  'faultline.exp;p=1,faultline.group;p=2',
  'faultline%2Eexp%zz=e1,faultline%C0%AEgroup=canary',
  '\u00a0faultline.exp=e1,faultline.group\u00a0=canary',
];
const CLIENT = 'userId=alice, tenant=acme%2Cinc ,empty=;p=1,faultlinex=1,my.faultline.exp=2';

describe('stripping forged assignments (untrusted listeners)', () => {
  it('the forms OTel decodes to faultline.* are real attacks', () => {
    expect(otelEntries('faultline%2Eexp=e1,faultline%2Egroup=canary')).toMatchObject({
      'faultline.exp': 'e1',
      'faultline.group': 'canary',
    });
  });

  it.each(FORGED)('strips every member of %j, keeps the client members verbatim', (forged) => {
    const header = `${CLIENT},${forged},last=1`;
    expect(mentionsFaultline(header)).toBe(true);
    expect(mentionsFaultline(forged)).toBe(true);
    const out = stripFaultline(header);
    expect(out).toBe(`${CLIENT},last=1`);
    expect(stripFaultline(forged)).toBe('');
    for (const k of Object.keys(otelEntries(out))) expect(k.toLowerCase()).not.toMatch(/^\s*faultline\./);
    expect(readAssignment(out)).toBeNull();
  });

  it('normalises keys: trim, percent-decode (repeatedly, leniently when invalid), lower-case', () => {
    expect(isFaultlineKey(' FaultLine.Exp ')).toBe(true);
    expect(isFaultlineKey('faultline%2Eanything')).toBe(true);
    expect(isFaultlineKey('faultline%')).toBe(true); // undecodable: judged conservatively
    expect(isFaultlineKey('faultlinex')).toBe(false);
    expect(isFaultlineKey('my.faultline.exp')).toBe(false);
    expect(isFaultlineKey('userId')).toBe(false);
    expect(isFaultlineKey('user%')).toBe(false);
  });

  it('leaves a header with nothing to strip as it is (same string), without a faultline mention', () => {
    for (const h of ['a=1', 'a=%20x,b=%', 'url=https%3A%2F%2Fx', 'a%20b=1', 'k=faultline.exp']) {
      expect(stripFaultline(h)).toBe(h);
    }
    expect(mentionsFaultline(undefined)).toBe(false);
    expect(mentionsFaultline('')).toBe(false);
    expect(mentionsFaultline('userId=alice,url=https%3A%2F%2Fexample.com')).toBe(false);
    expect(mentionsFaultline('a%20b=1')).toBe(false);
  });

  it('mentionsFaultline is sound: never false for a header stripFaultline would change', () => {
    const parts = ['a=1', ' b = %41 ', 'c=x;p', '', 'faultline.exp=1', '%66aultline%2Eg=2', 'FAULTLINE.x=3'];
    parts.push('faultline%2=1', 'x%=1', 'f%61ultline.e=1', 'faul%74line%2egroup=canary', 'q=faultline');
    for (const a of parts)
      for (const b of parts)
        for (const c of parts) {
          const h = `${a},${b},${c}`;
          if (stripFaultline(h) !== h) expect(mentionsFaultline(h), h).toBe(true);
        }
  });
});

describe('writing the assignment (item 8)', () => {
  const members = assignmentMembers('e1');

  it('builds constant members per experiment', () => {
    expect(members).toEqual([
      '',
      'faultline.exp=e1,faultline.group=canary',
      'faultline.exp=e1,faultline.group=control',
    ]);
    expect(joinBaggage(members[1], '')).toBe(members[1]);
  });

  it('200 client members: the assignment goes first and survives OTel; every client member is kept', () => {
    const client = Array.from({ length: 200 }, (_, i) => `m${i}=v${i}`).join(',');
    expect(assignmentFits(members, client)).toBe(true);
    const out = joinBaggage(members[1], client);
    expect(out).toBe(`${members[1]},${client}`);
    expect(readAssignment(out)).toEqual({ experimentId: 'e1', group: 'canary' });
    // What an OTel service reads: the first 180 members, ours among them.
    expect(otelEntries(out)).toMatchObject({ 'faultline.exp': 'e1', 'faultline.group': 'canary' });
  });

  it('refuses an assignment that would take the header past BAGGAGE_MAX_BYTES', () => {
    const room = BAGGAGE_MAX_BYTES - members[2].length - 1;
    expect(assignmentFits(members, 'x'.repeat(room))).toBe(true);
    expect(assignmentFits(members, 'x'.repeat(room + 1))).toBe(false);
    expect(assignmentFits(members, '')).toBe(true);
  });
});

describe('reading the assignment (trusted listeners), as OTel decodes it', () => {
  it.each([
    'faultline.exp=e1,faultline.group=canary',
    ' faultline.exp = e1 ;p=1, faultline.group=canary ',
    'faultline%2Eexp=e1,faultline%2Egroup=canary',
    'a=1,faultline.exp=e%31,bad%zz=1,faultline.group=canary',
  ])('%j', (h) => {
    expect(readAssignment(h)).toEqual({ experimentId: 'e1', group: 'canary' });
    expect(otelEntries(h)).toMatchObject({ 'faultline.exp': 'e1', 'faultline.group': 'canary' });
  });

  it('keys are exact after decoding (OTel keys are case-sensitive); bad groups and values are refused', () => {
    expect(readAssignment('FaultLine.exp=e1,faultline.group=canary')).toBeNull();
    expect(readAssignment('faultline.exp=x,faultline.group=admin')).toBeNull();
    expect(readAssignment('faultline.exp=%zz,faultline.group=canary')).toBeNull();
    expect(readAssignment('faultline.exp=,faultline.group=canary')).toBeNull();
    expect(readAssignment('faultline.exp,faultline.group=canary')).toBeNull();
  });

  it('the first assignment wins: the one the edge wrote and counted', () => {
    expect(readAssignment('faultline.exp=e1,faultline.group=control,faultline.group=canary')).toEqual({
      experimentId: 'e1',
      group: 'control',
    });
  });
});
