/**
 * The Node.js adapter: node:fs for files, and libc flock(2) through koffi (prebuilt FFI,
 * no compiler needed) because Node has no flock of its own. flock is the one lock
 * primitive every adapter uses, so Node, Deno and Bun processes exclude each other.
 *
 * @example
 * ```ts
 * import { open } from "txtdb";
 * import { nodePlatform } from "txtdb/adapters/node";
 * const db = await open("./data", { adapter: nodePlatform });
 * ```
 * @module
 */
import koffi from "koffi";
import process from "node:process";
import { DEFAULT_LIBC, loadLibc, makeNodeFsPlatform } from "./nodefs.ts";
import type { Platform } from "../src/port.ts";

/** EIO for a failed flock on the helper thread: errno lives in that thread, out of reach. */
const FLOCK_ASYNC_FAILED = 5;

/**
 * The Platform for Node.js, with flock(2) from the C library `libc` (default: `libc.so.6`,
 * glibc's; `libc.dylib` on macOS). A library that does not load, or has no flock, fails
 * with UNSUPPORTED naming it.
 *
 * @example
 * ```ts
 * import { open } from "txtdb";
 * import { makeNodePlatform } from "txtdb/adapters/node";
 * const db = await open("./data", { adapter: makeNodePlatform("/usr/lib/libc.so.6") });
 * ```
 */
export function makeNodePlatform(libc: string = DEFAULT_LIBC): Platform {
  const flockFn = loadLibc("Node", libc, (name) => koffi.load(name).func("int flock(int fd, int operation)"));
  const flockNative = flockFn as unknown as (fd: number, op: number) => number;
  return makeNodeFsPlatform(
    "node",
    (fd, op) => (flockNative(fd, op) === 0 ? 0 : koffi.errno()),
    process.pid,
    // A waiting flock on libuv's thread pool: the writer lock's waiters are woken by the
    // kernel when it is released, instead of polling for it (lock.ts).
    (fd, op) =>
      new Promise((resolve, reject) => {
        flockFn.async(fd, op, (err: unknown, res: number) => (err ? reject(err) : resolve(res === 0 ? 0 : FLOCK_ASYNC_FAILED)));
      }),
  );
}

/** The Platform for Node.js: flock(2) from the system C library. */
export const nodePlatform: Platform = makeNodePlatform();

export default nodePlatform;
