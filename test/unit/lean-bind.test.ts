/**
 * Issue 18: the lean AsyncResource.prototype.bind (src/proxy/lean-bind.ts) behaves as Node's: the
 * bound function runs in the resource's async scope with the call's `this` (or the given thisArg),
 * keeps `length`, exposes the deprecated `asyncResource` accessor, and rejects a non-function with
 * Node's own error. And on Node 20 it is really installed (Node's builds util.deprecate wrappers).
 */
import { AsyncLocalStorage, AsyncResource, executionAsyncId } from 'node:async_hooks';
import { describe, expect, it } from 'vitest';
import { installLeanAsyncBind } from '../../src/proxy/lean-bind.js';

describe('lean AsyncResource.bind', () => {
  const original = AsyncResource.prototype.bind;
  installLeanAsyncBind();

  it('replaces Node’s method where Node builds deprecate wrappers per call', () => {
    const buildsWrappers = Function.prototype.toString.call(original).includes('deprecate(');
    expect(AsyncResource.prototype.bind !== original).toBe(buildsWrappers);
  });

  it('runs in the resource’s scope, with this, args and length as Node’s', () => {
    const als = new AsyncLocalStorage<string>();
    const res = als.run('captured', () => new AsyncResource('T'));
    function f(this: unknown, a: number, b: number) {
      return { store: als.getStore(), id: executionAsyncId(), self: this, sum: a + b };
    }
    const bound = res.bind(f) as unknown as (this: unknown, a: number, b: number) => ReturnType<typeof f>;
    const self = { me: 1 };
    const out = als.run('other', () => bound.call(self, 2, 3));
    expect(out).toEqual({ store: 'captured', id: res.asyncId(), self, sum: 5 });
    expect(bound.length).toBe(2);
    const withThis = (res.bind as (fn: unknown, thisArg: unknown) => unknown).call(
      res,
      f,
      'T',
    ) as unknown as (a: number, b: number) => ReturnType<typeof f>;
    expect(withThis(1, 1).self).toBe('T');
    expect(Object.getOwnPropertyDescriptor(bound, 'asyncResource')?.enumerable).toBe(true);
  });

  it('keeps the deprecated asyncResource accessor', () => {
    const res = new AsyncResource('T');
    const bound = res.bind(() => 1) as unknown as { asyncResource: AsyncResource };
    const other = new AsyncResource('U');
    const prev = process.noDeprecation;
    process.noDeprecation = true;
    try {
      expect(bound.asyncResource).toBe(res);
      bound.asyncResource = other;
      expect(bound.asyncResource).toBe(other);
    } finally {
      process.noDeprecation = prev === true;
    }
  });

  it('rejects a non-function with Node’s error', () => {
    expect(() => new AsyncResource('T').bind(42 as never)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }),
    );
  });
});
