// The fleet's merge rule exists twice: as the Lua script every write goes through in Redis and as
// mergeRecord (boot-time merge, and the check that decides when a replica writes its states again).
// They must agree on every pair, or a replica would rewrite a record Redis keeps refusing.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PersistedExperiment } from '../../src/killswitch/store.js';
import { MERGE_LUA, mergeRecord } from '../../src/fleet/store.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

const T1 = '2026-12-01T10:00:00.000Z';
const T2 = '2026-12-01T11:00:00.000Z';
const rec = (state: PersistedExperiment['state'], startedAt: string | undefined, by: string) =>
  ({ state, reason: '', by, at: T2, ...(startedAt ? { startedAt } : {}) }) as PersistedExperiment;

const RECORDS: Record<string, PersistedExperiment> = {
  'running t1 (boot)': rec('running', T1, ''),
  'running t2 (boot)': rec('running', T2, ''),
  'running t1 (armed)': rec('running', T1, 'cli:alice'),
  'running t2 (armed)': rec('running', T2, 'cli:alice'),
  'killed t1': rec('killed', T1, 'tester'),
  'killed t2': rec('killed', T2, 'tester'),
  'expired t1': rec('expired', T1, ''),
  'killed (no start)': rec('killed', undefined, 'tester'),
};

let redis: TestRedis;
let client: Redis;
beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
});
afterAll(async () => {
  client.disconnect();
  await redis.stop();
});

describe('fleet merge rule', () => {
  it('the Lua script and mergeRecord keep the same record for every pair', async () => {
    const names = Object.keys(RECORDS);
    for (const cur of names)
      for (const next of names) {
        await client.del('s');
        await client.hset('s', 'e1', JSON.stringify(RECORDS[cur]));
        await client.eval(MERGE_LUA, 1, 's', 'g:', 'ch', 'e1', JSON.stringify(RECORDS[next]));
        const kept = JSON.parse((await client.hget('s', 'e1')) as string) as PersistedExperiment;
        expect(kept, `${cur} <- ${next}`).toEqual(mergeRecord(RECORDS[cur], RECORDS[next]));
      }
  });

  it('an end replaces a start nobody armed, whatever its run; an armed later run only by its own end', () => {
    const r = RECORDS;
    expect(mergeRecord(r['running t2 (boot)'], r['killed t1'])).toBe(r['killed t1']);
    expect(mergeRecord(r['running t2 (armed)'], r['killed t1'])).toBe(r['running t2 (armed)']);
    expect(mergeRecord(r['running t2 (armed)'], r['killed t2'])).toBe(r['killed t2']);
    // A start nobody armed never replaces an end; an operator's later arm does.
    expect(mergeRecord(r['killed t1'], r['running t2 (boot)'])).toBe(r['killed t1']);
    expect(mergeRecord(r['killed t1'], r['running t2 (armed)'])).toBe(r['running t2 (armed)']);
    expect(mergeRecord(r['killed t2'], r['running t1 (armed)'])).toBe(r['killed t2']);
  });
});
