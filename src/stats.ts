/**
 * What one open database counts and measures: the counters and histograms every part
 * records into, the shape of `stats()`, and its Prometheus rendering for `metrics()`.
 * Memory is constant: histograms are fixed-size, and nothing keeps per-operation history.
 *
 * @module
 */
import type { Durability } from "./options.ts";
import { Histogram, metricMakers, renderPrometheus } from "./metrics.ts";
import type { LockStats } from "./locks.ts";
import type { TwoPhaseStats } from "./prepared.ts";
import type { SagaStatus } from "./sagadefs.ts";

/** A latency or size distribution in stats(): percentiles from a fixed-size histogram. */
export interface Distribution {
  /** Samples recorded since the database was opened. */
  count: number;
  /** Median. */
  p50: number;
  /** 90th percentile. */
  p90: number;
  /** 99th percentile. */
  p99: number;
  /** Largest sample. */
  max: number;
}

/** Counters and figures of one open database (a plain object). */
export interface Stats extends LockStats, TwoPhaseStats {
  /** The runtime of this process: "node", "deno" or "bun". */
  runtime: string;
  /** The durability this database was opened with. */
  durability: Durability;
  /** From submit to resolve, in µs. */
  commitLatencyUs: Distribution;
  /** Waits for the writer lock, in µs. */
  lockWaitUs: Distribution;
  /** fdatasync durations, in µs. */
  fsyncUs: Distribution;
  /** Transactions per group commit. */
  batchSize: Distribution;
  /** Bytes of the folded state on disk: the tables (format 2) or the checkpoint (format 1). */
  checkpointBytes: number;
  /** On-disk format of the store (2: sorted tables). */
  format: number;
  /** Bytes of table files by level (index = level). */
  tableBytesByLevel: number[];
  /** Tables the manifest this process follows names. */
  tables: number;
  /** Block cache (shared by every table of this process): lookups that found their block. */
  cacheHits: number;
  /** Block cache lookups that read the block from its file. */
  cacheMisses: number;
  /** Bytes the block cache holds now (≤ cacheBytes). */
  cacheBytes: number;
  /** The block cache's bound (the `cacheBytes` option). */
  cacheBytesMax: number;
  /** Bytes the open tables keep in memory outside the cache (Bloom filters and block indexes). */
  tableIndexBytes: number;
  /** Bytes of log this process's compactions folded into tables. */
  compactedLogBytes: number;
  /** Bytes of tables this process's compactions wrote (the fold and the level merges). */
  compactedTableBytes: number;
  /**
   * Write amplification of this process's compactions: (log bytes + table bytes written) ÷
   * log bytes folded; 0 before the first compaction that folded anything.
   */
  writeAmplification: number;
  /** Processes with a live lease on this store (this one included). */
  liveLeases: number;
  /**
   * Lease files this process cannot open (another user's, whose mode does not let this
   * user read it), or `leases/` itself when it cannot be listed, each with why. Their
   * owners cannot be told dead, so they count as alive, and compaction folds nothing past
   * the tables while one is there (the leases directory: while it cannot be listed).
   * `txtdb doctor` reports them as problems. Empty when all is well.
   */
  unreadableLeases: { path: string; reason: string }[];
  /**
   * True when this process probes the frontier in shared memory (the frontier mirror; Node,
   * Bun, Deno with `--allow-ffi`); false when each read on `db` preads the frontier file and
   * each group commit resolves 0.25 ms after it is published while any process reads through
   * the mirror (see `mirrorWaits`).
   */
  frontierMirror: boolean;
  /** Group commits of this process that waited for readers of the frontier mirror (it has none itself). */
  mirrorWaits: number;
  /** Keys held in this process's in-memory table (commits not yet folded into tables). */
  keysInMemory: number;
  /** The store directory. */
  path: string;
  /** The newest committed version this process sees. */
  version: bigint;
  /** Namespaces at that version. */
  namespaces: number;
  /** Versions held in this process's in-memory table. */
  versionsHeld: number;
  /** Bytes of log segments on disk. */
  logBytes: number;
  /** Snapshots this process holds open. */
  openSnapshots: number;
  /** Transactions this process holds open. */
  openTransactions: number;
  /** The oldest version this process still pins (its head when nothing older is pinned). */
  oldestPinVersion: bigint;
  /** How long the oldest open snapshot or transaction has been held, in ms (0: none). */
  oldestPinAgeMs: number;
  /** The version the folded state on disk (tables or checkpoint) holds everything up to. */
  checkpointVersion: bigint;
  /** The number of the oldest log segment still on disk. */
  firstSegment: number;
  /** Compactions this process ran. */
  compactions: number;
  /** Watchers open in this process. */
  watchers: number;
  /** Reads on `db` (get, getEntry, getMany, list) in this process. */
  reads: number;
  /** Transactions this process committed. */
  commits: number;
  /** Commits of this process that failed with CONFLICT. */
  conflicts: number;
  /** Reruns of `db.transaction()` functions after CONFLICT. */
  retries: number;
  /** Group commits this process wrote. */
  batches: number;
  /** The most transactions one group commit of this process held. */
  batchSizeMax: number;
  /** fdatasync calls of this process. */
  fsyncs: number;
  /** Log records this process read (catching up with other processes, recovery). */
  recordsRead: number;
  /** Keys this process's commits wrote. */
  keysWritten: number;
  /** Waits for locks on named resources (`db.lock()`), granted or not, in µs. */
  resourceLockWaitUs: Distribution;
  /**
   * Sagas by status in the namespaces of the `Sagas` handles open on this database in this
   * process (every process's sagas there, at the newest committed state; all zero when no
   * handle is open). `txtdb stats` counts every namespace that holds sagas.
   */
  sagas: Record<SagaStatus, number>;
}


