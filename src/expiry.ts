/**
 * Expiring keys: `set(ns, key, value, { expireIn })`. The expiry travels inside the stored
 * value bytes, in an envelope, so the log record and the table formats do not change and a
 * value without expiry keeps exactly the bytes it always had.
 *
 * ```
 * envelope := 0xD9 0xB8 0x7A      CBOR tag 47226 (txtdb's own, beside 47224/47225 of codec.ts)
 *             0x82                an array of two items:
 *             0x1B expiresAtMs    uint64, big-endian: the absolute wall-clock expiry, ms since the epoch
 *             value               the value's CBOR bytes, exactly as encodeValue() wrote them
 * ```
 *
 * The header has a fixed length ({@link ENVELOPE_HEADER_BYTES}), so a reader learns whether a
 * value expires, and when, from its first 13 bytes, without decoding it: `count()` stays
 * value-free, and a read of a value without expiry costs one byte comparison more. The whole
 * envelope is one well-formed CBOR item, so tools that decode stored bytes see a tag, not
 * garbage. No value encodeValue() writes starts with tag 47226 (it writes only 47224 and
 * 47225 of txtdb's own tags, and cbor-x's record tags start 0xD9 0xDF), so the first three
 * bytes tell the two apart.
 *
 * Rules, carried out where named:
 *
 * 1. A version whose expiry is at or before the reader's wall clock reads as absent, at every
 *    snapshot and in every process (index.ts: `get`, `range`, `count`). Expiry is a
 *    wall-clock fact, not a commit: a snapshot taken before the expiry sees the key vanish
 *    once the expiry passes, and an expired version hides older versions of its key as a
 *    delete would (it is the newest write, and it is gone).
 * 2. `expireIn` counts from the moment `set()` is called (when the value is encoded too).
 * 3. A serializable transaction that read a key present which has expired by the time it
 *    validates (under the writer lock) fails with CONFLICT, as if the key had been deleted
 *    by a commit just before its own (commit.ts, {@link ReadExpiry}). A read of a key already
 *    expired saw it absent, which stays true until someone writes it (an ordinary conflict).
 * 4. `sum()` on an expiring key keeps its expiry; on an expired key it starts from nothing
 *    and the result does not expire. `set()` without `expireIn` clears an expiry; `check()`
 *    sees an expired key as absent.
 * 5. Compaction turns an expired version into a delete of the same version (so a table
 *    below still holding an older version of the key stays hidden) and drops it where
 *    deletes are dropped (fold.ts; merge.ts rule R4). Since rule 1 reads an expired version
 *    as absent at every snapshot, no pin can tell the difference.
 * 6. `watch` reports the `set` (with its value) and never the expiry.
 *
 * @module
 */
import { TxtDbError } from "./errors.ts";
import { readFields } from "./options.ts";
import type { TableEntry } from "./table.ts";

/** The envelope's CBOR tag: tag 47226 is 0xD9 0xB8 0x7A. */
export const TAG_EXPIRING = 47226;
const B0 = 0xd9, B1 = 0xb8, B2 = 0x7a, B3 = 0x82, B4 = 0x1b;
/** Bytes before the value's own CBOR bytes. */
export const ENVELOPE_HEADER_BYTES = 13;
/** The longest `expireIn` accepted: 100 years of 365.25 days, in ms. */
export const EXPIRE_IN_MAX_MS = 100 * 365.25 * 86_400_000;

/** Options of `set()`. */
export interface SetOptions {
  /**
   * Milliseconds from now after which the key reads as absent, in every process (a finite
   * number greater than 0 and at most 100 years; a fraction is rounded up to a whole ms).
   * Omitted: the key does not expire (a `set` without it clears an earlier expiry).
   */
  expireIn?: number;
}

/**
 * True when `bytes` are an expiry envelope (the first three bytes; no decoding). The second
 * byte first: 0xB8 after 0xD9 is rare (cbor-x records, the usual objects, start 0xD9 0xDF), so
 * a value without expiry is told apart by one comparison on every read.
 */
export function isExpiring(bytes: Uint8Array): boolean {
  return bytes[1] === B1 && bytes[0] === B0 && bytes[2] === B2;
}

/**
 * {@link isExpiring} of the value that starts at bytes[at] inside a larger buffer. It may
 * say true for a value shorter than three bytes (it reads on into what follows): the caller
 * then decides on a view of the value itself.
 */
export function mayBeExpiringAt(bytes: Uint8Array, at: number): boolean {
  return bytes[at + 1] === B1 && bytes[at] === B0 && bytes[at + 2] === B2;
}

/**
 * The absolute expiry (ms since the epoch) of an envelope, or NaN when the envelope is
 * malformed (never expired, so that the read goes on to decode it and reports CORRUPTION).
 * Only for bytes {@link isExpiring} accepted.
 */
