/**
 * The database: the public facade of ../shared/API.md over one of two engines, chosen by
 * {@link open} from its location (dbengine.ts has the interface between them):
 *
 * - a directory: the local engine (localdb.ts), shared by the processes of one machine;
 * - an `etcd://` URL: the etcd engine (etcd/database.ts), shared by processes on several.
 *
 * Each public method hands its arguments to the engine as they came: both engines check
 * them alike, with the shared helpers, and fail alike. Only an options object passed to a
 * method that takes none is refused here, since engines never see it (noOptions, below).
 *
 * @module
 */
import { describeInput, TxtDbError } from "./errors.ts";
import type { Key } from "./keys.ts";
import type { SetOptions } from "./expiry.ts";
import type { Entry, Isolation, ListOptions, ListSelector, Snapshot, Transaction } from "./tx.ts";
import type { WatchEvent } from "./watch.ts";
import type { CheckReport } from "./check.ts";
import { checkOptions, invalidArg } from "./options.ts";
import type { OpenOptions, TransactionOptions } from "./options.ts";
import type { Stats } from "./stats.ts";
import type { LockInfo, LockMode, LockOptions, ResourceLock } from "./locks.ts";
import type { Key as ResourceKey } from "./keys.ts";
import type { CompactResult } from "./compact.ts";
import type { BackupResult } from "./backup.ts";
import type { DeadLetter, EnqueueOptions, EnqueueResult, ListenOptions, QueueHandler, QueueStats } from "./queues.ts";
import type { PreparedInfo } from "./prepared.ts";
import type { DatabaseEngine } from "./dbengine.ts";
import type { Platform } from "./port.ts";
import { LocalDatabase, localInternals, openLocal } from "./localdb.ts";
import type { DatabaseInternals } from "./localdb.ts";
import { isEtcdLocation, openEtcd } from "./etcd/database.ts";

export type { Durability, OpenOptions, TransactionOptions } from "./options.ts";
export type { Distribution, Stats } from "./stats.ts";
export type { CompactResult } from "./compact.ts";
export type { BackupResult } from "./backup.ts";
export type { PreparedInfo } from "./prepared.ts";
export type { PrepareOptions } from "./participant.ts";
export type { DatabaseInternals } from "./localdb.ts";

/**
 * The local engine's side of `db`, for txtdb's parts and tools (two-phase commit, sagas,
 * the CLI, tests), not for users. On etcd it fails with UNSUPPORTED: those parts need a
 * local store.
 */
export let databaseInternals: (db: Database, what?: string) => DatabaseInternals;
/** The engine behind `db` (tests and tools). */
export let engineOf: (db: Database) => DatabaseEngine;
let newDatabase: (engine: DatabaseEngine) => Database;

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
export class Database {
  readonly #engine: DatabaseEngine;

  static {
    newDatabase = (engine) => new Database(engine);
    engineOf = (db) => db.#engine;
    databaseInternals = (db, what = "This") => {
      const engine = db.#engine;
      if (engine instanceof LocalDatabase) return localInternals(engine);
      throw new TxtDbError("UNSUPPORTED", `${what} needs a store in a directory: the etcd backend of "${engine.path}" does not support it (see "Scale-out beyond one machine" in the README)`, { details: { path: engine.path } });
    };
  }

  /** Use {@link open}. */
  private constructor(engine: DatabaseEngine) {
    this.#engine = engine;
  }

  /** The store's location: its directory, or its `etcd://` URL. */
  get path(): string {
    return this.#engine.path;
  }

  /** True when opened with `readOnly: true`: writes fail with READ_ONLY. */
  get readOnly(): boolean {
    return this.#engine.readOnly;
  }

  /** @internal The Platform this handle uses: the `adapter` option, or the running runtime's (docs/opening.md). */
  private get platform(): Platform {
    return this.#engine.platform;
  }

  /** @internal The key, value and transaction limits in force on this handle, defaults filled in (docs/opening.md). */
  private get limits(): { maxKeyBytes: number; maxValueBytes: number; maxTxBytes: number; maxTxWrites: number } {
    return this.#engine.limits;
  }

  /** Closes the database: `await using db = await open(...)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Waits for queued commits, syncs, releases files and locks. Safe to call twice. */
  close(): Promise<void> {
    return this.#engine.close();
  }

  /** The newest committed value of `key`, or undefined. */
  get<T = unknown>(ns: string, key: Key): Promise<T | undefined> {
    return this.#engine.get<T>(ns, key);
  }

  /** The newest committed entry of `key`, or undefined. */
  getEntry<T = unknown>(ns: string, key: Key): Promise<Entry<T> | undefined> {
    return this.#engine.getEntry<T>(ns, key);
  }

