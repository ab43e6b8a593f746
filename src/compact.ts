/**
 * Compaction: folds sealed log segments into a checkpoint below the oldest version any
 * live process pins, switches the manifest, and deletes what it replaced; and, at open,
 * the cleanup of what a crashed compaction left behind.
 *
 * The manifest switch, in the order {@link Compactor.compactLocked} carries it out (under
 * the writer lock, after catch-up):
 *
 * 1. Only sealed segments fold (never the active one, never one past the read position),
 *    and only while their last version is at or below every live process's pin, so no
 *    version a live snapshot, transaction or watcher can read is removed. When every
 *    version in the active segment is at or below that pin, the active segment is sealed
 *    first (a roll-over, see Tail.sealActiveLocked), so compaction reclaims old versions
 *    whatever `segmentBytes` is; an active segment with nothing in it is never sealed,
 *    so compacting again without new commits creates no files.
 * 2. The checkpoint is written under a temporary name into a fresh file (created
 *    exclusively, a leftover or a planted link removed first), fsynced, then renamed.
 * 3. The manifest switch: temp, fsync, rename, directory fsync (in writeManifest). Until
 *    it is durable the old manifest, with all its files, is the store.
 * 4. Only then is what it replaced deleted: the folded segments and the previous
 *    checkpoint, then the directory is fsynced. Processes still holding these files open
 *    keep reading them (POSIX); none needs them again, since every live process has read
 *    past the pin.
 * 5. This process's own memory: versions below the checkpoint no reader needs are pruned.
 *
 * What cleanup at open may delete ({@link Compactor.removeLeftoversLocked}, under the
 * writer lock, after the manifest was checked against the files):
 *
 * 1. Only names txtdb writes, matched exactly: `seg-<10 digits>.log`, `ckpt-<16 digits>-<n>.dat`
 *    (and `.tmp`), `MANIFEST.tmp`. Any other file in the directory is never touched.
 * 2. A segment only below the manifest's first segment, and only if it starts with a
 *    whole record at or below the checkpoint's version (folded into it). One whose first
 *    record lies past the checkpoint means the manifest does not match the log: CORRUPTION,
 *    and nothing is deleted. One that does not start with a record is not ours: left alone.
 * 3. A checkpoint only if the manifest names another one.
 *
 * @module
 */
import { TxtDbError } from "./errors.ts";
import { CHECKPOINT_FILE, CHECKPOINT_TMP_FILE, ioError, MANIFEST_TMP, parseSegmentName, segmentName } from "./files.ts";
import type { FileLock } from "./lock.ts";
import type { Manifest } from "./log.ts";
import type { Platform } from "./port.ts";
import { decodeCommit, FRAME_MAGIC } from "./record.ts";
import { checkpointName, writeCheckpoint } from "./checkpoint.ts";
import { stampHolder } from "./holder.ts";
import type { Tail } from "./tail.ts";

/** What one compaction did. */
export interface CompactResult {
  /** Log segments folded into the new checkpoint (0: nothing could be folded). */
  segmentsFolded: number;
  /** The version the checkpoint holds the state of. */
  checkpointVersion: bigint;
  /** The oldest version any live process still pins; nothing at or above it was removed. */
  minPinnedVersion: bigint;
  /** Dead processes' leases reclaimed. */
  leasesReclaimed: number;
  bytesBefore: number;
  bytesAfter: number;
}

/** The pins compaction must respect (pins.ts provides them). */
export interface PinScan {
  /** Every live process's oldest pin (dead leases reclaimed on the way). */
  scanLeases(checkpointTsn: number): { minPin: number; reclaimed: number };
  /** The oldest version this process may still read. */
  localPin(): number;
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
  #compactions = 0;

  constructor(platform: Platform, tail: Tail, lock: FileLock, pins: PinScan, options: { lockTimeoutMs: number; segmentBytes: number; autoCompactBytes: number }) {
    this.#platform = platform;
    this.#path = tail.path;
    this.#tail = tail;
    this.#lock = lock;
    this.#pins = pins;
    this.#lockTimeoutMs = options.lockTimeoutMs;
    this.#segmentBytes = options.segmentBytes;
    this.#autoCompactBytes = options.autoCompactBytes;
  }

  /** Compactions run by this process. */
  get compactions(): number {
    return this.#compactions;
  }

