/**
 * The dashboard's fleet view, ramp view and run list in real Chromium (Debian's /usr/bin/chromium via
 * playwright-core): two real Faultline replicas sharing a real redis-server, and a single Faultline
 * whose experiment ramps its fault, with real traffic through their proxy listeners.
 */
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { Agent, request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { exp, oneRoute } from '../helpers/experiments.js';
import { removeDir, startFaultline, type TestFaultline } from '../helpers/faultline.js';
import { startRedis } from '../helpers/redis.js';
import { startUpstream } from '../helpers/servers.js';

// Admin JSON, read loosely in assertions.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

const dispatcher = new Agent({ connections: 16 });
const cleanup: (() => Promise<void>)[] = [];
let browser: Browser;

beforeAll(async () => {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
}, 30_000);

afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
});

afterAll(async () => {
  await browser?.close();
  await dispatcher.close();
});

async function upstream(): Promise<string> {
  const up = await startUpstream((req, res) => {
    req.resume();
    res.end('ok');
  });
  cleanup.push(() => up.close());
  return up.url;
}

async function faultline(config: Record<string, unknown>): Promise<TestFaultline> {
  const fl = await startFaultline(config);
  cleanup.push(async () => {
    await fl.stop();
    await removeDir(fl.stateDir);
  });
  return fl;
}

/** `concurrency` request loops per URL (a short pause between requests) until the test ends. */
function drive(urls: string[], concurrency = 3, pauseMs = 5): void {
  let running = true;
  const loops = urls.flatMap((url) =>
    Array.from({ length: concurrency }, async () => {
      while (running) {
        try {
          await (await request(url, { dispatcher })).body.dump();
        } catch {
          // a request cut at the end of the test
        }
        await new Promise((r) => setTimeout(r, pauseMs));
      }
    }),
  );
  cleanup.push(async () => {
    running = false;
    await Promise.all(loops);
  });
}

async function getJson(url: string): Promise<Loose> {
  const r = await request(url, { dispatcher });
  return r.body.json();
}

async function until(what: string, cond: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function openPage(admin: string, width = 1280): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width, height: 800 } });
  const errors: string[] = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(String(e)));
  cleanup.push(() => page.close());
  await page.goto(`${admin}/`);
  return { page, errors };
}

const num = async (loc: Locator) => Number((await loc.textContent()) ?? 'NaN');

