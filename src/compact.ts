/**
 * Compaction: folds sealed log segments into sorted tables (format 2, fold.ts) below the
 * oldest version any live process pins, switches the manifest, and deletes what it
 * replaced; and, at open, the cleanup of what a crashed compaction left behind.
 *
 * Compaction runs in three phases so that writers in other processes keep committing while
 * tables are written: (a) under the writer lock, the plan (rule 1, and the sealing of the
 * active segment); (b) without it, the tables (rule 2) — the versions folded are at or
 * below every pin and never change, and this process's in-memory table keeps them until
 * its own switch; (c) under the writer lock again, the manifest switch (rules 3–5), only
 * if nothing moved meanwhile: the manifest is still the one planned against, and no live
 * process now pins below the planned version (a process that opened meanwhile may).
 * Otherwise the new tables are deleted and nothing is switched. `compact.lock` (flock)
 * keeps two compactions (and a compaction and a format upgrade) from running at once, in
 * any processes.
 *
 * Which process compacts: any writable one, when asked (`db.compact()`) or when its own
 * commits seal segments past `autoCompactBytes`; `compact.lock` makes the others wait.
 *
 * The manifest switch, in the order {@link Compactor.run} carries it out:
 *
 * 1. Only sealed segments fold (never the active one, never one past the read position),
 *    and only while their last version is at or below every live process's pin, so no
 *    version a live snapshot, transaction or watcher can read is removed. When every
 *    version in the active segment is at or below that pin, the active segment is sealed
 *    first (a roll-over, see Tail.sealActiveLocked), so compaction reclaims old versions
 *    whatever `segmentBytes` is; an active segment with nothing in it is never sealed,
 *    so compacting again without new commits creates no files.
 * 2. The tables are written, fdatasynced and renamed into place, and the directory synced
 *    (fold.ts rules 1–6).
 * 3. The manifest switch: temp and fsync (before the writer lock: only holders of
 *    `compact.lock` write or delete `MANIFEST.tmp`), then under the writer lock the checks,
 *    the rename and the directory fsync. Until it is durable the old manifest, with all
 *    its files, is the store. The new manifest
 *    carries the folded version, the namespace bindings at it and the table list; other
 *    processes see it change when their log reading reaches the segment the seal started
 *    (tail.ts) and adopt it then: open the new tables, close the old.
 * 4. Only then, and after rule 5, is what it replaced deleted: the folded segments and the
 *    replaced tables, then the directory is fsynced. Rules 4 and 5 run after the writer
 *    lock is released (under `compact.lock` still): the lock covers only the catch-up, the
 *    checks and the manifest's write, so other processes' commits wait for no more. Processes still holding these files open keep reading
 *    them (POSIX) until they adopt the new manifest; none needs them after that, and a
 *    process that opens a table afresh does so from a manifest it just read, retrying from
 *    the newer manifest if a compaction deleted the table meanwhile.
 * 5. This process's own memory: its tables become the new ones, and the in-memory table
 *    drops the versions they hold (before rule 4, so it never reads a file it deletes).
 * 6. `compact.lock` excludes other compactions only while its path names the file this
 *    process locked: a lock file deleted under a running compaction (a tmp cleaner) lets
 *    another process lock a new one, plan against the same manifest and pick the same
 *    table names. So the compaction checks its lock before each file it creates, renames
 *    or deletes (fold.ts, rule 7), before `MANIFEST.tmp`, and under the writer lock before
 *    the switch, where it also checks that every name it wrote still leads to its file.
 *    A compaction that lost its lock fails with `IO`, switches nothing and deletes none
 *    of the store's files; a failed one deletes only names that still lead to its files.
 *
 * What cleanup at open may delete ({@link Compactor.removeLeftoversLocked}, under the
 * writer lock and `compact.lock`, after the manifest was checked against the files):
 *
 * 1. Only names txtdb writes, matched exactly: `seg-<10 digits>.log`, `ckpt-<16 digits>-<n>.dat`
 *    (and `.tmp`), `tbl-<16 digits>.sst` (and `.tmp`), `MANIFEST.tmp` (only under
 *    `compact.lock`, like tables). Any other file in the directory is never touched.
 * 2. A segment only below the manifest's first segment, and only if it starts with a
 *    whole record at or below the folded version. One whose first record lies past it
 *    means the manifest does not match the log: CORRUPTION, and nothing is deleted. One
 *    that does not start with a record is not ours: left alone.
 * 3. A checkpoint or table only if the manifest does not name it, and only while this
 *    process holds `compact.lock` (a compaction in another process may be writing one the
 *    manifest does not name yet). Without that lock, cleanup of them waits for a later open.
 *
 * Each compaction's plan, which holds both locks, runs the same cleanup, so that what a
 * failed step of an earlier compaction left goes without waiting for an open.
 *
 * @module
 */
