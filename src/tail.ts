/**
 * The log tail of one open database: how far this process has read the shared log (the
 * read position), what it knows durable, the newest version it shows (the visible
 * version), the manifest it follows, recovery of a crashed writer's tail, and the append
 * of a group commit's batch.
 *
 * Durability rules of a commit with durability "full" (cross-process group commit), in
 * the order {@link Tail.appendLocked} and {@link Tail.makeDurable} carry them out:
 *
 * 1. Under the writer lock: catch up to the real end of the log (records other processes
 *    appended, durable or not yet), validate, and append the batch there, into
 *    preallocated space. A segment past `segmentBytes` is sealed first: trimmed, synced,
 *    and the frontier published at the next segment's start (readers move on once it
 *    exists, reading the sealed one to its end). The seal's sync is a sync of every batch
 *    before it: one that fails is marked as in 7 (never retried: a retry that succeeds says
 *    nothing), and the seal publishes as in 6, in the frontier lock, never past a mark.
 * 2. Still under the lock, after the bytes are written, the tail state's end (log.ts) moves
 *    to the batch's end. Then the lock is released: the next process appends behind this
 *    batch while it is not durable yet. The lock never covers an fsync.
 * 3. After the release, the batch is made durable. If the published durable end already
 *    covers it, another process's sync did: nothing to do. Otherwise the process takes the
 *    sync lock (the segment's flock; one syncer at a time, since concurrent fdatasyncs of
 *    one file measured slower here than one after the other), looks again, reads the tail
 *    state's end (at or past its own: it came later) and fdatasyncs the segment, which
 *    makes durable every byte appended before the sync, whoever appended it. Waiters for
 *    the sync lock are woken by the kernel where the port can wait off-thread, and give up
 *    waiting after SYNC_WAIT_MS_MAX (a stopped syncer stops nobody): they sync unlocked.
 * 4. The frontier only moves forward: it is read, compared and written holding the
 *    frontier file's own flock (never held across an await), and moved to the end read in
 *    3 with its version, never back.
 * 5. Readers never read past the published frontier, which in "full" is the durable end,
 *    so no process sees a commit that is not durable. A writer's index may hold records
 *    past it (caught up under the lock); the visible version is still the frontier's.
 * 6. A commit resolves only when, in one frontier critical section: the durable end is at
 *    or past its end, the epoch is the one it was appended in, and no sync failure is marked.
 * 7. A failed sync whose batch the durable end already covers (another process's sync
 *    succeeded) resolves. Otherwise it marks the failure (same critical section) and the
 *    batch fails with IO. From then on no commit resolves and none is appended (catch-up
 *    refuses with IO) until a writable open has verified the tail. (After a failed fsync
 *    the kernel may have dropped the dirty pages: a later sync that succeeds says nothing
 *    about them, so nobody may trust it.) The mark is written before the sync lock is
 *    released, so a process waiting for that lock (a seal too) finds it. One that gave up
 *    waiting (SYNC_WAIT_MS_MAX) syncs beside the failing holder: there, what keeps its
 *    sync from vouching for the dropped pages is the kernel, which reports a writeback
 *    error to every descriptor of the file opened before it (Linux since 4.13), so its sync
 *    fails too.
 * 8. Verifying the tail (a writable open that finds the mark; writer lock, then frontier
 *    lock): everything past the durable end is cut (none of it resolved, by 6), the log is
 *    synced, the epoch bumped and the mark cleared. A frontier that cannot be read (written
 *    over) cannot say where the durable end is: the open refuses, and nothing is cut. A
 *    process whose index holds records past the durable end from an older epoch rebuilds
 *    its view before reading past it or appending.
 * 9. A failure before the release (1–2): nothing of the batch may become visible, now or
 *    after a power loss. The bytes are cut off, the cut synced, and the tail state put back
 *    (if any of that fails too, the failure is marked, rule 7), and the committer takes the
 *    batch back off the index.
 *
 * 10. Reading ahead ("full" only): while it waits for the writer lock, a committer may read
 *    the batches other processes appended that are not durable yet, up to the tail state's end
 *    as read first, in the segment it reads, and only while the epoch is its own and no
 *    failure is marked: the catch-up under the lock then reads only what was appended
 *    since. Safe because in "full" the tail state's end is the last write of an append that
 *    can fail (rule 9 never cuts bytes before a published end), and the only cut of such
 *    bytes is a repair (rule 8), which bumps the epoch: a process that read past its visible
 *    end rebuilds its view when it sees the new epoch, at its next read or catch-up, as after
 *    a catch-up under the lock. Records read ahead stay invisible until the frontier covers
 *    them (rule 5). Anything unexpected (a short or bad record) ends the reading ahead, and
 *    the catch-up under the lock meets it.
 *
 * ```
 *   writer lock: catch up ─► validate ─► append ─► tail state end ─► release
 *   then: covered? ─► sync lock: covered? ─► read end ─► fdatasync ─► frontier lock: check, publish max ─► resolve
 * ```
 *
 * "relaxed" and "none": the frontier is published under the writer lock at the batch's
 * end (as in 4), ahead of the durable end; "relaxed" syncs within `relaxedSyncMs`.
 *
 * 11. A read-only open shows a dead writer's records past the frontier when nobody else
 *    is alive, after syncing them itself ({@link Tail.adoptDeadWritersRecords}).
 *
 * Recovery (catch-up under the writer lock): a torn tail past the durable end is cut off;
 * a bad record before it is CORRUPTION, and nothing is cut. Whole records past the
 * frontier are another process's batch on its way to a sync, or a dead writer's: the next
 * sync covers them; a writable open syncs and publishes them at once.
 *
 * Freshness: every read first probes the frontier ({@link Tail.refresh}) and tails the log
 * only if it moved. The probe reads the frontier mirror in shared memory where this process
 * has it, else the file (one small pread); mirror.ts has the rules that keep a probe of the
 * mirror as fresh as one of the file, and a commit resolves only once they hold
 * ({@link Tail.makeDurable}).
 *
 * @module
 */
import { assert, TxtDbError } from "./errors.ts";
import { ioError, segmentName } from "./files.ts";
import { BlockCache } from "./blockcache.ts";
import { Index } from "./index.ts";
import { Levels } from "./levels.ts";
import { BLOCK_SLOT_BYTES } from "./table.ts";
import { comparePositions, FORMAT_CHECKPOINT, FORMAT_VERSION, Log, sameManifestFiles, SYNC_FAILURE_AT, SYNC_FAILURE_GARBLED } from "./log.ts";
import type { Frontier, LogPosition, Manifest, TailState } from "./log.ts";
import { checkFormat, checkManifestFiles } from "./opening.ts";
import type { Durability } from "./options.ts";
import { identityAt } from "./port.ts";
import type { FileHandle, Platform } from "./port.ts";
import { decodeCommit, tsnBreak } from "./record.ts";
import type { CommitRecord } from "./record.ts";
import { CheckpointDamage, readCheckpoint } from "./checkpoint.ts";
import type { Meters } from "./stats.ts";
import { armTimer } from "./timers.ts";
import { MIRROR_TRUST_MS, READER_IDLE_MS, readersRegistered } from "./mirror.ts";
import { FRONTIER, lastLogSegment, READERS_LOCK } from "./files.ts";
import type { Timer } from "./timers.ts";

/**
 * What the sync path's own look under the frontier lock found for a failed sync (rule 7):
 * true if it marked the failure, false if another process's sync covered the batch. Keyed
 * by the error it throws, so that makeDurable's catch reports from it instead of looking
 * (and marking) again.
 */
const markOutcomes = new WeakMap<object, boolean>();
/** `e` as a WeakMap key (a thrown primitive gets a fresh object: no outcome is found for it). */
const failureKey = (e: unknown): object => (typeof e === "object" && e !== null ? e : {});

/**
 * Longest a commit waits for another process's sync in flight (which may cover it) before
 * syncing for itself: a few syncs' time, so a syncer stopped mid-sync delays the others
 * by this much per commit, and never stops them.
 */
const SYNC_WAIT_MS_MAX = 10;

const sameFrontier = (a: Readonly<Frontier>, b: Readonly<Frontier>): boolean =>
  a.tsn === b.tsn && a.seg === b.seg && a.off === b.off && a.durableSeg === b.durableSeg && a.durableOff === b.durableOff;

/**
 * How long a read-only open waits between finding a stopped writer's records past the
 * frontier and showing them (rule 11): a live writer would have published them, or marked
 * its sync failed, within a sync's time (SYNC_WAIT_MS_MAX and the sync itself).
 */
const ADOPT_SETTLE_MS = 50;

/** How often a read starts again when a compaction switched the manifest under it. */
export const OPEN_ATTEMPTS_MAX = 20;

/** What the tail asks of the rest of the database (pins live in pins.ts, above it). */
export interface TailHooks {
  /** The oldest version this process may still read. */
  localPin(): number;
  /** Publishes this process's pin if it moved. */
  publishPin(): void;
  /** A compaction by another process was noticed (the lease is checked then). */
  compactionNoticed(): void;
  /** Snapshots and transactions reading below `tsn` cannot be served any more. */
  endPinsBelow(tsn: number): void;
  /** The index was replaced: whatever was derived from the old one is dropped. */
  viewReset(): void;
  /** A prepared transaction (two-phase commit) was read or loaded. */
  preparedSeen(): void;
}

/** A batch appended under the writer lock, on its way to a sync (see {@link Tail.makeDurable}). */
export interface AppendedBatch {
  /** The segment its bytes went into. */
  seg: number;
  /** Where its bytes end. */
  end: LogPosition;
  /** The version of its last record. */
  tsn: number;
  /** The repair epoch it was appended in. */
  epoch: number;
}

