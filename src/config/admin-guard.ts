/**
 * Checks that depend on the environment as well as the file (`$FAULTLINE_ADMIN_TOKEN`), so they cannot
 * live in the schema: `validate` and `run` share them, so validate rejects what run would refuse.
 */
import { isIP } from 'node:net';
import type { ConfigIssue } from '../errors.js';
import type { ConfigSpec } from './schema.js';

/** The shortest admin token accepted (schema.ts holds admin.token to the same). */
export const MIN_TOKEN_CHARS = 16;

/** The admin token in force: the config's, else `$FAULTLINE_ADMIN_TOKEN`. */
export function adminToken(cfg: ConfigSpec, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return cfg.admin.token ?? (env['FAULTLINE_ADMIN_TOKEN'] || undefined);
}

/** A non-loopback admin port without a token would let anyone on the network kill or arm experiments. */
export function adminGuardIssue(cfg: ConfigSpec, env: NodeJS.ProcessEnv = process.env): ConfigIssue | null {
  const token = adminToken(cfg, env);
  // The schema holds admin.token to 16 characters; the environment's token guards the same port.
  if (cfg.admin.token === undefined && token !== undefined && token.length < MIN_TOKEN_CHARS)
    return {
      path: 'admin.token',
      reason: `FAULTLINE_ADMIN_TOKEN is ${token.length} characters; it must be at least ${MIN_TOKEN_CHARS} (as admin.token)`,
    };
  if (isLoopback(cfg.admin.address) || token !== undefined) return null;
  return {
    path: 'admin.address',
    reason: `${cfg.admin.address} is not loopback; set admin.token or FAULTLINE_ADMIN_TOKEN to expose the admin port`,
  };
}

export function isLoopback(address: string): boolean {
  if (isIP(address) === 4) return address.startsWith('127.');
  return address === '::1';
}
