/**
 * The Deno adapter: Deno's own file APIs and `Deno.FsFile.tryLockSync`, which is
 * flock(2) — the same kernel lock the Node and Bun adapters take. Needs only
 * `--allow-read` and `--allow-write`: no FFI, no subprocesses, no environment.
 *
 * @example
 * ```ts
 * import { open } from "@txtdb/txtdb";
 * const db = await open("./data"); // picks this adapter on Deno
 * ```
 * @module
 */
import { closeSync, constants as fsConstants, fstatSync, openSync, readSync, writeSync } from "node:fs";
import { ELOOP, ENOTREG, PortError } from "../src/port.ts";
import type { FileHandle, FileInfo, LockHandle, OpenOptions, Platform, SharedMemory, WatchHandle } from "../src/port.ts";
import { makeSharedMemory, sysvShmSupported } from "./sysvshm.ts";
import { makeIdentity } from "./statx.ts";
import type { StatxCall } from "./statx.ts";

/** A private cell for `pause` to wait on: nothing ever notifies it, so each wait runs to its timeout. */
const pauseCell = new Int32Array(new SharedArrayBuffer(4));

const ERRNO_BY_CLASS: Record<string, string> = {
  NotFound: "ENOENT",
  AlreadyExists: "EEXIST",
  PermissionDenied: "EACCES",
  NotCapable: "EACCES",
  IsADirectory: "EISDIR",
  NotADirectory: "ENOTDIR",
  Interrupted: "EINTR",
  WouldBlock: "EWOULDBLOCK",
};

function portError(e: unknown, op: string, path: string): PortError {
  const code = (e as { code?: unknown })?.code;
  const name = (e as { name?: unknown })?.name;
  const errno = typeof code === "string" ? code : (typeof name === "string" && ERRNO_BY_CLASS[name]) || "EIO";
  return new PortError(errno, op, path, e);
}

function fileInfo(s: Deno.FileInfo): FileInfo {
  return {
    size: s.size,
    isFile: s.isFile,
    isDirectory: s.isDirectory,
    isSymlink: s.isSymlink,
    // Null only on Windows, which txtdb does not support.
    ino: s.ino ?? 0,
    dev: s.dev,
    uid: s.uid ?? -1,
    mode: (s.mode ?? 0) & 0o7777,
  };
}

function kindOf(s: Deno.FileInfo): string {
  if (s.isSymlink) return "a symlink: txtdb never follows one to a store file";
  if (s.isDirectory) return "a directory, not a regular file";
  if (s.isFifo) return "a FIFO, not a regular file";
  if (s.isSocket) return "a socket, not a regular file";
  if (s.isCharDevice || s.isBlockDevice) return "a device, not a regular file";
  return "not a regular file";
}

function lstatOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw portError(e, "lstat", path);
  }
}

/**
 * Opens a regular file without following a final symlink and without blocking on a FIFO.
 * Deno.openSync has neither O_NOFOLLOW nor O_NONBLOCK, so:
 * 1. A file to create is first created with O_CREAT|O_EXCL (`createNew`), which never
 *    follows a symlink, not even a dangling one. Only if it exists do we go on.
 * 2. lstat refuses a symlink, FIFO, socket, device or directory before anything opens it.
 * 3. After the open, fstat must show the very inode lstat saw, still a regular file.
 * Residual race (no fix without those flags): if someone swaps the path between 2 and 3,
 * the open itself follows their symlink or, for a read-only open, waits on their FIFO
 * until a writer appears; step 3 then refuses what it opened, but the wait has happened.
 * Nothing is written before step 3, so a swap can delay us, never make us write elsewhere.
 */
