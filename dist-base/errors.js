/** One error class per failure, each with a stable code (undici's habit). */
export class FaultlineError extends Error {
    code;
    constructor(code, message) {
        super(message);
        this.code = code;
        this.name = 'FaultlineError';
    }
}
export class ConfigError extends FaultlineError {
    file;
    issues;
    constructor(file, issues) {
        super('FL_CONFIG_INVALID', formatIssues(file, issues));
        this.file = file;
        this.issues = issues;
        this.name = 'ConfigError';
    }
}
function formatIssues(file, issues) {
    const lines = issues.map((i) => `  ${i.path || '(root)'}: ${i.reason}`);
    return `invalid config ${file}:\n${lines.join('\n')}`;
}
//# sourceMappingURL=errors.js.map