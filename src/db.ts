/**
 * The database: opening and recovery, tailing the shared log, the group committer, and
 * the public read/write/namespace API of ../shared/API.md.
 *
 * Freshness: every read on `db`, `begin()` and `snapshot()` first probes the frontier (one
 * small pread) and tails the log only if it moved, so a commit that resolved in any
 * process is visible to the next read in every other.
 *
 * Group commit: commits of this process queue up; one runner takes the whole queue,
 * acquires the writer lock once, catches up, validates each transaction against the
 * head, and writes the batch with one append and one sync (durability order in log.ts).
 *
 * @module
 */
import { isTxtDbError, TxtDbError } from "./errors.ts";
import { encodeKey, prefixRange } from "./keys.ts";
import type { Key } from "./keys.ts";
import { encodeValue } from "./codec.ts";
import { Index } from "./index.ts";
import { comparePositions, FORMAT_VERSION, Log, parseSegmentName, segmentName } from "./log.ts";
import type { Frontier, LogPosition, Manifest } from "./log.ts";
import { decodeCommit, encodeCommit, frame } from "./record.ts";
import type { CommitRecord } from "./record.ts";
import { buildRecord, validate } from "./commit.ts";
import { FileLock } from "./lock.ts";
import type { Platform } from "./port.ts";
import { defaultPlatform } from "./platform.ts";
import { newTxState, Snapshot, SnapshotReader, Transaction } from "./tx.ts";
import type { Entry, Isolation, Limits, ListOptions, ListSelector, NamespaceRequest, TxHost, TxState } from "./tx.ts";
import { WatchHub } from "./watch.ts";
import { conflictSubject, RETRY_TURN_MAX_WAIT_MS, RetryTurns } from "./retryturns.ts";
import type { LeaveTurn } from "./retryturns.ts";
import { checkpointName, CheckpointDamage, readCheckpoint, writeCheckpoint } from "./checkpoint.ts";
import { isLeaseFile, leaseOwnerAlive, ProcessLease, readLeaseInfo, readLeasePin } from "./liveness.ts";
import { checkStore } from "./check.ts";
import type { CheckReport } from "./check.ts";
import { armInterval, armTimer, raceDeadline } from "./timers.ts";
import type { Timer } from "./timers.ts";
import { describeHolder, HOLDER_RECORD_BYTES, stampHolder } from "./holder.ts";
import { FRAME_MAGIC } from "./record.ts";
import { checkStoreDirectory } from "./dirsafety.ts";
import type { WatchEvent } from "./watch.ts";
import { checkFunction, checkNamespaceName, checkOptions, checkSignal, dirModeOf, invalidArg, resolveOptions } from "./options.ts";
import type { Durability, OpenOptions, TransactionOptions } from "./options.ts";
import { Meters, renderMetrics } from "./stats.ts";
import type { Stats } from "./stats.ts";
import { CHECKPOINT_FILE, CHECKPOINT_TMP_FILE, FRONTIER, FRONTIER_FILE_BYTES, ioError, LEASES_DIR, MANIFEST, MANIFEST_TMP, WRITER_LOCK } from "./files.ts";

export type { Durability, OpenOptions, TransactionOptions } from "./options.ts";
export type { Distribution, Stats } from "./stats.ts";

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

const BATCH_MAX = 4096;
/** The `idleMs` a pin's expire() receives when it ends because its history is gone, not idleness. */
const PIN_LOST_HISTORY = -1;
/** How often a read-only open starts again when a compaction switched the manifest under it. */
const OPEN_ATTEMPTS_MAX = 20;
/** Thrown to stop a scan after its first record (see #firstRecordTsn). */
const FIRST_RECORD_SEEN = new Error("first record seen");
interface PendingCommit {
  state: TxState;
  resolve: (tsn: number) => void;
  reject: (e: unknown) => void;
}

class DbReader extends SnapshotReader {
  protected usable(): void {
    this.ctx.ensureOpen();
  }
}

/**
 * An open txtdb store. Get one with {@link open}.
 *
 * @example
 * ```ts
 * const db = await open("./data", { namespaces: ["accounts"] });
 * await db.set("accounts", "alice", 100);
 * await db.get("accounts", "alice"); // 100
 * await db.close();
 * ```
 */
export class Database implements TxHost {
  /** The store directory. */
  readonly path: string;
  readonly platform: Platform;
  readonly readOnly: boolean;
  readonly limits: Limits;
  /** This process's MVCC index (replaced by an empty one at close, to free its memory). */
  index: Index = new Index();
  readonly #log: Log;
  readonly #lock: FileLock;
  readonly #durability: Durability;
  readonly #isolation: Isolation;
  readonly #relaxedSyncMs: number;
  readonly #lockTimeoutMs: number;
  readonly #segmentBytes: number;
  #visibleTsn = 0;
  #readPos: LogPosition = { seg: 1, off: 0 };
  #durablePos: LogPosition = { seg: 1, off: 0 };
  #closed = false;
  readonly #queue: PendingCommit[] = [];
  /** The commit queued last, so that a transaction's deadline can take it back (see #commitWithDeadline). */
  #lastSubmitted: PendingCommit | undefined;
  #committing: Promise<void> | undefined;
  #running = false;
  /** When the committer last let the event loop turn (see #runCommits). */
  #lastTurnMs = -Infinity;
  readonly #retryTurns = new RetryTurns();
  #relaxedTimer: Timer | undefined;
  readonly #watchHub: WatchHub;
  #firstSegment = 1;
  #manifest: Manifest = { format: FORMAT_VERSION, createdAtMs: 0 };
  #lease: ProcessLease | undefined;
  #publishedPin = -1;
  readonly #pins = new Map<number, { version: number; sinceMs: number; usedMs: number; kind: string; expire: (idleMs: number) => void }>();
  readonly #maxIdleMs: number;
  #idleSweep: Timer | undefined;
  #nextPinId = 1;
  readonly #segLastTsn = new Map<number, number>();
  readonly #autoCompactBytes: number;
  #autoCompacting: Promise<unknown> | undefined;
  #compactions = 0;
  readonly #meters = new Meters();
  readonly #counters = this.#meters.counters;