function openRegular(path: string, options: OpenOptions): Deno.FsFile {
  for (let attempt = 1; ; attempt++) {
    try {
      return openRegularOnce(path, options);
    } catch (e) {
      if (!(e instanceof PortError) || attempt >= 8) throw e;
      // Removed between the exclusive create and the open (a lock file a cleaner deleted):
      // create it after all, a few times at most, as the Node adapter does.
      if (e.errno === "ENOENT" && options.create && !options.exclusive) continue;
      // Another regular file at the path by the time it was opened (deleted and made again
      // by another process between the lstat and the open): looked at afresh, a symlink or
      // FIFO put there is still refused by the next attempt's lstat.
      if (e instanceof ReplacedWhileOpening) continue;
      throw e;
    }
  }
}

/** The path named another regular file when opened than when lstat looked (see openRegular). */
class ReplacedWhileOpening extends PortError {}

/** The directory at `path` (links followed), opened read-only; errors are `op`'s. */
function openDirectory(path: string, op: string): Deno.FsFile {
  try {
    // Opening a FIFO put where the directory was would wait forever: look first.
    if (!Deno.statSync(path).isDirectory) throw new PortError("ENOTDIR", op, path);
    return Deno.openSync(path, { read: true });
  } catch (e) {
    if (e instanceof PortError) throw e;
    throw portError(e, op, path);
  }
}

function openRegularOnce(path: string, options: OpenOptions): Deno.FsFile {
  const mode = options.mode ?? 0o600;
  if (options.create) {
    let created: Deno.FsFile | undefined;
    try {
      created = Deno.openSync(path, { read: true, write: true, createNew: true, mode });
    } catch (e) {
      if (options.exclusive || !(e instanceof Deno.errors.AlreadyExists)) throw portError(e, "open", path);
    }
    if (created) return withExactMode(created, path, mode);
  }
  const before = lstatOrUndefined(path);
  if (!before) throw new PortError("ENOENT", "open", path);
  if (!before.isFile) throw new PortError(before.isSymlink ? ELOOP : ENOTREG, "open", path, undefined, kindOf(before));
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true, write: !options.readOnly });
  } catch (e) {
    throw portError(e, "open", path);
  }
  let after: Deno.FileInfo;
  try {
    after = file.statSync();
  } catch (e) {
    file.close();
    throw portError(e, "fstat", path);
  }
  if (!after.isFile || after.ino !== before.ino || after.dev !== before.dev) {
    file.close();
    if (after.isFile) throw new ReplacedWhileOpening(ELOOP, "open", path, undefined, "replaced while being opened (a symlink?)");
    throw new PortError(ENOTREG, "open", path, undefined, kindOf(after));
  }
  return file;
}

/**
 * Gives a file just created at `path` exactly `mode`, which the umask reduced (0o660 under
 * umask 022 gives 0o640). Deno has no fchmod: chmod of the path, once lstat shows it is
 * still the very file open (a final symlink put there meanwhile is not followed into).
 */
function withExactMode(file: Deno.FsFile, path: string, mode: number): Deno.FsFile {
  try {
    const mine = file.statSync();
    if (((mine.mode ?? mode) & 0o7777) === mode) return file;
    const now = lstatOrUndefined(path);
    if (!now || !now.isFile || now.ino !== mine.ino || now.dev !== mine.dev) throw new PortError(ELOOP, "chmod", path, undefined, "replaced while being created");
    Deno.chmodSync(path, mode);
    return file;
  } catch (e) {
    file.close();
    throw e instanceof PortError ? e : portError(e, "chmod", path);
  }
}

/**
 * Creates `path` and its missing parents, each made here with exactly `mode` (the umask
 * reduces the mode mkdir gives); directories already there keep theirs.
 */
function mkdirExact(path: string, mode: number): void {
  const missing: string[] = [];
  for (let dir = path.replace(/\/+$/, "") || "/"; dir !== "" && dir !== "/" && dir !== "."; dir = dir.slice(0, Math.max(0, dir.lastIndexOf("/")))) {
    if (lstatOrUndefined(dir)) break;
    missing.push(dir);
  }
  Deno.mkdirSync(path, { recursive: true, mode });
  for (const dir of missing.reverse()) {
    const info = Deno.lstatSync(dir);
    if (info.isDirectory && ((info.mode ?? mode) & 0o7777) !== mode) Deno.chmodSync(dir, mode);
  }
}

