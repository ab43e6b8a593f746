/**
 * Transactions and snapshots: what a transaction read, wrote and checked, and the read
 * API over one snapshot plus the transaction's own writes.
 *
 * A transaction reads the state as of `readVersion` (a TSN: taking it is O(1)). Writes are
 * buffered here and only reach the log through the committer (commit.ts), which validates
 * them under the writer lock: serializable checks every key and range read, and every key
 * written; snapshot isolation checks only keys written.
 *
 * @module
 */
import { TxtDbError } from "./errors.ts";
import { binaryString, decodeKey, decodeKeyBytes, describeKey, encodeKey, PREFIX_END, prefixRange } from "./keys.ts";
import type { Key } from "./keys.ts";
import { decodeValue, decodeValueAt, encodeValue } from "./codec.ts";
import type { Index, RangeRowMaker, Version } from "./index.ts";
import { expiresAtOf, expiryFromOptions, isExpired, isExpiring, mayBeExpiringAt, valueBytesOf, wrapExpiring } from "./expiry.ts";
import type { SetOptions } from "./expiry.ts";
import type { EnqueueOptions } from "./queues.ts";
import { isReservedNamespace, readFields } from "./options.ts";
import type { PrepareOptions } from "./participant.ts";
import type { PinHandle } from "./pins.ts";
import { addNumeric, checkDelta, checkVersionArg, lostHistoryConflict, newTxState, noteExpiring, putWrite, recordRange, recordRead, sumOp } from "./txstate.ts";
import type { Limits, TxState, WriteOp } from "./txstate.ts";

export { addNumeric, newTxState } from "./txstate.ts";
export type { Limits, NamespaceRequest, TxState, WriteOp } from "./txstate.ts";

/** Isolation levels. */
export type Isolation = "serializable" | "snapshot";

/** A stored entry. */
export interface Entry<T = unknown> {
  /** The key, decoded (a one-element tuple key reads back as the element: `["a"]` is `"a"`). */
  key: Key;
  /** The value, a copy no one else holds. */
  value: T;
  /** The version (TSN) of the commit that wrote it; -1n for a transaction's own uncommitted write. */
  version: bigint;
}

/** Which keys a `list()` selects: a tuple prefix, and/or start (inclusive) and end (exclusive). */
export interface ListSelector {
  /** Keys that extend this tuple (not the prefix key itself); `[]` selects the whole namespace. */
  prefix?: Key | readonly never[];
  /** The first key selected (inclusive). */
  start?: Key;
  /** The key the selection ends before (exclusive). */
  end?: Key;
}

/** Options of `list()`. */
export interface ListOptions {
  /** At most this many entries (a non-negative integer; default: all). */
  limit?: number;
  /** In descending key order. */
  reverse?: boolean;
}

/** What readers need from the database engine. */
export interface ReadContext {
  index: Index;
  limits: Limits;
  /** Throws CLOSED after close(). */
  ensureOpen(): void;
}

/** Resolves the key range a selector denotes, as [start, end) binary strings. */
export function selectorRange(sel: ListSelector, maxKeyBytes: number, what = "list()"): [string, string] {
  if (sel === null || typeof sel !== "object" || Array.isArray(sel)) throw new TxtDbError("INVALID_ARGUMENT", `${what} needs a selector object: { prefix } and/or { start, end }`);
  // A misspelt field would otherwise select the whole namespace, silently. Each field is
  // read once (a getter that throws is INVALID_ARGUMENT, not its error).
  const f = readFields(what, sel, ["prefix", "start", "end"], (name) => new TxtDbError("INVALID_ARGUMENT", `${what} selector has no field ${JSON.stringify(name)}; a selector is { prefix } and/or { start, end }`)) as ListSelector;
  let start = "";
  let end = PREFIX_END;
  if (f.prefix !== undefined) [start, end] = prefixRange(f.prefix, maxKeyBytes);
  if (f.start !== undefined) {
    const s = encodeKey(f.start, maxKeyBytes);
    if (s > start) start = s;
  }
  if (f.end !== undefined) {
    const e = encodeKey(f.end, maxKeyBytes);
    if (e < end) end = e;
  }
  return [start, end];
}

/** Entries a streaming `list()` reads from the index at a time (bounds the work per `next()`). */
export const LIST_PAGE_ENTRIES = 256;

export function checkListOptions(opts: ListOptions | undefined): { limit: number; reverse: boolean } {
  if (opts !== undefined) {
    // null too, as set() refuses it: options computed as null by mistake are no options.
    if (opts === null || typeof opts !== "object" || Array.isArray(opts)) {
      throw new TxtDbError("INVALID_ARGUMENT", `list() options must be an object such as { limit: 10, reverse: true }, got ${opts === null ? "null" : Array.isArray(opts) ? "an array" : typeof opts}`);
    }
    // As set() does: a misspelt or foreign option (a cursor, say) would be ignored silently.
    // Each is read once (a getter that throws is INVALID_ARGUMENT, not its error).
    opts = readFields("list()", opts, ["limit", "reverse"], (name) => new TxtDbError("INVALID_ARGUMENT", `list() has no option ${JSON.stringify(name)}; its options are limit and reverse`)) as ListOptions;
  }
  // null is refused, not read as "no limit": a limit computed as null by mistake would
  // silently return everything.
  const given = opts?.limit;
  const limit = given === undefined ? Infinity : given;
  if (limit !== Infinity && (typeof limit !== "number" || !Number.isInteger(limit) || limit < 0)) {
    throw new TxtDbError("INVALID_ARGUMENT", `list() limit must be a non-negative integer (or Infinity: no limit), got ${limit === null ? "null" : typeof limit === "string" ? JSON.stringify(limit) : String(limit)}`);
  }
  const reverse = opts?.reverse ?? false;
  if (typeof reverse !== "boolean") throw new TxtDbError("INVALID_ARGUMENT", `list() reverse must be true or false, got ${typeof reverse === "string" ? JSON.stringify(reverse) : String(reverse)}`);
  return { limit, reverse };
}