import { TxtDbError } from "./errors.ts";
import { CHECKPOINT_FILE, CHECKPOINT_TMP_FILE, COMPACT_LOCK, ioError, MANIFEST_TMP, parseSegmentName, segmentName, TABLE_FILE, TABLE_TMP_FILE } from "./files.ts";
import { FileLock } from "./lock.ts";
import { FORMAT_CHECKPOINT, FORMAT_TWO_PHASE, FORMAT_VERSION, sameManifestFiles } from "./log.ts";
import type { Manifest } from "./log.ts";
import { pathNamesFile } from "./port.ts";
import type { Platform } from "./port.ts";
import { decodeCommit, FRAME_MAGIC } from "./record.ts";
import { describeHolder, holderRecord, stampHolder } from "./holder.ts";
import { removeOwnTables, writeTables } from "./fold.ts";
import type { FoldOutput } from "./fold.ts";
import type { Tail } from "./tail.ts";

/** What one compaction did. */
export interface CompactResult {
  /** Log segments folded into the new checkpoint (0: nothing could be folded). */
  segmentsFolded: number;
  /** The version the checkpoint holds the state of. */
  checkpointVersion: bigint;
  /** The oldest version any live process still pins; nothing at or above it was removed. */
  minPinnedVersion: bigint;
  /** Bytes of log folded (the segments deleted). */
  logBytesFolded: number;
  /** Bytes of tables written (the fold and the merges). */
  tableBytesWritten: number;
  /** Dead processes' leases reclaimed. */
  leasesReclaimed: number;
  /** Bytes of the store's log and tables before this compaction. */
  bytesBefore: number;
  /** Bytes of the store's log and tables after it. */
  bytesAfter: number;
  /** etcd backend only: deleted keys' tombstones and expired values removed (their history is compacted). */
  entriesRemoved?: number;
}

/** The pins compaction must respect (pins.ts provides them). */
export interface PinScan {
  /** Every live process's oldest pin (dead leases reclaimed on the way). */
  scanLeases(checkpointTsn: number): { minPin: number; reclaimed: number };
  /** The oldest version this process may still read. */
  localPin(): number;
}

/** What phase (a) decided; phase (c) checks that it still holds. */
interface CompactionPlan {
  bytesBefore: number;
  minPin: number;
  reclaimed: number;
  /** The segments at or past the first one when planned. */
  segments: number[];
  /** The last segment to fold, or undefined: nothing to fold. */
  lastFolded: number | undefined;
  /** The version the new tables hold the state of. */
  tsn: number;
  nextNsId: number;
  /** Namespace bindings at `tsn`. */
  bindings: [string, number][];
  /** Bytes of the segments to fold. */
  logBytes: number;
  /** The manifest planned against. */
  manifest: Manifest;
}

/** Thrown to stop a scan after its first record (see #firstRecordTsn). */
const FIRST_RECORD_SEEN = new Error("first record seen");