/** The plain counters of {@link Stats}, incremented in place on the hot paths. */
export type Counters = Pick<Stats, "reads" | "commits" | "conflicts" | "retries" | "batches" | "batchSizeMax" | "fsyncs" | "recordsRead" | "keysWritten" | "mirrorWaits">;

/** The counters and histograms of one open database; each part records into its own. */
export class Meters {
  readonly commitLatencyUs: Histogram = new Histogram();
  readonly lockWaitUs: Histogram = new Histogram();
  readonly batchSizes: Histogram = new Histogram();
  readonly fsyncUs: Histogram = new Histogram();
  readonly resourceLockWaitUs: Histogram = new Histogram();
  readonly counters: Counters = { reads: 0, commits: 0, conflicts: 0, retries: 0, batches: 0, batchSizeMax: 0, fsyncs: 0, recordsRead: 0, keysWritten: 0, mirrorWaits: 0 };
}

/** `stats()` in the Prometheus text exposition format, with the histograms of `meters`. */
export function renderMetrics(s: Stats, meters: Meters, labels: { store: string; runtime: string }): string {
  const { counter: c, gauge: g } = metricMakers("txtdb_");
  return renderPrometheus([
    c("commits_total", "Transactions committed by this process.", s.commits),
    c("conflicts_total", "Commits rejected with CONFLICT.", s.conflicts),
    c("retries_total", "Transaction reruns after CONFLICT.", s.retries),
    c("group_commits_total", "Group commits (one lock, one append, one sync each).", s.batches),
    c("fsyncs_total", "fdatasync calls on log segments.", s.fsyncs),
    c("reads_total", "Reads on the database handle.", s.reads),
    c("records_read_total", "Log records applied from other processes and at open.", s.recordsRead),
    c("compactions_total", "Compactions run by this process.", s.compactions),
    c("mirror_waits_total", "Group commits that waited for readers of the frontier mirror (this process has none).", s.mirrorWaits),
    g("frontier_mirror", "1 if this process probes the frontier in shared memory, 0 if it reads the file.", s.frontierMirror ? 1 : 0),
    g("version", "Newest committed version this process has seen.", Number(s.version)),
    g("log_bytes", "Bytes in live log segments.", s.logBytes),
    g("checkpoint_bytes", "Bytes of the folded state (tables, or a format-1 checkpoint).", s.checkpointBytes),
    g("live_leases", "Processes with a live lease on the store.", s.liveLeases),
    g("unreadable_leases", "Lease files (or the leases directory) this process cannot read: compaction folds nothing while there are any.", s.unreadableLeases.length),
    g("keys_in_memory", "Keys in this process's in-memory table (not yet folded).", s.keysInMemory),
    c("cache_hits_total", "Block cache lookups that found their block.", s.cacheHits),
    c("cache_misses_total", "Block cache lookups that read the block from its file.", s.cacheMisses),
    g("cache_bytes", "Bytes held by the block cache.", s.cacheBytes),
    g("cache_bytes_max", "The block cache's bound (cacheBytes).", s.cacheBytesMax),
    g("table_index_bytes", "Bytes of Bloom filters and block indexes of the open tables.", s.tableIndexBytes),
    g("tables", "Tables in the manifest this process follows.", s.tables),
    ...s.tableBytesByLevel.map((bytes, level) => g(`table_bytes_level_${level}`, `Bytes of level-${level} tables.`, bytes)),
    c("compacted_log_bytes_total", "Bytes of log this process's compactions folded.", s.compactedLogBytes),
    c("compacted_table_bytes_total", "Bytes of tables this process's compactions wrote.", s.compactedTableBytes),
    g("write_amplification", "(log + table bytes written) / log bytes folded, this process's compactions.", s.writeAmplification),
    g("versions_in_memory", "Versions in this process's index.", s.versionsHeld),
    g("open_snapshots", "Open snapshots.", s.openSnapshots),
    g("open_transactions", "Open transactions.", s.openTransactions),
    g("oldest_pin_age_seconds", "Age of the oldest open snapshot or transaction.", s.oldestPinAgeMs / 1000),
    g("watchers", "Open watchers.", s.watchers),
    g("resource_locks_held", "Locks on named resources this handle holds.", s.resourceLocksHeld),
    g("resource_locks_waiting", "Requests for locks on named resources waiting now.", s.resourceLocksWaiting),
    c("resource_lock_waits_total", "Lock requests that had to wait.", s.resourceLockWaits),
    c("resource_lock_reentries_total", "Lock requests granted at once because the handle already held the mode.", s.resourceLockReentries),
    c("resource_lock_timeouts_total", "Lock requests that ended with LOCK_TIMEOUT.", s.resourceLockTimeouts),
    c("deadlocks_total", "Lock requests that ended with DEADLOCK.", s.deadlocks),
    g("prepared", "Prepared transactions (two-phase commit) of this store not decided yet.", s.prepared),
    g("prepared_in_doubt", "Of those, the ones past their in-doubt timeout.", s.inDoubt),
    g("oldest_prepared_age_seconds", "Age of the oldest undecided prepared transaction.", s.oldestPreparedAgeMs / 1000),
    c("prepares_total", "Transactions this process prepared.", s.preparesMade),
    c("prepared_committed_total", "Prepared transactions this process committed.", s.preparedCommitted),
    c("prepared_aborted_total", "Prepared transactions this process aborted.", s.preparedAborted),
    c("in_doubt_resolved_total", "In-doubt transactions this process's resolver decided.", s.inDoubtResolved),
    {
      name: "txtdb_sagas",
      help: "Sagas by status in the namespaces of this process's open Sagas handles.",
      type: "gauge",
      samples: Object.entries(s.sagas).map(([status, value]) => ({ labels: { status }, value })),
    },
    { name: "txtdb_resource_lock_wait_seconds", help: "Waits for locks on named resources.", type: "summary", histogram: meters.resourceLockWaitUs, scale: 1e-6 },
    { name: "txtdb_commit_latency_seconds", help: "Commit latency, submit to resolve.", type: "summary", histogram: meters.commitLatencyUs, scale: 1e-6 },
    { name: "txtdb_lock_wait_seconds", help: "Writer-lock waits.", type: "summary", histogram: meters.lockWaitUs, scale: 1e-6 },
    { name: "txtdb_fsync_seconds", help: "fdatasync durations.", type: "summary", histogram: meters.fsyncUs, scale: 1e-6 },
    { name: "txtdb_group_commit_size", help: "Transactions per group commit.", type: "summary", histogram: meters.batchSizes },
  ], labels);
}
