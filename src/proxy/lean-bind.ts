/**
 * `AsyncResource.prototype.bind` without the two `util.deprecate` wrappers Node 20 builds per call.
 *
 * Why: `ClientHttp2Session.request` binds each new stream's start to an AsyncResource
 * (`reqAsync.bind(...)` in lib/internal/http2/core.js), and Node 20's `bind` defines the deprecated
 * `asyncResource` accessor (DEP0172) with a fresh `deprecate(function () { ... })` getter and setter,
 * each of which calls `Object.setPrototypeOf(wrapper, freshFunction)`: a new hidden class per call.
 * Measured (bench/PROFILE.md, issue 18): ~20 us per bind vs ~1.5 us with shared accessors, on the
 * path of every HTTP/2 upstream request; it was most of the profile's "util.deprecate wrapper built
 * per request". No request option or header shape avoids it: `request` always binds.
 *
 * Same behaviour: the bound function, its `length`, and an enumerable, configurable `asyncResource`
 * accessor that emits DEP0172 once and reads/writes the resource; invalid `fn` still goes to Node's
 * own method (same error). Installed only when Node's method is the deprecate-building one (checked
 * on its source once), so a Node that fixes it keeps its own.
 */
import { AsyncResource } from 'node:async_hooks';
import { deprecate } from 'node:util';

const kResource = Symbol('faultline.asyncResource');
type Bound = ((...args: unknown[]) => unknown) & { [kResource]?: AsyncResource };

let installed = false;

export function installLeanAsyncBind(): void {
  if (installed) return;
  installed = true;
  // Typed loosely: Node's declared signature is generic over `fn`, this override is not.
  const proto = AsyncResource.prototype as unknown as {
    bind: (this: AsyncResource, fn: unknown, thisArg?: unknown) => unknown;
  };
  const original = proto.bind;
  if (!Function.prototype.toString.call(original).includes('deprecate(')) return;
  const warn = deprecate(() => {}, 'The asyncResource property on bound functions is deprecated', 'DEP0172');
  const accessor: PropertyDescriptor = {
    configurable: true,
    enumerable: true,
    get(this: Bound) {
      warn();
      return this[kResource];
    },
    set(this: Bound, value: AsyncResource) {
      warn();
      this[kResource] = value;
    },
  };
  const lengthOf = (n: number): PropertyDescriptor => ({
    configurable: true,
    enumerable: false,
    writable: false,
    value: n,
  });
  proto.bind = function bind(this: AsyncResource, fn: unknown, thisArg?: unknown): unknown {
    if (typeof fn !== 'function') return original.call(this, fn, thisArg);
    const target = fn as (...args: unknown[]) => unknown;
    const bound: Bound =
      thisArg === undefined
        ? callerThis(this, target)
        : (this.runInAsyncScope.bind(this, target, thisArg) as Bound);
    Object.defineProperty(bound, 'length', lengthOf(target.length));
    Object.defineProperty(bound, 'asyncResource', accessor);
    bound[kResource] = this;
    return bound;
  };
}

/** A bound function that passes its call-time `this` through, as Node's does without a thisArg. */
function callerThis(resource: AsyncResource, target: (...args: unknown[]) => unknown): Bound {
  return function (this: unknown, ...args: unknown[]): unknown {
    return resource.runInAsyncScope(target, this, ...args);
  };
}
