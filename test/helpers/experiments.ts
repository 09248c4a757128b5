/** Config builders shared by the experiment tests: one listener, one route, experiments on it. */

/** A listener "ingress" with route "api" to `upstream`; `top` adds top-level config fields. */
export function oneRoute(upstream: string, experiments: unknown[], top: Record<string, unknown> = {}) {
  return {
    listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream, timeout_ms: 5000 }] }],
    experiments,
    ...top,
  };
}

/** Experiment "e1" on ingress/api: a 5% split with a 503 abort, unless `over` says otherwise. */
export const exp = (over: Record<string, unknown>) => ({
  id: 'e1',
  hypothesis: 'the service copes',
  match: { listener: 'ingress', route: 'api' },
  split: { percent: 5 },
  fault: { kind: 'abort', status: 503 },
  ...over,
});