describe('dashboard views in Chromium', () => {
  it('fleet mode: pooled arms, both replicas with counts and last-seen, the lease holder', async () => {
    const redis = await startRedis();
    cleanup.push(() => redis.stop());
    const up = await upstream();
    const config = (replica: string) =>
      oneRoute(
        up,
        [
          exp({
            split: { percent: 25, allow_above_cap: true },
            // no effect on errors: the run stays up (a kill would end the pooled run the page shows)
            fault: { kind: 'latency', ms: 1 },
            min_samples: 20,
            guardrails: [{ metric: 'error_rate' }],
          }),
        ],
        { fleet: { redis: redis.url, name: 'checkout', replica, flush_ms: 100, grant_ttl_ms: 1000 } },
      );
    const a = await faultline(config('replica-a'));
    const b = await faultline(config('replica-b'));
    drive([`${a.url()}/x`, `${b.url()}/x`]);

    const { page, errors } = await openPage(a.admin);
    const fleet = page.getByTestId('exp-e1').getByTestId('fleet');
    const rows = fleet.getByTestId('fleet-replicas').locator('tbody tr');
    // Both replicas listed, each with canary and control requests counted, seen within seconds.
    await until('both replicas with traffic on the page', async () => {
      if ((await rows.count()) !== 2) return false;
      for (const name of ['replica-a', 'replica-b']) {
        const row = fleet.locator(`tbody tr[data-replica="${name}"]`);
        if ((await row.count()) !== 1) return false;
        if ((await num(row.locator('td').nth(1))) <= 0 || (await num(row.locator('td').nth(2))) <= 0)
          return false;
      }
      return true;
    });
    for (const row of await rows.all())
      expect(await row.locator('td').nth(3).textContent()).toMatch(/^\d+\.\d s ago$/);
    // The page's lease holder is the one the admin API names (one of the two replicas).
    const api = (await getJson(`${a.admin}/experiments/e1`)).fleet;
    expect(api.contributing_replicas).toBe(2);
    expect(['replica-a', 'replica-b']).toContain(api.evaluator);
    expect(await fleet.getByTestId('fleet-evaluator').textContent()).toBe(api.evaluator);
    expect(await fleet.locator(`tr[data-replica="${api.evaluator}"] .lease`).textContent()).toBe('evaluator');
    expect(await fleet.textContent()).toContain('Fleet checkout');
    // Pooled = the sum of the replicas' rows, read from one render (the page redraws every 2 s).
    const snap = await fleet.evaluate((box) => ({
      pooled: box.querySelector('[data-testid="fleet-pooled-canary"]')?.textContent ?? '',
      own: [...box.querySelectorAll('tbody tr')].map((tr) => Number(tr.children[1]?.textContent)),
    }));
    const pooled = Number(/^(\d+) req/.exec(snap.pooled)?.[1]);
    expect(snap.own).toHaveLength(2);
    expect(pooled).toBe(snap.own[0]! + snap.own[1]!);
    expect(Math.min(...snap.own)).toBeGreaterThan(0);
    expect(errors).toEqual([]);
  }, 40_000);

  it('a ramp: the current step and per-step counts and outcome; past runs with a report each', async () => {
    const up = await upstream();
    const fl = await faultline(
      oneRoute(up, [
        exp({
          id: 'ramp',
          hypothesis: 'the api tolerates a slower path',
          split: { percent: 50, allow_above_cap: true },
          fault: { kind: 'latency', ms: 2 },
          // latency-only: a step advances after min_samples canary requests (no power simulation)
          guardrails: [{ metric: 'latency', quantile: 0.5, max_ratio: 1000, max_increase_ms: 5000 }],
          min_samples: 20,
          ramp: { steps: [2, 4, 8], on_breach: 'plateau' },
        }),
      ]),
    );
    drive([`${fl.url()}/x`], 4, 2);
    const { page, errors } = await openPage(fl.admin);
    const card = page.getByTestId('exp-ramp');
    const ramp = card.getByTestId('ramp');
    await ramp.waitFor();
    const steps = ramp.getByTestId('ramp-steps').locator('tbody tr');
    expect(await steps.count()).toBe(3);
    expect(await steps.nth(0).locator('td').nth(1).textContent()).toBe('2 ms');
    // The ramp climbs: the page follows the current step, the steps behind it held with their counts.
    await until('the ramp at step 2 or later on the page', async () =>
      /^step [12]: [48] ms \(\w+\), [23] of 3$/.test(
        (await ramp.getByTestId('ramp-current').textContent()) ?? '',
      ),
    );
    expect(await steps.nth(0).getAttribute('data-status')).toBe('held');
    expect(await num(steps.nth(0).locator('td').nth(3))).toBeGreaterThanOrEqual(20);
    expect(await num(steps.nth(0).locator('td').nth(4))).toBeGreaterThan(0);
    const api = (await getJson(`${fl.admin}/experiments/ramp/report`)).ramp;
    expect(api.steps[0].status).toBe('held');
    expect(await ramp.getByTestId('ramp-summary').textContent()).toMatch(/held up to|ramp/);

    // Two runs recorded in the journal: killed, armed, killed again.
    const kill = (reason: string) =>
      request(`${fl.admin}/experiments/ramp/kill`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ reason }),
        dispatcher,
      }).then((r) => r.body.json());
    await kill('first look');
    await (
      await request(`${fl.admin}/experiments/ramp/arm`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
        dispatcher,
      })
    ).body.dump();
    await kill('second look');
    const journal = (await getJson(`${fl.admin}/experiments/ramp/runs`)).runs;
    expect(journal.map((r: Loose) => r.run)).toEqual([1, 2]);

    await card.getByTestId('runs-section').locator('summary').click();
    const runs = card.getByTestId('runs-table').locator('tbody tr');
    await until('two runs listed', async () => (await runs.count()) === 2);
    // Newest first, each with its verdict, start and end.
    expect(await runs.nth(0).getAttribute('data-run')).toBe('2');
    expect(await runs.nth(1).getAttribute('data-run')).toBe('1');
    expect(await runs.nth(1).locator('td').nth(1).textContent()).toBe(journal[0].verdict);
    expect(await runs.nth(1).locator('td').nth(3).textContent()).toBe(
      journal[0].ended_at.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
    );
    expect(await runs.nth(1).textContent()).toContain('killed (manual)');
    // A run's report: verdict, reason and how it compares with the runs before it.
    await card.getByTestId('view-run-1').click();
    const view = card.getByTestId('run-report');
    await view.waitFor({ state: 'visible' });
    expect(await view.getAttribute('data-run')).toBe('1');
    expect(await view.getByTestId('run-verdict').textContent()).toBe(journal[0].verdict);
    expect(await view.textContent()).toContain('first look');
    await card.getByTestId('view-run-2').click();
    await until('run 2 shown', async () => (await view.getAttribute('data-run')) === '2');
    expect(await view.textContent()).toContain('second look');
    expect(await view.textContent()).toContain('the api tolerates a slower path');
    // Phone width: the tables scroll inside their box, the page does not.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    expect(
      await page.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth'),
    ).toBeLessThanOrEqual(0);
    expect(errors).toEqual([]);
  }, 45_000);
});
