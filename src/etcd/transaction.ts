/**
 * A transaction on the etcd engine: reads at the read revision through an
 * {@link EtcdReader}, with the bookkeeping both engines share (txstate.ts: the keys and
 * ranges read, the writes, checks and the soonest expiry read, by rules B1–B4). Keys are
 * encoded keys (keys.ts binary strings), values stored bytes (codec.ts, maybe in the expiry
 * envelope): the public layer (txview.ts) encodes and decodes, as tx.ts does for the local
 * engine. The commit request is the shared TxState, with revisions made bigint.
 *
 * @module
 */
import { TxtDbError } from "../errors.ts";
import { PREFIX_END } from "../keys.ts";
import { isExpiring, expiresAtOf } from "../expiry.ts";
import { newTxState, noteExpiring, overlayWrite, putWrite, recordRange, recordRead, sumOp } from "../txstate.ts";
import type { Limits, TxState, WriteOp } from "../txstate.ts";
import type { EtcdCommitRequest } from "./commit.ts";
import { ETCD_TX_WRITES_MAX } from "./commit.ts";
import type { EtcdReader, RangeOptions, StoredEntry } from "./reader.ts";

/** How a transaction is committed (the engine's commit). */
export type CommitFn = (req: EtcdCommitRequest) => Promise<bigint>;

const ETCD_WRITES_WHY = "on etcd: a txn has at most 128 operations, etcd's --max-txn-ops";

/** The limits of a transaction on etcd unless the store's are tighter (etcd's request limits do the rest: LIMIT). */
export const ETCD_LIMITS: Limits = { maxKeyBytes: 2048, maxValueBytes: Infinity, maxTxBytes: Infinity, maxTxWrites: ETCD_TX_WRITES_MAX, maxTxWritesWhy: ETCD_WRITES_WHY };

/** One optimistic transaction; see the module comment. */
export class EtcdTransaction {
  readonly #reader: EtcdReader;
  readonly #commit: CommitFn;
  readonly #nowMs: () => number;
  readonly #limits: Limits;
  /** The bookkeeping (txstate.ts); readVersion is the read revision. */
  readonly state: TxState;
  #done = false;

  constructor(reader: EtcdReader, commit: CommitFn, isolation: "serializable" | "snapshot", nowMs: () => number, limits: Limits = ETCD_LIMITS) {
    if (reader.revision === undefined) throw new TxtDbError("INVALID_ARGUMENT", "A transaction needs a reader at a fixed revision");
    this.#reader = reader;
    this.#commit = commit;
    this.#nowMs = nowMs;
    this.#limits = limits.maxTxWrites <= ETCD_TX_WRITES_MAX ? limits : { ...limits, maxTxWrites: ETCD_TX_WRITES_MAX, maxTxWritesWhy: ETCD_WRITES_WHY };
    this.state = newTxState(Number(reader.revision), isolation, false);
  }

  /** The revision this transaction reads. */
  get readRevision(): bigint {
    return this.#reader.revision!;
  }

  get isolation(): "serializable" | "snapshot" {
    return this.state.isolation;
  }

  /** True once committed or rolled back. */
  get done(): boolean {
    return this.#done;
  }

  #usable(): void {
    if (this.#done) throw new TxtDbError("INVALID_ARGUMENT", "The transaction has already committed or rolled back");
  }

