// `workers` in the config: N or auto, default 1, and what cannot be pooled from workers is refused by name.
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { workerCount } from '../../src/cluster/protocol.js';
import { validateConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

const base = (over: Record<string, unknown> = {}, exp: Record<string, unknown> = {}) => ({
  listeners: [{ name: 'ingress', port: 8080, routes: [{ name: 'api', upstream: 'http://127.0.0.1:9000' }] }],
  experiments: [
    {
      id: 'e1',
      hypothesis: 'fine',
      split: { percent: 5 },
      fault: { kind: 'abort', status: 503 },
      ...exp,
    },
  ],
  ...over,
});

function issues(raw: unknown): { path: string; reason: string }[] {
  try {
    validateConfig(raw, 'w.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).issues];
  }
  throw new Error('config was accepted');
}

describe('config: workers', () => {
  it('workers_balance: kernel by default, or round_robin; anything else is refused by name', () => {
    expect(validateConfig(base({ workers: 2 }), 'w.yaml').workers_balance).toBe('kernel');
    expect(
      validateConfig(base({ workers: 2, workers_balance: 'round_robin' }), 'w.yaml').workers_balance,
    ).toBe('round_robin');
    const bad = issues(base({ workers: 2, workers_balance: 'random' }));
    expect(bad.map((i) => i.path)).toEqual(['workers_balance']);
    expect(bad[0]?.reason).toMatch(/kernel.*round_robin/);
  });

  it('defaults to 1 (no workers); takes a number or auto (the cores available)', () => {
    expect(validateConfig(base(), 'w.yaml').workers).toBe(1);
    expect(workerCount(validateConfig(base({ workers: 3 }), 'w.yaml').workers)).toBe(3);
    expect(workerCount(validateConfig(base({ workers: 'auto' }), 'w.yaml').workers)).toBe(
      availableParallelism(),
    );
  });

  it('refuses 0, fractions and other words, naming the field', () => {
    for (const bad of [0, 1.5, 'many', -2])
      expect(issues(base({ workers: bad })).map((i) => i.path)).toContain('workers');
  });

  it('takes sticky splits (latency guardrails too), ramps and exposure ramps with workers', () => {
    for (const exp of [
      { split: { percent: 5, sticky: 'request_id' } },
      {
        split: { percent: 5, sticky: 'header:x-user' },
        guardrails: [{ metric: 'error_rate' }, { metric: 'latency', quantile: 0.9 }],
      },
      { ramp: { steps: [10, 20] } },
      { split: { percent: [1, 2, 5] } },
    ])
      expect(validateConfig(base({ workers: 2 }, exp), 'w.yaml').workers).toBe(2);
  });

  it('accepts ext_proc (served by every worker) and traffic probes (fed by the workers’ totals)', () => {
    expect(() =>
      validateConfig(base({ workers: 'auto', ext_proc: { name: 'envoy', port: 9002 } }), 'w.yaml'),
    ).not.toThrow();
    const probe = {
      name: 'route-errors',
      traffic: { listener: 'ingress', metric: 'error_rate', window: '1s', max: 0.05 },
    };
    expect(() => validateConfig(base({ workers: 2 }, { steady_state: [probe] }), 'w.yaml')).not.toThrow();
  });
});
