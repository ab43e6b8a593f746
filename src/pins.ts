/**
 * Pins: the versions this process may still read, and their publication to other
 * processes through this process's lease (see liveness.ts), so that no compaction anywhere
 * removes a version an open snapshot, transaction or watcher here can read.
 *
 * - The local pin is the oldest of: every open snapshot and transaction, every watcher,
 *   and the head (the newest version this process has seen).
 * - New pins start at the head, so the pin this process publishes only moves up (asserted
 *   in {@link Pins.pin}); a failed publication leaves the published pin lower than the
 *   real one, which only makes compaction keep more.
 * - With its pin, the lease publishes since when this process pins that version (wall clock):
 *   the time the published version was first reached (a snapshot taken, the head come to
 *   it, a watcher started below it), kept while the pin stays there. Other processes show
 *   it as the pin's age (`txtdb doctor`, `db.processes()`); it plays no part in compaction.
 * - A pin left unused past `maxIdleMs` is released with a warning (bounded pins). A pin
 *   held by work under way (a transaction's commit or prepare waiting for the writer lock,
 *   see {@link PinHandle.hold}) is in use all along: were it released, another process's
 *   compaction could fold the versions its validation must see (a delete committed after
 *   its read version, its tombstone dropped), and the commit would succeed where it must
 *   conflict.
 *
 * @module
 */
import { assert } from "./errors.ts";
import { LEASES_DIR } from "./files.ts";
import { isLeaseFile, leaseOwnerAlive, listLeases, ProcessLease } from "./liveness.ts";
import type { LeaseListing } from "./liveness.ts";
import { pathNamesFile, PortError } from "./port.ts";
import type { Platform } from "./port.ts";
import { armInterval } from "./timers.ts";
import type { Timer } from "./timers.ts";

/**
 * How often a process checks that its lease file is still the one in `leases/`, and takes a
 * new one if not (a cleaner deleted it, or the directory was replaced): other processes'
 * compactions see its pins only through that file.
 */
export const LEASE_CHECK_EVERY_MS = 1_000;
/**
 * After leases were found lost (this process's own, or `leases/` itself), or `leases/` had
 * to be made again at open in an existing store, compaction folds nothing for this long:
 * every live process whose lease went with them takes a new one within
 * {@link LEASE_CHECK_EVERY_MS}, and until then its pins are invisible.
 */
export const LEASES_SETTLE_MS = 3 * LEASE_CHECK_EVERY_MS;

/** The `idleMs` a pin's expire() receives when it ends because its history is gone, not idleness. */
export const PIN_LOST_HISTORY = -1;

interface PinEntry {
  version: number;
  sinceMs: number;
  usedMs: number;
  kind: string;
  expire: (idleMs: number) => void;
  /** Holds of work under way on the pin (a commit or prepare waiting for the writer lock): never idle meanwhile. */
  busy: number;
}

/** A registered pin: its release, `touch` for each use, and `hold` while work on it is under way. */
export interface PinHandle {
  release: () => void;
  touch: () => void;
  /**
   * Marks work under way on the pin (a commit or a prepare waiting for the writer lock and
   * validating against the version it pins): until the returned function is called, the
   * pin is in use, so the idle sweep never releases it; that call counts as a use. Only
   * the loss of its history ({@link Pins.endPinsBelow}) can still end it.
   */
  hold: () => () => void;
}

/** A live process's lease, as {@link Pins.scanLeases} reports it. */
export interface LiveLease {
  pid: number;
  runtime: string;
  pin: number | undefined;
  /** Since when the process pins `pin`, wall-clock ms; undefined when its lease does not say (an older release). */
  pinSinceWallMs: number | undefined;
  path: string;
  /** Set when the lease file cannot be opened: why (see {@link LeaseView.unreadable}). */
  unreadable?: string;
}

/** A lease file, or the leases directory, that this process cannot read, and why. */
export interface UnreadableLease {
  path: string;
  reason: string;
}

/** Where {@link Pins} learns the versions it does not hold itself. */
export interface PinSources {
  /** The newest version this process has seen. */
  head(): number;
  /** The oldest version an open watcher still reads, if any. */
  oldestWatched(): number | undefined;
  /** Moves the head on to what the store shows now (a read's freshness probe); may throw. */
  refreshHead?(): void;
}