/** Compaction and leftover cleanup of one open database. */
export class Compactor {
  readonly #platform: Platform;
  readonly #path: string;
  readonly #tail: Tail;
  readonly #lock: FileLock;
  readonly #pins: PinScan;
  readonly #lockTimeoutMs: number;
  readonly #segmentBytes: number;
  readonly #autoCompactBytes: number;
  #autoCompacting: Promise<unknown> | undefined;
  #running: Promise<unknown> | undefined;
  readonly #compactLock: FileLock;
  #compactions = 0;
  /** Bytes of log this process's compactions folded (write amplification's denominator). */
  logBytesFolded = 0;
  /** Bytes of tables this process's compactions wrote. */
  tableBytesWritten = 0;

  constructor(platform: Platform, tail: Tail, lock: FileLock, pins: PinScan, options: { lockTimeoutMs: number; segmentBytes: number; autoCompactBytes: number }) {
    this.#platform = platform;
    this.#path = tail.path;
    this.#tail = tail;
    this.#lock = lock;
    this.#pins = pins;
    this.#lockTimeoutMs = options.lockTimeoutMs;
    this.#segmentBytes = options.segmentBytes;
    this.#autoCompactBytes = options.autoCompactBytes;
    // Each exclusive take records who holds it (compaction, backup, a format change: every
    // user of this lock), so that a LOCK_TIMEOUT on it and `txtdb doctor` can name the
    // holder; compact.lock is taken once per compaction, so the write costs nothing that counts.
    this.#compactLock = new FileLock(platform, `${this.#path}/${COMPACT_LOCK}`, tail.log.mode, { recordHolder: () => holderRecord(platform) });
    this.#compactLock.describeHolder = describeHolder(platform);
  }

  /** The `compact.lock` of this database (a format change takes it too). */
  get compactLock(): FileLock {
    return this.#compactLock;
  }

  /** Compactions run by this process. */
  get compactions(): number {
    return this.#compactions;
  }

  /** The compaction under way (automatic or asked for), if any: close() waits for it. */
  get autoCompacting(): Promise<unknown> | undefined {
    return this.#running ?? this.#autoCompacting;
  }

  /** Closes the compaction lock's handle (the database is closing). */
  close(): void {
    this.#compactLock.close();
  }