export function expiresAtOf(bytes: Uint8Array): number {
  if (bytes.length <= ENVELOPE_HEADER_BYTES || bytes[3] !== B3 || bytes[4] !== B4) return NaN;
  const hi = (bytes[5]! << 24 >>> 0) + (bytes[6]! << 16) + (bytes[7]! << 8) + bytes[8]!;
  const lo = (bytes[9]! << 24 >>> 0) + (bytes[10]! << 16) + (bytes[11]! << 8) + bytes[12]!;
  return hi > 0x1fffff ? NaN : hi * 2 ** 32 + lo;
}

/** True when `bytes` hold a value that has expired at `nowMs` (rule 1). */
export function isExpired(bytes: Uint8Array, nowMs: number): boolean {
  return isExpiring(bytes) && expiresAtOf(bytes) <= nowMs;
}

/** The value's own bytes inside an envelope (a view); CORRUPTION if the envelope is malformed. */
export function payloadOf(bytes: Uint8Array): Uint8Array {
  if (Number.isNaN(expiresAtOf(bytes))) {
    const cause = new Error(`malformed expiry envelope (${bytes.length} bytes)`);
    throw new TxtDbError("CORRUPTION", `A stored value cannot be decoded (${cause.message}): the store is damaged. Run \`txtdb check\`; restore from a backup if it persists`, { cause });
  }
  return bytes.subarray(ENVELOPE_HEADER_BYTES);
}

/** The value's own bytes: the payload of an envelope, or `bytes` themselves. */
export function valueBytesOf(bytes: Uint8Array): Uint8Array {
  return isExpiring(bytes) ? payloadOf(bytes) : bytes;
}

/** Wraps encoded value bytes in an envelope expiring at `expiresAtMs`. */
export function wrapExpiring(value: Uint8Array, expiresAtMs: number): Uint8Array {
  const out = new Uint8Array(ENVELOPE_HEADER_BYTES + value.length);
  out[0] = B0, out[1] = B1, out[2] = B2, out[3] = B3, out[4] = B4;
  const hi = Math.floor(expiresAtMs / 2 ** 32), lo = expiresAtMs >>> 0;
  out[5] = hi >>> 24, out[6] = (hi >>> 16) & 0xff, out[7] = (hi >>> 8) & 0xff, out[8] = hi & 0xff;
  out[9] = lo >>> 24, out[10] = (lo >>> 16) & 0xff, out[11] = (lo >>> 8) & 0xff, out[12] = lo & 0xff;
  out.set(value, ENVELOPE_HEADER_BYTES);
  return out;
}

/**
 * Checks `set()`'s options and returns the absolute expiry (ms since the epoch) they ask
 * for, or undefined for none. INVALID_ARGUMENT, saying what was wrong, for anything else:
 * an unknown option is refused too, since a misspelt `expireIn` would silently keep a key
 * forever.
 */
export function expiryFromOptions(options: SetOptions | undefined, nowMs: number, what: string): number | undefined {
  if (options === undefined) return undefined;
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new TxtDbError("INVALID_ARGUMENT", `${what} options must be an object such as { expireIn: 60_000 }, got ${options === null ? "null" : Array.isArray(options) ? "an array" : typeof options}`);
  }
  // Read once, through readFields: a getter that throws is INVALID_ARGUMENT, not its error.
  const ms = readFields(what, options, ["expireIn"], (name) => new TxtDbError("INVALID_ARGUMENT", `${what} has no option ${JSON.stringify(name)}; the only option is expireIn (milliseconds until the key expires)`)).expireIn;
  if (ms === undefined) return undefined;
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms <= 0) {
    throw new TxtDbError("INVALID_ARGUMENT", `${what} expireIn must be a finite number of milliseconds greater than 0, got ${typeof ms === "number" ? String(ms) : typeof ms === "string" ? JSON.stringify(ms) : typeof ms}; omit it for a key that does not expire, or delete() the key`);
  }
  if (ms > EXPIRE_IN_MAX_MS) {
    throw new TxtDbError("INVALID_ARGUMENT", `${what} expireIn is ${ms} ms; the longest accepted is ${EXPIRE_IN_MAX_MS} ms (100 years); omit it for a key that does not expire`);
  }
  return nowMs + Math.ceil(ms);
}

/**
 * The soonest expiry among the versions a serializable transaction read present (rule 3):
 * if it has passed when the transaction validates, one of its reads is no longer true.
 */
export interface ReadExpiry {
  ns: string;
  /** The key (binary string, keys.ts). */
  key: string;
  /** The version that was read. */
  tsn: number;
  expiresAtMs: number;
}

/**
 * Compaction's view of table entries (rule 5): an expired version becomes a delete of the
 * same version, which the fold and the merges then keep or drop as they keep or drop deletes.
 */
export function* reclaimExpired(entries: Iterable<TableEntry>, nowMs: number): Generator<TableEntry, void, undefined> {
  for (const e of entries) {
    if (e.value !== null && isExpired(e.value, nowMs)) yield { nsId: e.nsId, key: e.key, tsn: e.tsn, value: null };
    else yield e;
  }
}
