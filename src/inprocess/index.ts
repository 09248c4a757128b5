/**
 * In-process mode (Netflix FIT's shape, no proxy): the same engine, config schema, kill switch, state,
 * metrics and admin API as the proxy, hosted by the application itself.
 *
 *   const fl = await createFaultline({ config: 'faultline.yaml' });
 *   http.createServer(fl.inbound('checkout', handler));                  // split + observe
 *   const dispatcher = new Agent().compose(fl.undiciInterceptor('auth')); // inject into canary calls
 *   new EchoClient(addr, creds, { interceptors: [fl.grpcInterceptor('ledger')] });
 *   await fl.admin.listen();                                              // optional admin API
 */
import type { AddressInfo } from 'node:net';
import type { Interceptor } from '@grpc/grpc-js';
import type { Dispatcher } from 'undici';
import { validateConfig } from '../config/load.js';
import type { ConfigInput } from '../config/schema.js';
import type { Engine } from '../engine/engine.js';
import type { PointRef } from '../engine/point.js';
import { FaultlineError } from '../errors.js';
import { Faultline } from '../main.js';
import { grpcInterceptor } from './grpc.js';
import { wrapInbound, type RequestHandler } from './inbound.js';
import { undiciInterceptor } from './undici.js';

export interface CreateOptions {
  /** A config file (YAML or JSON; reloads re-read it) or the config itself, as it would be written. */
  config: string | ConfigInput;
  /** Reload when the config file changes (file configs only). */
  watch?: boolean;
}

export interface InProcessFaultline {
  /** Wraps a node:http request handler as the inbound point `point` (split, observe, inject here). */
  inbound(point: string, handler: RequestHandler): RequestHandler;
  /** An undici interceptor (`agent.compose(...)`) for the outbound point `point`. */
  undiciInterceptor(point: string): Dispatcher.DispatcherComposeInterceptor;
  /** A grpc-js client interceptor for the outbound point `point`. */
  grpcInterceptor(point: string): Interceptor;
  /** The admin API (status, reports, kill, arm, /metrics, /events), started on demand. */
  readonly admin: { listen(port?: number, address?: string): Promise<AddressInfo> };
  /** The engine: kill, arm, experiments and their events. */
  readonly engine: Engine;
  /** The Faultline instance underneath (listeners in the same config run too). */
  readonly faultline: Faultline;
  /** Drains the config's listeners, flushes state, closes the admin listener. */
  close(): Promise<void>;
}

const INLINE = '(inline config)';

export async function createFaultline(opts: CreateOptions): Promise<InProcessFaultline> {
  const file = typeof opts.config === 'string' ? opts.config : INLINE;
  const config = typeof opts.config === 'string' ? undefined : validateConfig(opts.config, INLINE);
  const fl = await Faultline.start({
    configFile: file,
    ...(config !== undefined ? { config } : {}),
    watch: opts.watch === true && file !== INLINE,
    admin: false,
  });
  const point = (name: string, role: 'inbound' | 'outbound'): PointRef => {
    const ref = fl.points.get(name);
    if (ref === undefined)
      throw new FaultlineError(
        'FL_POINT_UNKNOWN',
        `no in-process point named "${name}" in the config (points: ${[...fl.points.keys()].join(', ') || 'none'})`,
      );
    if (ref.plan.role !== role)
      throw new FaultlineError('FL_POINT_ROLE', `point "${name}" is ${ref.plan.role}, not ${role}`);
    return ref;
  };
  return {
    inbound: (name, handler) => wrapInbound(fl.engine, point(name, 'inbound'), handler),
    undiciInterceptor: (name) => undiciInterceptor(fl.engine, point(name, 'outbound')),
    grpcInterceptor: (name) => grpcInterceptor(fl.engine, point(name, 'outbound')),
    admin: { listen: (port?: number, address?: string) => fl.listenAdmin(port, address) },
    engine: fl.engine,
    faultline: fl,
    close: () => fl.stop(),
  };
}
