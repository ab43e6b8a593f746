/**
 * The local engine of a {@link Database} (db.ts is the public facade): a store in a
 * directory, shared by the processes of one machine, over the parts that own their state.
 *
 * - tail.ts: the log tail (read, durable and visible positions, the manifest, recovery,
 *   the append of a batch, with the durability rules on top);
 * - commit.ts: validation and the group committer (queue, lock, batch);
 * - pins.ts: pins of snapshots, transactions and watchers, published through the lease;
 * - compact.ts: compaction and leftover cleanup (the manifest-switch rules on top);
 * - opening.ts, options.ts, stats.ts, files.ts: open-time checks, options, meters, names.
 *
 * This file opens a store (creating it if new, recovering a crashed writer's tail), wires
 * the parts together, and serves reads, writes, transactions, snapshots, watchers,
 * namespaces, check and stats.
 *
 * Freshness: every read on `db`, `begin()` and `snapshot()` first probes the frontier (one
 * small pread) and tails the log only if it moved, so a commit that resolved in any
 * process is visible to the next read in every other.
 *
 * @module
 */
import { isTxtDbError, TxtDbError } from "./errors.ts";
import { encodeKey, prefixRange } from "./keys.ts";
import type { Key } from "./keys.ts";
import { encodeValue } from "./codec.ts";
import { expiryFromOptions, wrapExpiring } from "./expiry.ts";
import type { SetOptions } from "./expiry.ts";
import type { Index } from "./index.ts";
import { comparePositions, FORMAT_CHECKPOINT, FORMAT_TWO_PHASE, FORMAT_VERSION, storeMode } from "./log.ts";
import { changeFormatLocked } from "./migrate.ts";
import { GroupCommitter, isWriterLockLost } from "./commit.ts";
import { FileLock } from "./lock.ts";
import type { FileInfo, Platform } from "./port.ts";
import { randomFraction, workingDirectory } from "./port.ts";
import { defaultPlatform } from "./platform.ts";
import { expireSnapshot, newSnapshot, newTransaction, newTxState, SnapshotReader } from "./tx.ts";
import { checkTxBytes } from "./txstate.ts";
import type { Entry, Isolation, Limits, ListOptions, ListSelector, NamespaceRequest, Snapshot, Transaction, TxHost, TxState } from "./tx.ts";
import type { Database } from "./db.ts";
import type { DatabaseEngine } from "./dbengine.ts";
import { WatchHub } from "./watch.ts";
import type { WatchEvent } from "./watch.ts";
import { conflictSubject, RETRY_TURN_MAX_WAIT_MS, RetryTurns } from "./retryturns.ts";
import type { LeaveTurn } from "./retryturns.ts";
import { checkStore, checkWhileManifestMoves } from "./check.ts";
import type { CheckReport } from "./check.ts";
import { abortReason, raceDeadline, signalAborted } from "./timers.ts";
import { describeHolder, stampHolder } from "./holder.ts";
import { checkStoreDirectory } from "./dirsafety.ts";
import { checkBeginOptions, checkNamespaceName, checkNotReserved, checkTransactionOptions, checkWatchArguments, dirModeOf, ETCD_ONLY_OPTIONS, fromVersionAhead, invalidArg, isReservedNamespace, resolveOptions } from "./options.ts";
import type { Durability, OpenOptions, TransactionOptions } from "./options.ts";
import { Meters, renderMetrics } from "./stats.ts";
import type { Counters, Stats } from "./stats.ts";
import { COMPACT_LOCK, FRONTIER, ioError, MANIFEST, WRITER_LOCK } from "./files.ts";
import { checkCreatable, checkFormat, checkManifestFiles, checkManifestLost } from "./opening.ts";
import { OPEN_ATTEMPTS_MAX, Tail } from "./tail.ts";
import { Pins } from "./pins.ts";
import type { PinHandle } from "./pins.ts";
import { Compactor } from "./compact.ts";
import { LockManager } from "./locks.ts";
import type { LockInfo, LockMode, LockOptions, ResourceLock } from "./locks.ts";
import type { Key as ResourceKey } from "./keys.ts";
import type { CompactResult } from "./compact.ts";
import { backupStore } from "./backup.ts";
import type { BackupResult } from "./backup.ts";
import { Queues } from "./queues.ts";
import { SAGA_STATUSES, statusPrefix } from "./sagastate.ts";
import type { DeadLetter, EnqueueOptions, EnqueueResult, ListenOptions, QueueHandler, QueueStats } from "./queues.ts";
import { Participant } from "./participant.ts";
import type { PreparedInfo } from "./prepared.ts";

/** How often open() takes the writer lock again after its lock file was deleted under it. */
const OPEN_LOCK_LOST_RETRIES_MAX = 8;

/** The engine side of a {@link Database}, kept out of its public type. */
export interface DatabaseInternals extends TxHost {
  readonly platform: Platform;
  /** Two-phase commit: the participant side and its resolver (participant.ts). */
  readonly participant: Participant;
  /** This process's lease file name in the store's `leases/` (liveness of a coordinator). */
  readonly leaseFile: string | undefined;
  /** The permission bits of the store's files (its MANIFEST's, or `mode` for a new store); its directories get dirModeOf() of them. */
  readonly fileMode: number;
  /** Opens the store: creates it if new, recovers a crashed writer's tail. */
  init(namespaces: string[]): Promise<void>;
  /** The names of the queues that hold messages (for `txtdb queues`). */
  queueNames(): string[];
  /**
   * Namespaces of the `Sagas` handles open on this database, each with how many handles
   * have it open: `stats().sagas` counts the sagas in them (sagas.ts keeps it).
   */
  readonly sagaNamespaces: Map<string, number>;
  /**
   * Live keys under `prefix` in namespace `ns` at the newest committed state (0 if the
   * namespace does not exist), synchronously: for stats() of the parts built on a store.
   */
  countNow(ns: string, prefix: Key): number;
}

/** The engine side of a local database: for txtdb's parts and tools (db.ts databaseInternals). */
export let localInternals: (db: LocalDatabase) => DatabaseInternals;
/** Opens another store for the participant's recovery (db.ts open: the public facade). */
export type OpenStore = (path: string, options: OpenOptions) => Promise<Database>;
/** Makes a LocalDatabase (its constructor is private): for {@link openLocal}. */
let newDatabase: (path: string, platform: Platform, options: OpenOptions, openStore: OpenStore) => LocalDatabase;

class DbReader extends SnapshotReader {
  protected usable(): void {
    this.ctx.ensureOpen();
  }

