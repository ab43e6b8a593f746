/**
 * The etcd engine behind the public Database (dbengine.ts): `open("etcd://h:p,h:p/prefix")`.
 * This file checks arguments and options as the local engine does (the same helpers),
 * encodes keys and values, and hands encoded work to {@link EtcdEngine} (engine.ts has the
 * validation and durability rules). Transactions and snapshots are txview.ts's.
 *
 * What etcd cannot give fails with UNSUPPORTED, naming the method or option: queues,
 * locks on named resources, two-phase commit (and so sagas and coordinators), backup,
 * `processes()`, and the local engine's file and cache options. A namespace operation
 * commits alone.
 *
 * Upkeep: `compact()`, and automatically once a handle has committed `autoCompactBytes` of
 * keys and values since its last compaction (see #maybeAutoCompact).
 *
 * Durability: a commit resolves once etcd acknowledged it, which is after a quorum of
 * members wrote it to their logs; `durability` other than "full" is UNSUPPORTED.
 *
 * @module
 */
import { isTxtDbError, TxtDbError } from "../errors.ts";
import { encodeKey, prefixRange } from "../keys.ts";
import type { Key } from "../keys.ts";
import { encodeValue } from "../codec.ts";
import { expiryFromOptions, wrapExpiring } from "../expiry.ts";
import type { SetOptions } from "../expiry.ts";
import type { Platform } from "../port.ts";
import { defaultPlatform } from "../platform.ts";
import { checkBeginOptions, checkNamespaceName, checkTransactionOptions, checkWatchArguments, isReservedNamespace, resolveOptions } from "../options.ts";
import type { Durability, OpenOptions, TransactionOptions } from "../options.ts";
import { wrapSnapshot, wrapTransaction } from "../tx.ts";
import type { Entry, Isolation, ListOptions, ListSelector, Snapshot, Transaction } from "../tx.ts";
import { checkTxBytes } from "../txstate.ts";
import type { Limits } from "../txstate.ts";
import type { WatchEvent } from "../watch.ts";
import { EtcdCompactedError } from "./failures.ts";
import type { CheckReport } from "../check.ts";
import type { CompactResult } from "../compact.ts";
import type { BackupResult } from "../backup.ts";
import type { DatabaseEngine } from "../dbengine.ts";
import type { DeadLetter, QueueStats } from "../queues.ts";
import type { PreparedInfo } from "../prepared.ts";
import type { LockInfo, ResourceLock } from "../locks.ts";
import { Histogram } from "../metrics.ts";
import { renderMetrics, Meters } from "../stats.ts";
import type { Stats } from "../stats.ts";
import { SAGA_STATUSES } from "../sagastate.ts";
import { abortReason, listenAbort, raceDeadline, signalAborted } from "../timers.ts";
import { decodeStored } from "../tx.ts";
import { EtcdEngine } from "./engine.ts";
import type { Pin } from "./pins.ts";
import { ETCD_TXN_OPS_MAX } from "./reader.ts";
import type { EtcdReader } from "./reader.ts";
import { ETCD_LIMITS, EtcdTransaction } from "./transaction.ts";
import { EtcdReadView, EtcdSnapView, EtcdTxView, nsArg, storedKey } from "./txview.ts";
import type { ViewContext } from "./txview.ts";

/** True for an `etcd://` or `etcds://` location. */
export function isEtcdLocation(path: string): boolean {
  return /^etcds?:\/\//i.test(path);
}

/** Ends the watchers dropped without return(): their pins and places (see EtcdDatabase.watch). */
const leakedWatchers = new FinalizationRegistry<() => void>((finish) => finish());
/** Releases the pins of db.list() iterators dropped unfinished (see EtcdDatabase.list). */
const leakedLists = new FinalizationRegistry<{ reader: EtcdReader | undefined }>((held) => held.reader?.release());

/** Options that only mean something for a store in a directory. */
const LOCAL_ONLY_OPTIONS = ["mode", "allowForeignOwner", "relaxedSyncMs", "lockTimeoutMs", "segmentBytes", "cacheBytes", "watchPollMs", "watchBufferMax", "watchBufferBytes", "maxIdleMs"] as const;