  /** The newest committed values of several keys. */
  getMany<T = unknown>(ns: string, keys: Key[]): Promise<(T | undefined)[]> {
    return this.#engine.getMany<T>(ns, keys);
  }

  /**
   * The number of live keys in a selection at the newest committed state, without reading
   * their values (see {@link Snapshot.count}).
   */
  count(ns: string, sel: ListSelector): Promise<number> {
    return this.#engine.count(ns, sel);
  }

  /** Entries of a selection at the newest committed state. */
  list<T = unknown>(ns: string, sel: ListSelector, opts?: ListOptions): AsyncIterableIterator<Entry<T>> {
    return this.#engine.list<T>(ns, sel, opts);
  }

  /**
   * Writes one key in its own transaction. With `{ expireIn: ms }` the key reads as absent,
   * in every process, from `ms` milliseconds after this call on (and compaction reclaims
   * it); without it, an earlier expiry of the key is cleared.
   *
   * @example
   * ```ts
   * await db.set("sessions", "s-1", { user: "alice" }, { expireIn: 60_000 });
   * ```
   */
  set(ns: string, key: Key, value: unknown, options?: SetOptions): Promise<{ version: bigint }> {
    return this.#engine.set(ns, key, value, options);
  }

  /** Deletes one key in its own transaction. */
  delete(ns: string, key: Key): Promise<{ version: bigint }> {
    return this.#engine.delete(ns, key);
  }

  /** Begins a transaction reading the newest committed state. */
  begin(options: { isolation?: Isolation } = {}): Promise<Transaction> {
    return this.#engine.begin(options);
  }

  /**
   * Runs `fn` in a transaction and commits it, rerunning it on CONFLICT with exponential
   * backoff and jitter up to `maxRetries` times. Any other error rolls back and is rethrown.
   */
  transaction<T>(fn: (tx: Transaction) => Promise<T> | T, options: TransactionOptions = {}): Promise<T> {
    return this.#engine.transaction<T>(fn, options);
  }

  /** A read-only view pinned at the newest committed version; release it when done. */
  snapshot(): Promise<Snapshot> {
    return noOptions("snapshot()", arguments, 0) ?? this.#engine.snapshot();
  }

  /**
   * Events for every commit, from any process, that changes the given keys or a key under
   * the prefix, in version order. `fromVersion` (exclusive) replays history the log holds.
   *
   * Watches the namespace the name denotes now; if it is dropped or renamed, the watcher
   * delivers every earlier event, then ends with `NAMESPACE_NOT_FOUND` (details `{ ns,
   * version, op, to? }`); go on by watching the new name with `fromVersion: version`.
   * An aborted `signal` ends the watcher as `return()` does: a `for await` loop over it
   * finishes, and a pending `next()` resolves done (already aborted: it yields nothing).
   * To act on the current state and then on every change, read at a snapshot and watch
   * from its version: `fromVersion: snap.version` misses and repeats nothing.
   *
   * @example
   * ```ts
   * for await (const { version, changes } of db.watch("accounts", { prefix: [] })) { ... }
   * ```
   */
  watch<T = unknown>(ns: string, sel: { keys: Key[] } | { prefix: Key | readonly never[] }, opts: { fromVersion?: bigint; signal?: AbortSignal } = {}): AsyncIterableIterator<WatchEvent<T>> {
    return this.#engine.watch<T>(ns, sel, opts);
  }

  /** Creates a namespace; NAMESPACE_EXISTS if present. */
  createNamespace(name: string): Promise<void> {
    return this.#engine.createNamespace(name);
  }

  /** Drops a namespace and every key in it, atomically; NAMESPACE_NOT_FOUND if absent. */
  dropNamespace(name: string): Promise<void> {
    return this.#engine.dropNamespace(name);
  }

  /** Renames a namespace atomically; NAMESPACE_EXISTS / NAMESPACE_NOT_FOUND. */
  renameNamespace(from: string, to: string): Promise<void> {
    return this.#engine.renameNamespace(from, to);
  }

  /** Names of the namespaces at the newest committed version, sorted. */
  listNamespaces(): Promise<string[]> {
    return this.#engine.listNamespaces();
  }

  /**
   * Folds old log segments into sorted tables below the oldest version any live process
   * pins, switches the manifest atomically, and deletes what it replaced. Never removes a
   * version a live snapshot, transaction or watcher can read. Asked for explicitly, it also
   * merges level 0 into level 1, so the versions the fold superseded go at once (automatic
   * compaction leaves that to the level sizes).
   */
  compact(): Promise<CompactResult> {
    return noOptions("compact()", arguments, 0) ?? this.#engine.compact();
  }

