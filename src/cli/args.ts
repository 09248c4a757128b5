/**
 * The one argument parser every command uses: node:util parseArgs in strict mode, plus `--help`/`-h`.
 * Unknown flags, missing values and surplus positionals are usage errors (exit 2), never guessed at:
 * an admin command that misread its arguments could kill the wrong experiments.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Exit code of a usage error (bad flag, missing argument), as in most Unix tools. */
export const EXIT_USAGE = 2;

export type OptionSpecs = NonNullable<ParseArgsConfig['options']>;

export class UsageError extends Error {
  readonly code = 'FL_USAGE';
}

export interface CommandArgs {
  readonly positionals: readonly string[];
  /** Value of a string option (the last one when given twice). */
  string(name: string): string | undefined;
  /** Every value of a `multiple: true` string option, in order. */
  strings(name: string): string[];
  flag(name: string): boolean;
}

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

const HELP: OptionSpecs = { help: { type: 'boolean', short: 'h' } };

/**
 * Parses `argv` (the arguments after the command). Returns null when `--help`/`-h` is among them,
 * whatever else is (so `kill --help --admin URL` or `kill --bogus -h` only ever print help); throws
 * UsageError for anything parseArgs rejects or more than `maxPositionals` positionals.
 */
export function parseCommandArgs(
  argv: readonly string[],
  options: OptionSpecs,
  maxPositionals: number,
): CommandArgs | null {
  const all = { ...options, ...HELP };
  let values: Values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: [...argv],
      options: all,
      strict: true,
      allowPositionals: true,
    }));
  } catch (err) {
    if (asksForHelp(argv, all)) return null;
    throw new UsageError(firstSentence((err as Error).message));
  }
  if (values['help'] === true) return null;
  if (positionals.length > maxPositionals) {
    const extra = positionals[maxPositionals] ?? '';
    throw new UsageError(
      maxPositionals === 0 ? `unexpected argument '${extra}'` : `unexpected extra argument '${extra}'`,
    );
  }
  return {
    positionals,
    string: (name) => {
      const v = values[name];
      return typeof v === 'string' ? v : undefined;
    },
    strings: (name) => {
      const v = values[name];
      return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
    },
    flag: (name) => values[name] === true,
  };
}

/** A help token that is an option of its own (not the value of another option, not after `--`). */
function asksForHelp(argv: readonly string[], options: OptionSpecs): boolean {
  try {
    const { tokens } = parseArgs({
      args: [...argv],
      options,
      strict: false,
      allowPositionals: true,
      tokens: true,
    });
    return tokens.some((t) => t.kind === 'option' && t.name === 'help');
  } catch {
    return false;
  }
}

/** parseArgs explains how to pass a positional that starts with '-'; the first sentence is the error. */
function firstSentence(message: string): string {
  const line = message.split('\n')[0] ?? message;
  const dot = line.indexOf('. ');
  const first = (dot > 0 ? line.slice(0, dot) : line).replace(/\.$/, '');
  return first.charAt(0).toLowerCase() + first.slice(1);
}

/**
 * parseCommandArgs for a CLI command: prints the usage on --help (stdout, exit 0) or the error and the
 * usage on a usage error (stderr, exit `usageExit`). Returns the exit code in those cases.
 */
export function parseCommand(
  command: string,
  usage: string,
  argv: readonly string[],
  options: OptionSpecs,
  maxPositionals: number,
  usageExit = EXIT_USAGE,
): CommandArgs | number {
  try {
    const parsed = parseCommandArgs(argv, options, maxPositionals);
    if (parsed === null) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    return parsed;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    return usageError(command, usage, err.message, usageExit);
  }
}

/** Prints `faultline CMD: message` and the command's usage to stderr; returns the exit code. */
export function usageError(command: string, usage: string, message: string, exit = EXIT_USAGE): number {
  process.stderr.write(`faultline ${command}: ${message}\n${usage}\n`);
  return exit;
}
