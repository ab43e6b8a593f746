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
import { inspect } from "node:util";
import { isMainThread } from "node:worker_threads";
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
        guardExit(lib);
        kernelWaits++;
        flockFn.async(fd, op, (err: unknown, res: number) => {
          kernelWaits--;
          if (err) reject(err);
          else resolve(res === 0 ? 0 : FLOCK_ASYNC_FAILED);
        });
      }),
  );
  const shm = nodeSharedMemory(lib);
  if (shm) platform.sharedMemory = shm;
  const statx = nodeStatx(lib);
  if (statx) platform.identity = makeIdentity(statx, (path) => platform.lstat(path));
  return platform;
}

/** Waiting flocks on libuv's thread pool not granted yet, in this process. */
let kernelWaits = 0;
let exitGuarded = false;

/**
 * A waiting flock cannot be cancelled, and at exit Node joins libuv's pool threads: a
 * process with one still waiting (its lock held by a stopped or hung process, or by
 * flock(1)) could not exit, not by process.exit(), not after an uncaught error (an open()
 * that failed with LOCK_TIMEOUT left it hanging instead of exiting with the error), until
 * the holder let go. Such a process now ends with _exit(2) at its 'exit' event, once the
 * exit listeners after this one have run (and an uncaught error printed, as Node would);
 * one with no wait pending exits as Node does. Not in a worker thread, whose _exit would
 * end the whole process. A process that ends by running out of work, with a wait pending,
 * still stays until the holder lets go: the pending wait is work to Node, and 'exit'
 * never comes.
 */
function guardExit(lib: koffi.IKoffiLib): void {
  if (exitGuarded) return;
  exitGuarded = true;
  if (!isMainThread) return;
  let exitNow: (status: number) => void;
  try {
    exitNow = lib.func("void _exit(int status)") as unknown as (status: number) => void;
  } catch {
    return; // a C library without _exit: Node's own exit, as before
  }
  // An uncaught error is printed by Node after the 'exit' event, which _exit would skip:
  // it is kept here as it passes (the monitor changes nothing of its handling), and printed
  // before _exit. One that a listener handles, so that the process goes on, is let go at
  // the next turn of the event loop.
  let fatal: { error: unknown } | undefined;
  process.on("uncaughtExceptionMonitor", (error) => {
    fatal = { error };
    setImmediate(() => (fatal = undefined)).unref();
  });
  const onExit = (code: number) => {
    if (kernelWaits === 0) return;
    if (fatal) process.stderr.write(`${inspect(fatal.error)}\n\nNode.js ${process.version}\n`);
    const listeners = process.listeners("exit");
    for (const listener of listeners.slice(listeners.indexOf(onExit) + 1)) {
      try {
        listener.call(process, code);
      } catch (e) {
        // Thrown on, it would take Node's own exit path, the one that hangs: reported here.
        console.error(e);
      }
    }
    exitNow(typeof process.exitCode === "number" ? process.exitCode : code);
  };
  process.on("exit", onExit);
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