  /**
   * A list on `db` that outlives its first page pins its version until it ends; each of
   * its `next()` calls is a use of that pin (touch).
   */
  protected override holdForStream(onLost: (why: string) => void): { release: () => void; touch: () => void } {
    const db = this.ctx as TxHost;
    const { release, touch } = db.pin(this.snap, "list", (idleMs) =>
      onLost(idleMs < 0
        ? "A list on the database lost its version: another process compacted it away while this process held no lease; list again"
        : `A list on the database was left unread for ${Math.round(idleMs)} ms (maxIdleMs) and released its version; list again`)
    );
    return { release, touch };
  }
}

/** The commit a transaction() attempt's function started itself, once it calls tx.commit(). */
interface OwnCommit {
  /** The state the attempt's function committed (tx.commit()), found by it in the queue. */
  state?: TxState;
  committing?: Promise<number>;
  /** Whether that commit was written: resolves once it settled (never rejects). */
  written?: Promise<boolean>;
}

/**
 * A commit that waits for the queues' namespace before it is submitted (the store's first
 * enqueue): taking it back marks it, and it is then never submitted.
 */
interface AwaitingNamespace {
  takenBack: boolean;
  error: unknown;
}

/** A store in a directory: the local engine behind {@link Database} (see the module comment). */
export class LocalDatabase implements DatabaseEngine {
  /** The store directory. */
  readonly path: string;
  readonly platform: Platform;
  /** True when opened with `readOnly: true`: writes fail with READ_ONLY. */
  readonly readOnly: boolean;
  readonly limits: Limits;
  readonly #tail: Tail;
  readonly #lock: FileLock;
  readonly #committer: GroupCommitter;
  readonly #compactor: Compactor;
  readonly #pins: Pins;
  readonly #watchHub: WatchHub;
  readonly #durability: Durability;
  readonly #isolation: Isolation;
  readonly #lockTimeoutMs: number;
  readonly #retryTurns = new RetryTurns();
  readonly #meters = new Meters();
  readonly #counters: Counters = this.#meters.counters;
  readonly #locks: LockManager;
  readonly #queues: Queues;
  readonly #participant: Participant;
  readonly #sagaNamespaces = new Map<string, number>();
  /** See DatabaseInternals.fileMode. */
  readonly #fileMode: number;
  #closed = false;
  /** Set once open() has finished: from then on the view may be refreshed outside a call. */
  #opened = false;
  /** A roll-over asked to learn other processes' compactions on a later turn (afterBatch). */
  #followScheduled = false;

