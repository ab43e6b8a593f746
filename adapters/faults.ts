/**
 * Fault injection through the port: wraps any Platform and calls a hook before each
 * file operation, naming the step (`beforeOpen`, `beforeWrite`, `beforeAppend`,
 * `beforeFsync`, `beforeTruncate`, `beforeRename`, `beforeDirSync`, `beforeUnlink`). The
 * hook may throw (to fail the operation), block (so a test can SIGKILL the process at
 * exactly that point), or return a number of bytes to write before it is called again
 * with `afterPartialWrite` (a torn write). The core has no test hooks of its own.
 *
 * @example
 * ```ts
 * const platform = withFaults(await defaultPlatform(), (step, path) => {
 *   if (step === "beforeFsync" && path.endsWith(".log")) throw new PortError("EIO", "fdatasync", path);
 * });
 * ```
 * @module
 */
import type { FileHandle, Platform } from "../src/port.ts";

/** The named steps a hook sees. */
export type FaultStep =
  | "beforeOpen"
  | "beforeWrite"
  | "beforeAppend"
  | "beforeFsync"
  | "beforeTruncate"
  | "beforeRename"
  | "beforeDirSync"
  | "beforeUnlink"
  | "afterPartialWrite";

/**
 * Called before each step; may throw, block, or (for writes) return a byte count to tear
 * at. Writes also pass the bytes about to be written.
 */
export type FaultHook = (step: FaultStep, path: string, bytes?: number, data?: Uint8Array) => number | void;

function wrapHandle(h: FileHandle, hook: FaultHook): FileHandle {
  const write = (step: FaultStep, data: Uint8Array, position: number) => {
    const tearAt = hook(step, h.path, data.length, data);
    if (typeof tearAt === "number" && tearAt < data.length) {
      h.write(data.subarray(0, tearAt), position);
      hook("afterPartialWrite", h.path, tearAt);
    }
    h.write(data, position);
  };
  return {
    path: h.path,
    read: (buf, position) => h.read(buf, position),
    write: (data, position) => write("beforeWrite", data, position),
    append: (data) => {
      const at = h.size();
      write("beforeAppend", data, at);
      return at;
    },
    truncate: (size) => {
      hook("beforeTruncate", h.path);
      h.truncate(size);
    },
    size: () => h.size(),
    info: () => h.info(),
    sync: () => {
      hook("beforeFsync", h.path);
      h.sync();
    },
    datasync: () => {
      hook("beforeFsync", h.path);
      h.datasync();
    },
    tryLock: (exclusive) => h.tryLock(exclusive),
    ...(h.lockAsync ? { lockAsync: (exclusive: boolean) => h.lockAsync!(exclusive) } : {}),
    unlock: () => h.unlock(),
    close: () => h.close(),
  };
}

/** A Platform that runs `hook` before every file operation of `base`. */
export function withFaults(base: Platform, hook: FaultHook): Platform {
  return {
    runtime: base.runtime,
    capabilities: base.capabilities,
    pid: base.pid,
    // A getter: the base may find its uid lazily (Deno), and only when asked.
    get uid() {
      return base.uid;
    },
    open: (path, options) => {
      hook("beforeOpen", path);
      return wrapHandle(base.open(path, options), hook);
    },
    stat: (path) => base.stat(path),
    lstat: (path) => base.lstat(path),
    readdir: (path) => base.readdir(path),
    mkdir: (path, mode) => base.mkdir(path, mode),
    rename: (from, to) => {
      hook("beforeRename", from);
      base.rename(from, to);
    },
    unlink: (path) => {
      hook("beforeUnlink", path);
      base.unlink(path);
    },
    ...(base.openDirectoryLock
      ? {
        openDirectoryLock: (path: string) => {
          hook("beforeOpen", path);
          return base.openDirectoryLock!(path);
        },
      }
      : {}),
    syncDir: (path) => {
      hook("beforeDirSync", path);
      base.syncDir(path);
    },
    monotonicMs: () => base.monotonicMs(),
    wallClockMs: () => base.wallClockMs(),
    sleep: (ms) => base.sleep(ms),
    ...(base.nextTurn ? { nextTurn: () => base.nextTurn!() } : {}),
    ...(base.pause ? { pause: (ms: number) => base.pause!(ms) } : {}),
    ...(base.cwd ? { cwd: () => base.cwd!() } : {}),
    randomBytes: (buf) => base.randomBytes(buf),
    watchDir: (dir, onChange) => base.watchDir(dir, onChange),
    ...(base.watchFile ? { watchFile: (path: string, onChange: () => void) => base.watchFile!(path, onChange) } : {}),
    ...(base.sharedMemory ? { sharedMemory: base.sharedMemory } : {}),
  };
}
