/** Fleet tests: replicas in front of one upstream, load that records every response, polling. */
import { Agent, request } from 'undici';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until<T>(what: string, fn: () => Promise<T | null | false>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== null && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export interface Hit {
  t: number;
  injected: boolean;
  status: number;
  group: string | null;
}

/**
 * Keeps `concurrency` requests in flight to each base URL (path appended) until stop(); records every
 * response. `headers(i, n)` gives the headers of the n-th request of loop i.
 */
export function load(
  urls: string[],
  concurrency = 3,
  headers: (n: number) => Record<string, string> = () => ({}),
) {
  const agent = new Agent({ connections: 16 });
  const hits: Hit[][] = urls.map(() => []);
  const failures: string[] = [];
  let running = true;
  let n = 0;
  const loops = urls.flatMap((url, i) =>
    Array.from({ length: concurrency }, async () => {
      while (running) {
        const t = Date.now();
        try {
          const res = await request(url, { dispatcher: agent, headers: headers(n++) });
          await res.body.dump();
          const arm = res.headers['x-faultline-arm'];
          hits[i]!.push({
            t,
            injected: res.headers['x-faultline-injected'] !== undefined,
            status: res.statusCode,
            group: typeof arm === 'string' ? (/group=(\w+)/.exec(arm)?.[1] ?? null) : null,
          });
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    }),
  );
  return {
    hits,
    failures,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      await agent.close();
    },
  };
}

// Admin JSON, read loosely in assertions.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Loose = any;

export async function getJson(url: string): Promise<Loose> {
  const res = await fetch(url);
  return (await res.json()) as Loose;
}