  /** Use {@link open}. */
  constructor(path: string, platform: Platform, options: OpenOptions) {
    this.path = path.replace(/\/+$/, "") || "/";
    this.platform = platform;
    const o = resolveOptions(options);
    this.readOnly = o.readOnly;
    this.limits = o.limits;
    const mode = o.mode;
    this.#log = new Log(platform, this.path, mode, this.readOnly);
    this.#lock = new FileLock(platform, `${this.path}/${WRITER_LOCK}`, mode);
    this.#lock.onWait = (ms) => this.#meters.lockWaitUs.record(ms * 1000);
    this.#lock.describeHolder = describeHolder(platform);
    this.#durability = o.durability;
    this.#isolation = o.isolation;
    this.#relaxedSyncMs = o.relaxedSyncMs;
    this.#lockTimeoutMs = o.lockTimeoutMs;
    this.#segmentBytes = o.segmentBytes;
    this.#autoCompactBytes = o.autoCompactBytes;
    this.#maxIdleMs = o.maxIdleMs;
    this.#watchHub = new WatchHub({
      log: this.#log,
      logStart: () => ({ seg: this.#firstSegment, off: 0 }),
      checkpointTsn: () => this.#manifest.checkpointTsn ?? 0,
      head: () => ({ pos: this.#readPos, tsn: this.#visibleTsn }),
      watchDir: (onChange) => platform.watchDir(this.path, onChange),
      pollMs: o.watchPollMs,
      bufferMax: o.watchBufferMax,
      bufferBytes: o.watchBufferBytes,
      maxWatchers: o.maxWatchers,
    });
  }

  // --- opening and recovery ---

  /** @internal Opens the store: creates it if new, recovers a crashed writer's tail. */
  async init(namespaces: string[]): Promise<void> {
    if (this.readOnly) return this.#initReadOnly(namespaces);
    // Before the lock file is created: never write into a directory that is not a store.
    if (!this.#log.readManifest()) this.#checkCreatable(false);
    const release = await this.#lock.acquire(true, { timeoutMs: this.#lockTimeoutMs });
    try {
      this.#stampHolder();
      let manifest = this.#log.readManifest();
      if (!manifest) {
        // A new store, or a crash during a previous creation (nothing was committed then:
        // commits only start after the manifest exists). Anything else is refused.
        this.#checkCreatable(true);
        if (!this.#log.segment(1)) this.#log.createSegment(1);
        this.#log.publishFrontier({ tsn: 0, seg: 1, off: 0, durableSeg: 1, durableOff: 0 });
        manifest = { format: FORMAT_VERSION, createdAtMs: this.platform.wallClockMs() };
        this.#log.writeManifest(manifest);
      }
      this.#checkFormat(manifest.format);
      this.#checkManifestFiles(manifest);
      this.#loadManifest(manifest);
      this.#removeLeftovers();
      this.#startLease();
      this.#catchUpLocked();
      const missing = namespaces.filter((n, i) => namespaces.indexOf(n) === i && this.index.resolve(n, this.index.lastTsn) === undefined);
      if (missing.length > 0) {
        const state = newTxState(this.#visibleTsn, "serializable", true);
        state.namespaceOps = missing.map((name) => ({ op: "create", name }));
        const [result] = this.#commitBatchLocked([state]);
        if (result instanceof Error) throw result;
      }
    } finally {
      release();
    }
  }

  /**
   * A read-only open takes no writer lock, so a compaction in another process may switch
   * the manifest and delete the checkpoint or segments it just named while this process
   * reads them. The lease goes first (its pin, 0 until the first read, holds back every
   * later compaction); an open that fails while the manifest moved is started again.
   */
  async #initReadOnly(namespaces: string[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const manifest = this.#log.readManifest();
      if (!manifest) {
        throw invalidArg(`No txtdb store at "${this.path}" (no MANIFEST); open it once without readOnly to create it`);
      }
      this.#checkFormat(manifest.format);
      try {
        if (!this.#lease) this.#startLease();
        this.#checkManifestFiles(manifest);
        this.#resetView();
        this.#loadManifest(manifest);
        this.#refresh();
        break;
      } catch (e) {
        if (attempt >= OPEN_ATTEMPTS_MAX || !this.#manifestMovedFrom(manifest)) throw e;
        await this.platform.sleep(attempt);
      }
    }
    if (namespaces.some((n) => this.index.resolve(n, this.#visibleTsn) === undefined)) {
      throw new TxtDbError("READ_ONLY", `Cannot create namespaces ${JSON.stringify(namespaces)} on a store opened with readOnly: true`);
    }
  }

  /** True if the manifest on disk names other files than `m` (a compaction switched it). */
  #manifestMovedFrom(m: Manifest): boolean {
    try {
      const now = this.#log.readManifest();
      return !now || now.checkpoint !== m.checkpoint || now.firstSegment !== m.firstSegment || now.checkpointTsn !== m.checkpointTsn;
    } catch {
      return true;
    }
  }

  /** Forgets everything read so far (before loading a manifest afresh). */
  #resetView(): void {
    this.index = new Index();
    this.#cachedReader = undefined;
    this.#visibleTsn = 0;
    for (const n of [...this.#segLastTsn.keys()]) this.#log.forgetSegment(n);
    this.#segLastTsn.clear();
  }

  /**
   * With no MANIFEST, a directory may become a store only if it is empty or holds exactly
   * what an interrupted creation leaves (`writer.lock`, `frontier` at version 0, an empty
   * first segment, `MANIFEST.tmp`). A directory with other files is not ours: refused, and
   * nothing in it is touched. One with store files but no manifest is a damaged store:
   * CORRUPTION, never a fresh store over the old data. `thorough` also reads the files
   * (under the writer lock, when they can no longer change).
   */
  #checkCreatable(thorough: boolean): void {
    let names: string[];
    try {
      names = this.platform.readdir(this.path);
    } catch (e) {
      throw ioError(e, `Reading the store directory "${this.path}"`);
    }
    // A file counts as the store's only with its exact name and the start txtdb writes.
    const head = (name: string): Uint8Array | undefined => {
      try {
        const info = this.platform.lstat(`${this.path}/${name}`); // never judge a file by a link's target
        if (!info?.isFile) return undefined;
        const f = this.platform.open(`${this.path}/${name}`, { readOnly: true });
        try {
          const buf = new Uint8Array(Math.min(info.size, HOLDER_RECORD_BYTES));
          return buf.subarray(0, f.read(buf, 0));
        } finally {
          f.close();
        }
      } catch {
        return undefined;
      }
    };
    const framed = (name: string) => head(name)?.[0] === FRAME_MAGIC;
    const storeLike = names.filter((n) =>
      n === MANIFEST || n === LEASES_DIR || ((parseSegmentName(n) ?? 0) >= 1 && framed(n)) || (CHECKPOINT_FILE.test(n) && framed(n))
    );
    const leftover = (n: string): boolean => {
      const bytes = head(n);
      if (!bytes) return false;
      if (n === segmentName(1)) return bytes.every((b) => b === 0) || bytes[0] === FRAME_MAGIC; // data is judged below
      // A frontier torn by a power loss during creation is shorter than a whole one.
      if (n === FRONTIER) return (this.platform.lstat(`${this.path}/${n}`)?.size ?? Infinity) <= FRONTIER_FILE_BYTES;
      if (n === WRITER_LOCK) return bytes.length === 0 || bytes[0] === 0x7b; // empty, or a holder record ("{")
      if (n === MANIFEST_TMP) return bytes.length === 0 || bytes[0] === FRAME_MAGIC;
      return false;
    };
    const foreign = names.filter((n) => !storeLike.includes(n) && !leftover(n));
    const damaged = (what: string) =>
      new TxtDbError("CORRUPTION", `Store "${this.path}" has no MANIFEST but ${what}: it was a store whose manifest is lost. Nothing was changed; restore MANIFEST (or the directory) from a backup, or run \`txtdb check\``, {
        details: { file: `${this.path}/${MANIFEST}`, offset: 0 },
      });
    const extra = storeLike.filter((n) => n !== segmentName(1));
    if (extra.length > 0) throw damaged(`holds ${extra.slice(0, 3).map((n) => `"${n}"`).join(", ")}`);
    if (foreign.length > 0) {
      throw invalidArg(`Directory "${this.path}" is not empty and is not a txtdb store (it holds ${foreign.slice(0, 3).map((n) => `"${n}"`).join(", ")}${foreign.length > 3 ? ", …" : ""}); open an empty or new directory, or an existing store`);
    }
    if (!thorough) return;
    const first = this.#log.segment(1);
    if (first) {
      const size = first.size();
      const head = new Uint8Array(Math.min(size, 4096));
      first.read(head, 0);
      if (head.some((b) => b !== 0)) throw damaged(`its first log segment holds data`);
    }
    const fr = this.#log.readFrontier();
    if (fr && fr.tsn !== 0) throw damaged(`its frontier is at version ${fr.tsn}`);
  }

  /**
   * A manifest must agree with the files before anything is deleted on its word: the
   * segment the log resumes at exists (compaction only ever names one that does), and so
   * does the checkpoint it names. Otherwise the store is damaged (CORRUPTION), never
   * "repaired" by deleting what the manifest does not mention.
   */
  #checkManifestFiles(m: Manifest): void {
    const bad = (reason: string) =>
      new TxtDbError("CORRUPTION", `Manifest of "${this.path}" does not match the files: ${reason}. Nothing was changed; restore the store from a backup, or run \`txtdb check\``, {
        details: { file: `${this.path}/${MANIFEST}`, offset: 0 },
      });
    const first = m.firstSegment ?? 1;
    const ckptTsn = m.checkpointTsn ?? 0;
    if (!Number.isSafeInteger(first) || first < 1) throw bad(`first segment ${first} is not a positive integer`);
    if (!Number.isSafeInteger(ckptTsn) || ckptTsn < 0) throw bad(`checkpoint version ${ckptTsn} is not a non-negative integer`);
    if (m.checkpoint && !CHECKPOINT_FILE.test(m.checkpoint)) throw bad(`checkpoint name ${JSON.stringify(m.checkpoint)} is not one txtdb writes`);
    if (m.checkpoint && !this.platform.stat(`${this.path}/${m.checkpoint}`)) throw bad(`its checkpoint "${m.checkpoint}" is missing`);
    if (!m.checkpoint && (first !== 1 || ckptTsn !== 0)) throw bad(`it starts at segment ${first} without a checkpoint`);
    if (!this.#log.segment(first)) throw bad(`the log should resume at "${segmentName(first)}", which is missing`);
  }

  /**
   * Another process compacted: learn the new checkpoint and drop, from this process's
   * index, versions below it that no reader here needs (keeps memory bounded).
   */
  #followManifest(): void {
    const m = this.#log.readManifest();
    if (!m || (m.checkpointTsn ?? 0) <= (this.#manifest.checkpointTsn ?? 0)) return;
    this.#renewLeaseIfLost();
    if (this.index.lastTsn < (m.checkpointTsn ?? 0)) {
      // This process had not read all that the compaction folded: it holds no lease (a
      // reader of another user's store, or leases/ was deleted), so no pin held those
      // records back, and they are gone from the log. Skipping to the new first segment
      // would lose them; the index is reloaded from the new checkpoint instead. Snapshots
      // and transactions of this process below the checkpoint cannot be served any more
      // and end with an error on their next use.
      this.#checkManifestFiles(m);
      this.#endPinsBelow(m.checkpointTsn ?? 0);
      this.#resetView();
      this.#loadManifest(m);
      return;
    }
    this.#manifest = m;
    this.#firstSegment = m.firstSegment ?? this.#firstSegment;
    for (const n of [...this.#segLastTsn.keys()]) {
      if (n < this.#firstSegment) {
        this.#segLastTsn.delete(n);
        this.#log.forgetSegment(n);
      }
    }
    // Everything in folded segments is at or below every pin of this process, so it was
    // read already: at most the read position sits at the very end of a folded segment.
    if (this.#readPos.seg < this.#firstSegment) this.#readPos = { seg: this.#firstSegment, off: 0 };
    this.index.prune(Math.min(m.checkpointTsn ?? 0, this.#localPin()));
  }

  /** Ends this process's snapshots and transactions reading below `tsn` (see #followManifest). */
  #endPinsBelow(tsn: number): void {
    for (const [id, p] of [...this.#pins]) {
      if (p.version >= tsn) continue;
      this.#pins.delete(id);
      p.expire(PIN_LOST_HISTORY);
    }
  }

  /**
   * If this process's lease file was deleted or replaced (a cleaner, a careless `rm`), other
   * processes no longer see its pins: take a new lease. Checked whenever a compaction is
   * noticed, which is when a lost lease starts to matter.
   */
  #renewLeaseIfLost(): void {
    const lease = this.#lease;
    if (!lease) return;
    try {
      const atPath = this.platform.lstat?.(lease.path);
      const mine = lease.handle.info?.();
      if (atPath && (!mine || (atPath.ino === mine.ino && atPath.dev === mine.dev))) return;
      lease.handle.close();
    } catch {
      // unreadable: take a new one
    }
    this.#lease = undefined;
    this.#publishedPin = -1;
    try {
      this.#startLease();
    } catch {
      // a writer's lease is retried at the next compaction it notices
    }
  }

  /** Loads the manifest's checkpoint (if any) into the empty index; reading resumes after it. */
  #loadManifest(manifest: Manifest): void {
    this.#manifest = manifest;
    this.#firstSegment = manifest.firstSegment ?? 1;
    this.#readPos = { seg: this.#firstSegment, off: 0 };
    if (!manifest.checkpoint) return;
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
   * Under the writer lock at open: removes what a compaction that crashed after its
   * manifest switch (or before it) left behind. What may be deleted:
   *
   * 1. Only names txtdb writes, matched exactly: `seg-<10 digits>.log`, `ckpt-<16 digits>-<n>.dat`
   *    (and `.tmp`), `MANIFEST.tmp`. Any other file in the directory is never touched.
   * 2. A segment only below the manifest's first segment, and only if it starts with a
   *    whole record at or below the checkpoint's version (folded into it). One whose first
   *    record lies past the checkpoint means the manifest does not match the log: CORRUPTION,
   *    and nothing is deleted. One that does not start with a record is not ours: left alone.
   * 3. A checkpoint only if the manifest names another one.
   */
  #removeLeftovers(): void {
    const doomed: string[] = [];
    const checkpointTsn = this.#manifest.checkpointTsn ?? 0;
    for (const name of this.platform.readdir(this.path)) {
      const seg = parseSegmentName(name);
      if (seg !== undefined && seg >= 1 && seg < this.#firstSegment) {
        const firstTsn = this.#firstRecordTsn(seg);
        if (firstTsn === undefined) continue;
        if (firstTsn > checkpointTsn) {
          throw new TxtDbError("CORRUPTION", `Segment "${name}" of "${this.path}" lies before the manifest's first segment ${this.#firstSegment} but holds version ${firstTsn}, past the checkpoint's ${checkpointTsn}: the manifest does not match the log. Nothing was deleted; restore from a backup`, {
            details: { file: `${this.path}/${name}`, offset: 0 },
          });
        }
        doomed.push(name);
      } else if ((CHECKPOINT_FILE.test(name) || CHECKPOINT_TMP_FILE.test(name)) && name !== this.#manifest.checkpoint) {
        doomed.push(name);
      } else if (name === MANIFEST_TMP) {
        doomed.push(name);
      }
    }
    for (const name of doomed) {
      const seg = parseSegmentName(name);
      if (seg !== undefined) this.#log.forgetSegment(seg);
      this.platform.unlink(`${this.path}/${name}`);
    }
    if (doomed.length > 0) this.platform.syncDir(this.path);
  }

  /** The version of segment `n`'s first record; undefined if it does not start with a whole one. */
  #firstRecordTsn(n: number): number | undefined {
    const file = this.#log.segment(n);
    if (!file) return undefined;
    const head = new Uint8Array(1);
    if (file.read(head, 0) === 0 || head[0] !== FRAME_MAGIC) return undefined;
    let tsn: number | undefined;
    try {
      this.#log.scan({ seg: n, off: 0 }, { seg: n, off: file.size() }, (body) => {
        tsn = decodeCommit(body.slice()).tsn;
        throw FIRST_RECORD_SEEN;
      });
    } catch (e) {
      if (e !== FIRST_RECORD_SEEN) return undefined;
    }
    return tsn;
  }

  // --- leases and pins ---

  /** Takes this process's lease (liveness and pins); a read-only store may refuse it. */
  #startLease(): void {
    try {
      const dir = `${this.path}/${LEASES_DIR}`;
      // The store's mode applies here too: a store shared with a group is one whose
      // readers can take leases, so that compaction keeps what they read.
      if (!this.readOnly) this.platform.mkdir(dir, dirModeOf(this.#log.mode));
      this.#lease = ProcessLease.create(this.platform, dir, this.#log.mode);
      this.#publishPin();
    } catch (e) {
      if (!this.readOnly) throw e;
    }
  }

  /** The oldest version this process may still read: open transactions, snapshots, watchers, or its head. */
  #localPin(): number {
    let min = this.#visibleTsn;
    for (const p of this.#pins.values()) if (p.version < min) min = p.version;
    const w = this.#watchHub.oldestTsn();
    if (w !== undefined && w < min) min = w;
    return min;
  }

  /**
   * Publishes this process's pin if it moved. A failed write is not the operation's
   * failure: the published pin then stays lower than the real one, which only makes
   * compaction keep more (pins only ever move up: new pins start at the head).
   */
  #publishPin(): void {
    if (!this.#lease) return;
    const pin = this.#localPin();
    if (pin === this.#publishedPin) return;
    try {
      this.#lease.publishPin(pin);
      this.#publishedPin = pin;
    } catch {
      // retried on the next change
    }
  }

  /**
   * @internal Registers a pinned read version. Returns the release, and `touch` to call
   * on each use; `expire` is called if it stays unused past maxIdleMs.
   */
  pin(version: number, kind: string, expire: (idleMs: number) => void = () => {}): { release: () => void; touch: () => void } {
    const id = this.#nextPinId++;
    const now = this.platform.monotonicMs();
    const entry = { version, sinceMs: now, usedMs: now, kind, expire };
    this.#pins.set(id, entry);
    this.#publishPin();
    this.#startIdleSweep();
    return {
      release: () => {
        if (this.#pins.delete(id) && !this.#closed) this.#publishPin();
        if (this.#pins.size === 0) this.#stopIdleSweep();
      },
      touch: () => void (entry.usedMs = this.platform.monotonicMs()),
    };
  }

  #startIdleSweep(): void {
    if (this.#maxIdleMs <= 0 || this.#maxIdleMs === Infinity || this.#idleSweep !== undefined) return;
    // Unref'd: a forgotten snapshot must not keep a script alive until it expires.
    this.#idleSweep = armInterval(Math.max(5, Math.min(10_000, this.#maxIdleMs / 4)), () => this.#sweepIdle(), { unref: true });
  }

  #stopIdleSweep(): void {
    this.#idleSweep?.cancel();
    this.#idleSweep = undefined;
  }

  /** Releases snapshots and transactions left unused past maxIdleMs (bounded pins). */
  #sweepIdle(): void {
    const now = this.platform.monotonicMs();
    for (const [id, p] of [...this.#pins]) {
      const idle = now - p.usedMs;
      if (idle < this.#maxIdleMs) continue;
      this.#pins.delete(id);
      console.warn(`txtdb: released a ${p.kind} of "${this.path}" at version ${p.version} after ${Math.round(idle)} ms unused (maxIdleMs ${this.#maxIdleMs}); release snapshots and finish transactions when done`);
      p.expire(idle);
    }
    if (this.#pins.size === 0) this.#stopIdleSweep();
    if (!this.#closed) this.#publishPin();
  }

  /** Every live process's lease: pins and diagnostics; dead ones are reclaimed (removed). */
  #scanLeases(): { minPin: number; live: { pid: number; runtime: string; pin: number | undefined; path: string }[]; reclaimed: number } {
    const dir = `${this.path}/${LEASES_DIR}`;
    let names: string[] = [];
    try {
      names = this.platform.readdir(dir);
    } catch {
      return { minPin: this.#localPin(), live: [], reclaimed: 0 };
    }
    let minPin = this.#localPin();
    let reclaimed = 0;
    const live: { pid: number; runtime: string; pin: number | undefined; path: string }[] = [];
    for (const name of names) {
      if (!isLeaseFile(name)) continue;
      const path = `${dir}/${name}`;
      if (this.#lease && path === this.#lease.path) continue;
      if (!leaseOwnerAlive(this.platform, path)) {
        if (!this.readOnly) {
          this.platform.unlink(path);
          reclaimed++;
        }
        continue;
      }
      const info = readLeaseInfo(this.platform, path);
      const pin = readLeasePin(this.platform, path);
      // A live process whose pin is not readable yet (it is opening) reads from at least
      // the current checkpoint; be conservative and keep everything.
      minPin = Math.min(minPin, pin ?? this.#manifest.checkpointTsn ?? 0);
      live.push({ pid: info?.pid ?? -1, runtime: info?.runtime ?? "?", pin, path });
    }
    return { minPin, live, reclaimed };
  }

  #checkFormat(format: number): void {
    if (format > FORMAT_VERSION) {
      throw new TxtDbError("FORMAT", `Store "${this.path}" has format version ${format}; this txtdb reads up to ${FORMAT_VERSION}. Upgrade txtdb to open it`, {
        details: { format, supported: FORMAT_VERSION },
      });
    }
  }

  #corruption(at: LogPosition, reason: string): TxtDbError {
    const file = `${this.path}/${segmentName(at.seg)}`;
    return new TxtDbError("CORRUPTION", `Log file "${file}" is damaged at offset ${at.off}: ${reason}. Run \`txtdb check\`; restore from a backup if it persists`, {
      details: { file, offset: at.off },
    });
  }

  /** Applies every whole record from the read position up to `to` (or the end of the log). */
  #readTo(to: LogPosition | undefined) {
    return this.#log.scan(this.#readPos, to, (body, at, next) => {
      let record: CommitRecord;
      try {
        record = decodeCommit(body.slice());
      } catch (e) {
        throw this.#corruption(at, (e as Error).message);
      }
      if (record.tsn <= this.index.lastTsn) throw this.#corruption(at, `record TSN ${record.tsn} does not follow ${this.index.lastTsn}`);
      this.index.apply(record);
      this.#segLastTsn.set(at.seg, record.tsn);
      this.#counters.recordsRead++;
      this.#readPos = next;
    });
  }

  /**
   * The freshness probe: tails the log if another process published commits. A read that
   * fails because a compaction switched the manifest meanwhile (a segment or checkpoint
   * gone) follows the new manifest and reads again.
   */
  #refresh(): void {
    for (let attempt = 1; ; attempt++) {
      try {
        this.#refreshOrThrow();
        return;
      } catch (e) {
        if (attempt >= OPEN_ATTEMPTS_MAX || !this.#manifestMovedFrom(this.#manifest)) throw ioError(e, `Reading the log of "${this.path}"`);
        this.#followManifest();
      }
    }
  }

  #refreshOrThrow(): void {
    const fr = this.#log.readFrontier();
    if (!fr || fr.tsn <= this.#visibleTsn) return;
    if (fr.seg !== this.#readPos.seg) this.#followManifest();
    const to = { seg: fr.seg, off: fr.off };
    const end = this.#readTo(to);
    if (end.problem) throw this.#corruption(end.problem.at, end.problem.reason);
    if (comparePositions(this.#readPos, to) !== 0) throw this.#corruption(this.#readPos, "log ends before the published frontier");
    this.#visibleTsn = this.index.lastTsn;
    this.#publishPin();
  }

  /**
   * Under the writer lock: read to the real end of the log. Whole records past the
   * frontier (a writer died after appending) are made durable and published; a torn tail
   * past the durable end is cut off; a bad record before it is CORRUPTION.
   */
  #catchUpLocked(): void {
    const fr = this.#log.readFrontier();
    const end = this.#readTo(undefined);
    if (end.problem) {
      // A torn tail: past the durable end (when the frontier survived to tell it) and
      // followed by no whole frame. Anything else is damage, reported and left alone.
      const pastDurable = !fr || comparePositions(end.problem.at, { seg: fr.durableSeg, off: fr.durableOff }) >= 0;
      if (!pastDurable || this.#log.validFrameAfter(end.problem.at)) throw this.#corruption(end.problem.at, end.problem.reason);
      this.#log.truncateAt(end.problem.at);
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
    this.#publishPin();
  }

  /**
   * Writes who holds the writer lock into the lock file (see holder.ts), for `txtdb doctor`
   * and LOCK_TIMEOUT messages. A courtesy: a failed write changes nothing else.
   */
  #stampHolder(): void {
    stampHolder(this.#lock, this.platform);
  }

  #nextTurn(): Promise<void> {
    return this.platform.nextTurn ? this.platform.nextTurn() : this.platform.sleep(0);
  }

  #syncSegment(seg: number): void {
    const f = this.#log.segment(seg);
    if (!f) return;
    this.#datasync(f);
  }

  #datasync(f: { datasync(): void }): void {
    const t0 = this.platform.monotonicMs();
    f.datasync();
    this.#meters.fsyncUs.record((this.platform.monotonicMs() - t0) * 1000);
    this.#counters.fsyncs++;
  }

  #publish(pos: LogPosition): void {
    const fr: Frontier = { tsn: this.index.lastTsn, seg: pos.seg, off: pos.off, durableSeg: this.#durablePos.seg, durableOff: this.#durablePos.off };
    this.#log.publishFrontier(fr);
  }

  // --- commit ---

  /** @internal Queues a transaction for the next group commit; resolves with its TSN. */
  commit(state: TxState): Promise<number> {
    this.ensureOpen();
    if (this.readOnly) return Promise.reject(new TxtDbError("READ_ONLY", "Cannot write: the database was opened with readOnly: true"));
    const t0 = this.platform.monotonicMs();
    return new Promise<number>((resolve, reject) => {
      const done = (tsn: number) => {
        this.#meters.commitLatencyUs.record((this.platform.monotonicMs() - t0) * 1000);
        resolve(tsn);
      };
      const pending: PendingCommit = { state, resolve: done, reject };
      this.#queue.push(pending);
      this.#lastSubmitted = pending;
      // `#running` is cleared synchronously when the runner finds the queue empty, so a
      // commit queued at any moment after that starts a new runner; none is stranded.
      if (!this.#running) {
        this.#running = true;
        this.#committing = this.#runCommits();
      }
    });
  }

  async #runCommits(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        // Let every commit this turn of the event loop produces join the batch: a
        // transaction reaches commit() only after several microtask hops of its own, so
        // waiting one microtask would batch little; waiting for the next turn also lets
        // timers and I/O run between batches, so a stream of commits never starves them.
        await Promise.resolve();
        // The exception: one blind write (db.set) with no transaction open in this
        // process, as in a loop awaiting each write, has no one to wait for; a turn would
        // only add its latency (~20 µs here). Even so a turn is taken every millisecond.
        const lone = this.#queue.length === 1 && this.#queue[0]!.state.blind && this.#pins.size === 0;
        if (!lone || this.platform.monotonicMs() - this.#lastTurnMs >= 1) {
          await this.#nextTurn();
          this.#lastTurnMs = this.platform.monotonicMs();
        }
        if (this.#queue.length === 0) break; // every queued commit was taken back (timeout, abort)
        let release: () => void;
        try {
          release = await this.#lock.acquire(true, { timeoutMs: this.#lockTimeoutMs });
        } catch (e) {
          const err = ioError(e, "Taking the writer lock");
          for (const p of this.#queue.splice(0, BATCH_MAX)) p.reject(err);
          continue;
        }
        // The batch is taken only now that the lock is held: until this moment a commit whose
        // transaction times out (or is aborted) can leave the queue unwritten.
        const batch = this.#queue.splice(0, BATCH_MAX);
        if (batch.length === 0) {
          release();
          continue;
        }
        let results: (number | TxtDbError)[];
        try {
          this.#stampHolder();
          results = this.#commitBatchLocked(batch.map((p) => p.state));
        } catch (e) {
          const err = ioError(e, "Commit");
          for (const p of batch) p.reject(err);
          continue;
        } finally {
          release();
        }
        batch.forEach((p, i) => {
          const r = results[i]!;
          if (typeof r === "number") p.resolve(r);
          else p.reject(r);
        });
      }
    } finally {
      // Synchronously after the loop saw an empty queue: see commit().
      this.#running = false;
    }
  }

  /** Validates, writes and publishes a batch; the writer lock is held. All synchronous. */
  #commitBatchLocked(states: TxState[]): (number | TxtDbError)[] {
    this.#catchUpLocked();
    const results: (number | TxtDbError)[] = [];
    const applied: { record: CommitRecord; prevTsn: number; prevNextNsId: number }[] = [];
    const frames: Uint8Array[] = [];
    let bytes = 0;
    for (const s of states) {
      let error = validate(s, this.index);
      let record: CommitRecord | undefined;
      if (!error) {
        try {
          record = buildRecord(s, this.index, this.index.lastTsn + 1);
        } catch (e) {
          if (!isTxtDbError(e)) throw e;
          error = e;
        }
      }
      if (error || !record) {
        if (error?.code === "CONFLICT") this.#counters.conflicts++;
        results.push(error!);
        continue;
      }
      const prev = { prevTsn: this.index.lastTsn, prevNextNsId: this.index.nextNsId };
      this.index.apply(record);
      applied.push({ record, ...prev });
      const f = frame(encodeCommit(record));
      frames.push(f);
      bytes += f.length;
      results.push(record.tsn);
    }
    if (frames.length === 0) return results;
    const data = new Uint8Array(bytes);
    let o = 0;
    for (const f of frames) {
      data.set(f, o);
      o += f.length;
    }
    const start = this.#readPos;
    let seg = start.seg;
    let file = this.#log.segment(seg);
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
        file = this.#log.createSegment(seg);
        at = 0;
        appendAt = { seg, off: 0 };
      }
      // Write at the logical end (the read position after catch-up), into preallocated space.
      this.#log.preallocate(file, at + data.length, this.#segmentBytes);
      file.write(data, at);
      const end = { seg, off: at + data.length };
      if (this.#durability === "full") {
        this.#datasync(file);
        this.#durablePos = end;
      }
      this.#readPos = end;
      this.#publish(end);
      this.#segLastTsn.set(seg, this.index.lastTsn);
    } catch (e) {
      // Nothing of this batch may become visible: take it back off the index and the file.
      for (const a of applied.reverse()) this.index.undo(a.record, a.prevTsn, a.prevNextNsId);
      this.#readPos = start;
      try {
        // The bytes must go, or the next writer's catch-up would adopt a failed commit.
        this.#log.segment(appendAt.seg)?.truncate(appendAt.off);
        if (appendAt.seg !== start.seg) this.#log.segment(start.seg)?.truncate(start.off);
      } catch {
        // The next writer's catch-up cuts an unpublished tail anyway (it lies past the frontier).
      }
      throw e;
    }
    this.#visibleTsn = this.index.lastTsn;
    this.#counters.batches++;
    this.#counters.commits += frames.length;
    this.#counters.batchSizeMax = Math.max(this.#counters.batchSizeMax, frames.length);
    this.#meters.batchSizes.record(frames.length);
    for (const a of applied) this.#counters.keysWritten += a.record.writes.length;
    if (this.#durability === "relaxed") this.#scheduleRelaxedSync();
    this.#publishPin();
    if (seg !== start.seg) this.#maybeAutoCompact(seg);
    return results;
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

  // --- lifecycle ---

  /** @internal Throws CLOSED after close(). */
  ensureOpen(): void {
    if (this.#closed) throw new TxtDbError("CLOSED", `Database "${this.path}" is closed; open it again`);
  }

  /** Waits for queued commits, syncs, releases files and locks. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    while (this.#running || this.#autoCompacting) {
      await this.#committing;
      await this.#autoCompacting?.catch(() => {});
    }
    this.#closed = true;
    this.#stopIdleSweep();
    this.#watchHub.closeAll();
    if (this.#relaxedTimer !== undefined) {
      this.#relaxedTimer.cancel();
      this.#relaxedTimer = undefined;
      try {
        this.#syncSegment(this.#readPos.seg);
      } catch {
        // closing anyway
      }
    }
    this.#lock.close();
    this.#log.close();
    // Free the memory now, even if the caller keeps this object: every later call fails
    // with CLOSED before it could look at the index.
    this.index = new Index();
    this.#cachedReader = undefined;
    this.#pins.clear();
    try {
      this.#lease?.release(this.platform);
    } catch {
      // a lease left behind is reclaimed by the next compaction: its lock is free
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // --- reads on db ---

  #cachedReader: DbReader | undefined;
  #cachedReaderTsn = -1;

  /** A reader at the newest committed version (one object per version, reused). */
  #reader(): DbReader {
    this.ensureOpen();
    this.#counters.reads++;
    this.#refresh();
    if (this.#cachedReaderTsn !== this.#visibleTsn || !this.#cachedReader) {
      this.#cachedReader = new DbReader(this, this.#visibleTsn);
      this.#cachedReaderTsn = this.#visibleTsn;
    }
    return this.#cachedReader;
  }

  /** The newest committed value of `key`, or undefined. */
  get<T = unknown>(ns: string, key: Key): Promise<T | undefined> {
    try {
      return this.#reader().get<T>(ns, key);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The newest committed entry of `key`, or undefined. */
  getEntry<T = unknown>(ns: string, key: Key): Promise<Entry<T> | undefined> {
    try {
      return this.#reader().getEntry<T>(ns, key);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The newest committed values of several keys. */
  getMany<T = unknown>(ns: string, keys: Key[]): Promise<(T | undefined)[]> {
    try {
      return this.#reader().getMany<T>(ns, keys);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Entries of a selection at the newest committed state. */
  list<T = unknown>(ns: string, sel: ListSelector, opts?: ListOptions): AsyncIterableIterator<Entry<T>> {
    let reader: DbReader;
    try {
      reader = this.#reader();
    } catch (e) {
      const it: AsyncIterableIterator<Entry<T>> = {
        next: () => Promise.reject(e),
        [Symbol.asyncIterator]: () => it,
      };
      return it;
    }
    return reader.list<T>(ns, sel, opts);
  }

  // --- writes and transactions ---

  #blindWrite(ns: string, key: Key, value: unknown, isDelete: boolean): Promise<{ version: bigint }> {
    try {
      this.ensureOpen();
      if (this.readOnly) throw new TxtDbError("READ_ONLY", "Cannot write: the database was opened with readOnly: true");
      checkNamespaceName(ns);
      const k = encodeKey(key, this.limits.maxKeyBytes);
      const v = isDelete ? undefined : encodeValue(value, this.limits.maxValueBytes);
      this.#refresh();
      if (this.index.resolve(ns, this.#visibleTsn) === undefined) {
        throw new TxtDbError("NAMESPACE_NOT_FOUND", `Namespace "${ns}" does not exist; create it with createNamespace("${ns}") or the namespaces open option`, { details: { ns } });
      }
      const state = newTxState(this.#visibleTsn, this.#isolation, true);
      state.touched.add(ns);
      state.writes.set(ns, new Map([[k, v === undefined ? { kind: "delete" as const } : { kind: "set" as const, value: v }]]));
      state.writeCount = 1;
      return this.commit(state).then((tsn) => ({ version: BigInt(tsn) }));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Writes one key in its own transaction. */
  set(ns: string, key: Key, value: unknown): Promise<{ version: bigint }> {
    return this.#blindWrite(ns, key, value, false);
  }

  /** Deletes one key in its own transaction. */
  delete(ns: string, key: Key): Promise<{ version: bigint }> {
    return this.#blindWrite(ns, key, undefined, true);
  }

  /** Begins a transaction reading the newest committed state. */
  begin(options: { isolation?: Isolation } = {}): Promise<Transaction> {
    try {
      const isolation = options.isolation ?? this.#isolation;
      if (isolation !== "serializable" && isolation !== "snapshot") {
        throw invalidArg(`isolation must be "serializable" or "snapshot"; got ${JSON.stringify(isolation)}`);
      }
      this.ensureOpen();
      this.#refresh();
      return Promise.resolve(new Transaction(this, this.#visibleTsn, isolation));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Runs `fn` in a transaction and commits it, rerunning it on CONFLICT with exponential
   * backoff and jitter up to `maxRetries` times. Any other error rolls back and is rethrown.
   */
  async transaction<T>(fn: (tx: Transaction) => Promise<T> | T, options: TransactionOptions = {}): Promise<T> {
    checkFunction("transaction()'s argument", fn);
    if (options === null || typeof options !== "object") throw invalidArg("transaction() options must be an object");
    checkSignal(options.signal);
    const maxRetries = options.maxRetries ?? 10;
    if (!Number.isInteger(maxRetries) || maxRetries < 0) throw invalidArg(`maxRetries must be a non-negative integer; got ${String(maxRetries)}`);
    if (options.timeoutMs !== undefined && !(options.timeoutMs >= 0)) throw invalidArg(`timeoutMs must be a non-negative number; got ${String(options.timeoutMs)}`);
    const deadline = options.timeoutMs !== undefined ? this.platform.monotonicMs() + options.timeoutMs : undefined;
    const signal = options.signal;
    const timeoutError = (cause?: unknown) =>
      new TxtDbError("TIMEOUT", signal?.aborted ? "Transaction was aborted by its signal" : `Transaction did not finish within ${options.timeoutMs} ms (timeoutMs)`, { cause });
    // After a first CONFLICT this transaction queues for its turn on the key it lost, and
    // keeps the turn through its reruns (see retryturns.ts).
    let leaveTurn: LeaveTurn | undefined;
    try {
      for (let attempt = 0; ; attempt++) {
        if (signal?.aborted) throw timeoutError(signal.reason);
        if (deadline !== undefined && this.platform.monotonicMs() >= deadline) throw timeoutError();
        const tx = await this.begin(options.isolation ? { isolation: options.isolation } : {});
        try {
          const result = await this.#withDeadline(Promise.resolve().then(() => fn(tx)), deadline, signal, timeoutError);
          if (!tx.finished) await this.#commitWithDeadline(tx, deadline, signal, timeoutError);
          return result;
        } catch (e) {
          tx.rollback();
          if (!isTxtDbError(e, "CONFLICT") || attempt >= maxRetries) throw e;
          this.#counters.retries++;
          if (leaveTurn) {
            // Lost again while holding the turn: another process wrote the key. Back off.
            const capMs = Math.min(100, 2 ** attempt);
            await this.platform.sleep(Math.random() * capMs);
          } else {
            const waitMs = deadline === undefined ? RETRY_TURN_MAX_WAIT_MS : Math.min(RETRY_TURN_MAX_WAIT_MS, deadline - this.platform.monotonicMs());
            leaveTurn = await this.#retryTurns.enter(conflictSubject(e), waitMs, signal);
          }
        }
      }
    } finally {
      leaveTurn?.();
    }
  }

  /** Milliseconds from now to `deadline` (a monotonic time), if there is one. */
  #delayTo(deadline: number | undefined): number | undefined {
    return deadline === undefined ? undefined : deadline - this.platform.monotonicMs();
  }

  #withDeadline<T>(p: Promise<T>, deadline: number | undefined, signal: AbortSignal | undefined, timeoutError: (cause?: unknown) => TxtDbError): Promise<T> {
    return raceDeadline(p, this.#delayTo(deadline), signal, (cause) => ({ error: timeoutError(cause) }));
  }

  /**
   * Commits `tx`, ending with TIMEOUT at the deadline or on abort only while the commit can
   * still be taken back: while it waits in this process's queue (before the writer lock is
   * held), it is removed and never written. Once its group commit has the lock, the
   * outcome is on its way to the disk: the caller waits for it and learns it (committed,
   * or the error that stopped it), never a TIMEOUT for a commit that happened.
   */
  #commitWithDeadline(tx: Transaction, deadline: number | undefined, signal: AbortSignal | undefined, timeoutError: (cause?: unknown) => TxtDbError): Promise<unknown> {
    this.#lastSubmitted = undefined;
    const committing = tx.commit();
    const pending = this.#lastSubmitted as PendingCommit | undefined; // set synchronously by commit()
    this.#lastSubmitted = undefined;
    if (!pending) return committing; // read-only: resolved already
    return raceDeadline(committing, this.#delayTo(deadline), signal, (cause) => {
      const i = this.#queue.indexOf(pending);
      if (i < 0) return undefined; // in a group commit already: wait for its outcome
      this.#queue.splice(i, 1);
      const error = timeoutError(cause);
      pending.reject(error); // tx.commit() settles (rolled back); nothing was written
      return { error };
    });
  }

  /** A read-only view pinned at the newest committed version; release it when done. */
  snapshot(): Promise<Snapshot> {
    try {
      this.ensureOpen();
      this.#refresh();
      const v = this.#visibleTsn;
      let snap: Snapshot | undefined;
      const { release, touch } = this.pin(v, "snapshot", (idleMs) => snap?.expire(idleMs, this.#maxIdleMs));
      snap = new Snapshot(this, v, release, touch);
      return Promise.resolve(snap);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // --- watching ---

  /**
   * Events for every commit, from any process, that changes the given keys or a key under
   * the prefix, in version order. `fromVersion` (exclusive) replays history the log holds.
   *
   * Watches the namespace the name denotes now; if it is dropped or renamed, the watcher
   * delivers every earlier event, then ends with `NAMESPACE_NOT_FOUND` (details `{ ns,
   * version, op, to? }`); go on by watching the new name with `fromVersion: version`.
   *
   * @example
   * ```ts
   * for await (const { version, changes } of db.watch("accounts", { prefix: [] })) { ... }
   * ```
   */
  watch(ns: string, sel: { keys: Key[] } | { prefix: Key | readonly never[] }, opts: { fromVersion?: bigint } = {}): AsyncIterableIterator<WatchEvent> {
    this.ensureOpen();
    this.#refresh();
    const nsId = this.index.resolve(ns, this.#visibleTsn);
    if (nsId === undefined) throw new TxtDbError("NAMESPACE_NOT_FOUND", `Cannot watch namespace "${ns}": it does not exist`, { details: { ns } });
    if (sel === null || typeof sel !== "object") throw invalidArg("watch() needs { keys: [...] } or { prefix }");
    if (opts.fromVersion !== undefined && (typeof opts.fromVersion !== "bigint" || opts.fromVersion < 0n)) {
      throw invalidArg(`watch() fromVersion must be a non-negative bigint; got ${String(opts.fromVersion)}`);
    }
    const from = opts.fromVersion === undefined ? undefined : Number(opts.fromVersion);
    if ("keys" in sel) {
      if (!Array.isArray(sel.keys)) throw invalidArg("watch() keys must be an array of keys");
      return this.#watchHub.watch({ nsId, ns, keys: new Set(sel.keys.map((k) => encodeKey(k, this.limits.maxKeyBytes))) }, from);
    }
    const [start, end] = prefixRange(sel.prefix, this.limits.maxKeyBytes);
    return this.#watchHub.watch({ nsId, ns, start, end }, from);
  }

  // --- namespaces ---

  #namespaceOp(op: NamespaceRequest): Promise<void> {
    try {
      this.ensureOpen();
      if (this.readOnly) throw new TxtDbError("READ_ONLY", `Cannot ${op.op} namespace "${op.name}": the database was opened with readOnly: true`);
      checkNamespaceName(op.name);
      if (op.op === "rename") checkNamespaceName(op.to);
      this.#refresh();
      const state = newTxState(this.#visibleTsn, "serializable", true);
      state.namespaceOps.push(op);
      return this.commit(state).then(() => undefined);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Creates a namespace; NAMESPACE_EXISTS if present. */
  createNamespace(name: string): Promise<void> {
    return this.#namespaceOp({ op: "create", name });
  }

  /** Drops a namespace and every key in it, atomically; NAMESPACE_NOT_FOUND if absent. */
  dropNamespace(name: string): Promise<void> {
    return this.#namespaceOp({ op: "drop", name });
  }

  /** Renames a namespace atomically; NAMESPACE_EXISTS / NAMESPACE_NOT_FOUND. */
  renameNamespace(from: string, to: string): Promise<void> {
    return this.#namespaceOp({ op: "rename", name: from, to });
  }

  /** Names of the namespaces at the newest committed version, sorted. */
  listNamespaces(): Promise<string[]> {
    try {
      this.ensureOpen();
      this.#refresh();
      return Promise.resolve(this.index.namespaces(this.#visibleTsn));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // --- compaction ---

  /**
   * Folds old log segments into a checkpoint below the oldest version any live process
   * pins, switches the manifest atomically, and deletes what it replaced. Never removes a
   * version a live snapshot, transaction or watcher can read.
   */
  async compact(): Promise<CompactResult> {
    this.ensureOpen();
    if (this.readOnly) throw new TxtDbError("READ_ONLY", "Cannot compact: the database was opened with readOnly: true");
    const release = await this.#lock.acquire(true, { timeoutMs: this.#lockTimeoutMs });
    try {
      this.#stampHolder();
      return this.#compactLocked();
    } catch (e) {
      throw ioError(e, `Compacting "${this.path}"`);
    } finally {
      release();
    }
  }

  /** Bytes of the live log segments (allocated, so including preallocated space). */
  #segmentBytesOnDisk(): number {
    let total = 0;
    for (const n of this.#log.listSegments()) if (n >= this.#firstSegment) total += this.#log.segment(n)?.size() ?? 0;
    return total;
  }

  #checkpointBytes(): number {
    return this.#manifest.checkpoint ? this.platform.stat(`${this.path}/${this.#manifest.checkpoint}`)?.size ?? 0 : 0;
  }

  /** The store's size: live segments plus the checkpoint. */
  #logBytes(): number {
    return this.#segmentBytesOnDisk() + this.#checkpointBytes();
  }

  #compactLocked(): CompactResult {
    this.#catchUpLocked();
    const bytesBefore = this.#logBytes();
    const { minPin, reclaimed } = this.#scanLeases();
    const segments = this.#log.listSegments().filter((n) => n >= this.#firstSegment);
    const active = segments[segments.length - 1] ?? this.#firstSegment;
    let lastFolded: number | undefined;
    let tsn = this.#manifest.checkpointTsn ?? 0;
    for (const n of segments) {
      if (n >= active || n > this.#readPos.seg) break; // only sealed segments fold
      const last = this.#segLastTsn.get(n) ?? tsn; // an empty segment adds nothing
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
    // 1. The checkpoint, under a temporary name, fsynced.
    const name = checkpointName(tsn).replace(".dat", `-${lastFolded + 1}.dat`);
    const tmp = `${this.path}/${name}.tmp`;
    // A fresh file, created exclusively: a leftover (or a planted link) is removed first.
    this.platform.unlink(tmp);
    const file = this.platform.open(tmp, { create: true, exclusive: true, mode: this.#log.mode });
    try {
      writeCheckpoint(file, { tsn, nextNsId: this.index.nextNsId, bindings: this.index.bindingsAt(tsn) }, this.index.stateAt(tsn));
    } finally {
      file.close();
    }
    this.platform.rename(tmp, `${this.path}/${name}`);
    // 2. The manifest switch: temp, fsync, rename, directory fsync (in writeManifest).
    const previous = this.#manifest.checkpoint;
    const manifest: Manifest = { ...this.#manifest, checkpoint: name, checkpointTsn: tsn, firstSegment: lastFolded + 1 };
    this.#log.writeManifest(manifest);
    this.#manifest = manifest;
    this.#firstSegment = lastFolded + 1;
    // 3. What it replaced. Processes still holding these files open keep reading them
    // (POSIX); none needs them again, since every live process has read past minPin.
    for (const n of segments) {
      if (n > lastFolded) break;
      this.#log.forgetSegment(n);
      this.platform.unlink(`${this.path}/${segmentName(n)}`);
      this.#segLastTsn.delete(n);
    }
    if (previous) this.platform.unlink(`${this.path}/${previous}`);
    this.platform.syncDir(this.path);
    // 4. This process's own memory: versions below the checkpoint no reader needs.
    this.index.prune(Math.min(tsn, this.#localPin()));
    this.#compactions++;
    return result(lastFolded - segments[0]! + 1);
  }

  #maybeAutoCompact(activeSeg: number): void {
    if (this.#autoCompactBytes <= 0 || this.#autoCompacting) return;
    const sealedBytes = (activeSeg - this.#firstSegment) * this.#segmentBytes;
    if (sealedBytes < this.#autoCompactBytes) return;
    this.#autoCompacting = Promise.resolve()
      .then(() => this.compact())
      .catch(() => {
        // Automatic compaction is best effort; db.compact() reports its errors.
      })
      .finally(() => (this.#autoCompacting = undefined));
  }

  /** Verifies every record's checksum, the manifest, the checkpoint and the index; changes nothing. */
  check(): Promise<CheckReport> {
    try {
      this.ensureOpen();
      this.#refresh();
      return Promise.resolve(checkStore(this.platform, this.path, this.#log, this.index, this.#visibleTsn));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #oldestPinAgeMs(): number {
    let oldest = Infinity;
    for (const p of this.#pins.values()) oldest = Math.min(oldest, p.sinceMs);
    return oldest === Infinity ? 0 : Math.round(this.platform.monotonicMs() - oldest);
  }

  /** Live processes sharing this store, with their pins (for diagnostics and `txtdb doctor`). */
  processes(): { pid: number; runtime: string; pinnedVersion: bigint | undefined; self: boolean }[] {
    this.ensureOpen();
    const { live } = this.#scanLeases();
    const me = { pid: this.platform.pid, runtime: this.platform.runtime, pinnedVersion: BigInt(this.#localPin()), self: true };
    return [me, ...live.map((l) => ({ pid: l.pid, runtime: l.runtime, pinnedVersion: l.pin === undefined ? undefined : BigInt(l.pin), self: false }))];
  }

  // --- observability ---

  /**
   * The same figures as stats() in the Prometheus text exposition format.
   *
   * @example
   * ```ts
   * server.get("/metrics", () => new Response(db.metrics()));
   * ```
   */
  metrics(): string {
    return renderMetrics(this.stats(), this.#meters, { store: this.path, runtime: this.platform.runtime });
  }

  /** Counters and figures of this process's view of the store. */
  stats(): Stats {
    this.ensureOpen();
    const logBytes = this.#segmentBytesOnDisk();
    const checkpointBytes = this.#checkpointBytes();
    let liveLeases = 0;
    try {
      for (const name of this.platform.readdir(`${this.path}/${LEASES_DIR}`)) {
        if (isLeaseFile(name) && leaseOwnerAlive(this.platform, `${this.path}/${LEASES_DIR}/${name}`)) liveLeases++;
      }
    } catch {
      // no leases directory (a read-only store)
    }
    return {
      durability: this.#durability,
      commitLatencyUs: this.#meters.commitLatencyUs.summary(),
      lockWaitUs: this.#meters.lockWaitUs.summary(),
      fsyncUs: this.#meters.fsyncUs.summary(),
      batchSize: this.#meters.batchSizes.summary(),
      checkpointBytes,
      liveLeases,
      keysInMemory: this.index.keyCountAll(),
      runtime: this.platform.runtime,
      path: this.path,
      version: BigInt(this.#visibleTsn),
      ...this.#counters,
      namespaces: this.index.namespaces(this.#visibleTsn).length,
      versionsHeld: this.index.versionCount,
      logBytes,
      openSnapshots: [...this.#pins.values()].filter((p) => p.kind === "snapshot").length,
      openTransactions: [...this.#pins.values()].filter((p) => p.kind === "transaction").length,
      oldestPinVersion: BigInt(this.#localPin()),
      oldestPinAgeMs: this.#oldestPinAgeMs(),
      checkpointVersion: BigInt(this.#manifest.checkpointTsn ?? 0),
      firstSegment: this.#firstSegment,
      compactions: this.#compactions,
      watchers: this.#watchHub.count,
    };
  }
}

/**
 * Opens (creating if needed) the store in directory `path`. Any number of processes, on
 * any mix of Node, Deno and Bun, may open the same directory at once.
 *
 * @example
 * ```ts
 * await using db = await open("./data", { namespaces: ["accounts"] });
 * ```
 */
export async function open(path: string, options: OpenOptions = {}): Promise<Database> {
  if (typeof path !== "string" || path.length === 0) throw invalidArg(`open() needs a directory path; got ${JSON.stringify(path)}`);
  checkOptions(options);
  const platform = options.adapter ?? (await defaultPlatform());
  try {
    checkStoreDirectory(platform, path, { allowForeignOwner: options.allowForeignOwner === true });
  } catch (e) {
    throw ioError(e, `Checking the store directory "${path}"`);
  }
  const dirMode = dirModeOf(resolveOptions(options).mode);
  if (!options.readOnly) {
    try {
      platform.mkdir(path, dirMode);
    } catch (e) {
      throw ioError(e, `Creating the store directory "${path}"`);
    }
  } else if (!platform.stat(path)?.isDirectory) {
    throw invalidArg(`No txtdb store at "${path}"; open it once without readOnly to create it`);
  }
  const db = new Database(path, platform, options);
  try {
    await db.init(options.namespaces ?? []);
  } catch (e) {
    await db.close().catch(() => {});
    throw ioError(e, `Opening "${path}"`);
  }
  return db;
}