/**
 * This process's effective uid, found without asking for more than --allow-read and
 * --allow-write: Deno.uid() needs --allow-sys (used when granted: querying never prompts),
 * and /proc/self needs --allow-all, so otherwise the owner of a fresh temporary file,
 * which is by definition us. Undefined when neither works (e.g. --allow-write scoped to
 * the store): the owner check of a store directory is then skipped.
 */
function effectiveUid(): number | undefined {
  try {
    if (Deno.permissions.querySync({ name: "sys", kind: "uid" }).state === "granted") return Deno.uid() ?? undefined;
  } catch {
    // an older Deno without querySync or the "uid" kind: try the file
  }
  let path: string | undefined;
  try {
    path = Deno.makeTempFileSync({ prefix: "txtdb-uid-" });
    return Deno.lstatSync(path).uid ?? undefined;
  } catch {
    return undefined;
  } finally {
    if (path !== undefined) {
      try {
        Deno.removeSync(path);
      } catch {
        // a temporary file left behind is harmless
      }
    }
  }
}

let uidCache: { uid: number | undefined } | undefined;

/** The positioned descriptor of a DenoFile is not opened yet (see DenoFile.#positioned). */
const POSITIONED_UNTRIED = -1;
/** It could not be opened, or the path named another file by then: seek, then read or write. */
const POSITIONED_NONE = -2;

class DenoFile implements FileHandle {
  readonly path: string;
  readonly #file: Deno.FsFile;
  readonly #writable: boolean;
  /**
   * A second descriptor of the same file, from node:fs, for pread(2)/pwrite(2): Deno.FsFile
   * reads and writes at its file position only, so each positioned read or write costs a
   * seek first (two system calls, ~1.3 µs more here; a commit makes about nine, and every
   * read on `db` probes the frontier file with one). The FsFile stays for everything else
   * (flock above all: node:fs has no lock call). Opened on the first read or write, by path,
   * and used only if fstat shows the very inode the FsFile has open; else (the path was
   * removed or replaced meanwhile) this handle seeks, as before.
   */
  #fd = POSITIONED_UNTRIED;
  #closed = false;

  constructor(path: string, file: Deno.FsFile, writable = false) {
    this.path = path;
    this.#file = file;
    this.#writable = writable;
  }