/** The pin registry of one open database, and its lease. */
export class Pins {
  readonly #platform: Platform;
  readonly #path: string;
  readonly #readOnly: boolean;
  readonly #mode: number;
  readonly #dirMode: number;
  readonly #sources: PinSources;
  readonly #pins = new Map<number, PinEntry>();
  /** A snapshot or transaction unused this long is released (0 or Infinity: never). */
  readonly maxIdleMs: number;
  #idleSweep: Timer | undefined;
  #leaseCheck: Timer | undefined;
  /** Set once a lease was taken: a lost one is taken again (renewLeaseIfLost). */
  #leaseWanted = false;
  #leasesDirMissingChecks = 0;
  /** When leases were last found lost (see {@link LEASES_SETTLE_MS}); monotonic ms. */
  #leasesLostAtMs: number | undefined;
  #nextPinId = 1;
  #lease: ProcessLease | undefined;
  #publishedPin = -1;
  /** The local pin as last seen by {@link publish}, and when it came to that version (wall-clock ms). */
  #pinSince: { pin: number; wallMs: number } | undefined;
  #closed = false;

  constructor(platform: Platform, path: string, options: { readOnly: boolean; mode: number; dirMode: number; maxIdleMs: number }, sources: PinSources) {
    this.#platform = platform;
    this.#path = path;
    this.#readOnly = options.readOnly;
    this.#mode = options.mode;
    this.#dirMode = options.dirMode;
    this.maxIdleMs = options.maxIdleMs;
    this.#sources = sources;
  }

  /** Open snapshots and transactions of this process. */
  get size(): number {
    return this.#pins.size;
  }

  /** The id of this handle's lease (queues name a claim's owner by it), if it holds one. */
  get leaseId(): string | undefined {
    return this.#lease?.id;
  }

