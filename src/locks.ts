/**
 * Locks on named resources, shared by every process and runtime that opens the store:
 * `db.lock(resource, mode, { timeoutMs, signal })` and `db.locks()`. The table, the modes,
 * the grant rule and deadlock detection are in locktable.ts; this file does the files, the
 * waiting and the bookkeeping of one Database handle (the owner).
 *
 * Why a table in a file, changed under a short flock:
 * - flock(2) is the one primitive every runtime shares, but it has two modes and no queue;
 *   five modes, a hierarchy, first-come-first-served order and a wait-for graph need state
 *   that every process can read. So `locks/table` holds every grant and every wait, and
 *   each change (acquire, release, give up, clean up) takes an exclusive flock (of the
 *   `locks/` directory: see #dirLock), reads, changes, settles (grants what may be granted, breaks deadlocks) and
 *   writes, all synchronously: nothing awaits while the flock is held, so a change costs
 *   a few microseconds, and a process holds the flock only that long. Waiting for that
 *   flock is therefore a bounded spin of non-blocking attempts ({@link TABLE_SPIN_MS_MAX}),
 *   never a wait on another thread; past it (a process stopped inside a change) acquires
 *   retry later, and releases are applied at this process's next change. After a spin that
 *   found the flock busy to its end, the next attempts are single tries until one succeeds:
 *   a waiter probes every {@link PROBE_MS}, and a spin at each probe kept a core busy for as
 *   long as the stopped process held the flock.
 * - A change is atomic without fsync: it writes the inactive one of two checksummed slots
 *   (locktable.ts), so a process killed mid-write leaves the previous table. After a power
 *   loss every owner is dead and the table means nothing.
 *
 * Owners and liveness: the owner of a lock is the Database handle that took it. Each handle
 * that takes a lock holds its own lease in `locks/` (liveness.ts: a file flock'd for the
 * handle's lifetime; the kernel drops it when the process dies, however it dies), and a
 * mark in `leases/` (rule 7: alive while either is held). Whoever
 * changes the table first drops the entries of every owner that blocks a waiter and whose
 * lease lock can be taken, so a dead holder's lock goes at the first change or liveness
 * probe after its death: never a timeout, never /proc.
 *
 * The table lost (deleted, cut or overwritten from outside while locks are held): each
 * owner also records the grants it holds in its own lease file ({@link GRANTS_RECORD_AT}),
 * and a change that finds no valid table rebuilds it from the records of every live owner
 * before it grants anything, so a holder that changes nothing keeps excluding the others.
 * Every change, and so every rebuild, holds the exclusive flock of the `locks/` directory
 * (not of the table file, which a deletion would replace: see #dirLock). Rules:
 *
 * 1. An owner writes its record before the table in every change that alters what it
 *    holds (a grant in its own change; a release), so a rebuild never misses a grant that
 *    the table it replaces had, and never restores one its owner gave back.
 * 2. An owner takes a grant made by another process's change (a waiter's) only under the
 *    flock, as a change that reads the table (and rebuilds a lost one) and records the
 *    grants it still shows before any request goes on. So every record is written under
 *    the flock, and a rebuild, which holds it, never reads a record while it is written.
 *    (It was taken without the flock, as a record write and a read of the table after it.
 *    A rebuild reading the two slots of that record could then read the first before two
 *    writes, a confirmation and its taking back, and the second during the later one, and
 *    so rebuild from a record older than a grant already in use: two X holders were seen,
 *    once in about 25 runs of the load below with the table cut every 3 ms. Whether that
 *    was the interleaving is not known; the flock rules it out.)
 * 3. A record has two slots, written in turn, each checksummed (the table's slot format
 *    with only its owner's entries): a rebuild that meets a record being written (by an
 *    owner killed in the middle of it) reads the previous one whole, never a torn one that
 *    would drop grants already recorded.
 * 4. Rebuilt entries keep their sequence numbers (an owner knows its grants by them), and
 *    the rebuilt table numbers on from the highest.
 *
 * 5. Under the flock no slot is being written, and every change writes the slot the
 *    current table does not occupy, so both slots are whole and one generation apart: a
 *    change counts as lost any other file (readWholeTable): a slot missing, cut short,
 *    garbled or overwritten from outside, or two generations apart, where the valid slot
 *    left may be the older table, without the last change's grants or with a grant given
 *    back since. Only the file decides (not what a handle saw before). A rebuilt table
 *    numbers its generations on above every generation still in the file or seen (or it
 *    would lose to an older table left there) and is written to both slots. A rebuild that
 *    cannot read a live owner's record (its lease cannot be opened: EMFILE, EACCES) does
 *    not happen: the change is tried again, as for a busy flock.
 * 6. A change takes out any entry of its own handle that the handle neither holds nor waits
 *    for: one brought back by an older table or record would block others for good.
 *
 * The whole directory lost (`rm -rf locks/`, or deleted and made again empty, while locks are
 * held): the owners' leases and records go with it, and the flock of the deleted directory
 * excludes nobody who locks the new one. A newcomer would find no table and no live owner,
 * and grant a lock a holder of the deleted directory still holds. So:
 *
 * 7. Each owner also holds, for its life, a mark outside `locks/`: `leases/<id>.lockowner`,
 *    flock'd (made and locked under another name, then renamed, as a lease is), taken before
 *    its lease and given up after it. (a) An owner is dead only when neither its lease nor
 *    its mark can be held as free: a lease deleted with its directory says nothing. (b) A
 *    table is rebuilt (which is how every table in a new directory begins) only when every
 *    owner whose mark is held has a held lease in this directory, with its record there
 *    (written before the lease appears under its name), and from the records of all of them,
 *    read from the lease handles that check opened (a lease `rm -rf` already unlinked, the
 *    directory not yet gone, is missing from a listing while its owner may be registered
 *    nowhere else yet); the records are this directory's only if it is still the one at the
 *    path after they were read. Otherwise the change is tried again, as for a busy flock, and
 *    LOCK_TIMEOUT says why when the wait ends. (c) An owner that finds
 *    its directory deleted or replaced (identity: dev and inode, of the directory it opened
 *    to flock, against the one at the path) registers again in the one at the path, under the
 *    same id, its record in the new lease: at a change (a table at the path that is not the
 *    one it has open, or a table opened by path, leads to one identity check; so no change
 *    writes the table of a directory that was not the one at the path under its flock), and
 *    every {@link REGISTRATION_CHECK_MS} while it is an owner (idle ones too: they gate rebuilds).
 *    A change that raced the deletion wrote a dead directory's table, read only by owners
 *    registered there, each of which carries what it holds into the new one; the new one gets
 *    a table only once all have. Holders that heal, rather than newcomers refused with
 *    CORRUPTION until the holders end: nobody has to be restarted, and the wait of a
 *    newcomer is one check period. Liveness stays the kernel's (flock): no clock decides.
 *    Not detected: `locks/` and `leases/` deleted together; a directory put back from a copy
 *    with a valid table (as a table put back, below; the marks keep its owners' entries).
 *
 * Tested: the load of tests/locks-attack.test.ts (three runtimes locking and releasing)
 * while the table is deleted, cut to nothing, or has garbage written over its first 8 KiB
 * (the file replaced, or overwritten in place) every 3 ms, or the whole `locks/` deleted (and
 * made again empty) every 3 ms; each slot garbled or cut after a grant or a release, one at
 * a time; `locks/` deleted under a holder stopped with SIGSTOP (rule 7 (b) alone).
 *
 * A valid table put back from an older copy, both slots whole, is not detected: holders put
 * their grants back at their next change, and take out what they gave back (rule 6).
 *
 * Waking: a waiter is granted by whichever process changes the table (the release of what
 * blocked it settles the table), and learns it by reading the table, without the flock,
 * then takes it under the flock (rule 2: a flock busy past the spin bound leaves it for
 * the next look). It reads when the table file changes (the adapter's file events on `locks/`, the same
 * path that wakes watchers of commits: no polling delay on the common path) and, as the
 * safety net for lost events, adapters without events and holders that died without a
 * word, every {@link PROBE_MS} while it waits: it then also checks the leases of the owners
 * that block it and, if one is dead, changes the table (which drops it and grants).
 * Blocking flock calls on a helper thread were the other way to be woken by the kernel;
 * they cannot be cancelled (a timed-out wait would keep a thread of Node's four until the
 * holder releases, minutes maybe), so they are kept for the writer lock, whose holds are
 * short.
 *
 * Bounds: the detection of a deadlock costs nothing extra in time: the table change that
 * closes a cycle finds it (locktable.ts, rule 4), so the victim fails within its own
 * change, or, when its request was already waiting and another process's change closed
 * the cycle, when it next reads the table (the file event, at most {@link PROBE_MS}
 * later). A dead holder's lock is granted to its waiter within {@link PROBE_MS} of the
 * death. The table holds at most one slot of entries (LIMIT past it); each handle's
 * pending releases are bounded by what it holds; a process caches at most
 * {@link PROBE_HANDLES_MAX} open leases of other owners.
 *
 * @module
 */
import { describeInput, TxtDbError } from "./errors.ts";
import { decodeKey, encodeKey } from "./keys.ts";
import type { Key } from "./keys.ts";
import { isLeaseFile, leaseGone, newLeaseId, ProcessLease, readLeaseInfo } from "./liveness.ts";
import { identityAt, joinPath, pathNamesFile, PortError } from "./port.ts";
import type { FileHandle, FileIdentity, LockHandle, Platform, WatchHandle } from "./port.ts";
import { storeFileError } from "./dirsafety.ts";
import { abortReason, armDeadline, armInterval, armTimer, signalAborted } from "./timers.ts";
import type { Timer } from "./timers.ts";
import type { Histogram } from "./metrics.ts";
import { LEASES_DIR, LOCK_OWNER_MARK, LOCK_TABLE, LOCKS_DIR } from "./files.ts";
import { describeOptions, isSignalLike, readKnownOptions } from "./options.ts";
import {
  blockersOf,
  CONVERSION,
  decodeSlot,
  emptyTable,
  encodeRecord,
  encodeRecordOwner,
  encodeTable,
  GRANTED,
  intentionFor,
  LOCK_MODES,
  modeCode,
  readSlotHeader,
  settle,
  SLOT_BYTES,
  slotGeneration,
  SLOT_HEADER_BYTES,
  TableFullError,
  VICTIM,
  covers,
  dropOwners,
} from "./locktable.ts";
import type { CycleNote, LockEntry, LockMode, LockTable } from "./locktable.ts";

export type { LockMode } from "./locktable.ts";

