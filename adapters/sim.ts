/**
 * A deterministic simulated platform for crash tests: an in-memory file system whose
 * files keep what was written (the page cache) apart from what was made durable
 * (fsync/fdatasync), and whose directory entries keep what was created or renamed apart
 * from what a directory fsync made durable.
 *
 * - `SimWorld` is a machine. `world.process()` gives a Platform per simulated process;
 *   processes of one world share files and flock tables, as real processes do.
 * - `world.failAt(n, kind)` makes the n-th file operation fail with `EIO`/`ENOSPC`, or
 *   crash the machine (every later operation of every process throws {@link SimCrash}).
 * - `world.powerLoss()` returns the machine after a reboot: every un-fsynced byte is
 *   dropped or, chosen by the seeded generator, torn (a prefix of the pending writes
 *   survives, the last one cut at a random byte), and directory entries not made
 *   durable by a directory fsync vanish. Locks are free again.
 *
 * - `world.plant(path, kind)` puts a FIFO, socket, device or symlink where a file belongs,
 *   as another user could in a shared directory; `world.chown(path, uid)` gives a file or
 *   directory to another user. `process.openHandleCount` counts a process's open handles,
 *   so tests can catch a descriptor leak.
 *
 * Every choice comes from a seeded generator, so a failing run replays from its seed.
 *
 * @example
 * ```ts
 * const world = new SimWorld(42);
 * const p = world.process();
 * const f = p.open("/db/x", { create: true });
 * f.append(new Uint8Array([1])); // not durable yet
 * const after = world.powerLoss(); // the byte is gone (or kept, if torn that way)
 * ```
 * @module
 */
import { ELOOP, ENOTREG, normalizePath, PortError } from "../src/port.ts";
import type { FileHandle, FileInfo, LockHandle, OpenOptions, Platform, WatchHandle } from "../src/port.ts";

/** A private cell for `pause` to wait on: nothing ever notifies it, so each wait runs to its timeout. */
const pauseCell = new Int32Array(new SharedArrayBuffer(4));

/** Thrown by every operation of a crashed simulated machine. */
export class SimCrash extends Error {
  constructor(op: string) {
    super(`simulated crash at ${op}`);
    this.name = "SimCrash";
  }
}

/** A small seeded generator (mulberry32): the same seed gives the same choices. */
export class SeededRandom {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  /** A float in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

interface PendingWrite {
  position: number;
  data: Uint8Array;
}

/** What a simulated directory entry that is not a directory can be. */
export type SimFileKind = "file" | "fifo" | "socket" | "device" | "symlink";

/** Owner, permissions and identity of a simulated file or directory. */
interface Meta {
  ino: number;
  uid: number;
  mode: number;
}

/** The uid simulated processes run as unless `world.process({ uid })` says otherwise. */
export const SIM_DEFAULT_UID = 1000;

/** One file's contents: what readers see now, and what survives a power loss. */
class Inode {
  kind: SimFileKind = "file";
  /** Where a symlink points (kind "symlink"). */
  target = "";
  meta: Meta = { ino: 0, uid: SIM_DEFAULT_UID, mode: 0o600 };
  data: Uint8Array = new Uint8Array(0);
  length: number = 0;
  durable: Uint8Array = new Uint8Array(0);
  /** Writes and truncations since the last sync, in order (truncate: data empty, position = new size). */
  pending: (PendingWrite | { truncate: number })[] = [];
  /** flock(2) of this file: which handles hold it. */
  readonly lock: FlockState = newFlockState();

  view(): Uint8Array {
    return this.data.subarray(0, this.length);
  }

  ensure(size: number): void {
    if (size <= this.data.length) return;
    const next = new Uint8Array(Math.max(size, this.data.length * 2, 64));
    next.set(this.data.subarray(0, this.length));
    this.data = next;
  }

  write(position: number, bytes: Uint8Array): void {
    this.ensure(position + bytes.length);
    if (position > this.length) this.data.fill(0, this.length, position);
    this.data.set(bytes, position);
    this.length = Math.max(this.length, position + bytes.length);
    this.pending.push({ position, data: bytes.slice() });
  }

  truncate(size: number): void {
    this.ensure(size);
    if (size > this.length) this.data.fill(0, this.length, size);
    this.length = size;
    this.pending.push({ truncate: size });
  }

