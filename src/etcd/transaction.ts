/**
 * A transaction's bookkeeping on the etcd engine: reads at the read revision through an
 * {@link EtcdReader}, its own writes laid over them, and the read set a serializable
 * commit validates (keys, and ranges cut where a limit stopped them, as tx.ts records
 * them). Keys are encoded keys (keys.ts binary strings), values stored bytes (codec.ts,
 * maybe in the expiry envelope): the public layer encodes and decodes, as it does for the
 * local engine.
 *
 * The commit request it builds has tx.ts's TxState shape, so the public layer can hand
 * either engine the same bookkeeping.
 *
 * @module
 */
import { TxtDbError } from "../errors.ts";
import { decodeValue, encodeValue } from "../codec.ts";
import { expiresAtOf, isExpired, isExpiring, valueBytesOf, wrapExpiring } from "../expiry.ts";
import { decodeKey, describeKey } from "../keys.ts";
import type { EtcdCommitRequest, EtcdWriteOp } from "./commit.ts";
import type { EtcdReader, RangeOptions, StoredEntry } from "./reader.ts";

/** How a transaction is committed (the engine's commit). */
export type CommitFn = (req: EtcdCommitRequest) => Promise<bigint>;

function addNumeric(base: unknown, delta: number | bigint, where: string): number | bigint {
  if (typeof base === "number" && typeof delta === "number") return base + delta;
  if (typeof base === "bigint" && typeof delta === "bigint") return base + delta;
  throw new TxtDbError("INVALID_VALUE", `sum() on ${where}: cannot add a ${typeof delta} to a stored ${base === null ? "null" : typeof base}; sum() needs a number or bigint of the same type`);
}

/** One optimistic transaction; see the module comment. */
export class EtcdTransaction {
  readonly #reader: EtcdReader;
  readonly #commit: CommitFn;
  readonly #nowMs: () => number;
  readonly isolation: "serializable" | "snapshot";
  readonly #reads = new Map<string, Set<string>>();
  readonly #ranges: { ns: string; start: string; end: string | undefined; selector?: unknown }[] = [];
  readonly #writes = new Map<string, Map<string, EtcdWriteOp>>();
  readonly #checks: { ns: string; key: string; version: bigint | null }[] = [];
  #readExpiry: EtcdCommitRequest["readExpiry"];
  #done = false;

  constructor(reader: EtcdReader, commit: CommitFn, isolation: "serializable" | "snapshot", nowMs: () => number) {
    if (reader.revision === undefined) throw new TxtDbError("INVALID_ARGUMENT", "A transaction needs a reader at a fixed revision");
    this.#reader = reader;
    this.#commit = commit;
    this.isolation = isolation;
    this.#nowMs = nowMs;
  }

  /** The revision this transaction reads. */
  get readRevision(): bigint {
    return this.#reader.revision!;
  }

  #usable(): void {
    if (this.#done) throw new TxtDbError("INVALID_ARGUMENT", "The transaction has already committed or rolled back");
  }

