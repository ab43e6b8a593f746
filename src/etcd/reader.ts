/**
 * Reads of the etcd engine at one revision: point reads, many keys at once, ranges in both
 * directions with a limit, counts. Every request after the first names the revision, so
 * one reader sees one state however many requests it takes; a reader made without a
 * revision takes the revision of its first reply (a linearizable read: it sees every
 * commit that resolved before it began).
 *
 * What a reader hands out are stored entries: the txtdb key (binary string), the stored
 * bytes (codec.ts, maybe in the expiry envelope), and the revision that wrote them.
 * Tombstones (layout.ts) and values expired at the reader's wall clock are absent
 * (expiry.ts, rule 1), though etcd returns them and counts them: ranges page past them.
 *
 * Cost: etcd 3.4 serves a range sorted in descending order by reading every key of the
 * range and sorting them, whatever the limit; a reverse read pages from the end, so each
 * page costs the rest of the range on the etcd side (a forward read costs its page).
 *
 * A read at a revision etcd has compacted fails: UNAVAILABLE for a pinned reader (its pin
 * was lost with its lease, pins.ts rule 6, or a compaction that does not read txtdb's pins
 * passed it: pins.ts, "Not covered"), INVALID_ARGUMENT for an unpinned one.
 *
 * Namespaces are resolved at the reader's revision, once per reader; the binding (id, and
 * the binding key's mod revision) is what a transaction's commit compares to prove that
 * the namespace was neither dropped nor renamed since.
 *
 * @module
 */
import { TxtDbError } from "../errors.ts";
import { isExpired } from "../expiry.ts";
import type { EtcdClient, EtcdOp, EtcdOpResult } from "./client.ts";
import { EtcdCompactedError } from "./failures.ts";
import type { EtcdKeyValue } from "./wire.ts";
import { isTombstone, storedId } from "./layout.ts";
import type { Layout } from "./layout.ts";
import type { EtcdPins, Pin } from "./pins.ts";

/** A live entry as stored: key (encoded binary string), stored bytes, and its revision. */
export interface StoredEntry {
  key: string;
  value: Uint8Array;
  version: bigint;
}

/** A namespace as bound at some revision. */
export interface NsBinding {
  id: number;
  /** The binding key's mod revision: a commit compares it unchanged. */
  mod: bigint;
}

/** What readers share with the engine. */
export interface ReadContext {
  client: EtcdClient;
  layout: Layout;
  pins: EtcdPins;
  /** The wall clock, ms since the epoch (expiry). */
  nowMs(): number;
  /** name → id as last seen, to read a namespace's binding and its data in one request. */
  ids: Map<string, number>;
}

/** Most ops in one etcd txn (etcd's --max-txn-ops default). */
export const ETCD_TXN_OPS_MAX = 128;
/**
 * Most keys asked of etcd per page of a range read, whatever came before: with values up to
 * etcd's default --max-request-bytes (1.5 MiB), a page holds at most ~96 MiB of values
 * (~128 MB of JSON). Pages of 256 keys could be a ~0.5 GB reply, whose base64 in JSON is
 * past the longest string a JavaScript engine makes, so such a list failed; and an estimate
 * from earlier pages (below) alone is fooled by small entries (tombstones) before big ones.
 */
export const RANGE_PAGE_KEYS = 64;
/** Keys asked for the first page, before the size of the values is known. */
export const RANGE_PAGE_KEYS_FIRST = 32;
/** Bytes (keys and values) a page aims at, as far as the last page's sizes tell. */
export const RANGE_PAGE_BYTES = 8 << 20;

/**
 * Keys to ask for the next page of a range read, from what the last page held (`keys`
 * entries of `bytes` bytes; none yet: the first page): as many as fit RANGE_PAGE_BYTES at
 * the last page's average size, between 1 and RANGE_PAGE_KEYS. So the first page of big
 * values holds RANGE_PAGE_KEYS_FIRST of them, and every later one about RANGE_PAGE_BYTES,
 * and no page more than RANGE_PAGE_KEYS.
 */
export function nextPageKeys(keys: number, bytes: number): number {
  if (keys <= 0) return RANGE_PAGE_KEYS_FIRST;
  const perKey = Math.max(1, bytes / keys);
  return Math.max(1, Math.min(RANGE_PAGE_KEYS, Math.floor(RANGE_PAGE_BYTES / perKey)));
}

