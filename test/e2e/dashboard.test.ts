/**
 * The live dashboard in a real browser: Debian's Chromium (/usr/bin/chromium, installed by .ci/run)
 * driven by playwright-core, which never downloads a browser. The page is served by a real Faultline's
 * admin listener while real traffic flows through its proxy listener.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { runCli } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/servers.js';

const TOKEN = 'dashboard-test-token-0123456789';
// Screenshots go to docs/ (shown in the README) only when asked for (FAULTLINE_SCREENSHOTS=1), so a
// test run never changes committed files; otherwise to a temp dir, still taken (and so still tested).
const DOCS =
  process.env['FAULTLINE_SCREENSHOTS'] === '1'
    ? new URL('../../docs/', import.meta.url)
    : new URL(`file://${mkdtempSync(join(tmpdir(), 'faultline-shots-'))}/`);

let up: Upstream;
let fl: TestFaultline;
let browser: Browser;
let stopTraffic = false;
let traffic: Promise<void>;
const dispatcher = new Agent({ connections: 16 });

/** About 150 requests a second until stopped. */
async function drive(url: string): Promise<void> {
  const worker = async () => {
    while (!stopTraffic) {
      try {
        const r = await request(url, { dispatcher });
        await r.body.dump();
      } catch {
        // a request cut by the end of the test
      }
      await new Promise((r) => setTimeout(r, 40));
    }
  };
  await Promise.all(Array.from({ length: 6 }, worker));
}

async function apiState(): Promise<{ state: string; ended: { reason: string | null } | null }> {
  const r = await request(`${fl.admin}/experiments/checkout-latency`);
  return (await r.body.json()) as { state: string; ended: { reason: string | null } | null };
}

