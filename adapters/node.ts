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
import { makeNodeFsPlatform } from "./nodefs.ts";
import type { Platform } from "../src/port.ts";

const libcName = process.platform === "darwin" ? "libc.dylib" : "libc.so.6";
const libc = koffi.load(libcName);
const flockNative = libc.func("int flock(int fd, int operation)") as (fd: number, op: number) => number;

const mmap = libc.func("void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)") as (...a: unknown[]) => unknown;
const munmap = libc.func("int munmap(void *addr, size_t length)") as (addr: unknown, length: number) => number;
const PROT_READ = 1;
const MAP_SHARED = 1;

/** The Platform for Node.js. */
export const nodePlatform: Platform = makeNodeFsPlatform(
  "node",
  (fd, op) => (flockNative(fd, op) === 0 ? 0 : koffi.errno()),
  process.pid,
  {
    map(fd, length) {
      const ptr = mmap(null, length, PROT_READ, MAP_SHARED, fd, 0);
      if (ptr === null || koffi.address(ptr) === 0xffffffffffffffffn) return undefined; // MAP_FAILED
      return { bytes: new Uint8Array(koffi.view(ptr, length)), unmap: () => void munmap(ptr, length) };
    },
  },
);

export default nodePlatform;
