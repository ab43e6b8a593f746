/**
 * The Platform port: everything txtdb needs from a runtime, as small synchronous
 * interfaces plus a few asynchronous ones. Each adapter (Node, Deno, Bun, and the
 * simulated platform for crash tests) implements it; the core depends on nothing else.
 *
 * Why synchronous file calls: on the machines we measured, handing a call to another
 * thread (libuv's pool behind async `fs`) costs ~25–30 µs per hop, while a small pread
 * or append costs 1–3 µs. Reads of the commit log and the durable-frontier probe sit on
 * the hottest paths, so the port is synchronous for file I/O. Group commit, not async
 * fsync, is what lets many transactions share one fsync.
 *
 * Errors: adapters translate runtime errors into {@link PortError} with a POSIX-style
 * `errno` name (`ENOENT`, `EEXIST`, `ENOSPC`, `EIO`, ...) and keep the original as `cause`.
 *
 * Files other users can touch: a store directory may be writable by someone else, who can
 * put a symlink, a FIFO, a socket or a device where a store file belongs, or truncate a
 * file under us. So `open()` never follows a final symlink ({@link ELOOP}), never blocks
 * on and never returns anything but a regular file ({@link ENOTREG}), and the port has no
 * shared memory mapping of files: a mapped page of a file someone else truncates kills the
 * process with SIGBUS, which no JavaScript code can catch.
 *
 * @module
 */

/**
 * The `errno` of a {@link PortError} from `open()` when the path names something other
 * than a regular file (a directory, FIFO, socket or device). Not a POSIX name: POSIX has
 * no single one, and the core needs one stable name to turn into a clear error.
 */
export const ENOTREG = "ENOTREG";

/** The `errno` of a {@link PortError} from `open()` when the path's last component is a symlink. */
export const ELOOP = "ELOOP";

/**
 * What to do about a failure that says nothing of the store itself, by errno: every IO
 * error built from a PortError carries its message, so the hint reaches the user whatever
 * operation met it (a table opened at a manifest switch, a lease, a segment roll-over).
 */
const ERRNO_HINTS: Record<string, string> = {
  EMFILE: "this process has too many files open. Each open store keeps one descriptor per table (tables hold up to 32 MiB each) and per live log segment, plus a few lock files; raise the limit on open files (ulimit -n, LimitNOFILE) or close other files, then try again",
  ENFILE: "the system's table of open files is full; close files in other processes or raise fs.file-max, then try again",
  ENOSPC: "the file system is full; free space on it, then try again",
  EDQUOT: "this user's disk quota is exhausted; free space or raise the quota, then try again",
  EROFS: "the file system is mounted read-only; a write needs it remounted writable (to only read the store, open it with readOnly: true, as txtdb's read commands do)",
};

/** An OS-level failure surfaced by an adapter, with the runtime's error as `cause`. */
export class PortError extends Error {
  /** POSIX-style error name, e.g. `ENOENT`. */
  readonly errno: string;
  /** The path the failed operation was about. */
  readonly path: string;
  /** `detail`, when given, is appended to the message (e.g. what the path turned out to be). */
  constructor(errno: string, op: string, path: string, cause?: unknown, detail?: string) {
    const hint = ERRNO_HINTS[errno];
    super(`${op} failed on "${path}": ${errno}${detail ? ` (${detail})` : ""}${hint ? `: ${hint}` : ""}`, cause === undefined ? undefined : { cause });
    this.name = "PortError";
    this.errno = errno;
    this.path = path;
  }
}

/**
 * How to open a file. Whatever the options, `open()`:
 * - refuses a path whose last component is a symlink, with errno {@link ELOOP} (O_NOFOLLOW;
 *   links earlier in the path are followed: the store directory may sit behind one);
 * - refuses, without blocking, anything that is not a regular file — directory, FIFO,
 *   socket, device — with errno {@link ENOTREG} (O_NONBLOCK, then fstat);
 * - with `create` and `exclusive`, creates a new file or fails with `EEXIST`, even when
 *   the path is a dangling symlink (O_CREAT|O_EXCL never follows one). The core uses it
 *   wherever it means to create a fresh file.
 */
export interface OpenOptions {
  /** Create the file if it does not exist (with `mode`). */
  create?: boolean;
  /** Fail with `EEXIST` if it exists (with `create`). */
  exclusive?: boolean;
  /** Open read-only (no writes, no truncate). */
  readOnly?: boolean;
  /**
   * Permission bits for a created file; owner-only (0o600) by default. A file `open()`
   * creates gets exactly these (the umask does not reduce them: 0o660 must stay readable to
   * the group under umask 022); one already there keeps its own.
   */
  mode?: number;
}