async function until(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Waits until the element's text is `text` (the page updates on its own schedule). */
async function seeText(loc: Locator, text: string): Promise<void> {
  let last: string | null = null;
  await until(
    async () => (last = await loc.textContent()) === text,
    5000,
    `"${text}" (have "${String(last)}")`,
  ).catch(() => expect(last).toBe(text));
}

beforeAll(async () => {
  up = await startUpstream((req, res) => {
    req.resume();
    // 1-4 ms of service time, so the latency charts have something to show.
    setTimeout(() => res.end('ok'), 1 + Math.random() * 3);
  });
  fl = await startFaultline({
    admin: { address: '127.0.0.1', port: 0, token: TOKEN },
    listeners: [{ name: 'ingress', port: 0, routes: [{ name: 'api', upstream: up.url, timeout_ms: 5000 }] }],
    experiments: [
      {
        id: 'checkout-latency',
        hypothesis: 'checkout keeps its p95 and error rate when 3% of payment calls fail',
        match: { listener: 'ingress', route: 'api' },
        split: { percent: 10, allow_above_cap: true },
        fault: { kind: 'abort', status: 503, percent: 3 },
        guardrails: [
          { metric: 'error_rate', max_increase: 0.05 },
          { metric: 'latency', quantile: 0.95, max_ratio: 3, max_increase_ms: 50 },
        ],
        min_samples: 50,
      },
    ],
  });
  traffic = drive(`${fl.url()}/checkout`);
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    // Root in CI: Chromium's sandbox needs user namespaces that containers often lack.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  await mkdir(DOCS, { recursive: true });
}, 30_000);

afterAll(async () => {
  stopTraffic = true;
  await traffic;
  await browser?.close();
  await fl?.stop();
  await up?.close();
  if (fl) await removeDir(fl.stateDir);
  await dispatcher.close();
});

async function openPage(width = 1280, height = 800): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width, height } });
  const errors: string[] = [];
  page.on('console', (m) => {
    // A 401 the page provokes on purpose is logged by the browser as a failed resource load.
    if (m.type() === 'error' && !m.text().includes('401')) errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${fl.admin}/`);
  return { page, errors };
}

const card = (page: Page) => page.getByTestId('exp-checkout-latency');

describe('live dashboard in Chromium', () => {
  it('shows the experiment, its hypothesis and blast radius; charts update as traffic flows', async () => {
    const { page, errors } = await openPage();
    await seeText(
      card(page).getByTestId('hypothesis'),
      'checkout keeps its p95 and error rate when 3% of payment calls fail',
    );
    expect(await card(page).getByTestId('state').textContent()).toBe('running');
    const blast = (await card(page).getByTestId('blast').textContent()) ?? '';
    expect(blast).toContain('10% canary + 10% control');
    expect(blast).toContain('abort (percent=3, status=503)');
    // Five charts: requests, errors, timeouts, latency, evidence (uPlot draws into canvas).
    await page.getByTestId('chart-evidence').locator('canvas').waitFor();
    expect(await card(page).locator('.chart canvas').count()).toBe(5);
    const charts = card(page).getByTestId('charts');
    const samples = async () => Number(await charts.getAttribute('data-samples'));
    const requests = async () => Number(await charts.getAttribute('data-canary-requests'));
    const s0 = await samples();
    const r0 = await requests();
    await page.waitForTimeout(3000);
    expect(await samples()).toBeGreaterThan(s0);
    expect(await requests()).toBeGreaterThan(r0);
    // The evidence: each guardrail listed with its status and e-value against 1/alpha.
    const guards = card(page).getByTestId('guardrails').locator('li');
    expect(await guards.count()).toBe(2);
    expect(await guards.first().textContent()).toMatch(/^error_rate (insufficient data|holding) · e = /);
    await page.close();
    expect(errors).toEqual([]);
  }, 30_000);

  it('refuses kill without the token, kills with it (API and page), arms again, kills everything', async () => {
    const { page, errors } = await openPage();
    await card(page).getByTestId('kill').waitFor();
    // Mutating calls without the token are refused, from the page's own origin too.
    const refused = await page.evaluate(async () => {
      const r = await fetch('/experiments/checkout-latency/kill', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      return r.status;
    });
    expect(refused).toBe(401);
    await until(
      async () =>
        Number(await card(page).getByTestId('charts').getAttribute('data-samples')) >= 12 &&
        (await card(page).getByTestId('guardrails').locator('li[data-status="holding"]').count()) === 2,
      15_000,
      'both guardrails judging, 12 s of history',
    );
    await page.screenshot({ path: new URL('dashboard-running.png', DOCS).pathname, fullPage: true });

    await card(page).getByTestId('kill-reason').fill('p95 looks odd on the payments board');
    await card(page).getByTestId('kill').click();
    // No token yet: the page asks for one, the experiment still runs.
    await page.getByTestId('token-form').waitFor({ state: 'visible' });
    expect((await apiState()).state).toBe('running');
    await page.getByTestId('token-input').fill(TOKEN);
    await page.getByTestId('token-save').click();
    // The page retries the kill with the token.
    await until(async () => (await apiState()).state === 'killed', 5000, 'the kill');
    expect((await apiState()).ended?.reason).toBe('p95 looks odd on the payments board');
    await seeText(card(page).getByTestId('state'), 'killed');
    await seeText(card(page).getByTestId('verdict'), 'aborted');
    expect(await card(page).getByTestId('timeline').textContent()).toContain(
      'killed (manual): p95 looks odd on the payments board',
    );
    expect(await page.getByTestId('events').textContent()).toContain('killed checkout-latency');
    // The token is in sessionStorage, never in the URL.
    expect(page.url()).not.toContain(TOKEN);
    expect(await page.evaluate("sessionStorage.getItem('faultline.adminToken')")).toBe(TOKEN);
    await page.waitForTimeout(1200);
    await page.screenshot({ path: new URL('dashboard-killed.png', DOCS).pathname, fullPage: true });

    await card(page).getByTestId('arm').click();
    await until(async () => (await apiState()).state === 'running', 5000, 'the arm');
    await seeText(card(page).getByTestId('state'), 'running');

    await page.getByTestId('kill-all').click();
    await until(async () => (await apiState()).state === 'killed', 5000, 'kill everything');
    await seeText(card(page).getByTestId('state'), 'killed');
    await page.close();
    expect(errors).toEqual([]);
  }, 40_000);

  it('faultline report ID --html FILE writes a self-contained report that renders with its charts', async () => {
    const file = join(fl.stateDir, 'report.html');
    const cli = runCli(['report', 'checkout-latency', '--html', file, '--admin', fl.admin]);
    expect(await cli.exited, cli.stderr()).toBe(0);
    expect(cli.stdout()).toContain('(aborted)');
    const html = await readFile(file, 'utf8');
    // Nothing to fetch: no script, no link, no external URL.
    expect(html).not.toMatch(/<script|<link|https?:\/\/(?!www\.w3\.org)/);
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const errors: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await page.goto(pathToFileURL(file).href);
    expect(await page.locator('body').textContent()).toContain(
      'checkout keeps its p95 and error rate when 3% of payment calls fail',
    );
    expect(await page.locator('.verdict').textContent()).toBe('aborted');
    // requests, error rate, timeout rate, latency, evidence
    expect(await page.locator('figure svg').count()).toBe(5);
    expect(await page.locator('figure svg path[d^="M"]').count()).toBeGreaterThan(5);
    expect(await page.locator('li').filter({ hasText: 'killed' }).count()).toBeGreaterThan(0);
    await page.screenshot({ path: new URL('report-html.png', DOCS).pathname, fullPage: true });
    await page.close();
    expect(errors).toEqual([]);
  }, 20_000);

  it('fits a phone-width screen', async () => {
    const { page, errors } = await openPage(390, 844);
    await card(page).getByTestId('hypothesis').waitFor();
    await page.getByTestId('chart-evidence').locator('canvas').waitFor();
    const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth');
    expect(overflow).toBeLessThanOrEqual(0);
    await page.close();
    expect(errors).toEqual([]);
  }, 20_000);
});
