/**
 * A platform whose handle of the store's writer lock can be kept from it: while
 * `blocked.on` is set, that handle's flock attempts fail as when another process holds the
 * lock, while every other handle and process can take it. A commit through this platform
 * then waits for the lock as long as a test wants, and meanwhile others commit and compact.
 * Shared by tests/isolation-attack.test.ts and its worker, tests/workers/isoworker.ts.
 */
import type { Platform } from "txtdb";

export function writerLockBlockable(real: Platform): { adapter: Platform; blocked: { on: boolean } } {
  const blocked = { on: false };
  const wrapHandle = <H extends object>(h: H): H =>
    new Proxy(h, {
      get(target, prop) {
        if (prop === "lockAsync") return undefined; // poll tryLock, which the flag can refuse
        const v = Reflect.get(target, prop, target) as unknown;
        if (prop === "tryLock") {
          return (exclusive: boolean) => (blocked.on ? false : (v as (e: boolean) => boolean).call(target, exclusive));
        }
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  const adapter = new Proxy(real, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (prop === "open") {
        return (path: string, options?: Parameters<Platform["open"]>[1]) => {
          const h = (v as Platform["open"]).call(target, path, options);
          return path.endsWith("/writer.lock") ? wrapHandle(h) : h;
        };
      }
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as Platform;
  return { adapter, blocked };
}