/** Bytes of keys and values in a page of a range read. */
export function pageBytes(kvs: readonly { key: Uint8Array; value: Uint8Array }[]): number {
  let n = 0;
  for (const kv of kvs) n += kv.key.length + kv.value.length;
  return n;
}

/** Options of {@link EtcdReader.range}. */
export interface RangeOptions {
  limit?: number;
  reverse?: boolean;
}

/** Reads at one revision; see the module comment. */
export class EtcdReader {
  readonly #ctx: ReadContext;
  #revision: bigint | undefined;
  readonly #bindings = new Map<string, NsBinding>();
  #pin: Pin | undefined;

  /** A reader at `revision` (held by `pin`), or, without one, at its first reply's revision. */
  constructor(ctx: ReadContext, revision?: bigint, pin?: Pin) {
    this.#ctx = ctx;
    this.#revision = revision;
    this.#pin = pin;
  }

  /** The revision read (undefined until the first reply of a reader made without one). */
  get revision(): bigint | undefined {
    return this.#revision;
  }

  /** The namespaces resolved so far, with their bindings. */
  get bindings(): ReadonlyMap<string, NsBinding> {
    return this.#bindings;
  }

  /** Lets compaction pass this reader's revision; later reads may fail. Idempotent. */
  release(): void {
    this.#pin?.release();
    this.#pin = undefined;
  }

