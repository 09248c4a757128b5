/**
 * Every answer of the admin API carries this header, and its clients (the CLI, `faultline load
 * --admin`) refuse an answer without it: an --admin URL that points at the proxy's port or at a
 * service would otherwise answer a kill with its own 200 and the CLI would print "ok" while the
 * experiment runs on (and the POST would reach production through the proxy).
 */
import { FaultlineError } from '../errors.js';

export const ADMIN_HEADER = 'x-faultline-admin';
/** The admin API's revision; a client only checks that the header is there. */
export const ADMIN_HEADER_VALUE = '1';

export function notAdminError(url: string, status: number): FaultlineError {
  return new FaultlineError(
    'FL_NOT_ADMIN',
    `${url} answered ${status} without the ${ADMIN_HEADER} header: not a Faultline admin API (is --admin the proxy's port or a service? use the admin listener's address, default http://127.0.0.1:9901)`,
  );
}
