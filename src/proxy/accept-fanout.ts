/**
 * More descriptors for one listening socket, so that a burst of new connections is accepted in a few
 * event-loop turns instead of one connection per turn.
 *
 * Why: since libuv 1.45 (Node 20) a listening descriptor accepts ONE connection per readiness event
 * (libuv PR 3696; nodejs/node issue 57364). Under load one loop turn serves every ready socket and takes
 * tens of milliseconds, so a burst drains from the accept queue at a few dozen connections per second and
 * the first request on each late connection waits seconds. Measured on this 2-core machine, a bare
 * node:http server on one core under `wrk -t2 -c1000`: strace shows one accept4 every ~40 ms, and
 * `ss -ltn` still shows 514 connections in the accept queue 4 s into the run. That was the -c1000 p99
 * (issue 18). Each extra descriptor of the same socket is its own epoll entry, so a turn accepts up to
 * `count` connections: with 32 the queue was empty after 1.5 s (bench/PROFILE.md has the figures).
 *
 * How: Node 20 can neither dup(2) a descriptor nor set SO_REUSEPORT from JavaScript. A short-lived child
 * process receives the raw listening handle over IPC and sends it straight back; each round trip gives
 * this process a new descriptor for the same socket (SCM_RIGHTS). The child never listens or accepts: a
 * raw handle is not a net.Server there. The new handles call the server's own `onconnection`, so the
 * connections they accept take exactly the server's path (maxConnections and 'drop', noDelay,
 * 'connection', the server's connection count).
 *
 * Safe by construction: when anything here fails (no fd on the handle, as in a round_robin worker whose
 * primary accepts; the child cannot start or does not answer), the listener keeps its one descriptor.
 */
import { spawn } from 'node:child_process';
import type { Server } from 'node:net';

/** The part of Node's TCPWrap used here. */
interface TcpHandle {
  fd?: number;
  onconnection: unknown;
  listen(backlog: number): number;
  close(cb?: () => void): void;
  [key: symbol]: unknown;
}

// Echo every handle back, and exit when the parent lets go of the channel.
const CHILD_SOURCE =
  "process.on('message',(m,h)=>process.send(m,h));process.on('disconnect',()=>process.exit(0));";

export class AcceptFanout {
  private readonly handles: TcpHandle[] = [];
  private closed = false;
  /** The child while it runs: it holds descriptors of the socket too, so the port is not free. */
  private child: Duplicator | null = null;
  private delay: NodeJS.Timeout | null = null;
  private endDelay: (() => void) | null = null;

  /** The server has a descriptor of its own to fan out (false in a round_robin worker: the primary accepts). */
  applicable = false;

  /** Extra descriptors polling now (0 until start() resolves, and when fan-out is not possible). */
  get extra(): number {
    return this.handles.length;
  }

  constructor(
    private readonly server: Server,
    /** Descriptors in all, counting the server's own (1 = no fan-out). */
    private readonly count: number,
    private readonly backlog: number,
  ) {}

  /**
   * Adds count - 1 descriptors after `delayMs`; resolves with how many were added (never rejects).
   * The delay: a child process costs ~120 ms of CPU, and a listener is idle right after it binds (its
   * loop turns are short, so one accept per turn keeps up); a listener stopped within it (tests, a
   * failed start) never pays for the child.
   */
  async start(delayMs = 0, timeoutMs = 5000): Promise<number> {
    const main = (this.server as unknown as { _handle?: TcpHandle })._handle;
    const wanted = this.count - 1;
    if (wanted <= 0 || !main || typeof main.fd !== 'number' || main.fd < 0) return 0;
    if (delayMs > 0)
      await new Promise<void>((resolve) => {
        this.delay = setTimeout(resolve, delayMs);
        this.delay.unref();
        this.endDelay = resolve;
      });
    this.delay = null;
    const owner = Object.getOwnPropertySymbols(main).find((s) => s.description === 'owner_symbol');
    if (owner === undefined || typeof main.onconnection !== 'function') return 0;
    this.applicable = true;
    if (this.closed) return 0;
    this.child = duplicate(main, wanted, timeoutMs);
    const received = await this.child.done;
    this.child = null;
    for (const h of received) {
      if (this.closed || this.handles.length >= wanted) {
        h.close();
        continue;
      }
      h[owner] = this.server;
      h.onconnection = main.onconnection;
      // listen(2) again on the same socket only re-arms it (same backlog); libuv now polls this
      // descriptor too and hands each accepted connection to the server's onconnection.
      if (h.listen(this.backlog) !== 0) {
        h.close();
        continue;
      }
      this.handles.push(h);
    }
    return this.handles.length;
  }

  /**
   * Stops the extra descriptors (the server's own is closed by server.close()). Resolves once no
   * descriptor of the socket is left here or in a child, so the port can be bound again at once (a
   * restart on the same port must not meet EADDRINUSE from a child still starting).
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.delay !== null) {
      clearTimeout(this.delay);
      this.endDelay?.();
    }
    for (const h of this.handles) h.close();
    this.handles.length = 0;
    const child = this.child;
    if (child) {
      child.kill();
      for (const h of await child.done) h.close();
    }
  }
}

interface Duplicator {
  /** The new handles (fewer than asked when the child failed, timed out or was killed). */
  done: Promise<TcpHandle[]>;
  kill(): void;
}

/** n new descriptors for the socket behind `handle`, by a round trip each through a child process. */
function duplicate(handle: TcpHandle, n: number, timeoutMs: number): Duplicator {
  // No NODE_OPTIONS (a profiler or loader flag of the parent has no business in the child).
  const child = spawn(process.execPath, ['-e', CHILD_SOURCE], {
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    env: { PATH: process.env.PATH ?? '' },
  });
  const done = new Promise<TcpHandle[]>((resolve) => {
    const got: TcpHandle[] = [];
    let finished = false;
    let exited = false;
    // Resolve only once the child has exited: until then it holds descriptors of the socket.
    const finish = (): void => {
      if (!finished) {
        finished = true;
        clearTimeout(timer);
        if (child.connected) child.disconnect();
      }
      if (exited) resolve(got);
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish();
    }, timeoutMs);
    timer.unref();
    child.on('error', () => {
      // Spawning failed: there is no child to wait for. (A send to a killed child errs too; its
      // 'exit' still comes.)
      if (child.pid === undefined) exited = true;
      finish();
    });
    child.on('exit', () => {
      exited = true;
      finish();
    });
    child.on('message', (_m: unknown, h: unknown) => {
      if (finished) {
        (h as TcpHandle | undefined)?.close();
        return;
      }
      if (h) got.push(h as TcpHandle);
      if (got.length >= n) finish();
    });
    // Node sends handles one at a time (each waits for the child's ack); these queue behind each other.
    for (let i = 0; i < n; i++) child.send('dup', handle as never);
  });
  return { done, kill: () => void child.kill('SIGKILL') };
}