/**
 * What can be locked with flock(2): an open file ({@link FileHandle}), or a directory opened
 * only to be locked ({@link Platform.openDirectoryLock}).
 */
export interface LockHandle {
  /**
   * flock(2) without waiting: true if taken, false if another open file description holds
   * a conflicting lock. flock belongs to the open file description, so two handles on one
   * file in the same process exclude each other.
   */
  tryLock(exclusive: boolean): boolean;
  /**
   * flock(2), waiting on a helper thread: resolves once granted, so the event loop goes on
   * and the waiter is woken by the kernel the moment the holder releases (no polling). A
   * wait cannot be cancelled; a caller that no longer wants the lock releases it when it
   * comes. Optional: where absent (Bun's FFI has no off-thread calls, the simulated
   * platform), callers poll {@link tryLock}.
   */
  lockAsync?(exclusive: boolean): Promise<void>;
  /** Releases this handle's flock. */
  unlock(): void;
  /** Closes the handle (and so releases its lock). */
  close(): void;
}

/** One open file. Positions and sizes are byte offsets. */
export interface FileHandle extends LockHandle {
  /** The path this handle was opened with. */
  readonly path: string;
  /** Reads up to `buf.length` bytes at `position`; returns how many were read (0 at EOF). */
  read(buf: Uint8Array, position: number): number;
  /** Writes all of `data` at `position`. */
  write(data: Uint8Array, position: number): void;
  /** Writes all of `data` at the current end of the file; returns the offset it started at. */
  append(data: Uint8Array): number;
  /** Cuts or extends the file to `size` bytes. */
  truncate(size: number): void;
  /** The file's current size in bytes. */
  size(): number;
  /** fstat(2) of this open file: what it is now, whatever its path names since. */
  info(): FileInfo;
  /** fsync(2): data and metadata reach stable storage. */
  sync(): void;
  /** fdatasync(2): data (and the size) reach stable storage. */
  datasync(): void;
}

/**
 * What a path (or an open file) is. A FIFO, socket or device has all three `is…` false.
 *
 * @example
 * ```ts
 * const dir = platform.stat("./data");
 * if (dir && platform.uid !== undefined && dir.uid !== platform.uid) console.warn("owned by someone else");
 * ```
 */
export interface FileInfo {
  /** Size in bytes. */
  size: number;
  /** A regular file. */
  isFile: boolean;
  /** A directory. */
  isDirectory: boolean;
  /** A symbolic link itself: only `lstat` can say so, since `stat` follows links. */
  isSymlink: boolean;
  /** Inode number; with `dev`, it names one file however many paths lead to it. */
  ino: number;
  /** The device the file lives on. */
  dev: number;
  /** The owner's user id. */
  uid: number;
  /** Permission bits only (`st_mode & 0o7777`), not the file type. */
  mode: number;
}

/** Which file a path names: {@link Platform.identity}. */
export interface FileIdentity {
  /** A regular file (a final symlink is not followed: it is not one). */
  isFile: boolean;
  /** Inode number. */
  ino: number;
  /** The device, encoded as `lstat` encodes it (so the two compare). */
  dev: number;
}

/** A subscription to change notifications; `close()` ends it. */
export interface WatchHandle {
  /** Ends the subscription; no callback runs after it returns. */
  close(): void;
}

/** What an adapter can do, declared so the core can choose (e.g. polling vs events). */
export interface Capabilities {
  /** Change notification from the OS (inotify); otherwise the core polls. */
  fileEvents: boolean;
  /** Files live on a real filesystem shared with other OS processes. */
  sharedWithOtherProcesses: boolean;
}

/**
 * System V shared memory (shmget(2), shmat(2), shmctl(2)): memory that every process of the
 * same user attaching one segment shares, with no file behind it. Unlike a mapped file, nobody
 * can truncate it under a process that has it mapped (a truncated mapped file kills that
 * process with SIGBUS); it only goes when removed and detached by everyone. The core keeps
 * a copy of the frontier there (mirror.ts), so a read's freshness probe is a memory read.
 */
export interface SharedMemory {
  /**
   * Creates a segment of `bytes` bytes with permission bits `mode` and no key (IPC_PRIVATE):
   * its id, which other processes of the user can attach. Throws PortError (ENOSPC at the
   * system's limit of segments, ENOMEM).
   */
  create(bytes: number, mode: number): number;
  /** What the kernel says of segment `id`; undefined if it is gone. */
  stat(id: number): SharedSegmentInfo | undefined;
  /**
   * Maps segment `id` into this process: `bytes` bytes of it, shared with every process
   * that attached it. Touching them after {@link SharedRegion.detach} is a crash (SIGSEGV).
   */
  attach(id: number, bytes: number): SharedRegion;
  /** Marks segment `id` for removal: it goes once the last process detaches (or exits). */
  remove(id: number): void;
  /**
   * The segments this process may read (shmctl SHM_STAT over the kernel's table), removed
   * ones included (a removed segment stays attachable by id while attached somewhere).
   */
  list(): SharedSegmentInfo[];
}

