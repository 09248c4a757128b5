/**
 * The seam between the engine and a host (the proxy's listeners, Envoy's ext_proc, in-process
 * interceptors). The host owns the bytes; the engine decides and judges; a fault acts on one request only
 * through `FaultTarget`. Nothing here knows node:http or node:http2.
 */
import type { Arm, Outcome } from '../core/vocab.js';
import type { ExperimentRuntime } from '../experiments/runtime.js';

/**
 * What the engine decided for one request. The host keeps these fields on its own per-request object
 * (the proxy's Exchange, an interceptor's call), so deciding allocates nothing: `decide()` writes them.
 */
export interface Assignment {
  exp: ExperimentRuntime | null;
  arm: Arm;
  /** True at the hop that drew the arm: the observation point that feeds the analyzer. */
  observe: boolean;
  /** The fault should start here (canary, injecting hop, capacity left). */
  injectNow: boolean;
  /** The fault was started on this request. */
  injected: boolean;
  /** Outgoing baggage header, or null to forward the incoming one unchanged. */
  baggageOut: string | null;
  /** 32-bit hash of the sticky key (sticky experiments), for per-session counting. */
  sessionKey: number;
  /** The run this request was assigned in; outcomes of an earlier run are not judged. */
  runId: number;
}

/** Resets an assignment slot to "untouched" (hosts that reuse their per-request objects). */
export function clearAssignment(a: Assignment): void {
  a.exp = null;
  a.arm = 0;
  a.observe = false;
  a.injectNow = false;
  a.injected = false;
  a.baggageOut = null;
  a.sessionKey = 0;
  a.runId = 0;
}

/** The parts of a request the engine reads to decide: method, path, and flat raw headers. */
export interface RequestView {
  readonly method: string;
  readonly path: string;
  /** [name, value, name, value, ...] as Node's rawHeaders (names in any case). */
  readonly rawHeaders: readonly string[];
}

/** Response headers as a fault sees them (lower-case names). */
export type ResponseHeaders = Record<string, string | string[] | undefined>;

/**
 * One request as a fault can act on it. A fault holds it, answers it, resets it or lets it through, and
 * may take part in its response leg. Every method is safe to call after the request finished (no-op).
 */
export interface FaultTarget extends Assignment {
  /** The call is gRPC (abort and timeout answer with a grpc-status, not an HTTP status). */
  readonly isGrpc: boolean;
  /** Per-request scratch space of the fault that owns the request (null until it sets it). */
  faultData: unknown;

  /** Send the request on to where it was going (the upstream, the app handler, the next dispatcher). */
  forward(): void;
  /** Park the request for `ms`; then the fault's holdEnded(t, false) runs, or (t, true) on a kill. */
  hold(ms: number): void;
  /** Answer with an HTTP status, headers and body; the injected and arm marks are added. */
  reply(status: number, headers: Readonly<Record<string, string>>, body: string): void;
  /** Answer a gRPC call with a status (trailers-only: HTTP 200 + grpc-status). */
  replyGrpcStatus(code: number, message: string): void;
  /** Drop the request without an answer (TCP RST on HTTP/1.1, RST_STREAM on HTTP/2), ending as `outcome`. */
  reset(outcome: Outcome): void;
  /** Milliseconds left of the caller's own deadline (gRPC `grpc-timeout`), or -1 when it has none. */
  callerDeadlineMs(): number;

  // ---- response leg: only for faults that declare `responseLeg` ----------------------------------------
  /** Keep the response (head and body) back for `ms`; then holdEnded runs as for hold(). */
  holdResponse(ms: number): void;
  /** Send what was kept back by holdResponse and go on streaming. */
  releaseResponse(): void;
  /** Write one chunk of the response body to the caller. */
  writeResponseData(chunk: Buffer): void;
  /** Stop / restart reading the response from where it comes from (backpressure, pacing). */
  pauseResponse(): void;
  resumeResponse(): void;
  /** End the response normally (with the trailers that came with it). */
  endResponse(): void;
  /**
   * Break the response so the caller sees a failure, never a complete body: a cut connection on
   * HTTP/1.1, RST_STREAM on HTTP/2, an error status for in-process gRPC. Counted as a reset.
   */
  breakResponse(): void;
}