  #noteRead(ns: string, e: StoredEntry | undefined, key: string): void {
    if (this.isolation !== "serializable") return;
    let s = this.#reads.get(ns);
    if (!s) this.#reads.set(ns, (s = new Set()));
    s.add(key);
    this.#noteExpiring(ns, e);
  }

  #noteExpiring(ns: string, e: StoredEntry | undefined): void {
    if (this.isolation !== "serializable" || !e || !isExpiring(e.value)) return;
    const at = expiresAtOf(e.value);
    if (this.#readExpiry === undefined || at < this.#readExpiry.expiresAtMs) this.#readExpiry = { ns, key: e.key, version: e.version, expiresAtMs: at };
  }

  /** What this transaction sees at `key`: its own write laid over the snapshot's entry. */
  #overlay(ns: string, key: string, base: StoredEntry | undefined): StoredEntry | undefined {
    const op = this.#writes.get(ns)?.get(key);
    if (!op) return base;
    if (op.kind === "delete") return undefined;
    if (op.kind === "set") return isExpired(op.value, this.#nowMs()) ? undefined : { key, value: op.value, version: -1n };
    const where = `key ${describeKey(decodeKey(key))} in "${ns}"`;
    const sum = base === undefined ? op.delta : addNumeric(decodeValue(valueBytesOf(base.value)), op.delta, where);
    return { key, value: encodeValue(sum), version: -1n };
  }

  /** The entry at `key` in `ns` as this transaction sees it. */
  async get(ns: string, key: string): Promise<StoredEntry | undefined> {
    this.#usable();
    const op = this.#writes.get(ns)?.get(key);
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
    const bases = await this.#reader.getMany(ns, keys);
    return keys.map((k, i) => {
      const op = this.#writes.get(ns)?.get(k);
      if (!op || op.kind === "sum") this.#noteRead(ns, bases[i], k);
      return this.#overlay(ns, k, op && op.kind !== "sum" ? undefined : bases[i]);
    });
  }

  /**
   * The entries of `ns` in [start, end) as this transaction sees them (own writes merged),
   * at most `limit`. Serializable: the range read is recorded, cut at the last key given
   * when the limit stopped it.
   */
  async range(ns: string, start: string, end: string | undefined, options: RangeOptions = {}, selector?: unknown): Promise<StoredEntry[]> {
    this.#usable();
    const limit = options.limit ?? Infinity;
    const own = this.#writes.get(ns);
    const ownKeys = own ? [...own.keys()].filter((k) => k >= start && (end === undefined || k < end)) : [];
    const merged = new Map<string, StoredEntry | undefined>();
    const base = new Map<string, StoredEntry>();
    for await (const e of this.#reader.range(ns, start, end, { reverse: options.reverse ?? false, limit: limit === Infinity ? Infinity : limit + ownKeys.length })) {
      base.set(e.key, e);
      merged.set(e.key, e);
    }
    for (const k of ownKeys) {
      const op = own!.get(k)!;
      merged.set(k, this.#overlay(ns, k, op.kind === "sum" ? base.get(k) ?? (await this.#reader.get(ns, k)) : undefined));
    }
    const keys = [...merged.keys()].sort();
    if (options.reverse) keys.reverse();
    const out: StoredEntry[] = [];
    for (const k of keys) {
      const e = merged.get(k);
      if (!e) continue;
      out.push(e);
      if (!own?.has(k)) this.#noteExpiring(ns, base.get(k));
      if (out.length >= limit) break;
    }
    if (this.isolation === "serializable") {
      let rs = start, re = end;
      if (out.length >= limit && out.length > 0) {
        const last = out[out.length - 1]!.key;
        if (options.reverse) rs = last;
        else re = last + "\x00";
      }
      this.#ranges.push({ ns, start: rs, end: re, selector });
    }
    return out;
  }

  /** How many live keys `ns` holds in [start, end), as this transaction sees it. */
  async count(ns: string, start: string, end: string | undefined, selector?: unknown): Promise<number> {
    return (await this.range(ns, start, end, {}, selector)).length;
  }

  #put(ns: string, key: string, op: EtcdWriteOp): void {
    this.#usable();
    let m = this.#writes.get(ns);
    if (!m) this.#writes.set(ns, (m = new Map()));
    m.set(key, op);
  }

  /** Buffers a write of stored bytes `value` (encodeValue, maybe wrapped with an expiry). */
  set(ns: string, key: string, value: Uint8Array): void {
    this.#put(ns, key, { kind: "set", value });
  }

  /** Buffers a delete. */
  delete(ns: string, key: string): void {
    this.#put(ns, key, { kind: "delete" });
  }

  /** Adds `delta` to the number at `key` at commit time; never a conflict of its own (tx.ts rules). */
  sum(ns: string, key: string, delta: number | bigint): void {
    if (!(typeof delta === "bigint" || (typeof delta === "number" && Number.isFinite(delta)))) {
      throw new TxtDbError("INVALID_VALUE", `sum() needs a finite number or a bigint delta, got ${String(delta)}`);
    }
    const prior = this.#writes.get(ns)?.get(key);
    const where = `key ${describeKey(decodeKey(key))}`;
    if (!prior) return this.#put(ns, key, { kind: "sum", delta });
    if (prior.kind === "sum") return this.#put(ns, key, { kind: "sum", delta: addNumeric(prior.delta, delta, where) });
    if (prior.kind === "delete" || isExpired(prior.value, this.#nowMs())) return this.#put(ns, key, { kind: "set", value: encodeValue(delta) });
    const sum = encodeValue(addNumeric(decodeValue(valueBytesOf(prior.value)), delta, where));
    this.#put(ns, key, { kind: "set", value: isExpiring(prior.value) ? wrapExpiring(sum, expiresAtOf(prior.value)) : sum });
  }

  /** Commit fails with CONFLICT unless `key`'s committed version is `version` (null: absent). */
  check(ns: string, key: string, version: bigint | null): void {
    this.#usable();
    this.#checks.push({ ns, key, version });
  }

  /** The commit request: tx.ts's TxState shape. */
  request(): EtcdCommitRequest {
    return {
      readRevision: this.readRevision,
      isolation: this.isolation,
      bindings: this.#reader.bindings,
      reads: this.#reads,
      ranges: this.#ranges,
      writes: this.#writes,
      checks: this.#checks,
      readExpiry: this.#readExpiry,
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
