/**
 * In-process propagation: the assignment of the inbound request being handled travels to the outbound
 * calls it makes through AsyncLocalStorage (the store is the inbound call itself: no allocation), and
 * across processes in baggage as at every other hop.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Assignment } from '../engine/target.js';

export const assignmentContext = new AsyncLocalStorage<Assignment>();

/** The assignment of the inbound request this code runs for, if it takes part in an experiment. */
export function currentAssignment(): Assignment | undefined {
  const a = assignmentContext.getStore();
  return a !== undefined && a.exp !== null ? a : undefined;
}