  #positioned(): number {
    if (this.#fd !== POSITIONED_UNTRIED) return this.#fd;
    this.#fd = POSITIONED_NONE;
    let fd: number | undefined;
    try {
      // No final symlink followed, no wait on a FIFO put at the path meanwhile.
      fd = openSync(this.path, (this.#writable ? fsConstants.O_RDWR : fsConstants.O_RDONLY) | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
      const theirs = fstatSync(fd);
      const mine = this.#file.statSync();
      if (theirs.isFile() && theirs.ino === mine.ino && theirs.dev === mine.dev) {
        this.#fd = fd;
        fd = undefined;
      }
    } catch {
      // left to the seeking path, which reports its own errors
    } finally {
      if (fd !== undefined) {
        try {
          closeSync(fd);
        } catch {
          // nothing was done through it
        }
      }
    }
    return this.#fd;
  }

  read(buf: Uint8Array, position: number): number {
    try {
      const fd = this.#positioned();
      let done = 0;
      if (fd >= 0) {
        while (done < buf.length) {
          const n = readSync(fd, buf, done, buf.length - done, position + done);
          if (n === 0) break;
          done += n;
        }
        return done;
      }
      this.#file.seekSync(position, Deno.SeekMode.Start);
      while (done < buf.length) {
        const n = this.#file.readSync(buf.subarray(done));
        if (n === null || n === 0) break;
        done += n;
      }
      return done;
    } catch (e) {
      throw portError(e, "read", this.path);
    }
  }

  write(data: Uint8Array, position: number): void {
    try {
      const fd = this.#positioned();
      let done = 0;
      if (fd >= 0) {
        while (done < data.length) done += writeSync(fd, data, done, data.length - done, position + done);
        return;
      }
      this.#file.seekSync(position, Deno.SeekMode.Start);
      while (done < data.length) done += this.#file.writeSync(data.subarray(done));
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
      this.#file.truncateSync(size);
    } catch (e) {
      throw portError(e, "truncate", this.path);
    }
  }

  size(): number {
    try {
      return this.#file.statSync().size;
    } catch (e) {
      throw portError(e, "fstat", this.path);
    }
  }

  info(): FileInfo {
    try {
      return fileInfo(this.#file.statSync());
    } catch (e) {
      throw portError(e, "fstat", this.path);
    }
  }

  sync(): void {
    try {
      this.#file.syncSync();
    } catch (e) {
      throw portError(e, "fsync", this.path);
    }
  }

  datasync(): void {
    try {
      this.#file.syncDataSync();
    } catch (e) {
      throw portError(e, "fdatasync", this.path);
    }
  }

  tryLock(exclusive: boolean): boolean {
    try {
      return this.#file.tryLockSync(exclusive);
    } catch (e) {
      throw portError(e, "flock", this.path);
    }
  }

  async lockAsync(exclusive: boolean): Promise<void> {
    try {
      await this.#file.lock(exclusive); // Deno waits on its blocking-task thread
    } catch (e) {
      throw portError(e, "flock", this.path);
    }
  }

  unlock(): void {
    try {
      this.#file.unlockSync();
    } catch (e) {
      throw portError(e, "flock(LOCK_UN)", this.path);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      if (this.#fd >= 0) closeSync(this.#fd);
    } catch {
      // the FsFile's close below reports the file's trouble, if any
    }
    try {
      this.#file.close();
    } catch (e) {
      throw portError(e, "close", this.path);
    }
  }
}

/** The Platform for Deno. */
export const denoPlatform: Platform = {
  runtime: "deno",
  pid: Deno.pid,
  // Found on first use: it may create a temporary file, which a process that never asks
  // should not pay for.
  get uid(): number | undefined {
    uidCache ??= { uid: effectiveUid() };
    return uidCache.uid;
  },
  capabilities: { fileEvents: true, sharedWithOtherProcesses: true },
  open(path: string, options: OpenOptions = {}): FileHandle {
    return new DenoFile(path, openRegular(path, options), !options.readOnly);
  },
  stat(path: string): FileInfo | undefined {
    try {
      return fileInfo(Deno.statSync(path));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw portError(e, "stat", path);
    }
  },
  lstat(path: string): FileInfo | undefined {
    const s = lstatOrUndefined(path);
    return s && fileInfo(s);
  },
  readdir(path: string): string[] {
    try {
      return [...Deno.readDirSync(path)].map((e) => e.name);
    } catch (e) {
      throw portError(e, "readdir", path);
    }
  },
  mkdir(path: string, mode = 0o700): void {
    try {
      mkdirExact(path, mode);
    } catch (e) {
      throw portError(e, "mkdir", path);
    }
  },
  rename(from: string, to: string): void {
    try {
      Deno.renameSync(from, to);
    } catch (e) {
      throw portError(e, "rename", from);
    }
  },
  unlink(path: string): void {
    try {
      Deno.removeSync(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw portError(e, "unlink", path);
    }
  },
  openDirectoryLock(path: string): LockHandle {
    return new DenoFile(path, openDirectory(path, "open(dir)")); // only its lock calls are reachable
  },
  syncDir(path: string): void {
    const dir = openDirectory(path, "fsync(dir)");
    try {
      dir.syncSync();
    } catch (e) {
      throw portError(e, "fsync(dir)", path);
    } finally {
      dir.close();
    }
  },
  monotonicMs: () => performance.now(),
  wallClockMs: () => Date.now(),
  sleep: (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)),
  nextTurn: () => new Promise<void>((resolve) => setImmediate(resolve)),
  pause: (ms: number) => void Atomics.wait(pauseCell, 0, 0, ms),
  randomBytes: (buf: Uint8Array) => void crypto.getRandomValues(buf),
  cwd: () => Deno.cwd(),
  watchDir: (dir: string, onChange: () => void) => watchPath(dir, onChange),
  watchFile: (path: string, onChange: () => void) => watchPath(path, onChange),
};

// With --allow-ffi (never asked for: querying does not prompt), System V shared memory for
// the frontier mirror, as on Node and Bun; without it, reads probe the frontier file.
const denoShm = denoSharedMemory();
if (denoShm) denoPlatform.sharedMemory = denoShm;
// With --allow-ffi too, statx(2) for the identity checks of every commit (statx.ts says why).
const denoStatx = denoStatxCall();
if (denoStatx) denoPlatform.identity = makeIdentity(denoStatx, (path) => denoPlatform.lstat(path));

/** statx(2) through Deno's FFI on Linux, where it is granted; else undefined. */
function denoStatxCall(): StatxCall | undefined {
  try {
    if (Deno.build.os !== "linux" || Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return undefined;
    const lib = Deno.dlopen("libc.so.6", {
      statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
    } as const);
    return (dirfd, path, flags, mask, buf) => lib.symbols.statx(dirfd, path as Uint8Array<ArrayBuffer>, flags, mask, buf as Uint8Array<ArrayBuffer>);
  } catch {
    return undefined;
  }
}

/** shmget/shmat/shmctl/shmdt through Deno's FFI, where it is granted and the layout known (sysvshm.ts). */
function denoSharedMemory(): SharedMemory | undefined {
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return undefined;
    if (!sysvShmSupported(Deno.build.os, Deno.build.arch === "x86_64" ? "x64" : Deno.build.arch === "aarch64" ? "arm64" : Deno.build.arch)) return undefined;
    const lib = Deno.dlopen("libc.so.6", {
      shmget: { parameters: ["i32", "usize", "i32"], result: "i32" },
      shmat: { parameters: ["i32", "pointer", "i32"], result: "pointer" },
      shmdt: { parameters: ["pointer"], result: "i32" },
      shmctl: { parameters: ["i32", "i32", "buffer"], result: "i32" },
      __errno_location: { parameters: [], result: "pointer" },
    } as const);
    const s = lib.symbols;
    const pointer = (address: bigint) => Deno.UnsafePointer.create(address);
    return makeSharedMemory({
      shmget: (key, bytes, flags) => s.shmget(key, BigInt(bytes), flags),
      shmat: (id) => {
        const p = s.shmat(id, null, 0);
        return p === null ? -1n : BigInt(Deno.UnsafePointer.value(p));
      },
      shmdt: (address) => s.shmdt(pointer(address)),
      shmctl: (id, cmd, buf) => s.shmctl(id, cmd, buf),
      errno: () => {
        const at = s.__errno_location();
        return at === null ? 0 : new Deno.UnsafePointerView(at).getInt32();
      },
      view: (address, bytes) => Deno.UnsafePointerView.getArrayBuffer(pointer(address)!, bytes),
    });
  } catch {
    return undefined;
  }
}

/** Deno.watchFs of a directory or a file; undefined if it cannot start. */
function watchPath(path: string, onChange: () => void): WatchHandle | undefined {
  let watcher: Deno.FsWatcher;
  try {
    watcher = Deno.watchFs(path, { recursive: false });
  } catch {
    return undefined;
  }
  // File events never keep the process alive, as on Node (`persistent: false`): the core
  // keeps it alive while a consumer waits (watch.ts). Deno 2's unref() lets go of the one
  // poll in flight only, so each poll is let go as it starts.
  const unref = (watcher as { unref?: () => void }).unref?.bind(watcher);
  const events = watcher[Symbol.asyncIterator]();
  void (async () => {
    try {
      for (;;) {
        const event = events.next();
        unref?.();
        if ((await event).done) break;
        onChange();
      }
    } catch {
      // closed or broken: the core's polling fallback covers it
    }
  })();
  return { close: () => watcher.close() };
}

export default denoPlatform;
