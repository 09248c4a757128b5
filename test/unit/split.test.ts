import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import { ARM_CANARY, ARM_CONTROL, ExperimentRuntime } from '../../src/experiments/runtime.js';
import { BUCKETS, bucketOf, stickyHash, fnv1a } from '../../src/split/hash.js';
import { compileMatcher, matchesRequest } from '../../src/split/match.js';
import { ExperimentAnalyzer } from '../../src/stats/analyzer.js';
import { createMetrics } from '../../src/telemetry/metrics.js';

function runtime(split: Record<string, unknown>, id = 'exp-a') {
  const cfg = validateConfig(
    {
      listeners: [{ name: 'ingress', port: 1, routes: [{ name: 'api', upstream: 'http://127.0.0.1:2' }] }],
      experiments: [{ id, hypothesis: 'h', split, fault: { kind: 'abort', status: 503 } }],
    },
    'test',
  );
  const spec = cfg.experiments[0]!;
  const rt = new ExperimentRuntime(
    spec,
    createMetrics(),
    new ExperimentAnalyzer({
      alpha: 0.01,
      minSamples: 1,
      guardrails: [{ metric: 'error_rate', maxIncrease: 0.01, maxRatio: 1.5 }],
      sticky: false,
    }),
  );
  rt.setState('running');
  return rt;
}

/** 99.9% normal-approximation binomial interval half-width (z = 3.29). */
function within999(count: number, n: number, p: number): boolean {
  const sd = Math.sqrt(n * p * (1 - p));
  return Math.abs(count - n * p) <= 3.29 * sd;
}

describe('assignment', () => {
  it.each([1, 5, 0.5])(
    'random split at %s%% gives canary and control each within the 99.9%% binomial interval over 100k',
    (percent) => {
      const rt = runtime({ percent });
      const n = 100_000;
      let canary = 0;
      let control = 0;
      for (let i = 0; i < n; i++) {
        const arm = rt.draw([]);
        if (arm === ARM_CANARY) canary++;
        else if (arm === ARM_CONTROL) control++;
      }
      expect(within999(canary, n, percent / 100), `canary ${canary}`).toBe(true);
      expect(within999(control, n, percent / 100), `control ${control}`).toBe(true);
    },
  );

  it.each([1, 5])(
    'sticky split at %s%% over 100k distinct keys is sized right, and a key keeps its arm',
    (percent) => {
      const rt = runtime({ percent, sticky: 'header:x-user-id' });
      const n = 100_000;
      let canary = 0;
      let control = 0;
      for (let i = 0; i < n; i++) {
        const headers = ['X-User-Id', `user-${i}`];
        const arm = rt.draw(headers);
        if (arm === ARM_CANARY) canary++;
        else if (arm === ARM_CONTROL) control++;
        if (i % 1000 === 0) expect(rt.draw(headers)).toBe(arm);
      }
      expect(within999(canary, n, percent / 100), `canary ${canary}`).toBe(true);
      expect(within999(control, n, percent / 100), `control ${control}`).toBe(true);
    },
  );

  it('takes no part without the sticky key; reads cookies and trace ids', () => {
    expect(runtime({ percent: 5, sticky: 'header:x-user-id' }).draw(['host', 'x'])).toBe(0);
    const byCookie = runtime({ percent: 5, sticky: 'cookie:sid' });
    expect(byCookie.stickyKey(['Cookie', 'a=1; sid=abc; b=2'])).toBe('abc');
    const byTrace = runtime({ percent: 5, sticky: 'trace' });
    expect(
      byTrace.stickyKey(['traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01']),
    ).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
  });

  it('hashes stably (fixed values: same bucket on every platform and restart)', () => {
    expect(fnv1a('')).toBe(0x811c9dc5);
    expect(fnv1a('a')).toBe(0xe40c292c);
    const seed = fnv1a('exp-a\u0000');
    expect(bucketOf(stickyHash(seed, 'user-42'))).toBe(bucketOf(stickyHash(seed, 'user-42')));
    expect(bucketOf(stickyHash(seed, 'user-42'))).toBeLessThan(BUCKETS);
    // Different experiments bucket the same user independently.
    const other = fnv1a('exp-b\u0000');
    let same = 0;
    for (let i = 0; i < 1000; i++)
      if (bucketOf(stickyHash(seed, `u${i}`)) === bucketOf(stickyHash(other, `u${i}`))) same++;
    expect(same).toBeLessThan(10);
  });
});

describe('matching', () => {
  it('checks methods, path prefix and exact header values', () => {
    const m = compileMatcher({
      methods: ['POST'],
      path_prefix: '/checkout',
      headers: { 'X-Tenant': 'internal' },
    });
    expect(matchesRequest(m, 'POST', '/checkout/1', ['x-tenant', 'internal'])).toBe(true);
    expect(matchesRequest(m, 'GET', '/checkout/1', ['x-tenant', 'internal'])).toBe(false);
    expect(matchesRequest(m, 'POST', '/other', ['x-tenant', 'internal'])).toBe(false);
    expect(matchesRequest(m, 'POST', '/checkout', ['X-TENANT', 'external'])).toBe(false);
    expect(matchesRequest(m, 'POST', '/checkout', [])).toBe(false);
  });
});
