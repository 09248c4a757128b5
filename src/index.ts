/**
 * The package's API: the in-process mode (createFaultline) and the pieces a host embeds. The CLI
 * (`faultline`) is dist/bin.js.
 */
export { createFaultline, type CreateOptions, type InProcessFaultline } from './inprocess/index.js';
export { currentAssignment } from './inprocess/context.js';
export { Faultline, type StartOptions } from './main.js';
export { Engine } from './engine/engine.js';
export type { Assignment, FaultTarget, RequestView } from './engine/target.js';
export type { Fault, FaultKind, JudgingPolicy } from './faults/fault.js';
export type { ConfigInput, ConfigSpec } from './config/schema.js';
export { FaultlineError, ConfigError } from './errors.js';
export * from './core/vocab.js';