/** Options of {@link Database.lock}. */
export interface LockOptions {
  /**
   * Give up with LOCK_TIMEOUT after this many ms of waiting (default: the store's
   * `lockTimeoutMs`, 30 000; 0: try once, never wait; Infinity: wait as long as it takes).
   */
  timeoutMs?: number;
  /** Give up with LOCK_TIMEOUT when this signal aborts (at once if it already has). */
  signal?: AbortSignal;
}

/** One grant or wait, as {@link Database.locks} lists it. */
export interface LockInfo {
  /** The resource (a key: one part or a tuple); intention locks on prefixes are listed too. */
  resource: Key;
  /** The mode granted, or asked for by a waiting request. */
  mode: LockMode;
  /** The process of the owner (the Database handle that holds or waits). */
  pid: number;
  /** That process's runtime: "node", "deno" or "bun". */
  runtime: string;
  /** True for a request still waiting in the queue. */
  waiting: boolean;
  /** Age of the grant, or of the wait, in ms. */
  sinceMs: number;
}

/** The figures of this handle's locks in `stats()`. */
export interface LockStats {
  /** Locks this handle holds now (`lock()` results not yet released). */
  resourceLocksHeld: number;
  /** Requests of this handle waiting now. */
  resourceLocksWaiting: number;
  /** Requests that had to wait (granted later, timed out, or failed). */
  resourceLockWaits: number;
  /** Requests granted at once because the handle already held the mode or a stronger one. */
  resourceLockReentries: number;
  /** Requests that ended with LOCK_TIMEOUT (timeout, abort, or `timeoutMs: 0` refused). */
  resourceLockTimeouts: number;
  /** Requests that ended with DEADLOCK (this handle's request was the victim). */
  deadlocks: number;
}

/** How long a change spins for the table's flock before it retries later, in ms. */
export const TABLE_SPIN_MS_MAX = 5;
/** How often a waiter re-reads the table and checks its blockers' leases, in ms. */
export const PROBE_MS = 5;
/** How long a file watch outlives the last wait of its handle, in ms. */
const WATCH_IDLE_MS = 1_000;
/** Leases of other owners a process keeps open for liveness probes, at most. */
export const PROBE_HANDLES_MAX = 64;
/** Bytes read at the start of each slot before its header says how much more there is. */
const READ_CHUNK_BYTES = 2048;
/** Lock-free reads tried before a reader takes the flock (a change was under way each time). */
const PEEK_ATTEMPTS_MAX = 3;
/** The longest wait between tries of a handle's pending releases after the table could not be written (see #flushRemovals). */
const FLUSH_RETRY_MS_MAX = 250;
/** Longest resource (encoded key) the table holds: its length is a u16 there. */
const RESOURCE_BYTES_MAX = 0xffff;
/** Dead owners' lease files removed per sweep at a handle's first lock. */
const LEASE_SWEEP_MAX = 256;
/**
 * Where an owner's lease file holds the record of its grants (a table slot with only its
 * own entries: locktable.ts's format), past the lease's info and pin (liveness.ts).
 */
export const GRANTS_RECORD_AT = 4096;
/** Bytes of each of the record's two slots: a whole table's (SLOT_BYTES; the file stays sparse). */
const RECORD_SLOT_BYTES = SLOT_BYTES;
/** Live owners a rebuild of a lost table reads the records of, at most (past it the change cannot rebuild, and retries). */
const REBUILD_LEASES_MAX = 4096;
/**
 * How often an owner checks that it is still registered where the store's `locks/` is (its
 * directory not deleted or replaced, its lease still there), in ms: a rebuild waits for
 * every live owner to be (rule 7), so this bounds that wait after a deletion. One identity
 * check each. An owner idle for hours wakes four times a second for it.
 */
export const REGISTRATION_CHECK_MS = 250;
/**
 * The same while the directory keeps being replaced (for {@link REGISTRATION_FAST_FOR_MS}
 * after an owner last had to register again): newcomers then wait only this long for it, and
 * under a deletion every few ms the owners still register between two of them.
 */
export const REGISTRATION_CHECK_FAST_MS = 20;
/** How long an owner checks at the fast rate after it last had to register again, in ms. */
export const REGISTRATION_FAST_FOR_MS = 5_000;
/** Tries of an owner's registration (the directory replaced again meanwhile) before it fails with IO. */
const REGISTER_ATTEMPTS_MAX = 10;

/** One entry this handle holds, with the lock() results that count on it. */
interface Held {
  seq: number;
  resource: string;
  mode: number;
  refs: number;
}

/** One level of a hierarchical request: the resource (encoded) and the mode it needs there. */
interface Step {
  resource: string;
  mode: number;
}

/** A lock() call in progress. */
interface Request {
  key: Key;
  mode: LockMode;
  steps: Step[];
  /** Index of the next step to acquire. */
  next: number;
  /** The held entries the acquired steps count on, in step order. */
  taken: Held[];
  /** The waiting entry of the current step, while it waits. */
  waitingSeq: number | undefined;
  tryOnce: boolean;
  timeoutMs: number;
  signal: AbortSignal | undefined;
  startMs: number;
  waited: boolean;
  deadline: Timer | undefined;
  /** Owners that blocked it at the last look (for the LOCK_TIMEOUT message); none once the table showed it granted. */
  blockers: LockEntry[];
  /**
   * True while the table shows this request's step granted but the table's flock, which
   * taking it needs (rule 2), stayed busy at the last try: LOCK_TIMEOUT then says so rather
   * than name a holder that gave the lock back.
   */
  grantUntaken: boolean;
  /**
   * True while the last change this request tried found the table's flock busy past the
   * spin bound (it is retried every ms): LOCK_TIMEOUT then says so, where it said only
   * "not granted within N ms" with no holder named.
   */
  tableBusy: boolean;
  settled: boolean;
  resolve: (lock: ResourceLock) => void;
  reject: (e: unknown) => void;
}

/**
 * A lock on a named resource, from {@link Database.lock}. Held until `release()` (or the
 * end of an `await using` block, or `db.close()`, or the death of its process).
 *
 * @example
 * ```ts
 * const l = await db.lock(["accounts", "alice"], "X", { timeoutMs: 5_000 });
 * try { await callThePaymentService(); } finally { l.release(); }
 * ```
 */
export class ResourceLock {
  /** The resource, as given to `lock()`. */
  readonly resource: Key;
  /** The mode, as given to `lock()`. */
  readonly mode: LockMode;
  #release: (() => void) | undefined;

  /** Made by {@link Database.lock} only. */
  constructor(resource: Key, mode: LockMode, release: () => void) {
    this.resource = resource;
    this.mode = mode;
    this.#release = release;
  }

  /** True once released (by `release()`, or by `db.close()`). */
  get released(): boolean {
    return this.#release === undefined;
  }

  /** Releases the lock, synchronously; a second call does nothing. */
  release(): void {
    const r = this.#release;
    this.#release = undefined;
    r?.();
  }

  /** `await using l = await db.lock(...)` releases it at the end of the block. */
  [Symbol.asyncDispose](): Promise<void> {
    this.release();
    return Promise.resolve();
  }
}

/** What the manager needs from its store. */
export interface LockManagerOptions {
  readOnly: boolean;
  mode: number;
  dirMode: number;
  lockTimeoutMs: number;
  maxKeyBytes: number;
}

function hexToBinary(hex: string): string {
  let s = "";
  for (let i = 0; i + 1 < hex.length; i += 2) s += String.fromCharCode(parseInt(hex.slice(i, i + 2), 16));
  return s;
}

function showKey(resource: string): Key {
  try {
    return decodeKey(resource);
  } catch {
    // A table written by something else than txtdb: show the bytes rather than fail.
    let hex = "";
    for (let i = 0; i < resource.length; i++) hex += resource.charCodeAt(i).toString(16).padStart(2, "0");
    return `<bytes ${hex}>`;
  }
}

function describe(key: Key): string {
  try {
    return JSON.stringify(key, (_k, v) => (typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? `bytes(${v.length})` : v));
  } catch {
    return String(key);
  }
}

/** The locks of one Database handle: its requests, its grants, and its view of the table. */
export class LockManager {
  readonly #platform: Platform;
  readonly #dir: string;
  readonly #tablePath: string;
  readonly #options: LockManagerOptions;
  /** The store's `leases/`, where each owner's mark lives (rule 7). */
  readonly #leasesDir: string;
  #lease: ProcessLease | undefined;
  /** This owner's mark, `leases/<id>.lockowner`, flock'd for its life (rule 7); its id is the lease's. */
  #mark: { id: string; path: string; handle: FileHandle } | undefined;
  /** The `locks/` directory this owner is registered in (its dirLock's), where the port can tell (rule 7). */
  #dirId: FileIdentity | undefined;
  /** The identity of this owner's lease file, to tell when its path no longer names it. */
  #leaseFileId: { ino: number; dev: number } | undefined;
  /** Checks the registration every {@link REGISTRATION_CHECK_MS} while this handle is an owner. */
  #registrationCheck: Timer | undefined;
  /** The period the registration check is armed with, and until when it stays fast. */
  #registrationPeriodMs = 0;
  #registrationFastUntilMs = 0;

