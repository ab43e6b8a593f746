/**
 * The file-system half shared by the Node and Bun adapters: both runtimes implement
 * `node:fs` synchronously. Only the flock(2) call differs (koffi on Node, bun:ffi on
 * Bun), so each adapter passes its own.
 *
 * @module
 */
import * as fs from "node:fs";
import * as nodePath from "node:path";
import process from "node:process";
import { ELOOP, ENOTREG, PortError } from "../src/port.ts";
import type { FileHandle, FileInfo, LockHandle, OpenOptions, Platform, RuntimeName, WatchHandle } from "../src/port.ts";
import { TxtDbError } from "../src/errors.ts";

/** The C library flock(2) is taken from by default: glibc's on Linux, the system's on macOS. */
export const DEFAULT_LIBC: string = process.platform === "darwin" ? "libc.dylib" : "libc.so.6";

/**
 * Loads the C library `name` with the runtime's FFI (`load`), or fails with UNSUPPORTED
 * saying what txtdb tried, on what system, and what to do: the FFI's own message (koffi's,
 * bun:ffi's) names neither txtdb nor why a C library is needed.
 */
export function loadLibc<T>(runtime: "Node" | "Bun", name: string, load: (name: string) => T): T {
  try {
    return load(name);
  } catch (e) {
    const cause = e instanceof Error ? e.message : String(e);
    const factory = runtime === "Node" ? "makeNodePlatform" : "makeBunPlatform";
    throw new TxtDbError(
      "UNSUPPORTED",
      `txtdb could not load the C library "${name}" on ${runtime} (${process.platform} ${process.arch}): ${cause}. ` +
        "txtdb's Node and Bun adapters call flock(2) in the system C library; they are tested on Linux with glibc and expected to work on macOS, " +
        "and do not support Windows or musl-based Linux (Alpine) yet. Run txtdb on a glibc-based Linux or on macOS, " +
        `or give the adapter a C library that has flock(2): open(dir, { adapter: ${factory}("<library>") }) with ${factory} from "txtdb/adapters/${runtime.toLowerCase()}"`,
      { cause: e },
    );
  }
}

/** flock(2) on a file descriptor: returns 0, or the errno on failure. */
export type FlockCall = (fd: number, operation: number) => number;

/** flock(2) on a helper thread (blocking there): resolves with 0, or the errno. */
export type FlockAsyncCall = (fd: number, operation: number) => Promise<number>;

/** flock(2) operations (Linux and macOS agree on these values). */
export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;
/** EWOULDBLOCK/EAGAIN: 11 on Linux, 35 on macOS. */
export const EWOULDBLOCK: readonly number[] = [11, 35];
const EINTR = 4;

/** A private cell for `pause` to wait on: nothing ever notifies it, so each wait runs to its timeout. */
const pauseCell = new Int32Array(new SharedArrayBuffer(4));

function portError(e: unknown, op: string, path: string): PortError {
  const code = (e as { code?: unknown })?.code;
  return new PortError(typeof code === "string" ? code : "EIO", op, path, e);
}

function fileInfo(s: fs.Stats): FileInfo {
  return {
    size: s.size,
    isFile: s.isFile(),
    isDirectory: s.isDirectory(),
    isSymlink: s.isSymbolicLink(),
    ino: s.ino,
    dev: s.dev,
    uid: s.uid,
    mode: s.mode & 0o7777,
  };
}

/** What a non-regular file is, for messages. */
function kindOf(s: fs.Stats): string {
  if (s.isDirectory()) return "a directory";
  if (s.isFIFO()) return "a FIFO";
  if (s.isSocket()) return "a socket";
  if (s.isCharacterDevice() || s.isBlockDevice()) return "a device";
  return "not a regular file";
}

/**
 * Flags on every open: O_NOFOLLOW refuses a symlink planted where a store file belongs
 * (ELOOP) instead of writing through it; O_NONBLOCK makes opening a FIFO return at once
 * instead of waiting for a peer forever (it is then refused after fstat), and changes
 * nothing for regular files; O_NOCTTY keeps a terminal device from becoming ours.
 */
const SAFE_OPEN_FLAGS = fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY;

class NodeFsFile implements FileHandle {
  readonly path: string;
  readonly #fd: number;
  readonly #flock: FlockCall;
  #closed = false;
  /** Set where the runtime can call flock off the event loop's thread (Node, via koffi). */
  lockAsync?: (exclusive: boolean) => Promise<void>;

