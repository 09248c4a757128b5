/** Reads a config file (YAML or JSON), validates it against the schema and reports every bad field. */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigError } from '../errors.js';
import { configSchema } from './schema.js';
export async function loadConfigFile(file) {
    let text;
    try {
        text = await readFile(file, 'utf8');
    }
    catch (err) {
        throw new ConfigError(file, [{ path: '', reason: `cannot read file: ${err.message}` }]);
    }
    return parseConfigText(text, file);
}
export function parseConfigText(text, file) {
    const raw = extname(file) === '.json' ? parseJson(text, file) : parseYaml(text, file);
    return validateConfig(raw, file);
}
export function validateConfig(raw, file) {
    const result = configSchema.safeParse(raw ?? {});
    if (!result.success)
        throw new ConfigError(file, result.error.issues.map(toConfigIssue));
    return result.data;
}
function parseJson(text, file) {
    try {
        return JSON.parse(text);
    }
    catch (err) {
        throw new ConfigError(file, [{ path: '', reason: `invalid JSON: ${err.message}` }]);
    }
}
function parseYaml(text, file) {
    const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
    if (doc.errors.length > 0) {
        throw new ConfigError(file, doc.errors.map((e) => ({ path: '', reason: `invalid YAML: ${e.message.split('\n')[0] ?? e.message}` })));
    }
    return doc.toJS();
}
export function formatPath(path) {
    let out = '';
    for (const p of path)
        out += typeof p === 'number' ? `[${p}]` : out === '' ? p : `.${p}`;
    return out;
}
function toConfigIssue(issue) {
    let reason = issue.message;
    if (issue.code === 'invalid_type' && issue.received === 'undefined')
        reason = 'is required';
    else if (issue.code === 'unrecognized_keys')
        reason = `unknown field(s): ${issue.keys.join(', ')}`;
    else if (issue.code === 'invalid_union_discriminator')
        reason = `must be one of: ${issue.options.map(String).join(', ')}`;
    return { path: formatPath(issue.path), reason };
}
//# sourceMappingURL=load.js.map