  /** (Re)arms the registration check every `periodMs`. Unref'd: it must not keep a script alive. */
  #armRegistrationCheck(periodMs: number): void {
    this.#registrationCheck?.cancel();
    this.#registrationCheck = armInterval(periodMs, () => this.#checkRegistration(), { unref: true });
    this.#registrationPeriodMs = periodMs;
  }
  /** Why the last rebuild could not be made (a live owner not registered in this `locks/`), for LOCK_TIMEOUT's message. */
  #unregistered: string | undefined;
  #handle: FileHandle | undefined;
  /** The `locks/` directory opened to be flocked: the exclusion of changes (see #dirLock). */
  #dirLockHandle: LockHandle | undefined;
  #handleWritable = false;
  /** The table file the handle has open (to tell when the path names another one). */
  #handleId = { ino: -1, dev: -1 };
  /** This handle's grants by resource, and by seq. */
  readonly #held = new Map<string, Held[]>();
  readonly #heldBySeq = new Map<number, Held>();
  /** Requests waiting for a grant. */
  readonly #waiting = new Set<Request>();
  /** Entries to remove at the next change this handle makes (the flock was busy when they were released). */
  readonly #pendingRemovals = new Set<number>();
  #pendingTimer: Timer | undefined;
  /** The delay before the next try of pending removals after an operating failure (see #flushRemovals). */
  #flushRetryMs = 1;
  #watch: WatchHandle | undefined;
  #watchTried = false;
  #watchIdle: Timer | undefined;
  #probe: Timer | undefined;
  #recheckQueued = false;
  readonly #probeHandles = new Map<string, FileHandle>();
  #lockCount = 0;
  /** The lock() results not yet released, so that close() can mark them released. */
  readonly #issued = new Set<ResourceLock>();
  /**
   * The newest generation this handle wrote or read. A read without the flock that races
   * two changes can find one slot torn and the other still holding an older generation; such
   * a table is refused, or a waiter would miss its own entry (see {@link #read}).
   */
  #seenGeneration = 0;
  /** Bumped at every change of #heldBySeq: the record is written again only when it moved. */
  #heldVersion = 0;
  /** The #heldVersion this handle's lease records now (-1 before its first record). */
  #recorded = -1;
  /** The owner's part of every record (encodeRecordOwner), made at the first. */
  #recordOwner: Uint8Array | undefined;
  /** Generation of this handle's last record (its slot: generation mod 2; rule 3). */
  #recordGeneration = 0;
  #closed = false;
  readonly #waitUs: Histogram;
  readonly counters = { waits: 0, reentries: 0, timeouts: 0, deadlocks: 0 };

  /** `waitUs` records each wait (granted or not), in µs. */
  constructor(platform: Platform, storePath: string, options: LockManagerOptions, waitUs: Histogram) {
    this.#waitUs = waitUs;
    this.#platform = platform;
    this.#dir = joinPath(storePath, LOCKS_DIR);
    this.#tablePath = joinPath(this.#dir, LOCK_TABLE);
    this.#leasesDir = joinPath(storePath, LEASES_DIR);
    this.#options = options;
  }

  // --- the public surface (through Database) ---

  /** `db.lock()`: see {@link Database.lock}. */
  lock(resource: Key, mode: LockMode, options: LockOptions = {}): Promise<ResourceLock> {
    let req: Request;
    try {
      req = this.#request(resource, mode, options);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<ResourceLock>((resolve, reject) => {
      req.resolve = resolve;
      req.reject = reject;
      if (signalAborted(req.signal)) return this.#finish(req, this.#timeoutError(req, abortReason(req.signal)));
      this.#advance(req);
    });
  }

  /**
   * `db.locks()`: every live owner's grants and waits, read from the table; with the table
   * lost (missing, cut, garbled), the grants the live owners' records hold (what the next
   * change will rebuild it from), the waits being unknown until then.
   */
  list(): LockInfo[] {
    let t = this.#read();
    if (!t || t.generation === 0) t = this.#lostTableView();
    if (!t) return [];
    const now = this.#platform.wallClockMs();
    const alive = new Map<string, boolean>();
    const out: LockInfo[] = [];
    for (const e of [...t.entries].sort((a, b) => a.seq - b.seq)) {
      if (e.flags & VICTIM) continue;
      let a = alive.get(e.owner);
      if (a === undefined) alive.set(e.owner, (a = this.#ownerAlive(e.owner)));
      if (!a) continue;
      const o = t.owners.get(e.owner);
      out.push({ resource: showKey(e.resource), mode: LOCK_MODES[e.mode]!, pid: o?.pid ?? -1, runtime: o?.runtime ?? "?", waiting: !(e.flags & GRANTED), sinceMs: Math.max(0, Math.round(now - e.sinceWallMs)) });
    }
    return out;
  }

  /** This handle's figures for `stats()`. */
  stats(): LockStats {
    return {
      resourceLocksHeld: this.#lockCount,
      resourceLocksWaiting: this.#waiting.size,
      resourceLockWaits: this.counters.waits,
      resourceLockReentries: this.counters.reentries,
      resourceLockTimeouts: this.counters.timeouts,
      deadlocks: this.counters.deadlocks,
    };
  }

  /**
   * Releases every lock of this handle and fails its waiting requests with CLOSED; then
   * gives up its lease. If the table's flock cannot be had now, giving up the lease is
   * enough: the next change by anyone drops a dead owner's entries.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const req of [...this.#waiting]) this.#finish(req, new TxtDbError("CLOSED", `The database was closed while lock ${describe(req.key)} (${req.mode}) was waited for`));
    const me = this.#lease?.id;
    if (me !== undefined && (this.#heldBySeq.size > 0 || this.#pendingRemovals.size > 0)) {
      try {
        this.#change((t) => void (t.entries = t.entries.filter((e) => e.owner !== me)));
      } catch {
        // the lease goes next: the entries are a dead owner's then
      }
    }
    this.#held.clear();
    this.#heldBySeq.clear();
    this.#heldVersion++;
    this.#lockCount = 0;
    // Their release functions do nothing now (the handle is closed); this marks them released.
    for (const l of this.#issued) l.release();
    this.#issued.clear();
    this.#pendingRemovals.clear();
    this.#pendingTimer?.cancel();
    this.#probe?.cancel();
    this.#closeWatch();
    for (const h of this.#probeHandles.values()) closeQuietly(h);
    this.#probeHandles.clear();
    if (this.#handle) closeQuietly(this.#handle);
    this.#handle = undefined;
    if (this.#dirLockHandle) closeQuietly(this.#dirLockHandle);
    this.#dirLockHandle = undefined;
    this.#registrationCheck?.cancel();
    this.#registrationCheck = undefined;
    try {
      // Its path may name another owner's lease only if it is this one's: the same id.
      if (this.#lease && pathNamesFile(this.#platform, this.#lease.path, this.#leaseFileId)) this.#lease.release(this.#platform);
      else if (this.#lease) closeQuietly(this.#lease.handle);
    } catch {
      // an unreleased lease file is a dead owner's once this handle is closed
      if (this.#lease) closeQuietly(this.#lease.handle);
    }
    this.#lease = undefined;
    this.#dropMark(); // after the lease: an owner is alive while either is held (rule 7)
  }

  /** Unlinks and lets go of this owner's mark; a mark left behind is free, so a dead owner's, swept later. */
  #dropMark(): void {
    if (!this.#mark) return;
    try {
      this.#platform.unlink(this.#mark.path);
    } catch {
      // a free mark is a dead owner's: swept by the next rebuild or first lock
    }
    closeQuietly(this.#mark.handle);
    this.#mark = undefined;
  }

  // --- requests ---

  #request(resource: Key, mode: LockMode, options: LockOptions): Request {
    if (this.#closed) throw new TxtDbError("CLOSED", "Cannot lock: the database is closed; open it again");
    const code = modeCode(mode);
    if (code < 0) throw new TxtDbError("INVALID_ARGUMENT", `Lock mode must be one of ${LOCK_MODES.map((m) => JSON.stringify(m)).join(", ")}; got ${describe(mode as unknown as Key)}`);
    if (options === null || typeof options !== "object" || Array.isArray(options)) throw new TxtDbError("INVALID_ARGUMENT", `lock() options must be an object: { timeoutMs?, signal? }; got ${describeOptions(options)}`);
    // Each option read once: a getter that throws is INVALID_ARGUMENT.
    const { timeoutMs, signal } = readKnownOptions("lock()", options, ["timeoutMs", "signal"]);
    if (timeoutMs !== undefined && (typeof timeoutMs !== "number" || !(timeoutMs >= 0))) {
      throw new TxtDbError("INVALID_ARGUMENT", `lock() timeoutMs must be a non-negative number of ms (0: try once); got ${describeInput(timeoutMs)}`);
    }
    if (signal !== undefined && !isSignalLike(signal)) throw new TxtDbError("INVALID_ARGUMENT", "lock() signal must be an AbortSignal");
    const parts: readonly unknown[] = Array.isArray(resource) ? resource : [resource];
    if (parts.length === 0) throw new TxtDbError("INVALID_ARGUMENT", "Cannot lock an empty resource []; name it with one or more key parts, e.g. [\"accounts\", \"alice\"]");
    const steps: Step[] = [];
    for (let i = 0; i < parts.length; i++) {
      const last = i === parts.length - 1;
      steps.push({ resource: encodeKey(parts.slice(0, i + 1), this.#options.maxKeyBytes), mode: last ? code : intentionFor(code) });
    }
    const longest = steps[steps.length - 1]!.resource.length;
    if (longest > RESOURCE_BYTES_MAX) {
      throw new TxtDbError("INVALID_KEY", `Cannot lock a resource of ${longest} bytes encoded:  the lock table holds resources of at most ${RESOURCE_BYTES_MAX} bytes (whatever maxKeyBytes allows)`);
    }
    if (this.#options.readOnly) throw new TxtDbError("READ_ONLY", "Cannot lock: the database was opened with readOnly: true, and a lock is a write to the shared lock table");
    const t = timeoutMs ?? this.#options.lockTimeoutMs;
    return {
      key: resource,
      mode,
      steps,
      next: 0,
      taken: [],
      waitingSeq: undefined,
      tryOnce: t === 0,
      timeoutMs: t,
      signal: signal as AbortSignal | undefined,
      startMs: this.#platform.monotonicMs(),
      waited: false,
      deadline: undefined,
      blockers: [],
      grantUntaken: false,
      tableBusy: false,
      settled: false,
      resolve: () => {},
      reject: () => {},
    };
  }

  /** The entry this handle holds on `resource` in `mode` or a stronger one, if any. */
  #covering(resource: string, mode: number): Held | undefined {
    const list = this.#held.get(resource);
    if (!list) return undefined;
    for (const h of list) if (covers(h.mode, mode)) return h;
    return undefined;
  }

  /** The request's current step is granted as entry `e`: it holds that entry and moves on to its next step. */
  #takeStep(req: Request, e: LockEntry): Held {
    req.waitingSeq = undefined;
    req.grantUntaken = false;
    const h = this.#hold(e.seq, e.resource, e.mode);
    h.refs++;
    req.taken.push(h);
    req.next++;
    return h;
  }

  #hold(seq: number, resource: string, mode: number): Held {
    const h: Held = { seq, resource, mode, refs: 0 };
    let list = this.#held.get(resource);
    if (!list) this.#held.set(resource, (list = []));
    list.push(h);
    this.#heldBySeq.set(seq, h);
    this.#heldVersion++;
    return h;
  }

  /**
   * Acquires the request's remaining steps: those the handle already covers at once, the
   * others in one table change, step by step, until one has to wait (or all are granted).
   */
  #advance(req: Request): void {
    if (req.settled) return;
    let outcome: { kind: "done" } | { kind: "wait"; seq: number } | { kind: "deadlock"; note: string } | { kind: "refused" } | undefined;
    const reentry = req.next === 0 && this.#covering(req.steps[req.steps.length - 1]!.resource, req.steps[req.steps.length - 1]!.mode) !== undefined;
    while (req.next < req.steps.length) {
      const step = req.steps[req.next]!;
      const held = this.#covering(step.resource, step.mode);
      if (!held) break;
      held.refs++;
      req.taken.push(held);
      req.next++;
    }
    if (req.next === req.steps.length) {
      if (reentry) this.counters.reentries++;
      return this.#grantRequest(req);
    }
    let me: string;
    try {
      me = this.#owner();
      const changed = this.#change((t) => {
        outcome = undefined;
        while (req.next < req.steps.length) {
          const step = req.steps[req.next]!;
          const held = this.#covering(step.resource, step.mode);
          if (held) {
            held.refs++;
            req.taken.push(held);
            req.next++;
            continue;
          }
          const entry: LockEntry = {
            seq: t.nextSeq++,
            owner: me,
            resource: step.resource,
            mode: step.mode,
            flags: this.#held.has(step.resource) ? CONVERSION : 0,
            sinceWallMs: this.#platform.wallClockMs(),
            note: "",
          };
          t.entries.push(entry);
          if (req.tryOnce) {
            // A request that may not wait never joins the wait-for graph: refused, not a deadlock victim.
            req.blockers = this.#liveBlockers(t, entry);
            if (req.blockers.length > 0) {
              t.entries = t.entries.filter((e) => e !== entry);
              outcome = { kind: "refused" };
              return;
            }
          }
          this.#settle(t);
          if (entry.flags & GRANTED) {
            this.#takeStep(req, entry);
            continue;
          }
          if (entry.flags & VICTIM) {
            t.entries = t.entries.filter((e) => e !== entry);
            outcome = { kind: "deadlock", note: entry.note };
            return;
          }
          req.blockers = blockersOf(t, entry);
          outcome = { kind: "wait", seq: entry.seq };
          return;
        }
        outcome = { kind: "done" };
      });
      req.tableBusy = !changed;
      if (!changed) {
        // Another process is stopped inside a change: try again shortly, within the deadline.
        this.#startWaiting(req);
        armTimer(1, () => this.#advance(req));
        return;
      }
    } catch (e) {
      return this.#finish(req, this.#asLockError(e, req));
    }
    const o = outcome!;
    if (o.kind === "done") return this.#grantRequest(req);
    if (o.kind === "deadlock") return this.#finish(req, this.#deadlockError(req, o.note));
    if (o.kind === "refused") return this.#finish(req, this.#timeoutError(req));
    req.waitingSeq = o.seq;
    this.#startWaiting(req);
  }

  #grantRequest(req: Request): void {
    if (req.settled) return;
    req.settled = true;
    req.deadline?.cancel();
    this.#waiting.delete(req);
    if (req.waited) this.#waitUs.record((this.#platform.monotonicMs() - req.startMs) * 1000);
    this.#lockCount++;
    const taken = req.taken;
    req.taken = [];
    const lock = new ResourceLock(req.key, req.mode, () => {
      if (this.#closed) return;
      this.#issued.delete(lock);
      this.#lockCount--;
      this.#unref(taken);
    });
    this.#issued.add(lock);
    req.resolve(lock);
    this.#stopProbesIfIdle();
  }

  /** Ends a request with `error`: takes its waiting entry out of the queue and gives back its partial steps. */
  #finish(req: Request, error: TxtDbError): void {
    if (req.settled) return;
    req.settled = true;
    req.deadline?.cancel();
    this.#waiting.delete(req);
    if (req.waited) this.#waitUs.record((this.#platform.monotonicMs() - req.startMs) * 1000);
    if (error.code === "LOCK_TIMEOUT") this.counters.timeouts++;
    if (error.code === "DEADLOCK") this.counters.deadlocks++;
    const seq = req.waitingSeq;
    req.waitingSeq = undefined;
    const taken = req.taken;
    req.taken = [];
    if (!this.#closed) {
      if (seq !== undefined) this.#pendingRemovals.add(seq);
      this.#unref(taken);
    }
    this.#stopProbesIfIdle();
    req.reject(error);
  }

  /** Forgets a grant this handle held (the table is changed by the caller, or was not yet). */
  #unhold(h: Held): void {
    this.#heldBySeq.delete(h.seq);
    this.#heldVersion++;
    const list = this.#held.get(h.resource)!;
    list.splice(list.indexOf(h), 1);
    if (list.length === 0) this.#held.delete(h.resource);
  }

  /**
   * Drops one count from each entry; entries nobody counts on leave the table. The record
   * of grants is written in the change that takes them out (under the flock): written here,
   * before it, a rebuild meeting the write half done would read the previous record, with
   * the grant, and bring it back once this handle's pending removals were gone, for good. A
   * rebuild while the change waits for the flock brings it back only until that change,
   * which removes it by its sequence number.
   */
  #unref(taken: Held[]): void {
    for (const h of taken) {
      h.refs--;
      if (h.refs > 0) continue;
      this.#unhold(h);
      this.#pendingRemovals.add(h.seq);
    }
    if (this.#pendingRemovals.size > 0) this.#flushRemovals();
  }

  /**
   * Applies pending removals now if the table's flock can be had, or, while another process
   * is inside a change, 1 ms later (unref'd: the process's exit frees its entries anyway).
   * An operating failure (EIO, ENOSPC writing the table) is retried too, at a doubling delay
   * up to FLUSH_RETRY_MS_MAX: a release that waited for this handle's next change kept
   * every waiter in other processes blocked on a lock nobody held, for as long as this
   * process took no other lock.
   */
  #flushRemovals(): void {
    if (this.#closed || this.#pendingRemovals.size === 0) return;
    let done: boolean;
    let failed = false;
    try {
      done = this.#change(() => {});
    } catch {
      done = false;
      failed = true;
    }
    if (done) {
      this.#pendingTimer?.cancel();
      this.#pendingTimer = undefined;
      this.#flushRetryMs = 1;
      return;
    }
    if (this.#pendingTimer) return;
    const delayMs = failed ? (this.#flushRetryMs = Math.min(this.#flushRetryMs * 2, FLUSH_RETRY_MS_MAX)) : 1;
    this.#pendingTimer = armTimer(delayMs, () => {
      this.#pendingTimer = undefined;
      this.#flushRemovals();
    }, { unref: true });
  }

  // --- waiting ---

  #startWaiting(req: Request): void {
    if (!req.waited) {
      req.waited = true;
      this.counters.waits++;
    }
    this.#waiting.add(req);
    if (req.deadline === undefined) {
      const delay = req.timeoutMs - (this.#platform.monotonicMs() - req.startMs);
      req.deadline = armDeadline(delay === Infinity ? undefined : delay, req.signal, (aborted, reason) => this.#finish(req, this.#timeoutError(req, aborted ? reason : undefined)));
    }
    if (!this.#watchTried) {
      this.#watchTried = true;
      try {
        this.#watch = this.#platform.watchDir(this.#dir, () => this.#queueRecheck());
      } catch {
        // the probe covers it
      }
    }
    this.#probe ??= armInterval(PROBE_MS, () => this.#recheck(true));
    // A change between this request's table change and the watch's start has no event.
    this.#queueRecheck();
  }

  /**
   * No request waits: no probe. The file watch stays for {@link WATCH_IDLE_MS} more, so a
   * handle that waits again soon (a lock passed back and forth) does not pay for a new watch
   * each time, then goes: a watch may keep a runtime's event loop alive.
   */
  #stopProbesIfIdle(): void {
    if (this.#waiting.size > 0) return;
    this.#probe?.cancel();
    this.#probe = undefined;
    if (!this.#watch || this.#watchIdle) return;
    this.#watchIdle = armTimer(WATCH_IDLE_MS, () => {
      this.#watchIdle = undefined;
      if (this.#waiting.size === 0) this.#closeWatch();
    }, { unref: true });
  }

  #closeWatch(): void {
    this.#watchIdle?.cancel();
    this.#watchIdle = undefined;
    try {
      this.#watch?.close();
    } catch {
      // already closed by the runtime
    }
    this.#watch = undefined;
    this.#watchTried = false;
  }

  #queueRecheck(): void {
    if (this.#recheckQueued || this.#waiting.size === 0) return;
    this.#recheckQueued = true;
    queueMicrotask(() => {
      this.#recheckQueued = false;
      this.#recheck(false);
    });
  }

  /**
   * Looks at the table for this handle's waiting requests: granted ones go on with their
   * next step; victims fail with DEADLOCK. With `probe`, also checks the leases of the
   * owners that block them, and changes the table if one is dead (which drops it and
   * grants what its death frees).
   */
  #recheck(probe: boolean): void {
    if (this.#closed || this.#waiting.size === 0) return;
    let t: LockTable | undefined;
    try {
      t = this.#read();
    } catch {
      return; // tried again at the next event or probe
    }
    const me = this.#lease?.id;
    const bySeq = new Map((t?.entries ?? []).filter((e) => e.owner === me).map((e) => [e.seq, e]));
    if (!t || [...this.#waiting].some((r) => r.waitingSeq !== undefined && bySeq.get(r.waitingSeq)?.resource !== r.steps[r.next]!.resource)) {
      // Only this handle removes its entries: the table was deleted, cut or overwritten
      // from outside. A change puts back what it lost (#restoreLost), then look again.
      try {
        if (this.#change(() => {})) this.#queueRecheck();
      } catch {
        // tried again at the next probe
      }
      return;
    }
    let deadBlocker = false;
    let granted = false;
    for (const req of [...this.#waiting]) {
      if (req.waitingSeq === undefined) continue; // between steps, or retrying a busy table
      const e = bySeq.get(req.waitingSeq)!;
      if (e.flags & VICTIM) {
        this.#finish(req, this.#deadlockError(req, e.note));
      } else if (e.flags & GRANTED) {
        granted = true; // taken below, under the flock (rule 2)
        req.blockers = []; // whoever blocked it gave way: only the flock stands between it and the grant
        req.grantUntaken = true; // until it is taken (or a later look shows it otherwise)
      } else {
        req.grantUntaken = false;
        req.blockers = blockersOf(t, e);
        if (probe && req.blockers.some((b) => !this.#ownerAlive(b.owner))) deadBlocker = true;
      }
    }
    if (granted) this.#takeGrantsLocked();
    if (deadBlocker) {
      try {
        if (this.#change(() => {})) this.#queueRecheck();
      } catch {
        // tried again at the next probe
      }
    }
  }

  /**
   * Takes the grants of this handle's waiting requests under the table's flock: those still
   * granted in the table are recorded in the lease before any request goes on. A busy
   * flock leaves them for the next look.
   */
  #takeGrantsLocked(): void {
    const taken: Request[] = [];
    let done: boolean;
    try {
      done = this.#change((t) => {
        const me = this.#lease?.id;
        for (const req of this.#waiting) {
          if (req.waitingSeq === undefined || req.settled) continue;
          const e = t.entries.find((x) => x.seq === req.waitingSeq && x.owner === me);
          if (!e || !(e.flags & GRANTED) || e.resource !== req.steps[req.next]!.resource) continue;
          this.#takeStep(req, e);
          taken.push(req);
        }
      }, true);
    } catch (e) {
      // The record may not say what was taken (its write, or the table's, failed): those
      // requests fail rather than go on unrecorded, and give back what they took. Grants
      // not taken yet stay in the table for the next look.
      for (const req of taken) this.#finish(req, this.#asLockError(e, req));
      return;
    }
    // The flock was had: a grant not taken is gone from the table (rebuilt meanwhile), not kept from this handle by a busy flock.
    if (done) for (const req of this.#waiting) req.grantUntaken = false;
    for (const req of taken) this.#advance(req);
  }

  // --- the table ---

  /**
   * This handle's owner id, taken at its first lock: its mark in `leases/`, then its lease in
   * `locks/` (rule 7: the mark first, so that whenever the lease may hold grants, the mark
   * says that the owner lives).
   */
  #owner(): string {
    if (this.#lease) return this.#lease.id;
    try {
      this.#platform.mkdir(this.#leasesDir, this.#options.dirMode);
      this.#mark ??= this.#makeMark();
      this.#register();
    } catch (e) {
      // Unregistered, the mark would keep every rebuild waiting (rule 7): given up until the next lock.
      this.#dropMark();
      throw this.#ioError(e, `Taking a lock owner's lease in "${this.#dir}"`);
    }
    if (this.#dirId !== undefined && !this.#registrationCheck && !this.#closed) {
      this.#armRegistrationCheck(REGISTRATION_CHECK_MS);
    }
    return this.#lease!.id;
  }

  /**
   * Makes and locks this owner's mark, `leases/<id>.lockowner` (rule 7): made and locked
   * under another name, then renamed into place, so that a mark is never unlocked while its
   * owner lives (a sweep would take it for a dead owner's and remove it), as a lease is.
   */
  #makeMark(): { id: string; path: string; handle: FileHandle } {
    // A sweep may remove the fresh file in the moment between its open and its lock: the
    // rename then finds it gone. Make another; a sweep cannot take a locked one.
    for (let attempt = 1; ; attempt++) {
      try {
        return this.#makeMarkOnce();
      } catch (e) {
        if (attempt >= REGISTER_ATTEMPTS_MAX || !(e instanceof PortError && e.errno === "ENOENT")) throw e;
      }
    }
  }

  #makeMarkOnce(): { id: string; path: string; handle: FileHandle } {
    const id = newLeaseId(this.#platform);
    const path = joinPath(this.#leasesDir, id + LOCK_OWNER_MARK);
    const fresh = `${path}-new`;
    const handle = this.#platform.open(fresh, { create: true, exclusive: true, mode: this.#options.mode });
    try {
      // Locked by a sweep probing it right now: it removes it; another is made (ENOENT).
      if (!handle.tryLock(true)) throw new PortError("ENOENT", "flock", fresh);
      handle.write(new TextEncoder().encode(JSON.stringify({ pid: this.#platform.pid, runtime: this.#platform.runtime, startedAtMs: this.#platform.wallClockMs() })), 0);
      this.#platform.rename(fresh, path);
    } catch (e) {
      closeQuietly(handle);
      try {
        this.#platform.unlink(fresh);
      } catch {
        // not there: nothing to clean
      }
      throw e;
    }
    return { id, path, handle };
  }

  /**
   * Registers this owner in the `locks/` directory the path names now (made if missing): its
   * directory lock opened, its lease made there under its mark's id, holding its record of
   * grants before it appears (a rebuild that sees the lease reads every grant of it). The
   * directory is the one at the path before and after the lock's open, and again after the
   * lease is made; otherwise (replaced meanwhile) it starts over. Throws when it cannot.
   */
  #register(): void {
    for (let attempt = 1; ; attempt++) {
      try {
        if (this.#registerOnce()) return;
      } catch (e) {
        // ENOENT: the directory deleted again as it was made or registered in.
        if (attempt >= REGISTER_ATTEMPTS_MAX || !(e instanceof PortError && e.errno === "ENOENT")) throw e;
        continue;
      }
      if (attempt >= REGISTER_ATTEMPTS_MAX) throw new TxtDbError("IO", `Registering a lock owner in "${this.#dir}" failed: the directory was replaced as it was registered in, ${attempt} times`);
    }
  }

  /** One try of {@link #register}: false when the directory was replaced meanwhile. */
  #registerOnce(): boolean {
    this.#platform.mkdir(this.#dir, this.#options.dirMode);
    let dirId: FileIdentity | undefined;
    let dirLock: LockHandle | undefined;
    let lease: ProcessLease | undefined;
    try {
      if (this.#platform.openDirectoryLock) {
        dirId = identityAt(this.#platform, this.#dir);
        dirLock = this.#platform.openDirectoryLock(this.#dir);
        if (!sameFile(dirId, identityAt(this.#platform, this.#dir))) return false;
      }
      this.#sweepDeadLeases();
      lease = ProcessLease.create(this.#platform, this.#dir, this.#options.mode, { id: this.#mark!.id, prepare: (h) => this.#writeRecord(h, true) });
      // Made in another directory than the one locked (replaced meanwhile): left there
      // unlocked, it is not this owner's registration (rule 7), and goes at a sweep.
      if (dirLock && !sameFile(dirId, identityAt(this.#platform, this.#dir))) return false;
      this.#lease = lease;
      const info = lease.handle.info();
      this.#leaseFileId = { ino: info.ino, dev: info.dev };
      this.#dirLockHandle = dirLock;
      this.#dirId = dirLock ? dirId : undefined;
      return true;
    } finally {
      if (this.#lease !== lease || lease === undefined) {
        if (lease) closeQuietly(lease.handle);
        if (dirLock) closeQuietly(dirLock);
      }
    }
  }

  /**
   * True while this owner is registered where the store's `locks/` is now: the directory at
   * the path is the one it registered in (rule 7). Where the port cannot tell, true.
   */
  #dirCurrent(): boolean {
    if (this.#dirId === undefined) return true;
    try {
      return sameFile(this.#dirId, identityAt(this.#platform, this.#dir));
    } catch {
      return false;
    }
  }

  /**
   * Registers this owner again in the `locks/` the path names now (rule 7): its directory
   * was deleted or replaced (`rm -rf locks/`), or its lease deleted. Its lease there holds
   * its grants (the record) before it appears, under the same id, so entries of the table
   * that name it still do; the handles of the old directory are closed (never unlinked by
   * path: the path names the new ones). False when it cannot now (tried again).
   */
  #move(): boolean {
    const old = { lease: this.#lease, dirLock: this.#dirLockHandle, table: this.#handle };
    try {
      this.#register();
    } catch {
      return false;
    }
    if (old.lease) closeQuietly(old.lease.handle);
    if (old.dirLock && old.dirLock !== this.#dirLockHandle) closeQuietly(old.dirLock);
    if (old.table) closeQuietly(old.table);
    this.#handle = undefined;
    this.#seenGeneration = 0;
    for (const h of this.#probeHandles.values()) closeQuietly(h);
    this.#probeHandles.clear();
    if (this.#watch) this.#closeWatch(); // it watched the old directory; the next wait watches the new one
    return true;
  }

  /**
   * The periodic check of rule 7: a directory deleted or replaced, or this owner's lease
   * gone from it, and this owner registers again; what it holds and waits for goes back into
   * the table at once where one can be had (else a rebuild reads its record).
   */
  #checkRegistration(): void {
    if (this.#closed || !this.#lease) return;
    const now = this.#platform.monotonicMs();
    if (this.#dirCurrent() && pathNamesFile(this.#platform, this.#lease.path, this.#leaseFileId)) {
      if (this.#registrationPeriodMs !== REGISTRATION_CHECK_MS && now >= this.#registrationFastUntilMs) this.#armRegistrationCheck(REGISTRATION_CHECK_MS);
      return;
    }
    if (!this.#move()) {
      // Nowhere to register (the store's directory itself gone, this handle left open): at
      // the slow rate, or a forgotten handle would spin at the fast one for as long as it lives.
      if (this.#registrationPeriodMs !== REGISTRATION_CHECK_MS) this.#armRegistrationCheck(REGISTRATION_CHECK_MS);
      return;
    }
    this.#registrationFastUntilMs = now + REGISTRATION_FAST_FOR_MS;
    if (this.#registrationPeriodMs !== REGISTRATION_CHECK_FAST_MS) this.#armRegistrationCheck(REGISTRATION_CHECK_FAST_MS);
    if (this.#heldBySeq.size > 0 || this.#waiting.size > 0 || this.#pendingRemovals.size > 0) {
      try {
        this.#change(() => {});
      } catch {
        // the next change or check tries again
      }
    }
  }

  /**
   * Removes lease files of dead owners (a crash leaves them), and dead owners' marks in
   * `leases/`; bounded per sweep. A lease whose owner's mark is held is kept: its owner is
   * registering again (rule 7), and the path may name its new lease by the time of the unlink.
   */
  #sweepDeadLeases(): void {
    this.#sweepDir(this.#dir, (name) => isLeaseFile(name), (name) => !this.#markHeld(name.slice(0, name.length - ".lease".length)));
    this.#sweepDir(this.#leasesDir, (name) => name.endsWith(LOCK_OWNER_MARK) || name.endsWith(`${LOCK_OWNER_MARK}-new`), () => true);
  }

  #sweepDir(dir: string, match: (name: string) => boolean, mayRemove: (name: string) => boolean): void {
    let names: string[];
    try {
      names = this.#platform.readdir(dir);
    } catch {
      return;
    }
    let n = 0;
    for (const name of names) {
      if (!match(name) || n++ >= LEASE_SWEEP_MAX) continue;
      if (this.#mark && name === this.#mark.id + LOCK_OWNER_MARK) continue;
      const path = joinPath(dir, name);
      let h: FileHandle;
      try {
        h = this.#platform.open(path, { readOnly: true });
      } catch {
        continue;
      }
      try {
        if (h.tryLock(false)) {
          h.unlock();
          if (mayRemove(name)) this.#platform.unlink(path);
        }
      } catch {
        // left for the next sweep
      } finally {
        closeQuietly(h);
      }
    }
  }

  /**
   * True while `owner`'s mark in `leases/` is held (rule 7), or cannot be told free (a mark
   * that cannot be opened for another reason than its absence). A mark found free is removed.
   */
  #markHeld(owner: string): boolean {
    if (owner === this.#mark?.id) return true;
    if (!/^[0-9a-f]{16}$/.test(owner)) return false;
    const path = joinPath(this.#leasesDir, owner + LOCK_OWNER_MARK);
    let h: FileHandle;
    try {
      h = this.#platform.open(path, { readOnly: true });
    } catch (e) {
      return !leaseGone(e);
    }
    try {
      if (!h.tryLock(false)) return true;
      h.unlock();
    } catch {
      return true;
    } finally {
      closeQuietly(h);
    }
    if (!this.#options.readOnly) {
      try {
        this.#platform.unlink(path);
      } catch {
        // the next sweep
      }
    }
    return false;
  }

  /**
   * Rule 7's condition for a rebuild: every owner whose mark in `leases/` is held has a held
   * lease in this `locks/` (its record is there to rebuild from). Undefined when so; else
   * why not, for a person. A `leases/` that cannot be listed cannot tell: as before marks.
   */
  #unregisteredOwners(registered: Set<string>): string | undefined {
    let names: string[];
    try {
      names = this.#platform.readdir(this.#leasesDir);
    } catch {
      return undefined;
    }
    const missing: string[] = [];
    let n = 0;
    for (const name of names) {
      if (!name.endsWith(LOCK_OWNER_MARK)) continue;
      const owner = name.slice(0, name.length - LOCK_OWNER_MARK.length);
      if (owner === this.#mark?.id || !/^[0-9a-f]{16}$/.test(owner)) continue;
      if (++n > REBUILD_LEASES_MAX) return `more than ${REBUILD_LEASES_MAX} lock owners' marks in "${this.#leasesDir}"`;
      if (!this.#markHeld(owner)) continue;
      if (this.#leaseHeld(owner)) {
        registered.add(owner);
        continue;
      }
      const info = readLeaseInfo(this.#platform, joinPath(this.#leasesDir, name));
      missing.push(info ? `pid ${info.pid} (${info.runtime})` : `owner ${owner}`);
    }
    if (missing.length === 0) return undefined;
    return `the "${this.#dir}" directory was deleted or replaced while ${missing.join(", ")} held or waited for locks there, and ${missing.length === 1 ? "it has" : "they have"} not registered in the new one yet ` +
      "(a live owner does within a few ms; one that does not is stopped or blocked: end it, or wait for it)";
  }

  /**
   * The table file's handle, opened to write (`create`) or to read. With `check`, a handle
   * that no longer is the file the path names (deleted or replaced from outside) is
   * reopened: every process must use that one, or those that had the old one open would
   * exclude nobody else.
   */
  #tableHandle(create: boolean, check = false): FileHandle | undefined {
    if (this.#handle && check && !this.#handleCurrent()) {
      closeQuietly(this.#handle);
      this.#handle = undefined;
    }
    if (this.#handle && (this.#handleWritable || !create)) return this.#handle;
    if (this.#handle) closeQuietly(this.#handle); // opened to read by locks(); a change writes
    this.#handle = undefined;
    try {
      this.#handle = this.#platform.open(this.#tablePath, create ? { create: true, mode: this.#options.mode } : { readOnly: true });
      this.#handleWritable = create;
      const info = this.#handle.info();
      this.#handleId = { ino: info.ino, dev: info.dev };
    } catch (e) {
      if (!create && e instanceof PortError && e.errno === "ENOENT") return undefined;
      throw storeFileError(e, this.#tablePath) ?? this.#ioError(e, `Opening the lock table "${this.#tablePath}"`);
    }
    return this.#handle;
  }

  /**
   * True while the open table handle is the file the table's path names (one identity
   * check, without timestamps where the port can: the table is written at every change).
   */
  #handleCurrent(): boolean {
    try {
      const named = identityAt(this.#platform, this.#tablePath);
      return named !== undefined && named.ino === this.#handleId.ino && named.dev === this.#handleId.dev;
    } catch {
      return false;
    }
  }

  /**
   * One change of the table, under its flock: read (or rebuild a lost table from the owners'
   * records), apply pending removals, `fn`, settle, record this handle's grants in its lease,
   * write the other slot. Returns false when the flock stayed busy past the spin bound.
   * With `quiet`, a table found valid with nothing to remove is not written: `fn` only reads
   * it (and may take grants it finds), and the grants are recorded (rule 2 above).
   */
  #change(fn: (t: LockTable) => void, quiet = false, moved = false): boolean {
    // Handles opened now (by path) may be of a directory that replaced this owner's since it registered.
    const opening = this.#handle === undefined || !this.#handleWritable || this.#dirLockHandle === undefined;
    let h: FileHandle;
    try {
      h = this.#tableHandle(true)!;
    } catch (e) {
      // The directory gone under this owner (rule 7): registered in a new one, it goes on
      // there; gone again right after, the change is tried again later, as for a busy flock.
      if (this.#dirId === undefined || this.#dirCurrent()) throw e;
      if (moved) return false;
      return this.#move() && this.#change(fn, quiet, true);
    }
    const dirLock = this.#dirLock();
    let x: LockHandle = dirLock ?? h;
    if (!this.#tryFlock(x)) return false;
    const current = this.#handleCurrent();
    if ((opening || !current) && !this.#dirCurrent()) {
      // Rule 7: the directory this owner is registered in was deleted or replaced (the table
      // at the path is another file, which is how it shows here at no extra cost): nothing
      // is changed in it; the owner registers in the one at the path, and changes that.
      try {
        x.unlock();
      } catch {
        // its handle is closed by the move
      }
      if (moved || !this.#move()) return false;
      return this.#change(fn, quiet, true);
    }
    if (!current) {
      // Deleted or replaced: write the file the path names now (where the file is the
      // exclusion, lock that one: checked under the flock, so no change can be lost to the
      // old file after this).
      if (dirLock) {
        let failure: unknown;
        try {
          h = this.#tableHandle(true, true)!;
        } catch (e) {
          failure = e;
        }
        // Opened by path: in this owner's directory only if it is still the one at the path
        // now (rule 7; replaced since the check above, the file may be the next one's table).
        if (failure !== undefined || !this.#dirCurrent()) {
          x.unlock();
          if (failure !== undefined && (this.#dirId === undefined || this.#dirCurrent())) throw failure;
          return false; // the next try registers again
        }
      } else {
        h.unlock();
        h = this.#tableHandle(true, true)!;
        x = h;
        if (!this.#tryFlock(x)) return false;
      }
    }
    try {
      const seen: SlotsSeen = { generationMax: this.#seenGeneration };
      const found = readWholeTable(h, seen);
      if (found && quiet && this.#pendingRemovals.size === 0 && !this.#hasStrays(found)) {
        fn(found);
        this.#seenGeneration = found.generation; // the table now, even if lower than one seen before a rebuild
        this.#recordGrants();
        return true;
      }
      const t = found ?? this.#rebuildFromRecords();
      if (!t) return false; // a live owner's record cannot be read now: tried again, as for a busy flock
      // Rule 7: the records (and the owners' registrations) were read by path; they are this
      // directory's only if it is still the one at the path now, after them (a directory
      // deleted is never back). Otherwise they may be the next one's, without the grants of
      // owners still here: tried again, registered there.
      if (!found && !this.#dirCurrent()) return false;
      // A rebuilt table numbers on above every generation still in the file or seen by this
      // handle (restarting at 1, it would lose to an older table left in the other slot): it
      // is written to both slots, the even generation to the first, then the odd one to the
      // second (rule 5: both valid, as after any second change).
      const rebuilt = !found;
      if (rebuilt) t.generation = seen.generationMax + (seen.generationMax % 2 === 0 ? 2 : 1); // even: the first slot's; +1 below
      // Rule 6: this handle's entries are only what it holds and what its requests wait
      // for; any other entry of its own came from an older table or record (a stray).
      this.#dropStrays(t);
      if (this.#lease) {
        t.owners.set(this.#lease.id, { id: this.#lease.id, pid: this.#platform.pid, runtime: this.#platform.runtime });
        this.#restoreLost(t);
      }
      fn(t);
      this.#settle(t);
      t.generation++;
      let bytes: Uint8Array;
      try {
        bytes = encodeTable(t);
      } catch (e) {
        if (!(e instanceof TableFullError)) throw e;
        // Entries of dead owners that blocked nobody are still in the table (settle drops
        // an owner when it blocks a waiter); drop every dead owner's before giving up.
        try {
          if (!this.#dropDeadOwners(t)) throw e;
          this.#settle(t);
          bytes = encodeTable(t);
        } catch (e2) {
          if (e2 instanceof TableFullError) throw new TxtDbError("LIMIT", `The lock table is full (${e2.message}): too many locks held and waited for at once; release some`);
          throw e2;
        }
      }
      this.#recordGrants(); // rule 1: before the table
      if (rebuilt) h.write(paddedForReads(encodeTable({ ...t, generation: t.generation - 1 })), 0);
      h.write(paddedForReads(bytes), (t.generation % 2) * SLOT_BYTES);
      this.#seenGeneration = t.generation;
      this.#pendingRemovals.clear();
    } finally {
      try {
        x.unlock();
      } catch {
        // closing the handle drops it; the next change reopens
        closeQuietly(x);
        if (x === h) this.#handle = undefined;
        else this.#dirLockHandle = undefined;
      }
    }
    this.#unregistered = undefined;
    if (this.#waiting.size > 0) this.#queueRecheck();
    return true;
  }

  /**
   * The flock that makes changes of the table exclusive: the `locks/` directory's, where the
   * port can lock a directory (every adapter here), else the table file's. A file's flock
   * excludes nobody once the file is deleted: a change on the old file and a rebuild on a new
   * one could then run at once, and the rebuild miss a grant the change was recording (two X
   * holders, seen under a load of three runtimes with the table deleted every few ms). The
   * directory itself deleted (`rm -rf locks/`) is rule 7's: every change checks, under this
   * flock, that its directory is the one at the path whenever the table is not.
   */
  #dirLock(): LockHandle | undefined {
    if (this.#dirLockHandle === undefined && this.#platform.openDirectoryLock) this.#dirLockHandle = this.#platform.openDirectoryLock(this.#dir);
    return this.#dirLockHandle;
  }

  /**
   * Writes the grants this handle holds into its lease ({@link GRANTS_RECORD_AT}), if they
   * changed since its last record, into the slot the last record does not occupy (rule 3).
   */
  #recordGrants(): void {
    const lease = this.#lease;
    if (!lease) return;
    if (this.#heldVersion === this.#recorded) return;
    this.#writeRecord(lease.handle, false);
  }

  /**
   * Writes the record of this handle's grants into `handle` (a lease), in the slot after the
   * last record's; with `fresh` (a new lease file, the first slot never written) in the
   * second slot, which a valid record needs (readTableFrom: a file without it was cut).
   */
  #writeRecord(handle: FileHandle, fresh: boolean): void {
    const version = this.#heldVersion;
    this.#recordOwner ??= encodeRecordOwner({ id: this.#mark?.id ?? this.#lease!.id, pid: this.#platform.pid, runtime: this.#platform.runtime });
    let generation = this.#recordGeneration + 1;
    if (fresh && generation % 2 === 0) generation++;
    const record = encodeRecord(generation, this.#recordOwner, this.#heldBySeq, this.#platform.wallClockMs());
    handle.write(record, GRANTS_RECORD_AT + (generation % 2) * RECORD_SLOT_BYTES);
    this.#recordGeneration = generation;
    this.#recorded = version;
  }

  /**
   * The table rebuilt from the grants recorded in the leases of the live owners other than
   * this handle (its own come back through #restoreLost): for a change that found no valid
   * table, the file deleted, cut or overwritten from outside (or never written yet, when the
   * records are empty). A record that is not valid (garbage), or names another owner than
   * its file, adds nothing: its owner puts its grants back at its own next change, as before
   * records. Undefined, with `whole`, when the record of a live owner cannot be read at all
   * (its lease cannot be opened: EMFILE, EACCES; a read fails): a table rebuilt without it
   * would grant what it holds, so the change waits and tries again (as for a busy flock).
   */
  #rebuildFromRecords(whole = true): LockTable | undefined {
    const owners = new Set<string>();
    if (whole) {
      // Rule 7: a live owner not registered here may hold grants recorded only in a
      // deleted directory; nothing is rebuilt (and so granted) until it is. Those found
      // registered are read whether or not the listing below still shows their lease (one
      // being deleted with its directory, `rm -rf` under way, is read from its open handle).
      const gate = this.#unregisteredOwners(owners);
      this.#unregistered = gate;
      if (gate !== undefined) return undefined;
    }
    const t = emptyTable();
    let names: string[];
    try {
      names = this.#platform.readdir(this.#dir);
    } catch {
      return whole ? undefined : t;
    }
    for (const name of names) if (isLeaseFile(name)) owners.add(name.slice(0, name.length - ".lease".length));
    let live = 0;
    for (const owner of owners) {
      if (owner === this.#lease?.id || !/^[0-9a-f]{16}$/.test(owner)) continue;
      // Dead leases (junk included) are removed as they are probed: only live owners count.
      if (!this.#ownerAlive(owner)) continue;
      if (++live > REBUILD_LEASES_MAX) {
        if (whole) return undefined; // never rebuilt without a live owner's grants
        continue;
      }
      const h = this.#probeHandles.get(owner);
      let record: LockTable | undefined;
      try {
        if (!h) throw new Error("the lease could not be opened");
        record = readRecordFrom(h);
      } catch {
        if (whole) return undefined;
        continue;
      }
      if (!record) continue;
      const o = record.owners.get(owner);
      if (!o || record.owners.size !== 1) continue;
      for (const e of record.entries) {
        if (e.owner !== owner) continue;
        t.entries.push({ ...e, flags: GRANTED, note: "" });
        t.nextSeq = Math.max(t.nextSeq, e.seq + 1);
      }
      t.owners.set(owner, o);
    }
    return t;
  }

  /**
   * What a rebuild would make of a lost table now, this handle's own grants included; not
   * written (a read never changes the table). Undefined when the records hold nothing.
   */
  #lostTableView(): LockTable | undefined {
    const t = this.#rebuildFromRecords(false)!;
    const me = this.#lease?.id;
    if (me !== undefined && this.#heldBySeq.size > 0) {
      t.owners.set(me, { id: me, pid: this.#platform.pid, runtime: this.#platform.runtime });
      const now = this.#platform.wallClockMs();
      for (const h of this.#heldBySeq.values()) t.entries.push({ seq: h.seq, owner: me, resource: h.resource, mode: h.mode, flags: GRANTED, sinceWallMs: now, note: "" });
    }
    return t.entries.length > 0 ? t : undefined;
  }

  /** True when `t` holds an entry of this handle that it neither holds nor waits for (rule 6). */
  #hasStrays(t: LockTable): boolean {
    const me = this.#lease?.id;
    return me !== undefined && t.entries.some((e) => e.owner === me && !this.#ownsEntry(e));
  }

  /** Takes out of `t` the entries of this handle that it neither holds nor waits for (rule 6). */
  #dropStrays(t: LockTable): void {
    const me = this.#lease?.id;
    if (me !== undefined) t.entries = t.entries.filter((e) => e.owner !== me || this.#ownsEntry(e));
  }

  /** True when `e` (an entry of this handle's) is a grant it holds or the wait of one of its requests. */
  #ownsEntry(e: LockEntry): boolean {
    const h = this.#heldBySeq.get(e.seq);
    if (h) return h.resource === e.resource && h.mode === e.mode && (e.flags & GRANTED) !== 0;
    if (this.#pendingRemovals.has(e.seq)) return false;
    for (const r of this.#waiting) {
      if (r.waitingSeq === e.seq) return r.steps[r.next]!.resource === e.resource && r.steps[r.next]!.mode === e.mode;
    }
    return false;
  }

  /** Drops the entries of every owner whose lease is free; true if there were any. */
  #dropDeadOwners(t: LockTable): boolean {
    const dead = new Set<string>();
    for (const e of t.entries) if (!dead.has(e.owner) && e.owner !== this.#lease?.id && !this.#ownerAlive(e.owner)) dead.add(e.owner);
    if (dead.size === 0) return false;
    dropOwners(t, dead);
    return true;
  }

  /**
   * Puts back this handle's grants and waits that the table lost (its file was deleted,
   * cut or overwritten from outside): a grant stays a grant (whatever was granted to others
   * meanwhile waits behind it from now on), a wait queues again at the back. Each gets a new
   * seq: a new table numbers from 1 again, so an old seq may name another entry there.
   */
  #restoreLost(t: LockTable): void {
    if (this.#heldBySeq.size === 0 && this.#waiting.size === 0) return;
    const me = this.#lease!.id;
    const mine = new Map<number, LockEntry>();
    for (const e of t.entries) if (e.owner === me) mine.set(e.seq, e);
    const kept = (seq: number, resource: string, mode: number) => {
      const e = mine.get(seq);
      return e !== undefined && e.resource === resource && e.mode === mode;
    };
    const lostHeld = [...this.#heldBySeq.values()].filter((h) => !kept(h.seq, h.resource, h.mode));
    const lostWaits = [...this.#waiting].filter((r) => r.waitingSeq !== undefined && !kept(r.waitingSeq, r.steps[r.next]!.resource, r.steps[r.next]!.mode));
    if (lostHeld.length === 0 && lostWaits.length === 0) return;
    const now = this.#platform.wallClockMs();
    for (const h of lostHeld) this.#heldBySeq.delete(h.seq);
    this.#heldVersion++;
    for (const h of lostHeld) {
      h.seq = t.nextSeq++;
      this.#heldBySeq.set(h.seq, h);
      t.entries.push({ seq: h.seq, owner: me, resource: h.resource, mode: h.mode, flags: GRANTED, sinceWallMs: now, note: "" });
    }
    for (const r of lostWaits) {
      const step = r.steps[r.next]!;
      r.waitingSeq = t.nextSeq++;
      t.entries.push({ seq: r.waitingSeq, owner: me, resource: step.resource, mode: step.mode, flags: this.#held.has(step.resource) ? CONVERSION : 0, sinceWallMs: now, note: "" });
    }
  }

  /** The entries that keep `entry` from being granted, once the dead owners among them are dropped. */
  #liveBlockers(t: LockTable, entry: LockEntry): LockEntry[] {
    for (;;) {
      const blockers = blockersOf(t, entry);
      const dead = new Set(blockers.filter((b) => b.owner !== this.#lease?.id && !this.#ownerAlive(b.owner)).map((b) => b.owner));
      if (dead.size === 0) return blockers;
      t.entries = t.entries.filter((e) => !dead.has(e.owner));
      for (const d of dead) t.owners.delete(d);
    }
  }

  #settle(t: LockTable): void {
    const me = this.#lease?.id;
    settle(t, this.#platform.wallClockMs(), (owner) => owner === me || this.#ownerAlive(owner));
  }

  #tryFlock(h: LockHandle): boolean {
    if (h.tryLock(true)) {
      this.#flockStuck = false;
      return true;
    }
    if (this.#flockStuck) return false; // one try per attempt while its holder seems stopped (see the top of this file)
    const until = this.#platform.monotonicMs() + TABLE_SPIN_MS_MAX;
    while (this.#platform.monotonicMs() < until) {
      if (h.tryLock(true)) return true;
    }
    this.#flockStuck = true;
    return false;
  }

  /** Set when a spin for the table's flock found it busy to its end; cleared by the next attempt that gets it. */
  #flockStuck = false;

  /**
   * The table as it is now, without the flock (a reader never waits for a change), or
   * undefined when no lock was ever taken in this store. A read that races a change falls
   * back to the other slot (the previous generation) or tries again; after
   * {@link PEEK_ATTEMPTS_MAX} tries it takes the flock.
   */
  #read(): LockTable | undefined {
    const h = this.#tableHandle(false, true);
    if (!h) return undefined;
    for (let i = 0; i < PEEK_ATTEMPTS_MAX; i++) {
      const t = readTableFrom(h);
      if (t && t.generation >= this.#seenGeneration) return this.#seen(t);
      if (!t && h.size() === 0) return emptyTable();
    }
    const x = this.#dirLock() ?? h;
    if (!this.#tryFlock(x)) return undefined;
    try {
      // As a change reads it; lost, it reads as empty (a waiter then changes it: rebuilt).
      // Its generation is the table's now, even below one seen before another handle
      // rebuilt it (lock-free reads would refuse every look from then on).
      const t = readWholeTable(h) ?? emptyTable();
      this.#seenGeneration = t.generation;
      return t;
    } finally {
      x.unlock();
    }
  }

  #seen(t: LockTable): LockTable {
    if (t.generation > this.#seenGeneration) this.#seenGeneration = t.generation;
    return t;
  }

  /**
   * True while `owner` lives (its process lives and its handle is open): its lease in
   * `locks/` is held, or else its mark in `leases/` (rule 7: a lease deleted with its
   * directory is not a dead owner's). A dead owner's lease is removed (where this handle may
   * write).
   */
  #ownerAlive(owner: string): boolean {
    if (owner === this.#lease?.id) return true;
    if (this.#leaseHeld(owner) || this.#markHeld(owner)) return true;
    if (!this.#options.readOnly) {
      try {
        this.#platform.unlink(joinPath(this.#dir, `${owner}.lease`));
      } catch {
        // the sweep at some handle's first lock removes it
      }
    }
    return false;
  }

  /**
   * True while `owner`'s lease in this `locks/` is held (or cannot be told free: it cannot be
   * opened for another reason than its absence); its handle stays cached for its record. A
   * cached handle found free is dropped and the path opened again once: the owner may have
   * made its lease again there (rule 7).
   */
  #leaseHeld(owner: string): boolean {
    if (owner === this.#lease?.id) return true;
    const path = joinPath(this.#dir, `${owner}.lease`);
    for (let attempt = 0; attempt < 2; attempt++) {
      let h = this.#probeHandles.get(owner);
      const cached = h !== undefined;
      if (!h) {
        try {
          h = this.#platform.open(path, { readOnly: true });
        } catch (e) {
          return !leaseGone(e); // a live owner's locks are never dropped on a doubt
        }
        if (this.#probeHandles.size >= PROBE_HANDLES_MAX) {
          for (const old of this.#probeHandles.values()) closeQuietly(old);
          this.#probeHandles.clear();
        }
        this.#probeHandles.set(owner, h);
      }
      let free: boolean;
      try {
        free = h.tryLock(false);
        if (free) h.unlock();
      } catch {
        return true; // cannot tell: never drop a live owner's locks on a doubt
      }
      if (!free) return true;
      closeQuietly(h);
      this.#probeHandles.delete(owner);
      if (!cached) return false;
    }
    return false;
  }

  // --- errors ---

  #timeoutError(req: Request, cause?: unknown): TxtDbError {
    const waitedMs = Math.round(this.#platform.monotonicMs() - req.startMs);
    const t = this.#safeRead();
    const blockers = req.blockers.map((b) => {
      const o = t?.owners.get(b.owner);
      return { resource: showKey(b.resource), mode: LOCK_MODES[b.mode]!, pid: o?.pid ?? -1, runtime: o?.runtime ?? "?", waiting: !(b.flags & GRANTED) };
    });
    const who = blockers.length
      ? `; ${blockers.map((b) => `pid ${b.pid} (${b.runtime}) ${b.waiting ? "waits ahead in" : "holds"} ${b.mode} on ${describe(b.resource)}`).join(", ")}`
      : "";
    const why = (signalAborted(req.signal) ? "its signal aborted the wait" : req.tryOnce ? "it is not free now (timeoutMs: 0 tries once)" : `not granted within ${req.timeoutMs} ms`) +
      (this.#unregistered !== undefined ? `, and nothing can be granted while ${this.#unregistered}` : "") +
      (req.grantUntaken || req.tableBusy
        ? `; ${req.grantUntaken ? "the lock table granted it, but its " : "the lock table's "}flock (of "${this.#dir}") stayed busy, so it could not be ${req.grantUntaken ? "taken" : "asked for"}: another process is inside a change of the table (one stopped there, SIGSTOP or a debugger, holds it until it goes on or ends)`
        : "");
    return new TxtDbError(
      "LOCK_TIMEOUT",
      `Cannot lock ${describe(req.key)} in mode ${req.mode}: ${why}${who}. See db.locks() or \`txtdb locks <dir>\`; raise timeoutMs, or end the holder`,
      { ...(cause !== undefined ? { cause } : {}), details: { resource: req.key, mode: req.mode, waitedMs, blockers } },
    );
  }

  #deadlockError(req: Request, note: string): TxtDbError {
    let cycle: { resource: Key; mode: LockMode; pid: number; runtime: string }[] = [];
    try {
      const parsed = JSON.parse(note) as CycleNote[];
      cycle = parsed.map((c) => ({ resource: showKey(hexToBinary(String(c.r))), mode: c.m, pid: Number(c.p), runtime: String(c.t) }));
    } catch {
      // an unreadable note: the code still says what happened
    }
    const text = cycle.map((c) => `pid ${c.pid} (${c.runtime}) waits for ${c.mode} on ${describe(c.resource)}`).join(" -> ");
    return new TxtDbError(
      "DEADLOCK",
      `Cannot lock ${describe(req.key)} in mode ${req.mode}: deadlock (${text} -> back to the first); this request began waiting last, so it gives way. ` +
        "The locks this handle holds are kept: release some, then try again",
      { details: { resource: req.key, mode: req.mode, cycle } },
    );
  }

  #asLockError(e: unknown, _req: Request): TxtDbError {
    if (e instanceof TxtDbError) return e;
    return this.#ioError(e, "Changing the lock table") as TxtDbError;
  }

  #ioError(e: unknown, what: string): unknown {
    if (e instanceof TxtDbError) return e;
    if (e instanceof PortError) return new TxtDbError("IO", `${what} failed: ${e.message}`, { cause: e });
    return e;
  }

  #safeRead(): LockTable | undefined {
    try {
      return this.#read();
    } catch {
      return undefined;
    }
  }
}

/** True when `a` and `b` are one file (both known). */
function sameFile(a: FileIdentity | undefined, b: FileIdentity | undefined): boolean {
  return a !== undefined && b !== undefined && a.ino === b.ino && a.dev === b.dev;
}

function closeQuietly(h: LockHandle): void {
  try {
    h.close();
  } catch {
    // nothing more to release
  }
}

/**
 * A read buffer per call site would be allocated (and zeroed) twice per table change, which
 * was the largest cost of an uncontended lock; reads are synchronous, so one buffer serves.
 */
let readBuffer = new Uint8Array(READ_CHUNK_BYTES);

/**
 * `slot`, padded to READ_CHUNK_BYTES when it is shorter. The second slot ends the file: a
 * read of one chunk there came back short, and the port then read again to find the end
 * (one system call more in every change). Past its body a slot's bytes are never read.
 */
function paddedForReads(slot: Uint8Array): Uint8Array {
  if (slot.length >= READ_CHUNK_BYTES) return slot;
  padBuffer.set(slot);
  return padBuffer;
}
const padBuffer = new Uint8Array(READ_CHUNK_BYTES);

/** An owner's record of its grants, read from its lease (rule 3; see GRANTS_RECORD_AT); undefined when neither slot is valid; throws when the read fails. */
function readRecordFrom(h: FileHandle): LockTable | undefined {
  return readTableFrom(h, GRANTS_RECORD_AT, RECORD_SLOT_BYTES);
}

/**
 * Reads both slots (at `start` and `start + slotBytes`) and decodes the newest valid one;
 * undefined when neither is valid, and when the second slot is missing altogether while
 * the first is valid. The first table goes to the first slot, then the second (rule 5; an
 * older release wrote generation 1 to the second alone), so a valid first slot means the
 * second was written once: missing, the file was cut (`truncate`, a garbage file written over
 * it), perhaps between the two reads, after the first slot was read and before the second,
 * which held the newer table. The first slot is then an older table, and a change built on
 * it would bring back what the newer one had removed (a lock given back, granted again to
 * nobody): seen under a load of three runtimes with the table cut every few ms. Such a file
 * is lost, and rebuilt from the owners' records like a garbled one.
 */
export function readTableFrom(h: FileHandle, start = 0, slotBytes = SLOT_BYTES, seen?: SlotsSeen): LockTable | undefined {
  let best: LockTable | undefined;
  let secondMissing = false;
  if (seen) {
    seen.generations = [0, 0];
    seen.firstBlank = false;
  }
  for (let slot = 0; slot < 2; slot++) {
    const at = start + slot * slotBytes;
    const n = h.read(readBuffer.subarray(0, READ_CHUNK_BYTES), at);
    if (slot === 1 && n === 0) secondMissing = true;
    if (slot === 0 && seen) seen.firstBlank = n === 0 || readBuffer.subarray(0, Math.min(n, SLOT_HEADER_BYTES)).every((b) => b === 0);
    const header = readSlotHeader(readBuffer.subarray(0, n));
    if (!header) continue;
    const older = best !== undefined && header.generation <= best.generation;
    if (older && !seen) continue; // only a change (seen) needs to know that the older slot is whole
    const total = SLOT_HEADER_BYTES + header.bodyBytes;
    if (total > n) {
      if (readBuffer.length < total) readBuffer = new Uint8Array(total);
      if (h.read(readBuffer.subarray(0, total), at) < total) continue;
    }
    if (older) {
      seen!.generations![slot] = slotGeneration(readBuffer.subarray(0, total));
      continue;
    }
    const t = decodeSlot(readBuffer.subarray(0, total));
    if (t) best = t;
    if (t && seen) seen.generations![slot] = t.generation;
  }
  if (seen && best) seen.generationMax = Math.max(seen.generationMax, best.generation);
  return secondMissing ? undefined : best;
}

/** What {@link readTableFrom} saw besides the table: the highest generation, each slot's (0: not valid), whether the first was never written. */
export interface SlotsSeen {
  generationMax: number;
  generations?: [number, number];
  firstBlank?: boolean;
}

/**
 * The table of `h` as a change takes it (rule 5 of src/locks.ts's header), undefined when
 * lost. Under the flock no slot is being written, and every change writes the slot the
 * other does not hold, so both slots are whole and one generation apart (a rebuilt table
 * is written to both): anything else was cut, garbled or written over from outside, and
 * the valid slot left may be the older table, without the last change's grants. The one
 * exception is the first table written by an older release: generation 1 in the second
 * slot alone, the first never written.
 */
function readWholeTable(h: FileHandle, seen: SlotsSeen = { generationMax: 0 }): LockTable | undefined {
  const t = readTableFrom(h, 0, SLOT_BYTES, seen);
  if (!t) return undefined;
  const [g0, g1] = seen.generations!;
  if (g0 > 0 && g1 > 0 && Math.abs(g0 - g1) === 1) return t;
  return g0 === 0 && g1 === 1 && seen.firstBlank ? t : undefined;
}