  /** True while the owner of lease `id` (16 hex digits) lives: its lease file is locked. */
  leaseAlive(id: string): boolean {
    if (id === this.#lease?.id) return !this.#closed;
    return leaseOwnerAlive(this.#platform, `${this.#path}/${LEASES_DIR}/${id}.lease`);
  }

  /** True once this process holds a lease. */
  get leased(): boolean {
    return this.#lease !== undefined;
  }

  /** This process's lease file name in `leases/` (two-phase commit names it), if it holds one. */
  get leaseFile(): string | undefined {
    const path = this.#lease?.path;
    return path === undefined ? undefined : path.slice(path.lastIndexOf("/") + 1);
  }

  /**
   * Takes this process's lease (liveness and pins); a read-only store may refuse it.
   * `existingStore`: the store was there before this open; a `leases/` missing from it was
   * lost (or the store copied), and other processes' leases may have gone with it.
   * `makeDir`: false for the periodic check while `leases/` has been missing only briefly
   * (see #checkLease): compaction folds nothing meanwhile, and `stats()` says why.
   */
  startLease(options: { existingStore?: boolean; makeDir?: boolean } = {}): void {
    try {
      const dir = `${this.#path}/${LEASES_DIR}`;
      // The store's mode applies here too: a store shared with a group is one whose
      // readers can take leases, so that compaction keeps what they read.
      if (!this.#readOnly && options.makeDir !== false) {
        if (options.existingStore && !this.#platform.lstat(dir)) this.#leasesLostAtMs = this.#platform.monotonicMs();
        this.#platform.mkdir(dir, this.#dirMode);
      }
      this.#lease = ProcessLease.create(this.#platform, dir, this.#mode);
      this.#leaseWanted = true;
      this.publish();
    } catch (e) {
      if (!this.#readOnly) throw e;
    }
    if (this.#lease && !this.#leaseCheck && !this.#closed) {
      // Unref'd: the check must not keep a script alive.
      this.#leaseCheck = armInterval(LEASE_CHECK_EVERY_MS, () => this.#checkLease(), { unref: true });
    }
  }

  /** The oldest version this process may still read: open transactions, snapshots, watchers, or its head. */
  localPin(): number {
    let min = this.#sources.head();
    for (const p of this.#pins.values()) if (p.version < min) min = p.version;
    const w = this.#sources.oldestWatched();
    if (w !== undefined && w < min) min = w;
    return min;
  }

  /**
   * Publishes this process's pin if it moved. A failed write is not the operation's
   * failure; it is tried again at the next change. A pin that moved up stays published
   * lower than the real one meanwhile, which only makes compaction keep more. One that
   * moves down (a watcher replaying history from an older version; snapshots and
   * transactions start at the head) is published with `mustHold`: a failed write throws,
   * so that the watcher fails at its start rather than later, when another process's
   * compaction folded the history it was about to read (it ended with WATCH_OVERFLOW).
   */
  publish(mustHold = false): void {
    if (!this.#lease) return;
    const pin = this.localPin();
    const since = this.#sinceOf(pin);
    if (pin === this.#publishedPin) return;
    try {
      this.#lease.publishPin(pin, since);
      this.#publishedPin = pin;
    } catch (e) {
      if (mustHold && pin < this.#publishedPin) throw e;
      // retried on the next change
    }
  }

  /** When the local pin came to `pin` (now, if it was elsewhere at the last look): kept while it stays. */
  #sinceOf(pin: number): number {
    if (this.#pinSince?.pin !== pin) this.#pinSince = { pin, wallMs: this.#platform.wallClockMs() };
    return this.#pinSince.wallMs;
  }

  /** How long this process has pinned its {@link localPin}'s version, in ms (as its lease says to others). */
  localPinAgeMs(): number {
    return Math.max(0, Math.round(this.#platform.wallClockMs() - this.#sinceOf(this.localPin())));
  }

  /**
   * Registers a pinned read version. Returns the release, `touch` to call on each use, and
   * `hold` for work under way on it; `expire` is called if it stays unused past maxIdleMs
   * (never while held), or with {@link PIN_LOST_HISTORY} if its history is gone.
   */
  pin(version: number, kind: string, expire: (idleMs: number) => void = () => {}): PinHandle {
    assert(version >= this.#publishedPin, `a new ${kind} pin at version ${version} lies below the published pin ${this.#publishedPin}: new pins start at the head`);
    const id = this.#nextPinId++;
    const now = this.#platform.monotonicMs();
    const entry: PinEntry = { version, sinceMs: now, usedMs: now, kind, expire, busy: 0 };
    this.#pins.set(id, entry);
    this.publish();
    this.#startIdleSweep();
    return {
      release: () => {
        if (this.#pins.delete(id) && !this.#closed) this.publish();
        if (this.#pins.size === 0) this.#stopIdleSweep();
      },
      touch: () => void (entry.usedMs = this.#platform.monotonicMs()),
      hold: () => {
        entry.busy++;
        let held = true;
        return () => {
          if (!held) return;
          held = false;
          entry.busy--;
          entry.usedMs = this.#platform.monotonicMs();
        };
      },
    };
  }

  #startIdleSweep(): void {
    if (this.maxIdleMs <= 0 || this.maxIdleMs === Infinity || this.#idleSweep !== undefined) return;
    // Unref'd: a forgotten snapshot must not keep a script alive until it expires.
    this.#idleSweep = armInterval(Math.max(5, Math.min(10_000, this.maxIdleMs / 4)), () => this.#sweepIdle(), { unref: true });
  }

  #stopIdleSweep(): void {
    this.#idleSweep?.cancel();
    this.#idleSweep = undefined;
  }

  /** Releases snapshots and transactions left unused past maxIdleMs (bounded pins). */
  #sweepIdle(): void {
    const now = this.#platform.monotonicMs();
    for (const [id, p] of [...this.#pins]) {
      const idle = now - p.usedMs;
      if (idle < this.maxIdleMs || p.busy > 0) continue;
      this.#pins.delete(id);
      console.warn(`txtdb: released a ${p.kind} of "${this.#path}" at version ${p.version} after ${Math.round(idle)} ms unused (maxIdleMs ${this.maxIdleMs}); release snapshots and finish transactions when done`);
      p.expire(idle);
    }
    if (this.#pins.size === 0) this.#stopIdleSweep();
    if (!this.#closed) this.publish();
  }

  /** Ends this process's snapshots and transactions reading below `tsn` (their history is gone). */
  endPinsBelow(tsn: number): void {
    for (const [id, p] of [...this.#pins]) {
      if (p.version >= tsn) continue;
      this.#pins.delete(id);
      p.expire(PIN_LOST_HISTORY);
    }
  }

  /**
   * If this process's lease file was deleted or replaced (a cleaner, a careless `rm`), other
   * processes no longer see its pins: take a new lease. Checked every
   * {@link LEASE_CHECK_EVERY_MS}, and whenever a compaction is noticed. Compactions in this
   * process then fold nothing for {@link LEASES_SETTLE_MS}: the other processes' leases may
   * have gone the same way, and they take new ones within that time.
   */
  renewLeaseIfLost(options: { makeDir?: boolean } = {}): void {
    if (!this.#leaseWanted || this.#closed) return;
    const lease = this.#lease;
    if (lease) {
      try {
        // One look at the path: its identity when the handle's is known, else whether it is there.
        const mine = lease.handle.info?.();
        if (mine ? pathNamesFile(this.#platform, lease.path, mine) : this.#platform.lstat(lease.path) !== undefined) return;
        lease.handle.close();
      } catch {
        // unreadable: take a new one
      }
      this.#lease = undefined;
      this.#publishedPin = -1;
    }
    this.#leasesLostAtMs = this.#platform.monotonicMs();
    try {
      this.startLease(options);
    } catch {
      // retried at the next check, and at the next compaction noticed
    }
  }

  /**
   * The periodic check of this process's lease. A `leases/` missing at two checks in a row
   * is made again: other live processes take their leases in it within a check, and
   * compactions fold nothing meanwhile (LEASES_SETTLE_MS); left missing, it would stop
   * compaction for as long as this process runs.
   */
  #checkLease(): void {
    try {
      const dirMissing = this.#platform.lstat(`${this.#path}/${LEASES_DIR}`)?.isDirectory !== true;
      this.#leasesDirMissingChecks = dirMissing ? this.#leasesDirMissingChecks + 1 : 0;
      this.renewLeaseIfLost({ makeDir: this.#leasesDirMissingChecks >= 2 });
    } catch {
      // an operating failure (EIO, a crashed simulated machine): checked again next time
    }
    this.#moveIdleHead();
  }

  /**
   * The idle head: a process pins its head (the newest version it has seen), since a
   * snapshot may begin there at any moment, and the head moves only when the process reads.
   * One that holds no pin and reads nothing (a helper waiting for work, a dashboard between
   * refreshes) would pin one old version for as long as it lives, and every compaction in
   * every process would keep all history since: the log and each process's in-memory table
   * grew without bound. So at each lease check such a process makes a read's freshness
   * probe, and publishes the head it moved to. Open snapshots, transactions and lists keep
   * their own pins (bounded by `maxIdleMs`); watchers pin what they still have to deliver.
   */
  #moveIdleHead(): void {
    if (this.#pins.size > 0 || this.#closed || this.#idleHeadFailed) return;
    try {
      this.#sources.refreshHead?.();
      this.publish();
    } catch {
      // A store this process cannot read (damaged, gone): the probe is not tried again from
      // the timer, where it could repeat heavy work every second for a handle left open; the
      // head moves with this process's reads, as before the idle rule.
      this.#idleHeadFailed = true;
    }
  }

  /** Set once an idle probe failed (see #moveIdleHead). */
  #idleHeadFailed = false;

  /**
   * Every live process's lease: pins and diagnostics; dead ones are reclaimed (removed).
   * A live process whose pin is not readable yet counts as pinning `checkpointTsn`, and so
   * does one whose lease cannot be opened (another user's: it cannot be told dead).
   *
   * When the leases cannot be seen, `minPin` is at most `checkpointTsn`, so that compaction
   * folds nothing: no lease at all, or only some, would be seen, and compaction would remove
   * what the unseen processes' snapshots read.
   * - `leases/` cannot be listed (renamed or deleted under live processes, replaced by a
   *   file, unreadable): until it can be again (put back, or made again by a process that
   *   opens the store).
   * - `leases/` is listed without this process's own lease (the file was deleted, or the
   *   directory replaced), or leases were found lost otherwise (renewLeaseIfLost, or a
   *   `leases/` made again at open): for {@link LEASES_SETTLE_MS} from then. The lease is
   *   taken again, and every other live process whose lease was lost takes a new one
   *   within {@link LEASE_CHECK_EVERY_MS}. (A single lease file deleted by hand, another
   *   process's, is seen by nobody but its owner: its pins are invisible until that owner's
   *   next check.)
   */
  scanLeases(checkpointTsn: number): { minPin: number; live: LiveLease[]; reclaimed: number; unreadable: UnreadableLease[] } {
    let reclaimed = 0;
    const listing = listLeases(this.#platform, `${this.#path}/${LEASES_DIR}`, (path) => {
      if (this.#readOnly) return;
      try {
        this.#platform.unlink(path);
        reclaimed++;
      } catch (e) {
        // ENOENT: another process's sweep (its compaction, its processes()) removed it
        // first. EPERM, EACCES: this user may not remove it (another user's lease in a
        // sticky leases/ of a group-shared store); its owner is dead all the same (its lock
        // was free), so it pins nothing, and its file stays for a user who may remove it.
        if (!(e instanceof PortError && (e.errno === "ENOENT" || e.errno === "EPERM" || e.errno === "EACCES"))) throw e;
      }
    });
    let minPin = this.localPin();
    const live: LiveLease[] = [];
    const own = this.#lease?.path;
    if (listing.unlisted !== undefined) {
      // Not made again here: a new leases/ holding this process's lease alone would pass
      // for the whole truth at the next compaction, the others' leases being elsewhere.
      minPin = Math.min(minPin, checkpointTsn);
    } else if (own !== undefined && !listing.live.some((l) => l.path === own)) {
      this.renewLeaseIfLost();
      this.#leasesLostAtMs = this.#platform.monotonicMs();
    }
    if (this.#leasesLostAtMs !== undefined && this.#platform.monotonicMs() - this.#leasesLostAtMs < LEASES_SETTLE_MS) {
      minPin = Math.min(minPin, checkpointTsn);
    }
    for (const { path, info, pin, pinSinceWallMs, unreadable } of listing.live) {
      if (path === own) continue;
      // A live process whose pin is not readable yet (it is opening) reads from at least
      // the current checkpoint; be conservative and keep everything.
      minPin = Math.min(minPin, pin ?? checkpointTsn);
      live.push({ pid: info?.pid ?? -1, runtime: info?.runtime ?? "?", pin, pinSinceWallMs: pin === undefined ? undefined : pinSinceWallMs, path, ...(unreadable !== undefined ? { unreadable } : {}) });
    }
    return { minPin, live, reclaimed, unreadable: this.#unreadable(listing) };
  }

  /** The leases (or the directory) of `listing` this process cannot read. */
  #unreadable(listing: LeaseListing): UnreadableLease[] {
    const dir = `${this.#path}/${LEASES_DIR}`;
    // No leases/ where this handle took no lease (a read-only open of a store no process
    // opened writable since it was copied) is no problem: no process has a lease there.
    if (listing.unlisted !== undefined) return listing.unlisted.errno === "ENOENT" && !this.#lease ? [] : [{ path: dir, reason: listing.unlisted.reason }];
    return listing.live.flatMap((l) => (l.unreadable === undefined ? [] : [{ path: l.path, reason: l.unreadable }]));
  }

  /**
   * Processes with a live lease on the store, this one included (those whose lease cannot
   * be opened too: they cannot be told dead), and the leases that cannot be read.
   */
  leaseCensus(): { liveLeases: number; unreadable: UnreadableLease[] } {
    const listing = listLeases(this.#platform, `${this.#path}/${LEASES_DIR}`);
    return { liveLeases: listing.live.length, unreadable: this.#unreadable(listing) };
  }

  /**
   * True unless it is certain that no process but this one holds a live lease: a leases
   * directory that cannot be read (another user's store) or is missing cannot tell, and
   * counts as alive. (A live process whose lease file was deleted by hand and not yet made
   * again is not seen: the same limit as compaction's.)
   */
  othersMayBeAlive(): boolean {
    let names: string[];
    try {
      names = this.#platform.readdir(`${this.#path}/${LEASES_DIR}`);
    } catch {
      return true; // unreadable, or deleted by hand under live processes: cannot tell
    }
    const mine = this.leaseFile;
    for (const name of names) {
      // A lease being made (or remade, by a process whose lease was deleted) under its
      // temporary name counts too: its maker may be a writer with a batch on its way.
      const making = name.endsWith(".lease-new");
      if ((isLeaseFile(name) || making) && name !== mine && leaseOwnerAlive(this.#platform, `${this.#path}/${LEASES_DIR}/${name}`)) return true;
    }
    return false;
  }

  /** Open pins of `kind` ("snapshot", "transaction"). */
  count(kind: string): number {
    return [...this.#pins.values()].filter((p) => p.kind === kind).length;
  }

  /** How long the oldest open pin has been held, in ms (0: none). */
  oldestAgeMs(): number {
    let oldest = Infinity;
    for (const p of this.#pins.values()) oldest = Math.min(oldest, p.sinceMs);
    return oldest === Infinity ? 0 : Math.round(this.#platform.monotonicMs() - oldest);
  }

  /** The database is closing: no more publication, no idle sweep, no lease check. */
  stop(): void {
    this.#closed = true;
    this.#stopIdleSweep();
    this.#leaseCheck?.cancel();
    this.#leaseCheck = undefined;
  }

  /** Forgets every pin and gives up the lease (after {@link stop}). */
  close(): void {
    this.#pins.clear();
    try {
      this.#lease?.release(this.#platform);
    } catch {
      // a lease left behind is reclaimed by the next compaction: its lock is free
    }
  }
}