  /**
   * A consistent copy of the store at one version in `dest` (a new path or an empty
   * directory), taken while other processes keep committing; compactions wait for it.
   * Resolves to the version copied and the bytes written. See backup.ts for the rules.
   */
  backup(dest: string): Promise<BackupResult> {
    return noOptions("backup()", arguments, 1) ?? this.#engine.backup(dest);
  }

  /** Verifies every record's checksum, the manifest, the checkpoint and the index; changes nothing. */
  check(): Promise<CheckReport> {
    return noOptions("check()", arguments, 0) ?? this.#engine.check();
  }

  /** Live processes sharing this store, with their pins (for diagnostics and `txtdb doctor`). */
  processes(): { pid: number; runtime: string; pinnedVersion: bigint | undefined; pinAgeMs: number | undefined; self: boolean }[] {
    return this.#engine.processes();
  }

  /**
   * Adds a message to queue `queue` (created on first use; queues live apart from
   * namespaces). It becomes ready after `delayMs`; with a `dedupeKey`, a second enqueue
   * under the key while its window (`dedupeWindowMs`, default 10 minutes) holds is skipped
   * and resolves with `deduplicated: true`. See docs/queues.md.
   *
   * @example
   * ```ts
   * await db.enqueue("jobs", { to: "a@b.c" }, { delayMs: 5_000, dedupeKey: "mail-42" });
   * ```
   */
  enqueue(queue: string, value: unknown, options?: EnqueueOptions): Promise<EnqueueResult> {
    return this.#engine.enqueue(queue, value, options);
  }

  /**
   * Runs `handler` for the messages of queue `queue`, at most `concurrency` at once, each
   * message in one handler at a time across every process and runtime, at least once: a
   * handler that throws, or whose process dies, gets it again after a backoff; past
   * `maxAttempts` it goes to the dead list. Resolves when `signal` aborts or the database
   * closes, once the running handlers have finished (or run past `visibilityTimeoutMs`).
   *
   * @example
   * ```ts
   * const stop = new AbortController();
   * await db.listenQueue("jobs", async (job, msg) => { await send(job); }, { concurrency: 8, signal: stop.signal });
   * ```
   */
  listenQueue<T = unknown>(queue: string, handler: QueueHandler<T>, options?: ListenOptions): Promise<void> {
    return this.#engine.listenQueue<T>(queue, handler, options);
  }

  /**
   * Counts of a queue's messages at the newest committed state: ready, delayed (by
   * `delayMs` or a retry backoff), running (claimed), dead. Synchronous, like `stats()`.
   *
   * @example
   * ```ts
   * const { ready, delayed, running, dead } = db.queueStats("jobs");
   * ```
   */
  queueStats(queue: string): QueueStats {
    return this.#engine.queueStats(queue);
  }

  /**
   * The messages of a queue's dead list: `{ id, value, attempts, error }`, by id.
   *
   * @example
   * ```ts
   * for await (const d of db.deadLetters("jobs")) console.log(d.id, d.error?.message);
   * ```
   */
  deadLetters<T = unknown>(queue: string): AsyncIterableIterator<DeadLetter<T>> {
    return this.#engine.deadLetters<T>(queue);
  }

  /**
   * Puts dead messages back on the queue, ready now with their attempts reset: the one
   * with id `id`, or all of them. Resolves to how many moved.
   *
   * @example
   * ```ts
   * await db.retryDead("jobs");           // all
   * await db.retryDead("jobs", letter.id); // one
   * ```
   */
  retryDead(queue: string, id?: string): Promise<number> {
    return this.#engine.retryDead(queue, id);
  }

  /**
   * Decides prepared transaction `txid` (see `tx.prepare()`): its writes become visible at
   * a new version, in every process. Idempotent: for a transaction committed already, it
   * returns that commit's version. An aborted or unknown `txid` fails with NOT_PREPARED
   * (`details.state`: "aborted" or "unknown").
   *
   * @example
   * ```ts
   * const { version } = await db.commitPrepared("order-42");
   * ```
   */
  commitPrepared(txid: string): Promise<{ version: bigint }> {
    return this.#engine.commitPrepared(txid);
  }

  /**
   * Decides prepared transaction `txid` by dropping its writes, in every process.
   * Idempotent; an unknown `txid`'s abort is recorded, so that a prepare of it arriving
   * later is refused (presumed abort). A committed one fails with NOT_PREPARED.
   *
   * @example
   * ```ts
   * await db.abortPrepared("order-42");
   * ```
   */
  abortPrepared(txid: string): Promise<void> {
    return this.#engine.abortPrepared(txid);
  }

