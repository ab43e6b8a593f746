/**
 * Process liveness from locks, not PIDs. Each process holds a lease file locked
 * exclusively (flock) for its whole life; the kernel drops the lock the moment the
 * process dies, however it dies. So "can I take this lease's lock?" answers "is its
 * owner dead?" exactly, and a reused PID cannot fool it. PIDs in the file are for
 * diagnostics only.
 *
 * @module
 */
import { ELOOP, ENOTREG, joinPath, PortError } from "./port.ts";
import type { FileHandle, Platform } from "./port.ts";

/** What a lease file says about its owner (diagnostics; liveness comes from the lock). */
export interface LeaseInfo {
  pid: number;
  runtime: string;
  startedAtMs: number;
}

const LEASE_SUFFIX = ".lease";
/** A lease being made (locked, then renamed to its `.lease` name). */
const FRESH_SUFFIX = ".lease-new";

/**
 * This process's lease: a file in `dir` that stays exclusively locked until `release()`
 * or process death.
 *
 * @example
 * ```ts
 * const lease = ProcessLease.create(platform, "/data/leases");
 * leaseOwnerAlive(platform, lease.path); // true from any other process
 * ```
 */
export class ProcessLease {
  readonly path: string;
  readonly id: string;
  readonly #handle: FileHandle;

  private constructor(path: string, id: string, handle: FileHandle) {
    this.path = path;
    this.id = id;
    this.#handle = handle;
  }

  /**
   * Creates and locks a new lease file named by a random id. The file is made and locked
   * under a name that is not a lease's, then renamed into place: a `<id>.lease` is never
   * unlocked while its owner lives. Created under its final name, it would be unlocked
   * between the open and the flock, and another process sweeping dead owners' leases right
   * then would take it for a dead one and remove it: its owner, alive, would be dead to all.
   */
  static create(platform: Platform, dir: string, mode = 0o600): ProcessLease {
    // A sweep (scanLeaseFiles) may remove the fresh file in the moment between its open
    // and its lock, taking it for a dead maker's: the rename then finds it gone. Make
    // another; a sweep cannot take a locked one.
    for (let attempt = 1; ; attempt++) {
      try {
        return ProcessLease.#createOnce(platform, dir, mode);
      } catch (e) {
        if (attempt >= 5 || !(e instanceof PortError && e.errno === "ENOENT")) throw e;
      }
    }
  }

  static #createOnce(platform: Platform, dir: string, mode: number): ProcessLease {
    const bytes = new Uint8Array(8);
    platform.randomBytes(bytes);
    const id = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
    const path = joinPath(dir, id + LEASE_SUFFIX);
    const fresh = joinPath(dir, id + FRESH_SUFFIX);
    const handle = platform.open(fresh, { create: true, exclusive: true, mode });
    try {
      if (!handle.tryLock(true)) throw new Error(`txtdb internal assertion failed: fresh lease "${fresh}" is locked`);
      const info: LeaseInfo = { pid: platform.pid, runtime: platform.runtime, startedAtMs: platform.wallClockMs() };
      handle.write(new TextEncoder().encode(JSON.stringify(info).padEnd(LEASE_INFO_BYTES, " ")), 0);
      platform.rename(fresh, path);
    } catch (e) {
      handle.close();
      try {
        platform.unlink(fresh);
      } catch {
        // not there: nothing to clean
      }
      throw e;
    }
    return new ProcessLease(path, id, handle);
  }

  /** The lease's open handle, for publishing data at fixed offsets after the info block. */
  get handle(): FileHandle {
    return this.#handle;
  }

  /**
   * Publishes the oldest version this process may still read (its pin), after the info
   * block: compaction keeps every version at or above the minimum pin of all live leases.
   */
  publishPin(tsn: number): void {
    const buf = new Uint8Array(PIN_BYTES);
    const view = new DataView(buf.buffer);
    view.setFloat64(0, tsn, true);
    view.setUint32(8, (tsn * 2654435761) >>> 0 ^ PIN_MAGIC, true);
    this.#handle.write(buf, LEASE_INFO_BYTES);
  }

  /** Unlocks and removes the lease (a clean exit). */
  release(platform: Platform): void {
    platform.unlink(this.path);
    this.#handle.close();
  }
}