/** Opens the store at an etcd location: {@link open} of an `etcd://` URL. */
export async function openEtcd(url: string, options: OpenOptions): Promise<EtcdDatabase> {
  for (const name of LOCAL_ONLY_OPTIONS) {
    if (options[name] !== undefined) {
      throw new TxtDbError("UNSUPPORTED", `Option ${name} applies to a store in a directory; the etcd backend (${url}) has no such setting: leave it out`, { details: { option: name } });
    }
  }
  if (options.durability !== undefined && options.durability !== "full") {
    throw new TxtDbError("UNSUPPORTED", `Option durability "${options.durability}": on etcd every commit is acknowledged once a quorum of members logged it ("full"); leave the option out`, { details: { option: "durability" } });
  }
  const platform = options.adapter ?? (await defaultPlatform());
  const o = resolveOptions(options);
  const engine = await EtcdEngine.open(url, {
    ...(options.requestTimeoutMs !== undefined ? { requestTimeoutMs: options.requestTimeoutMs } : {}),
    ...(options.username !== undefined ? { username: options.username } : {}),
    ...(options.password !== undefined ? { password: options.password } : {}),
    nowMs: () => platform.wallClockMs(),
    create: !o.readOnly,
  });
  const db = new EtcdDatabase(url, platform, engine, o.readOnly, o.isolation, o.limits, o.maxWatchers, o.autoCompactBytes);
  try {
    const wanted = options.namespaces ?? [];
    for (const n of wanted) checkNamespaceName(n);
    if (wanted.length > 0) {
      if (o.readOnly) {
        const have = new Set(await engine.listNamespaces());
        const missing = wanted.filter((n) => !have.has(n));
        if (missing.length > 0) throw new TxtDbError("READ_ONLY", `Cannot create namespaces ${JSON.stringify(missing)} on a store opened with readOnly: true`);
      } else {
        if ((await engine.ensureNamespaces(wanted)).length > 0) db.countCommit(0);
      }
    }
  } catch (e) {
    await db.close().catch(() => {});
    throw e;
  }
  return db;
}

function unsupported(what: string, why = "it needs a store in a directory"): TxtDbError {
  return new TxtDbError("UNSUPPORTED", `${what} is not available on the etcd backend: ${why} (see the README, "Scale-out beyond one machine")`);
}

const NO_DISTRIBUTION = { count: 0, p50: 0, p90: 0, p99: 0, max: 0 };

/** A store on an etcd cluster; see the module comment. */
export class EtcdDatabase implements DatabaseEngine {
  readonly path: string;
  readonly readOnly: boolean;
  readonly #platform: Platform;
  readonly #engine: EtcdEngine;
  readonly #isolation: Isolation;
  readonly #limits: Limits;

  get platform(): Platform {
    return this.#platform;
  }

  get limits(): Limits {
    return this.#limits;
  }

  readonly #maxWatchers: number;
  readonly #ctx: ViewContext;
  readonly #meters = new Meters();
  readonly #commitLatencyUs = new Histogram();
  readonly #watchers = new Set<AbortController>();
  /** Calls in flight (see #call): close() waits for them. */
  readonly #inflight = new Set<Promise<unknown>>();
  #openSnapshots = 0;
  #openTransactions = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  readonly #autoCompactBytes: number;
  /** Bytes of keys and values this handle committed since its last compaction. */
  #bytesSinceCompact = 0;
  #compacting: Promise<unknown> | undefined;
  #compactions = 0;