  /**
   * The prepared transactions of this store not decided yet, from every process, oldest
   * first: their id, coordinator, age and the keys they write.
   *
   * @example
   * ```ts
   * for (const p of await db.listPrepared()) console.log(p.txid, p.ageMs, p.coordinator);
   * ```
   */
  listPrepared(): Promise<PreparedInfo[]> {
    return this.#engine.listPrepared();
  }

  /**
   * Locks a named resource in `mode`, across every process and runtime that opens the store,
   * until `release()`: an intention lock on each shorter prefix first, then the resource.
   * Waiters are served first come, first served; a deadlock fails the request that began
   * waiting last with DEADLOCK; `timeoutMs` (default `lockTimeoutMs`; 0: try once) and
   * `signal` end a wait with LOCK_TIMEOUT. See locks.ts.
   *
   * @example
   * ```ts
   * await using l = await db.lock(["accounts", "alice"], "X", { timeoutMs: 5_000 });
   * ```
   */
  lock(resource: ResourceKey, mode: LockMode, options?: LockOptions): Promise<ResourceLock> {
    return this.#engine.lock(resource, mode, options);
  }

  /** Every live process's grants and waits on named resources, intention locks included. */
  locks(): LockInfo[] {
    return this.#engine.locks();
  }

  /**
   * The same figures as stats() in the Prometheus text exposition format.
   *
   * @example
   * ```ts
   * server.get("/metrics", () => new Response(db.metrics()));
   * ```
   */
  metrics(): string {
    return this.#engine.metrics();
  }

  /** Counters and figures of this process's view of the store. */
  stats(): Stats {
    return this.#engine.stats();
  }
}

/**
 * A rejection when a method that takes `expected` arguments got more (an options object,
 * most likely, such as `snapshot({ version })` or `compact({ full: true })`): JavaScript
 * would ignore it, and the caller would believe an option applies that does not.
 */
function noOptions(what: string, args: IArguments, expected: number): Promise<never> | undefined {
  for (let i = expected; i < args.length; i++) {
    // An empty plain object hides no option (wrappers pass `opts ?? {}`).
    const a = args[i];
    if (a !== null && typeof a === "object" && Object.getPrototypeOf(a) === Object.prototype && Reflect.ownKeys(a).length === 0) continue;
    if (args[i] !== undefined) {
      const got = args[i] !== null && typeof args[i] === "object" ? `{ ${Object.keys(args[i] as object).join(", ")} }` : String(args[i]);
      return Promise.reject(invalidArg(`${what} takes ${expected === 0 ? "no arguments" : `${expected} argument${expected > 1 ? "s" : ""}`} and no options; got ${got} as argument ${i + 1}`));
    }
  }
  return undefined;
}

/**
 * A location that is a URL, not a directory: only etcd's are known; any other is refused
 * before anything is created (a directory named "http:" is never what was meant).
 */
function refuseUrl(path: string): void {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(path)?.[1]?.toLowerCase();
  if (scheme === undefined || scheme === "etcd" || scheme === "etcds") return;
  throw invalidArg(`open() takes a directory path or an etcd:// URL; got the ${scheme}:// URL "${path}". For a directory whose name starts like a URL, write it as "./${path}"`);
}

/**
 * Opens (creating if needed) the store in directory `path`. Any number of processes, on
 * any mix of Node, Deno and Bun, may open the same directory at once. An `etcd://` (or
 * `etcds://`) URL opens the same API on an etcd v3 cluster instead, for processes on
 * several machines (see the README, "Scale-out beyond one machine").
 *
 * @example
 * ```ts
 * await using db = await open("./data", { namespaces: ["accounts"] });
 * ```
 */
export async function open(path: string, options: OpenOptions = {}): Promise<Database> {
  if (typeof path !== "string" || path.length === 0) throw invalidArg(`open() needs a directory path; got ${describeInput(path)}`);
  // The kernel takes no NUL in a path: the runtimes' refusal came out as IO ("lstat failed:
  // ERR_INVALID_ARG_VALUE", the NUL printed raw), an operating-system failure it is not.
  if (path.includes("\0")) throw invalidArg(`open() needs a directory path; got ${JSON.stringify(path)}, which holds a NUL character ("\\0") that no file path can`);
  refuseUrl(path);
  checkOptions(options);
  if (isEtcdLocation(path)) return newDatabase(await openEtcd(path, options));
  return newDatabase(await openLocal(path, options, open));
}
