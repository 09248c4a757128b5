// What each scenario measures. A scenario is a list of measures run against every peer; only
// Faultline gets the scenario's experiments (the other peers run the same traffic as pass-through,
// which is the comparison the goals ask for: "with an experiment active vs http-proxy").
const api = { listener: 'ingress', route: 'api' };
const MB10 = 10 * 1024 * 1024;

export const SCENARIOS = [
  {
    id: 'passthrough-1k',
    title: 'Pass-through, 1 KB GET',
    measures: [
      { kind: 'wrk', label: 'saturation', path: '/', connections: 50 },
      { kind: 'paced', label: 'fixed 2000/s', path: '/', rate: 2000 },
    ],
  },
  {
    id: 'abort5',
    title: 'Active 5% abort experiment (503), 1 KB GET',
    experiments: [
      {
        id: 'abort5',
        hypothesis: 'bench: 5% aborts',
        match: api,
        split: { percent: 5 },
        fault: { kind: 'abort', status: 503 },
      },
    ],
    measures: [{ kind: 'wrk', label: 'saturation', path: '/', connections: 50 }],
  },
  {
    id: 'latency1',
    title:
      'Active 1% latency experiment (+50 ms), paced 2000/s; non-faulted p99 separated by x-faultline-injected',
    experiments: [
      {
        id: 'lat1',
        hypothesis: 'bench: 1% +50 ms',
        match: api,
        split: { percent: 1 },
        fault: { kind: 'latency', ms: 50 },
      },
    ],
    measures: [{ kind: 'paced', label: 'fixed 2000/s', path: '/', rate: 2000, experiment: 'lat1' }],
  },
  {
    id: 'nomatch',
    title: 'Experiments loaded but not matching (route "other"), 1 KB GET',
    experiments: [
      {
        id: 'elsewhere',
        hypothesis: 'bench: never matches',
        match: { listener: 'ingress', route: 'other' },
        split: { percent: 5 },
        fault: { kind: 'abort', status: 503 },
      },
    ],
    measures: [
      { kind: 'wrk', label: 'saturation', path: '/', connections: 50 },
      { kind: 'paced', label: 'fixed 2000/s', path: '/', rate: 2000 },
    ],
  },
  {
    id: 'body-128k',
    title: '128 KB bodies: GET response and POST request',
    measures: [
      { kind: 'wrk', label: 'GET 128 KB', path: '/128k', connections: 32 },
      {
        kind: 'wrk',
        label: 'POST 128 KB',
        path: '/',
        connections: 32,
        method: 'POST',
        bodyBytes: 128 * 1024,
      },
    ],
  },
  {
    id: 'body-10m',
    title: '10 MB bodies: GET response and POST request',
    measures: [
      { kind: 'wrk', label: 'GET 10 MB', path: '/10m', connections: 4 },
      { kind: 'wrk', label: 'POST 10 MB', path: '/', connections: 4, method: 'POST', bodyBytes: MB10 },
    ],
  },
  {
    id: 'c1000',
    title: '1,000 connections at once (wrk -t2 -c1000), 1 KB GET: p99 against http-proxy and nginx',
    // Not in --quick (the smoke test): 1,000 connects per peer on a busy machine take too long for it.
    notQuick: true,
    // 15 s at least: a Node server under load accepts a burst slowly (bench/PROFILE.md), and wrk's
    // percentiles hold only completed requests, so a short run hides the connections never served.
    measures: [
      { kind: 'wrk', label: 'saturation c1000', path: '/', connections: 1000, threads: 2, minDurationS: 15 },
    ],
  },
  {
    id: 'abort-storm',
    title: '1,000 connections with held requests, all clients abort, then one plain request (< 1 s)',
    // >= 5 repetitions like every other measure (the method); one under --quick.
    maxReps: 5,
    quickMaxReps: 1,
    measures: [{ kind: 'storm', label: 'abort storm', connections: 1000, holdMs: 5000 }],
  },
];