/** A shared memory segment as the kernel describes it (IPC_STAT). */
export interface SharedSegmentInfo {
  /** Its id. */
  id: number;
  /** Its key (0 once removed). */
  key: number;
  /** The owner's user id. */
  uid: number;
  /** Permission bits (0o777 part). */
  mode: number;
  /** Its size. */
  bytes: number;
  /** How many attachments it has, in all processes. */
  attached: number;
  /** Marked for removal: it goes with its last detach. */
  removed: boolean;
}

/** A shared memory segment attached in this process. */
export interface SharedRegion {
  /** Its bytes, shared with every process that attached it. */
  readonly bytes: Uint8Array;
  /** Unmaps it. The bytes must not be touched afterwards. */
  detach(): void;
}

/** The runtimes an adapter can stand for. */
export type RuntimeName = "node" | "deno" | "bun" | "sim";

/**
 * Everything txtdb uses from the outside world.
 *
 * @example
 * ```ts
 * import { nodePlatform } from "txtdb/adapters/node";
 * const f = nodePlatform.open("/tmp/x", { create: true });
 * f.append(new Uint8Array([1, 2, 3])); f.datasync(); f.close();
 * ```
 */
export interface Platform {
  /** Which runtime this adapter stands for. */
  readonly runtime: RuntimeName;
  /** What this adapter guarantees. */
  readonly capabilities: Capabilities;
  /** This process's id, for diagnostics only: liveness comes from locks. */
  readonly pid: number;
  /**
   * This process's effective user id, compared with the owner of a store directory so that
   * one user never works inside a directory another controls. Undefined where the adapter
   * cannot tell (Deno without `--allow-sys=uid` and no writable temporary directory).
   */
  readonly uid: number | undefined;

  /** Opens a regular file; never follows a final symlink, never blocks (see {@link OpenOptions}). */
  open(path: string, options?: OpenOptions): FileHandle;
  /**
   * Information about `path`, or undefined if it does not exist. Follows symlinks, in the
   * path and at its end: what a store directory path leads to is what matters to `mkdir`
   * and `readdir`. Use `lstat` to see a link itself.
   */
  stat(path: string): FileInfo | undefined;
  /** Like `stat`, but a final symlink is described itself (`isSymlink`), not followed. */
  lstat(path: string): FileInfo | undefined;
  /**
   * Optional: what `lstat` says of `path`'s type, device and inode, asked of the kernel
   * without its timestamps; undefined if nothing is there. The core checks at every commit
   * that the files it writes are still the ones their paths name, and uses this where
   * present. Why it matters: since Linux 6.13 a stat that reports a file's change time
   * makes the file's next write take a fine-grained timestamp, which dirties its inode, and
   * on ext4 the next fdatasync then writes that inode's table block as well (shared by the
   * store's files, created side by side): one more disk write per commit (statx.ts in the
   * adapters has the measurements). Without it the core uses `lstat`.
   */
  identity?(path: string): FileIdentity | undefined;
  /** Names (not paths) of the entries of a directory. */
  readdir(path: string): string[];
  /**
   * Optional: the directory `path` (links followed), opened only to be locked with flock(2).
   * The writer lock takes it beside `writer.lock` (lock.ts): a lock file can be deleted under
   * its holder by a cleaner, after which the next process locks a new file of that name and
   * two processes append at once; a directory that holds the store cannot be deleted so. Where
   * absent (every adapter here has it), the writer lock is the file alone.
   */
  openDirectoryLock?(path: string): LockHandle;
  /**
   * Creates a directory and its parents, each one made with exactly `mode` (not reduced by
   * the umask; owner-only, 0o700, by default); no error if present, and one already there
   * keeps its mode.
   */
  mkdir(path: string, mode?: number): void;
  /** Atomically replaces `to` with `from` (rename(2)). */
  rename(from: string, to: string): void;
  /** Removes a file; no error if it is already gone. */
  unlink(path: string): void;
  /** fsync(2) on a directory, so creations, renames and removals in it are durable. */
  syncDir(path: string): void;