/** The log tail of one open database. */
export class Tail {
  readonly platform: Platform;
  readonly path: string;
  /** The store's log files. */
  readonly log: Log;
  /** The tables of the manifest this process follows (format 2), read through its block cache. */
  readonly levels: Levels;
  /** This process's MVCC index (replaced when the view is reset, and at close). */
  index: Index;
  readonly #durability: Durability;
  readonly #segmentBytes: number;
  readonly #relaxedSyncMs: number;
  readonly #meters: Meters;
  readonly #hooks: TailHooks;
  #visibleTsn = 0;
  /** Where the visible version's last record ends (the frontier this process last showed). */
  #visiblePos: LogPosition = { seg: 1, off: 0 };
  /** The repair epoch of the records this process read past the visible end (rule 8). */
  #epoch = 0;
  /**
   * A frontier a read-only open found past the log's end and read it to its end instead
   * (rule 11), with the repair epoch then: while the file still holds exactly that frontier
   * in that epoch, refreshes take it as nothing new. The writable open that replaces it
   * bumps the epoch, so even a frontier equal to it by chance is read (catchUpLocked).
   */
  #passedFrontier: { frontier: Readonly<Frontier>; epoch: number } | undefined;
  /**
   * Whether a refresh of this process read a frontier (file or mirror). One that turns
   * unreadable after that was damaged under a live process, and fails the read; before it,
   * the open's rules decide (rule 11: a power loss may empty or tear the file, never synced).
   */
  #frontierRead = false;
  #readPos: LogPosition = { seg: 1, off: 0 };
  #durablePos: LogPosition = { seg: 1, off: 0 };
  #firstSegment = 1;
  #manifest: Manifest = { format: FORMAT_VERSION, createdAtMs: 0 };
  /** Per segment read, the version of its last record (compaction folds by it). */
  readonly #segLastTsn = new Map<number, number>();
  #relaxedTimer: Timer | undefined;
  /** A second handle of the active segment, waiting for the sync lock off-thread (see #syncWaiter). */
  #syncWait: { seg: number; file: FileHandle; pending: boolean } | undefined;
  #closed = false;
  /** A seal's failed sync that could not be marked (see #markSealFailure): this process commits nothing more. */
  #unmarkedFailure: TxtDbError | undefined;
  /** When the last file probe made while registered as a reader of the mirror began (mirror.ts rule 2). */
  #fileProbedAtMs = -Infinity;
  /** When this process last probed the frontier with the mirror attached, and the timer that ends an idle registration. */
  #mirrorReadAtMs = -Infinity;
  #readerIdleTimer: Timer | undefined;
  /** After a failed registration, when to try again (until then reads probe the file). */
  #registerAgainAtMs = -Infinity;
  /** Without the mirror: this process's handle of `readers.lock` (mirror.ts rule 5). */
  #readersLock: FileHandle | undefined;
  #readersLockTried = false;

  constructor(platform: Platform, path: string, options: { mode: number; readOnly: boolean; durability: Durability; segmentBytes: number; relaxedSyncMs: number; cacheBytes: number }, meters: Meters, hooks: TailHooks) {
    this.platform = platform;
    this.path = path;
    this.log = new Log(platform, path, options.mode, options.readOnly);
    this.levels = new Levels(platform, path, new BlockCache(options.cacheBytes, { slotBytes: BLOCK_SLOT_BYTES }));
    this.index = this.#newIndex();
    this.#durability = options.durability;
    this.#segmentBytes = options.segmentBytes;
    this.#relaxedSyncMs = options.relaxedSyncMs;
    this.#meters = meters;
    this.#hooks = hooks;
  }

  /** The newest version this process shows to reads. */
  get visibleTsn(): number {
    return this.#visibleTsn;
  }

  /** Where the visible version's records end: a watcher starting now reads on from there. */
  get visiblePos(): LogPosition {
    return this.#visiblePos;
  }

  /** Where the next record is read (or, under the writer lock, appended). */
  get readPos(): LogPosition {
    return this.#readPos;
  }

  /**
   * Where this process's view ends, if it stands in for the frontier file's `fr` when the
   * store is copied or checked: a read-only open that made a dead writer's records past the
   * frontier durable (rule 11) shows more than `fr`, or read the log to its end where `fr` lay
   * past it; and with no frontier to read, what this process shows is all there is to go by.
   * Otherwise undefined: `fr` is the end.
   */
  viewOver(fr: Readonly<Frontier> | undefined): { tsn: number; seg: number; off: number } | undefined {
    if (!fr || this.#visibleTsn > fr.tsn || this.#isPassedFrontier(fr)) {
      return { tsn: this.#visibleTsn, seg: this.#visiblePos.seg, off: this.#visiblePos.off };
    }
    return undefined;
  }

  /** Whether `fr` is the frontier this process passed at its read-only open, still in place (rule 11). */
  #isPassedFrontier(fr: Readonly<Frontier>): boolean {
    const p = this.#passedFrontier;
    return p !== undefined && sameFrontier(fr, p.frontier) && this.log.readTailState().epoch === p.epoch;
  }

  /** The manifest this process follows. */
  get manifest(): Manifest {
    return this.#manifest;
  }

  /** The first log segment in use (earlier ones are folded into the checkpoint). */
  get firstSegment(): number {
    return this.#firstSegment;
  }

  /** The version of segment `n`'s last record read, if any. */
  segmentLastTsn(n: number): number | undefined {
    return this.#segLastTsn.get(n);
  }

  // --- the manifest ---

  /** True if the manifest on disk names other files than `m` (a compaction switched it). */
  manifestMovedFrom(m: Manifest): boolean {
    try {
      const now = this.log.readManifest();
      return !now || !sameManifestFiles(now, m);
    } catch {
      return true;
    }
  }

