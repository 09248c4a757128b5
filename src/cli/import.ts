/** `faultline import istio|envoy FILE`: print the converted experiments as YAML (warnings on stderr). */
import { readFile } from 'node:fs/promises';
import { parseAllDocuments, stringify } from 'yaml';
import { validateConfig } from '../config/load.js';
import { parseCommand, usageError } from './args.js';
import { importEnvoy, importIstio } from './import-faults.js';

export const IMPORT_USAGE = `usage: faultline import istio|envoy FILE [--listener NAME]
  convert an Istio VirtualService's http[].fault, or an Envoy fault filter (HTTPFault, alone or inside an
  Envoy config), into Faultline experiments with a control arm, default guardrails and a hypothesis to
  fill in; prints YAML for the config's experiments: list (exit 0), what cannot be mapped on stderr
  --listener NAME     the listener, point or ext_proc the experiments match (default: ingress)
  -h, --help          show this help`;

export async function importCommand(args: string[]): Promise<number> {
  const parsed = parseCommand('import', IMPORT_USAGE, args, { listener: { type: 'string' } }, 2);
  if (typeof parsed === 'number') return parsed;
  const [kind, file] = parsed.positionals;
  if (kind !== 'istio' && kind !== 'envoy')
    return usageError(
      'import',
      IMPORT_USAGE,
      kind === undefined ? 'missing istio|envoy' : `unknown source '${kind}'`,
    );
  if (file === undefined) return usageError('import', IMPORT_USAGE, 'missing FILE');
  const listener = parsed.string('listener') ?? 'ingress';
  let docs: unknown[];
  try {
    const text = await readFile(file, 'utf8');
    const parsedDocs = parseAllDocuments(text);
    const list = Array.isArray(parsedDocs) ? parsedDocs : [parsedDocs];
    const bad = list.find((d) => d.errors.length > 0);
    if (bad) throw new Error(bad.errors[0]?.message ?? 'invalid YAML');
    docs = list.map((d) => d.toJS() as unknown);
  } catch (err) {
    process.stderr.write(`faultline import: ${file}: ${(err as Error).message}\n`);
    return 1;
  }
  const out = kind === 'istio' ? importIstio(docs, listener) : importEnvoy(docs, listener);
  for (const w of out.warnings) process.stderr.write(`warning: ${w}\n`);
  if (out.experiments.length === 0) return 1;
  // What is printed must validate: checked against a config with a listener of that name.
  try {
    validateConfig(
      {
        listeners: [{ name: listener, port: 0, routes: [{ name: 'r', upstream: 'http://127.0.0.1:1' }] }],
        experiments: out.experiments,
      },
      file,
    );
  } catch (err) {
    process.stderr.write(
      `faultline import: the converted experiments do not validate: ${(err as Error).message}\n`,
    );
    return 1;
  }
  process.stdout.write(
    stringify({ experiments: out.experiments }, { aliasDuplicateObjects: false, lineWidth: 0 }),
  );
  return 0;
}