/**
 * Decodes a value read from the store. Bytes that pass the log's checksum yet do not decode
 * (a damaged or crafted file) become CORRUPTION naming the namespace and key, never a raw
 * decoder error; `check()` finds the same values by file and offset.
 */
export function decodeStored(bytes: Uint8Array, ns: string, key: string): unknown {
  try {
    return decodeValue(valueBytesOf(bytes));
  } catch (e) {
    throw undecodable(e, ns, key);
  }
}

/** CORRUPTION for the value of `key` (a binary string) in `ns` that failed to decode with `e`. */
function undecodable(e: unknown, ns: string, key: string): TxtDbError {
  const k = decodeKey(key);
  const cause = e instanceof TxtDbError && e.cause !== undefined ? e.cause : e;
  return new TxtDbError(
    "CORRUPTION",
    `The value of key ${describeKey(k)} in namespace "${ns}" cannot be decoded (${(cause as Error)?.message ?? String(cause)}): the store is damaged. Run \`txtdb check\` to find the file and offset; restore from a backup if it persists`,
    { cause, details: { ns, key: k } },
  );
}

function toEntry<T>(ns: string, key: string, v: Version): Entry<T> {
  return { key: decodeKey(key), value: decodeStored(v.value, ns, key) as T, version: BigInt(v.tsn) };
}

/**
 * Makes the entries of a streaming list's pages (Index.rangeRows): from a table block's
 * bytes when the tables alone answer, without the key string, value view and [key,
 * version] pair per entry that {@link toEntry} needs; consecutive entries of one commit
 * share their version's bigint (a fold writes many keys at one TSN).
 */
class EntryMaker<T> implements RangeRowMaker<Entry<T>> {
  lastKey: string | undefined = undefined;
  readonly #ns: string;
  readonly #index: Index;
  #tsn = -1;
  #version = 0n;

  constructor(ns: string, index: Index) {
    this.#ns = ns;
    this.#index = index;
  }

