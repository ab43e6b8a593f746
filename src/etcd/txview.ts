/**
 * The public Transaction and Snapshot over the etcd engine (tx.ts's TxView and SnapView):
 * the same argument checks, key and value encoding, and errors as the local engine's
 * (tx.ts), over an {@link EtcdTransaction} or a pinned {@link EtcdReader}, whose reads are
 * requests to etcd and so are awaited.
 *
 * Differences from the local engine, each failing clearly: `enqueue()` and `prepare()` are
 * UNSUPPORTED (queues and two-phase commit need a local store); a write to a namespace
 * that does not exist fails at `commit()` with NAMESPACE_NOT_FOUND, not at the write
 * (knowing it earlier would take a request per write).
 *
 * @module
 */
import { TxtDbError } from "../errors.ts";
import { decodeKey, encodeKey, PREFIX_END } from "../keys.ts";
import type { Key } from "../keys.ts";
import { encodeValue } from "../codec.ts";
import { expiryFromOptions, wrapExpiring } from "../expiry.ts";
import type { SetOptions } from "../expiry.ts";
import { checkNotReserved } from "../options.ts";
import { checkListOptions, decodeStored, selectorRange } from "../tx.ts";
import type { Entry, Isolation, ListOptions, ListSelector, SnapView, TxView } from "../tx.ts";
import type { Limits } from "../txstate.ts";
import { checkVersionArg } from "../txstate.ts";
import type { EtcdReader, StoredEntry } from "./reader.ts";
import type { EtcdTransaction } from "./transaction.ts";

/** What the views need from the database. */
export interface ViewContext {
  limits: Limits;
  readOnly: boolean;
  nowMs(): number;
  /** Throws CLOSED after close(). */
  ensureOpen(): void;
}

/** A namespace argument: a string, not reserved (as tx.ts's nsId checks). */
export function nsArg(ns: unknown): string {
  if (typeof ns !== "string") throw new TxtDbError("INVALID_ARGUMENT", `Namespace name must be a string, got ${typeof ns}`);
  checkNotReserved(ns);
  return ns;
}

/** [start, end) of a selector; end undefined when the selection runs to the namespace's end. */
export function selectorSpan(sel: ListSelector, maxKeyBytes: number, what: string): [string, string | undefined] {
  const [start, end] = selectorRange(sel, maxKeyBytes, what);
  return [start, end === PREFIX_END ? undefined : end];
}

/** A stored entry as the public Entry: key decoded, value decoded (a copy no one else holds). */
export function toPublicEntry<T>(ns: string, e: StoredEntry): Entry<T> {
  return { key: storedKey(ns, e.key), value: decodeStored(e.value, ns, e.key) as T, version: e.version };
}

/**
 * A key read from etcd, decoded: bytes that do not decode were written there outside
 * txtdb, which is CORRUPTION (as a value that does not decode is), not the caller's
 * INVALID_KEY.
 */