  constructor(path: string, platform: Platform, engine: EtcdEngine, readOnly: boolean, isolation: Isolation, limits: Limits, maxWatchers: number, autoCompactBytes: number) {
    this.path = path;
    this.#platform = platform;
    this.#engine = engine;
    this.readOnly = readOnly;
    this.#isolation = isolation;
    this.#limits = limits.maxTxWrites <= ETCD_LIMITS.maxTxWrites ? limits : { ...limits, maxTxWrites: ETCD_LIMITS.maxTxWrites, maxTxWritesWhy: ETCD_LIMITS.maxTxWritesWhy! };
    this.#maxWatchers = maxWatchers;
    this.#autoCompactBytes = autoCompactBytes;
    this.#ctx = {
      limits: this.#limits,
      readOnly,
      nowMs: () => platform.wallClockMs(),
      ensureOpen: () => this.#ensureOpen(),
    };
  }

  /** The engine, for tests and tools. */
  get engine(): EtcdEngine {
    return this.#engine;
  }

  /**
   * UNSUPPORTED for what etcd cannot give, but CLOSED first on a closed handle, as every
   * other call says (these said UNSUPPORTED after close(), where a directory says CLOSED).
   */
  #unsupported(what: string, why?: string): TxtDbError {
    if (this.#closed) return new TxtDbError("CLOSED", `Database "${this.path}" is closed; open it again`);
    return unsupported(what, why);
  }

  #ensureOpen(): void {
    if (this.#closed) throw new TxtDbError("CLOSED", `Database "${this.path}" is closed; open it again`);
  }

  #writable(what: string): void {
    this.#ensureOpen();
    if (this.readOnly) throw new TxtDbError("READ_ONLY", `Cannot ${what}: the database was opened with readOnly: true`);
  }

  async close(): Promise<void> {
    this.#closing ??= this.#close();
    await this.#closing;
  }

  /**
   * Watchers end at once. Calls in flight finish first, with what they start meanwhile (a
   * transaction's function runs on): only then is the handle closed and the lease revoked.
   */
  async #close(): Promise<void> {
    for (const w of this.#watchers) w.abort();
    while (this.#inflight.size > 0 || this.#compacting) {
      await Promise.allSettled([...this.#inflight]);
      await this.#compacting;
    }
    this.#closed = true;
    await this.#engine.close();
  }

  // --- reads on db: a reader per call, whose first request fixes its revision ---

  #reads(): EtcdReadView {
    this.#ensureOpen();
    this.#meters.counters.reads++;
    return new EtcdReadView(this.#ctx, this.#engine.reader(), () => this.#ensureOpen());
  }

  get<T = unknown>(ns: string, key: Key): Promise<T | undefined> {
    return this.#call(() => this.#reads().get<T>(ns, key));
  }

  getEntry<T = unknown>(ns: string, key: Key): Promise<Entry<T> | undefined> {
    return this.#call(() => this.#reads().getEntry<T>(ns, key));
  }

  getMany<T = unknown>(ns: string, keys: Key[]): Promise<(T | undefined)[]> {
    // Past one request's worth of keys, pinned as count() is.
    if (Array.isArray(keys) && keys.length + 1 > ETCD_TXN_OPS_MAX) return this.#call(() => this.#pinnedReads((v) => v.getMany<T>(ns, keys)));
    return this.#call(() => this.#reads().getMany<T>(ns, keys));
  }

  count(ns: string, sel: ListSelector): Promise<number> {
    return this.#call(() => this.#pinnedReads((v) => v.count(ns, sel)));
  }

  /**
   * A read of several requests at one revision, pinned while it runs: unpinned, this
   * process's pin could move past the revision (a snapshot released meanwhile), a
   * compaction in any process follow, and the next page fail with "etcd compacted its
   * history" (a count of 5,000 keys failed 3 times in 3 beside one compaction).
   */
  async #pinnedReads<R>(read: (view: EtcdReadView) => Promise<R>): Promise<R> {
    this.#ensureOpen();
    this.#meters.counters.reads++;
    const reader = await this.#engine.snapshot();
    try {
      return await read(new EtcdReadView(this.#ctx, reader, () => this.#ensureOpen()));
    } finally {
      reader.release();
    }
  }

  /**
   * Pinned for its lifetime: a list reads page by page, all at one revision. An iterator
   * dropped unfinished (neither read to the end nor return()ed) gives its pin back when it
   * is collected, as a dropped snapshot or transaction does (txview.ts): etcd has no
   * maxIdleMs sweep, so without this one abandoned `for await` that broke out by an
   * exception held every process's compaction below its revision until this process ended.
   */
  list<T = unknown>(ns: string, sel: ListSelector, opts?: ListOptions): AsyncIterableIterator<Entry<T>> {
    const engine = this.#engine;
    const ctx = this.#ctx;
    const self = this;
    // What the finalizer releases; it must not reference the iterator itself.
    const held: { reader: EtcdReader | undefined } = { reader: undefined };
    async function* run(): AsyncGenerator<Entry<T>, void, undefined> {
      self.#ensureOpen();
      self.#meters.counters.reads++;
      const reader = await engine.snapshot();
      held.reader = reader;
      const view = new EtcdReadView(ctx, reader, () => self.#ensureOpen());
      yield* view.list<T>(ns, sel, opts, () => {
        held.reader = undefined;
        reader.release();
      });
    }
    const gen = run();
    leakedLists.register(gen, held);
    return gen;
  }

  /**
   * A promise of `fn()`, its synchronous throws as rejections; tracked until it settles, so
   * that close() lets the calls made before it finish (as a directory's close() waits for
   * its queued commits) instead of cutting their requests off.
   */
  #call<T>(fn: () => Promise<T>): Promise<T> {
    let p: Promise<T>;
    try {
      p = fn();
    } catch (e) {
      return Promise.reject(e);
    }
    const inflight = this.#inflight;
    inflight.add(p);
    void p.then(() => inflight.delete(p), () => inflight.delete(p));
    return p;
  }

  // --- writes and transactions ---

  #blind(ns: string, key: Key, value: unknown, isDelete: boolean, options?: SetOptions): Promise<{ version: bigint }> {
    return this.#call(async () => {
      this.#writable("write");
      const expiresAtMs = isDelete ? undefined : expiryFromOptions(options, this.#platform.wallClockMs(), "set()");
      checkNamespaceName(ns);
      const k = encodeKey(key, this.#limits.maxKeyBytes);
      const started = this.#platform.monotonicMs();
      const stored = isDelete ? undefined : encodeValue(value, this.#limits.maxValueBytes);
      const v = stored === undefined || expiresAtMs === undefined ? stored : wrapExpiring(stored, expiresAtMs);
      const bytes = k.length + (v?.length ?? 0);
      // A set or delete is a transaction of one write: maxTxBytes holds for it as for
      // tx.set, as on a directory (db.set wrote a value past it here).
      checkTxBytes(bytes, this.#limits.maxTxBytes);
      const r = v === undefined ? await this.#engine.delete(ns, k) : await this.#engine.set(ns, k, v);
      this.#committed(started, 1, bytes);
      return r;
    });
  }

  /** Counts a commit made outside a transaction (namespaces created at open). */
  countCommit(keys: number): void {
    this.#meters.counters.commits++;
    this.#meters.counters.keysWritten += keys;
  }

  #committed(startedMs: number, keys: number, bytes: number): void {
    this.#commitLatencyUs.record((this.#platform.monotonicMs() - startedMs) * 1000);
    this.#meters.counters.commits++;
    this.#meters.counters.keysWritten += keys;
    this.#bytesSinceCompact += bytes;
    this.#maybeAutoCompact();
  }

  /**
   * Automatic compaction (`autoCompactBytes`, 0: never): once this handle has committed that
   * many bytes of keys and values since its last compaction, it compacts in the background,
   * one at a time, as `compact()` does (below every live process's pin). Each process
   * counts its own writes, so the history etcd keeps stays bounded however the writes are
   * spread; several processes compacting at once is safe (pins.ts rule 2).
   */
  #maybeAutoCompact(): void {
    if (this.#autoCompactBytes <= 0 || this.#bytesSinceCompact < this.#autoCompactBytes || this.#compacting || this.#closed || this.readOnly) return;
    this.#compacting = this.#runCompaction().catch(() => {
      // A failed automatic compaction (no quorum, …) is tried again after as many bytes more.
    }).finally(() => (this.#compacting = undefined));
  }

  async #runCompaction(): Promise<{ compactedTo: bigint; removed: number }> {
    this.#bytesSinceCompact = 0;
    const r = await this.#engine.compact();
    this.#compactions++;
    return r;
  }

  set(ns: string, key: Key, value: unknown, options?: SetOptions): Promise<{ version: bigint }> {
    return this.#blind(ns, key, value, false, options);
  }

  delete(ns: string, key: Key): Promise<{ version: bigint }> {
    return this.#blind(ns, key, undefined, true);
  }

  begin(options: { isolation?: Isolation } = {}): Promise<Transaction> {
    return this.#call(async () => {
      const isolation = checkBeginOptions(options) ?? this.#isolation;
      this.#ensureOpen();
      const reader = await this.#engine.snapshot();
      this.#openTransactions++;
      let open = true;
      const done = () => {
        if (open) this.#openTransactions--;
        open = false;
      };
      const tx = new EtcdTransaction(reader, (req) => this.#call(async () => {
          const started = this.#platform.monotonicMs();
        try {
          const v = await this.#engine.commit(req);
          let keys = 0, bytes = 0;
          for (const m of req.writes.values()) {
            keys += m.size;
            for (const [k, op] of m) bytes += k.length + (op.kind === "set" ? op.value.length : op.kind === "sum" ? 16 : 0);
          }
          if (keys > 0) this.#committed(started, keys, bytes);
          return v;
        } catch (e) {
          if (isTxtDbError(e, "CONFLICT")) this.#meters.counters.conflicts++;
          throw e;
        } finally {
          done();
        }
      }), isolation, () => this.#platform.wallClockMs(), this.#limits);
      return wrapTransaction(new EtcdTxView(this.#ctx, tx, done));
    });
  }

  /**
   * As the local engine's: reruns `fn` on CONFLICT with exponential backoff and jitter up to
   * `maxRetries` times; TIMEOUT at `timeoutMs` or on `signal` while `fn` runs. A commit once
   * sent is waited for (bounded by `requestTimeoutMs`): its outcome is learned, never
   * replaced by a TIMEOUT for a commit that may have happened.
   */
  transaction<T>(fn: (tx: Transaction) => Promise<T> | T, options: TransactionOptions = {}): Promise<T> {
    return this.#call(() => this.#transaction(fn, options));
  }

  async #transaction<T>(fn: (tx: Transaction) => Promise<T> | T, options: TransactionOptions): Promise<T> {
    const { isolation, maxRetries, timeoutMs, signal } = checkTransactionOptions(fn, options);
    const deadline = timeoutMs !== undefined ? this.#platform.monotonicMs() + timeoutMs : undefined;
    const timeoutError = (cause?: unknown) =>
      new TxtDbError("TIMEOUT", signalAborted(signal) ? "Transaction was aborted by its signal" : `Transaction did not finish within ${timeoutMs} ms (timeoutMs)`, { cause });
    for (let attempt = 0; ; attempt++) {
      if (signalAborted(signal)) throw timeoutError(abortReason(signal));
      if (deadline !== undefined && this.#platform.monotonicMs() >= deadline) throw timeoutError();
      const delayTo = () => (deadline === undefined ? undefined : deadline - this.#platform.monotonicMs());
      // begin() pins a snapshot over the network: the deadline and the signal bound it too;
      // a transaction begun after they fired is rolled back at once.
      const begun = this.begin(isolation ? { isolation } : {});
      let tx: Transaction;
      try {
        tx = await raceDeadline(begun, delayTo(), signal, (cause) => ({ error: timeoutError(cause) }));
      } catch (e) {
        void begun.then((t) => t.rollback(), () => {});
        throw e;
      }
      try {
        const result = await raceDeadline(Promise.resolve().then(() => fn(tx)), delayTo(), signal, (cause) => ({ error: timeoutError(cause) }));
        if (!tx.finished) await tx.commit();
        return result;
      } catch (e) {
        tx.rollback();
        if (!isTxtDbError(e, "CONFLICT") || attempt >= maxRetries) throw e;
        this.#meters.counters.retries++;
        await this.#platform.sleep(Math.random() * Math.min(100, 2 ** attempt));
      }
    }
  }

  snapshot(): Promise<Snapshot> {
    return this.#call(async () => {
      this.#ensureOpen();
      const reader = await this.#engine.snapshot();
      this.#openSnapshots++;
      return wrapSnapshot(new EtcdSnapView(this.#ctx, reader, () => this.#openSnapshots--));
    });
  }

  // --- watching ---

  watch<T = unknown>(ns: string, given: { keys: Key[] } | { prefix: Key | readonly never[] }, options: { fromVersion?: bigint; signal?: AbortSignal } = {}): AsyncIterableIterator<WatchEvent<T>> {
    this.#ensureOpen();
    // The same checks as the local engine's watch() (with both keys and prefix, this engine
    // used to watch the keys and ignore the prefix), and the same copies read once.
    const { sel, opts } = checkWatchArguments(given, options);
    nsArg(ns);
    let selector: { keys: string[] } | { start: string; end: string | undefined };
    if ("keys" in sel) {
      selector = { keys: sel.keys.map((k) => encodeKey(k, this.#limits.maxKeyBytes)) };
    } else {
      const [start, end] = prefixRange(sel.prefix, this.#limits.maxKeyBytes);
      selector = { start, end: end === "\xff" ? undefined : end };
    }
    if (this.#watchers.size >= this.#maxWatchers) {
      throw new TxtDbError("LIMIT", `This database already has ${this.#maxWatchers} watchers (maxWatchers); stop some with return()`);
    }
    const stop = new AbortController();
    if (signalAborted(opts.signal)) stop.abort();
    // The signal ends the watcher at once, read or not, as on a directory (it kept its place
    // among the watchers until the consumer's next next()).
    const unlistenAbort = listenAbort(opts.signal, () => finish());
    this.#watchers.add(stop);
    const engine = this.#engine;
    const watchers = this.#watchers;
    // "From now" is fixed at this call, synchronously: after the newest revision this process
    // has seen (its own commits included), so no commit begun after the call can be missed
    // (it gets a higher revision). Commits of other processes this one had not seen yet may
    // come too; those made while the id had another name never do (engine.ts watch).
    const fromVersion = opts.fromVersion ?? engine.pins.seen;
    // The watcher pins the revision it has delivered up to, as a snapshot pins its own
    // (pins.ts), from this call on: no compaction, in any process of any store, passes what
    // it has still to deliver, whether the consumer has started reading or is slow (etcd's
    // watch then reads history). The hold is taken synchronously (pinAt's first step), so a
    // compaction begun after this call by this process sees it; other processes see it once
    // published. It moves as the consumer takes events, and goes when the watcher ends.
    // (Watchers held no pin, and a replay not read at once could meet WATCH_OVERFLOW.)
    let pin: Promise<Pin | undefined> = engine.pins.pinAt(fromVersion).catch(() => undefined); // compacted already: the watch says so
    let pinned = true;
    const unpin = () => {
      if (!pinned) return;
      pinned = false;
      void pin.then((p) => p?.release());
    };
    const movePin = (to: bigint) => {
      if (!pinned) return;
      const before = pin;
      pin = engine.pins.pinAt(to).catch(() => undefined); // held before the old one goes
      void before.then((p) => p?.release());
    };
    async function* run(): AsyncGenerator<WatchEvent<T>, void, undefined> {
      // The version of the last event handed to the consumer (or where it started): what
      // `fromVersion` (exclusive) resumes from, as the local engine's errors say.
      let delivered = BigInt(fromVersion);
      try {
        if (stop.signal.aborted) return;
        await pin; // published (or found compacted) before etcd's watch starts
        const changes = engine.watch(ns, selector, { fromVersion, signal: stop.signal });
        for await (const c of changes) {
          yield { version: c.version, changes: c.changes.map((x) => ({ key: storedKey(ns, x.key), value: x.value === undefined ? undefined : (decodeStored(x.value, ns, x.key) as T) })) };
          delivered = c.version;
          movePin(delivered);
        }
      } catch (e) {
        // An abort (the signal, return(), close()) ends the watcher quietly.
        if (stop.signal.aborted) return;
        throw resumable(e, delivered);
      } finally {
        finish();
      }
    }
    // Ends the watcher (its etcd watch, if started) and gives back what it holds: its pin,
    // its signal listener, and its place among the handle's watchers (maxWatchers,
    // stats().watchers). Idempotent.
    function finish(): void {
      stop.abort();
      unpin();
      unlistenAbort();
      watchers.delete(stop);
    }
    const gen = run();
    // return() must end a watch that waits for etcd now, not at its next event; one never
    // started, whose finally never runs, must give back what it holds too (it kept its
    // place among the watchers: return()ed unread, maxWatchers of them made every later
    // watch() fail with LIMIT).
    // The generator is reached through a WeakRef, never held: `finish` (the finalizer's held
    // value) shares this scope, and a strong reference here kept every dropped watcher
    // alive, so its finalizer never ran and its pin was never given back.
    const generatorReturn = gen.return;
    const self = new WeakRef(gen);
    gen.return = (v) => {
      finish();
      const g = self.deref();
      return g ? generatorReturn.call(g, v) : Promise.resolve({ done: true, value: undefined });
    };
    // A watcher dropped without return() gives back what it holds when it is garbage-
    // collected, as a snapshot does (a started one is kept alive by its pending read until
    // it ends).
    leakedWatchers.register(gen, finish);
    if (stop.signal.aborted) finish(); // a signal aborted before the call
    return gen;
  }

  // --- namespaces ---

  #namespaceOp(what: string, name: string, run: () => Promise<unknown>, to?: string): Promise<void> {
    return this.#call(async () => {
      this.#writable(`${what} namespace "${name}"`);
      checkNamespaceName(name);
      if (to !== undefined) checkNamespaceName(to);
      const started = this.#platform.monotonicMs();
      await run();
      this.#committed(started, 0, 0);
    });
  }

  createNamespace(name: string): Promise<void> {
    return this.#namespaceOp("create", name, () => this.#engine.createNamespace(name));
  }

  dropNamespace(name: string): Promise<void> {
    return this.#namespaceOp("drop", name, () => this.#engine.dropNamespace(name));
  }

  renameNamespace(from: string, to: string): Promise<void> {
    return this.#namespaceOp("rename", from, () => this.#engine.renameNamespace(from, to), to);
  }

  listNamespaces(): Promise<string[]> {
    return this.#call(async () => {
      this.#ensureOpen();
      return (await this.#engine.listNamespaces()).filter((n) => !isReservedNamespace(n));
    });
  }

  // --- upkeep ---

  /**
   * Compacts etcd's history below the oldest revision any live process pins, and removes
   * tombstones and expired values at or below it (engine.ts). Nothing a live snapshot,
   * transaction or watcher reads is removed. The byte figures are 0: etcd does not say.
   */
  async compact(): Promise<CompactResult> {
    this.#writable("compact");
    const r = await this.#call(() => this.#runCompaction());
    return {
      segmentsFolded: 0,
      checkpointVersion: r.compactedTo,
      minPinnedVersion: r.compactedTo,
      logBytesFolded: 0,
      tableBytesWritten: 0,
      leasesReclaimed: 0,
      bytesBefore: 0,
      bytesAfter: 0,
      entriesRemoved: r.removed,
    };
  }

  backup(_dest: string): Promise<BackupResult> {
    return Promise.reject(this.#unsupported("db.backup()", "take an etcd snapshot instead (etcdctl snapshot save)"));
  }

  /**
   * Reads every namespace's entries at one revision and decodes every value; changes
   * nothing. Problems name the namespace and key (`file` is "etcd:<namespace>").
   */
  async check(): Promise<CheckReport> {
    this.#ensureOpen();
    const report: CheckReport = { ok: true, problems: [], records: 0, bytes: 0 };
    const reader = await this.#engine.snapshot();
    try {
      const problem = (ns: string, err: unknown) => {
        report.ok = false;
        if (report.problems.length < 1000) report.problems.push({ file: `etcd:${ns}`, offset: 0, message: (err as Error).message });
      };
      for (const ns of await this.#engine.listNamespaces()) {
        try {
          for await (const e of reader.range(ns, "", undefined)) {
            report.records++;
            report.bytes += e.key.length + e.value.length;
            try {
              storedKey(ns, e.key);
              decodeStored(e.value, ns, e.key);
            } catch (err) {
              problem(ns, err);
            }
          }
        } catch (err) {
          if (!isTxtDbError(err, "CORRUPTION")) throw err;
          problem(ns, err); // its binding is damaged: the namespace cannot be read at all
        }
      }
    } finally {
      reader.release();
    }
    return report;
  }

  processes(): { pid: number; runtime: string; pinnedVersion: bigint | undefined; pinAgeMs: number | undefined; self: boolean }[] {
    throw this.#unsupported("db.processes()", "processes on other machines are known by their etcd leases only (etcdctl lease list)");
  }

  // --- what needs a local store ---

  enqueue(): Promise<never> {
    return Promise.reject(this.#unsupported("db.enqueue()"));
  }

  listenQueue(): Promise<void> {
    return Promise.reject(this.#unsupported("db.listenQueue()"));
  }

  queueStats(_queue: string): QueueStats {
    throw this.#unsupported("db.queueStats()");
  }

  deadLetters<T = unknown>(_queue: string): AsyncIterableIterator<DeadLetter<T>> {
    const it: AsyncIterableIterator<DeadLetter<T>> = {
      next: () => Promise.reject(this.#unsupported("db.deadLetters()")),
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }

  retryDead(): Promise<number> {
    return Promise.reject(this.#unsupported("db.retryDead()"));
  }

  commitPrepared(): Promise<{ version: bigint }> {
    return Promise.reject(this.#unsupported("db.commitPrepared()"));
  }

  abortPrepared(): Promise<void> {
    return Promise.reject(this.#unsupported("db.abortPrepared()"));
  }

  listPrepared(): Promise<PreparedInfo[]> {
    return Promise.reject(this.#unsupported("db.listPrepared()"));
  }

  lock(): Promise<ResourceLock> {
    return Promise.reject(this.#unsupported("db.lock()"));
  }

  locks(): LockInfo[] {
    throw this.#unsupported("db.locks()");
  }

  // --- observability ---

  metrics(): string {
    return renderMetrics(this.stats(), this.#meters, { store: this.path, runtime: this.#platform.runtime });
  }

  /** This process's figures; those of the local engine's files and cache are 0. */
  stats(): Stats {
    this.#ensureOpen();
    const e = this.#engine.stats();
    const durability: Durability = "full";
    return {
      durability,
      commitLatencyUs: this.#commitLatencyUs.summary(),
      lockWaitUs: NO_DISTRIBUTION,
      fsyncUs: NO_DISTRIBUTION,
      batchSize: NO_DISTRIBUTION,
      checkpointBytes: 0,
      format: 0,
      tableBytesByLevel: [],
      tables: 0,
      cacheHits: 0,
      cacheMisses: 0,
      cacheBytes: 0,
      cacheBytesMax: 0,
      tableIndexBytes: 0,
      compactedLogBytes: 0,
      compactedTableBytes: 0,
      writeAmplification: 0,
      liveLeases: 0,
      unreadableLeases: [],
      frontierMirror: false,
      keysInMemory: 0,
      runtime: this.#platform.runtime,
      path: this.path,
      // As on a directory: the newest version this process has seen (it gave the pin this
      // process last published, 0 before the first, which oldestPinVersion means).
      version: e.seen,
      ...this.#meters.counters,
      namespaces: 0,
      versionsHeld: 0,
      logBytes: 0,
      openSnapshots: this.#openSnapshots,
      openTransactions: this.#openTransactions,
      // The oldest version this process pins for the cluster's compactions (the published
      // pin, or an older snapshot's not yet published), its head when it pins nothing.
      oldestPinVersion: [e.pinnedRevision, e.oldestRead].reduce<bigint>((min, r) => (r !== undefined && r < min ? r : min), e.seen),
      oldestPinAgeMs: 0,
      checkpointVersion: 0n,
      firstSegment: 0,
      compactions: this.#compactions,
      watchers: this.#watchers.size,
      resourceLocksHeld: 0,
      resourceLocksWaiting: 0,
      resourceLockWaits: 0,
      resourceLockReentries: 0,
      resourceLockTimeouts: 0,
      deadlocks: 0,
      prepared: 0,
      inDoubt: 0,
      oldestPreparedAgeMs: 0,
      preparesMade: 0,
      preparedCommitted: 0,
      preparedAborted: 0,
      inDoubtResolved: 0,
      resourceLockWaitUs: NO_DISTRIBUTION,
      sagas: Object.fromEntries(SAGA_STATUSES.map((s) => [s, 0])) as Stats["sagas"],
    };
  }
}

/**
 * A watch's error with `details.resumeFrom` as the public API means it: the `fromVersion`
 * (exclusive) to watch again from. The etcd watch says the revision to start from
 * (inclusive, one more: resuming from it skipped a commit), or, for compacted history, the
 * oldest revision etcd keeps, and said nothing of `resumeFrom` there.
 */
function resumable(e: unknown, delivered: bigint): unknown {
  if (e instanceof EtcdCompactedError && e.code === "WATCH_OVERFLOW") {
    const oldest = e.compactRevision > 0n ? e.compactRevision - 1n : undefined;
    const hint = oldest === undefined ? "read the current state and watch from its version" : `read the current state, and watch with { fromVersion: ${oldest}n } or newer`;
    return new TxtDbError("WATCH_OVERFLOW", `${e.message.replace(/; read the current state and watch from its revision \+ 1$/, "")}; ${hint}`, { cause: e, details: { ...e.details, ...(oldest === undefined ? {} : { resumeFrom: oldest }) } });
  }
  if (e instanceof TxtDbError && e.code === "UNAVAILABLE" && e.details?.resumeFrom !== undefined) {
    const message = e.message.replace(/; watch again from revision \d+ to miss nothing$/, "");
    return new TxtDbError("UNAVAILABLE", `${message}; watch again with { fromVersion: ${delivered}n } to miss nothing`, { cause: e, details: { ...e.details, resumeFrom: delivered } });
  }
  return e;
}