  sync(): void {
    this.durable = this.view().slice();
    this.pending = [];
  }
}

/** What a scheduled fault does. */
export type FaultKind = "EIO" | "ENOSPC" | "crash" | "tear";

/** Counts of what the simulated processes did, for tests that check fsync accounting. */
export interface SimCounters {
  ops: number;
  syncs: number;
  dirSyncs: number;
  writes: number;
  bytesWritten: number;
}

/** A simulated machine: files, directories, locks and fault schedule. */
export class SimWorld {
  readonly seed: number;
  readonly random: SeededRandom;
  /** Current directory entries: path → inode (directories map to null). */
  #names = new Map<string, Inode | null>();
  /** Directory entries that a directory fsync has made durable. */
  #durableNames = new Map<string, Inode | null>();
  #crashed = false;
  #faults = new Map<number, FaultKind>();
  /** Owner and permissions of directories (which map to null in #names). */
  #dirMeta = new Map<string, Meta>();
  /** flock(2) state of directories opened to be locked (openDirectoryLock), by path; a reboot has none. */
  readonly dirLocks: Map<string, FlockState> = new Map();
  #nextHandleId = 1;
  #nextPid = 1000;
  #nextIno = 2;
  readonly counters: SimCounters = { ops: 0, syncs: 0, dirSyncs: 0, writes: 0, bytesWritten: 0 };
  /** Names of every operation in order, for naming crash points in test output. */
  readonly trace: string[] = [];
  #traceLimit = 100_000;

  constructor(seed: number) {
    this.seed = seed;
    this.random = new SeededRandom(seed);
    this.#names.set("/", null);
    this.#durableNames.set("/", null);
    this.#dirMeta.set("/", { ino: 1, uid: 0, mode: 0o755 });
  }

  newIno(): number {
    return this.#nextIno++;
  }

  /** True after a scheduled crash fired. */
  get crashed(): boolean {
    return this.#crashed;
  }

  /** Schedules operation number `n` (counting from 1 across all processes) to fail. */
  failAt(n: number, kind: FaultKind): void {
    this.#faults.set(n, kind);
  }

  /** Marks the machine as crashed now. */
  crash(): void {
    this.#crashed = true;
  }

