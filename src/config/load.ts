/** Reads a config file (YAML or JSON), validates it against the schema and reports every bad field. */
import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { extname } from 'node:path';
import { Worker } from 'node:worker_threads';
import { parseDocument } from 'yaml';
import type { ZodIssue } from 'zod';
import { ConfigError, type ConfigIssue } from '../errors.js';
import { configSchema, type ConfigSpec } from './schema.js';

/**
 * Largest config file accepted, in bytes (`$FAULTLINE_CONFIG_MAX_BYTES` overrides). A real config is a
 * few KiB; the cap is checked before anything is parsed, so an oversize file costs one fstat.
 */
export const DEFAULT_CONFIG_MAX_BYTES = 1024 * 1024;
/**
 * YAML's parser is superlinear on some inputs (a 1 MB map of distinct keys, or thousands of aliases,
 * takes over a minute and 500+ MB), so YAML is parsed in a worker thread with a deadline and a heap
 * limit: a reload never stalls the listeners, and a hostile file fails instead of hanging.
 */
export const YAML_PARSE_TIMEOUT_MS = 5000;
const YAML_PARSE_HEAP_MB = 256;
/** Alias expansion budget (yaml's `maxAliasCount`): blocks "billion laughs" anchor bombs. */
export const YAML_MAX_ALIAS_COUNT = 100;

export function configMaxBytes(env: NodeJS.ProcessEnv = process.env): number {
  const text = env['FAULTLINE_CONFIG_MAX_BYTES'];
  const n = text === undefined || text === '' ? NaN : Number(text);
  return Number.isInteger(n) && n > 0 ? n : DEFAULT_CONFIG_MAX_BYTES;
}

export async function loadConfigFile(file: string): Promise<ConfigSpec> {
  const text = await readCapped(file, configMaxBytes());
  const raw = extname(file) === '.json' ? parseJson(text, file) : await parseYamlOffThread(text, file);
  return validateConfig(raw, file);
}

/** Reads at most `maxBytes`; a larger file (also one that grows while read) is a ConfigError. */
async function readCapped(file: string, maxBytes: number): Promise<string> {
  const tooLarge = (size: string) =>
    new ConfigError(file, [
      {
        path: '',
        reason: `file is ${size} bytes, over the ${maxBytes}-byte limit (set $FAULTLINE_CONFIG_MAX_BYTES to raise it)`,
      },
    ]);
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw new ConfigError(file, [{ path: '', reason: `cannot read file: ${(err as Error).message}` }]);
  }
  try {
    const { size } = await handle.stat();
    if (size > maxBytes) throw tooLarge(String(size));
    const buf = Buffer.allocUnsafe(maxBytes + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > maxBytes) throw tooLarge(`more than ${maxBytes}`);
    }
    return buf.toString('utf8', 0, n);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(file, [{ path: '', reason: `cannot read file: ${(err as Error).message}` }]);
  } finally {
    await handle.close();
  }
}

/** Synchronous parse, for small texts (tests, embedded configs); files go through loadConfigFile. */
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

type YamlResult = { ok: true; value: unknown } | { ok: false; reasons: string[] };

/** The YAML step shared by the in-thread and the worker parse; returns reasons instead of throwing. */
function yamlToJs(parse: typeof parseDocument, text: string, maxAliasCount: number): YamlResult {
  const doc = parse(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0)
    return {
      ok: false,
      reasons: doc.errors.map((e) => `invalid YAML: ${e.message.split('\n')[0] ?? e.message}`),
    };
  try {
    return { ok: true, value: doc.toJS({ maxAliasCount }) as unknown };
  } catch (err) {
    const msg = (err as Error).message;
    return {
      ok: false,
      reasons: [
        /alias count/i.test(msg)
          ? `invalid YAML: aliases expand to too many nodes (limit maxAliasCount ${maxAliasCount})`
          : `invalid YAML: ${msg}`,
      ],
    };
  }
}

function parseYaml(text: string, file: string): unknown {
  const r = yamlToJs(parseDocument, text, YAML_MAX_ALIAS_COUNT);
  if (!r.ok)
    throw new ConfigError(
      file,
      r.reasons.map((reason) => ({ path: '', reason })),
    );
  return r.value;
}

// The worker is eval'd source (works from dist and from the TypeScript sources under vitest alike) and
// loads the same yaml package by absolute path.
const YAML_PATH = createRequire(import.meta.url).resolve('yaml');
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { parseDocument } = require(workerData.yamlPath);
const yamlToJs = ${yamlToJs.toString()};
parentPort.postMessage(yamlToJs(parseDocument, workerData.text, workerData.maxAliasCount));
`;

function parseYamlOffThread(text: string, file: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const fail = (reason: string) => reject(new ConfigError(file, [{ path: '', reason }]));
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { yamlPath: YAML_PATH, text, maxAliasCount: YAML_MAX_ALIAS_COUNT },
      resourceLimits: { maxOldGenerationSizeMb: YAML_PARSE_HEAP_MB },
      stdout: true,
      stderr: true,
    });
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      void worker.terminate();
      fail(`invalid YAML: parsing took longer than ${YAML_PARSE_TIMEOUT_MS} ms (limit)`);
    }, YAML_PARSE_TIMEOUT_MS);
    worker.once('message', (r: YamlResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      if (r.ok) resolve(r.value);
      else
        reject(
          new ConfigError(
            file,
            r.reasons.map((reason) => ({ path: '', reason })),
          ),
        );
    });
    worker.once('error', (err: Error & { code?: string }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fail(
        err.code === 'ERR_WORKER_OUT_OF_MEMORY'
          ? `invalid YAML: parsing needs more than ${YAML_PARSE_HEAP_MB} MB (limit)`
          : `invalid YAML: ${err.message}`,
      );
    });
    worker.once('exit', (code) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fail(`invalid YAML: parser exited with code ${code}`);
    });
  });
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