export function storedKey(ns: string, key: string): Key {
  try {
    return decodeKey(key);
  } catch (e) {
    const hex = Array.from(key.slice(0, 32), (c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join("");
    throw new TxtDbError("CORRUPTION", `A key of namespace "${ns}" in etcd does not decode (${(e as Error).message}; its bytes start ${hex}): the store's keys were changed outside txtdb. Run db.check(); restore from a backup of the cluster`, { cause: e, details: { ns } });
  }
}

/**
 * The public entries of `source`, failing on the first `next()` with what `source()`
 * throws. `usable` is checked at every `next()`: a list whose snapshot was released or
 * whose database was closed fails there with CLOSED, as on the local engine, instead of
 * yielding the rest of its page and reading further pages (which, once a compaction passed
 * the released revision, failed with INVALID_ARGUMENT).
 */
function entries<T>(ns: string, source: () => AsyncIterable<StoredEntry>, usable: () => void, onEnd?: () => void): AsyncIterableIterator<Entry<T>> {
  async function* gen(): AsyncGenerator<Entry<T>, void, undefined> {
    try {
      const it = source()[Symbol.asyncIterator]();
      try {
        for (;;) {
          usable();
          const r = await it.next();
          if (r.done) return;
          usable();
          yield toPublicEntry<T>(ns, r.value);
        }
      } finally {
        await it.return?.();
      }
    } finally {
      onEnd?.();
    }
  }
  return gen();
}

/** Reads shared by the snapshot and the database's own reads: over one EtcdReader. */
export class EtcdReadView {
  protected readonly ctx: ViewContext;
  protected readonly reader: EtcdReader;
  readonly #usable: () => void;

  constructor(ctx: ViewContext, reader: EtcdReader, usable: () => void) {
    this.ctx = ctx;
    this.reader = reader;
    this.#usable = usable;
  }

  #key(key: Key): string {
    return encodeKey(key, this.ctx.limits.maxKeyBytes);
  }

  async get<T = unknown>(ns: string, key: Key): Promise<T | undefined> {
    this.#usable();
    const k = this.#key(key);
    const e = await this.reader.get(nsArg(ns), k);
    return e === undefined ? undefined : (decodeStored(e.value, ns, k) as T);
  }

  async getEntry<T = unknown>(ns: string, key: Key): Promise<Entry<T> | undefined> {
    this.#usable();
    const e = await this.reader.get(nsArg(ns), this.#key(key));
    return e === undefined ? undefined : toPublicEntry<T>(ns, e);
  }

  async getMany<T = unknown>(ns: string, keys: Key[]): Promise<(T | undefined)[]> {
    this.#usable();
    if (!Array.isArray(keys)) throw new TxtDbError("INVALID_ARGUMENT", "getMany() needs an array of keys");
    const encoded = keys.map((k) => this.#key(k));
    const found = await this.reader.getMany(nsArg(ns), encoded);
    return found.map((e, i) => (e === undefined ? undefined : (decodeStored(e.value, ns, encoded[i]!) as T)));
  }

  async count(ns: string, sel: ListSelector): Promise<number> {
    this.#usable();
    const [start, end] = selectorSpan(sel, this.ctx.limits.maxKeyBytes, "count()");
    return await this.reader.count(nsArg(ns), start, end);
  }

  /** Streams the selection page by page (etcd/reader.ts) at the reader's revision. */
  list<T = unknown>(ns: string, sel: ListSelector, opts?: ListOptions, onEnd?: () => void): AsyncIterableIterator<Entry<T>> {
    return entries<T>(ns, () => {
      this.#usable();
      const [start, end] = selectorSpan(sel, this.ctx.limits.maxKeyBytes, "list()");
      const { limit, reverse } = checkListOptions(opts);
      return this.reader.range(nsArg(ns), start, end, { limit, reverse });
    }, this.#usable, onEnd);
  }
}

/** Releases the snapshots dropped without release() (their pins). */
const leakedSnapshots = new FinalizationRegistry<() => void>((release) => release());

/** A pinned snapshot on etcd (tx.ts SnapView). */
export class EtcdSnapView extends EtcdReadView implements SnapView {
  #released = false;
  readonly #onRelease: () => void;

  constructor(ctx: ViewContext, reader: EtcdReader, onRelease: () => void = () => {}) {
    super(ctx, reader, () => {
      ctx.ensureOpen();
      if (this.#released) throw new TxtDbError("CLOSED", "Snapshot was released; take a new one with db.snapshot()");
    });
    this.#onRelease = onRelease;
    // A snapshot dropped without release() gives its pin back when collected.
    leakedSnapshots.register(this, () => {
      reader.release();
      onRelease();
    }, this);
  }

  get version(): bigint {
    return this.reader.revision!;
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    leakedSnapshots.unregister(this);
    this.reader.release();
    this.#onRelease();
  }
}

/** Ends the transactions dropped unfinished (their pins). */
const leaked = new FinalizationRegistry<() => void>((end) => end());

/** A transaction on etcd (tx.ts TxView): checks and encodes, then {@link EtcdTransaction}. */
export class EtcdTxView implements TxView {
  readonly #ctx: ViewContext;
  readonly #tx: EtcdTransaction;
  readonly #onEnd: () => void;
  #committing = false;
  #finished: "committed" | "rolled back" | undefined;

  /** `onEnd` runs once when the transaction ends: committed, rolled back, or dropped unfinished. */
  constructor(ctx: ViewContext, tx: EtcdTransaction, onEnd: () => void = () => {}) {
    this.#ctx = ctx;
    this.#tx = tx;
    this.#onEnd = onEnd;
    // A transaction dropped without commit() or rollback() releases its pin when collected.
    leaked.register(this, () => {
      tx.rollback();
      onEnd();
    }, this);
  }

  #end(how: "committed" | "rolled back"): void {
    this.#finished = how;
    leaked.unregister(this);
    this.#onEnd();
  }

  get readVersion(): bigint {
    return this.#tx.readRevision;
  }

  get isolation(): Isolation {
    return this.#tx.isolation;
  }

  get finished(): boolean {
    return this.#finished !== undefined;
  }

  #usable(): void {
    this.#ctx.ensureOpen();
    if (this.#finished) throw new TxtDbError("INVALID_ARGUMENT", `Transaction was already ${this.#finished}; begin a new one`);
  }

  #writable(): void {
    this.#usable();
    if (this.#committing) throw new TxtDbError("INVALID_ARGUMENT", "Transaction is committing; it cannot take more writes");
    if (this.#ctx.readOnly) throw new TxtDbError("READ_ONLY", "Cannot write: the database was opened with readOnly: true");
  }

  #key(key: Key): string {
    return encodeKey(key, this.#ctx.limits.maxKeyBytes);
  }

  async get<T = unknown>(ns: string, key: Key): Promise<T | undefined> {
    this.#usable();
    const k = this.#key(key);
    const e = await this.#tx.get(nsArg(ns), k);
    return e === undefined ? undefined : (decodeStored(e.value, ns, k) as T);
  }

  async getEntry<T = unknown>(ns: string, key: Key): Promise<Entry<T> | undefined> {
    this.#usable();
    const e = await this.#tx.get(nsArg(ns), this.#key(key));
    return e === undefined ? undefined : toPublicEntry<T>(ns, e);
  }

  async getMany<T = unknown>(ns: string, keys: Key[]): Promise<(T | undefined)[]> {
    this.#usable();
    if (!Array.isArray(keys)) throw new TxtDbError("INVALID_ARGUMENT", "getMany() needs an array of keys");
    const encoded = keys.map((k) => this.#key(k));
    const found = await this.#tx.getMany(nsArg(ns), encoded);
    return found.map((e, i) => (e === undefined ? undefined : (decodeStored(e.value, ns, encoded[i]!) as T)));
  }

  /** Materialised, as the local engine's transactions do: own writes merged, the range recorded. */
  list<T = unknown>(ns: string, sel: ListSelector, opts?: ListOptions): AsyncIterableIterator<Entry<T>> {
    return entries<T>(ns, async function* (this: EtcdTxView) {
      this.#usable();
      const [start, end] = selectorSpan(sel, this.#ctx.limits.maxKeyBytes, "list()");
      const { limit, reverse } = checkListOptions(opts);
      yield* await this.#tx.range(nsArg(ns), start, end, { limit, reverse }, sel);
    }.bind(this), () => this.#usable()); // read whole at the first next(); each entry after it is a read of the transaction, as on the local engine
  }

  async count(ns: string, sel: ListSelector): Promise<number> {
    this.#usable();
    const [start, end] = selectorSpan(sel, this.#ctx.limits.maxKeyBytes, "count()");
    return await this.#tx.count(nsArg(ns), start, end, sel);
  }

  set(ns: string, key: Key, value: unknown, options?: SetOptions): void {
    this.#writable();
    const expiresAtMs = expiryFromOptions(options, this.#ctx.nowMs(), "set()");
    const k = this.#key(key);
    const encoded = encodeValue(value, this.#ctx.limits.maxValueBytes);
    this.#tx.set(nsArg(ns), k, expiresAtMs === undefined ? encoded : wrapExpiring(encoded, expiresAtMs));
  }

  delete(ns: string, key: Key): void {
    this.#writable();
    const k = this.#key(key);
    this.#tx.delete(nsArg(ns), k);
  }

  check(ns: string, key: Key, version: bigint | null): void {
    this.#writable();
    checkVersionArg(version);
    const k = this.#key(key);
    this.#tx.check(nsArg(ns), k, version);
  }

  sum(ns: string, key: Key, delta: number | bigint): void {
    this.#writable();
    this.#tx.sum(nsArg(ns), this.#key(key), delta);
  }

  enqueue(_queue: string, _value: unknown): string {
    this.#writable();
    throw new TxtDbError("UNSUPPORTED", "tx.enqueue(): queues need a store in a directory; the etcd backend has none (see the README, \"Scale-out beyond one machine\")");
  }

  async commit(): Promise<{ version: bigint }> {
    this.#usable();
    if (this.#committing) throw new TxtDbError("INVALID_ARGUMENT", "commit() was already called");
    this.#committing = true;
    try {
      const r = await this.#tx.commit();
      this.#end("committed");
      return r;
    } catch (e) {
      this.#end("rolled back");
      throw e;
    }
  }

  prepare(_txid: string): Promise<void> {
    return Promise.reject(new TxtDbError("UNSUPPORTED", "tx.prepare(): two-phase commit needs a store in a directory; the etcd backend has none (see the README, \"Scale-out beyond one machine\")"));
  }

  rollback(): void {
    if (this.#finished) return;
    this.#tx.rollback();
    this.#end("rolled back");
  }
}
