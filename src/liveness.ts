/**
 * Process liveness from locks, not PIDs. Each process holds a lease file locked
 * exclusively (flock) for its whole life; the kernel drops the lock the moment the
 * process dies, however it dies. So "can I take this lease's lock?" answers "is its
 * owner dead?" exactly, and a reused PID cannot fool it. PIDs in the file are for
 * diagnostics only.
 *
 * @module
 */
import { crc32c } from "./crc32c.ts";
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

/** A new lease id: 16 random hex digits (a lock owner's mark takes the same kind of id). */
export function newLeaseId(platform: Platform): string {
  const bytes = new Uint8Array(8);
  platform.randomBytes(bytes);
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Options of {@link ProcessLease.create}. */
export interface LeaseCreateOptions {
  /** The id (16 hex digits) to take, instead of a random one: an owner that makes its lease again elsewhere keeps its name. */
  id?: string;
  /** Writes what the lease must hold before it appears under its `.lease` name (called locked, after the info block). */
  prepare?: (handle: FileHandle) => void;
}

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
  static create(platform: Platform, dir: string, mode = 0o600, options: LeaseCreateOptions = {}): ProcessLease {
    // A sweep (scanLeaseFiles) may remove the fresh file in the moment between its open
    // and its lock, taking it for a dead maker's: the rename then finds it gone. Make
    // another; a sweep cannot take a locked one.
    for (let attempt = 1; ; attempt++) {
      try {
        return ProcessLease.#createOnce(platform, dir, mode, options);
      } catch (e) {
        if (attempt >= 5 || !(e instanceof PortError && e.errno === "ENOENT")) throw e;
      }
    }
  }

  static #createOnce(platform: Platform, dir: string, mode: number, options: LeaseCreateOptions): ProcessLease {
    const id = options.id ?? newLeaseId(platform);
    const path = joinPath(dir, id + LEASE_SUFFIX);
    const fresh = joinPath(dir, id + FRESH_SUFFIX);
    const handle = platform.open(fresh, { create: true, exclusive: true, mode });
    try {
      if (!handle.tryLock(true)) throw new Error(`txtdb internal assertion failed: fresh lease "${fresh}" is locked`);
      const info: LeaseInfo = { pid: platform.pid, runtime: platform.runtime, startedAtMs: platform.wallClockMs() };
      handle.write(new TextEncoder().encode(JSON.stringify(info).padEnd(LEASE_INFO_BYTES, " ")), 0);
      options.prepare?.(handle);
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
   * Publishes the oldest version this process may still read (its pin), and since when it
   * pins that version (wall clock, ms since the epoch), after the info block, in one write
   * of the fixed-size pin record (see {@link PIN_RECORD_BYTES}): compaction keeps every
   * version at or above the minimum pin of all live leases; the time is for diagnostics
   * (`txtdb doctor`, `db.processes()`: the age of a forgotten snapshot in another process).
   */
  publishPin(tsn: number, sinceWallMs: number): void {
    this.#handle.write(encodePinRecord(tsn, sinceWallMs), LEASE_INFO_BYTES);
  }

  /** Unlocks and removes the lease (a clean exit). */
  release(platform: Platform): void {
    platform.unlink(this.path);
    this.#handle.close();
  }
}

/** Bytes reserved at the start of a lease file for its JSON info. */
export const LEASE_INFO_BYTES = 256;

/**
 * The pin record after the info block, written whole by one write ({@link ProcessLease.publishPin}):
 *
 * ```
 *   bytes  0–7   the pin, float64 LE
 *   bytes  8–11  its check word: (pin × 2654435761) mod 2³² XOR PIN_MAGIC
 *   bytes 12–19  since when the process pins that version: wall-clock ms, float64 LE
 *   bytes 20–23  crc32c of bytes 0–19, XOR PIN_SINCE_MAGIC
 * ```
 *
 * The first 12 bytes are the whole record of releases before the time was added, and they
 * read only those: to them a new lease's pin reads as before. A lease of such a release
 * (a process still running it) has no bytes past them: its pin reads alone, its time as
 * unknown. The check word (with the rule that a pin is a whole number) guards the pin
 * against a read that meets it half-written; the crc binds the time to the pin, so that a read that meets bytes of two writes never pairs
 * a pin with another write's time (nor a torn pin with any).
 */
export const PIN_RECORD_BYTES = 24;
/** The part of the pin record that older releases write and read (the pin and its check word). */
const PIN_BYTES = 12;
const PIN_MAGIC = 0x5eed5eed;
const PIN_SINCE_MAGIC = 0x71e5ab1e;
/** Reads of a pin record that meet a write under way are retried this many times. */
const PIN_READ_ATTEMPTS_MAX = 20;

function pinCheckWord(tsn: number): number {
  return (((tsn * 2654435761) >>> 0) ^ PIN_MAGIC) >>> 0;
}

/** The pin record for pin `tsn` held since `sinceWallMs` (see {@link PIN_RECORD_BYTES}). */
export function encodePinRecord(tsn: number, sinceWallMs: number): Uint8Array {
  const buf = new Uint8Array(PIN_RECORD_BYTES);
  const view = new DataView(buf.buffer);
  view.setFloat64(0, tsn, true);
  view.setUint32(8, pinCheckWord(tsn), true);
  view.setFloat64(12, sinceWallMs, true);
  view.setUint32(20, (crc32c(buf.subarray(0, 20)) ^ PIN_SINCE_MAGIC) >>> 0, true);
  return buf;
}

/** A lease's pin, and since when it is held when the lease says (see {@link PIN_RECORD_BYTES}). */
export interface LeasePin {
  pin: number;
  /** Wall-clock ms since the epoch; undefined for a lease of a release that does not publish it. */
  sinceWallMs: number | undefined;
}

/**
 * The pin a lease publishes, with since when, or undefined if no pin is readable yet. A
 * read that meets a write under way (a check fails) is tried again; a pin whose time never
 * checks in those tries is returned without its time (its owner rewrites the record only
 * when its pin moves, so this is a record torn and not rewritten since: never a time
 * taken for another pin's).
 */
export function readLeasePinRecord(platform: Platform, path: string): LeasePin | undefined {
  let handle: FileHandle;
  try {
    handle = platform.open(path, { readOnly: true });
  } catch {
    return undefined;
  }
  try {
    const buf = new Uint8Array(PIN_RECORD_BYTES);
    const view = new DataView(buf.buffer);
    let pinAlone: number | undefined;
    for (let attempt = 0; attempt < PIN_READ_ATTEMPTS_MAX; attempt++) {
      const n = handle.read(buf, LEASE_INFO_BYTES);
      if (n < PIN_BYTES) return undefined;
      const tsn = view.getFloat64(0, true);
      // The check word misses the float's lowest bytes (the product is cut to 32 bits), so a
      // pin torn there would pass it: a pin is a version, a whole number, and nothing else is one.
      if (!Number.isSafeInteger(tsn) || tsn < 0 || (view.getUint32(8, true) >>> 0) !== pinCheckWord(tsn)) continue;
      if (n < PIN_RECORD_BYTES) return { pin: tsn, sinceWallMs: undefined }; // an older release's lease
      if ((view.getUint32(20, true) >>> 0) === ((crc32c(buf.subarray(0, 20)) ^ PIN_SINCE_MAGIC) >>> 0)) return { pin: tsn, sinceWallMs: view.getFloat64(12, true) };
      pinAlone = tsn;
    }
    return pinAlone === undefined ? undefined : { pin: pinAlone, sinceWallMs: undefined };
  } finally {
    handle.close();
  }
}

/** The pin a lease publishes, or undefined if none is readable yet ({@link readLeasePinRecord} without the time). */
export function readLeasePin(platform: Platform, path: string): number | undefined {
  return readLeasePinRecord(platform, path)?.pin;
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
  /** Since when it pins that version, wall-clock ms (undefined: no pin, or an older release's lease, which does not say). */
  pinSinceWallMs?: number;
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
    const pin = readLeasePinRecord(platform, path);
    live.push({ path, info: readLeaseInfo(platform, path), pin: pin?.pin, ...(pin?.sinceWallMs !== undefined ? { pinSinceWallMs: pin.sinceWallMs } : {}) });
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