  constructor(path: string, fd: number, flock: FlockCall, flockAsync?: FlockAsyncCall) {
    this.path = path;
    this.#fd = fd;
    this.#flock = flock;
    if (flockAsync) {
      this.lockAsync = async (exclusive) => {
        for (;;) {
          const err = await flockAsync(this.#fd, exclusive ? LOCK_EX : LOCK_SH);
          if (err === 0) return;
          if (err !== EINTR) throw new PortError(`errno ${err}`, "flock", this.path);
        }
      };
    }
  }

  read(buf: Uint8Array, position: number): number {
    try {
      let done = 0;
      while (done < buf.length) {
        const n = fs.readSync(this.#fd, buf, done, buf.length - done, position + done);
        if (n === 0) break;
        done += n;
      }
      return done;
    } catch (e) {
      throw portError(e, "read", this.path);
    }
  }

  write(data: Uint8Array, position: number): void {
    try {
      let done = 0;
      while (done < data.length) done += fs.writeSync(this.#fd, data, done, data.length - done, position + done);
    } catch (e) {
      throw portError(e, "write", this.path);
    }
  }

  append(data: Uint8Array): number {
    const at = this.size();
    this.write(data, at);
    return at;
  }

  truncate(size: number): void {
    try {
      fs.ftruncateSync(this.#fd, size);
    } catch (e) {
      throw portError(e, "truncate", this.path);
    }
  }

  size(): number {
    try {
      return fs.fstatSync(this.#fd).size;
    } catch (e) {
      throw portError(e, "fstat", this.path);
    }
  }

  info(): FileInfo {
    try {
      return fileInfo(fs.fstatSync(this.#fd));
    } catch (e) {
      throw portError(e, "fstat", this.path);
    }
  }

  sync(): void {
    try {
      fs.fsyncSync(this.#fd);
    } catch (e) {
      throw portError(e, "fsync", this.path);
    }
  }

  datasync(): void {
    try {
      fs.fdatasyncSync(this.#fd);
    } catch (e) {
      throw portError(e, "fdatasync", this.path);
    }
  }

  tryLock(exclusive: boolean): boolean {
    for (;;) {
      const err = this.#flock(this.#fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB);
      if (err === 0) return true;
      if (EWOULDBLOCK.includes(err)) return false;
      if (err !== EINTR) throw new PortError(`errno ${err}`, "flock", this.path);
    }
  }

  unlock(): void {
    const err = this.#flock(this.#fd, LOCK_UN);
    if (err !== 0) throw new PortError(`errno ${err}`, "flock(LOCK_UN)", this.path);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      fs.closeSync(this.#fd);
    } catch (e) {
      throw portError(e, "close", this.path);
    }
  }
}

/**
 * Gives the directory at `path` exactly `mode`, through a descriptor opened without
 * following a final symlink, so that a link put there meanwhile cannot redirect the chmod.
 */
function chmodDirectory(path: string, mode: number): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
    if ((fs.fstatSync(fd).mode & 0o7777) !== mode) fs.fchmodSync(fd, mode);
  } catch (e) {
    throw portError(e, "chmod", path);
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * A descriptor of the directory at `path` (links followed), read-only; O_DIRECTORY: a FIFO
 * put where the directory was is refused instead of waited on. Errors are `op`'s.
 */
function openDirectory(path: string, op: string): number {
  try {
    return fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  } catch (e) {
    throw portError(e, op, path);
  }
}

/** Builds a Platform on node:fs with the given flock call. */
/** fs.watch of a directory or a file, never keeping the process alive; undefined if it cannot start. */
function watchPath(path: string, onChange: () => void): WatchHandle | undefined {
  try {
    const w = fs.watch(path, { persistent: false }, () => onChange());
    w.on("error", () => {}); // the core's polling fallback covers a broken watcher
    return { close: () => w.close() };
  } catch {
    return undefined;
  }
}

export function makeNodeFsPlatform(runtime: RuntimeName, flock: FlockCall, pid: number, flockAsync?: FlockAsyncCall): Platform {
  const platform: Platform = {
    runtime,
    pid,
    uid: typeof process.geteuid === "function" ? process.geteuid() : undefined,
    capabilities: { fileEvents: true, sharedWithOtherProcesses: true },
    open(path: string, options: OpenOptions = {}): FileHandle {
      const mode = options.mode ?? 0o600;
      const flags = (options.readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR) | SAFE_OPEN_FLAGS;
      const fail = (e: unknown): never => {
        const code = (e as { code?: unknown })?.code;
        // Linux says ELOOP for a final symlink under O_NOFOLLOW, FreeBSD EMLINK; a socket
        // cannot be opened at all (ENXIO); a directory cannot be opened for writing (EISDIR).
        if (code === "ELOOP" || code === "EMLINK") throw new PortError(ELOOP, "open", path, e, "a symlink: txtdb never follows one to a store file");
        if (code === "ENXIO" || code === "EISDIR") throw new PortError(ENOTREG, "open", path, e, "not a regular file");
        throw portError(e, "open", path);
      };
      // A file to create is created exclusively first, so that it is known to be ours to
      // give `mode` (an existing file keeps the mode it has).
      let fd: number | undefined;
      let created = false;
      for (let attempt = 1; fd === undefined; attempt++) {
        try {
          if (options.create) {
            try {
              fd = fs.openSync(path, flags | fs.constants.O_CREAT | fs.constants.O_EXCL, mode);
              created = true;
              break;
            } catch (e) {
              if (options.exclusive || (e as { code?: unknown })?.code !== "EEXIST") throw e;
            }
          }
          fd = fs.openSync(path, flags);
        } catch (e) {
          // Removed between the two opens: create it after all (a few times at most).
          if (!options.create || options.exclusive || (e as { code?: unknown })?.code !== "ENOENT" || attempt >= 5) fail(e);
        }
      }
      let s: fs.Stats;
      let op = "fstat";
      try {
        s = fs.fstatSync(fd);
        // The umask took bits off the mode asked for (0o660 under umask 022 gives 0o640).
        op = "fchmod";
        if (created && (s.mode & 0o7777) !== mode) fs.fchmodSync(fd, mode);
      } catch (e) {
        fs.closeSync(fd);
        throw portError(e, op, path);
      }
      if (!s.isFile()) {
        fs.closeSync(fd);
        throw new PortError(ENOTREG, "open", path, undefined, `${kindOf(s)}, not a regular file`);
      }
      return new NodeFsFile(path, fd, flock, flockAsync);
    },
    stat(path: string): FileInfo | undefined {
      try {
        const s = fs.statSync(path, { throwIfNoEntry: false });
        return s && fileInfo(s);
      } catch (e) {
        throw portError(e, "stat", path);
      }
    },
    lstat(path: string): FileInfo | undefined {
      try {
        const s = fs.lstatSync(path, { throwIfNoEntry: false });
        return s && fileInfo(s);
      } catch (e) {
        throw portError(e, "lstat", path);
      }
    },
    readdir(path: string): string[] {
      try {
        return fs.readdirSync(path);
      } catch (e) {
        throw portError(e, "readdir", path);
      }
    },
    mkdir(path: string, mode = 0o700): void {
      let first: string | undefined;
      try {
        first = fs.mkdirSync(path, { recursive: true, mode });
      } catch (e) {
        throw portError(e, "mkdir", path);
      }
      if (first === undefined) return; // it was there: its mode is left as it is
      // The umask took bits off `mode`: each directory made here gets it exactly, from the
      // first one made down to `path`.
      const top = nodePath.resolve(first);
      for (let dir = nodePath.resolve(path); ; dir = nodePath.dirname(dir)) {
        chmodDirectory(dir, mode);
        if (dir === top || dir === nodePath.dirname(dir)) break;
      }
    },
    rename(from: string, to: string): void {
      try {
        fs.renameSync(from, to);
      } catch (e) {
        throw portError(e, "rename", from);
      }
    },
    unlink(path: string): void {
      try {
        fs.unlinkSync(path);
      } catch (e) {
        if ((e as { code?: unknown }).code === "ENOENT") return;
        throw portError(e, "unlink", path);
      }
    },
    openDirectoryLock(path: string): LockHandle {
      return new NodeFsFile(path, openDirectory(path, "open(dir)"), flock, flockAsync); // only its lock calls are reachable
    },
    syncDir(path: string): void {
      const fd = openDirectory(path, "fsync(dir)");
      try {
        fs.fsyncSync(fd);
      } catch (e) {
        throw portError(e, "fsync(dir)", path);
      } finally {
        fs.closeSync(fd);
      }
    },
    monotonicMs: () => performance.now(),
    wallClockMs: () => Date.now(),
    sleep: (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)),
    nextTurn: () => new Promise<void>((resolve) => setImmediate(resolve)),
    pause: (ms: number) => void Atomics.wait(pauseCell, 0, 0, ms),
    randomBytes: (buf: Uint8Array) => void crypto.getRandomValues(buf),
    cwd: () => process.cwd(),
    watchDir: (dir: string, onChange: () => void) => watchPath(dir, onChange),
    watchFile: (path: string, onChange: () => void) => watchPath(path, onChange),
  };
  return platform;
}
