/** One error class per failure, each with a stable code (undici's habit). */
export class FaultlineError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
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
