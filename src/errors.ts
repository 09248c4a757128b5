/**
 * Faultline's error codes, in one table (undici's `UND_ERR_*`, fastify's `FST_ERR_*` habit). Three
 * families, each a stable string:
 * - `FL_*` (this table): errors thrown to the operator or an embedding app, and the reasons the proxy
 *   gives undici when it aborts an upstream request (never seen by clients);
 * - proxy replies (`x-faultline-error`, src/proxy/reply.ts): what a client sees when Faultline answers;
 * - admin API errors (`{"error": {"code"}}`, src/admin/server.ts).
 * README "Error codes" lists all three; a test keeps it complete.
 */
export const FL_ERRORS = {
  FL_CONFIG_INVALID: 'the config failed validation; every bad field is named with the rule it breaks',
  FL_ADMIN_UNGUARDED: 'the admin listener is on a non-loopback address without a token',
  FL_STATE_UNWRITABLE:
    'state_dir cannot take a durable write (a kill would not survive a restart): not started',
  FL_POINT_UNKNOWN: 'createFaultline: no in-process point of that name in the config',
  FL_POINT_ROLE: 'createFaultline: the point exists but has the other role (inbound vs outbound)',
  FL_USAGE: 'a command line the CLI cannot run (exit 2)',
  FL_WORKER_START:
    '`workers: N`: a worker could not start (e.g. a listener could not bind) or exited during the start',
  FL_CLIENT_GONE: 'upstream request aborted: the client went away',
  FL_BAD_RESPONSE: 'upstream request aborted: its response cannot be sent on (a header Node refuses)',
  FL_RESPONSE_CUT: 'upstream request aborted: a truncate fault cut the response',
  FL_SLOW_UPLOAD: 'upstream request aborted: the client uploaded below min_upload_bytes_per_s',
  FL_OUTSIDE_WINDOW:
    "an arm outside the experiment's allowed `windows:` was refused (admin: 409 outside_window)",
  FL_UPSTREAM_DEADLINE: "upstream request aborted: the route's timeout_ms passed",
  FL_NOT_ADMIN:
    "the CLI's --admin URL answered without the x-faultline-admin header: not a Faultline admin API, nothing was sent (exit 3)",
  FL_STATE_INVALID:
    'the kill-switch state file cannot be read or is not one Faultline wrote (bad JSON, shape or state): not started, since it could resume killed experiments',
} as const;

export type FlErrorCode = keyof typeof FL_ERRORS;

/** One error class per failure, each with a stable code from FL_ERRORS. */
export class FaultlineError extends Error {
  readonly code: FlErrorCode;
  constructor(code: FlErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = 'FaultlineError';
  }
}

export interface ConfigIssue {
  /** Dotted/bracketed path of the bad field, e.g. `listeners[0].routes[1].upstream`. */
  path: string;
  reason: string;
}

export class ConfigError extends FaultlineError {
  readonly file: string;
  readonly issues: readonly ConfigIssue[];
  constructor(file: string, issues: readonly ConfigIssue[]) {
    super('FL_CONFIG_INVALID', formatIssues(file, issues));
    this.file = file;
    this.issues = issues;
    this.name = 'ConfigError';
  }
}

function formatIssues(file: string, issues: readonly ConfigIssue[]): string {
  const lines = issues.map((i) => `  ${i.path || '(root)'}: ${i.reason}`);
  return `invalid config ${file}:\n${lines.join('\n')}`;
}
