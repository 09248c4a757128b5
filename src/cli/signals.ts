/** Signal handling shared by `run` and `demo`: SIGTERM/SIGINT drain and stop, SIGHUP reloads. */
import type { Faultline } from '../main.js';
import { log } from '../telemetry/log.js';

/**
 * Signal handling, installed before anything starts (a SIGHUP that arrives while Faultline boots must
 * not kill it): SIGTERM/SIGINT drain and exit 0, SIGHUP reloads the config. `serve` resolves with the
 * exit code once a stop signal (also one received during the boot) has drained the instance.
 */
export function handleSignals(): { serve(fl: Faultline): Promise<number> } {
  let running: Faultline | null = null;
  let pending: string | null = null;
  let stopping = false;
  let finish: (code: number) => void = () => undefined;
  const exitCode = new Promise<number>((r) => (finish = r));
  const stop = (signal: string) => {
    if (running === null) {
      pending = signal;
      return;
    }
    if (stopping) return;
    stopping = true;
    log('info', 'signal received', { signal });
    running.stop().then(
      () => finish(0),
      (err: unknown) => {
        log('error', 'stop failed', { error: (err as Error).message });
        finish(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => void running?.reload());
  return {
    serve(fl: Faultline): Promise<number> {
      running = fl;
      if (pending !== null) stop(pending);
      return exitCode;
    },
  };
}