  /** Runs range ops at this reader's revision, in txns of at most 128 ops. */
  async #ranges(ops: EtcdOp[]): Promise<EtcdOpResult[]> {
    const out: EtcdOpResult[] = [];
    for (let i = 0; i < ops.length || i === 0; i += ETCD_TXN_OPS_MAX) {
      const chunk = ops.slice(i, i + ETCD_TXN_OPS_MAX).map((o) => (this.#revision !== undefined && o.op === "range" ? { ...o, revision: this.#revision } : o));
      if (chunk.length === 0) break;
      let r;
      try {
        r = await this.#ctx.client.txn({ success: chunk });
      } catch (e) {
        if (!(e instanceof EtcdCompactedError)) throw e;
        // Said in txtdb's terms: which revision, and why it can be gone.
        throw this.#pin
          ? new TxtDbError("UNAVAILABLE", `Cannot read at revision ${this.#revision}: etcd compacted its history although this snapshot pinned it, so its pin was lost: this process's lease expired while it was cut off from etcd, or something that does not read txtdb's pins compacted etcd (etcd's --auto-compaction-retention, etcdctl compact, or an older txtdb release on the same cluster); begin a new snapshot or transaction`, { cause: e, details: { revision: this.#revision, compacted: true } })
          : new TxtDbError("INVALID_ARGUMENT", `Cannot read at revision ${this.#revision}: etcd compacted its history; read at a newer revision`, { cause: e, details: { revision: this.#revision, compacted: true } });
      }
      if (this.#revision === undefined) {
        this.#revision = r.revision;
        this.#ctx.pins.saw(r.revision);
      }
      out.push(...r.responses);
    }
    return out;
  }

  /**
   * Resolves `ns` at this revision and runs `build(id)`'s range ops, in one request when
   * the id last seen for the name is still right.
   */
  async #withNs(ns: string, build: (id: number) => EtcdOp[]): Promise<{ id: number; responses: EtcdOpResult[] }> {
    const known = this.#bindings.get(ns);
    if (known) return { id: known.id, responses: await this.#ranges(build(known.id)) };
    const guess = this.#ctx.ids.get(ns);
    const first = await this.#ranges([{ op: "range", key: this.#ctx.layout.nsKey(ns) }, ...(guess !== undefined ? build(guess) : [])]);
    const b = this.#bind(ns, first[0]);
    if (guess === b.id) return { id: b.id, responses: first.slice(1) };
    return { id: b.id, responses: await this.#ranges(build(b.id)) };
  }

  #bind(ns: string, res: EtcdOpResult | undefined): NsBinding {
    const kv = res?.op === "range" ? res.kvs[0] : undefined;
    if (!kv) {
      this.#ctx.ids.delete(ns);
      throw new TxtDbError("NAMESPACE_NOT_FOUND", `Namespace ${JSON.stringify(ns)} does not exist (at revision ${this.#revision}); create it with createNamespace()`, { details: { ns } });
    }
    const id = storedId(kv.value, kv.key);
    const b = { id, mod: kv.modRevision };
    this.#bindings.set(ns, b);
    this.#ctx.ids.set(ns, id);
    return b;
  }

  /** The binding of `ns` at this revision (NAMESPACE_NOT_FOUND when unbound). */
  async binding(ns: string): Promise<NsBinding> {
    const known = this.#bindings.get(ns);
    if (known) return known;
    await this.#withNs(ns, () => []);
    return this.#bindings.get(ns)!;
  }

  #live(id: number, kv: EtcdKeyValue | undefined, now: number): StoredEntry | undefined {
    if (!kv || isTombstone(kv.value) || isExpired(kv.value, now)) return undefined;
    return { key: this.#ctx.layout.keyOf(id, kv.key), value: kv.value, version: kv.modRevision };
  }

  /** The entry at `key` (an encoded key) in `ns`, or undefined when absent. */
  async get(ns: string, key: string): Promise<StoredEntry | undefined> {
    const { id, responses } = await this.#withNs(ns, (id) => [{ op: "range", key: this.#ctx.layout.dataKey(id, key) }]);
    const r = responses[0];
    return this.#live(id, r?.op === "range" ? r.kvs[0] : undefined, this.#ctx.nowMs());
  }

  /** The entries at `keys`, in order (undefined where absent). */
  async getMany(ns: string, keys: readonly string[]): Promise<(StoredEntry | undefined)[]> {
    const { id, responses } = await this.#withNs(ns, (id) => keys.map((k) => ({ op: "range", key: this.#ctx.layout.dataKey(id, k) })));
    const now = this.#ctx.nowMs();
    return keys.map((_, i) => {
      const r = responses[i];
      return this.#live(id, r?.op === "range" ? r.kvs[0] : undefined, now);
    });
  }

  /**
   * The live entries of `ns` in [start, end) (end undefined: to the namespace's end), in
   * key order or reversed, at most `limit`; read page by page as the consumer pulls.
   */
  async *range(ns: string, start: string, end: string | undefined, options: RangeOptions = {}): AsyncGenerator<StoredEntry, void, undefined> {
    const limit = options.limit ?? Infinity;
    // The namespace first, even for no entries: a missing one is NAMESPACE_NOT_FOUND at any
    // limit, as on the local engine.
    const { id } = await this.#withNs(ns, () => []);
    if (limit <= 0) return;
    let [lo, hi] = this.#ctx.layout.dataRange(id, start, end);
    let given = 0;
    let pageKeys = nextPageKeys(0, 0);
    for (;;) {
      if (compareBytes(lo, hi) >= 0) return;
      // No more than the consumer may still take (entries deleted or expired are skipped, so
      // another page may follow).
      const ask = Math.max(1, Math.min(pageKeys, limit - given));
      const [res] = await this.#ranges([{ op: "range", key: lo, rangeEnd: hi, limit: ask, ...(options.reverse ? { sortOrder: "DESCEND" as const, sortTarget: "KEY" as const } : {}) }]);
      const kvs = res?.op === "range" ? res.kvs : [];
      pageKeys = nextPageKeys(kvs.length, pageBytes(kvs));
      const now = this.#ctx.nowMs();
      for (const kv of kvs) {
        const e = this.#live(id, kv, now);
        if (!e) continue;
        yield e;
        if (++given >= limit) return;
      }
      if (res?.op !== "range" || !res.more || kvs.length === 0) return;
      const last = kvs[kvs.length - 1]!.key;
      if (options.reverse) hi = last;
      else lo = successor(last);
    }
  }

  /** How many live keys `ns` holds in [start, end). */
  async count(ns: string, start: string, end: string | undefined): Promise<number> {
    let n = 0;
    for await (const _ of this.range(ns, start, end)) n++;
    return n;
  }
}

/** Byte-wise comparison, as etcd orders keys. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** The first key after `k`: `k` with a 0 byte appended. */
export function successor(k: Uint8Array): Uint8Array {
  const out = new Uint8Array(k.length + 1);
  out.set(k, 0);
  return out;
}
