/** Every stable error code, of all three families, is documented in the README's "Error codes". */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ADMIN_ERROR_CODES } from '../../src/admin/server.js';
import { FL_ERRORS } from '../../src/errors.js';
import { MESSAGES } from '../../src/proxy/reply.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const start = readme.indexOf('## Error codes');
const section = readme.slice(start, readme.indexOf('\n## ', start + 1));

describe('error codes', () => {
  it('the README lists every proxy reply code with its status', () => {
    for (const [code, [status]] of Object.entries(MESSAGES))
      expect(section).toContain(`\`${code}\` ${status}`);
  });
  it('the README lists every admin and FL_* code', () => {
    for (const code of [...ADMIN_ERROR_CODES, ...Object.keys(FL_ERRORS)])
      expect(section).toContain(`\`${code}\``);
  });
});
