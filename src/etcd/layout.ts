/**
 * Where the etcd engine keeps what, under the location's prefix P (the `etcd://…/P` path
 * with a trailing "/", or "" for none). Every key below is bytes; names and the prefix are
 * UTF-8, txtdb keys are their order-preserving encoding (keys.ts) taken byte for byte, so
 * etcd's byte order over data keys is txtdb's key order.
 *
 * ```
 * P n/<name>                       → namespace id, decimal ("7")
 * P m/next-id                      → the next namespace id to hand out, decimal
 * P m/compacted                    → the store's compaction mark: a revision as 20
 *                                    decimal digits; no pin of the store is ever
 *                                    published below it, cleanup removes nothing above
 *                                    it (pins.ts); its presence makes the prefix a store
 *                                    (deleted outside txtdb, it is put back: pins.ts
 *                                    rule 8; `P m/next-id` then says a store is there)
 * P p/<lease id, 16 hex digits>    → a process's pin: the oldest revision it may still
 *                                    read, 20 digits; attached to that process's lease
 *                                    (what compactors of older releases read)
 * P c/<lease id>/<commit seq>      → a commit id: "c" when written by the commit's own txn,
 *                                    "f" when written by the fence that proves the commit
 *                                    never landed; attached to the lease (engine.ts).
 *                                    Seq 0 is the lease's mark of life, "a", written when
 *                                    the lease is granted: gone means the lease ended (U5)
 * P d/<ns id, 16 hex digits>/<key> → a value (codec.ts bytes, maybe in the expiry.ts
 *                                    envelope), or a tombstone: the empty value
 * ```
 *
 * And, once per cluster, shared by every store on it (pins.ts): etcd's history is one for
 * the whole cluster, so what keeps it is too.
 *
 * ```
 * /txtdb/m/compacted               → the cluster's compaction mark: no txtdb compaction
 *                                    compacts etcd above it, no pin of any store is ever
 *                                    published below it
 * /txtdb/p/<lease id, 16 hex>      → a process's pin, as `P p/<lease>` (both are written,
 *                                    in one txn): the one every store's compactor reads
 * ```
 *
 * No store's keys reach the registry: a prefix is the URL's path, whose leading slashes
 * are dropped, so only a "%2F" could make one begin with "/", and url.ts refuses that; the
 * root store's keys (prefix "") begin with a letter. Lease ids are unique in a cluster,
 * so the pins of different stores never share a key.
 *
 * Fixed-width revisions make etcd's byte-wise VALUE compares numeric; fixed-width ids keep
 * each namespace's data keys one contiguous range that no other id's keys interleave.
 *
 * @module
 */
import { TxtDbError } from "../errors.ts";
import { binaryToBytes, bytesToBinary } from "../keys.ts";

const utf8 = new TextEncoder();
const utf8d = new TextDecoder();

/**
 * A tombstone: what a txtdb delete writes. No value codec.ts writes is empty (every CBOR
 * item has at least one byte), so the empty value is free to mean "deleted here". It is a
 * put, not an etcd delete, so the key's mod revision moves: that is what makes a delete
 * inside a range read visible to the range's compare (see engine.ts).
 */
export const TOMBSTONE: Uint8Array = new Uint8Array(0);

/** True when stored bytes are a tombstone. */
export function isTombstone(value: Uint8Array): boolean {
  return value.length === 0;
}

/**
 * A namespace id as stored (a binding's value, or the id counter `P m/next-id`): a whole
 * number from 1 to 15 digits, or CORRUPTION naming the key. Anything else was written
 * outside txtdb, and used as it is it would make namespaces share (or lose) each other's
 * data keys, whose prefix is the id in 16 hex digits.
 */
export function storedId(value: Uint8Array, key: Uint8Array): number {
  const s = utf8d.decode(value);
  if (isStoredId(value)) return Number(s);
  const k = utf8d.decode(key);
  throw new TxtDbError("CORRUPTION", `The etcd key ${JSON.stringify(k)} holds ${JSON.stringify(s.slice(0, 40))}, not a namespace id (a whole number from 1): the store's keys were changed outside txtdb. Restore them from a backup of the cluster`, { details: { key: k } });
}

/** Whether stored bytes are a namespace id as txtdb writes them (see {@link storedId}). */
/** The largest namespace id: 15 decimal digits (see {@link storedId}). */
const ID_MAX = 999_999_999_999_999;

export function isStoredId(value: Uint8Array): boolean {
  return /^[1-9][0-9]{0,14}$/.test(utf8d.decode(value));
}

/** A revision as 20 decimal digits (int64 fits), so that byte order is numeric order. */
export function fixedRevision(r: bigint): string {
  return r.toString().padStart(20, "0");
}

/** Reads {@link fixedRevision}'s form (or any decimal) back. */
export function parseRevision(b: Uint8Array): bigint {
  const s = utf8d.decode(b);
  return /^\d+$/.test(s) ? BigInt(s) : 0n;
}

/**
 * The cluster-wide registry's prefix (see the charts above): the one place outside every
 * store's prefix that txtdb writes.
 */
export const REGISTRY_PREFIX = "/txtdb/";
const CLUSTER_MARK = utf8.encode(`${REGISTRY_PREFIX}m/compacted`);
const CLUSTER_PIN_PREFIX = utf8.encode(`${REGISTRY_PREFIX}p/`);

/** A lease id as it appears in keys: 16 hex digits. */
function leaseHex(lease: bigint): string {
  return lease.toString(16).padStart(16, "0");
}

