/** Reads a config file (YAML or JSON), validates it against the schema and reports every bad field. */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parseDocument } from 'yaml';
import type { ZodIssue } from 'zod';
import { ConfigError, type ConfigIssue } from '../errors.js';
import { configSchema, type ConfigSpec } from './schema.js';

export async function loadConfigFile(file: string): Promise<ConfigSpec> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [{ path: '', reason: `cannot read file: ${(err as Error).message}` }]);
  }
  return parseConfigText(text, file);
}

export function parseConfigText(text: string, file: string): ConfigSpec {
  const raw = extname(file) === '.json' ? parseJson(text, file) : parseYaml(text, file);
  return validateConfig(raw, file);
}

export function validateConfig(raw: unknown, file: string): ConfigSpec {
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) throw new ConfigError(file, result.error.issues.map(toConfigIssue));
  return result.data;
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ConfigError(file, [{ path: '', reason: `invalid JSON: ${(err as Error).message}` }]);
  }
}

function parseYaml(text: string, file: string): unknown {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({ path: '', reason: `invalid YAML: ${e.message.split('\n')[0] ?? e.message}` })),
    );
  }
  return doc.toJS() as unknown;
}

export function formatPath(path: readonly (string | number)[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? p : `.${p}`;
  return out;
}

function toConfigIssue(issue: ZodIssue): ConfigIssue {
  let reason = issue.message;
  if (issue.code === 'invalid_type' && issue.received === 'undefined') reason = 'is required';
  else if (issue.code === 'unrecognized_keys') reason = `unknown field(s): ${issue.keys.join(', ')}`;
  else if (issue.code === 'invalid_union_discriminator')
    reason = `must be one of: ${issue.options.map(String).join(', ')}`;
  return { path: formatPath(issue.path), reason };
}
