/**
 * The internal interface between the public {@link Database} (db.ts) and a storage engine:
 * the local one (localdb.ts: a directory shared by the processes of one machine) or the
 * etcd one (etcd/database.ts: a cluster shared by processes on several machines).
 *
 * Both take the public arguments (keys, values, selectors, options) and give the public
 * results, with the same checks and errors; what an engine cannot do fails with
 * UNSUPPORTED. Keys (keys.ts), values (codec.ts, expiry.ts), errors (errors.ts), the
 * transaction's bookkeeping (txstate.ts) and option checks (options.ts) are shared.
 *
 * @module
 */
import type { Key } from "./keys.ts";
import type { SetOptions } from "./expiry.ts";
import type { Entry, Isolation, ListOptions, ListSelector, Snapshot, Transaction } from "./tx.ts";
import type { TransactionOptions } from "./options.ts";
import type { WatchEvent } from "./watch.ts";
import type { CompactResult } from "./compact.ts";
import type { BackupResult } from "./backup.ts";
import type { CheckReport } from "./check.ts";
import type { DeadLetter, EnqueueOptions, EnqueueResult, ListenOptions, QueueHandler, QueueStats } from "./queues.ts";
import type { PreparedInfo } from "./prepared.ts";
import type { LockInfo, LockMode, LockOptions, ResourceLock } from "./locks.ts";
import type { Stats } from "./stats.ts";
import type { Platform } from "./port.ts";
import type { Limits } from "./txstate.ts";

/** What `db.processes()` lists. */
export interface ProcessInfo {
  pid: number;
  runtime: string;
  pinnedVersion: bigint | undefined;
  /**
   * How long the process has pinned `pinnedVersion`, in ms (its lease says since when);
   * undefined while it publishes no pin, or when its lease is of a release that does not say.
   */
  pinAgeMs: number | undefined;
  self: boolean;
}

/** A storage engine behind the public Database: every public method, same contract. */
export interface DatabaseEngine {
  readonly path: string;
  readonly readOnly: boolean;
  readonly platform: Platform;
  readonly limits: Limits;
  close(): Promise<void>;
  get<T = unknown>(ns: string, key: Key): Promise<T | undefined>;
  getEntry<T = unknown>(ns: string, key: Key): Promise<Entry<T> | undefined>;
  getMany<T = unknown>(ns: string, keys: Key[]): Promise<(T | undefined)[]>;
  count(ns: string, sel: ListSelector): Promise<number>;
  list<T = unknown>(ns: string, sel: ListSelector, opts?: ListOptions): AsyncIterableIterator<Entry<T>>;
  set(ns: string, key: Key, value: unknown, options?: SetOptions): Promise<{ version: bigint }>;
  delete(ns: string, key: Key): Promise<{ version: bigint }>;
  begin(options?: { isolation?: Isolation }): Promise<Transaction>;
  transaction<T>(fn: (tx: Transaction) => Promise<T> | T, options?: TransactionOptions): Promise<T>;
  snapshot(): Promise<Snapshot>;
  watch<T = unknown>(ns: string, sel: { keys: Key[] } | { prefix: Key | readonly never[] }, opts?: { fromVersion?: bigint; signal?: AbortSignal }): AsyncIterableIterator<WatchEvent<T>>;
  createNamespace(name: string): Promise<void>;
  dropNamespace(name: string): Promise<void>;
  renameNamespace(from: string, to: string): Promise<void>;
  listNamespaces(): Promise<string[]>;
  compact(): Promise<CompactResult>;
  backup(dest: string): Promise<BackupResult>;
  check(): Promise<CheckReport>;
  processes(): ProcessInfo[];
  enqueue(queue: string, value: unknown, options?: EnqueueOptions): Promise<EnqueueResult>;
  listenQueue<T = unknown>(queue: string, handler: QueueHandler<T>, options?: ListenOptions): Promise<void>;
  queueStats(queue: string): QueueStats;
  deadLetters<T = unknown>(queue: string): AsyncIterableIterator<DeadLetter<T>>;
  retryDead(queue: string, id?: string): Promise<number>;
  commitPrepared(txid: string): Promise<{ version: bigint }>;
  abortPrepared(txid: string): Promise<void>;
  listPrepared(): Promise<PreparedInfo[]>;
  lock(resource: Key, mode: LockMode, options?: LockOptions): Promise<ResourceLock>;
  locks(): LockInfo[];
  metrics(): string;
  stats(): Stats;
}
