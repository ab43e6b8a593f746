/**
 * The log tail of one open database: how far this process has read the shared log (the
 * read position), what it knows durable, the newest version it shows (the visible
 * version), the manifest it follows, recovery of a crashed writer's tail, and the append
 * of a group commit's batch.
 *
 * Durability rules of a commit, in the order {@link Tail.appendLocked} carries them out
 * (the writer lock is held throughout):
 *
 * 1. The batch is appended at the read position, which catch-up has moved to the real end
 *    of the log; the bytes go into preallocated space. A segment past `segmentBytes` is
 *    sealed first: trimmed and synced whatever the durability mode, since readers move on
 *    to the next segment once it exists.
 * 2. "full": the segment is fdatasynced before anything else happens; then the durable
 *    position moves to the batch's end. "relaxed": a timer syncs it at most
 *    `relaxedSyncMs` later. "none": never.
 * 3. Only then is the frontier written: other processes never read past it, so they never
 *    see a commit that is not yet durable (per the mode). The frontier records the durable
 *    position too, which never passes the read position (asserted).
 * 4. The writer lock is released, then the commits resolve (the committer, commit.ts).
 * 5. If any step fails, nothing of the batch may become visible: the read position goes
 *    back, the bytes are cut off (or left for the next writer's catch-up to cut, since they
 *    lie past the frontier), and the committer takes the batch back off the index.
 *
 * ```
 *   append frames ─► fdatasync segment ─► write frontier ─► release lock ─► resolve commits
 * ```
 *
 * Recovery (catch-up under the writer lock): whole records past the frontier (a writer
 * died after appending) are made durable and published; a torn tail past the durable end
 * is cut off; a bad record before it is CORRUPTION, and nothing is cut.
 *
 * Freshness: every read first probes the frontier (one small pread, {@link Tail.refresh})
 * and tails the log only if it moved.
 *
 * @module
 */