function cat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** The keys of one store in etcd. */
export class Layout {
  /** The location's prefix, as given ("" or ending in "/"). */
  readonly prefix: string;
  readonly nsPrefix: Uint8Array;
  readonly nextId: Uint8Array;
  readonly mark: Uint8Array;
  readonly pinPrefix: Uint8Array;
  readonly commitPrefix: Uint8Array;
  readonly dataPrefix: Uint8Array;
  /** The cluster's compaction mark (shared by every store). */
  readonly clusterMark: Uint8Array = CLUSTER_MARK;
  /** The prefix of every store's pins in the registry. */
  readonly clusterPinPrefix: Uint8Array = CLUSTER_PIN_PREFIX;
  readonly #dataPrefixText: string;

  constructor(prefix: string) {
    this.prefix = prefix;
    this.nsPrefix = utf8.encode(`${prefix}n/`);
    this.nextId = utf8.encode(`${prefix}m/next-id`);
    this.mark = utf8.encode(`${prefix}m/compacted`);
    this.pinPrefix = utf8.encode(`${prefix}p/`);
    this.commitPrefix = utf8.encode(`${prefix}c/`);
    this.#dataPrefixText = `${prefix}d/`;
    this.dataPrefix = utf8.encode(this.#dataPrefixText);
  }

  /** The location's prefix as bytes: every key of the store starts with it. */
  get prefixBytes(): Uint8Array {
    return utf8.encode(this.prefix);
  }

  /**
   * The compaction marks a store would have at each shorter prefix of this one ("" and
   * each "a/", "a/b/" before "a/b/c/"): one of them present means this location lies inside
   * another store, whose reads and cleanup would take this store's keys for its own.
   */
  ancestors(): { prefix: string; mark: Uint8Array }[] {
    const parts = this.prefix.split("/").slice(0, -1);
    const out: { prefix: string; mark: Uint8Array }[] = [];
    for (let i = 0; i < parts.length; i++) {
      const p = i === 0 ? "" : parts.slice(0, i).join("/") + "/";
      out.push({ prefix: p, mark: utf8.encode(`${p}m/compacted`) });
    }
    return out;
  }

  /** The binding key of namespace `name`. */
  nsKey(name: string): Uint8Array {
    return cat(this.nsPrefix, utf8.encode(name));
  }

  /** The namespace name of a binding key. */
  nsName(key: Uint8Array): string {
    return utf8d.decode(key.subarray(this.nsPrefix.length));
  }

  /** The pin key of lease `lease`. */
  pinKey(lease: bigint): Uint8Array {
    return utf8.encode(`${this.prefix}p/${leaseHex(lease)}`);
  }

  /** The registry's pin key of lease `lease` (any store's: lease ids are the cluster's). */
  clusterPinKey(lease: bigint): Uint8Array {
    return utf8.encode(`${REGISTRY_PREFIX}p/${leaseHex(lease)}`);
  }

  /** The lease's mark of life (commit seq 0, never a commit's: seqs start at 1). */
  aliveKey(lease: bigint): Uint8Array {
    return this.commitKey(lease, 0);
  }

  /** The key of commit `seq` of the process holding lease `lease`. */
  commitKey(lease: bigint, seq: number): Uint8Array {
    return utf8.encode(`${this.prefix}c/${leaseHex(lease)}/${seq}`);
  }

  /** The first byte of namespace `id`'s data keys ("P d/<id>/"). */
  idPrefix(id: number): Uint8Array {
    return utf8.encode(`${this.#dataPrefixText}${id.toString(16).padStart(16, "0")}/`);
  }

  /** The etcd key of txtdb key `key` (an encoded binary string) in namespace `id`. */
  dataKey(id: number, key: string): Uint8Array {
    return cat(this.idPrefix(id), binaryToBytes(key));
  }

  /** The txtdb key (binary string) of data key `k` of namespace `id`. */
  keyOf(id: number, k: Uint8Array): string {
    void id; // every id prefix has the same length: "P d/" + 16 hex digits + "/"
    return bytesToBinary(k.subarray(this.dataPrefix.length + 17));
  }

  /**
   * The namespace id a data key `P d/<16 hex digits>/…` belongs to; CORRUPTION for a key
   * under `P d/` that txtdb did not write (no id, or one past the largest {@link storedId}).
   */
  idOfDataKey(k: Uint8Array): number {
    const hex = utf8d.decode(k.subarray(this.dataPrefix.length, this.dataPrefix.length + 17));
    const id = /^[0-9a-f]{16}\/$/.test(hex) ? parseInt(hex.slice(0, 16), 16) : NaN;
    if (!(id >= 1 && id <= ID_MAX)) {
      const key = utf8d.decode(k);
      throw new TxtDbError("CORRUPTION", `The etcd key ${JSON.stringify(key.slice(0, 200))} lies among the store's data keys but names no namespace id: the store's keys were changed outside txtdb. Restore them from a backup of the cluster`, { details: { key } });
    }
    return id;
  }

  /**
   * The etcd range [start, end) of txtdb keys [start, end) of namespace `id`: an end of ""
   * or one past every key ("\xff…" is what prefixRange gives) maps to the end of the id's
   * keys.
   */
  dataRange(id: number, start: string, end: string | undefined): [Uint8Array, Uint8Array] {
    const p = this.idPrefix(id);
    const s = cat(p, binaryToBytes(start));
    // "P d/<id>0" is the first key after every "P d/<id>/…".
    const idEnd = cat(p.subarray(0, p.length - 1), Uint8Array.of(0x30));
    return [s, end === undefined ? idEnd : cat(p, binaryToBytes(end))];
  }
}