  /**
   * Counts one operation and applies a scheduled fault. `tear` is given the chance to
   * apply part of a write before the crash.
   */
  step(op: string, path: string, tear?: (fraction: number) => void, by?: SimPlatform): void {
    if (this.#crashed) throw new SimCrash(`${op} after crash`);
    if (by?.killed) throw new SimCrash(`${op} after the process was killed`);
    const n = ++this.counters.ops;
    if (this.trace.length < this.#traceLimit) this.trace.push(`${op} ${path}`);
    if (by?.dueForKill()) {
      // SIGKILL of one process at this operation: a write may be torn, the machine runs on.
      if (tear && this.random.next() < 0.5) tear(this.random.next());
      const at = by.killedAtOp;
      by.kill();
      throw new SimCrash(`${op} ${path} (process ${by.pid} killed at its operation ${at})`);
    }
    const fault = this.#faults.get(n);
    if (fault === undefined) return;
    if (fault === "EIO" || fault === "ENOSPC") throw new PortError(fault, op, path);
    if (fault === "tear" && tear) tear(this.random.next());
    this.#crashed = true;
    throw new SimCrash(`${op} ${path} (operation ${n})`);
  }

  /** A new simulated process on this machine, running as `uid` (default {@link SIM_DEFAULT_UID}). */
  process(options: { uid?: number } = {}): SimPlatform {
    return new SimPlatform(this, this.#nextPid++, options.uid ?? SIM_DEFAULT_UID);
  }

  /**
   * Puts a non-regular file at `path` (replacing whatever file was there), as another
   * user could in a directory they can write: a FIFO, socket, device, or a symlink to
   * `target` (relative to the link's directory unless it starts with "/").
   */
  plant(path: string, kind: Exclude<SimFileKind, "file">, target = ""): void {
    const p = normalizePath(path);
    if (this.#names.get(dirname(p)) !== null) throw new PortError("ENOENT", "plant", path);
    if (this.#names.get(p) === null) throw new PortError("EISDIR", "plant", path);
    const inode = new Inode();
    inode.kind = kind;
    inode.target = target;
    inode.meta = { ino: this.newIno(), uid: SIM_DEFAULT_UID, mode: kind === "symlink" ? 0o777 : 0o644 };
    this.#names.set(p, inode);
    this.#durableNames.set(p, inode);
  }

  /** Gives the file or directory at `path` (not following a symlink) to user `uid`. */
  chown(path: string, uid: number): void {
    const p = normalizePath(path);
    const inode = this.#names.get(p);
    if (inode === undefined) throw new PortError("ENOENT", "chown", path);
    if (inode === null) this.#dirMeta.get(p)!.uid = uid;
    else inode.meta.uid = uid;
  }

  /** The entry at `path` after following symlinks (at most 40, as Linux), or undefined. */
  resolve(path: string): { path: string; inode: Inode | null } | undefined {
    let p = normalizePath(path);
    for (let hops = 0; hops <= 40; hops++) {
      const inode = this.#names.get(p);
      if (inode === undefined) return undefined;
      if (inode === null || inode.kind !== "symlink") return { path: p, inode };
      p = normalizePath(inode.target.startsWith("/") ? inode.target : `${dirname(p)}/${inode.target}`);
    }
    throw new PortError("ELOOP", "stat", path);
  }

  /** Metadata of a directory. */
  dirMeta(path: string): Meta {
    return this.#dirMeta.get(normalizePath(path)) ?? { ino: 0, uid: 0, mode: 0o755 };
  }

  /**
   * The machine after a power loss and reboot: durable bytes survive; each file's
   * un-synced writes are dropped or (seeded) partly kept with the last one torn; directory
   * entries that no directory fsync made durable are gone; no locks are held.
   */
  powerLoss(): SimWorld {
    const next = new SimWorld(this.seed + 1);
    const rebuilt = new Map<Inode, Inode>();
    for (const [path, inode] of this.#durableNames) {
      if (inode === null) {
        next.#names.set(path, null);
        next.#durableNames.set(path, null);
        continue;
      }
      let copy = rebuilt.get(inode);
      if (!copy) {
        copy = new Inode();
        copy.kind = inode.kind;
        copy.target = inode.target;
        copy.meta = { ...inode.meta };
        copy.write(0, inode.durable);
        const keep = this.random.int(inode.pending.length + 1);
        for (let i = 0; i < keep; i++) {
          const p = inode.pending[i]!;
          if ("truncate" in p) copy.truncate(p.truncate);
          else if (i === keep - 1 && this.random.next() < 0.5) {
            copy.write(p.position, p.data.subarray(0, this.random.int(p.data.length + 1)));
          } else copy.write(p.position, p.data);
        }
        copy.sync();
        rebuilt.set(inode, copy);
      }
      next.#names.set(path, copy);
      next.#durableNames.set(path, copy);
    }
    for (const [path, meta] of this.#dirMeta) if (next.#names.get(path) === null) next.#dirMeta.set(path, { ...meta });
    next.#nextIno = this.#nextIno;
    return next;
  }

  /** The machine after every process was killed but the kernel kept running: nothing is lost. */
  processCrash(): SimWorld {
    const next = new SimWorld(this.seed + 1);
    for (const [path, inode] of this.#names) {
      if (inode === null) next.#names.set(path, null);
      else {
        const copy = new Inode();
        copy.kind = inode.kind;
        copy.target = inode.target;
        copy.meta = { ...inode.meta };
        copy.write(0, inode.view());
        copy.durable = inode.durable.slice();
        copy.pending = inode.pending.slice();
        next.#names.set(path, copy);
      }
    }
    for (const [path, inode] of this.#durableNames) {
      next.#durableNames.set(path, inode === null ? null : next.#names.get(path) ?? new Inode());
    }
    for (const [path, meta] of this.#dirMeta) next.#dirMeta.set(path, { ...meta });
    next.#nextIno = this.#nextIno;
    return next;
  }

  // --- file system operations used by SimPlatform ---

  lookup(path: string): Inode | null | undefined {
    return this.#names.get(normalizePath(path));
  }

  create(path: string, uid: number, mode: number): Inode {
    const p = normalizePath(path);
    const parent = dirname(p);
    if (this.#names.get(parent) !== null) throw new PortError("ENOENT", "open", path);
    const inode = new Inode();
    // No umask is simulated: a created file (and directory) gets exactly `mode`, as the port requires.
    inode.meta = { ino: this.newIno(), uid, mode: mode & 0o7777 };
    this.#names.set(p, inode);
    return inode;
  }

  mkdir(path: string, uid = SIM_DEFAULT_UID, mode = 0o700): void {
    const p = normalizePath(path);
    if (p === "/") return;
    const existing = this.#names.get(p);
    if (existing === null) return;
    if (existing !== undefined) throw new PortError("EEXIST", "mkdir", path);
    this.mkdir(dirname(p), uid, mode);
    this.#names.set(p, null);
    this.#dirMeta.set(p, { ino: this.newIno(), uid, mode: mode & 0o7777 });
    // mkdir -p of a fresh path is treated as durable: tests start from an existing dir.
    this.#durableNames.set(p, null);
  }

  readdir(path: string): string[] {
    const p = normalizePath(path);
    const entry = this.#names.get(p);
    if (entry === undefined) throw new PortError("ENOENT", "readdir", path);
    if (entry !== null) throw new PortError("ENOTDIR", "readdir", path);
    const out: string[] = [];
    for (const name of this.#names.keys()) if (name !== p && dirname(name) === p) out.push(basename(name));
    return out.sort();
  }

  rename(from: string, to: string): void {
    const f = normalizePath(from);
    const t = normalizePath(to);
    const inode = this.#names.get(f);
    if (inode === undefined) throw new PortError("ENOENT", "rename", from);
    if (inode === null) throw new PortError("EISDIR", "rename", from);
    this.#names.delete(f);
    this.#names.set(t, inode);
  }

  unlink(path: string): void {
    const p = normalizePath(path);
    if (this.#names.get(p) === null) throw new PortError("EISDIR", "unlink", path);
    this.#names.delete(p);
  }

  /** Describes an entry as fstat/lstat would. */
  info(entry: Inode | null, path: string): FileInfo {
    if (entry === null) {
      const m = this.dirMeta(path);
      return { size: 0, isFile: false, isDirectory: true, isSymlink: false, ino: m.ino, dev: 1, uid: m.uid, mode: m.mode };
    }
    return {
      size: entry.kind === "symlink" ? entry.target.length : entry.length,
      isFile: entry.kind === "file",
      isDirectory: false,
      isSymlink: entry.kind === "symlink",
      ino: entry.meta.ino,
      dev: 1,
      uid: entry.meta.uid,
      mode: entry.meta.mode,
    };
  }

  syncDir(path: string): void {
    const p = normalizePath(path);
    this.counters.dirSyncs++;
    for (const name of [...this.#durableNames.keys()]) {
      if (dirname(name) === p && name !== p && !this.#names.has(name)) this.#durableNames.delete(name);
    }
    for (const [name, inode] of this.#names) if (dirname(name) === p && name !== p) this.#durableNames.set(name, inode);
  }

  newHandleId(): number {
    return this.#nextHandleId++;
  }
}


function dirname(p: string): string {
  const i = p.lastIndexOf("/");
  return i <= 0 ? "/" : p.slice(0, i);
}

function basename(p: string): string {
  return p.slice(p.lastIndexOf("/") + 1);
}

/** Who holds the flock(2) of a simulated file or directory: one handle exclusively, or any number shared (by handle id). */
export interface FlockState {
  /** The handle holding it exclusively, if one does. */
  exclusive: number | undefined;
  /** The handles holding it shared. */
  shared: Set<number>;
}

function newFlockState(): FlockState {
  return { exclusive: undefined, shared: new Set() };
}

/** flock(2) without waiting by handle `id`: converts a lock it holds (not atomically, as Linux does). */
function flockTry(state: FlockState, id: number, exclusive: boolean): boolean {
  flockRelease(state, id);
  if (exclusive) {
    if (state.exclusive !== undefined || state.shared.size > 0) return false;
    state.exclusive = id;
  } else {
    if (state.exclusive !== undefined) return false;
    state.shared.add(id);
  }
  return true;
}

function flockRelease(state: FlockState, id: number): void {
  if (state.exclusive === id) state.exclusive = undefined;
  state.shared.delete(id);
}

class SimFile implements FileHandle {
  readonly path: string;
  readonly #world: SimWorld;
  readonly #inode: Inode;
  readonly #id: number;
  readonly #readOnly: boolean;
  readonly #onClose: (f: SimFile) => void;
  readonly #by: SimPlatform;
  #closed = false;

  constructor(world: SimWorld, path: string, inode: Inode, readOnly: boolean, onClose: (f: SimFile) => void, by: SimPlatform) {
    this.#by = by;
    this.#world = world;
    this.path = path;
    this.#inode = inode;
    this.#id = world.newHandleId();
    this.#readOnly = readOnly;
    this.#onClose = onClose;
  }

  #check(op: string): void {
    if (this.#closed) throw new PortError("EBADF", op, this.path);
  }

  read(buf: Uint8Array, position: number): number {
    this.#check("read");
    this.#world.step("read", this.path, undefined, this.#by);
    const view = this.#inode.view();
    if (position >= view.length) return 0;
    const n = Math.min(buf.length, view.length - position);
    buf.set(view.subarray(position, position + n));
    return n;
  }

  write(data: Uint8Array, position: number): void {
    this.#check("write");
    if (this.#readOnly) throw new PortError("EBADF", "write", this.path);
    this.#world.step("write", this.path, (fraction) =>
      this.#inode.write(position, data.subarray(0, Math.floor(data.length * fraction))), this.#by);
    this.#inode.write(position, data);
    this.#world.counters.writes++;
    this.#world.counters.bytesWritten += data.length;
  }

  append(data: Uint8Array): number {
    const at = this.#inode.length;
    this.write(data, at);
    return at;
  }

  truncate(size: number): void {
    this.#check("truncate");
    if (this.#readOnly) throw new PortError("EBADF", "truncate", this.path);
    this.#world.step("truncate", this.path, undefined, this.#by);
    this.#inode.truncate(size);
  }

  size(): number {
    this.#check("fstat");
    if (this.#world.crashed) throw new SimCrash("fstat after crash");
    return this.#inode.length;
  }

  info(): FileInfo {
    this.#check("fstat");
    if (this.#world.crashed) throw new SimCrash("fstat after crash");
    return this.#world.info(this.#inode, this.path);
  }

  sync(): void {
    this.#check("fsync");
    this.#world.step("fsync", this.path, undefined, this.#by);
    this.#inode.sync();
    this.#world.counters.syncs++;
  }

  datasync(): void {
    this.#check("fdatasync");
    this.#world.step("fdatasync", this.path, undefined, this.#by);
    this.#inode.sync();
    this.#world.counters.syncs++;
  }

  tryLock(exclusive: boolean): boolean {
    this.#check("flock");
    if (this.#world.crashed) throw new SimCrash("flock after crash");
    return flockTry(this.#inode.lock, this.#id, exclusive);
  }

  unlock(): void {
    flockRelease(this.#inode.lock, this.#id);
  }

  close(): void {
    if (this.#closed) return;
    this.unlock();
    this.#closed = true;
    this.#onClose(this);
  }
}

/** A directory opened only to be locked: flock(2) on the directory, as SimFile's on a file. */
class SimDirLock implements LockHandle {
  readonly #world: SimWorld;
  readonly #dir: string;
  readonly #id: number;
  readonly #onClose: (h: SimDirLock) => void;
  #closed = false;

  constructor(world: SimWorld, dir: string, onClose: (h: SimDirLock) => void) {
    this.#world = world;
    this.#dir = dir;
    this.#id = world.newHandleId();
    this.#onClose = onClose;
  }

  #state(): FlockState {
    let state = this.#world.dirLocks.get(this.#dir);
    if (!state) this.#world.dirLocks.set(this.#dir, (state = newFlockState()));
    return state;
  }

  tryLock(exclusive: boolean): boolean {
    if (this.#closed) throw new PortError("EBADF", "flock", this.#dir);
    if (this.#world.crashed) throw new SimCrash("flock after crash");
    return flockTry(this.#state(), this.#id, exclusive);
  }

  unlock(): void {
    flockRelease(this.#state(), this.#id);
  }

  close(): void {
    if (this.#closed) return;
    this.unlock();
    this.#closed = true;
    this.#onClose(this);
  }
}

/** One simulated process's view of a {@link SimWorld}. */
export class SimPlatform implements Platform {
  readonly runtime = "sim" as const;
  readonly capabilities = { fileEvents: false, sharedWithOtherProcesses: false };
  readonly pid: number;
  readonly uid: number;
  readonly world: SimWorld;
  readonly #handles = new Set<SimFile | SimDirLock>();
  readonly #forget = (f: SimFile | SimDirLock) => void this.#handles.delete(f);

  constructor(world: SimWorld, pid: number, uid: number) {
    this.world = world;
    this.pid = pid;
    this.uid = uid;
  }

  /** How many handles this process has open (a leak shows as growth). */
  get openHandleCount(): number {
    return this.#handles.size;
  }

  open(path: string, options: OpenOptions = {}): FileHandle {
    this.world.step("open", path, undefined, this);
    let inode = this.world.lookup(path);
    // As open(2) with O_CREAT|O_EXCL: anything at the path, even a dangling symlink, is EEXIST.
    if (inode !== undefined && options.create && options.exclusive) throw new PortError("EEXIST", "open", path);
    if (inode === null) throw new PortError(ENOTREG, "open", path, undefined, "a directory, not a regular file");
    if (inode?.kind === "symlink") throw new PortError(ELOOP, "open", path, undefined, "a symlink: txtdb never follows one to a store file");
    if (inode !== undefined && inode.kind !== "file") throw new PortError(ENOTREG, "open", path, undefined, `a ${inode.kind}, not a regular file`);
    if (inode === undefined) {
      if (!options.create) throw new PortError("ENOENT", "open", path);
      inode = this.world.create(path, this.uid, options.mode ?? 0o600);
    }
    const f = new SimFile(this.world, path, inode, options.readOnly === true, this.#forget, this);
    this.#handles.add(f);
    return f;
  }

  stat(path: string): FileInfo | undefined {
    if (this.world.crashed) throw new SimCrash("stat after crash");
    const found = this.world.resolve(path);
    return found && this.world.info(found.inode, found.path);
  }

  lstat(path: string): FileInfo | undefined {
    if (this.world.crashed) throw new SimCrash("lstat after crash");
    const inode = this.world.lookup(path);
    return inode === undefined ? undefined : this.world.info(inode, path);
  }

  readdir(path: string): string[] {
    this.world.step("readdir", path, undefined, this);
    // A final symlink is followed, as readdir(3) does (links inside a path are not simulated).
    return this.world.readdir(this.world.resolve(path)?.path ?? path);
  }

  mkdir(path: string, mode = 0o700): void {
    this.world.step("mkdir", path, undefined, this);
    this.world.mkdir(path, this.uid, mode);
  }

  rename(from: string, to: string): void {
    this.world.step("rename", `${from} -> ${to}`, undefined, this);
    this.world.rename(from, to);
  }

  unlink(path: string): void {
    this.world.step("unlink", path, undefined, this);
    if (this.world.lookup(path) === undefined) return;
    this.world.unlink(path);
  }

  openDirectoryLock(path: string): LockHandle {
    this.world.step("open(dir)", path, undefined, this);
    const found = this.world.resolve(path);
    if (found === undefined) throw new PortError("ENOENT", "open(dir)", path);
    if (found.inode !== null) throw new PortError("ENOTDIR", "open(dir)", path);
    const h = new SimDirLock(this.world, found.path, this.#forget);
    this.#handles.add(h);
    return h;
  }

  syncDir(path: string): void {
    this.world.step("fsync(dir)", path, undefined, this);
    this.world.syncDir(path);
  }

  /** Simulates SIGKILL of this process: its handles close, so its locks are free; every later operation of it fails. */
  kill(): void {
    this.#killed = true;
    for (const h of [...this.#handles]) h.close();
    this.#handles.clear();
  }

  #killed = false;
  #opsToKill = 0;
  /** The operation (counted from {@link killAtOp}'s call) at which this process is to die; 0: none. */
  killedAtOp = 0;

  /** True once this process was killed. */
  get killed(): boolean {
    return this.#killed;
  }

  /**
   * Kills this process (as SIGKILL: {@link kill}) at its `n`-th file operation from now,
   * counting only its own, so a test can kill it at every step of one thing it does while
   * other processes of the world run on. A write it is killed at may be torn.
   */
  killAtOp(n: number): void {
    this.#opsToKill = n;
    this.killedAtOp = n;
  }

  /** File operations this process has made (those a fault can strike). */
  opCount = 0;

  /** Counts one operation of this process; true when it is the one to die at. @internal */
  dueForKill(): boolean {
    this.opCount++;
    if (this.#opsToKill <= 0) return false;
    return --this.#opsToKill === 0;
  }

  monotonicMs(): number {
    return performance.now();
  }

  wallClockMs(): number {
    return Date.now();
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  nextTurn(): Promise<void> {
    return new Promise((resolve) => setImmediate(resolve));
  }

  pause(ms: number): void {
    // The simulated machine keeps real time (monotonicMs above), so a pause is a real one.
    Atomics.wait(pauseCell, 0, 0, ms);
  }

  cwd(): string {
    return "/";
  }

  randomBytes(buf: Uint8Array): void {
    for (let i = 0; i < buf.length; i++) buf[i] = this.world.random.int(256);
  }

  watchDir(_dir: string, _onChange: () => void): WatchHandle | undefined {
    return undefined;
  }
}