/** Bytes reserved at the start of a lease file for its JSON info. */
export const LEASE_INFO_BYTES = 256;

const PIN_BYTES = 12;
const PIN_MAGIC = 0x5eed5eed;

/**
 * The pin a lease publishes, or undefined if none is readable yet. The check word
 * guards against reading a pin half-written by its owner (the read is then retried).
 */
export function readLeasePin(platform: Platform, path: string): number | undefined {
  let handle: FileHandle;
  try {
    handle = platform.open(path, { readOnly: true });
  } catch {
    return undefined;
  }
  try {
    const buf = new Uint8Array(PIN_BYTES);
    for (let attempt = 0; attempt < 20; attempt++) {
      if (handle.read(buf, LEASE_INFO_BYTES) < PIN_BYTES) return undefined;
      const view = new DataView(buf.buffer);
      const tsn = view.getFloat64(0, true);
      if ((view.getUint32(8, true) >>> 0) === ((((tsn * 2654435761) >>> 0) ^ PIN_MAGIC) >>> 0)) return tsn;
    }
    return undefined;
  } finally {
    handle.close();
  }
}

/** True if `name` is a lease file name. */
export function isLeaseFile(name: string): boolean {
  return name.endsWith(LEASE_SUFFIX);
}

/**
 * True if the lease's owner is alive: its lock cannot be taken. Takes and drops a
 * shared lock when the owner is dead (the file may then be reclaimed by the caller).
 */
export function leaseOwnerAlive(platform: Platform, path: string): boolean {
  return probeLease(platform, path) !== false;
}

/**
 * {@link leaseOwnerAlive}, telling apart the lease that cannot be opened: true (alive),
 * false (dead or gone), or the error of its open (EACCES: another user's lease this user may
 * not read; EMFILE, EIO), which cannot tell and counts as alive.
 */
export function probeLease(platform: Platform, path: string): boolean | { error: unknown } {
  let handle: FileHandle;
  try {
    handle = platform.open(path, { readOnly: true });
  } catch (e) {
    return leaseGone(e) ? false : { error: e };
  }
  try {
    if (handle.tryLock(false)) {
      handle.unlock();
      return false;
    }
    return true;
  } finally {
    handle.close();
  }
}

/**
 * Why the lease file (or leases directory) at `path` cannot be read, for a person: the
 * error, and for a permission error whose it is and its mode (another user's lease is the
 * usual case: a store shared by several users whose `mode` lets them not read each other's).
 */
export function unreadableReason(platform: Platform, path: string, e: unknown): string {
  const errno = e instanceof PortError ? e.errno : e instanceof Error ? e.message : String(e);
  let owner = "";
  try {
    const info = platform.lstat(path);
    if (info) {
      const me = platform.uid === undefined ? "" : info.uid === platform.uid ? ", this process's user" : `; this process runs as uid ${platform.uid}`;
      owner = `: owned by uid ${info.uid} with mode 0o${info.mode.toString(8).padStart(3, "0")}${me}`;
    }
  } catch {
    // the error alone says it
  }
  return `${errno === "EACCES" || errno === "EPERM" ? `${errno}, permission denied` : errno}${owner}`;
}

/**
 * Whether a failure to open a lease file says its owner is gone: the file is gone (its
 * owner released it, or a sweep removed a dead one), or is no lease at all (not a regular
 * file). Any other failure (EMFILE when this process is out of descriptors, EACCES, EIO)
 * cannot tell, and the owner counts as alive: a live owner taken for dead has its lease
 * removed by the sweep, and with it the pins that keep its snapshots' versions from
 * compaction, its locks, its claims, its sagas.
 */
export function leaseGone(e: unknown): boolean {
  return e instanceof PortError && (e.errno === "ENOENT" || e.errno === ENOTREG || e.errno === ELOOP);
}

