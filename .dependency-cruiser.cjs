/**
 * Layer rules, checked in CI (`npm run lint`): zero import cycles, and the protocol-neutral core (engine,
 * split, faults, stats, killswitch, experiments, core) knows neither the proxy host nor node:http*.
 * Type-only imports are erased at build time and do not count as cycles.
 */
/** @type {import('dependency-cruiser').IConfiguration} */
const CORE = '^src/(engine|split|faults|stats|killswitch|experiments|core)/';
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'An import cycle: modules that load each other (type-only imports excepted).',
      from: {},
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
    {
      name: 'core-not-proxy',
      severity: 'error',
      comment: 'The engine and its modules are protocol-neutral: hosts (src/proxy, src/inprocess) use them, never the reverse.',
      from: { path: CORE },
      to: { path: '^src/(proxy|inprocess|extproc|admin|cli|load|demo)/' },
    },
    {
      name: 'core-not-node-http',
      severity: 'error',
      comment: 'The engine and its modules do not know node:http, node:https or node:http2.',
      from: { path: CORE },
      to: { dependencyTypes: ['core'], path: '^(node:)?(http|https|http2)$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
