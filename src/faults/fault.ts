/**
 * The fault interface (Toxiproxy's `Pipe` habit: one small interface, one module per fault, the draw
 * made once outside the fault). A fault receives a canary exchange at the injecting hop and owns it
 * until it forwards it, answers it or resets it.
 */
import type { Exchange } from '../proxy/exchange.js';

export type FaultKind = 'latency' | 'abort' | 'timeout' | 'reset';

export interface Fault {
  readonly kind: FaultKind;
  /** Start the fault on this exchange. */
  start(ex: Exchange): void;
  /**
   * A hold the fault started has ended: its timer fired (released = false), or the experiment was
   * killed and held faults are let go at once (released = true: forward or answer, never keep waiting).
   */
  holdEnded(ex: Exchange, released: boolean): void;
}