/** Reads a lease's diagnostic info, or undefined if unreadable. */
export function readLeaseInfo(platform: Platform, path: string): LeaseInfo | undefined {
  try {
    const handle = platform.open(path, { readOnly: true });
    try {
      const buf = new Uint8Array(LEASE_INFO_BYTES);
      const n = handle.read(buf, 0);
      const parsed: unknown = JSON.parse(new TextDecoder().decode(buf.subarray(0, n)).trim());
      if (typeof parsed !== "object" || parsed === null) return undefined;
      const { pid, runtime, startedAtMs } = parsed as Record<string, unknown>;
      if (typeof pid !== "number" || typeof runtime !== "string" || typeof startedAtMs !== "number") return undefined;
      return { pid, runtime, startedAtMs };
    } finally {
      handle.close();
    }
  } catch {
    return undefined;
  }
}

/** A live process's lease as another process sees it. */
export interface LeaseView {
  path: string;
  /** What the lease says about its owner (undefined while unreadable). */
  info: LeaseInfo | undefined;
  /** The pin it publishes (undefined while none is readable: the owner is opening). */
  pin: number | undefined;
  /**
   * Set when the lease file cannot be opened (another user's, EACCES): why, for a person.
   * Its owner cannot be told dead, so it counts as alive and as pinning nothing above the
   * checkpoint: compaction folds nothing while it is there.
   */
  unreadable?: string;
}

/** What {@link listLeases} found in a leases directory. */
export interface LeaseListing {
  /** The live leases (those that cannot be opened included: they cannot be told dead). */
  live: LeaseView[];
  /**
   * Set when the directory itself cannot be listed (renamed or deleted under live
   * processes, replaced by a file, unreadable): its errno, and why for a person. `live` is
   * then empty, which says nothing: the leases of live processes may be elsewhere.
   */
  unlisted?: { errno: string; reason: string };
  /** The names listed (for a caller that looks for its own lease). */
  names: string[];
}

/**
 * The live leases in `leasesDir`, with their info and pins; `onDead` is called with the path
 * of each lease whose owner died (to reclaim it, where the caller may write).
 */
export function listLeases(platform: Platform, leasesDir: string, onDead?: (path: string) => void): LeaseListing {
  let names: string[];
  try {
    names = platform.readdir(leasesDir);
  } catch (e) {
    const errno = e instanceof PortError ? e.errno : "EIO";
    return { live: [], unlisted: { errno, reason: `cannot be listed (${unreadableReason(platform, leasesDir, e)})` }, names: [] };
  }
  const live: LeaseView[] = [];
  for (const name of names) {
    if (name.endsWith(FRESH_SUFFIX)) {
      // A lease being made: its maker locks it at once and renames it into place. One
      // that is unlocked was left by a process that died in between (or is a moment from
      // its lock: ProcessLease.create then makes another). Nothing else would remove it.
      const path = joinPath(leasesDir, name);
      if (!leaseOwnerAlive(platform, path)) onDead?.(path);
      continue;
    }
    if (!isLeaseFile(name)) continue;
    const path = joinPath(leasesDir, name);
    const alive = probeLease(platform, path);
    if (alive === false) {
      onDead?.(path);
      continue;
    }
    if (alive !== true) {
      live.push({ path, info: undefined, pin: undefined, unreadable: `cannot be opened (${unreadableReason(platform, path, alive.error)})` });
      continue;
    }
    live.push({ path, info: readLeaseInfo(platform, path), pin: readLeasePin(platform, path) });
  }
  return { live, names };
}

/**
 * {@link listLeases}' live leases, or undefined if the directory cannot be read (a
 * read-only store with no `leases/`).
 */
export function scanLeaseFiles(platform: Platform, leasesDir: string, onDead?: (path: string) => void): LeaseView[] | undefined {
  const listing = listLeases(platform, leasesDir, onDead);
  return listing.unlisted === undefined ? listing.live : undefined;
}