  /** B1, B4: a key read at the read revision. */
  #noteRead(ns: string, e: StoredEntry | undefined, key: string): void {
    recordRead(this.state, ns, key);
    this.#noteExpiring(ns, e);
  }

  #noteExpiring(ns: string, e: StoredEntry | undefined): void {
    if (e && isExpiring(e.value)) noteExpiring(this.state, ns, e.key, Number(e.version), expiresAtOf(e.value));
  }

  /** What this transaction sees at `key`: its own write laid over the snapshot's entry. */
  #overlay(ns: string, key: string, base: StoredEntry | undefined): StoredEntry | undefined {
    const op = this.state.writes.get(ns)?.get(key);
    if (!op) return base;
    const value = overlayWrite(op, base?.value, ns, key, this.#nowMs());
    return value === undefined ? undefined : { key, value, version: -1n };
  }

  /** The entry at `key` in `ns` as this transaction sees it. */
  async get(ns: string, key: string): Promise<StoredEntry | undefined> {
    this.#usable();
    this.state.touched.add(ns);
    const op = this.state.writes.get(ns)?.get(key);
    if (op && op.kind !== "sum") {
      await this.#reader.binding(ns);
      return this.#overlay(ns, key, undefined);
    }
    const base = await this.#reader.get(ns, key);
    this.#noteRead(ns, base, key);
    return this.#overlay(ns, key, base);
  }

  /** The entries at `keys`, as this transaction sees them. */
  async getMany(ns: string, keys: readonly string[]): Promise<(StoredEntry | undefined)[]> {
    this.#usable();
    this.state.touched.add(ns);
    const bases = await this.#reader.getMany(ns, keys);
    return keys.map((k, i) => {
      const op = this.state.writes.get(ns)?.get(k);
      if (!op || op.kind === "sum") this.#noteRead(ns, bases[i], k);
      return this.#overlay(ns, k, op && op.kind !== "sum" ? undefined : bases[i]);
    });
  }

  /**
   * The entries of `ns` in [start, end) as this transaction sees them (own writes merged),
   * at most `limit`. Serializable: the range read is recorded (B1).
   */
  async range(ns: string, start: string, end: string | undefined, options: RangeOptions = {}, selector?: unknown): Promise<StoredEntry[]> {
    this.#usable();
    this.state.touched.add(ns);
    const limit = options.limit ?? Infinity;
    const reverse = options.reverse ?? false;
    const own = this.state.writes.get(ns);
    const ownKeys = own ? [...own.keys()].filter((k) => k >= start && (end === undefined || k < end)) : [];
    const merged = new Map<string, StoredEntry | undefined>();
    const base = new Map<string, StoredEntry>();
    for await (const e of this.#reader.range(ns, start, end, { reverse, limit: limit === Infinity ? Infinity : limit + ownKeys.length })) {
      base.set(e.key, e);
      merged.set(e.key, e);
    }
    for (const k of ownKeys) {
      const op = own!.get(k)!;
      merged.set(k, this.#overlay(ns, k, op.kind === "sum" ? base.get(k) ?? (await this.#reader.get(ns, k)) : undefined));
    }
    const keys = [...merged.keys()].sort();
    if (reverse) keys.reverse();
    const out: StoredEntry[] = [];
    for (const k of keys) {
      if (out.length >= limit) break; // before the push: limit 0 returns nothing
      const e = merged.get(k);
      if (!e) continue;
      out.push(e);
      if (!own?.has(k)) this.#noteExpiring(ns, base.get(k));
    }
    recordRange(this.state, ns, start, end ?? PREFIX_END, (selector ?? {}) as never, out.map((e) => e.key), limit, reverse);
    return out;
  }

  /** How many live keys `ns` holds in [start, end), as this transaction sees it. */
  async count(ns: string, start: string, end: string | undefined, selector?: unknown): Promise<number> {
    return (await this.range(ns, start, end, {}, selector)).length;
  }

  #put(ns: string, key: string, op: WriteOp, addedBytes: number): void {
    this.#usable();
    this.state.touched.add(ns);
    putWrite(this.state, this.#limits, ns, key, op, addedBytes);
  }

  /** Buffers a write of stored bytes `value` (encodeValue, maybe wrapped with an expiry). */
  set(ns: string, key: string, value: Uint8Array): void {
    this.#put(ns, key, { kind: "set", value }, key.length + value.length);
  }

  /** Buffers a delete. */
  delete(ns: string, key: string): void {
    this.#put(ns, key, { kind: "delete" }, key.length);
  }

  /** Adds `delta` to the number at `key` at commit time; never a conflict of its own (B2). */
  sum(ns: string, key: string, delta: number | bigint): void {
    this.#usable();
    this.#put(ns, key, sumOp(this.state.writes.get(ns)?.get(key), delta, ns, key, this.#nowMs()), key.length + 16);
  }

  /** Commit fails with CONFLICT unless `key`'s committed version is `version` (null: absent). */
  check(ns: string, key: string, version: bigint | null): void {
    this.#usable();
    this.state.touched.add(ns);
    this.state.checks.push({ ns, key, version: version === null ? null : Number(version) });
  }

  /** The commit request: the shared TxState, with revisions as bigint. */
  request(): EtcdCommitRequest {
    const s = this.state;
    const x = s.readExpiry;
    return {
      readRevision: this.readRevision,
      isolation: s.isolation,
      bindings: this.#reader.bindings,
      reads: s.reads,
      touched: s.touched,
      ranges: s.ranges,
      writes: s.writes,
      checks: s.checks.map((c) => ({ ns: c.ns, key: c.key, version: c.version === null ? null : BigInt(c.version) })),
      readExpiry: x === undefined ? undefined : { ns: x.ns, key: x.key, version: BigInt(x.tsn), expiresAtMs: x.expiresAtMs },
    };
  }

  /** Validates and writes in one etcd txn; resolves with the commit's revision (the read revision when nothing was written). */
  async commit(): Promise<{ version: bigint }> {
    this.#usable();
    this.#done = true;
    try {
      return { version: await this.#commit(this.request()) };
    } finally {
      this.#reader.release();
    }
  }

  /** Drops the writes and releases the pin. */
  rollback(): void {
    this.#done = true;
    this.#reader.release();
  }
}