  /** The automatic compaction under way, if any (close() waits for it). */
  get autoCompacting(): Promise<unknown> | undefined {
    return this.#autoCompacting;
  }

  /** Takes the writer lock and compacts. */
  async run(): Promise<CompactResult> {
    const release = await this.#lock.acquire(true, { timeoutMs: this.#lockTimeoutMs });
    try {
      stampHolder(this.#lock, this.#platform);
      return this.compactLocked();
    } catch (e) {
      throw ioError(e, `Compacting "${this.#path}"`);
    } finally {
      release();
    }
  }

  /** The store's size: live segments plus the checkpoint. */
  #logBytes(): number {
    return this.#tail.segmentBytesOnDisk() + this.#tail.checkpointBytes();
  }

  /** Folds what it may and switches the manifest: rules 1–5 above. The writer lock is held. */
  compactLocked(): CompactResult {
    const tail = this.#tail;
    tail.catchUpLocked();
    const bytesBefore = this.#logBytes();
    const { minPin, reclaimed } = this.#pins.scanLeases(tail.manifest.checkpointTsn ?? 0);
    const activeLast = tail.segmentLastTsn(tail.readPos.seg);
    if (activeLast !== undefined && activeLast <= minPin) tail.sealActiveLocked();
    const firstSegment = tail.firstSegment;
    const segments = tail.log.listSegments().filter((n) => n >= firstSegment);
    const active = segments[segments.length - 1] ?? firstSegment;
    let lastFolded: number | undefined;
    let tsn = tail.manifest.checkpointTsn ?? 0;
    for (const n of segments) {
      if (n >= active || n > tail.readPos.seg) break; // only sealed segments fold
      const last = tail.segmentLastTsn(n) ?? tsn; // an empty segment adds nothing
      if (last > minPin) break;
      lastFolded = n;
      tsn = Math.max(tsn, last);
    }
    const result = (folded: number): CompactResult => ({
      segmentsFolded: folded,
      checkpointVersion: BigInt(tsn),
      minPinnedVersion: BigInt(minPin),
      leasesReclaimed: reclaimed,
      bytesBefore,
      bytesAfter: this.#logBytes(),
    });
    if (lastFolded === undefined) return result(0);
    // 2. The checkpoint, under a temporary name, fsynced.
    const name = checkpointName(tsn).replace(".dat", `-${lastFolded + 1}.dat`);
    const tmp = `${this.#path}/${name}.tmp`;
    // A fresh file, created exclusively: a leftover (or a planted link) is removed first.
    this.#platform.unlink(tmp);
    const file = this.#platform.open(tmp, { create: true, exclusive: true, mode: tail.log.mode });
    try {
      writeCheckpoint(file, { tsn, nextNsId: tail.index.nextNsId, bindings: tail.index.bindingsAt(tsn) }, tail.index.stateAt(tsn));
    } finally {
      file.close();
    }
    this.#platform.rename(tmp, `${this.#path}/${name}`);
    // 3. The manifest switch: temp, fsync, rename, directory fsync (in writeManifest).
    const previous = tail.manifest.checkpoint;
    const manifest: Manifest = { ...tail.manifest, checkpoint: name, checkpointTsn: tsn, firstSegment: lastFolded + 1 };
    tail.switchManifestLocked(manifest);
    // 4. What it replaced. Processes still holding these files open keep reading them
    // (POSIX); none needs them again, since every live process has read past minPin.
    for (const n of segments) {
      if (n > lastFolded) break;
      tail.forgetSegment(n);
      this.#platform.unlink(`${this.#path}/${segmentName(n)}`);
    }
    if (previous) this.#platform.unlink(`${this.#path}/${previous}`);
    this.#platform.syncDir(this.#path);
    // 5. This process's own memory: versions below the checkpoint no reader needs.
    tail.index.prune(Math.min(tsn, this.#pins.localPin()));
    this.#compactions++;
    return result(lastFolded - segments[0]! + 1);
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
    const tail = this.#tail;
    const doomed: string[] = [];
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
      } else if ((CHECKPOINT_FILE.test(name) || CHECKPOINT_TMP_FILE.test(name)) && name !== tail.manifest.checkpoint) {
        doomed.push(name);
      } else if (name === MANIFEST_TMP) {
        doomed.push(name);
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