  #newIndex(): Index {
    const index = new Index(() => this.platform.wallClockMs());
    index.levels = this.levels;
    index.prepared.onPrepare = () => this.#hooks.preparedSeen();
    return index;
  }

  /** Forgets everything read so far (before loading a manifest afresh). */
  resetView(): void {
    this.index = this.#newIndex();
    this.#hooks.viewReset();
    this.#visibleTsn = 0;
    for (const n of [...this.#segLastTsn.keys()]) this.log.forgetSegment(n);
    this.#segLastTsn.clear();
  }

  /**
   * Loads the manifest into the empty index: format 2, its tables (opened, not read) and
   * namespace bindings; format 1, its checkpoint, into memory. Reading resumes after it.
   */
  loadManifest(manifest: Manifest): void {
    if (manifest.format > FORMAT_CHECKPOINT) {
      this.levels.adopt(manifest.tables ?? []);
      const tsn = manifest.checkpointTsn ?? 0;
      const flat = manifest.bindings ?? [];
      const bindings: [string, number][] = [];
      for (let i = 0; i < flat.length; i += 2) bindings.push([flat[i] as string, flat[i + 1] as number]);
      this.index.loadBindings(tsn, bindings, manifest.nextNsId ?? 1);
      try {
        this.index.prepared.load(manifest.twoPhase);
        if (this.index.prepared.size > 0) this.#hooks.preparedSeen();
      } catch (e) {
        throw new TxtDbError("CORRUPTION", `Manifest of "${this.path}" is malformed: ${(e as Error).message}; restore it from a backup`, { details: { file: `${this.path}/MANIFEST`, offset: 0 } });
      }
      this.index.setLastTsn(tsn);
      this.#visibleTsn = tsn;
    } else {
      this.levels.adopt([]);
    }
    this.#manifest = manifest;
    this.#firstSegment = manifest.firstSegment ?? 1;
    this.#readPos = { seg: this.#firstSegment, off: 0 };
    this.#visiblePos = this.#readPos;
    if (!manifest.checkpoint || manifest.format > FORMAT_CHECKPOINT) return;
    const path = `${this.path}/${manifest.checkpoint}`;
    const file = this.platform.open(path, { readOnly: true });
    try {
      const { header } = readCheckpoint(file, (e) => this.index.put(e.nsId, e.key, e.tsn, e.value));
      this.index.loadBindings(header.tsn, header.bindings, header.nextNsId);
      this.index.setLastTsn(header.tsn);
      this.#visibleTsn = header.tsn;
    } catch (e) {
      if (e instanceof CheckpointDamage) {
        throw new TxtDbError("CORRUPTION", `Checkpoint "${path}" is damaged at offset ${e.offset}: ${e.message}. Run \`txtdb check\`; restore from a backup if it persists`, {
          details: { file: path, offset: e.offset },
        });
      }
      throw e;
    } finally {
      file.close();
    }
  }

  /**
   * Another process compacted: learn the new checkpoint and drop, from this process's
   * index, versions below it that no reader here needs (keeps memory bounded).
   */
  #followManifest(): void {
    const m = this.log.readManifest();
    if (!m) return;
    if (sameManifestFiles(m, this.#manifest)) {
      // Another process moved the store to format 3 (two-phase commit), changing no file.
      if (m.format > this.#manifest.format && m.format > FORMAT_CHECKPOINT && this.#manifest.format > FORMAT_CHECKPOINT) {
        checkFormat(this.path, m.format);
        this.#manifest = { ...this.#manifest, format: m.format };
      }
      return;
    }
    checkFormat(this.path, m.format);
    const folded = m.checkpointTsn ?? 0;
    const v1 = m.format <= FORMAT_CHECKPOINT;
    if (v1 && folded <= (this.#manifest.checkpointTsn ?? 0) && this.#manifest.format <= FORMAT_CHECKPOINT) return;
    this.#hooks.compactionNoticed();
    if (this.index.lastTsn < folded || folded < (this.#manifest.checkpointTsn ?? 0) || (v1 && this.#manifest.format > FORMAT_CHECKPOINT)) {
      // This process had not read all that the compaction folded: it holds no lease (a
      // reader of another user's store, or leases/ was deleted), so no pin held those
      // records back, and they are gone from the log. Skipping to the new first segment
      // would lose them; the index is reloaded from the new checkpoint instead. Snapshots
      // and transactions of this process below the checkpoint cannot be served any more
      // and end with an error on their next use.
      checkManifestFiles(this.platform, this.path, this.log, m);
      this.#hooks.endPinsBelow(m.checkpointTsn ?? 0);
      this.resetView();
      this.loadManifest(m);
      return;
    }
    if (!v1) {
      // Format 2: this process's snapshots below the folded version cannot be served from
      // the new tables (they hold the newest version at or below it only); every pin of a
      // process with a lease is at or above it, so only a lease-less reader's end here.
      if (this.#hooks.localPin() < folded) this.#hooks.endPinsBelow(folded);
      this.levels.adopt(m.tables ?? []); // may throw (a table already gone): nothing changed, the caller reads again
      this.index.dropFolded(folded);
    }
    this.#manifest = m;
    this.#firstSegment = m.firstSegment ?? this.#firstSegment;
    for (const n of [...this.#segLastTsn.keys()]) {
      if (n < this.#firstSegment) {
        this.#segLastTsn.delete(n);
        this.log.forgetSegment(n);
      }
    }
    // Everything in folded segments is at or below every pin of this process, so it was
    // read already: at most the read position sits at the very end of a folded segment.
    if (this.#readPos.seg < this.#firstSegment) this.#readPos = { seg: this.#firstSegment, off: 0 };
    if (this.#visiblePos.seg < this.#firstSegment) this.#visiblePos = { seg: this.#firstSegment, off: 0 };
    if (v1) this.index.prune(Math.min(folded, this.#hooks.localPin()));
  }

  /**
   * Learns the manifest on disk if another process's compaction switched it (compaction
   * plans against the files, never against a stale view of them).
   */
  followManifest(): void {
    this.#followManifest();
  }

  /**
   * Under the writer lock, after this process's compaction wrote `manifest` (temp, fsync,
   * rename, directory fsync, in writeManifest): it becomes the one this process follows.
   */
  switchManifestLocked(manifest: Manifest, prepared = false): void {
    if (prepared) this.log.installManifest();
    else this.log.writeManifest(manifest);
    this.#manifest = manifest;
    this.#firstSegment = manifest.firstSegment ?? 1;
    // The catch-up just before read every record: a read position still at the end of a
    // segment this switch folded (the next one empty so far) moves to the first segment,
    // as #followManifest does, before the folded one is deleted and could not be read on from.
    if (this.#readPos.seg < this.#firstSegment) this.#readPos = { seg: this.#firstSegment, off: 0 };
    if (this.#visiblePos.seg < this.#firstSegment) this.#visiblePos = { seg: this.#firstSegment, off: 0 };
  }

  /**
   * After this process's own compaction switched to `manifest` (format 2), outside the
   * writer lock: its tables become the ones read, and memory drops what they hold. Every
   * pin of this process is at or above the folded version (compaction checked it under the
   * writer lock, and new pins start at the head). Until this runs, reads use the previous
   * tables and the in-memory table, which still holds everything past the previous fold.
   * If the tables cannot be opened, the previous manifest stays the one followed, so that
   * a later read adopts the new one as it would another process's.
   */
  adoptOwnTables(manifest: Manifest, previous: Manifest): void {
    if (this.#manifest !== manifest) return;
    try {
      this.levels.adopt(manifest.tables ?? []);
    } catch (e) {
      this.#manifest = previous;
      throw e;
    }
    this.index.dropFolded(manifest.checkpointTsn ?? 0);
  }

  /** Forgets segment `n` (folded into a checkpoint, or a leftover about to be deleted). */
  forgetSegment(n: number): void {
    this.log.forgetSegment(n);
    this.#segLastTsn.delete(n);
  }

  /** Bytes of the live log segments (allocated, so including preallocated space). */
  segmentBytesOnDisk(): number {
    // The log's segments only: from the first, each the next number, up to the first one
    // missing (as repair reads them); a stray file past a gap is no part of the log.
    const last = lastLogSegment(this.#firstSegment, new Set(this.log.listSegments()));
    let total = 0;
    for (let n = this.#firstSegment; n <= last; n++) total += this.log.segment(n)?.size() ?? 0;
    return total;
  }

  /** Bytes of the folded state: the current checkpoint (format 1) or tables (format 2). */
  checkpointBytes(): number {
    if (this.#manifest.format > FORMAT_CHECKPOINT) return this.levels.bytesByLevel().reduce((a, b) => a + b, 0);
    return this.#manifest.checkpoint ? this.platform.stat(`${this.path}/${this.#manifest.checkpoint}`)?.size ?? 0 : 0;
  }

  // --- reading ---

  #corruption(at: LogPosition, reason: string): TxtDbError {
    return this.log.corruptionAt(at, reason);
  }

  /** Applies every whole record from the read position up to `to` (or the end of the log). */
  #readTo(to: LogPosition | undefined) {
    return this.log.scan(this.#readPos, to, (body, at, next) => {
      let record: CommitRecord;
      try {
        record = decodeCommit(body.slice());
      } catch (e) {
        throw this.log.undecodableRecord(at, e);
      }
      if (record.tsn !== this.index.lastTsn + 1) throw this.#corruption(at, tsnBreak(record.tsn, this.index.lastTsn));
      this.index.apply(record);
      this.#segLastTsn.set(at.seg, record.tsn);
      this.#meters.counters.recordsRead++;
      this.#readPos = next;
    });
  }

  /**
   * The freshness probe: tails the log if another process published commits. A read that
   * fails because a compaction switched the manifest meanwhile (a segment or checkpoint
   * gone) follows the new manifest and reads again.
   */
  refresh(): void {
    // Following the new manifest can fail too (a table it names that a later compaction
    // already deleted, or one deleted or replaced by someone else): the next attempt reads
    // the manifest again, and after the last one its failure is what the read reports. It
    // used to escape from here unwrapped, as the port's error.
    let followFailure: unknown;
    for (let attempt = 1; ; attempt++) {
      try {
        this.#refreshOrThrow();
        return;
      } catch (e) {
        if (attempt >= OPEN_ATTEMPTS_MAX || !this.manifestMovedFrom(this.#manifest)) throw ioError(followFailure ?? e, `Reading the log of "${this.path}"`);
        try {
          this.#followManifest();
          followFailure = undefined;
        } catch (f) {
          followFailure = f;
        }
      }
    }
  }

  /**
   * Rule 10: reads, while waiting for the writer lock, what other processes appended up to
   * the tail state's end (durability "full" only). Never throws: whatever stops it is left
   * to the catch-up under the lock.
   */
  readAhead(): void {
    if (this.#durability !== "full" || this.#closed) return;
    try {
      const st = this.log.readTailState();
      const pos = this.#readPos;
      if (st.failedPid !== 0 || st.epoch !== this.#epoch || st.end.seg !== pos.seg || st.end.off <= pos.off) return;
      this.#readTo(st.end);
    } catch {
      // left to the catch-up under the lock, which reports what it meets
    }
  }

  /**
   * A frontier at the start of a later, empty segment (a compaction sealed the active one,
   * see sealActiveLocked) is where the log goes on once the scan reached it: the read
   * position moves there. Only a published position counts: an empty segment a failed
   * roll-over left behind (its directory entry perhaps not durable) is never adopted.
   */
  #adoptSealedStart(scanEnd: LogPosition, published: LogPosition): void {
    if (published.off === 0 && published.seg > this.#readPos.seg && comparePositions(scanEnd, published) === 0) this.#readPos = published;
  }

  /**
   * True when the frontier `fr` moved only by a seal this process has not followed yet:
   * another process's compaction sealed the active segment (the frontier at the start of a
   * later segment, no new version) and switched the manifest. The probe used to stop at "no
   * new version", so until the next commit this process followed the old manifest: it kept
   * every folded segment and replaced table open (deleted, their disk space not given back)
   * and the folded versions in memory, however often it read.
   */
  #sealedAhead(fr: Readonly<Frontier>): boolean {
    return fr.tsn === this.#visibleTsn && fr.off === 0 && fr.seg > this.#readPos.seg;
  }

  /** CORRUPTION for a read that finds the frontier file cut short or garbled (see #refreshOrThrow). */
  #unreadableFrontier(): TxtDbError {
    const file = `${this.path}/${FRONTIER}`;
    const what = this.log.frontierMiss === "short" ? "is cut short" : "fails its checksum on every read (garbled)";
    return new TxtDbError("CORRUPTION", `Reading "${this.path}" is refused: its frontier file "${file}" (bytes 0 to 35) ${what}, so this process cannot tell which commits of other processes resolved, and answering from what it read before could miss some. The next commit of a writable process writes the frontier again where it can; otherwise close every process using the store and open it once writable (the open rebuilds the frontier from the log), then run \`txtdb check\``, {
      details: { file, offset: 0 },
    });
  }

  /** One attempt of {@link refresh}, whose errors are raw (for the read-only open's retries). */
  #refreshOrThrow(): void {
    // Mirror rule 2: the mirror, within MIRROR_TRUST_MS of the last file probe that served
    // a read; else the file, and that probe's time counts once the read is served.
    let fileProbeAtMs: number | undefined;
    let fr: Readonly<Frontier> | undefined;
    if (this.log.mirrored) {
      const now = this.platform.monotonicMs();
      this.#mirrorReadAtMs = now;
      if (this.log.mirrorReaderRegistered) {
        // The mirror answers "nothing new" only: when it shows a newer frontier, the file
        // (the truth) says how far to read, so a forged copy can never send a read past the log.
        if (now - this.#fileProbedAtMs < MIRROR_TRUST_MS) {
          const m = this.log.readMirroredFrontier();
          // A seal the mirror shows is read from the file, as a newer frontier is.
          if (m !== undefined && m.tsn <= this.#visibleTsn && !this.#sealedAhead(m)) fr = m;
        }
        if (fr === undefined) fileProbeAtMs = now;
      } else if (now >= this.#registerAgainAtMs) {
        if (this.log.registerMirrorReader()) {
          // Registered now: this read's file probe is the first the mirror may lean on (rule 3).
          fileProbeAtMs = now;
          this.#armReaderIdleCheck();
        } else {
          // readers.lock held exclusively for longer than a look takes (a stopped or hostile
          // process): probe the file, and try again only after a while, not on every read.
          this.#registerAgainAtMs = now + READER_IDLE_MS;
        }
      }
    }
    fr ??= this.log.readFrontier();
    if (!fr) {
      // Freshness: a read must see every commit that resolved before it began, and only the
      // frontier says which did. Answering from what this process last read would miss them
      // silently (a garbled file read as "nothing new" until a writer wrote it again).
      if (this.#frontierRead && this.log.frontierMiss !== "absent") throw this.#unreadableFrontier();
      return;
    }
    this.#frontierRead = true;
    if (this.#passedFrontier !== undefined && !this.#isPassedFrontier(fr)) this.#passedFrontier = undefined;
    if ((fr.tsn <= this.#visibleTsn && !this.#sealedAhead(fr)) || this.#passedFrontier !== undefined) {
      if (fileProbeAtMs !== undefined) this.#fileProbedAtMs = fileProbeAtMs;
      return;
    }
    const to = { seg: fr.seg, off: fr.off };
    // Records this process read past the visible end (caught up under the writer lock) are
    // the ones the frontier now covers only if no repair cut them since (rule 8).
    if (comparePositions(this.#readPos, this.#visiblePos) > 0 && this.log.readTailState().epoch !== this.#epoch) this.#rebuildView();
    if (comparePositions(this.#readPos, to) < 0) {
      if (fr.seg !== this.#readPos.seg) this.#followManifest();
      const end = this.#readTo(to);
      if (end.problem) throw this.#corruption(end.problem.at, end.problem.reason);
      this.#adoptSealedStart(end.end, to);
      if (comparePositions(this.#readPos, to) !== 0) throw this.#corruption(this.#readPos, "log ends before the published frontier");
    }
    this.#show(to, fr.tsn);
    if (fileProbeAtMs !== undefined) this.#fileProbedAtMs = fileProbeAtMs;
    this.#hooks.publishPin();
  }

  /** Reads may now see up to `pos` (version `tsn`), which the index holds; never moves back. */
  #show(pos: LogPosition, tsn: number): void {
    if (tsn <= this.#visibleTsn) return;
    assert(tsn <= this.index.lastTsn, `the visible version ${tsn} passes the index's ${this.index.lastTsn}`);
    this.#visibleTsn = tsn;
    this.#visiblePos = pos;
  }

  /**
   * A repair cut records this process had read past the durable end (rule 8): the index
   * is rebuilt from the manifest and the log, which reads the same durable history again.
   */
  #rebuildView(): void {
    const m = this.log.readManifest() ?? this.#manifest;
    const visible = this.#visibleTsn;
    this.resetView();
    this.loadManifest(m);
    this.#epoch = this.log.readTailState().epoch;
    const fr = this.log.readFrontier();
    if (fr) {
      const end = this.#readTo({ seg: fr.seg, off: fr.off });
      if (end.problem) throw this.#corruption(end.problem.at, end.problem.reason);
      this.#show({ seg: fr.seg, off: fr.off }, Math.min(fr.tsn, this.index.lastTsn));
    }
    assert(this.#visibleTsn >= visible, "a rebuilt view shows at least what was visible before");
  }

  #syncFailedError(pid: number): TxtDbError {
    if (pid === SYNC_FAILURE_GARBLED) {
      // Not a mark txtdb writes (a pid and its complement): bytes written over it by hand or
      // by a stray write. Whether a sync failed cannot be told, so it counts as one (commits
      // stay refused, and a writable open verifies the tail, which rewrites the mark); the
      // error says which file is damaged and what to do, not that some process's sync failed.
      const file = `${this.path}/${FRONTIER}`;
      return new TxtDbError("CORRUPTION", `Commits to "${this.path}" are refused: the sync-failure mark in "${file}" (bytes ${SYNC_FAILURE_AT} to ${SYNC_FAILURE_AT + 7}) is garbled (neither clear nor a mark txtdb writes) or the file was cut short of it under this process, so whether a sync of the log failed cannot be told. Close every process using the store and open it writable again: where the file still holds the mark, the open verifies the log's tail (it cuts what lies past the durable end, none of which was acknowledged) and rewrites the mark; where the file was cut, the mark went with it, and commits that failed with IO may appear. Then run \`txtdb check\`, and check the disk`, {
        details: { file, offset: SYNC_FAILURE_AT, path: this.path, durable: false },
      });
    }
    const who = `process ${pid}`;
    return new TxtDbError("IO", `Commits to "${this.path}" are refused: a sync of its log failed in ${who}, so records past the durable end may not be on disk. Close and reopen the store (a writable open verifies the tail), and check the disk`, {
      details: { path: this.path, pid, durable: false },
    });
  }

  /**
   * Under the writer lock: read to the real end of the log, including other processes'
   * batches on their way to a sync (rule 1). A torn tail past the durable end is cut off;
   * a bad record before it is CORRUPTION. Refuses (IO) while a sync failure is marked,
   * unless `opening`: a writable open verifies the tail then (rule 8), and makes durable
   * and publishes whatever lies past the frontier.
   */
  catchUpLocked(opening = false): void {
    if (this.#unmarkedFailure) throw this.#unmarkedFailure;
    // One read for both: under the writer lock the tail state stays as read (but for a
    // failure mark, which the sync path checks again), and a frontier read a moment early
    // is one the frontier has only moved on from.
    const head = this.log.readHead();
    let st = head.tail;
    let fr = head.frontier;
    if (st.failedPid !== 0) {
      if (!opening) throw this.#syncFailedError(st.failedPid);
      st = this.#verifyTailLocked(st);
      fr = this.log.readFrontier();
    }
    if (st.epoch !== this.#epoch) {
      if (comparePositions(this.#readPos, this.#visiblePos) > 0) {
        this.#rebuildView();
        fr = this.log.readFrontier();
      }
      this.#epoch = st.epoch;
    }
    const end = this.#readTo(undefined);
    const published = fr ? { seg: fr.seg, off: fr.off } : undefined;
    if (end.problem) {
      // A torn tail: past the durable end (when the frontier survived to tell it) and
      // followed by no whole frame. Anything else is damage, reported and left alone.
      // Outside a writable open, never before the published end either: in "relaxed" and
      // "none" that lies past the durable end, and what is before it are commits that
      // resolved (a power loss can take them, and only an open finds that out).
      const pastDurable = !fr || comparePositions(end.problem.at, { seg: fr.durableSeg, off: fr.durableOff }) >= 0;
      const beforePublished = !opening && !!published && comparePositions(end.problem.at, published) < 0;
      if (end.problem.cut || !pastDurable || beforePublished || this.log.validFrameAfter(end.problem.at)) throw this.#corruption(end.problem.at, end.problem.reason);
      this.log.truncateAt(end.problem.at);
      // Torn at the very start of a later segment: the scan read the earlier one to its end
      // (that is how it got there), so the log goes on at the start of the emptied segment.
      if (end.problem.at.off === 0 && end.problem.at.seg > this.#readPos.seg) this.#readPos = end.problem.at;
    } else if (published) {
      this.#adoptSealedStart(end.end, published);
    }
    const pos = this.#readPos;
    if (opening && this.log.wholeFrameAt({ seg: pos.seg + 1, off: 0 })) {
      // The log reads as ending here (zeros, or the file's end) and yet goes on in the next
      // segment: a seal's trim that was lost (a failed sync is marked, so this is damage).
      // Cut or reset here, the next append would go over those records, and the next roll
      // over would empty their segment.
      throw this.#corruption(pos, `the log ends at ${segmentName(pos.seg)}:${pos.off}, but ${segmentName(pos.seg + 1)} after it holds records`);
    }
    if (fr && comparePositions(pos, { seg: fr.durableSeg, off: fr.durableOff }) < 0) {
      // Records known durable are missing (zeroed, or the file was cut).
      // Both positions with their segments: offsets alone read as nonsense across segments
      // ("ends at 1047 before its durable end at 103").
      throw this.#corruption(pos, `the log ends at ${segmentName(pos.seg)}:${pos.off}, before its durable end at ${segmentName(fr.durableSeg)}:${fr.durableOff}`);
    }
    if (!opening && published && comparePositions(pos, published) < 0) {
      // Commits that resolved are missing from where this process reads, or its read
      // position is not where the log is. Only a writable open may find the frontier past
      // the log's end (a power loss took what "relaxed" or "none" had published) and put it
      // back; here that would throw those commits away, and the next append would go over
      // them. Nothing is written.
      throw this.#corruption(pos, `the log ends at ${segmentName(pos.seg)}:${pos.off} before the published frontier at ${segmentName(published.seg)}:${published.off}`);
    }
    const lastTsn = this.index.lastTsn;
    // A writable open that finds the frontier past the log's end puts it back (below) in a
    // new epoch: a read-only open that read the log to its end meanwhile (rule 11) then
    // reads the new frontier even if it equals the one it passed.
    const reset = opening && !!published && comparePositions(published, pos) > 0;
    if (reset) this.#epoch = (this.#epoch + 1) >>> 0;
    if (reset || st.endTsn !== lastTsn || comparePositions(st.end, pos) !== 0) this.log.writeTailEnd({ end: pos, endTsn: lastTsn, epoch: this.#epoch });
    const behind = !fr || fr.tsn !== lastTsn || comparePositions(pos, published!) !== 0;
    if (behind && (opening || this.#durability !== "full")) {
      // A writable open, "relaxed" and "none" publish what lies past the frontier now (a
      // dead writer's batch); in "full" the next sync covers it (rule 3). A frontier past
      // the log's end (a power loss took records "relaxed" had published) is reset.
      if (this.#durability !== "none") this.#syncSegment(pos.seg);
      this.#durablePos = pos;
      this.#publishMax(pos, lastTsn, pos, reset);
      this.#show(pos, lastTsn);
    } else if (fr) {
      this.#durablePos = { seg: fr.durableSeg, off: fr.durableOff };
      if (comparePositions(published!, pos) <= 0) this.#show(published!, fr.tsn);
    }
    this.#hooks.publishPin();
  }

  /**
   * Rule 11, at a read-only open, after its first {@link refresh} (which may have failed
   * with `refreshFailed`): what a writable open would make durable and publish
   * (catchUpLocked: a dead writer's whole records past the frontier, or, where a power loss
   * took records that "relaxed" had published, the log's end), this open makes durable and
   * shows, when no process could still be writing or syncing. The frontier file is never
   * synced, so after a power loss it may lag the log by every commit of its last seconds (or
   * be gone, or, in "relaxed", lie past the log); a read-only open used to show the store
   * that far back (or fail with CORRUPTION), and a backup taken through it left those
   * commits out, until some writable open came by.
   *
   * Only when something was written past what the refresh read (one small read says so; the
   * usual answer is no, and nothing else is done), and then only when, holding the writer
   * lock (so nobody is appending, and no writable open can start), no other process may
   * hold a live lease (so no batch is between its append and its sync, rule 3; a lease
   * directory that cannot be read, or is missing, cannot tell) and no sync failure is
   * marked (rule 8 would cut past the durable end). The log is read on to its end; then,
   * after ADOPT_SETTLE_MS without the lock, the same is looked at again, and nothing may
   * have moved (a live writer whose lease was deleted by hand would have published or
   * marked a failure by then). The segments past the visible end are fdatasynced (a
   * read-only handle may), and the end shown:
   * the next writable open publishes that same end, so the view never has to move back.
   * A torn tail ends the records, as it would be cut. Damage (a bad record with whole ones
   * after it, records known durable missing), which a writable open refuses, leaves the
   * view as the refresh left it. A failed sync is IO, thrown: the disk may have dropped
   * those records, and this process cannot mark the store (rule 7). This process writes
   * nothing. Returns true when it set the view.
   */
  async adoptDeadWritersRecords(writerLock: { tryAcquire(exclusive: boolean): (() => void) | undefined }, othersAlive: () => boolean, refreshFailed: boolean): Promise<boolean> {
    if (!refreshFailed && !this.log.writtenAt(this.#readPos)) return false;
    const from = this.#visiblePos;
    const first = this.#lookPastFrontier(writerLock, othersAlive);
    if (!first) return false;
    // A live writer whose lease file was deleted by hand would be between its append and
    // its sync: within a sync's time it publishes, or marks its sync failed. Whatever moved
    // meanwhile (the frontier, the epoch, the log's end) means someone is alive.
    await this.platform.sleep(ADOPT_SETTLE_MS);
    return this.#whileAlone(writerLock, othersAlive, (fr, st) => {
      if (st.epoch !== first.epoch) return false;
      if (fr === undefined ? first.frontier !== undefined : first.frontier === undefined || !sameFrontier(fr, first.frontier)) return false;
      const to = this.#readPos;
      try {
        this.#readTo(undefined); // reads nothing, unless something was appended since the first look
      } catch {
        return false;
      }
      if (comparePositions(this.#readPos, to) !== 0) return false;
      const passed = !!fr && comparePositions(to, { seg: fr.seg, off: fr.off }) < 0;
      for (let seg = from.seg; seg <= to.seg; seg++) {
        try {
          this.#syncSegment(seg);
        } catch (e) {
          throw new TxtDbError("IO", `A sync of "${this.path}/${segmentName(seg)}" failed while this read-only open made a stopped writer's last records durable: the disk may have dropped them. Nothing was shown past the frontier; check the disk before opening the store writable`, { cause: e, details: { path: `${this.path}/${segmentName(seg)}` } });
        }
      }
      if (passed) this.#passedFrontier = { frontier: fr, epoch: st.epoch }; // past the log: a writable open replaces it, with a new epoch
      this.#show(to, this.index.lastTsn);
      this.#hooks.publishPin();
      return true;
    }) ?? false;
  }

  /**
   * The first look of {@link adoptDeadWritersRecords}, holding the writer lock: nobody else
   * alive, no failure marked, and whole records (or the log's end short of a frontier past
   * it) to show; reads them into the index, not yet shown. Undefined if not.
   */
  #lookPastFrontier(writerLock: { tryAcquire(exclusive: boolean): (() => void) | undefined }, othersAlive: () => boolean): { frontier: Readonly<Frontier> | undefined; epoch: number } | undefined {
    return this.#whileAlone(writerLock, othersAlive, (fr, st) => {
      if (st.epoch !== this.#epoch && comparePositions(this.#readPos, this.#visiblePos) > 0) return undefined; // read before a repair: the refresh's business
      this.#epoch = st.epoch;
      let end;
      try {
        // Records read and not shown stay past the visible end, as records read ahead do
        // (rule 10).
        end = this.#readTo(undefined);
      } catch {
        return undefined;
      }
      if (end.problem && (end.problem.cut || this.log.validFrameAfter(end.problem.at))) return undefined;
      const to = this.#readPos;
      if (fr && comparePositions(to, { seg: fr.durableSeg, off: fr.durableOff }) < 0) return undefined;
      const passed = !!fr && comparePositions(to, { seg: fr.seg, off: fr.off }) < 0;
      if (!passed && comparePositions(to, this.#visiblePos) <= 0) return undefined;
      return { frontier: fr, epoch: st.epoch };
    });
  }

  /**
   * Runs `fn` with the frontier and tail state, holding the writer lock, if it is free now
   * (nobody appending), no other process may be alive and no sync failure is marked (rule
   * 11's conditions, checked at both looks); undefined otherwise.
   */
  #whileAlone<T>(writerLock: { tryAcquire(exclusive: boolean): (() => void) | undefined }, othersAlive: () => boolean, fn: (fr: Readonly<Frontier> | undefined, st: TailState) => T): T | undefined {
    let release: (() => void) | undefined;
    try {
      release = writerLock.tryAcquire(true);
    } catch {
      return undefined; // a lock file this process may not open: the frontier stands
    }
    if (!release) return undefined; // a writer is appending: it publishes what it appends
    try {
      if (othersAlive()) return undefined;
      const { frontier: fr, tail: st } = this.log.readHead();
      if (st.failedPid !== 0) return undefined;
      return fn(fr, st);
    } finally {
      release();
    }
  }

  /**
   * Rule 8, at a writable open under the writer lock: a sync failed, so nothing past the
   * durable end is trusted (none of it resolved): it is cut, the log synced, the epoch
   * bumped and the mark cleared, in the frontier lock so no syncer settles meanwhile.
   */
  #verifyTailLocked(st: TailState): TailState {
    return this.log.withFrontierLocked(() => {
      const fr = this.log.readFrontier();
      // Every store is made with a frontier (at the log's start), so an unreadable one was
      // written over, and with it the durable end this repair would cut to. Cutting to the
      // log's start instead threw away every commit that ever resolved: nothing is cut.
      if (!fr) throw this.#frontierUnreadable(st);
      const durable = { seg: fr.durableSeg, off: fr.durableOff };
      this.log.truncateAt(durable); // syncs the segment and the directory
      const epoch = (st.epoch + 1) >>> 0;
      const next = { end: durable, endTsn: fr.tsn, epoch };
      this.log.writeTailEnd(next);
      this.log.writeSyncFailure(0);
      return { ...next, failedPid: 0 };
    });
  }

  /** CORRUPTION for a writable open that must verify the tail (rule 8) and cannot read the frontier, which says where to cut. */
  #frontierUnreadable(st: TailState): TxtDbError {
    const file = `${this.path}/${FRONTIER}`;
    const mark = st.failedPid === SYNC_FAILURE_GARBLED ? "garbled" : `set by process ${st.failedPid}`;
    return new TxtDbError("CORRUPTION", `Cannot open "${this.path}" writable: its sync-failure mark is ${mark}, so the log's tail must be cut back to its durable end, but the frontier in "${file}" (bytes 0 to 35), which records that end, is unreadable. Nothing was cut. Run \`txtdb check\` and check the disk. Then either delete "${file}" with every process of the store closed (a writable open rebuilds it from the log: every acknowledged commit stays, but commits that failed with IO after a failed sync may appear too), or restore the store from a backup (losing what was committed since)`, {
      details: { file, offset: 0, path: this.path },
    });
  }

  // --- appending ---

  #syncSegment(seg: number): void {
    const f = this.log.segment(seg);
    if (!f) return;
    this.#datasync(f);
  }

  #datasync(f: { datasync(): void }): void {
    const t0 = this.platform.monotonicMs();
    f.datasync();
    this.#meters.fsyncUs.record((this.platform.monotonicMs() - t0) * 1000);
    this.#meters.counters.fsyncs++;
  }

  /**
   * Rule 4: moves the frontier to `pos` (version `tsn`) and its durable end to `durable`,
   * each only forward, in the frontier lock. `reset` (a writable open, under the writer
   * lock) writes them as given, for a frontier that lies past the log's end.
   */
  #publishMax(pos: LogPosition, tsn: number, durable: LogPosition, reset = false): void {
    assert(comparePositions(durable, pos) <= 0, `the durable position ${durable.seg}:${durable.off} passes the published end ${pos.seg}:${pos.off}`);
    this.log.withFrontierLocked(() => this.#publishInLock(pos, tsn, durable, reset));
  }

  /** The body of {@link #publishMax}; `current` is the frontier the caller just read in the lock, if it did. */
  #publishInLock(pos: LogPosition, tsn: number, durable: LogPosition, reset = false, current?: Readonly<Frontier> | null): void {
    const now = reset ? undefined : current === undefined ? this.log.readFrontier() : current ?? undefined;
    const fr: Frontier = { tsn, seg: pos.seg, off: pos.off, durableSeg: durable.seg, durableOff: durable.off };
    if (now) {
      if (comparePositions({ seg: now.seg, off: now.off }, pos) >= 0) {
        fr.tsn = now.tsn;
        fr.seg = now.seg;
        fr.off = now.off;
      }
      if (comparePositions({ seg: now.durableSeg, off: now.durableOff }, durable) >= 0) {
        fr.durableSeg = now.durableSeg;
        fr.durableOff = now.durableOff;
      }
      if (sameFrontier(fr, now)) return;
    }
    this.log.publishFrontier(fr);
  }

  /**
   * Appends a batch of frames (`data`, records already applied to the index) at the read
   * position: rules 1, 2 and 9 above ("relaxed" and "none" also publish it). The writer
   * lock is held and catch-up has run. Returns what {@link makeDurable} needs after the
   * release. On failure the bytes are taken back and the error is rethrown; the caller
   * undoes the index.
   */
  appendLocked(data: Uint8Array): AppendedBatch {
    assert(data.length > 0, "an empty batch is never appended");
    const start = this.#readPos;
    // A full segment is sealed before the batch is built (sealActiveLocked, by the
    // committer): a roll-over here would put the seal's fsync between the committer's last
    // look at the lock and the append's write (rule 1).
    assert(start.off < this.#segmentBytes, "a full segment is sealed before an append");
    const seg = start.seg;
    const file = this.log.segment(seg);
    let batchWritten = false;
    let endWritten = false;
    try {
      if (!file) throw new TxtDbError("CORRUPTION", `Segment ${segmentName(seg)} of "${this.path}" is missing`, { details: { file: segmentName(seg), offset: 0 } });
      const at = start.off;
      // Write at the logical end (the read position after catch-up), into preallocated space.
      this.log.preallocate(file, at + data.length, this.#segmentBytes);
      batchWritten = true; // before the call: a write that fails may have written part of it
      file.write(data, at);
      const end = { seg, off: at + data.length };
      assert(comparePositions(end, start) > 0, "a batch's end lies past its start");
      const tsn = this.index.lastTsn;
      endWritten = true;
      this.log.writeTailEnd({ end, endTsn: tsn, epoch: this.#epoch }); // rule 2
      this.#readPos = end;
      if (this.#durability !== "full") this.#publishMax(end, tsn, this.#durablePos);
      this.#segLastTsn.set(seg, tsn);
      if (this.#durability !== "full") {
        this.#show(end, tsn);
        if (this.#durability === "relaxed") this.#scheduleRelaxedSync();
      }
      return { seg, end, tsn, epoch: this.#epoch };
    } catch (e) {
      // Nothing of this batch may become visible (rule 9): the caller takes it back off
      // the index; here it goes off the file, and the tail state goes back.
      this.#readPos = start;
      if (!batchWritten) throw e; // nothing was written: nothing to cut, and no sync to pay
      try {
        // The bytes must go (a write that fails may have written part of them), or the next
        // writer's catch-up would adopt a failed commit; and the cut must be durable, or
        // after a power loss the next writable open would find the batch's whole records
        // past the frontier and adopt them as a dead writer's.
        file!.truncate(start.off);
        this.#syncSegment(seg);
        if (endWritten) this.log.writeTailEnd({ end: start, endTsn: this.index.lastTsn, epoch: this.#epoch });
      } catch {
        // A syncer could publish an end whose bytes are gone, or the batch may outlive a power
        // loss: no commit may resolve now, and the next writable open cuts past the durable
        // end (rules 7 and 8).
        try {
          this.log.withFrontierLocked(() => this.log.writeSyncFailure(this.platform.pid));
        } catch (f) {
          // Neither cut nor marked: the batch's bytes may be adopted by the next catch-up or
          // open, so its outcome is unknown, and the error says so (a plain IO says "never appears").
          throw this.#unknownOutcome(this.index.lastTsn, f);
        }
      }
      throw e;
    }
  }

  /**
   * Rules 3, 4, 6 and 7, after the writer lock was released: returns once the batch is
   * durable and published, or throws IO (the batch never resolves). "relaxed" and "none"
   * published it under the lock already.
   */
  async makeDurable(b: AppendedBatch): Promise<void> {
    if (this.#durability !== "full") return this.#showToOtherReaders(b);
    try {
      await this.#makeDurable(b);
    } catch (e) {
      if (e instanceof TxtDbError && e.details?.durable === false) throw e;
      // Any other failure (a read of the frontier, the sync itself): this batch lies in the
      // log, other batches may lie behind it, and its committer is told it failed. It must
      // never appear, so unless a sync already covers it, the failure is marked (rule 7) and
      // the next writable open cuts it.
      let marked: boolean;
      try {
        marked = markOutcomes.get(failureKey(e)) ?? this.#markFailedUnlessCovered(b);
      } catch (f) {
        // Not marked (the frontier lock could not be had: its holder is stopped; or the mark
        // could not be written): the batch lies in the log, and the next sync of any
        // process, or the next writable open, makes it appear. That failure used to be
        // reported as a plain IO, which says "never appears", and the commit appeared
        // later: its outcome is unknown, and says so.
        throw this.#unknownOutcome(b.tsn, f);
      }
      // Marked: the batch never appears (rules 7-8), a plain IO.
      if (marked) throw ioError(e, `Making a commit to "${this.path}" durable`);
      this.#settled(b); // covered by another process's sync after all
    }
    return this.#showToOtherReaders(b);
  }

  /**
   * Rule 7, in the frontier lock: false if the published durable end covers batch `b` (in
   * its epoch: another process's sync made it durable), else marks the sync failure and
   * returns true. Throws if the lock cannot be had or the mark not written.
   */
  #markFailedUnlessCovered(b: AppendedBatch): boolean {
    return this.log.withFrontierLocked(() => {
      const fr = this.log.readFrontier();
      if (fr && comparePositions({ seg: fr.durableSeg, off: fr.durableOff }, b.end) >= 0 && this.log.readTailState().epoch === b.epoch) return false;
      this.log.writeSyncFailure(this.platform.pid);
      return true;
    });
  }

  /**
   * The frontier covers batch `b`: before its commits resolve, makes sure every process's
   * next read sees them (mirror.ts rules 4 and 5). With the mirror: the mirror covers it
   * (copied from the file if another process published it there alone). Without: waits
   * MIRROR_TRUST_MS if any process reads through a mirror.
   */
  async #showToOtherReaders(b: AppendedBatch): Promise<void> {
    if (this.log.mirrored) {
      if (this.#mirrorCovers(b)) return;
      this.log.copyFrontierToMirror();
      if (this.#mirrorCovers(b)) return;
      // The file shows no frontier that covers it (someone truncated or garbled it): wait
      // as a process without the mirror does. This process's own registration counts.
    }
    const lookedAtMs = this.platform.monotonicMs();
    if (!readersRegistered(this.#readersHandle())) return;
    this.#meters.counters.mirrorWaits++;
    // A fraction of a millisecond, shorter than any timer: paused where the port can (this
    // process has nothing to do for its commit until then), else the event loop turns
    // until it has passed. Turning it kept a core busy all along: a Deno process without
    // FFI writing beside Node readers used ~520 µs of CPU per commit that way.
    for (let left = MIRROR_TRUST_MS; left > 0; left = MIRROR_TRUST_MS - (this.platform.monotonicMs() - lookedAtMs)) {
      if (this.platform.pause) this.platform.pause(left);
      else await (this.platform.nextTurn ? this.platform.nextTurn() : this.platform.sleep(0));
    }
  }

  /**
   * Ends this process's registration as a reader of the mirror once it has not read for
   * READER_IDLE_MS (mirror.ts rule 3), so that processes without the mirror stop waiting
   * for it. Checked by an unref'd timer while registered.
   */
  #armReaderIdleCheck(): void {
    this.#readerIdleTimer?.cancel();
    this.#readerIdleTimer = armTimer(READER_IDLE_MS, () => {
      this.#readerIdleTimer = undefined;
      if (this.#closed || !this.log.mirrorReaderRegistered) return;
      if (this.platform.monotonicMs() - this.#mirrorReadAtMs >= READER_IDLE_MS) {
        this.log.unregisterMirrorReader();
        this.#fileProbedAtMs = -Infinity;
      } else {
        this.#armReaderIdleCheck();
      }
    }, { unref: true });
  }

  /** True if the frontier mirror shows a frontier at or past batch `b`'s end. */
  #mirrorCovers(b: AppendedBatch): boolean {
    const m = this.log.readMirroredFrontier();
    return m !== undefined && comparePositions({ seg: m.seg, off: m.off }, b.end) >= 0;
  }

  /** This process's handle of `readers.lock`, opened once; undefined if it cannot be (mirror.ts counts that as readers present). */
  #readersHandle(): FileHandle | undefined {
    if (!this.#readersLockTried) {
      this.#readersLockTried = true;
      try {
        this.#readersLock = this.log.openLockFile(READERS_LOCK);
      } catch {
        this.#readersLock = undefined;
      }
    }
    return this.#readersLock;
  }

  /** Attaches the frontier mirror (mirror.ts) where the platform offers one. */
  attachMirror(): void {
    if (!this.#closed) this.log.attachMirror();
  }

  /**
   * The records this process has read past the durable end, as a batch {@link makeDurable}
   * can make durable (undefined if there are none, or outside "full"): other processes'
   * batches appended and not synced yet, the syncs of their writers under way, or never
   * coming (a writer killed or stopped between its append and its sync). Called holding the
   * writer lock, after the catch-up: see the committer's use (commit.ts rule 2).
   */
  unsyncedReadLocked(): AppendedBatch | undefined {
    if (this.#durability !== "full" || comparePositions(this.#readPos, this.#durablePos) <= 0) return undefined;
    return { seg: this.#readPos.seg, end: this.#readPos, tsn: this.index.lastTsn, epoch: this.#epoch };
  }

  async #makeDurable(b: AppendedBatch): Promise<void> {
    const file = this.log.segment(b.end.seg);
    if (!file) throw this.#cutError(b); // a segment is deleted only once folded, so durable
    // One syncer at a time, by the segment's flock (the sync lock): a process that finds a
    // sync in flight waits for it, since that sync often covers its batch too (it read the
    // log end after this append). Where the port can wait on a helper thread, the kernel
    // wakes it when the syncer releases, through a second handle of the segment kept for
    // that; otherwise it polls. The wait is bounded: a syncer stopped mid-sync (SIGSTOP, a
    // debugger) must not stop the others, who sync for themselves after SYNC_WAIT_MS_MAX,
    // without the lock (it only shares work; publishing is safe without it, rule 4).
    let holder: FileHandle | undefined;
    let st: TailState | undefined;
    let waited = false;
    const t0 = this.platform.monotonicMs();
    for (;;) {
      st = this.#coveredOrRefused(b);
      if (!st) return this.#settled(b);
      if (file.tryLock(true)) {
        holder = file;
        break;
      }
      waited = true;
      const left = SYNC_WAIT_MS_MAX - (this.platform.monotonicMs() - t0);
      if (left <= 0) break;
      const waiter = this.#syncWaiter(b.end.seg);
      if (waiter) {
        if (await this.#waitInKernel(waiter, left)) {
          holder = waiter;
          break;
        }
      } else {
        await this.platform.sleep(0);
      }
    }
    try {
      if (waited) {
        // Another process synced meanwhile: look again (it may have covered this batch).
        st = this.#coveredOrRefused(b);
        if (!st) return this.#settled(b);
      }
      // The tail state's end is at or past this batch's (appended later, same epoch): the
      // sync covers it too, so it is what gets published.
      const later = st.epoch === b.epoch && comparePositions(st.end, b.end) > 0;
      const target = later ? st.end : b.end;
      const targetTsn = later ? st.endTsn : b.tsn;
      try {
        this.#syncSegment(target.seg); // an earlier segment of the batch was synced when sealed
      } catch (e) {
        // Marked before the sync lock is released (the finally below): a waiter for it must
        // find the mark, not sync after the failure, succeed (the kernel may have dropped the
        // failed pages) and publish past them. makeDurable's catch reports it, from what
        // this look found (a second mark would be one more write and fdatasync).
        try {
          markOutcomes.set(failureKey(e), this.#markFailedUnlessCovered(b));
        } catch {
          // makeDurable's catch tries again, and says the outcome is unknown if it cannot
        }
        throw e;
      }
      if (!this.#segmentAtPath(target.seg)) {
        // A compaction may have folded and deleted it after a seal covered this batch.
        if (!this.#coveredOrRefused(b)) return this.#settled(b);
        throw this.#segmentGone(target.seg);
      }
      this.log.withFrontierLocked(() => {
        // One read for both: in the frontier lock neither the frontier, the epoch nor the mark moves.
        const { tail: now, frontier: fr } = this.log.readHead();
        if (now.epoch !== b.epoch) throw this.#cutError(b);
        if (fr && comparePositions({ seg: fr.durableSeg, off: fr.durableOff }, b.end) >= 0) return; // rule 7
        if (now.failedPid !== 0) throw this.#syncFailedError(now.failedPid);
        this.#publishInLock(target, targetTsn, target, false, fr);
      });
    } finally {
      holder?.unlock();
    }
    this.#settled(b);
  }

  /**
   * Undefined if the published durable end covers the batch (rule 3), else the tail state
   * read; throws if the batch can never resolve (rule 6). Read without the frontier lock: the frontier first, then the epoch
   * and mark. A frontier covering the batch was durable past it when read, and a repair
   * never cuts durable bytes; a repair before that read shows in the epoch read after it.
   */
  #coveredOrRefused(b: AppendedBatch): TailState | undefined {
    // Both in one read first. Not covered, the order does not matter (the sync path reads
    // both again in the frontier lock before it publishes); covered, the epoch is read
    // again after the frontier, as the rule above wants.
    const { frontier: fr, tail } = this.log.readHead();
    if (tail.epoch !== b.epoch) throw this.#cutError(b);
    if (fr && comparePositions({ seg: fr.durableSeg, off: fr.durableOff }, b.end) >= 0) {
      if (this.log.readTailState().epoch !== b.epoch) throw this.#cutError(b);
      return undefined;
    }
    if (tail.failedPid !== 0) throw this.#syncFailedError(tail.failedPid);
    return tail;
  }

  /**
   * The second handle of segment `seg` that waits for the sync lock on a helper thread,
   * or undefined where the port cannot wait so, or while an abandoned wait is pending.
   */
  #syncWaiter(seg: number): FileHandle | undefined {
    if (this.#syncWait && this.#syncWait.seg !== seg && !this.#syncWait.pending) {
      this.#syncWait.file.close();
      this.#syncWait = undefined;
    }
    if (!this.#syncWait) {
      const probe = this.log.segment(seg);
      if (!probe?.lockAsync) return undefined;
      this.#syncWait = { seg, file: this.log.openSegmentAgain(seg), pending: false };
    }
    return this.#syncWait.seg === seg && !this.#syncWait.pending ? this.#syncWait.file : undefined;
  }

  /** Waits up to `ms` for `waiter`'s lock; false if not granted by then (released when it comes). */
  #waitInKernel(waiter: FileHandle, ms: number): Promise<boolean> {
    const state = this.#syncWait!;
    state.pending = true;
    return new Promise<boolean>((resolve) => {
      let done = false;
      const timer = armTimer(Math.max(1, Math.ceil(ms)), () => {
        if (done) return;
        done = true;
        resolve(false);
      });
      waiter.lockAsync!(true).then(
        () => {
          state.pending = false;
          if (!done && !this.#closed) {
            done = true;
            timer.cancel();
            resolve(true);
            return;
          }
          try {
            waiter.unlock(); // granted after its wait was given up: nobody wants it
          } catch {
            // closed meanwhile
          }
          if (this.#syncWait !== state) waiter.close();
        },
        () => {
          state.pending = false;
          if (done) return;
          done = true;
          timer.cancel();
          resolve(false);
        },
      );
    });
  }

  /**
   * After a sync, before it is published: the synced segment must still be the file its
   * path names. One deleted or replaced under this process (a tmp cleaner, a careless `rm`)
   * took the appends into an unlinked inode, and the commits resolved and were gone. One
   * identity check per sync (Platform.identity: an lstat would make the next sync write
   * one more block), which costs far more.
   */
  #segmentAtPath(seg: number): boolean {
    const file = this.log.segment(seg);
    if (!file) return true;
    const atPath = identityAt(this.platform, this.log.path(segmentName(seg)));
    // An open file's device and inode never change: fstat it once per handle, not per sync
    // (a stat of the segment between two syncs measured ~10-20 µs slower syncs here).
    let mine = this.#segmentIdentity.get(file);
    if (mine === undefined) {
      const info = file.info();
      mine = { ino: info.ino, dev: info.dev };
      this.#segmentIdentity.set(file, mine);
    }
    return !!atPath && atPath.isFile && atPath.ino === mine.ino && atPath.dev === mine.dev;
  }

  /** Device and inode of each open segment handle (see #segmentAtPath). */
  readonly #segmentIdentity = new WeakMap<FileHandle, { ino: number; dev: number }>();

  /** CORRUPTION for a segment gone from under this process: the commit fails and the failure is marked (rule 7). */
  #segmentGone(seg: number): TxtDbError {
    const name = segmentName(seg);
    const atPath = this.platform.lstat(this.log.path(name));
    return new TxtDbError("CORRUPTION", `Log segment "${this.log.path(name)}" was ${atPath ? "replaced" : "deleted"} while this process wrote to it: its commits since are not in the store. Stop the processes using it, restore the store from a backup, and run \`txtdb check\``, {
      details: { file: name, offset: 0 },
    });
  }

  #settled(b: AppendedBatch): void {
    if (comparePositions(b.end, this.#durablePos) > 0) this.#durablePos = b.end;
    if (b.epoch === this.#epoch) this.#show(b.end, b.tsn);
  }

  /**
   * The error of a commit that failed after its bytes reached the log, when neither the cut
   * (rule 9) nor the failure mark (rule 7) could be made: it may still appear.
   */
  #unknownOutcome(tsn: number, cause: unknown): TxtDbError {
    const why = cause instanceof Error ? cause.message : String(cause);
    return new TxtDbError("IO", `The outcome of the commit at version ${tsn} of "${this.path}" is unknown: it was written to the log but could not be made durable, nor marked failed (${why}); it may still appear once that is fixed. Read its keys before retrying it, and see \`txtdb doctor\``, {
      cause,
      details: { path: this.path, version: BigInt(tsn), outcome: "unknown" },
    });
  }

  #cutError(b: AppendedBatch): TxtDbError {
    return new TxtDbError("IO", `The commit at version ${b.tsn} of "${this.path}" was not made durable: a sync of the log failed and the tail was cut back to its durable end since; retry the transaction`, {
      details: { path: this.path, version: BigInt(b.tsn), durable: false },
    });
  }

  /** True when the active segment is full: the next append would roll over (the writer lock is held, caught up). */
  activeSegmentFull(): boolean {
    return this.#readPos.off >= this.#segmentBytes;
  }

  /**
   * Seals the active segment: trims its preallocated tail, syncs it (whatever the mode),
   * starts the next segment and publishes the frontier there. The committer calls it when
   * its segment is full, before it builds a batch (the only roll-over), and compaction so
   * that it may fold the segment. Everything before the new segment is then
   * durable. Other processes move on to the new segment when they next read past the old
   * one's end. Returns false, doing nothing, when the active segment holds no record. The
   * writer lock is held and catch-up has run.
   */
  sealActiveLocked(checkLock: () => void): boolean {
    const pos = this.#readPos;
    if (pos.off === 0) return false;
    const file = this.log.segment(pos.seg);
    if (!file) return false;
    // `checkLock` throws if the writer lock was lost (its file deleted under this process):
    // asked right before the cut and right before the next segment is made (emptied if a
    // leftover), each of which would destroy another holder's appends; the sync between
    // them takes milliseconds.
    checkLock();
    this.#refuseRollInto(pos.seg + 1);
    file.truncate(pos.off);
    this.#syncSealed(pos.seg);
    const next = { seg: pos.seg + 1, off: 0 };
    checkLock();
    this.#refuseRollInto(next.seg); // again: the sync above took milliseconds
    this.log.createSegment(next.seg);
    const durableBefore = this.#durablePos;
    this.#durablePos = next;
    this.#readPos = next;
    try {
      this.log.writeTailEnd({ end: next, endTsn: this.index.lastTsn, epoch: this.#epoch });
      this.#publishSealed(next, this.index.lastTsn);
    } catch (e) {
      // The tail state or the frontier still ends in the sealed segment, and other processes
      // append there: this process reads on from the seal's position, as appendLocked's
      // rollback does (a read position in the next segment would skip their commits, and the
      // next read stopped on an assertion). The empty next segment is a failed roll-over's
      // leftover, reused by the next one.
      this.#readPos = pos;
      this.#durablePos = durableBefore;
      throw e;
    }
    this.#show(next, this.index.lastTsn);
    return true;
  }

  /**
   * The sync of a seal (segment `seg`, just trimmed to its end; the writer lock held). It
   * makes durable every batch appended before it, other processes' too, whose syncs may
   * then find themselves covered (rule 3), and the trim. A failure is a failed sync of those
   * batches, marked as rule 7 marks one, whether or not the durable end covers them: the
   * trim may be lost too, and a log that goes on in the next segment past a run of zeros in
   * this one reads as ending at the zeros. Retrying the sync proves nothing (after a failed
   * fsync the kernel may have dropped the pages). A segment deleted or replaced under this
   * process (its appends went into an unlinked inode) is CORRUPTION, before any publish.
   */
  #syncSealed(seg: number): void {
    // In the sync lock, as any sync (rule 3), waited for as long as a commit's sync waits:
    // a sync of another process under way may be failing, and it marks the failure before
    // it lets go; this seal's sync succeeding meanwhile says nothing about the pages that
    // one lost, and its publish (after the mark, so refused) would cover them. The wait
    // spins: the writer lock is held and the seal is synchronous; it happens once a segment.
    const file = this.log.segment(seg);
    let locked = false;
    if (file) {
      const t0 = this.platform.monotonicMs();
      while (!(locked = file.tryLock(true)) && this.platform.monotonicMs() - t0 < SYNC_WAIT_MS_MAX) {
        // another process is syncing this segment
      }
    }
    try {
      try {
        this.#syncSegment(seg);
      } catch (e) {
        this.#markSealFailure(e);
        throw ioError(e, `Sealing log segment "${this.log.path(segmentName(seg))}"`);
      }
    } finally {
      if (locked) file!.unlock();
    }
    if (!this.#segmentAtPath(seg)) throw this.#segmentGone(seg);
  }

  /**
   * Rule 7 for a seal's failed sync (`cause`), the writer lock held. In the frontier lock;
   * if that cannot be had (its holder stopped), without it: no verifying open can clear the
   * mark meanwhile (it needs the writer lock). If even that fails, this process refuses
   * every later commit itself (IO: their outcome would be unknown) until it is reopened.
   */
  #markSealFailure(cause: unknown): void {
    const pid = this.platform.pid;
    try {
      this.log.withFrontierLocked(() => this.log.writeSyncFailure(pid));
      return;
    } catch {
      // the frontier lock could not be had, or the mark not written in it
    }
    try {
      this.log.writeSyncFailure(pid);
    } catch {
      this.#unmarkedFailure = new TxtDbError("IO", `Commits to "${this.path}" are refused in this process: a sync of its log failed as a segment was sealed (${cause instanceof Error ? cause.message : String(cause)}), and the failure could not be marked for the other processes. Check the disk, close the store in every process, and open it again`, {
        cause,
        details: { path: this.path, durable: false },
      });
    }
  }

  /**
   * Publishes the start of the segment a seal began (rule 4), in the frontier lock, unless a
   * sync failure is marked (rule 6): a batch that another process failed to sync may lie
   * before it, and this seal's own sync, though it succeeded, says nothing about its bytes.
   */
  #publishSealed(next: LogPosition, tsn: number): void {
    this.log.withFrontierLocked(() => {
      const { tail, frontier } = this.log.readHead();
      if (tail.failedPid !== 0) throw this.#syncFailedError(tail.failedPid);
      this.#publishInLock(next, tsn, next, false, frontier ?? null);
    });
  }

  /**
   * Before a roll-over into segment `next` (the writer lock held, caught up): a whole record
   * at its start means this process's view of the log is wrong, since its catch-up would have
   * read on into it. Rolling over would cut the active segment at this process's read
   * position and empty `next` (createSegment), destroying commits other processes made:
   * CORRUPTION instead, before anything is cut or written. A leftover of a failed roll-over
   * holds no whole record at its start, and is emptied and reused.
   */
  #refuseRollInto(next: number): void {
    if (!this.log.wholeFrameAt({ seg: next, off: 0 })) return;
    throw new TxtDbError("CORRUPTION", `Segment ${segmentName(next)} of "${this.path}" already holds records that this process's catch-up did not read (it is at ${segmentName(this.#readPos.seg)}:${this.#readPos.off}); nothing was written. Close and reopen the store; run \`txtdb check\` if it persists`, {
      details: { file: segmentName(next), offset: 0 },
    });
  }

  #scheduleRelaxedSync(): void {
    if (this.#relaxedTimer !== undefined) return;
    this.#relaxedTimer = armTimer(this.#relaxedSyncMs, () => {
      this.#relaxedTimer = undefined;
      if (this.#closed) return;
      const pos = this.#readPos;
      try {
        this.#syncSegment(pos.seg);
        this.#durablePos = pos;
      } catch {
        // Reported by the next commit's own I/O; the durable end simply does not advance.
      }
    });
  }

  // --- closing ---

  /** The database is closing: a pending relaxed sync is done now, and no later one runs. */
  stop(): void {
    this.#closed = true;
    if (this.#relaxedTimer !== undefined) {
      this.#relaxedTimer.cancel();
      this.#relaxedTimer = undefined;
      try {
        this.#syncSegment(this.#readPos.seg);
      } catch {
        // closing anyway
      }
    }
  }

  /**
   * Closes the log files and frees the index's memory now, even if the caller keeps the
   * database object: every later call fails with CLOSED before it could look at the index.
   */
  close(): void {
    this.#readerIdleTimer?.cancel();
    this.#readerIdleTimer = undefined;
    this.#readersLock?.close();
    this.#readersLock = undefined;
    if (this.#syncWait && !this.#syncWait.pending) this.#syncWait.file.close();
    this.#syncWait = undefined; // a pending wait closes its handle when it ends
    this.log.close();
    this.levels.close();
    this.index = this.#newIndex();
  }
}
