/**
 * The Bun adapter: Bun's node:fs for files, and libc flock(2) through bun:ffi, the same
 * kernel lock the Node and Deno adapters take, so all three runtimes exclude each other.
 *
 * `bun:ffi` is loaded with `import.meta.require` so that other runtimes' type checkers
 * (deno check) never have to resolve a `bun:` specifier.
 *
 * @example
 * ```ts
 * import { open } from "txtdb";
 * import { bunPlatform } from "txtdb/adapters/bun";
 * const db = await open("./data", { adapter: bunPlatform });
 * ```
 * @module
 */
import { DEFAULT_LIBC, loadLibc, makeNodeFsPlatform } from "./nodefs.ts";
import { makeInotifyWatchDir } from "./bunwatch.ts";
import { makeWorkerFlock } from "./bunflock.ts";
import { makeSharedMemory, sysvShmSupported } from "./sysvshm.ts";
import { makeIdentity } from "./statx.ts";
import type { Platform, SharedMemory } from "../src/port.ts";

interface BunFfi {
  dlopen(
    name: string,
    symbols: Record<string, { args: string[]; returns: string }>,
  ): { symbols: Record<string, (...args: unknown[]) => unknown> };
  read: { i32(ptr: unknown, offset?: number): number };
  toArrayBuffer(ptr: number, byteOffset: number, byteLength: number): ArrayBuffer;
}

const ffi = (import.meta as unknown as { require(id: string): BunFfi }).require("bun:ffi");
const isDarwin = (globalThis as unknown as { process: { platform: string } }).process.platform === "darwin";
const ERRNO_LOCATION = isDarwin ? "__error" : "__errno_location";

/**
 * The Platform for Bun, with flock(2) from the C library `libc` (default: `libc.so.6`,
 * glibc's; `libc.dylib` on macOS). A library that does not load, or lacks flock or the
 * errno location, fails with UNSUPPORTED naming it.
 *
 * @example
 * ```ts
 * import { open } from "txtdb";
 * import { makeBunPlatform } from "txtdb/adapters/bun";
 * const db = await open("./data", { adapter: makeBunPlatform("/usr/lib/libc.so.6") });
 * ```
 */
export function makeBunPlatform(libc: string = DEFAULT_LIBC): Platform {
  const lib = loadLibc("Bun", libc, (name) =>
    ffi.dlopen(name, {
      flock: { args: ["i32", "i32"], returns: "i32" },
      [ERRNO_LOCATION]: { args: [], returns: "ptr" },
    }));
  const errnoLocation = lib.symbols[ERRNO_LOCATION]!;
  const flockNative = lib.symbols.flock!;
  const platform = makeNodeFsPlatform(
    "bun",
    (fd, op) => (flockNative(fd, op) === 0 ? 0 : ffi.read.i32(errnoLocation())),
    (globalThis as unknown as { process: { pid: number } }).process.pid,
    // A waiting flock on a worker thread (bunflock.ts): the writer lock's waiters are woken
    // by the kernel when it is released, instead of polling for it (lock.ts).
    makeWorkerFlock(libc, ERRNO_LOCATION),
  );
  const shm = bunSharedMemory(libc, () => ffi.read.i32(errnoLocation()));
  if (shm) platform.sharedMemory = shm;
  // statx(2) for the identity checks of every commit (statx.ts says why), on Linux.
  if (!isDarwin) {
    try {
      const statx = ffi.dlopen(libc, { statx: { args: ["i32", "ptr", "i32", "u32", "ptr"], returns: "i32" } }).symbols.statx!;
      platform.identity = makeIdentity((dirfd, path, flags, mask, buf) => statx(dirfd, path, flags, mask, buf) as number, (path) => platform.lstat(path));
    } catch {
      // a C library without statx (glibc < 2.28): the core uses lstat
    }
  }
  // Bun's fs.watch drops events of files written in place (bunwatch.ts): inotify on a
  // worker thread instead, where there is inotify.
  if (!isDarwin) {
    platform.watchDir = makeInotifyWatchDir(ffi.dlopen, libc, platform.watchDir.bind(platform));
    // inotify watches a file as it watches a directory (the events of that file only).
    if (platform.watchFile) platform.watchFile = makeInotifyWatchDir(ffi.dlopen, libc, platform.watchFile.bind(platform));
  }
  return platform;
}

/** System V shared memory through bun:ffi, where its layout is known (sysvshm.ts); else undefined. */
function bunSharedMemory(libc: string, errno: () => number): SharedMemory | undefined {
  const proc = (globalThis as unknown as { process: { platform: string; arch: string } }).process;
  if (!sysvShmSupported(proc.platform, proc.arch)) return undefined;
  let s: Record<string, (...args: unknown[]) => unknown>;
  try {
    s = ffi.dlopen(libc, {
      shmget: { args: ["i32", "u64", "i32"], returns: "i32" },
      shmat: { args: ["i32", "ptr", "i32"], returns: "i64" },
      shmdt: { args: ["u64"], returns: "i32" },
      shmctl: { args: ["i32", "i32", "ptr"], returns: "i32" },
    }).symbols;
  } catch {
    return undefined; // a C library without them: reads probe the frontier file
  }
  return makeSharedMemory({
    shmget: (key, bytes, flags) => s.shmget!(key, bytes, flags) as number,
    shmat: (id) => BigInt(s.shmat!(id, null, 0) as bigint | number),
    shmdt: (address) => s.shmdt!(address) as number,
    shmctl: (id, cmd, buf) => s.shmctl!(id, cmd, buf) as number,
    errno,
    view: (address, bytes) => ffi.toArrayBuffer(Number(address), 0, bytes),
  });
}

/** The Platform for Bun: flock(2) from the system C library. */
export const bunPlatform: Platform = makeBunPlatform();

export default bunPlatform;
