/**
 * The live dashboard's static files: the page (dashboard/ at the package root, beside src/ and dist/) and
 * uPlot from node_modules (a runtime dependency), so the page works offline and needs no CDN. Read once
 * on first use and kept in memory; served with a strict Content-Security-Policy (no inline script, no
 * framing: the page has kill buttons).
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

interface Asset {
  body: Buffer;
  type: string;
}

const require = createRequire(import.meta.url);
/** src/admin/ and dist/admin/ are both two levels below the package root. */
const pageDir = fileURLToPath(new URL('../../dashboard/', import.meta.url));

const FILES: Record<string, () => { path: string; type: string }> = {
  'index.html': () => ({ path: `${pageDir}index.html`, type: 'text/html; charset=utf-8' }),
  'app.js': () => ({ path: `${pageDir}app.js`, type: 'text/javascript; charset=utf-8' }),
  'app.css': () => ({ path: `${pageDir}app.css`, type: 'text/css; charset=utf-8' }),
  'uplot.js': () => ({
    path: require.resolve('uplot/dist/uPlot.iife.min.js'),
    type: 'text/javascript; charset=utf-8',
  }),
  'uplot.css': () => ({ path: require.resolve('uplot/dist/uPlot.min.css'), type: 'text/css; charset=utf-8' }),
};

const cache = new Map<string, Promise<Asset>>();

/** The asset named `name` (index.html, app.js, ...), or undefined when there is no such file. */
export function dashboardAsset(name: string): Promise<Asset> | undefined {
  // Own keys only: "constructor", "__proto__" or "toString" are no dashboard files.
  if (!Object.hasOwn(FILES, name)) return undefined;
  const file = FILES[name];
  if (file === undefined) return undefined;
  let p = cache.get(name);
  if (p === undefined) {
    const { path, type } = file();
    p = readFile(path).then((body) => ({ body, type }));
    // A failed read (a broken install) is retried next time rather than cached.
    p.catch(() => cache.delete(name));
    cache.set(name, p);
  }
  return p;
}

export const DASHBOARD_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};
