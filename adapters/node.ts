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
import { makeSharedMemory, sysvShmSupported } from "./sysvshm.ts";
import { makeIdentity } from "./statx.ts";
import type { StatxCall } from "./statx.ts";
import type { Platform, SharedMemory } from "../src/port.ts";

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
  const lib = loadLibc("Node", libc, (name) => koffi.load(name));
  const flockFn = loadLibc("Node", libc, () => lib.func("int flock(int fd, int operation)"));
  const flockNative = flockFn as unknown as (fd: number, op: number) => number;
  const platform = makeNodeFsPlatform(
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
  const shm = nodeSharedMemory(lib);
  if (shm) platform.sharedMemory = shm;
  const statx = nodeStatx(lib);
  if (statx) platform.identity = makeIdentity(statx, (path) => platform.lstat(path));
  return platform;
}

/** statx(2) through koffi on Linux (statx.ts says why); undefined elsewhere, or where the C library lacks it (glibc < 2.28). */
function nodeStatx(lib: koffi.IKoffiLib): StatxCall | undefined {
  if (process.platform !== "linux") return undefined;
  try {
    return lib.func("int statx(int dirfd, void *path, int flags, unsigned int mask, void *buf)") as unknown as StatxCall;
  } catch {
    return undefined;
  }
}

/** System V shared memory through koffi, where its layout is known (sysvshm.ts); else undefined. */
function nodeSharedMemory(lib: koffi.IKoffiLib): SharedMemory | undefined {
  if (!sysvShmSupported(process.platform, process.arch)) return undefined;
  type Fn = ReturnType<koffi.IKoffiLib["func"]>;
  let fns: { shmget: Fn; shmat: Fn; shmdt: Fn; shmctl: Fn };
  try {
    fns = {
      shmget: lib.func("int shmget(int key, size_t size, int shmflg)"),
      shmat: lib.func("void *shmat(int shmid, void *shmaddr, int shmflg)"),
      shmdt: lib.func("int shmdt(void *shmaddr)"),
      shmctl: lib.func("int shmctl(int shmid, int cmd, void *buf)"),
    };
  } catch {
    return undefined; // a C library without them: reads probe the frontier file
  }
  // koffi hands out pointers as objects; the port speaks of addresses.
  const pointers = new Map<bigint, unknown>();
  return makeSharedMemory({
    shmget: (key, bytes, flags) => fns.shmget(key, bytes, flags) as number,
    shmat(id) {
      const p = fns.shmat(id, null, 0);
      const address = p === null ? -1n : BigInt(koffi.address(p));
      if (address !== -1n && address !== 0xffffffffffffffffn) pointers.set(address, p);
      return address;
    },
    shmdt(address) {
      const p = pointers.get(address);
      pointers.delete(address);
      return fns.shmdt(p) as number;
    },
    shmctl: (id, cmd, buf) => fns.shmctl(id, cmd, buf) as number,
    errno: () => koffi.errno(),
    view: (address, bytes) => koffi.view(pointers.get(address), bytes),
  });
}

/** The Platform for Node.js: flock(2) from the system C library. */
export const nodePlatform: Platform = makeNodePlatform();

export default nodePlatform;