  #versionOf(tsn: number): bigint {
    if (tsn !== this.#tsn) {
      this.#tsn = tsn;
      this.#version = BigInt(tsn);
    }
    return this.#version;
  }

  row(key: Uint8Array, keyLen: number, tsn: number, bytes: Uint8Array, valueAt: number, valueLen: number): Entry<T> | undefined {
    let value: unknown;
    if (mayBeExpiringAt(bytes, valueAt)) {
      // Rare: decide on a view of the value itself, as every other read does.
      const view = bytes.subarray(valueAt, valueAt + valueLen);
      if (isExpired(view, this.#index.wallClockMs())) return undefined;
      value = decodeStored(view, this.#ns, binaryString(key, 4, keyLen));
    } else {
      try {
        value = decodeValueAt(bytes, valueAt, valueAt + valueLen);
      } catch (e) {
        throw undecodable(e, this.#ns, binaryString(key, 4, keyLen));
      }
    }
    // The key's bytes past the namespace id.
    return { key: decodeKeyBytes(key, 4, keyLen), value: value as T, version: this.#versionOf(tsn) };
  }

  fromVersion(key: string, tsn: number, value: Uint8Array): Entry<T> {
    return { key: decodeKey(key), value: decodeStored(value, this.#ns, key) as T, version: this.#versionOf(tsn) };
  }
}

/**
 * The read API over one fixed snapshot; transactions add their own writes on top.
 * Used by `Transaction` and `Snapshot`.
 */
export abstract class SnapshotReader {
  protected readonly ctx: ReadContext;
  protected readonly snap: number;

  constructor(ctx: ReadContext, snap: number) {
    this.ctx = ctx;
    this.snap = snap;
  }

  /** Checks the reader can be used; throws otherwise. */
  protected abstract usable(): void;

  /**
   * Hook: a use of the reader that does not check it (each `next()` of its lists): a
   * snapshot or transaction read steadily through a list is in use, not idle (maxIdleMs).
   */
  protected noteUse(): void {}

  /** The namespace id at this snapshot, or NAMESPACE_NOT_FOUND. */
  protected nsId(ns: string): number {
    if (typeof ns !== "string") throw new TxtDbError("INVALID_ARGUMENT", `Namespace name must be a string, got ${typeof ns}`);
    if (isReservedNamespace(ns)) {
      throw new TxtDbError("INVALID_ARGUMENT", `Namespace name ${JSON.stringify(ns)} is reserved: names starting with U+0000 and "txtdb." belong to txtdb itself (queues); use the queue methods`);
    }
    const id = this.ctx.index.resolve(ns, this.snap);
    if (id === undefined) {
      throw new TxtDbError("NAMESPACE_NOT_FOUND", `Namespace "${ns}" does not exist (at version ${this.snap}); create it with createNamespace("${ns}") or the namespaces open option`, {
        details: { ns },
      });
    }
    return id;
  }

  /**
   * Hook: a transaction records reads and overlays its writes. The value returned is
   * borrowed (Index.get): its callers (entryOf, valueOf) decode it before any other read.
   */
  protected readKey(ns: string, id: number, key: string): Version | undefined | { pending: WriteOp; base: Version | undefined } {
    return this.ctx.index.get(id, key, this.snap, true);
  }

  protected entryOf<T>(ns: string, key: string): Entry<T> | undefined {
    const id = this.nsId(ns);
    const r = this.readKey(ns, id, key);
    if (r === undefined) return undefined;
    if ("pending" in r) {
      const op = r.pending;
      if (op.kind === "delete") return undefined;
      if (op.kind === "set" && isExpired(op.value, this.ctx.index.wallClockMs())) return undefined;
      if (op.kind === "set") return { key: decodeKey(key), value: decodeStored(op.value, ns, key) as T, version: -1n };
      const base = r.base ? decodeStored(r.base.value, ns, key) : 0;
      const value = r.base ? addNumeric(base, op.delta, `key ${describeKey(decodeKey(key))}`) : op.delta;
      return { key: decodeKey(key), value: value as T, version: -1n };
    }
    return toEntry<T>(ns, key, r);
  }

  /** The value only: no Entry, no key decoding (the hot path of `get`). */
  protected valueOf<T>(ns: string, key: string): T | undefined {
    const r = this.readKey(ns, this.nsId(ns), key);
    if (r === undefined) return undefined;
    if ("pending" in r) return this.entryOf<T>(ns, key)?.value;
    return decodeStored(r.value, ns, key) as T;
  }

  /** The value of `key` in namespace `ns`, or undefined. */
  get<T = unknown>(ns: string, key: Key): Promise<T | undefined> {
    try {
      this.usable();
      return Promise.resolve(this.valueOf<T>(ns, encodeKey(key, this.ctx.limits.maxKeyBytes)));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The entry (key, value, version) of `key`, or undefined. Own uncommitted writes have version -1n. */
  getEntry<T = unknown>(ns: string, key: Key): Promise<Entry<T> | undefined> {
    try {
      this.usable();
      return Promise.resolve(this.entryOf<T>(ns, encodeKey(key, this.ctx.limits.maxKeyBytes)));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The values of several keys, in order. */
  getMany<T = unknown>(ns: string, keys: Key[]): Promise<(T | undefined)[]> {
    try {
      this.usable();
      if (!Array.isArray(keys)) throw new TxtDbError("INVALID_ARGUMENT", "getMany() needs an array of keys");
      const encoded = keys.map((k) => encodeKey(k, this.ctx.limits.maxKeyBytes));
      // No keys still reads the namespace (NAMESPACE_NOT_FOUND; in a transaction, touched),
      // as every read does and the etcd engine's did.
      if (encoded.length === 0) this.nsId(ns);
      return Promise.resolve(encoded.map((k) => this.valueOf<T>(ns, k)));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * The number of live keys in a selection (`{ prefix }` and/or `{ start, end }`, as for
   * `list()`) at this reader's version. Values are not read or decoded: the cost is a walk
   * over the keys of the selection, in this turn of the event loop. In a transaction the
   * count includes the transaction's own writes, and the range counts as read, as for
   * `list()`: a commit of another process that changes a key in it makes this one conflict.
   */
  count(ns: string, sel: ListSelector): Promise<number> {
    try {
      this.usable();
      const id = this.nsId(ns);
      const [start, end] = selectorRange(sel, this.ctx.limits.maxKeyBytes, "count()");
      return Promise.resolve(this.countRange(ns, id, start, end, sel));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Hook: a transaction adds its own writes and records the range read. */
  protected countRange(_ns: string, id: number, start: string, end: string, _sel: ListSelector): number {
    return start < end ? this.ctx.index.count(id, start, end, this.snap) : 0;
  }

  /** Hook: a transaction records the range read and merges its writes. */
  protected listRange(ns: string, id: number, start: string, end: string, reverse: boolean, limit: number, _sel: ListSelector): [string, Entry<unknown>][] {
    return this.ctx.index.range(id, start, end, this.snap, reverse, limit).map(([k, v]) => [k, toEntry(ns, k, v)]);
  }

  /**
   * Hook: whether `list()` may stream (read the index page by page as the consumer asks).
   * A transaction materialises its selection instead: it merges its own writes and records
   * the range it read for validation.
   */
  protected streamsLists(): boolean {
    return true;
  }

  /**
   * Hook: keeps this reader's version readable while a list streams across event-loop
   * turns (a snapshot is pinned already; a reader on `db` pins for the list's lifetime).
   * Returns the release and `touch`, which each `next()` calls (a list read steadily is in
   * use, never idle), or undefined when nothing needs holding. `onLost` is called if the
   * hold is taken away (the idle sweep, lost history), after which the list fails.
   */
  protected holdForStream(_onLost: (why: string) => void): { release: () => void; touch: () => void } | undefined {
    return undefined;
  }

  /**
   * Entries in a selection, in key order (or reversed). On `db` and snapshots the entries
   * are read from the index {@link LIST_PAGE_ENTRIES} at a time as the consumer asks, so a
   * large selection neither stalls the event loop nor grows memory before its first entry;
   * the list still shows one version, the one it began at. Stop early with `return()` (a
   * `break` out of `for await` does it) so that a list on `db` releases its pin at once.
   */
  list<T = unknown>(ns: string, sel: ListSelector, opts?: ListOptions): AsyncIterableIterator<Entry<T>> {
    if (!this.streamsLists()) return this.#materialisedList<T>(ns, sel, opts);
    let page: Entry<T>[] = [];
    let i = 0;
    let error: unknown;
    let exhausted = false;
    let release: (() => void) | undefined;
    let touch: (() => void) | undefined;
    let lost: string | undefined;
    let after: string | undefined;
    let remaining = 0;
    let id = 0, start = "", end = "", reverse = false;
    const finish = () => {
      exhausted = true;
      page = [];
      release?.();
      release = touch = undefined;
    };
    let make: EntryMaker<T> | undefined;
    const fetch = () => {
      const want = Math.min(remaining, LIST_PAGE_ENTRIES);
      make ??= new EntryMaker<T>(ns, this.ctx.index);
      page = want > 0 && start < end ? this.ctx.index.rangeRows(id, start, end, this.snap, reverse, want, after, make) : [];
      i = 0;
      remaining -= page.length;
      if (page.length < want || remaining <= 0) {
        exhausted = true;
        release?.();
        release = touch = undefined;
      } else {
        after = make.lastKey;
        if (release === undefined) ({ release, touch } = this.holdForStream((why) => void (lost = why)) ?? {});
      }
    };
    try {
      this.usable();
      id = this.nsId(ns);
      [start, end] = selectorRange(sel, this.ctx.limits.maxKeyBytes);
      ({ reverse, limit: remaining } = checkListOptions(opts));
      fetch();
    } catch (e) {
      error = e;
    }
    const it: AsyncIterableIterator<Entry<T>> = {
      next: () => {
        if (error !== undefined) {
          const e = error;
          error = undefined;
          finish();
          return Promise.reject(e);
        }
        // Each next() is a use of the list's pin: a list read steadily, however slowly in
        // all, is never released as idle (and so never loses its version) mid-way.
        if (lost === undefined) touch?.();
        this.noteUse();
        if (i < page.length) {
          // The rest of a page read ahead is served only while the list may still read: a
          // list released as idle, or whose snapshot was released or database closed, fails
          // at its next next() as documented, not one page later.
          try {
            if (lost !== undefined) throw new TxtDbError("CLOSED", lost);
            this.usable();
          } catch (e) {
            finish();
            return Promise.reject(e);
          }
          return Promise.resolve({ done: false, value: page[i++]! });
        }
        if (exhausted) {
          finish();
          return Promise.resolve({ done: true, value: undefined });
        }
        try {
          if (lost !== undefined) throw new TxtDbError("CLOSED", lost);
          this.usable();
          fetch();
        } catch (e) {
          finish();
          return Promise.reject(e);
        }
        if (i < page.length) return Promise.resolve({ done: false, value: page[i++]! });
        finish();
        return Promise.resolve({ done: true, value: undefined });
      },
      return: () => {
        finish();
        return Promise.resolve({ done: true, value: undefined });
      },
      [Symbol.asyncIterator]() {
        return it;
      },
    };
    return it;
  }

  #materialisedList<T>(ns: string, sel: ListSelector, opts?: ListOptions): AsyncIterableIterator<Entry<T>> {
    let entries: Entry<T>[] | undefined;
    let error: unknown;
    try {
      this.usable();
      const id = this.nsId(ns);
      const [start, end] = selectorRange(sel, this.ctx.limits.maxKeyBytes);
      const { limit, reverse } = checkListOptions(opts);
      entries = start < end ? this.listRange(ns, id, start, end, reverse, limit, sel).map(([, e]) => e as Entry<T>) : [];
    } catch (e) {
      error = e;
    }
    let i = 0;
    const it: AsyncIterableIterator<Entry<T>> = {
      next: () => {
        if (error !== undefined) {
          const e = error;
          error = undefined;
          entries = [];
          return Promise.reject(e);
        }
        if (!entries || i >= entries.length) return Promise.resolve({ done: true, value: undefined });
        try {
          // As any read of the transaction: once it is committed, rolled back or released,
          // or its database closed, the list fails at its next entry (it went on yielding
          // the entries it had read, as if the transaction still stood).
          this.usable();
        } catch (e) {
          entries = [];
          return Promise.reject(e);
        }
        return Promise.resolve({ done: false, value: entries[i++]! });
      },
      return: () => {
        entries = [];
        return Promise.resolve({ done: true, value: undefined });
      },
      [Symbol.asyncIterator]() {
        return it;
      },
    };
    return it;
  }
}

/** What a transaction needs from the database to commit. */
export interface TxHost extends ReadContext {
  commit(state: TxState): Promise<number>;
  /**
   * Takes back the commit of `state` if it has not reached the writer lock yet: it rejects
   * with `error` and nothing of it is written. False if it is under way (or unknown).
   */
  takeBack?(state: TxState, error: unknown): boolean;
  /** Adds a queue message to the transaction's writes (queues.ts); returns its id. */
  enqueue(state: TxState, queue: string, value: unknown, options?: EnqueueOptions): string;
  /** Two-phase commit: validates and durably records `state` as prepared (participant.ts). */
  prepare(state: TxState, txid: string, options?: PrepareOptions): Promise<void>;
  readOnly: boolean;
  /** Pins a read version (so compaction keeps it); `expire` runs if it idles past maxIdleMs. */
  pin(version: number, kind: string, expire?: (idleMs: number) => void): PinHandle;
}

/** Releases the pin of a transaction that was dropped without commit() or rollback(). */
const leakedPins = new FinalizationRegistry<() => void>((unpin) => unpin());

/** The engine of a {@link Transaction}: its reads, buffered writes and commit. */
class TxReader extends SnapshotReader {
  readonly #host: TxHost;
  readonly #state: TxState;
  #finished: "committed" | "rolled back" | "prepared" | undefined;
  #committing = false;
  readonly #unpin: () => void;
  readonly #touch: () => void;
  readonly #hold: () => () => void;
  readonly #expiry: { idleMs: number | undefined } = { idleMs: undefined };

  constructor(host: TxHost, readVersion: number, isolation: Isolation) {
    super(host, readVersion);
    this.#host = host;
    this.#state = newTxState(readVersion, isolation, false);
    // The pin's expiry reaches this transaction through a small shared flag, never a
    // reference to it: the pin registry must not keep a dropped transaction alive (its
    // FinalizationRegistry entry releases the pin), and a WeakRef would keep its target
    // alive until the current job ends, which a loop of commits may never do.
    const expiry = this.#expiry;
    const { release, touch, hold } = host.pin(readVersion, "transaction", (idleMs) => void (expiry.idleMs = idleMs));
    this.#unpin = release;
    this.#touch = touch;
    this.#hold = hold;
    // The committer's look at the pin (TxState.pinEnded): the flag, not this reader.
    this.#state.pinEnded = () => expiry.idleMs !== undefined;
    leakedPins.register(this, release, this);
  }

  #finish(how: "committed" | "rolled back" | "prepared"): void {
    this.#finished = how;
    leakedPins.unregister(this);
    this.#unpin();
  }

  /** The snapshot (TSN) this transaction reads. */
  get readVersion(): bigint {
    return BigInt(this.snap);
  }

  /** The isolation level. */
  get isolation(): Isolation {
    return this.#state.isolation;
  }

  protected usable(): void {
    this.ctx.ensureOpen();
    if (this.#expiry.idleMs !== undefined && !this.#finished) {
      // The idle sweep released the pin: this transaction is over.
      this.#finished = "rolled back";
      leakedPins.unregister(this);
    }
    if (this.#expiry.idleMs !== undefined) {
      if (this.#expiry.idleMs < 0) {
        // Its snapshot's history is gone (compacted while this process held no lease):
        // retryable, like any transaction whose reads can no longer be validated.
        throw lostHistoryConflict();
      }
      throw new TxtDbError("TIMEOUT", `Transaction was released after ${Math.round(this.#expiry.idleMs)} ms unused (maxIdleMs); begin a new one`);
    }
    if (this.#finished) throw new TxtDbError("INVALID_ARGUMENT", `Transaction was already ${this.#finished}; begin a new one`);
    this.#touch();
  }

  protected override noteUse(): void {
    if (this.#finished === undefined && this.#expiry.idleMs === undefined) this.#touch();
  }

  #writable(): void {
    this.usable();
    if (this.#committing) throw new TxtDbError("INVALID_ARGUMENT", "Transaction is committing; it cannot take more writes");
    if (this.#host.readOnly) throw new TxtDbError("READ_ONLY", "Cannot write: the database was opened with readOnly: true");
  }

  #recordRead(ns: string, key: string): void {
    recordRead(this.#state, ns, key);
  }

  /** A serializable read saw a version present that expires later (expiry.ts, rule 3). */
  #noteExpiring(ns: string, key: string, tsn: number, expiresAtMs: number): void {
    noteExpiring(this.#state, ns, key, tsn, expiresAtMs);
  }

  protected override nsId(ns: string): number {
    let id: number;
    try {
      id = super.nsId(ns);
    } catch (e) {
      // Found missing is read too: the namespace is touched, so that its creation by a
      // commit after this snapshot makes this transaction conflict (commit.ts validate()).
      // Without it, one that read "x" as missing and another that created "x" both
      // committed, each unseen by the other: no serial order gives that.
      if (e instanceof TxtDbError && e.code === "NAMESPACE_NOT_FOUND") this.#state.touched.add(ns);
      throw e;
    }
    this.#state.touched.add(ns);
    return id;
  }

  protected override readKey(ns: string, id: number, key: string): Version | undefined | { pending: WriteOp; base: Version | undefined } {
    const pending = this.#state.writes.get(ns)?.get(key);
    if (pending && pending.kind !== "sum") return { pending, base: undefined };
    this.#recordRead(ns, key);
    const base = this.ctx.index.get(id, key, this.snap, true); // borrowed: see SnapshotReader.readKey
    if (base !== undefined && isExpiring(base.value)) this.#noteExpiring(ns, key, base.tsn, expiresAtOf(base.value));
    return pending ? { pending, base } : base;
  }

  protected override streamsLists(): boolean {
    return false;
  }

  protected override listRange(ns: string, id: number, start: string, end: string, reverse: boolean, limit: number, sel: ListSelector): [string, Entry<unknown>][] {
    const own = this.#state.writes.get(ns);
    const ownKeys = own ? [...own.keys()].filter((k) => k >= start && k < end) : [];
    const fromIndex = this.ctx.index.range(id, start, end, this.snap, reverse, limit === Infinity ? Infinity : limit + ownKeys.length);
    const merged = new Map<string, Entry<unknown> | undefined>();
    for (const [k, v] of fromIndex) merged.set(k, toEntry(ns, k, v));
    for (const k of ownKeys) merged.set(k, this.entryOf(ns, k));
    const keys = [...merged.keys()].sort();
    if (reverse) keys.reverse();
    const out: [string, Entry<unknown>][] = [];
    const read = new Map<string, Version>();
    for (const [k, v] of fromIndex) if (isExpiring(v.value)) read.set(k, v);
    for (const k of keys) {
      // Checked before the push: with limit 0 nothing is returned (one entry used to be).
      if (out.length >= limit) break;
      const e = merged.get(k);
      if (e) {
        out.push([k, e]);
        const v = own?.has(k) ? undefined : read.get(k);
        if (v) this.#noteExpiring(ns, k, v.tsn, expiresAtOf(v.value));
      }
    }
    recordRange(this.#state, ns, start, end, sel, out.map(([k]) => k), limit, reverse);
    return out;
  }

  protected override countRange(ns: string, id: number, start: string, end: string, sel: ListSelector): number {
    if (start >= end) return 0;
    const own = this.#state.writes.get(ns);
    const onExpiring = this.#state.isolation === "serializable"
      ? (k: string, v: Version, at: number) => {
        if (own?.has(k) !== true) this.#noteExpiring(ns, k, v.tsn, at);
      }
      : undefined;
    let n = this.ctx.index.count(id, start, end, this.snap, onExpiring);
    if (own) {
      const now = this.ctx.index.wallClockMs();
      for (const [k, op] of own) {
        if (k < start || k >= end) continue;
        const before = this.ctx.index.get(id, k, this.snap, true) !== undefined;
        // A sum on an absent key creates it; an own set that has expired is absent.
        const after = op.kind === "sum" || (op.kind === "set" && !isExpired(op.value, now));
        n += (after ? 1 : 0) - (before ? 1 : 0);
      }
    }
    if (this.#state.isolation === "serializable") this.#state.ranges.push({ ns, start, end, selector: sel });
    return n;
  }

  #put(ns: string, key: string, op: WriteOp, addedBytes: number): void {
    putWrite(this.#state, this.ctx.limits, ns, key, op, addedBytes);
  }

  /** Buffers a write of `value` to `key`; `expireIn` makes it expire (expiry.ts). */
  set(ns: string, key: Key, value: unknown, options?: SetOptions): void {
    this.#writable();
    const expiresAtMs = expiryFromOptions(options, this.ctx.index.wallClockMs(), "set()");
    const k = encodeKey(key, this.ctx.limits.maxKeyBytes);
    const encoded = encodeValue(value, this.ctx.limits.maxValueBytes);
    const v = expiresAtMs === undefined ? encoded : wrapExpiring(encoded, expiresAtMs);
    this.nsId(ns);
    this.#put(ns, k, { kind: "set", value: v }, k.length + v.length);
  }

  /** Buffers a delete of `key`. */
  delete(ns: string, key: Key): void {
    this.#writable();
    const k = encodeKey(key, this.ctx.limits.maxKeyBytes);
    this.nsId(ns);
    this.#put(ns, k, { kind: "delete" }, k.length);
  }

  /** Commit fails with CONFLICT unless `key`'s committed version is `version` (null: absent). */
  check(ns: string, key: Key, version: bigint | null): void {
    this.#writable();
    checkVersionArg(version);
    const k = encodeKey(key, this.ctx.limits.maxKeyBytes);
    this.nsId(ns);
    this.#state.checks.push({ ns, key: k, version: version === null ? null : Number(version) });
  }

  /** Adds `delta` to the number stored at `key` at commit time; concurrent sums never conflict. */
  sum(ns: string, key: Key, delta: number | bigint): void {
    this.#writable();
    checkDelta(delta);
    const k = encodeKey(key, this.ctx.limits.maxKeyBytes);
    this.nsId(ns);
    this.#put(ns, k, sumOp(this.#state.writes.get(ns)?.get(k), delta, ns, k, this.ctx.index.wallClockMs()), k.length + 16);
  }

  /** Adds a message to a queue, written if and when this transaction commits; returns its id. */
  enqueue(queue: string, value: unknown, options?: EnqueueOptions): string {
    this.#writable();
    return this.#host.enqueue(this.#state, queue, value, options);
  }

  /** Validates and writes. Read-only transactions resolve at once with their read version. */
  async commit(): Promise<{ version: bigint }> {
    this.usable();
    if (this.#committing) throw new TxtDbError("INVALID_ARGUMENT", "commit() was already called");
    const s = this.#state;
    if (s.writeCount === 0 && s.namespaceOps.length === 0 && s.checks.length === 0) {
      this.#finish("committed");
      return { version: this.readVersion };
    }
    this.#committing = true;
    // The read version stays pinned, and in use, until the commit is decided: however long
    // it waits for the writer lock, no compaction anywhere folds what its validation reads
    // (a delete committed after readVersion, whose tombstone a fold may drop).
    const unhold = this.#hold();
    try {
      const tsn = await this.#host.commit(s);
      this.#finish("committed");
      return { version: BigInt(tsn) };
    } catch (e) {
      this.#finish("rolled back");
      throw e;
    } finally {
      unhold();
    }
  }

  /**
   * Two-phase commit: validates like commit() and durably records the transaction as
   * prepared under `txid` (participant.ts); it is then decided by `db.commitPrepared(txid)`
   * or `db.abortPrepared(txid)`, in any process. The transaction is finished either way.
   */
  async prepare(txid: string, options?: PrepareOptions): Promise<void> {
    this.usable();
    if (this.#committing) throw new TxtDbError("INVALID_ARGUMENT", "commit() or prepare() was already called");
    // A queue message is decided at the head when its transaction commits (queuestore.ts);
    // a prepare record cannot carry that work to a later decision.
    if (this.#state.atHead) {
      throw new TxtDbError("INVALID_ARGUMENT", "A transaction that enqueues messages cannot be prepared: enqueue them after commitPrepared(), or in a transaction of their own");
    }
    this.#committing = true;
    // Pinned and in use until validated and recorded, as for commit().
    const unhold = this.#hold();
    try {
      await this.#host.prepare(this.#state, txid, options);
      this.#finish("prepared");
    } catch (e) {
      this.#finish("rolled back");
      throw e;
    } finally {
      unhold();
    }
  }

  /**
   * Discards the transaction's writes. Safe to call more than once. While commit() is under
   * way, the commit is taken back if it has not reached the writer lock (commit() then
   * rejects and nothing is written); past that point the commit decides, and this changes
   * nothing. (It used to mark the transaction rolled back and let the commit go on.)
   */
  rollback(): void {
    if (this.#finished) return;
    if (this.#committing) {
      const error = new TxtDbError("INVALID_ARGUMENT", "Transaction was rolled back while its commit waited for the writer lock; nothing was written");
      this.#host.takeBack?.(this.#state, error); // on success commit() rejects and finishes it
      return;
    }
    this.#finish("rolled back");
  }

  /** True once committed or rolled back. */
  get finished(): boolean {
    return this.#finished !== undefined;
  }
}

/** The engine of a {@link Snapshot}: reads at its version while its pin lasts. */
class SnapReader extends SnapshotReader {
  #released = false;
  #expired: string | undefined;
  readonly #onRelease: () => void;
  readonly #touch: () => void;

  constructor(ctx: ReadContext, snap: number, onRelease: () => void, touch: () => void = () => {}) {
    super(ctx, snap);
    this.#onRelease = onRelease;
    this.#touch = touch;
  }

  /** Released by the idle sweep. */
  expire(idleMs: number, maxIdleMs: number): void {
    this.#released = true;
    this.#expired = idleMs < 0
      ? "Snapshot was ended: another process compacted away the history it reads while this process held no lease to pin it (see the README on leases); take a new one with db.snapshot()"
      : `Snapshot was released after ${Math.round(idleMs)} ms unused (maxIdleMs ${maxIdleMs}); take a new one with db.snapshot()`;
  }

  /** The version this snapshot reads. */
  get version(): bigint {
    return BigInt(this.snap);
  }

  protected usable(): void {
    this.ctx.ensureOpen();
    if (this.#released) throw new TxtDbError("CLOSED", this.#expired ?? "Snapshot was released; take a new one with db.snapshot()");
    this.#touch();
  }

  protected override noteUse(): void {
    if (!this.#released) this.#touch();
  }

  /** Releases the pin. Safe to call more than once. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#onRelease();
  }
}

/**
 * What a {@link Transaction} hands its calls to: the local engine's TxReader here, or the
 * etcd engine's (etcd/txview.ts). Same arguments, results and errors as the public methods.
 */
export interface TxView {
  readonly readVersion: bigint;
  readonly isolation: Isolation;
  readonly finished: boolean;
  get<T = unknown>(ns: string, key: Key): Promise<T | undefined>;
  getEntry<T = unknown>(ns: string, key: Key): Promise<Entry<T> | undefined>;
  getMany<T = unknown>(ns: string, keys: Key[]): Promise<(T | undefined)[]>;
  list<T = unknown>(ns: string, sel: ListSelector, opts?: ListOptions): AsyncIterableIterator<Entry<T>>;
  count(ns: string, sel: ListSelector): Promise<number>;
  set(ns: string, key: Key, value: unknown, options?: SetOptions): void;
  delete(ns: string, key: Key): void;
  check(ns: string, key: Key, version: bigint | null): void;
  sum(ns: string, key: Key, delta: number | bigint): void;
  enqueue(queue: string, value: unknown, options?: EnqueueOptions): string;
  commit(): Promise<{ version: bigint }>;
  prepare(txid: string, options?: PrepareOptions): Promise<void>;
  rollback(): void;
}

/** What a {@link Snapshot} hands its calls to (the local SnapReader, or etcd/txview.ts's). */
export interface SnapView {
  readonly version: bigint;
  get<T = unknown>(ns: string, key: Key): Promise<T | undefined>;
  getEntry<T = unknown>(ns: string, key: Key): Promise<Entry<T> | undefined>;
  getMany<T = unknown>(ns: string, keys: Key[]): Promise<(T | undefined)[]>;
  list<T = unknown>(ns: string, sel: ListSelector, opts?: ListOptions): AsyncIterableIterator<Entry<T>>;
  count(ns: string, sel: ListSelector): Promise<number>;
  release(): void;
}

/**
 * Makes the {@link Transaction} of a database (its constructor is not public): for
 * `db.begin()` and `db.transaction()`.
 */
export let newTransaction: (host: TxHost, readVersion: number, isolation: Isolation) => Transaction;
/** Makes the {@link Transaction} over another engine's view (etcd/txview.ts). */
export let wrapTransaction: (view: TxView) => Transaction;
/** Makes the {@link Snapshot} over another engine's view (etcd/txview.ts). */
export let wrapSnapshot: (view: SnapView) => Snapshot;
/**
 * The transaction `tx` as a function run by someone else who commits it (a Coordinator):
 * every call goes to `tx` but commit() and prepare(), which reject with INVALID_ARGUMENT
 * saying `refusal` (a commit of one store inside a transaction across stores broke its
 * all-or-nothing). rollback() still works: the owner's commit then fails, and so does all.
 */
export let withoutCommit: (tx: Transaction, refusal: string) => Transaction;

/**
 * Makes the {@link Snapshot} of a database (its constructor is not public), and the idle
 * sweep's way to end one: for `db.snapshot()`.
 */
export let newSnapshot: (ctx: ReadContext, version: number, onRelease: () => void, touch?: () => void) => Snapshot;
/** Ends a snapshot the idle sweep released (or whose history another process compacted away). */
export let expireSnapshot: (snap: Snapshot, idleMs: number, maxIdleMs: number) => void;

/**
 * A transaction: reads one snapshot (`readVersion`) plus its own writes; `commit()`
 * validates and writes. Get one with `db.begin()`, or let `db.transaction(fn)` run, commit
 * and retry it.
 *
 * @example
 * ```ts
 * const tx = await db.begin();
 * const n = (await tx.get<number>("counters", "hits")) ?? 0;
 * tx.set("counters", "hits", n + 1);
 * await tx.commit();
 * ```
 */
export class Transaction {
  #tx!: TxView;

  static {
    wrapTransaction = (view) => {
      const t = new Transaction();
      t.#tx = view;
      return t;
    };
    newTransaction = (host, readVersion, isolation) => wrapTransaction(new TxReader(host, readVersion, isolation));
    withoutCommit = (tx, refusal) => {
      const inner = tx.#tx;
      const refuse = () => Promise.reject(new TxtDbError("INVALID_ARGUMENT", refusal));
      return wrapTransaction({
        get readVersion() {
          return inner.readVersion;
        },
        get isolation() {
          return inner.isolation;
        },
        get finished() {
          return inner.finished;
        },
        get: (ns, key) => inner.get(ns, key),
        getEntry: (ns, key) => inner.getEntry(ns, key),
        getMany: (ns, keys) => inner.getMany(ns, keys),
        list: (ns, sel, opts) => inner.list(ns, sel, opts),
        count: (ns, sel) => inner.count(ns, sel),
        set: (ns, key, value, options) => inner.set(ns, key, value, options),
        delete: (ns, key) => inner.delete(ns, key),
        check: (ns, key, version) => inner.check(ns, key, version),
        sum: (ns, key, delta) => inner.sum(ns, key, delta),
        enqueue: (queue, value, options) => inner.enqueue(queue, value, options),
        commit: refuse,
        prepare: refuse,
        rollback: () => inner.rollback(),
      });
    };
  }

  private constructor() {}

  /** The snapshot (version) this transaction reads. */
  get readVersion(): bigint {
    return this.#tx.readVersion;
  }

  /** The isolation level: "serializable" or "snapshot". */
  get isolation(): Isolation {
    return this.#tx.isolation;
  }

  /** True once committed or rolled back. */
  get finished(): boolean {
    return this.#tx.finished;
  }

  /** The value of `key` in namespace `ns` at `readVersion`, with this transaction's writes; or undefined. */
  get<T = unknown>(ns: string, key: Key): Promise<T | undefined> {
    return this.#tx.get<T>(ns, key);
  }

  /** The entry (key, value, version) of `key`, or undefined. Own uncommitted writes have version -1n. */
  getEntry<T = unknown>(ns: string, key: Key): Promise<Entry<T> | undefined> {
    return this.#tx.getEntry<T>(ns, key);
  }

  /** The values of several keys, in order. */
  getMany<T = unknown>(ns: string, keys: Key[]): Promise<(T | undefined)[]> {
    return this.#tx.getMany<T>(ns, keys);
  }

  /**
   * Entries in a selection, in key order (or reversed), with this transaction's writes
   * merged in. A serializable transaction records the range it read: a commit by another
   * that changes a key in it makes this one fail with CONFLICT.
   */
  list<T = unknown>(ns: string, sel: ListSelector, opts?: ListOptions): AsyncIterableIterator<Entry<T>> {
    return this.#tx.list<T>(ns, sel, opts);
  }

  /**
   * The number of live keys in a selection, this transaction's writes included; values are
   * not read. A serializable transaction records the range as read, as `list()` does.
   */
  count(ns: string, sel: ListSelector): Promise<number> {
    return this.#tx.count(ns, sel);
  }

  /**
   * Buffers a write of `value` to `key`. With `{ expireIn: ms }` the key reads as absent,
   * in every process, from `ms` milliseconds after this call on; without it, an earlier
   * expiry of the key is cleared.
   *
   * @example
   * ```ts
   * tx.set("sessions", id, { user: "alice" }, { expireIn: 60_000 });
   * ```
   */
  set(ns: string, key: Key, value: unknown, options?: SetOptions): void {
    this.#tx.set(ns, key, value, options);
  }

  /** Buffers a delete of `key`. */
  delete(ns: string, key: Key): void {
    this.#tx.delete(ns, key);
  }

  /** Commit fails with CONFLICT unless `key`'s committed version is `version` (null: absent). */
  check(ns: string, key: Key, version: bigint | null): void {
    this.#tx.check(ns, key, version);
  }

  /** Adds `delta` to the number stored at `key` at commit time; concurrent sums never conflict. */
  sum(ns: string, key: Key, delta: number | bigint): void {
    this.#tx.sum(ns, key, delta);
  }

  /**
   * Adds a message to queue `queue`, atomically with this transaction's writes: listeners
   * see it only if the transaction commits (and once, however often `db.transaction()`
   * reruns the function: each run's transaction is a new one). Options as for
   * `db.enqueue()`; a held `dedupeKey` skips the message, not the transaction. Returns the
   * message's id.
   *
   * @example
   * ```ts
   * await db.transaction((tx) => {
   *   tx.set("orders", "o-42", { total: 10 });
   *   tx.enqueue("emails", { order: "o-42" });
   * });
   * ```
   */
  enqueue(queue: string, value: unknown, options?: EnqueueOptions): string {
    return this.#tx.enqueue(queue, value, options);
  }

  /** Validates and writes. Read-only transactions resolve at once with their read version. */
  commit(): Promise<{ version: bigint }> {
    return this.#tx.commit();
  }

  /**
   * Two-phase commit, participant side: validates like `commit()` and durably records the
   * transaction as prepared under `txid`. Until `db.commitPrepared(txid)` or
   * `db.abortPrepared(txid)` decides it (in any process), commits that write a key it
   * wrote or read fail with CONFLICT (`details.preparedBy`); reads are not blocked. See
   * docs/two-phase-commit.md; `Coordinator` drives it across stores.
   *
   * @example
   * ```ts
   * const tx = await db.begin();
   * tx.set("orders", "o-42", { item: "x" });
   * await tx.prepare("order-42");
   * await db.commitPrepared("order-42"); // or db.abortPrepared("order-42")
   * ```
   */
  prepare(txid: string, options?: PrepareOptions): Promise<void> {
    return this.#tx.prepare(txid, options);
  }

  /**
   * Discards the transaction's writes. Safe to call more than once. Called while `commit()`
   * is under way, it takes the commit back if the commit has not reached the writer lock
   * (`commit()` then rejects with INVALID_ARGUMENT and nothing is written); later, the
   * commit decides and this changes nothing.
   */
  rollback(): void {
    this.#tx.rollback();
  }
}

/**
 * A read-only view pinned at one version: every read sees the state as of `version`, while
 * compaction keeps what it needs. Release it when done (or `await using`).
 *
 * @example
 * ```ts
 * await using snap = await db.snapshot();
 * const v = await snap.get("accounts", "alice");
 * ```
 */
export class Snapshot {
  #snap!: SnapView;

  static {
    wrapSnapshot = (view) => {
      const s = new Snapshot();
      s.#snap = view;
      return s;
    };
    newSnapshot = (ctx, version, onRelease, touch) => wrapSnapshot(new SnapReader(ctx, version, onRelease, touch));
    expireSnapshot = (snap, idleMs, maxIdleMs) => {
      if (snap.#snap instanceof SnapReader) snap.#snap.expire(idleMs, maxIdleMs);
    };
  }

  private constructor() {}

  /** The version this snapshot reads. */
  get version(): bigint {
    return this.#snap.version;
  }

  /** The value of `key` in namespace `ns` at this version, or undefined. */
  get<T = unknown>(ns: string, key: Key): Promise<T | undefined> {
    return this.#snap.get<T>(ns, key);
  }

  /** The entry (key, value, version) of `key` at this version, or undefined. */
  getEntry<T = unknown>(ns: string, key: Key): Promise<Entry<T> | undefined> {
    return this.#snap.getEntry<T>(ns, key);
  }

  /** The values of several keys at this version, in order. */
  getMany<T = unknown>(ns: string, keys: Key[]): Promise<(T | undefined)[]> {
    return this.#snap.getMany<T>(ns, keys);
  }

  /**
   * Entries in a selection at this version, in key order (or reversed), read page by page
   * as the consumer asks. Stop early with `return()` (a `break` out of `for await` does it).
   */
  list<T = unknown>(ns: string, sel: ListSelector, opts?: ListOptions): AsyncIterableIterator<Entry<T>> {
    return this.#snap.list<T>(ns, sel, opts);
  }

  /** The number of live keys in a selection at this version; values are not read. */
  count(ns: string, sel: ListSelector): Promise<number> {
    return this.#snap.count(ns, sel);
  }

  /** Releases the pin. Safe to call more than once. */
  release(): void {
    this.#snap.release();
  }

  /** Releases the pin: `await using snap = await db.snapshot()`. */
  [Symbol.asyncDispose](): Promise<void> {
    this.release();
    return Promise.resolve();
  }
}