  /** Use {@link open}. */
  private constructor(path: string, platform: Platform, options: OpenOptions, openStore: OpenStore) {
    this.path = path.replace(/\/+$/, "") || "/";
    this.platform = platform;
    const o = resolveOptions(options);
    this.readOnly = o.readOnly;
    this.limits = o.limits;
    this.#durability = o.durability;
    this.#isolation = o.isolation;
    this.#lockTimeoutMs = o.lockTimeoutMs;
    this.#fileMode = o.mode;
    this.#locks = new LockManager(platform, this.path, { readOnly: o.readOnly, mode: o.mode, dirMode: dirModeOf(o.mode), lockTimeoutMs: o.lockTimeoutMs, maxKeyBytes: o.limits.maxKeyBytes }, this.#meters.resourceLockWaitUs);
    this.#lock = new FileLock(platform, `${this.path}/${WRITER_LOCK}`, o.mode, { readOnly: o.readOnly, guardDir: this.path });
    this.#lock.onWait = (ms) => this.#meters.lockWaitUs.record(ms * 1000);
    this.#lock.describeHolder = describeHolder(platform);
    this.#tail = new Tail(platform, this.path, o, this.#meters, {
      localPin: () => this.#pins.localPin(),
      publishPin: () => this.#pins.publish(),
      compactionNoticed: () => this.#pins.renewLeaseIfLost(),
      endPinsBelow: (tsn) => this.#pins.endPinsBelow(tsn),
      viewReset: () => void (this.#cachedReader = undefined),
      preparedSeen: () => this.#participant?.wake(),
    });
    const tail = this.#tail;
    this.#pins = new Pins(platform, this.path, { readOnly: o.readOnly, mode: o.mode, dirMode: dirModeOf(o.mode), maxIdleMs: o.maxIdleMs }, {
      head: () => tail.visibleTsn,
      oldestWatched: () => this.#watchHub.oldestTsn(),
      // A read's freshness probe, for a process that holds no pin: its head then moves on
      // with the store even while it reads nothing (pins.ts, rule of the idle head).
      refreshHead: () => {
        if (this.#opened && !this.#closed) tail.refresh();
      },
    });
    this.#compactor = new Compactor(platform, tail, this.#lock, this.#pins, o);
    this.#committer = new GroupCommitter(platform, tail, this.#lock, this.#meters, o.lockTimeoutMs, {
      noOpenReads: () => this.#pins.size === 0,
      afterBatch: (seg, rolled) => {
        this.#pins.publish();
        if (!rolled) return;
        // A process that only writes reads nothing past its own appends, so reads never
        // make it learn another process's compaction (tail.refresh follows the manifest
        // when the frontier changes segment); without this its in-memory table would keep
        // every version while other processes compact (automatic compaction off here).
        // This runs under the writer lock, and adopting drops the folded versions from
        // memory (hundreds of ms for a large fold): so on a later turn, after the release.
        if (!this.#followScheduled) {
          this.#followScheduled = true;
          void platform.sleep(0).then(() => {
            this.#followScheduled = false;
            if (this.#closed) return;
            try {
              tail.followManifest();
            } catch {
              // a table already replaced again: a later read or roll-over adopts the newer manifest
            }
          });
        }
        this.#compactor.maybeAutoCompact(seg, () => (this.#closed ? Promise.resolve() : this.#compactor.run({ full: false })));
      },
    });
    this.#participant = new Participant({
      platform,
      path: this.path,
      readOnly: o.readOnly,
      tail,
      lock: this.#lock,
      compactLock: this.#compactor.compactLock,
      lockTimeoutMs: o.lockTimeoutMs,
      submit: (state) => this.commit(state),
      ensureOpen: () => this.ensureOpen(),
      isClosed: () => this.#closed,
      openStore: (dir) => openStore(dir, { adapter: platform, lockTimeoutMs: o.lockTimeoutMs }),
    });
    this.#watchHub = new WatchHub({
      log: tail.log,
      logStart: () => ({ seg: tail.firstSegment, off: 0 }),
      checkpointTsn: () => tail.manifest.checkpointTsn ?? 0,
      head: () => ({ pos: tail.visiblePos, tsn: tail.visibleTsn }),
      // The frontier is the one file whose writes tell of a commit (every commit publishes
      // it): watched alone where the platform can, so a commit wakes watchers once or twice
      // (its tail state, then its publication) instead of also for the segment and the lock.
      watchCommits: (onChange) => (platform.watchFile ? platform.watchFile(`${this.path}/${FRONTIER}`, onChange) : platform.watchDir(this.path, onChange)),
      pollMs: o.watchPollMs,
      bufferMax: o.watchBufferMax,
      bufferBytes: o.watchBufferBytes,
      maxWatchers: o.maxWatchers,
    });
    this.#queues = new Queues({
      platform,
      readOnly: o.readOnly,
      limits: () => this.limits,
      ensureOpen: () => this.ensureOpen(),
      refresh: () => {
        tail.refresh();
        return tail.visibleTsn;
      },
      visible: () => tail.visibleTsn,
      head: () => {
        tail.refresh();
        tail.readAhead();
        return tail.index.lastTsn;
      },
      index: () => this.index,
      commit: (state) => this.commit(state),
      ownerId: () => this.#pins.leaseId,
      ownerAlive: (id) => this.#pins.leaseAlive(id),
      subscribe: (onCommit) => this.#watchHub.subscribe(onCommit),
    });
  }

  /** @internal This process's MVCC index (replaced by an empty one at close, to free its memory). */
  private get index(): Index {
    return this.#tail.index;
  }

  // --- opening and recovery ---

  /** @internal Opens the store: creates it if new, recovers a crashed writer's tail. */
  private async init(namespaces: string[]): Promise<void> {
    await this.#initView(namespaces);
    this.#opened = true;
  }

  async #initView(namespaces: string[]): Promise<void> {
    if (this.readOnly) {
      await this.#initReadOnly(namespaces);
      this.#tail.attachMirror();
      return;
    }
    const tail = this.#tail;
    const log = tail.log;
    // Before the lock file is created: never write into a directory that is not a store.
    if (!log.readManifest()) {
      try {
        checkCreatable(this.platform, this.path, log, false);
      } catch (e) {
        // Another process created the store while this looked (its MANIFEST.tmp renamed
        // between the listing and the read, its MANIFEST or leases/ appearing): a store now,
        // which the checks under the lock below verify. Otherwise the refusal stands.
        if (!log.readManifest()) throw e;
      }
    }
    let release = await this.#lock.acquire(true, { timeoutMs: this.#lockTimeoutMs });
    try {
      stampHolder(this.#lock, this.platform);
      let manifest = log.readManifest();
      const existingStore = manifest !== undefined;
      if (!manifest) {
        // A new store, or a crash during a previous creation (nothing was committed then:
        // commits only start after the manifest exists). Anything else is refused.
        checkCreatable(this.platform, this.path, log, true);
        if (!log.segment(1)) log.createSegment(1);
        log.publishFrontier({ tsn: 0, seg: 1, off: 0, durableSeg: 1, durableOff: 0 });
        manifest = { format: FORMAT_VERSION, createdAtMs: this.platform.wallClockMs() };
        log.writeManifest(manifest);
      }
      checkFormat(this.path, manifest.format);
      checkManifestFiles(this.platform, this.path, log, manifest);
      if (existingStore) this.#refuseMissingFrontierUnderOthers();
      if (manifest.format === FORMAT_CHECKPOINT) {
        // A store of the previous format: upgraded in place, alone (upgrade.ts).
        manifest = changeFormatLocked(this.platform, this.path, log, manifest, this.#compactor.compactLock, FORMAT_VERSION).manifest;
      }
      tail.loadManifest(manifest);
      this.#compactor.removeLeftoversLocked();
      this.#pins.startLease({ existingStore });
      tail.catchUpLocked(true);
      for (let attempt = 1; ; attempt++) {
        const missing = namespaces.filter((n, i) => namespaces.indexOf(n) === i && this.index.resolve(n, this.index.lastTsn) === undefined);
        if (missing.length === 0) break;
        const state = newTxState(tail.visibleTsn, "serializable", true);
        state.namespaceOps = missing.map((name) => ({ op: "create", name }));
        let batch: ReturnType<GroupCommitter["commitBatchLocked"]>;
        try {
          batch = this.#committer.commitBatchLocked([state]);
        } catch (e) {
          // The lock file was deleted under this open (nothing was written): again, under
          // the lock on the file the path names now, as the committer does.
          if (!isWriterLockLost(e) || attempt >= OPEN_LOCK_LOST_RETRIES_MAX) throw e;
          release();
          release = await this.#lock.acquire(true, { timeoutMs: this.#lockTimeoutMs });
          stampHolder(this.#lock, this.platform);
          tail.catchUpLocked();
          continue;
        }
        const { results: [result], appended } = batch;
        if (result instanceof Error) throw result;
        if (appended) await tail.makeDurable(appended);
        break;
      }
    } finally {
      release();
    }
    tail.attachMirror();
    // In-doubt transactions of two-phase commit are resolved at open and while open.
    if (this.index.prepared.size > 0) await this.#participant.resolveDue().catch(() => {});
    if (tail.manifest.format >= FORMAT_TWO_PHASE || this.index.prepared.size > 0) this.#participant.wake();
  }

  /**
   * A writable open (the writer lock held) that finds the frontier file missing creates it
   * and rebuilds it from the log: right when nobody has the store open. With other processes
   * alive, it was deleted under them (by hand, a tmp cleaner): they go on publishing into the
   * deleted file, and this process would publish into a new one, so neither would see the
   * other's commits (a commit resolved in one, and reads in the other missed it). Refused
   * before the file is created; the processes already open go on among themselves.
   */
  #refuseMissingFrontierUnderOthers(): void {
    const file = `${this.path}/${FRONTIER}`;
    if (this.platform.lstat(file) !== undefined || !this.#pins.othersMayBeAlive()) return;
    throw new TxtDbError("CORRUPTION", `Cannot open "${this.path}": its frontier file "${file}" is missing while other processes have the store open: those that opened before it was deleted go on using the deleted file, and this open could not see their commits, nor they its. Nothing was written. Close every process using the store (see \`txtdb doctor\`), then open it again: a writable open rebuilds the file from the log`, {
      details: { file, offset: 0, path: this.path },
    });
  }

  /**
   * A read-only open takes no writer lock, so a compaction in another process may switch
   * the manifest and delete the checkpoint or segments it just named while this process
   * reads them. The lease goes first (its pin, 0 until the first read, holds back every
   * later compaction); an open that fails while the manifest moved is started again.
   */
  async #initReadOnly(namespaces: string[]): Promise<void> {
    const tail = this.#tail;
    for (let attempt = 1; ; attempt++) {
      const manifest = tail.log.readManifest();
      if (!manifest) {
        // A store whose manifest is lost is damaged, as a writable open says, not absent.
        checkManifestLost(this.platform, this.path, tail.log);
        throw invalidArg(`No txtdb store at "${this.path}" (no MANIFEST); open it once without readOnly to create it`);
      }
      checkFormat(this.path, manifest.format);
      try {
        if (!this.#pins.leased) this.#pins.startLease();
        checkManifestFiles(this.platform, this.path, tail.log, manifest);
        tail.resetView();
        tail.loadManifest(manifest);
        // The log ending before the frontier can be a power loss in "relaxed" (rule 11 of
        // tail.ts): with nobody alive, the log's end is what the next writable open shows.
        let refreshFailure: TxtDbError | undefined;
        try {
          tail.refresh();
        } catch (e) {
          if (!(e instanceof TxtDbError && e.code === "CORRUPTION")) throw e;
          refreshFailure = e;
        }
        // Rule 11 of tail.ts: a dead writer's records past the frontier (a power loss).
        const pins = this.#pins;
        const adopted = await tail.adoptDeadWritersRecords(this.#lock, () => pins.othersMayBeAlive(), refreshFailure !== undefined);
        if (!adopted && refreshFailure) {
          try {
            tail.refresh(); // a writable open may have put the frontier back meanwhile
          } catch (e) {
            // Only where the frontier says it was published ahead of the durable end ("relaxed").
            const fr = tail.log.readFrontier();
            if (!(e instanceof TxtDbError && e.code === "CORRUPTION" && fr && comparePositions({ seg: fr.durableSeg, off: fr.durableOff }, fr) < 0)) throw e;
            throw new TxtDbError("CORRUPTION", `${e.message}. After a power loss of a store written with durability "relaxed" this is expected, not damage: the next writable open() puts the frontier back, and a read-only open does so for itself when no other process has the store open`, { cause: e, ...(e.details ? { details: e.details } : {}) });
          }
        }
        const head = adopted ? undefined : tail.log.readHead();
        if (head && head.frontier === undefined && head.tail.failedPid !== 0) {
          // Written over while a sync failure is marked: a writable open refuses it too (it
          // cannot tell where to cut), and this open would show the store as empty. (Without
          // a mark, a frontier a power loss tore is read past as rule 11 says.)
          const file = `${this.path}/${FRONTIER}`;
          throw new TxtDbError("CORRUPTION", `The frontier in "${file}" (bytes 0 to 35) is unreadable while a failed sync of the log is marked, so this read-only open cannot tell how far the log is durable, and would show the store as empty. Nothing was written. Open the store writable, with every other process of it closed: its error says what to do`, { details: { file, offset: 0, path: this.path } });
        }
        if (!adopted && !this.platform.stat(`${this.path}/${FRONTIER}`)) {
          // Deleted by hand: with a writer alive, it goes on publishing into the deleted file,
          // and this open would show an empty store. A writable open creates it again.
          throw new TxtDbError("IO", `The frontier file of "${this.path}" is missing, so this read-only open cannot tell how far the log is durable (another process may be writing). Close every process using the store (they go on with the deleted file), then open it once without readOnly, which rebuilds the file from the log`, { details: { path: `${this.path}/${FRONTIER}` } });
        }
        break;
      } catch (e) {
        if (attempt >= OPEN_ATTEMPTS_MAX || !tail.manifestMovedFrom(manifest)) throw e;
        await this.platform.sleep(attempt);
      }
    }
    if (namespaces.some((n) => this.index.resolve(n, tail.visibleTsn) === undefined)) {
      throw new TxtDbError("READ_ONLY", `Cannot create namespaces ${JSON.stringify(namespaces)} on a store opened with readOnly: true`);
    }
  }

  /**
   * @internal Registers a pinned read version. Returns the release, `touch` to call on
   * each use and `hold` for work under way on it (a commit); `expire` is called if it stays
   * unused past maxIdleMs.
   */
  private pin(version: number, kind: string, expire: (idleMs: number) => void = () => {}): PinHandle {
    return this.#pins.pin(version, kind, expire);
  }

  // --- commit ---

  /** @internal Queues a transaction for the next group commit; resolves with its TSN. */
  private commit(state: TxState): Promise<number> {
    this.ensureOpen();
    if (this.readOnly) return Promise.reject(new TxtDbError("READ_ONLY", "Cannot write: the database was opened with readOnly: true"));
    // A transaction that enqueues needs the queues' namespace (created once per store, by
    // a commit of its own that other enqueues may be waiting for too).
    if (state.atHead && !this.#queues.namespaceReady()) {
      const awaiting: AwaitingNamespace = { takenBack: false, error: undefined };
      this.#awaitingNamespace.set(state, awaiting);
      const submitted = this.#queues.ensureNamespace()
        .finally(() => this.#awaitingNamespace.delete(state))
        .then(() => {
          if (awaiting.takenBack) throw awaiting.error;
          return this.#committer.submit(state);
        });
      return this.#queues.track(submitted);
    }
    return this.#committer.submit(state);
  }

  /** Commits waiting for the queues' namespace before they are submitted (see commit()). */
  readonly #awaitingNamespace = new Map<TxState, AwaitingNamespace>();

  /**
   * Takes the commit of `state` back, rejecting it with `error`, while it waits in this
   * process's queue or for the queues' namespace: it is then never written (true also when
   * it was taken back already). False once a group commit has it (its outcome is on its
   * way).
   */
  #takeBack(state: TxState, error: unknown): boolean {
    const awaiting = this.#awaitingNamespace.get(state);
    if (awaiting) {
      if (!awaiting.takenBack) {
        awaiting.takenBack = true;
        awaiting.error = error;
      }
      return true;
    }
    return this.#committer.takeBackState(state, error);
  }

  // --- lifecycle ---

  /** @internal Throws CLOSED after close(). */
  private ensureOpen(): void {
    if (this.#closed) throw new TxtDbError("CLOSED", `Database "${this.path}" is closed; open it again`);
  }

  /** Waits for queued commits, syncs, releases files and locks. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    // Listeners first: they stop claiming, and commit their running handlers' outcomes.
    await this.#queues.close();
    if (this.#closed) return;
    while (this.#committer.running || this.#compactor.autoCompacting || this.#queues.unsettled) {
      await this.#committer.committing;
      await this.#compactor.autoCompacting?.catch(() => {});
      await this.#queues.settled();
    }
    this.#closed = true;
    this.#participant.stop();
    await this.#participant.idle();
    this.#locks.close();
    this.#pins.stop();
    this.#watchHub.closeAll();
    this.#tail.stop();
    this.#lock.close();
    this.#compactor.close();
    // Frees the index's memory now (see Tail.close).
    this.#tail.close();
    this.#cachedReader = undefined;
    this.#pins.close();
  }

  /**
   * The engine side of this database, for transactions, snapshots, lists, open()
   * and txtdb's own tools: kept out of the public type (see {@link databaseInternals}).
   */
  readonly #internals: DatabaseInternals = ((db: LocalDatabase): DatabaseInternals => ({
    get platform() { return db.platform; },
    get limits() { return db.limits; },
    get index() { return db.index; },
    get readOnly() { return db.readOnly; },
    init: (namespaces) => db.init(namespaces),
    queueNames: () => db.#queues.names(),
    get sagaNamespaces() { return db.#sagaNamespaces; },
    countNow: (ns, prefix) => {
      db.ensureOpen();
      db.#tail.refresh();
      return db.#countAt(ns, prefix, db.#tail.visibleTsn);
    },
    prepare: (state, txid, options) => db.#participant.prepare(state, txid, options),
    get participant() { return db.#participant; },
    get leaseFile() { return db.#pins.leaseFile; },
    get fileMode() { return db.#fileMode; },
    pin: (version, kind, expire) => db.pin(version, kind, expire),
    commit: (state) => db.commit(state),
    takeBack: (state, error) => db.#takeBack(state, error),
    enqueue: (state, queue, value, options) => db.#queues.enqueueInTransaction(state, queue, value, options),
    ensureOpen: () => db.ensureOpen(),
  }))(this);

  static {
    newDatabase = (path, platform, options, openStore) => new LocalDatabase(path, platform, options, openStore);
    localInternals = (db) => db.#internals;
  }

  // --- reads on db ---

  #cachedReader: DbReader | undefined;
  #cachedReaderTsn = -1;

  /** A reader at the newest committed version (one object per version, reused). */
  #reader(): DbReader {
    this.ensureOpen();
    this.#counters.reads++;
    this.#tail.refresh();
    if (this.#cachedReaderTsn !== this.#tail.visibleTsn || !this.#cachedReader) {
      this.#cachedReader = new DbReader(this.#internals, this.#tail.visibleTsn);
      this.#cachedReaderTsn = this.#tail.visibleTsn;
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

  count(ns: string, sel: ListSelector): Promise<number> {
    try {
      return this.#reader().count(ns, sel);
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

  #blindWrite(ns: string, key: Key, value: unknown, isDelete: boolean, options?: SetOptions): Promise<{ version: bigint }> {
    try {
      this.ensureOpen();
      if (this.readOnly) throw new TxtDbError("READ_ONLY", "Cannot write: the database was opened with readOnly: true");
      const expiresAtMs = isDelete ? undefined : expiryFromOptions(options, this.#tail.platform.wallClockMs(), "set()");
      checkNamespaceName(ns);
      const k = encodeKey(key, this.limits.maxKeyBytes);
      const encoded = isDelete ? undefined : encodeValue(value, this.limits.maxValueBytes);
      const v = encoded === undefined || expiresAtMs === undefined ? encoded : wrapExpiring(encoded, expiresAtMs);
      // A blind write reads nothing: its snapshot only has to show the namespace, and the
      // commit checks that it still exists at the head. So the freshness probe (a read of
      // the frontier file) is made only when the namespace is not seen yet (another process
      // may have just created it); the group commit probes before taking the lock anyway.
      if (this.index.resolve(ns, this.#tail.visibleTsn) === undefined) {
        this.#tail.refresh();
        if (this.index.resolve(ns, this.#tail.visibleTsn) === undefined) {
          throw new TxtDbError("NAMESPACE_NOT_FOUND", `Namespace "${ns}" does not exist; create it with createNamespace("${ns}") or the namespaces open option`, { details: { ns } });
        }
      }
      const state = newTxState(this.#tail.visibleTsn, this.#isolation, true);
      state.touched.add(ns);
      state.writes.set(ns, new Map([[k, v === undefined ? { kind: "delete" as const } : { kind: "set" as const, value: v }]]));
      state.writeCount = 1;
      state.bytes = k.length + (v?.length ?? 0); // what the commit checks a record's size by first
      // A set is a transaction of one write: maxTxBytes holds for it as for tx.set.
      checkTxBytes(state.bytes, this.limits.maxTxBytes);
      return this.commit(state).then((tsn) => ({ version: BigInt(tsn) }));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  set(ns: string, key: Key, value: unknown, options?: SetOptions): Promise<{ version: bigint }> {
    return this.#blindWrite(ns, key, value, false, options);
  }

  /** Deletes one key in its own transaction. */
  delete(ns: string, key: Key): Promise<{ version: bigint }> {
    return this.#blindWrite(ns, key, undefined, true);
  }

  /** Begins a transaction reading the newest committed state. */
  begin(options: { isolation?: Isolation } = {}): Promise<Transaction> {
    try {
      return Promise.resolve(this.#newTransaction(this.#internals, checkBeginOptions(options) ?? this.#isolation));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * A transaction on `host` reading the newest committed state (begin() and transaction()
   * attempts); `isolation` was checked by the caller (checkBeginOptions, checkTransactionOptions).
   */
  #newTransaction(host: DatabaseInternals, isolation: Isolation): Transaction {
    this.ensureOpen();
    this.#tail.refresh();
    return newTransaction(host, this.#tail.visibleTsn, isolation);
  }

  async transaction<T>(fn: (tx: Transaction) => Promise<T> | T, options: TransactionOptions = {}): Promise<T> {
    const { isolation, maxRetries, timeoutMs, signal } = checkTransactionOptions(fn, options);
    const deadline = timeoutMs !== undefined ? this.platform.monotonicMs() + timeoutMs : undefined;
    const timeoutError = (cause?: unknown) =>
      new TxtDbError("TIMEOUT", signalAborted(signal) ? "Transaction was aborted by its signal" : `Transaction did not finish within ${timeoutMs} ms (timeoutMs)`, { cause });
    // After a first CONFLICT this transaction queues for its turn on the key it lost, and
    // keeps the turn through its reruns (see retryturns.ts).
    let leaveTurn: LeaveTurn | undefined;
    try {
      for (let attempt = 0; ; attempt++) {
        if (signalAborted(signal)) throw timeoutError(abortReason(signal));
        if (deadline !== undefined && this.platform.monotonicMs() >= deadline) throw timeoutError();
        const { tx, own } = this.#beginAttempt(isolation ?? this.#isolation);
        try {
          const result = await raceDeadline(Promise.resolve().then(() => fn(tx)), this.#delayTo(deadline), signal, (cause) => {
            // A function that called tx.commit() itself: its commit is taken back while it
            // waits in the queue; once a group commit has it, its outcome is on its way, and
            // a TIMEOUT now would be a lie about a commit that may happen (it used to be one).
            const error = timeoutError(cause);
            if (own.state === undefined) return { error };
            return this.#takeBack(own.state, error) ? { error } : undefined;
          });
          // The commit fn started, or the one started now (its submit is recorded in `own`).
          const committing = own.committing ?? (tx.finished ? undefined : tx.commit());
          if (committing !== undefined) await this.#awaitCommit(committing, own.state, deadline, signal, timeoutError);
          return result;
        } catch (e) {
          // Rolled back means rolled back: a commit fn started and did not await is taken
          // back while still queued (it used to be written after transaction() had rejected,
          // and after a retry on CONFLICT, written twice).
          const takenBack = own.state !== undefined && this.#takeBack(own.state, e);
          tx.rollback();
          // A commit that was past taking back may have been written: fn failed after its
          // own commit (one it started with tx.commit()), which then stands. Its outcome is
          // awaited, and if it was written fn is never run again, whatever it threw (a rerun
          // on CONFLICT applied such a transaction twice); the caller sees fn's error.
          if (own.written !== undefined && !takenBack && (await own.written)) throw e;
          if (!isTxtDbError(e, "CONFLICT") || attempt >= maxRetries) throw e;
          this.#counters.retries++;
          if (leaveTurn) {
            // Lost again while holding the turn: another process wrote the key. Back off.
            const capMs = Math.min(100, 2 ** attempt);
            await this.platform.sleep(randomFraction(this.platform) * capMs);
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

  /**
   * Begins one attempt of {@link transaction}: a transaction whose commit, if its function
   * calls `tx.commit()` itself, is remembered in `own`, so that the deadline can take it
   * back while it is queued and the attempt waits for its outcome once it is not.
   */
  #beginAttempt(isolation: Isolation): { tx: Transaction; own: OwnCommit } {
    const own: OwnCommit = {};
    const host: DatabaseInternals = Object.create(this.#internals, {
      commit: {
        value: (state: TxState) => {
          const result = this.commit(state);
          own.state = state;
          own.committing = result;
          own.written = result.then(() => true, () => false);
          return result;
        },
      },
    });
    return { tx: this.#newTransaction(host, isolation), own };
  }

  /**
   * Waits for the outcome of a transaction's commit, ending with TIMEOUT at the deadline or
   * on abort only while the commit can still be taken back: while it waits in this
   * process's queue (before the writer lock is held), it is removed and never written. Once
   * its group commit has the lock, the outcome is on its way to the disk: the caller waits
   * for it and learns it (committed, or the error that stopped it), never a TIMEOUT for a
   * commit that happened.
   */
  #awaitCommit(committing: Promise<unknown>, state: TxState | undefined, deadline: number | undefined, signal: AbortSignal | undefined, timeoutError: (cause?: unknown) => TxtDbError): Promise<unknown> {
    if (!state) return committing; // read-only: resolved already
    return raceDeadline(committing, this.#delayTo(deadline), signal, (cause) => {
      const error = timeoutError(cause);
      // In a group commit already: wait for its outcome. Otherwise tx.commit() settles
      // (rolled back); nothing was written.
      return this.#takeBack(state, error) ? { error } : undefined;
    });
  }

  /** A read-only view pinned at the newest committed version; release it when done. */
  snapshot(): Promise<Snapshot> {
    try {
      this.ensureOpen();
      this.#tail.refresh();
      const v = this.#tail.visibleTsn;
      let snap: Snapshot | undefined;
      const { release, touch } = this.pin(v, "snapshot", (idleMs) => snap && expireSnapshot(snap, idleMs, this.#pins.maxIdleMs));
      snap = newSnapshot(this.#internals, v, release, touch);
      return Promise.resolve(snap);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // --- watching ---

  watch<T = unknown>(ns: string, selector: { keys: Key[] } | { prefix: Key | readonly never[] }, options: { fromVersion?: bigint; signal?: AbortSignal } = {}): AsyncIterableIterator<WatchEvent<T>> {
    this.ensureOpen();
    const { sel, opts } = checkWatchArguments(selector, options);
    if (typeof ns === "string") checkNotReserved(ns);
    this.#tail.refresh();
    const head = this.#tail.visibleTsn;
    if (opts.fromVersion !== undefined && opts.fromVersion > BigInt(head)) throw fromVersionAhead(opts.fromVersion, BigInt(head));
    let from = opts.fromVersion === undefined ? undefined : Number(opts.fromVersion);
    // Which namespace: the one the name denoted at fromVersion, if it denoted one then
    // (watch.ts rule 2): resuming a watcher, or following a rename with the version
    // NAMESPACE_NOT_FOUND gave, goes on with the namespace it followed, even if the name
    // was dropped or taken by another since. Else the first one the name came to denote
    // after fromVersion, from the commit that gave it that name on (what the namespace had
    // before, under another name, was not written to this name, as the etcd engine does);
    // if that one was dropped since, the watcher ends at its drop, and resuming from there
    // goes on to the next: no incarnation of the name is skipped. Without fromVersion, the
    // one it denotes now. History folded away is WATCH_OVERFLOW (the hub's check), never
    // skipped: bindings before the checkpoint are not known here, and a fromVersion below
    // it used to be raised to the name's newest binding, skipping the folded commits.
    const replay = from !== undefined && from < head && from >= (this.#tail.manifest.checkpointTsn ?? 0) ? from : undefined;
    let nsId = replay !== undefined ? this.index.resolve(ns, replay) : undefined;
    let boundTsn = nsId !== undefined ? replay! : head;
    if (nsId === undefined && replay !== undefined) {
      const next = this.index.firstBoundAfter(ns, replay);
      if (next !== undefined) {
        nsId = next.id;
        from = boundTsn = next.tsn;
      }
    }
    if (nsId === undefined) nsId = this.index.resolve(ns, head);
    if (nsId === undefined) throw new TxtDbError("NAMESPACE_NOT_FOUND", `Cannot watch namespace "${ns}": it does not exist`, { details: { ns } });
    let it: AsyncIterableIterator<WatchEvent<T>>;
    if ("keys" in sel) {
      it = this.#watchHub.watch({ nsId, ns, boundTsn, keys: new Set(sel.keys.map((k) => encodeKey(k, this.limits.maxKeyBytes))) }, from, opts.signal);
    } else {
      const [start, end] = prefixRange(sel.prefix, this.limits.maxKeyBytes);
      it = this.#watchHub.watch({ nsId, ns, boundTsn, start, end }, from, opts.signal);
    }
    // A watcher replaying history pins it for every process's compactions now, not at the
    // next commit this process sees: until then another process could fold what it is
    // about to read (it would end with WATCH_OVERFLOW). If the pin cannot be written, the
    // watcher ends here, before it starts.
    if (from !== undefined) {
      try {
        this.#pins.publish(true);
      } catch (e) {
        void it.return?.();
        throw ioError(e, `Pinning version ${from} for a watcher of "${ns}" (writing this process's lease)`);
      }
    }
    return it;
  }

  // --- namespaces ---

  #namespaceOp(op: NamespaceRequest): Promise<void> {
    try {
      this.ensureOpen();
      if (this.readOnly) throw new TxtDbError("READ_ONLY", `Cannot ${op.op} namespace "${op.name}": the database was opened with readOnly: true`);
      checkNamespaceName(op.name);
      if (op.op === "rename") checkNamespaceName(op.to);
      this.#tail.refresh();
      const state = newTxState(this.#tail.visibleTsn, "serializable", true);
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
      this.#tail.refresh();
      return Promise.resolve(this.index.namespaces(this.#tail.visibleTsn).filter((n) => !isReservedNamespace(n)));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // --- compaction ---

  async compact(): Promise<CompactResult> {
    this.ensureOpen();
    if (this.readOnly) throw new TxtDbError("READ_ONLY", "Cannot compact: the database was opened with readOnly: true");
    return this.#compactor.run({ full: true });
  }

  async backup(dest: string): Promise<BackupResult> {
    this.ensureOpen();
    const log = this.#tail.log;
    return backupStore({
      platform: this.platform,
      dir: this.path,
      log,
      compactLock: this.#compactor.compactLock,
      lockTimeoutMs: this.#lockTimeoutMs,
      viewOver: (fr) => this.#tail.viewOver(fr),
      fileMode: log.mode,
      dirMode: dirModeOf(log.mode),
    }, dest);
  }

  /**
   * Verifies every record's checksum, the manifest, the checkpoint and the index; changes
   * nothing. A compaction in another process may switch the manifest and delete the files
   * the check was reading (a table gone, versions missing from the log): a check that found
   * problems while the manifest moved under it runs again, its last attempt holding
   * `compact.lock` shared (compactions hold it exclusively), so a healthy store is never
   * reported damaged. A healthy check takes no lock, and a read-only handle never creates
   * or writes the lock file (another user's store): where it cannot take it, it runs the
   * check again, unlocked, until the manifest holds still.
   */
  async check(): Promise<CheckReport> {
    this.ensureOpen();
    const log = this.#tail.log;
    const run = () => {
      this.ensureOpen();
      this.#tail.refresh();
      return checkStore(this.platform, this.path, log, this.index, this.#tail.visibleTsn, (fr) => this.#tail.viewOver(fr));
    };
    try {
      const first = checkWhileManifestMoves(log, CHECK_ATTEMPTS_MAX - 1, run);
      if (first.still) return first.report;
      // Shared: compactions take it exclusively, and checks do not exclude each other. A
      // read-only handle opens it read-only (flock needs no write access), creating and
      // writing nothing; where it cannot open it (none yet, another user's store), the check
      // is run again unlocked until the manifest holds still.
      const lock = this.readOnly ? new FileLock(this.platform, `${this.path}/${COMPACT_LOCK}`, log.mode, { readOnly: true }) : this.#compactor.compactLock;
      let release: (() => void) | undefined;
      try {
        release = await lock.acquire(false, { timeoutMs: this.#lockTimeoutMs });
      } catch (e) {
        if (!this.readOnly) throw e;
      }
      try {
        return release ? run() : checkWhileManifestMoves(log, CHECK_UNLOCKED_ATTEMPTS_MAX, run).report;
      } finally {
        release?.();
        if (lock !== this.#compactor.compactLock) lock.close();
      }
    } catch (e) {
      // A read that failed (EIO) says nothing of the store's state: IO, not a problem found.
      throw ioError(e, `Checking the store "${this.path}"`);
    }
  }

  /** Live processes sharing this store, with their pins (for diagnostics and `txtdb doctor`). */
  processes(): { pid: number; runtime: string; pinnedVersion: bigint | undefined; pinAgeMs: number | undefined; self: boolean }[] {
    this.ensureOpen();
    const { live } = this.#pins.scanLeases(this.#tail.manifest.checkpointTsn ?? 0);
    const now = this.platform.wallClockMs();
    const me = { pid: this.platform.pid, runtime: this.platform.runtime, pinnedVersion: BigInt(this.#pins.localPin()), pinAgeMs: this.#pins.localPinAgeMs(), self: true };
    return [
      me,
      ...live.map((l) => ({
        pid: l.pid,
        runtime: l.runtime,
        pinnedVersion: l.pin === undefined ? undefined : BigInt(l.pin),
        // Wall clocks: one set back since the pin was taken must not give a negative age.
        pinAgeMs: l.pinSinceWallMs === undefined ? undefined : Math.max(0, Math.round(now - l.pinSinceWallMs)),
        self: false,
      })),
    ];
  }

  // --- queues ---

  enqueue(queue: string, value: unknown, options?: EnqueueOptions): Promise<EnqueueResult> {
    try {
      this.ensureOpen();
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#queues.enqueue(queue, value, options);
  }

  listenQueue<T = unknown>(queue: string, handler: QueueHandler<T>, options?: ListenOptions): Promise<void> {
    try {
      this.ensureOpen();
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#queues.listen(queue, handler, options);
  }

  queueStats(queue: string): QueueStats {
    return this.#queues.stats(queue);
  }

  deadLetters<T = unknown>(queue: string): AsyncIterableIterator<DeadLetter<T>> {
    return this.#queues.deadLetters<T>(queue);
  }

  retryDead(queue: string, id?: string): Promise<number> {
    try {
      this.ensureOpen();
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#queues.retryDead(queue, id);
  }

  // --- two-phase commit (participant side: participant.ts, prepared.ts) ---

  commitPrepared(txid: string): Promise<{ version: bigint }> {
    try {
      return this.#participant.commitPrepared(txid);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  abortPrepared(txid: string): Promise<void> {
    try {
      return this.#participant.abortPrepared(txid);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  listPrepared(): Promise<PreparedInfo[]> {
    try {
      return Promise.resolve(this.#participant.list());
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // --- locks on named resources ---

  lock(resource: ResourceKey, mode: LockMode, options?: LockOptions): Promise<ResourceLock> {
    try {
      this.ensureOpen();
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#locks.lock(resource, mode, options);
  }

  /** Every live process's grants and waits on named resources, intention locks included. */
  locks(): LockInfo[] {
    this.ensureOpen();
    return this.#locks.list();
  }

  // --- observability ---

  metrics(): string {
    return renderMetrics(this.stats(), this.#meters, { store: this.path, runtime: this.platform.runtime });
  }

  /** Counters and figures of this process's view of the store. */
  stats(): Stats {
    this.ensureOpen();
    const sagas = this.#sagaCounts(); // first: it may bring the view up to date
    const tail = this.#tail;
    const logBytes = tail.segmentBytesOnDisk();
    const checkpointBytes = tail.checkpointBytes();
    const { liveLeases, unreadable: unreadableLeases } = this.#pins.leaseCensus();
    const cache = tail.levels.cache.stats();
    const compactor = this.#compactor;
    const folded = compactor.logBytesFolded;
    return {
      durability: this.#durability,
      commitLatencyUs: this.#meters.commitLatencyUs.summary(),
      lockWaitUs: this.#meters.lockWaitUs.summary(),
      fsyncUs: this.#meters.fsyncUs.summary(),
      batchSize: this.#meters.batchSizes.summary(),
      checkpointBytes,
      format: tail.manifest.format,
      tableBytesByLevel: tail.levels.bytesByLevel(),
      tables: tail.levels.tables().length,
      cacheHits: cache.hits,
      cacheMisses: cache.misses,
      cacheBytes: cache.bytes,
      cacheBytesMax: cache.maxBytes,
      tableIndexBytes: tail.levels.residentBytes(),
      compactedLogBytes: folded,
      compactedTableBytes: compactor.tableBytesWritten,
      writeAmplification: folded > 0 ? (folded + compactor.tableBytesWritten) / folded : 0,
      liveLeases,
      unreadableLeases,
      frontierMirror: tail.log.mirrored,
      keysInMemory: this.index.keyCountAll(),
      runtime: this.platform.runtime,
      path: this.path,
      version: BigInt(tail.visibleTsn),
      ...this.#counters,
      namespaces: this.index.namespaces(tail.visibleTsn).filter((n) => !isReservedNamespace(n)).length,
      versionsHeld: this.index.versionCount,
      logBytes,
      openSnapshots: this.#pins.count("snapshot"),
      openTransactions: this.#pins.count("transaction"),
      oldestPinVersion: BigInt(this.#pins.localPin()),
      oldestPinAgeMs: this.#pins.oldestAgeMs(),
      checkpointVersion: BigInt(tail.manifest.checkpointTsn ?? 0),
      firstSegment: tail.firstSegment,
      compactions: this.#compactor.compactions,
      watchers: this.#watchHub.count,
      ...this.#locks.stats(),
      ...this.#participant.stats(),
      resourceLockWaitUs: this.#meters.resourceLockWaitUs.summary(),
      sagas,
    };
  }

  /**
   * Sagas by status in the namespaces of the open Sagas handles, at the newest committed
   * state: one count of the `["status", status]` index per status (sagastate.ts), which
   * reads no saga record.
   */
  #sagaCounts(): Stats["sagas"] {
    const counts = Object.fromEntries(SAGA_STATUSES.map((s) => [s, 0])) as Stats["sagas"];
    if (this.#sagaNamespaces.size === 0) return counts;
    this.#tail.refresh();
    const snap = this.#tail.visibleTsn;
    for (const ns of this.#sagaNamespaces.keys()) {
      for (const status of SAGA_STATUSES) counts[status] += this.#countAt(ns, statusPrefix(status), snap);
    }
    return counts;
  }

  /** Live keys under `prefix` in `ns` at `snap`; 0 if `ns` does not exist there (dropped or renamed). */
  #countAt(ns: string, prefix: Key, snap: number): number {
    const id = this.index.resolve(ns, snap);
    if (id === undefined) return 0;
    const [start, end] = prefixRange(prefix);
    return this.index.count(id, start, end, snap);
  }
}

/**
 * A relative store path made absolute against the working directory, once, at open: every
 * file of the store is opened by path while it is open (segments, tables, locks, leases), and
 * after a `process.chdir()` a relative path names another directory; commits then failed
 * with IO ENOENT. Repeated "/" and "." segments go (`db.path` of "./x//./y" is ".../x/y"),
 * ".." stays: after a symlink it is the kernel's to resolve. As given where the platform
 * cannot tell its working directory.
 */
function againstWorkingDirectory(platform: Platform, path: string): string {
  if (!path.startsWith("/")) {
    const cwd = workingDirectory(platform);
    if (cwd === undefined) return path;
    path = `${cwd}/${path}`;
  }
  const parts = path.split("/").filter((part) => part !== "" && part !== ".");
  return `/${parts.join("/")}`;
}

/** Opens (creating if needed) the store in directory `path`: {@link open} of a path. */
export async function openLocal(path: string, options: OpenOptions, openStore: OpenStore): Promise<LocalDatabase> {
  for (const name of ETCD_ONLY_OPTIONS) {
    if (options[name] !== undefined) throw invalidArg(`Option ${name} applies to etcd:// locations only; "${path}" is a directory: leave it out`);
  }
  const platform = options.adapter ?? (await defaultPlatform());
  path = againstWorkingDirectory(platform, path);
  try {
    checkStoreDirectory(platform, path, { allowForeignOwner: options.allowForeignOwner === true });
  } catch (e) {
    throw ioError(e, `Checking the store directory "${path}"`);
  }
  // An existing store keeps its mode (its MANIFEST's) whatever `mode` this open passes:
  // files made by a process that opened it without one must stay readable to the group the
  // store was created for (log.ts, Log.mode).
  let manifest: FileInfo | undefined;
  try {
    manifest = platform.lstat(`${path}/${MANIFEST}`);
  } catch {
    manifest = undefined; // unreadable: the open below says why
  }
  if (manifest?.isFile) options = { ...options, mode: storeMode(manifest.mode) };
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
  const db = newDatabase(path, platform, options, openStore);
  try {
    await localInternals(db).init(options.namespaces ?? []);
  } catch (e) {
    await db.close().catch(() => {});
    throw ioError(e, `Opening "${path}"`);
  }
  return db;
}

/** Runs of `check()` while compactions keep switching the manifest under it; the last in `compact.lock`. */
const CHECK_ATTEMPTS_MAX = 3;
/** More runs, unlocked, for a read-only handle that cannot take `compact.lock`. */
const CHECK_UNLOCKED_ATTEMPTS_MAX = 10;