  /** Milliseconds from a monotonic clock. */
  monotonicMs(): number;
  /** Milliseconds since the epoch (wall clock: for display, and for when expiring keys expire). */
  wallClockMs(): number;
  /** Resolves after `ms` milliseconds without blocking the event loop. */
  sleep(ms: number): Promise<void>;
  /**
   * Optional: resolves on the event loop's next turn (setImmediate), after pending timers,
   * I/O callbacks and every chain of microtasks have run. The group committer waits for it
   * so that all the transactions a turn produces join one batch and commits never starve
   * the loop. Without it the core uses `sleep(0)`, which most runtimes clamp to ~1 ms.
   */
  nextTurn?(): Promise<void>;
  /**
   * Optional: blocks the calling thread for `ms` milliseconds, a fraction of one, without
   * using the CPU (no event loop turns meanwhile). For waits shorter than a timer can make
   * (timers are clamped to ~1 ms) in a process that has nothing else to do until they end.
   * Without it the core turns the event loop until the time has passed, which keeps a core
   * busy for as long.
   */
  pause?(ms: number): void;
  /** Fills `buf` with random bytes. */
  randomBytes(buf: Uint8Array): void;
  /**
   * Optional: this process's working directory, so that paths other processes must find
   * (a coordinator's directory, the stores its decisions name) are recorded absolute.
   * Without it, a relative path is recorded as given.
   */
  cwd?(): string;

  /**
   * Calls `onChange` (possibly spuriously, possibly coalesced) when something in the
   * directory `dir` changes; undefined when the adapter has no file events, in which
   * case the core polls.
   */
  watchDir(dir: string, onChange: () => void): WatchHandle | undefined;
  /**
   * Optional: {@link watchDir} for one file that is written in place and never replaced:
   * calls `onChange` (possibly spuriously, possibly coalesced) when the file `path` is
   * written. The core watches the frontier this way, so that a commit wakes a watching
   * process for the frontier's writes only, not also for the segment's and the writer
   * lock's (each wake costs a turn of the event loop: ~40 µs of CPU measured on Node here,
   * in every watching process, for every commit of any process). Without it the core
   * watches the directory.
   */
  watchFile?(path: string, onChange: () => void): WatchHandle | undefined;
  /**
   * Optional: System V shared memory. Where it is absent (Deno, which would need
   * `--allow-ffi`; the simulated platform), every read probes the frontier file, and this
   * process's commits wait until readers elsewhere must have probed it (mirror.ts).
   */
  sharedMemory?: SharedMemory;
}

/**
 * A number in [0, 1) from the platform's random source ({@link Platform.randomBytes}), for
 * backoff jitter: never `Math.random`, so that the simulated platform replays it from its seed.
 */
export function randomFraction(platform: Platform): number {
  const b = new Uint8Array(4);
  platform.randomBytes(b);
  return (b[0]! * 2 ** 24 + b[1]! * 2 ** 16 + b[2]! * 2 ** 8 + b[3]!) / 2 ** 32;
}

/**
 * Which file `path` names, asked without its timestamps where the port can
 * ({@link Platform.identity}), else by `lstat`: for the checks, made as files are written,
 * that a path still names the file a handle has open.
 */
export function identityAt(platform: Platform, path: string): FileIdentity | undefined {
  return platform.identity ? platform.identity(path) : platform.lstat(path);
}

/**
 * True when `path` still names the file whose identity (a handle's `info()`) is `file`:
 * for the checks that a file written, or a lock file locked, was not deleted or replaced
 * since. Without timestamps where the port can (identityAt): the writer lock's file is
 * checked at every commit. Where the port cannot tell (no `lstat`, or no identity was
 * recorded: `file` undefined), the answer is true.
 */
export function pathNamesFile(platform: Platform, path: string, file: { ino: number; dev: number } | undefined): boolean {
  if (file === undefined || typeof platform.lstat !== "function") return true;
  const atPath = identityAt(platform, path);
  return atPath !== undefined && atPath.isFile && atPath.ino === file.ino && atPath.dev === file.dev;
}

/**
 * `path` made absolute against `platform`'s working directory where the platform can tell
 * (`cwd`), with "." and ".." segments resolved; as given otherwise. For paths recorded for
 * other processes, whose working directories differ.
 */
export function absolutePath(platform: Platform, path: string): string {
  let full = path;
  if (!path.startsWith("/")) {
    const cwd = workingDirectory(platform);
    if (cwd === undefined) return path;
    full = `${cwd}/${path}`;
  }
  return normalizePath(full);
}

/** `platform`'s working directory, or undefined where it cannot tell (no `cwd`, or Deno without read access to it). */
export function workingDirectory(platform: Platform): string | undefined {
  try {
    return platform.cwd?.();
  } catch {
    return undefined;
  }
}

/** An absolute path with "." and ".." segments resolved and repeated "/" dropped. */
export function normalizePath(path: string): string {
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return "/" + out.join("/");
}

/** Joins path segments with "/" (all supported platforms use POSIX paths). */
export function joinPath(...parts: string[]): string {
  return parts.join("/").replace(/\/+/g, "/");
}