  /** Compacts in the three phases above; one compaction at a time across processes. */
  run(options: { full: boolean }): Promise<CompactResult> {
    const running = this.#run(options.full);
    this.#running = running;
    const clear = () => {
      if (this.#running === running) this.#running = undefined;
    };
    running.then(clear, clear);
    return running;
  }

  async #run(full: boolean): Promise<CompactResult> {
    let releaseCompaction: () => void;
    try {
      releaseCompaction = await this.#compactLock.acquire(true, { timeoutMs: this.#lockTimeoutMs });
    } catch (e) {
      throw ioError(e, `Compacting "${this.#path}"`); // the lock file cannot be opened: IO, not a port error
    }
    let out: FoldOutput | undefined;
    const checkLock = () => this.#checkLock();
    try {
      const plan = await this.#withWriterLock(() => this.#planLocked());
      // Nothing to fold: tables are still rewritten where an expiry has passed (fold.ts, rule 4b).
      if (plan.lastFolded === undefined && !this.#expiredTableDue()) return this.#result(plan, 0);
      out = this.#writeTables(plan, full, checkLock);
      // Before the writer lock, so that it covers as little as it can: catch up with the
      // commits appended while the tables were written (a reader's catch-up), and write
      // and fsync MANIFEST.tmp (rule 3; its content depends on the plan only).
      this.#tail.refresh();
      const manifest = this.#nextManifest(plan, out);
      checkLock();
      const manifestFile = this.#tail.log.prepareManifest(manifest);
      const switched = await this.#withWriterLock(() => this.#switchLocked(plan, out!, manifest, manifestFile));
      if (!switched.manifest) {
        if (pathNamesFile(this.#platform, `${this.#path}/${MANIFEST_TMP}`, manifestFile)) this.#tail.log.discardPreparedManifest();
        return switched.result;
      }
      const tables = out;
      out = undefined; // they are the store's tables now
      this.#afterSwitch(plan, tables, switched.manifest, switched.previous!);
      // Measured once this process reads the new tables and no longer the folded segments;
      // the compaction is done whatever this listing meets (then: as measured before the switch).
      let bytesAfter = switched.result.bytesAfter;
      try {
        bytesAfter = this.#logBytes();
      } catch {
        // keep the earlier measure
      }
      return { ...switched.result, bytesAfter };
    } catch (e) {
      throw ioError(e, `Compacting "${this.#path}"`);
    } finally {
      // Not switched to: never part of the store (unless a switch failed after its rename).
      // Only while this compaction still holds its lock, and only files it wrote (rule 6).
      if (out && out.written.length > 0) removeOwnTables(this.#platform, this.#path, this.#tail.log.unnamedByManifest(out.written), out.identities, checkLock);
      releaseCompaction();
    }
  }

  /**
   * Rule 6: throws unless this process still holds `compact.lock` on the file its path
   * names. Deleted under a running compaction (a tmp cleaner), the lock excludes nobody any
   * more: another process's compaction locks a new file, plans against the same manifest
   * and picks the same table names.
   */
  #checkLock(): void {
    if (this.#compactLock.heldAtPath()) return;
    throw this.#compactLock.lostError(`Compaction of "${this.#path}"`, "Another compaction may be running; nothing was switched and none of the store's files were deleted");
  }

  /** True when a table holds a value whose expiry has passed (its manifest entry says so). */
  #expiredTableDue(): boolean {
    const now = this.#platform.wallClockMs();
    return this.#tail.levels.tables().some((t) => t.expiresAtMs !== undefined && t.expiresAtMs <= now);
  }

  async #withWriterLock<T>(f: () => T): Promise<T> {
    const release = await this.#lock.acquire(true, { timeoutMs: this.#lockTimeoutMs });
    try {
      stampHolder(this.#lock, this.#platform);
      return f();
    } finally {
      release();
    }
  }

  #result(plan: CompactionPlan, folded: number, tableBytesWritten = 0): CompactResult {
    return {
      segmentsFolded: folded,
      checkpointVersion: BigInt(folded > 0 ? plan.tsn : this.#tail.manifest.checkpointTsn ?? 0),
      minPinnedVersion: BigInt(plan.minPin),
      logBytesFolded: folded > 0 ? plan.logBytes : 0,
      tableBytesWritten,
      leasesReclaimed: plan.reclaimed,
      bytesBefore: plan.bytesBefore,
      bytesAfter: this.#logBytes(),
    };
  }

  /** The store's size: live segments plus the checkpoint. */
  #logBytes(): number {
    return this.#tail.segmentBytesOnDisk() + this.#tail.checkpointBytes();
  }

  /** Phase (a), rule 1: what may fold. The writer lock is held. */
  #planLocked(): CompactionPlan {
    const tail = this.#tail;
    tail.followManifest();
    tail.catchUpLocked();
    if (tail.manifest.format <= FORMAT_CHECKPOINT) {
      throw new TxtDbError("FORMAT", `Store "${this.#path}" is in format ${tail.manifest.format} (it was rolled back by \`txtdb migrate --rollback\`); close and open it again to upgrade it, then compact`);
    }
    this.#removeLeftoversOfFailures();
    const bytesBefore = this.#logBytes();
    const { minPin, reclaimed } = this.#pins.scanLeases(tail.manifest.checkpointTsn ?? 0);
    const activeLast = tail.segmentLastTsn(tail.readPos.seg);
    if (activeLast !== undefined && activeLast <= minPin) {
      tail.sealActiveLocked(() => {
        if (!this.#lock.heldAtPath()) throw this.#lock.lostError(`Compaction of "${this.#path}"`, "Nothing was switched");
      });
    }
    const firstSegment = tail.firstSegment;
    const segments = tail.log.listSegments().filter((n) => n >= firstSegment);
    // The active segment is the one the log's read position is in (caught up under the
    // writer lock: where the next commit is appended), never the highest number in the
    // directory: a stray or pre-created higher-numbered file there made the real active
    // segment look sealed, and it was folded and deleted under the writers appending to it.
    const active = tail.readPos.seg;
    let lastFolded: number | undefined;
    let tsn = tail.manifest.checkpointTsn ?? 0;
    let logBytes = 0;
    for (const n of segments) {
      if (n >= active) break; // only sealed segments fold
      const last = tail.segmentLastTsn(n) ?? tsn; // an empty segment adds nothing
      if (last > minPin) break;
      lastFolded = n;
      tsn = Math.max(tsn, last);
      logBytes += tail.log.segment(n)?.size() ?? 0;
    }
    const index = tail.index;
    return { bytesBefore, minPin, reclaimed, segments, lastFolded, tsn, nextNsId: index.nextNsId, bindings: index.bindingsAt(tsn), logBytes, manifest: tail.manifest };
  }

  /**
   * Under the writer lock and `compact.lock`, in the plan: what earlier compactions left
   * behind when a step after their tables were written failed (a table or segment that
   * could not be deleted, new tables this process could not open after its switch, which
   * left the folded segments and replaced tables in place), removed by the cleanup rules
   * 1–3 as an open removes them. Only an open used to, so a process running for weeks
   * kept every such file (a passing EIO, a moment of EMFILE or ENOSPC) until it was
   * restarted. Only against the manifest on disk (the one this process just followed,
   * else nothing is removed), and best effort: what stays, a later compaction or open removes.
   */
  #removeLeftoversOfFailures(): void {
    try {
      const onDisk = this.#tail.log.readManifest();
      if (!onDisk || !sameManifestFiles(onDisk, this.#tail.manifest)) return;
      this.#removeLeftovers([], true);
    } catch {
      // left for a later compaction or open, which reports what it meets
    }
  }

  /** Phase (b), rule 2: the tables (fold.ts). No lock held. */
  #writeTables(plan: CompactionPlan, full: boolean, checkLock: () => void): FoldOutput {
    const tail = this.#tail;
    const live = new Set(plan.bindings.map(([, id]) => id));
    // Synchronous on purpose: it holds this process's commits back while it runs. Letting
    // the event loop run in between (tried) let a fast writer outpace its own automatic
    // compaction: a 10M-key fill grew to 5 GB of in-memory versions.
    return writeTables({
      platform: this.#platform,
      dir: this.#path,
      mode: tail.log.mode,
      tables: tail.levels.tables(),
      fold: tail.index.foldEntries(plan.manifest.checkpointTsn ?? 0, plan.tsn, (id) => live.has(id)),
      foldedTsn: plan.tsn,
      liveNsIds: live,
      nextTable: plan.manifest.nextTable ?? 1,
      mergeLevel0: full,
      expiredAtMs: this.#platform.wallClockMs(),
      checkLock,
    });
  }

  /**
   * Phase (c), rule 3: switch to the new tables if the plan still holds. The writer lock is
   * held, for as little as it takes: a catch-up, the checks, the manifest's write.
   */
  #switchLocked(plan: CompactionPlan, out: FoldOutput, manifest: Manifest, manifestFile: { ino: number; dev: number } | undefined): { result: CompactResult; manifest?: Manifest; previous?: Manifest } {
    const tail = this.#tail;
    // Rule 6, under the writer lock, which every switch takes: if this process still holds
    // compact.lock here, no other compaction has run since it was taken, and none can
    // switch before this one; if a name no longer leads to the file written under it,
    // another compaction wrote over it.
    this.#checkLock();
    const overwritten = [MANIFEST_TMP, ...out.written].find((n) => !pathNamesFile(this.#platform, `${this.#path}/${n}`, n === MANIFEST_TMP ? manifestFile : out.identities.get(n)));
    if (overwritten !== undefined) {
      throw new TxtDbError("IO", `Compaction of "${this.#path}" stopped: "${overwritten}", which it wrote, was replaced or deleted by someone else before the manifest switch. Nothing was switched and none of the store's files were deleted; keep other programs out of the store directory`, {
        details: { file: `${this.#path}/${overwritten}` },
      });
    }
    tail.catchUpLocked();
    const now = tail.log.readManifest() ?? tail.manifest; // the files', not this process's view
    const moved = !sameManifestFiles(now, plan.manifest);
    // A process that opened meanwhile may pin below the plan (it starts conservatively low).
    const { minPin } = this.#pins.scanLeases(now.checkpointTsn ?? 0);
    if (moved || minPin < plan.tsn) return { result: this.#result({ ...plan, minPin }, 0) };
    const folded = plan.lastFolded === undefined ? 0 : plan.lastFolded - plan.segments[0]! + 1; // 0: expired tables rewritten only
    // Measured before the switch (it lists the directory, which can fail): nothing that can
    // fail may come between the switch and #afterSwitch. A failure there (a readdir here,
    // EIO or EMFILE) used to reject compact() with the new manifest already in place and
    // this process following it while it still read the replaced tables: its next
    // compaction merged those instead of the new ones, and every version the failed one
    // had folded was lost (older values came back, and check() passed).
    const result = this.#result({ ...plan, minPin }, folded, out.bytesWritten);
    // 3. The manifest switch: MANIFEST.tmp was written and fsynced before the lock; the
    // rename and the directory fsync happen under it (cleanup at open, which deletes
    // segments below the manifest's first one, runs under this lock and must never see a
    // manifest that is not durable).
    const previous = tail.manifest;
    tail.switchManifestLocked(manifest, true);
    this.#compactions++;
    this.logBytesFolded += plan.logBytes;
    this.tableBytesWritten += out.bytesWritten;
    return { result, manifest, previous };
  }

  /** The manifest a switch to `out` installs (rule 3). */
  #nextManifest(plan: CompactionPlan, out: FoldOutput): Manifest {
    // Format 3 stays format 3, and carries the prepared transactions the fold passes
    // (prepared.ts rule 5): their prepare records are in the segments it deletes.
    // The format on disk: a process that followed the manifest before another moved it to
    // format 3 may still hold it at 2 (the move changes no file it compares); moves take
    // `compact.lock`, held here, so what is read now stays true until the switch.
    const format = Math.max(FORMAT_VERSION, plan.manifest.format, this.#tail.log.readManifest()?.format ?? 0);
    const twoPhase = format >= FORMAT_TWO_PHASE ? this.#tail.index.prepared.carry(plan.tsn) : undefined;
    return {
      ...(twoPhase ? { twoPhase } : {}),
      format,
      createdAtMs: plan.manifest.createdAtMs,
      checkpointTsn: plan.tsn,
      firstSegment: plan.lastFolded !== undefined ? plan.lastFolded + 1 : plan.manifest.firstSegment ?? 1,
      tables: out.tables,
      bindings: plan.bindings.flat(),
      nextNsId: plan.nextNsId,
      nextTable: out.nextTable,
    };
  }

  /**
   * Rules 5 then 4, after the switch and without the writer lock (no other process waits
   * for this): this process's own tables and memory first, so that it never reads a file it
   * is about to delete; then what the switch replaced. Processes still holding these files
   * open keep reading them (POSIX) until they adopt the new manifest. A failure here leaves
   * files that cleanup at a later open removes; the store is the new manifest's already.
   */
  #afterSwitch(plan: CompactionPlan, out: FoldOutput, manifest: Manifest, previous: Manifest): void {
    const tail = this.#tail;
    try {
      tail.adoptOwnTables(manifest, previous);
    } catch {
      return; // a later read adopts them (tail.ts); nothing is deleted meanwhile
    }
    try {
      for (const n of plan.segments) {
        if (plan.lastFolded === undefined || n > plan.lastFolded) break;
        tail.forgetSegment(n);
        this.#platform.unlink(`${this.#path}/${segmentName(n)}`);
      }
      for (const name of out.replaced) this.#platform.unlink(`${this.#path}/${name}`);
      this.#platform.syncDir(this.#path);
    } catch {
      // leftovers: cleanup at a later open removes what the manifest does not name
    }
  }

  /** Starts a compaction in the background once sealed segments pass `autoCompactBytes`. */
  maybeAutoCompact(activeSeg: number, compact: () => Promise<unknown>): void {
    if (this.#autoCompactBytes <= 0 || this.#autoCompacting) return;
    const sealedBytes = (activeSeg - this.#tail.firstSegment) * this.#segmentBytes;
    if (sealedBytes < this.#autoCompactBytes) return;
    this.#autoCompacting = Promise.resolve()
      .then(compact)
      .catch(() => {
        // Automatic compaction is best effort; db.compact() reports its errors.
      })
      .finally(() => (this.#autoCompacting = undefined));
  }

  /**
   * Under the writer lock at open: removes what a compaction that crashed after its
   * manifest switch (or before it) left behind, by the cleanup rules 1–3 above.
   */
  removeLeftoversLocked(): void {
    const doomed: string[] = [];
    // Rule 3: tables and checkpoints only while no compaction can be writing one.
    const releaseCompaction = this.#compactLock.tryAcquire(true);
    try {
      this.#removeLeftovers(doomed, releaseCompaction !== undefined);
    } finally {
      releaseCompaction?.();
    }
  }

  #removeLeftovers(doomed: string[], filesOfCompaction: boolean): void {
    const tail = this.#tail;
    const named = new Set((tail.manifest.tables ?? []).map((t) => t.name));
    const checkpointTsn = tail.manifest.checkpointTsn ?? 0;
    const firstSegment = tail.firstSegment;
    for (const name of this.#platform.readdir(this.#path)) {
      const seg = parseSegmentName(name);
      if (seg !== undefined && seg >= 1 && seg < firstSegment) {
        const firstTsn = this.#firstRecordTsn(seg);
        if (firstTsn === undefined) continue;
        if (firstTsn > checkpointTsn) {
          throw new TxtDbError("CORRUPTION", `Segment "${name}" of "${this.#path}" lies before the manifest's first segment ${firstSegment} but holds version ${firstTsn}, past the checkpoint's ${checkpointTsn}: the manifest does not match the log. Nothing was deleted; restore from a backup`, {
            details: { file: `${this.#path}/${name}`, offset: 0 },
          });
        }
        doomed.push(name);
      } else if (filesOfCompaction && (CHECKPOINT_FILE.test(name) || CHECKPOINT_TMP_FILE.test(name)) && name !== tail.manifest.checkpoint) {
        doomed.push(name);
      } else if (filesOfCompaction && ((TABLE_FILE.test(name) && !named.has(name)) || TABLE_TMP_FILE.test(name))) {
        doomed.push(name);
      } else if (filesOfCompaction && name === MANIFEST_TMP) {
        doomed.push(name); // a compaction prepares it before it takes the writer lock
      }
    }
    for (const name of doomed) {
      const seg = parseSegmentName(name);
      if (seg !== undefined) tail.log.forgetSegment(seg);
      this.#platform.unlink(`${this.#path}/${name}`);
    }
    if (doomed.length > 0) this.#platform.syncDir(this.#path);
  }

  /** The version of segment `n`'s first record; undefined if it does not start with a whole one. */
  #firstRecordTsn(n: number): number | undefined {
    const file = this.#tail.log.segment(n);
    if (!file) return undefined;
    const head = new Uint8Array(1);
    if (file.read(head, 0) === 0 || head[0] !== FRAME_MAGIC) return undefined;
    let tsn: number | undefined;
    try {
      this.#tail.log.scan({ seg: n, off: 0 }, { seg: n, off: file.size() }, (body) => {
        tsn = decodeCommit(body.slice()).tsn;
        throw FIRST_RECORD_SEEN;
      });
    } catch (e) {
      if (e !== FIRST_RECORD_SEEN) return undefined;
    }
    return tsn;
  }
}