import { assert, TxtDbError } from "./errors.ts";
import { ioError, segmentName } from "./files.ts";
import { BlockCache } from "./blockcache.ts";
import { Index } from "./index.ts";
import { Levels } from "./levels.ts";
import { comparePositions, FORMAT_CHECKPOINT, FORMAT_VERSION, Log, sameManifestFiles } from "./log.ts";
import type { Frontier, LogPosition, Manifest } from "./log.ts";
import { checkFormat, checkManifestFiles } from "./opening.ts";
import type { Durability } from "./options.ts";
import type { Platform } from "./port.ts";
import { decodeCommit } from "./record.ts";
import type { CommitRecord } from "./record.ts";
import { CheckpointDamage, readCheckpoint } from "./checkpoint.ts";
import type { Meters } from "./stats.ts";
import { armTimer } from "./timers.ts";
import type { Timer } from "./timers.ts";

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
  #readPos: LogPosition = { seg: 1, off: 0 };
  #durablePos: LogPosition = { seg: 1, off: 0 };
  #firstSegment = 1;
  #manifest: Manifest = { format: FORMAT_VERSION, createdAtMs: 0 };
  /** Per segment read, the version of its last record (compaction folds by it). */
  readonly #segLastTsn = new Map<number, number>();
  #relaxedTimer: Timer | undefined;
  #closed = false;

  constructor(platform: Platform, path: string, options: { mode: number; readOnly: boolean; durability: Durability; segmentBytes: number; relaxedSyncMs: number; cacheBytes: number }, meters: Meters, hooks: TailHooks) {
    this.platform = platform;
    this.path = path;
    this.log = new Log(platform, path, options.mode, options.readOnly);
    this.levels = new Levels(platform, path, new BlockCache(options.cacheBytes));
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

  /** Where the next record is read (or, under the writer lock, appended). */
  get readPos(): LogPosition {
    return this.#readPos;
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
    const index = new Index();
    index.levels = this.levels;
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
      this.index.setLastTsn(tsn);
      this.#visibleTsn = tsn;
    } else {
      this.levels.adopt([]);
    }
    this.#manifest = manifest;
    this.#firstSegment = manifest.firstSegment ?? 1;
    this.#readPos = { seg: this.#firstSegment, off: 0 };
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
    if (!m || sameManifestFiles(m, this.#manifest)) return;
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
  switchManifestLocked(manifest: Manifest): void {
    this.log.writeManifest(manifest);
    this.#manifest = manifest;
    this.#firstSegment = manifest.firstSegment ?? 1;
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
    let total = 0;
    for (const n of this.log.listSegments()) if (n >= this.#firstSegment) total += this.log.segment(n)?.size() ?? 0;
    return total;
  }

  /** Bytes of the folded state: the current checkpoint (format 1) or tables (format 2). */
  checkpointBytes(): number {
    if (this.#manifest.format > FORMAT_CHECKPOINT) return this.levels.bytesByLevel().reduce((a, b) => a + b, 0);
    return this.#manifest.checkpoint ? this.platform.stat(`${this.path}/${this.#manifest.checkpoint}`)?.size ?? 0 : 0;
  }

  // --- reading ---

  #corruption(at: LogPosition, reason: string): TxtDbError {
    const file = `${this.path}/${segmentName(at.seg)}`;
    return new TxtDbError("CORRUPTION", `Log file "${file}" is damaged at offset ${at.off}: ${reason}. Run \`txtdb check\`; restore from a backup if it persists`, {
      details: { file, offset: at.off },
    });
  }

  /** Applies every whole record from the read position up to `to` (or the end of the log). */
  #readTo(to: LogPosition | undefined) {
    return this.log.scan(this.#readPos, to, (body, at, next) => {
      let record: CommitRecord;
      try {
        record = decodeCommit(body.slice());
      } catch (e) {
        throw this.#corruption(at, (e as Error).message);
      }
      if (record.tsn <= this.index.lastTsn) throw this.#corruption(at, `record TSN ${record.tsn} does not follow ${this.index.lastTsn}`);
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
    for (let attempt = 1; ; attempt++) {
      try {
        this.#refreshOrThrow();
        return;
      } catch (e) {
        if (attempt >= OPEN_ATTEMPTS_MAX || !this.manifestMovedFrom(this.#manifest)) throw ioError(e, `Reading the log of "${this.path}"`);
        this.#followManifest();
      }
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

  /** One attempt of {@link refresh}, whose errors are raw (for the read-only open's retries). */
  #refreshOrThrow(): void {
    const fr = this.log.readFrontier();
    if (!fr || fr.tsn <= this.#visibleTsn) return;
    if (fr.seg !== this.#readPos.seg) this.#followManifest();
    const to = { seg: fr.seg, off: fr.off };
    const end = this.#readTo(to);
    if (end.problem) throw this.#corruption(end.problem.at, end.problem.reason);
    this.#adoptSealedStart(end.end, to);
    if (comparePositions(this.#readPos, to) !== 0) throw this.#corruption(this.#readPos, "log ends before the published frontier");
    this.#visibleTsn = this.index.lastTsn;
    this.#hooks.publishPin();
  }

  /**
   * Under the writer lock: read to the real end of the log. Whole records past the
   * frontier (a writer died after appending) are made durable and published; a torn tail
   * past the durable end is cut off; a bad record before it is CORRUPTION.
   */
  catchUpLocked(): void {
    const fr = this.log.readFrontier();
    const end = this.#readTo(undefined);
    if (end.problem) {
      // A torn tail: past the durable end (when the frontier survived to tell it) and
      // followed by no whole frame. Anything else is damage, reported and left alone.
      const pastDurable = !fr || comparePositions(end.problem.at, { seg: fr.durableSeg, off: fr.durableOff }) >= 0;
      if (!pastDurable || this.log.validFrameAfter(end.problem.at)) throw this.#corruption(end.problem.at, end.problem.reason);
      this.log.truncateAt(end.problem.at);
    } else if (fr) {
      this.#adoptSealedStart(end.end, { seg: fr.seg, off: fr.off });
    }
    const pos = this.#readPos;
    if (fr && comparePositions(pos, { seg: fr.durableSeg, off: fr.durableOff }) < 0) {
      // Records known durable are missing (zeroed, or the file was cut).
      throw this.#corruption(pos, `the log ends at ${pos.off} before its durable end at ${fr.durableOff}`);
    }
    if (!fr || fr.tsn !== this.index.lastTsn || comparePositions(pos, { seg: fr.seg, off: fr.off }) !== 0) {
      if (this.#durability !== "none") this.#syncSegment(pos.seg);
      this.#durablePos = pos;
      this.#publish(pos);
    } else {
      this.#durablePos = { seg: fr.durableSeg, off: fr.durableOff };
    }
    this.#visibleTsn = this.index.lastTsn;
    this.#hooks.publishPin();
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

  /** Writes the frontier: visible up to `pos`, durable up to the durable position (rule 3). */
  #publish(pos: LogPosition): void {
    assert(comparePositions(this.#durablePos, pos) <= 0, `the durable position ${this.#durablePos.seg}:${this.#durablePos.off} passes the published end ${pos.seg}:${pos.off}`);
    const fr: Frontier = { tsn: this.index.lastTsn, seg: pos.seg, off: pos.off, durableSeg: this.#durablePos.seg, durableOff: this.#durablePos.off };
    this.log.publishFrontier(fr);
  }

  /**
   * Appends a batch of frames (`data`, records already applied to the index) at the read
   * position, makes it durable per the mode and publishes it: rules 1–3 and 5 above. The
   * writer lock is held and catch-up has run. Returns the segment the batch went into. On
   * failure the bytes are taken back and the error is rethrown; the caller undoes the index.
   */
  appendLocked(data: Uint8Array): number {
    assert(data.length > 0, "an empty batch is never appended");
    const start = this.#readPos;
    const durableBefore = this.#durablePos;
    let seg = start.seg;
    let file = this.log.segment(seg);
    let appendAt: LogPosition = start; // where this batch's bytes begin, after any roll
    try {
      if (!file) throw new TxtDbError("CORRUPTION", `Segment ${segmentName(seg)} of "${this.path}" is missing`, { details: { file: segmentName(seg), offset: 0 } });
      let at = start.off;
      if (at >= this.#segmentBytes) {
        // Seal this segment: trim its preallocated tail and sync it (whatever the mode:
        // readers move on to the next segment once it exists, reading this one to its end).
        file.truncate(at);
        this.#syncSegment(seg);
        seg++;
        file = this.log.createSegment(seg);
        at = 0;
        appendAt = { seg, off: 0 };
      }
      // Write at the logical end (the read position after catch-up), into preallocated space.
      this.log.preallocate(file, at + data.length, this.#segmentBytes);
      file.write(data, at);
      const end = { seg, off: at + data.length };
      assert(comparePositions(end, appendAt) > 0, "a batch's end lies past its start");
      if (this.#durability === "full") {
        this.#datasync(file);
        this.#durablePos = end;
      }
      this.#readPos = end;
      this.#publish(end);
      this.#segLastTsn.set(seg, this.index.lastTsn);
    } catch (e) {
      // Nothing of this batch may become visible: the caller takes it back off the index;
      // here it goes off the file.
      this.#readPos = start;
      this.#durablePos = durableBefore; // the synced bytes are being taken back too
      try {
        // The bytes must go, or the next writer's catch-up would adopt a failed commit.
        this.log.segment(appendAt.seg)?.truncate(appendAt.off);
        if (appendAt.seg !== start.seg) this.log.segment(start.seg)?.truncate(start.off);
      } catch {
        // The next writer's catch-up cuts an unpublished tail anyway (it lies past the frontier).
      }
      throw e;
    }
    this.#visibleTsn = this.index.lastTsn;
    if (this.#durability === "relaxed") this.#scheduleRelaxedSync();
    return seg;
  }

  /**
   * Seals the active segment now, so that compaction may fold it: trims its preallocated
   * tail, syncs it (whatever the mode), starts the next segment and publishes the frontier
   * there, as a roll-over in appendLocked does. Everything before the new segment is then
   * durable. Other processes move on to the new segment when they next read past the old
   * one's end. Returns false, doing nothing, when the active segment holds no record. The
   * writer lock is held and catch-up has run.
   */
  sealActiveLocked(): boolean {
    const pos = this.#readPos;
    if (pos.off === 0) return false;
    const file = this.log.segment(pos.seg);
    if (!file) return false;
    file.truncate(pos.off);
    this.#syncSegment(pos.seg);
    const next = { seg: pos.seg + 1, off: 0 };
    this.log.createSegment(next.seg);
    this.#durablePos = next;
    this.#readPos = next;
    this.#publish(next);
    return true;
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
    this.log.close();
    this.levels.close();
    this.index = this.#newIndex();
  }
}
