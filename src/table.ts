/**
 * Sorted tables: the immutable on-disk files of storage v2. Compaction writes the folded
 * state of the store as tables; reads look a key up in a few tables instead of holding
 * every key in memory. This file has the writer, the reader and the byte format.
 *
 * A table holds entries (nsId, key, tsn, value-or-tombstone) sorted by namespace id
 * ascending, key bytes ascending, TSN descending: all versions of one key are adjacent,
 * newest first, so "the newest version ≤ snapshot S" is the first one met with tsn ≤ S.
 *
 * ```
 * file     := dataBlock* filter index footer            (contiguous, no gaps)
 *
 * dataBlock:                                            (~4 KiB, see BLOCK_BYTES_TARGET)
 *   entry*                 count entries, sorted
 *   u32le restart[r]       offset in the block of entries 0, 8, 16, … (r = ceil(count / 8))
 *   u32le count            ≥ 1
 *   u32le xxhash32         of every byte of the block before it
 * entry:
 *   varint shared          bytes of the composite key shared with the previous entry (0 at a restart)
 *   varint unshared        bytes of the composite key that follow
 *   varint valueTag        0: tombstone; n > 0: a value of n − 1 bytes
 *   varint tsn             0 ≤ tsn ≤ 2^53 − 1
 *   u8[unshared]           the composite key's bytes from `shared` on
 *   u8[valueTag − 1]       the value (CBOR bytes, stored as is)
 * composite key := u32be nsId ++ key bytes   (byte order = (nsId, key) order)
 * varint := LEB128, 7 bits per byte, least significant first, at most 8 bytes
 *
 * filter := Bloom filter encoding (bloom.ts) ++ u32le xxhash32 of it
 *
 * index:
 *   indexEntry[blockCount]
 *   u32le entryStart[blockCount]  offset in the index of each indexEntry (binary search without parsing)
 *   u32le xxhash32                of every byte of the index before it
 * indexEntry := varint lastKeyBytes,  u8[] lastKey,  varint lastTsn,    (composite keys; the
 *               varint blockOffset, varint blockBytes,                  last key first: the
 *               varint firstKeyBytes, u8[] firstKey, varint firstTsn    binary search reads it)
 *
 * footer (80 bytes, little-endian; u64 fields are < 2^53):
 *   0  u64 dataBytes (= the filter's offset)   8  u32 filterBytes       12 u32 indexBytes
 *   16 u32 blockCount                          20 u32 formatVersion (1)
 *   24 u64 entryCount   32 u64 keyCount   40 u64 tombstoneCount   48 u64 minTsn   56 u64 maxTsn
 *   64 u8[8] magic "txtdbTBL"   72 u32 zero (reserved)   76 u32 xxhash32 of bytes 0..75
 * ```
 *
 * Rules:
 * 1. Entries are strictly increasing in (nsId, key, −tsn); the writer asserts it. Two
 *    entries with the same (nsId, key, tsn) are a bug in the caller.
 * 2. Every byte of the file is under a checksum: each data block, the filter and the index
 *    carry an xxHash32 of their bytes (xxhash32.ts says why not CRC32C, which the log
 *    uses), the footer of its own. The footer's sizes must add up
 *    to the file's size exactly, so a truncated (or extended) file is detected at open.
 *    Any mismatch is CORRUPTION naming the file and the offset of the damaged region.
 * 3. Opening reads the footer, the filter and the index only, and parses neither: the work
 *    is a read and a checksum of each, not proportional to the entries (the index is ~1 %
 *    of the data, one entry per block). Data blocks are read on demand by positioned
 *    reads, each checked against its checksum when it enters the process, and shared through
 *    the process's BlockCache (blockcache.ts).
 * 4. Block size: blocks close once they reach BLOCK_BYTES_TARGET (4 KiB). Why 4 KiB: a
 *    point read that misses the cache reads and checksums one whole block, so smaller
 *    blocks make cold reads cheaper (xxhash32.ts runs at ~3 GB/s here: 4 KiB ≈ 1.3 µs,
 *    16 KiB ≈ 5 µs, more than the pread itself) and waste less cache on the
 *    neighbours of a hot key; larger blocks make the index, which stays in memory, smaller
 *    (at 4 KiB it is ~1.2 % of the data: 1.3 MiB for 1M keys of 100-byte values, so ~14 MB
 *    at 10M keys). 4 KiB is also the page size, so a block costs one page of the OS cache.
 *    A value larger than the target goes in a block of its own, as is (no blob files yet).
 * 5. Restart points every 8 entries let a point read binary-search a block without
 *    decoding it (8, not LevelDB's 16: half the entries to scan for ~0.6 % more bytes); keys
 *    between restarts share their prefix with the previous key, which
 *    for typical tuple keys (["user", id]) saves most of the key bytes.
 * 6. Only the Bloom filter (per table, over (nsId, key), 10 bits per key) is consulted before
 *    the index for point reads; range reads do not use it, and do not load it: a table
 *    opened lazily (with the manifest's bounds) reads its filter on its first point read,
 *    and a process that only scans it never does (half of what a first touch reads).
 * 7. Tables are at most TABLE_BYTES_MAX (4 GiB − 1): offsets fit u32 in the cache key and
 *    in the index entry starts. Compaction writes far smaller tables.
 * 8. The writer writes with positioned writes through the port and never syncs: the caller
 *    writes to a temporary name, calls `datasync()` on the handle after `finish()`, renames
 *    the file into place and syncs the directory before any manifest names the table.
 * 9. Identity: every checksum of a table copied over another's name (from another store, or
 *    an older table of this store) holds, so rule 2 alone would serve it as this store's
 *    data. The writer returns the file's size, its footer's checksum and a checksum of its
 *    whole content (xxHash32 over the checksums of every block, the filter, the index and
 *    the footer, in file order); the manifest records them (log.ts `ManifestTable`). Open
 *    compares the size and the footer's checksum (no read beyond the footer it makes
 *    anyway); `verify()`, which reads every block (check, backup), the content checksum. A
 *    mismatch is CORRUPTION. Tables of a manifest written before this are not checked.
 *
 * @module
 */
import { BloomBuilder, BloomFilter, bloomHash, BLOOM_BITS_PER_KEY } from "./bloom.ts";
import type { BlockCache } from "./blockcache.ts";
import { xxhash32 } from "./xxhash32.ts";
import { expiresAtOf } from "./expiry.ts";
import { binaryString } from "./keys.ts";
import { assert, TxtDbError } from "./errors.ts";
import { PortError } from "./port.ts";
import type { FileHandle } from "./port.ts";

/** Bytes of the fixed-size footer at the end of every table. */
export const TABLE_FOOTER_BYTES = 80;
/** The format version this code writes and reads. */
export const TABLE_FORMAT_VERSION = 1;
/** A block closes once it holds this many bytes (rule 4). */
export const BLOCK_BYTES_TARGET = 4096;
/**
 * The block cache's slab slot (blockcache.ts rule 6): a block closes once it passes the
 * target, so most are the target plus part of one entry; blocks longer than this (large
 * values) are cached in buffers of their own.
 */
export const BLOCK_SLOT_BYTES = BLOCK_BYTES_TARGET + 512;
/** Largest table file (rule 7). */
export const TABLE_BYTES_MAX = 2 ** 32 - 1;
/** Entries between restart points in a block (rule 5). */
const RESTART_INTERVAL = 8;
/** Most bytes a varint may take (8 × 7 = 56 bits cover TSNs up to 2^53). */
const VARINT_BYTES_MAX = 8;
const MAGIC = [0x74, 0x78, 0x74, 0x64, 0x62, 0x54, 0x42, 0x4c]; // "txtdbTBL"
/** The largest namespace id: a table stores it in 4 bytes, ahead of each key. */
export const NS_ID_MAX = 2 ** 32 - 1;
/** Fixed per-block cost charged to the cache on top of the block's bytes (object, view). */
const BLOCK_OVERHEAD_BYTES = 96;

/**
 * One version of one key, as tables store and iterators yield it. `key` is a binary string
 * (one char per byte of the encoded key, see keys.ts); `value` is the value's bytes or
 * null for a delete (a tombstone). Values yielded by a reader are views into a cached
 * block: never modify them.
 */
export interface TableEntry {
  /** The namespace id (0 .. 2^32 − 1). */
  nsId: number;
  /** The encoded key as a binary string. */
  key: string;
  /** The version: the TSN of the commit that wrote it. */
  tsn: number;
  /** The value's bytes, or null for a delete. */
  value: Uint8Array | null;
}

/**
 * Builds the rows of {@link TableReader.scanInto} straight from a block's bytes: a list
 * page's entries without a key string, a value view or a [key, version] pair each.
 */
export interface ScanRowMaker<R> {
  /**
   * The row of the key key[4, keyLen) (its bytes past the namespace id) at `tsn`, whose
   * value is bytes[valueAt, valueAt + valueLen); undefined leaves the entry out (an
   * expired value). The bytes are borrowed: decode them, keep no view.
   */
  row(key: Uint8Array, keyLen: number, tsn: number, bytes: Uint8Array, valueAt: number, valueLen: number): R | undefined;
  /** Set when scanInto stops because `out` is full: the last row's key, a binary string. */
  lastKey: string | undefined;
}

/** The version of a key a point read finds: its TSN and its bytes, or null for a delete. */
export interface TableVersion {
  /** The TSN of the commit that wrote it. */
  tsn: number;
  /** The value's bytes (a view into a cached block: do not modify), or null for a delete. */
  value: Uint8Array | null;
}

/** A (namespace, key) position, e.g. a table's smallest or largest key. */
export interface TableKey {
  /** The namespace id. */
  nsId: number;
  /** The encoded key as a binary string. */
  key: string;
}

/** What a table holds, returned by the writer and known to the reader after open. */
export interface TableMeta {
  /** The file's path (as the handle was opened). */
  path: string;
  /** Size of the whole file. */
  fileBytes: number;
  /** Bytes of data blocks (the filter starts here). */
  dataBytes: number;
  /** Bytes of the filter with its checksum. */
  filterBytes: number;
  /** Bytes of the index with its checksum. */
  indexBytes: number;
  /** Data blocks. */
  blockCount: number;
  /** Versions stored, tombstones included. */
  entryCount: number;
  /** Distinct (nsId, key) pairs. */
  keyCount: number;
  /** Versions that are deletes. */
  tombstoneCount: number;
  /** Smallest TSN stored (0 when the table is empty). */
  minTsn: number;
  /** Largest TSN stored (0 when the table is empty). */
  maxTsn: number;
  /** The footer's own checksum (its last 4 bytes): with `fileBytes`, what the manifest checks at open (rule 9). */
  footerSum: number;
  /**
   * The checksum of the whole file (rule 9): from the writer, or as the manifest records
   * it for a table opened by the manifest; undefined when neither gave it.
   */
  contentSum: number | undefined;
  /** Smallest (nsId, key) stored; undefined when the table is empty. */
  minKey: TableKey | undefined;
  /** Largest (nsId, key) stored; undefined when the table is empty. */
  maxKey: TableKey | undefined;
}

/** Options of a {@link TableWriter}. */
export interface TableWriterOptions {
  /** Where blocks close (rule 4); 256 B to 1 MiB, {@link BLOCK_BYTES_TARGET} by default. */
  blockBytesTarget?: number;
  /** Bloom filter bits per key, 1 to 64; 10 by default (~0.8 % false positives). */
  bloomBitsPerKey?: number;
}

/** What {@link TableReader.verify} checked. */
export interface TableVerifyReport {
  /** Data blocks read and checked. */
  blocks: number;
  /** Entries decoded and checked. */
  entries: number;
  /** Bytes read and checksummed (the whole file). */
  bytes: number;
  /** The checksum of the whole file (rule 9), computed from what was read. */
  contentSum: number;
}

/**
 * What the manifest records of a table so that another file put under its name is told
 * from it (rule 9): its size and footer checksum, checked at every open, and the checksum
 * of its whole content, checked when every block is read (`verify()`: check and backup).
 */
export interface TableIdentity {
  /** The file's size in bytes. */
  bytes: number;
  /** The footer's checksum (its last 4 bytes). */
  footerSum: number;
  /** xxhash32 over the checksums of every block, the filter, the index and the footer, in file order. */
  contentSum?: number;
}

// ---------------------------------------------------------------------------------------
// Small byte helpers

/** A growable byte buffer for building blocks and the index. */
class ByteBuilder {
  bytes: Uint8Array;
  length = 0;
  constructor(capacity: number) {
    this.bytes = new Uint8Array(capacity);
  }
  reserve(extra: number): void {
    const need = this.length + extra;
    if (need <= this.bytes.length) return;
    let cap = Math.max(64, this.bytes.length * 2);
    while (cap < need) cap *= 2;
    const grown = new Uint8Array(cap);
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
  }
  byte(b: number): void {
    this.reserve(1);
    this.bytes[this.length++] = b;
  }
  varint(n: number): void {
    this.reserve(VARINT_BYTES_MAX);
    const b = this.bytes;
    while (n >= 128) {
      b[this.length++] = (n % 128) | 128;
      n = Math.floor(n / 128);
    }
    b[this.length++] = n;
  }
  u32(n: number): void {
    this.reserve(4);
    const b = this.bytes;
    b[this.length++] = n & 0xff;
    b[this.length++] = (n >>> 8) & 0xff;
    b[this.length++] = (n >>> 16) & 0xff;
    b[this.length++] = (n >>> 24) & 0xff;
  }
  append(src: Uint8Array): void {
    this.reserve(src.length);
    this.bytes.set(src, this.length);
    this.length += src.length;
  }
  /** A copy of the bytes so far (the port may keep what it is given, e.g. the simulator). */
  take(): Uint8Array {
    const out = this.bytes.slice(0, this.length);
    this.length = 0;
    return out;
  }
}

/** Position after the last varint read: a module scratch, used only synchronously. */
let varintEnd = 0;

/** Reads a varint at `pos` (not past `end`); -1 when it is malformed or runs past `end`. */
function readVarint(b: Uint8Array, pos: number, end: number): number {
  if (pos < end) {
    const first = b[pos]!;
    if (first < 128) {
      varintEnd = pos + 1;
      return first;
    }
  }
  let result = 0;
  let mul = 1;
  for (let i = 0; i < VARINT_BYTES_MAX; i++) {
    if (pos >= end) return -1;
    const byte = b[pos++]!;
    result += (byte & 127) * mul;
    if (byte < 128) {
      varintEnd = pos;
      return result <= Number.MAX_SAFE_INTEGER ? result : -1;
    }
    mul *= 128;
  }
  return -1;
}

function u32At(b: Uint8Array, pos: number): number {
  return (b[pos]! | (b[pos + 1]! << 8) | (b[pos + 2]! << 16) | (b[pos + 3]! << 24)) >>> 0;
}

function u64At(b: Uint8Array, pos: number): number {
  return u32At(b, pos) + u32At(b, pos + 4) * 2 ** 32;
}

function putU32(b: Uint8Array, pos: number, n: number): void {
  b[pos] = n & 0xff;
  b[pos + 1] = (n >>> 8) & 0xff;
  b[pos + 2] = (n >>> 16) & 0xff;
  b[pos + 3] = (n >>> 24) & 0xff;
}

function putU64(b: Uint8Array, pos: number, n: number): void {
  putU32(b, pos, n % 2 ** 32);
  putU32(b, pos + 4, Math.floor(n / 2 ** 32));
}

/** Byte order of a[aStart, aEnd) against b[bStart, bEnd). */
function compareBytes(a: Uint8Array, aStart: number, aEnd: number, b: Uint8Array, bStart: number, bEnd: number): number {
  const n = Math.min(aEnd - aStart, bEnd - bStart);
  for (let i = 0; i < n; i++) {
    const d = a[aStart + i]! - b[bStart + i]!;
    if (d !== 0) return d;
  }
  return (aEnd - aStart) - (bEnd - bStart);
}

/** The composite key (u32be nsId ++ key bytes) of (nsId, key). */
function compositeKey(nsId: number, key: string): Uint8Array {
  const out = new Uint8Array(4 + key.length);
  out[0] = nsId >>> 24;
  out[1] = (nsId >>> 16) & 0xff;
  out[2] = (nsId >>> 8) & 0xff;
  out[3] = nsId & 0xff;
  for (let i = 0; i < key.length; i++) out[4 + i] = key.charCodeAt(i);
  return out;
}

/** The entry header {@link readEntry} read last: shared and new key bytes, tag, TSN, where the key's new bytes start, the value's length. */
let eShared = 0, eUnshared = 0, eTag = 0, eTsn = 0, eKeyAt = 0, eValueLen = 0;

/**
 * Reads the header of entry `i` of a block (`bytes` up to its restart array at `end`) at
 * `pos`, the previous key being `prevKeyLen` bytes long; false when it is malformed: a
 * varint that does not parse, a key sharing more than the previous one has or shorter than
 * a namespace id, bytes past the entries, or a restart entry that shares bytes or is not
 * where the restart array says (rule 2 for a block whose checksum matched but whose content
 * is hostile).
 */
function readEntry(bytes: Uint8Array, pos: number, end: number, i: number, prevKeyLen: number): boolean {
  eShared = readVarint(bytes, pos, end);
  eUnshared = readVarint(bytes, varintEnd, end);
  eTag = readVarint(bytes, varintEnd, end);
  eTsn = readVarint(bytes, varintEnd, end);
  eKeyAt = varintEnd;
  eValueLen = eTag > 0 ? eTag - 1 : 0;
  return !(eShared < 0 || eUnshared < 0 || eTag < 0 || eTsn < 0 || eShared > prevKeyLen || eShared + eUnshared < 4 || eKeyAt + eUnshared + eValueLen > end ||
    (i % RESTART_INTERVAL === 0 && (eShared !== 0 || u32At(bytes, end + 4 * (i / RESTART_INTERVAL)) !== pos)));
}

/** A copy of the first `keep` bytes of `key` in a buffer of at least `length` bytes. */
function grow(key: Uint8Array, keep: number, length: number): Uint8Array<ArrayBuffer> {
  const grown = new Uint8Array(Math.max(length, 2 * key.length));
  grown.set(key.subarray(0, keep));
  return grown;
}

/** Order of (nsId, key, tsn) entries: namespace, then key, then TSN descending. */
export function compareEntries(aNs: number, aKey: string, aTsn: number, bNs: number, bKey: string, bTsn: number): number {
  if (aNs !== bNs) return aNs < bNs ? -1 : 1;
  if (aKey !== bKey) return aKey < bKey ? -1 : 1;
  return aTsn === bTsn ? 0 : aTsn > bTsn ? -1 : 1;
}

/**
 * A table that is whole and well formed but is not the one the manifest names (rule 9):
 * a file copied over it, from another store or an older table of this one.
 */
function notTheTable(path: string, offset: number, reason: string): TxtDbError {
  return new TxtDbError(
    "CORRUPTION",
    `Table "${path}" is not the table the store's manifest names: ${reason} (a table of another store, or an older one of this store, copied over it?). None of its data is served as this store's. Put the right file back, or restore the store from a backup`,
    { details: { file: path, offset, region: "identity", reason } },
  );
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, "0")}`;
}

function corruption(path: string, offset: number, reason: string, region: string): TxtDbError {
  return new TxtDbError(
    "CORRUPTION",
    `Table "${path}" is damaged at offset ${offset} (${region}): ${reason}. Its data cannot be trusted; run \`txtdb check\` and restore the store from a backup if it persists`,
    { details: { file: path, offset, region, reason } },
  );
}

// ---------------------------------------------------------------------------------------
// Writer

/**
 * Writes one table from entries given in table order (rule 1), streaming: it holds one
 * block, the index and 4 bytes per key for the filter, whatever the table's size. It
 * writes through `file.write(data, position)` from offset 0 and never syncs (rule 8).
 *
 * @example
 * ```ts
 * const file = platform.open(dir + "/t-000001.tmp", { create: true, exclusive: true });
 * const w = new TableWriter(file);
 * for (const e of sortedEntries) w.add(e.nsId, e.key, e.tsn, e.value);
 * const meta = w.finish();
 * file.datasync(); file.close();
 * platform.rename(dir + "/t-000001.tmp", dir + "/t-000001.tbl"); platform.syncDir(dir);
 * ```
 */
export class TableWriter {
  readonly #file: FileHandle;
  readonly #blockBytesTarget: number;
  readonly #bloom: BloomBuilder;
  readonly #block = new ByteBuilder(2 * BLOCK_BYTES_TARGET);
  readonly #index = new ByteBuilder(4096);
  #indexStarts: number[] = [];
  /** The checksum of every region written so far, in file order (rule 9). */
  readonly #sums = new ByteBuilder(256);
  #restarts: number[] = [];
  #blockCount = 0;
  #blockEntries = 0;
  #blockFirstKey: Uint8Array = new Uint8Array(0);
  #blockFirstTsn = 0;
  #offset = 0;
  #entryCount = 0;
  #keyCount = 0;
  #tombstoneCount = 0;
  #minTsn = Number.MAX_SAFE_INTEGER;
  #maxTsn = 0;
  #minKey: TableKey | undefined;
  #prevNs = -1;
  #prevKey = "";
  #prevTsn = 0;
  #finished = false;

  /** A writer of a new table into `file`, which must be empty; see {@link TableWriterOptions}. */
  constructor(file: FileHandle, options: TableWriterOptions = {}) {
    const target = options.blockBytesTarget ?? BLOCK_BYTES_TARGET;
    assert(Number.isSafeInteger(target) && target >= 256 && target <= 2 ** 20, `block target ${target} outside 256 B .. 1 MiB`);
    this.#file = file;
    this.#blockBytesTarget = target;
    this.#bloom = new BloomBuilder(options.bloomBitsPerKey ?? BLOOM_BITS_PER_KEY);
  }

  /** Bytes written to the file so far (blocks only until `finish()`). */
  get bytesWritten(): number {
    return this.#offset;
  }

  /** Adds the next entry; `value` null is a tombstone. Entries must come in table order (rule 1). */
  add(nsId: number, key: string, tsn: number, value: Uint8Array | null): void {
    assert(!this.#finished, "table writer used after finish()");
    // Conditions first: the messages are built only on failure (this runs per entry).
    if (!(Number.isInteger(nsId) && nsId >= 0 && nsId <= NS_ID_MAX)) assert(false, `namespace id ${nsId} outside 0..2^32-1`);
    if (!(Number.isSafeInteger(tsn) && tsn >= 0)) assert(false, `TSN ${tsn} is not a safe integer ≥ 0`);
    const sameKey = nsId === this.#prevNs && key === this.#prevKey;
    if (this.#entryCount > 0 && compareEntries(this.#prevNs, this.#prevKey, this.#prevTsn, nsId, key, tsn) >= 0) {
      assert(false, `table entries out of order: (${nsId}, ${JSON.stringify(key)}, ${tsn}) after (${this.#prevNs}, ${JSON.stringify(this.#prevKey)}, ${this.#prevTsn})`);
    }
    const compositeBytes = 4 + key.length;
    const entryBytesMax = 4 * VARINT_BYTES_MAX + compositeBytes + (value?.length ?? 0);
    if (this.#blockEntries > 0 && this.#block.length + entryBytesMax > this.#blockBytesTarget) this.#flushBlock();

    // Shared prefix with the previous composite key (rule 5); 0 at a restart point.
    let shared = 0;
    const restart = this.#blockEntries % RESTART_INTERVAL === 0;
    if (!restart) {
      if (nsId === this.#prevNs) {
        const prev = this.#prevKey;
        const n = Math.min(prev.length, key.length);
        let i = 0;
        while (i < n && prev.charCodeAt(i) === key.charCodeAt(i)) i++;
        shared = 4 + i;
      } else {
        const diff = (nsId ^ this.#prevNs) >>> 0;
        shared = Math.clz32(diff) >>> 3;
      }
    } else {
      this.#restarts.push(this.#block.length);
    }
    const b = this.#block;
    b.varint(shared);
    b.varint(compositeBytes - shared);
    b.varint(value === null ? 0 : value.length + 1);
    b.varint(tsn);
    b.reserve(compositeBytes - shared);
    for (let i = shared; i < 4; i++) b.bytes[b.length++] = (nsId >>> (24 - 8 * i)) & 0xff;
    for (let i = Math.max(0, shared - 4); i < key.length; i++) {
      const c = key.charCodeAt(i);
      if (c > 0xff) assert(false, "table key is not a binary string (a char above 0xff)");
      b.bytes[b.length++] = c;
    }
    if (value !== null) b.append(value);

    if (this.#blockEntries === 0) {
      this.#blockFirstKey = compositeKey(nsId, key);
      this.#blockFirstTsn = tsn;
    }
    this.#blockEntries++;
    this.#entryCount++;
    if (!sameKey) {
      this.#keyCount++;
      this.#bloom.add(bloomHash(nsId, key));
    }
    if (value === null) this.#tombstoneCount++;
    if (tsn < this.#minTsn) this.#minTsn = tsn;
    if (tsn > this.#maxTsn) this.#maxTsn = tsn;
    this.#minKey ??= { nsId, key };
    this.#prevNs = nsId;
    this.#prevKey = key;
    this.#prevTsn = tsn;
    if (b.length >= this.#blockBytesTarget) this.#flushBlock();
  }

  #write(data: Uint8Array): void {
    if (this.#offset + data.length + TABLE_FOOTER_BYTES > TABLE_BYTES_MAX) {
      throw new TxtDbError("LIMIT", `Table "${this.#file.path}" would exceed ${TABLE_BYTES_MAX} bytes, the limit of one table; write smaller tables`);
    }
    this.#file.write(data, this.#offset);
    this.#offset += data.length;
  }

  #flushBlock(): void {
    if (this.#blockEntries === 0) return;
    const b = this.#block;
    for (const r of this.#restarts) b.u32(r);
    b.u32(this.#blockEntries);
    const sum = xxhash32(b.bytes.subarray(0, b.length));
    b.u32(sum);
    this.#sums.u32(sum);
    const block = b.take();
    const offset = this.#offset;
    this.#write(block);
    const ix = this.#index;
    this.#indexStarts.push(ix.length);
    const last = compositeKey(this.#prevNs, this.#prevKey);
    ix.varint(last.length);
    ix.append(last);
    ix.varint(this.#prevTsn);
    ix.varint(offset);
    ix.varint(block.length);
    ix.varint(this.#blockFirstKey.length);
    ix.append(this.#blockFirstKey);
    ix.varint(this.#blockFirstTsn);
    this.#blockCount++;
    this.#blockEntries = 0;
    this.#restarts = [];
  }

  /**
   * Writes the last block, the filter, the index and the footer; returns what the table
   * holds. Does not sync (rule 8): the caller makes the file durable and names it.
   */
  finish(): TableMeta {
    assert(!this.#finished, "table writer finished twice");
    this.#flushBlock();
    this.#finished = true;
    const dataBytes = this.#offset;

    const filter = new ByteBuilder(0);
    filter.append(this.#bloom.finish());
    const filterSum = xxhash32(filter.bytes.subarray(0, filter.length));
    filter.u32(filterSum);
    const filterBytes = filter.length;
    this.#write(filter.take());

    const ix = this.#index;
    for (const s of this.#indexStarts) ix.u32(s);
    const indexSum = xxhash32(ix.bytes.subarray(0, ix.length));
    ix.u32(indexSum);
    const indexBytes = ix.length;
    this.#write(ix.take());

    const empty = this.#entryCount === 0;
    const minTsn = empty ? 0 : this.#minTsn;
    const footer = new Uint8Array(TABLE_FOOTER_BYTES);
    putU64(footer, 0, dataBytes);
    putU32(footer, 8, filterBytes);
    putU32(footer, 12, indexBytes);
    putU32(footer, 16, this.#blockCount);
    putU32(footer, 20, TABLE_FORMAT_VERSION);
    putU64(footer, 24, this.#entryCount);
    putU64(footer, 32, this.#keyCount);
    putU64(footer, 40, this.#tombstoneCount);
    putU64(footer, 48, minTsn);
    putU64(footer, 56, this.#maxTsn);
    footer.set(MAGIC, 64);
    const footerSum = xxhash32(footer.subarray(0, 76));
    putU32(footer, 76, footerSum);
    this.#write(footer);
    this.#indexStarts = [];
    const sums = this.#sums;
    sums.u32(filterSum);
    sums.u32(indexSum);
    sums.u32(footerSum);

    return {
      path: this.#file.path,
      fileBytes: this.#offset,
      dataBytes,
      filterBytes,
      indexBytes,
      blockCount: this.#blockCount,
      entryCount: this.#entryCount,
      keyCount: this.#keyCount,
      tombstoneCount: this.#tombstoneCount,
      minTsn,
      maxTsn: this.#maxTsn,
      footerSum,
      contentSum: xxhash32(sums.bytes.subarray(0, sums.length)),
      minKey: this.#minKey,
      maxKey: empty ? undefined : { nsId: this.#prevNs, key: this.#prevKey },
    };
  }
}

// ---------------------------------------------------------------------------------------
// Reader

/** A data block as cached: its bytes (trailer included) and where its restarts are. */
interface Block {
  readonly bytes: Uint8Array;
  readonly count: number;
  /** Offset of the restart array (the end of the entries). */
  readonly restartsAt: number;
  /**
   * The bytes are borrowed: the shared read buffer (a point read of a block the cache did
   * not admit), valid until the next such read, or a slot of the cache's slab
   * (blockcache.ts rule 6), valid until the cache next takes a block. Whatever a read
   * returns from them is copied, and a scan decodes a private copy.
   */
  readonly transient: boolean;
}

/** The buffer point reads read a block into when the cache does not admit it (grown as needed). */
let transientBuffer = new Uint8Array(2 * BLOCK_BYTES_TARGET);

/**
 * Scan read-ahead (see TableReader's #loadBlockForScan): a scan that misses the cache reads
 * the next blocks it will need with one positioned read, at most this many bytes, instead of
 * one read per block. A system call costs ~5-7 µs on this kind of machine when it interrupts
 * JavaScript (page-table isolation flushes the TLB), more than decoding a 4 KiB block: a
 * 1,000-key scan of a store larger than the cache made ~20 reads.
 */
const SCAN_RUN_BYTES_MAX = 128 * 1024;
/**
 * The run of blocks read ahead: one buffer for the process (scans use it synchronously), and
 * the reader whose bytes it holds. The reader itself, not its table id: ids are numbered per
 * block cache, and two stores open in one process have a cache each.
 */
let runBuffer = new Uint8Array(0);
let runReader: object | undefined;
let runStart = 0;
let runEnd = 0;

/**
 * Private copies of blocks for scans (a block read from the file, or copied out of a cache
 * slab slot) are carved from buffers of this size. Allocating a 4 KiB buffer per block cost
 * ~2 µs (an ArrayBuffer with its backing store), more than decoding the block; a bump
 * pointer in a shared buffer costs the copy only. A value a caller keeps keeps its whole
 * arena alive (at most this many bytes), and blocks the cache keeps in buffers of their own
 * never come from here, so the cache's byte bound stays exact.
 */
const ARENA_BYTES = 64 * 1024;
let arena = new Uint8Array(0);
let arenaAt = 0;

/** `length` fresh bytes that no one else writes (a view into the current arena, 8-aligned for xxhash32's word reads). */
function arenaBytes(length: number): Uint8Array {
  if (length > ARENA_BYTES / 4) return new Uint8Array(length);
  if (arenaAt + length > arena.length) {
    arena = new Uint8Array(ARENA_BYTES);
    arenaAt = 0;
  }
  const out = new Uint8Array(arena.buffer, arenaAt, length);
  arenaAt += (length + 7) & ~7;
  return out;
}

/** A block decoded for iteration: one array slot per entry. */
interface DecodedBlock {
  readonly bytes: Uint8Array;
  readonly count: number;
  readonly nsIds: number[];
  readonly keys: string[];
  readonly tsns: number[];
  /** Start of each value in `bytes`; -1 for a tombstone. */
  readonly valueStarts: number[];
  readonly valueEnds: number[];
}

/** A parsed index entry (the reader's scratch; copy what you keep). */
interface IndexEntry {
  offset: number;
  bytes: number;
  firstStart: number;
  firstEnd: number;
  firstTsn: number;
  lastStart: number;
  lastEnd: number;
  lastTsn: number;
}

/** Options of {@link TableReader.open}. */
export interface TableOpenOptions {
  /** The process's block cache, shared by every table. */
  cache: BlockCache;
  /**
   * The table's smallest and largest keys, as the manifest records them: then open reads
   * the footer only, and the filter and index are read (and checked against these bounds)
   * on the table's first use, so that opening a store costs the same whatever its size.
   */
  bounds?: { minKey: TableKey; maxKey: TableKey };
  /**
   * What the manifest records of the table (rule 9): open refuses a file of another size or
   * footer, and `verify()` one of other content. Absent (a table of a manifest written
   * before it was recorded, or one read outside any manifest): not checked.
   */
  identity?: TableIdentity | undefined;
}

/** Options of {@link TableReader.range}. */
export interface TableRangeOptions {
  /** Largest key first. */
  reverse?: boolean;
  /** Read blocks through the cache without adding the ones it misses (compaction, scans). */
  fillCache?: boolean;
}

/** Key buffer for point reads: a module scratch, used only synchronously. */
let scratchKey = new Uint8Array(256);

/** The composite key a point read looks for: a module scratch, used only synchronously (no allocation per read). */
let targetKey = new Uint8Array(256);

/** Writes the composite key of (nsId, key) into {@link targetKey}; returns its length. */
function setTargetKey(nsId: number, key: string): number {
  const length = 4 + key.length;
  if (targetKey.length < length) targetKey = new Uint8Array(2 * length);
  const out = targetKey;
  out[0] = nsId >>> 24;
  out[1] = (nsId >>> 16) & 0xff;
  out[2] = (nsId >>> 8) & 0xff;
  out[3] = nsId & 0xff;
  for (let i = 0; i < key.length; i++) out[4 + i] = key.charCodeAt(i);
  return length;
}

/**
 * An open table: point reads, range reads at a snapshot, full scans and verification, all
 * by positioned reads through the shared block cache (rule 3). Closing it closes the file
 * handle it was given and frees its cached blocks.
 *
 * @example
 * ```ts
 * const cache = new BlockCache(64 * 2 ** 20);
 * const t = TableReader.open(platform.open(path, { readOnly: true }), { cache });
 * t.get(nsId, key, snapshotTsn);                           // { tsn, value } | undefined
 * for (const e of t.range(nsId, "a", "b", snapshotTsn)) {} // newest visible version per key
 * t.close();
 * ```
 */
export class TableReader {
  /** The file's path. */
  readonly path: string;
  /** What the table holds (from its footer and index). */
  readonly meta: TableMeta;
  readonly #file: FileHandle;
  readonly #cache: BlockCache;
  readonly #tableId: number;
  /** The index: read at open, or on first use when the manifest gave the bounds. */
  #index!: Uint8Array;
  #loaded = false;
  /** The filter: read at open, or on the first point read (rule 6) when the manifest gave the bounds. */
  #filterOrUndefined: BloomFilter | undefined;
  /** The filter's bytes as read, checksum included (the filter's bits are a view into them): what verify hands on. */
  #filterRaw: Uint8Array | undefined;
  /** The footer as read at open (80 bytes). */
  readonly #footer: Uint8Array;
  /** Offset of the index in the file, for error messages. */
  readonly #indexOffset: number;
  /** Offset in `#index` of the entryStart array. */
  #indexStartsAt = 0;
  /** #seekBlock's fingerprints of the blocks' last keys, the prefix they follow and its length (#buildFingerprints). */
  #fingerprints: Uint32Array | undefined;
  #fingerprintPrefix: Uint8Array = new Uint8Array(0);
  #fingerprintAt = 0;
  readonly #scratch: IndexEntry = { offset: 0, bytes: 0, firstStart: 0, firstEnd: 0, firstTsn: 0, lastStart: 0, lastEnd: 0, lastTsn: 0 };
  #closed = false;

  private constructor(file: FileHandle, cache: BlockCache, meta: TableMeta, indexOffset: number, footer: Uint8Array) {
    this.path = file.path;
    this.#footer = footer;
    this.#file = file;
    this.#cache = cache;
    this.#tableId = cache.newTableId();
    this.meta = meta;
    this.#indexOffset = indexOffset;
  }

  /** The filter, read and checked on first use (rule 6). */
  get #filter(): BloomFilter {
    return (this.#filterOrUndefined ??= this.#loadFilter());
  }

  /** Reads and checks the filter (rule 3). */
  #loadFilter(): BloomFilter {
    const { path, dataBytes, filterBytes } = this.meta;
    const filterRaw = readExact(this.#file, dataBytes, filterBytes, "filter");
    if (filterBytes < 4 || xxhash32(filterRaw.subarray(0, filterBytes - 4)) !== u32At(filterRaw, filterBytes - 4)) {
      throw corruption(path, dataBytes, "filter checksum mismatch", "filter");
    }
    const filter = BloomFilter.decode(filterRaw.subarray(0, filterBytes - 4));
    if (typeof filter === "string") throw corruption(path, dataBytes, filter, "filter");
    this.#filterRaw = filterRaw;
    return filter;
  }

  /** Reads and checks the index (rule 3). */
  #loadIndex(): void {
    const { path, indexBytes, blockCount } = this.meta;
    const indexOffset = this.#indexOffset;
    const index = readExact(this.#file, indexOffset, indexBytes, "index");
    if (xxhash32(index.subarray(0, indexBytes - 4)) !== u32At(index, indexBytes - 4)) {
      throw corruption(path, indexOffset, "index checksum mismatch", "index");
    }
    this.#index = index;
    this.#indexStartsAt = index.length - 4 - 4 * blockCount;
    this.#buildFingerprints();
    this.#loaded = true;
  }

  /** The smallest and largest keys, from the index (two entries, whatever the table's size). */
  #indexBounds(): { minKey: TableKey; maxKey: TableKey } | undefined {
    if (this.meta.blockCount === 0) return undefined;
    const index = this.#index, at = this.#indexOffset, path = this.path;
    const first = this.#indexEntry(0);
    const minKey = keyOf(index, first.firstStart, first.firstEnd, path, at + first.firstStart);
    const last = this.#indexEntry(this.meta.blockCount - 1);
    const maxKey = keyOf(index, last.lastStart, last.lastEnd, path, at + last.lastStart);
    return { minKey, maxKey };
  }

  /**
   * Opens a table by reading its footer, filter and index (rule 3). Throws CORRUPTION when
   * any of them fails its checksum or the sizes do not add up to the file's size
   * (truncation), and IO when the reads fail. On failure the handle stays open (the caller
   * owns it until open succeeds).
   */
  static open(file: FileHandle, options: TableOpenOptions): TableReader {
    const path = file.path;
    const fileBytes = ioCall(path, "size", 0, () => file.size());
    if (fileBytes < TABLE_FOOTER_BYTES) {
      throw corruption(path, 0, `the file is ${fileBytes} bytes, shorter than a table's ${TABLE_FOOTER_BYTES}-byte footer (truncated?)`, "footer");
    }
    const footerAt = fileBytes - TABLE_FOOTER_BYTES;
    const f = readExact(file, footerAt, TABLE_FOOTER_BYTES, "footer");
    for (let i = 0; i < MAGIC.length; i++) {
      if (f[64 + i] !== MAGIC[i]) throw corruption(path, footerAt + 64, "no table magic at the end of the file (truncated, or not a table)", "footer");
    }
    if (xxhash32(f.subarray(0, 76)) !== u32At(f, 76)) throw corruption(path, footerAt, "footer checksum mismatch", "footer");
    const version = u32At(f, 20);
    if (version !== TABLE_FORMAT_VERSION) {
      throw new TxtDbError("FORMAT", `Table "${path}" has format version ${version}; this txtdb reads version ${TABLE_FORMAT_VERSION}. Upgrade txtdb to open this store`, { details: { file: path, version } });
    }
    if (u32At(f, 72) !== 0) throw corruption(path, footerAt + 72, "footer reserved field is not zero", "footer");
    const dataBytes = u64At(f, 0);
    const filterBytes = u32At(f, 8);
    const indexBytes = u32At(f, 12);
    const blockCount = u32At(f, 16);
    const entryCount = u64At(f, 24);
    const keyCount = u64At(f, 32);
    const tombstoneCount = u64At(f, 40);
    const minTsn = u64At(f, 48);
    const maxTsn = u64At(f, 56);
    if (dataBytes + filterBytes + indexBytes + TABLE_FOOTER_BYTES !== fileBytes) {
      throw corruption(path, footerAt, `the footer's sizes (data ${dataBytes}, filter ${filterBytes}, index ${indexBytes}) do not add up to the file's ${fileBytes} bytes (truncated or extended?)`, "footer");
    }
    if (indexBytes < 4 + 4 * blockCount || (blockCount === 0) !== (entryCount === 0) || keyCount > entryCount || tombstoneCount > entryCount || minTsn > maxTsn || (blockCount === 0 && dataBytes !== 0)) {
      throw corruption(path, footerAt, "the footer's counts are inconsistent", "footer");
    }
    const indexOffset = dataBytes + filterBytes;
    const footerSum = u32At(f, 76);
    const id = options.identity;
    if (id && (id.bytes !== fileBytes || id.footerSum !== footerSum)) {
      // Rule 9: a whole, well-formed table, but not the one the manifest names (every checksum
      // holds, so nothing else would notice): another store's, or an older one of this store.
      throw notTheTable(path, footerAt, `it is ${fileBytes} bytes with footer checksum ${hex(footerSum)}, the manifest records ${id.bytes} bytes and ${hex(id.footerSum)}`);
    }
    const meta: TableMeta = {
      path, fileBytes, dataBytes, filterBytes, indexBytes, blockCount, entryCount, keyCount, tombstoneCount, minTsn, maxTsn,
      footerSum, contentSum: id?.contentSum,
      minKey: undefined, maxKey: undefined,
    };
    const reader = new TableReader(file, options.cache, meta, indexOffset, f);
    if (options.bounds && blockCount > 0) {
      // Lazy: the filter and index wait for the first use (#open checks them against these).
      meta.minKey = options.bounds.minKey;
      meta.maxKey = options.bounds.maxKey;
      return reader;
    }
    reader.#filterOrUndefined = reader.#loadFilter();
    reader.#loadIndex();
    const bounds = reader.#indexBounds();
    meta.minKey = bounds?.minKey;
    meta.maxKey = bounds?.maxKey;
    return reader;
  }

  /** Bytes this table keeps in memory outside the cache (filter, index and the index's fingerprints; 0 until first used). */
  get residentBytes(): number {
    const filter = this.#filterOrUndefined?.bytes ?? 0;
    return this.#loaded ? filter + this.#index.length + (this.#fingerprints?.byteLength ?? 0) + this.#fingerprintPrefix.length : filter;
  }

  /** False when the table certainly holds no version of (nsId, key) (Bloom filter, rule 6). */
  mayContain(nsId: number, key: string): boolean {
    this.#open();
    return this.#filter.mayContain(nsId, key);
  }

  /**
   * The newest version of (nsId, key) with tsn ≤ snapshotTsn in this table (a value or a
   * tombstone), or undefined when the table has none. Reads at most one block.
   *
   * `borrow`: the value may be a view into memory the next table read in this process
   * overwrites (the shared read buffer, a cache slab slot): for a caller that decodes it
   * at once and keeps nothing (a point read's hot path), which saves an allocation and a
   * copy. Otherwise the value is the caller's.
   */
  get(nsId: number, key: string, snapshotTsn: number, borrow = false): TableVersion | undefined {
    this.#open();
    if (!this.#filter.mayContain(nsId, key)) return undefined;
    return this.#getUnfiltered(nsId, key, snapshotTsn, borrow);
  }

  /** {@link get} for a key whose {@link bloomHash} the caller computed once for many tables. */
  getHashed(nsId: number, key: string, hash: number, snapshotTsn: number, borrow = false): TableVersion | undefined {
    this.#open();
    if (!this.#filter.mayContainHash(hash)) return undefined;
    return this.#getUnfiltered(nsId, key, snapshotTsn, borrow);
  }

  #getUnfiltered(nsId: number, key: string, snapshotTsn: number, borrow: boolean): TableVersion | undefined {
    const tLen = setTargetKey(nsId, key);
    const target = targetKey;
    const b = this.#seekBlock(target, snapshotTsn, tLen);
    if (b === this.meta.blockCount) return undefined;
    const e = this.#indexEntry(b);
    // Every earlier block lies wholly before the target; if this one starts past the key,
    // the key is absent without reading the block.
    if (compareBytes(this.#index, e.firstStart, e.firstEnd, target, 0, tLen) > 0) return undefined;
    const offset = e.offset;
    const block = this.#loadBlockForGet(offset, e.bytes);
    const v = this.#searchBlock(block, offset, target, tLen, snapshotTsn);
    // A view into borrowed bytes would change under the caller: copy it, unless it asked to borrow.
    if (v === undefined || !block.transient || v.value === null || borrow) return v;
    const copy = new Uint8Array(v.value.length);
    copy.set(v.value);
    return { tsn: v.tsn, value: copy };
  }

  /**
   * The block for a point read: from the cache; else read and, if the cache admits it
   * (blockcache.ts rule 5), cached; else read into the shared buffer (no allocation).
   */
  #loadBlockForGet(offset: number, length: number): Block {
    const cached = this.#cache.get(this.#tableId, offset) as Block | undefined;
    if (cached !== undefined) return cached;
    const kept = this.#cacheBlock(offset, length);
    if (kept !== undefined) return kept;
    if (transientBuffer.length < length) transientBuffer = new Uint8Array(Math.max(length, 2 * transientBuffer.length));
    const bytes = transientBuffer.subarray(0, length);
    readInto(this.#file, bytes, offset, "data block");
    return this.#checkBlock(bytes, offset, true);
  }

  /**
   * Offers block (offset, length) to the cache (blockcache.ts rule 5). Admitted, its bytes go
   * where the cache keeps them (a slab slot, else a buffer of their own), copied from `from`
   * (the block's bytes, read already) or else read from the file, and are checked there;
   * undefined if not admitted. A slot whose bytes fail to read or check is given back.
   */
  #cacheBlock(offset: number, length: number, from?: Uint8Array, scanned = false): Block | undefined {
    const cache = this.#cache;
    const slotCharge = cache.slotBytes + BLOCK_OVERHEAD_BYTES;
    if (!cache.admit(this.#tableId, offset, length <= cache.slotBytes ? slotCharge : length + BLOCK_OVERHEAD_BYTES, scanned)) return undefined;
    const slot = cache.reserve(length, slotCharge);
    let block: Block;
    try {
      const bytes = slot < 0 ? new Uint8Array(length) : cache.slotView(slot, length);
      if (from !== undefined) bytes.set(from);
      else readInto(this.#file, bytes, offset, "data block");
      block = this.#checkBlock(bytes, offset, slot >= 0);
    } catch (e) {
      if (slot >= 0) cache.freeSlot(slot);
      throw e;
    }
    cache.set(this.#tableId, offset, block, slot < 0 ? length + BLOCK_OVERHEAD_BYTES : slotCharge, slot);
    return block;
  }

  /**
   * A block for a scan that reads blocks in order and keeps no view of them past the next
   * table read ({@link scanInto} with a row maker, {@link countRange}): from the cache, else
   * from the run read ahead, else a new run of block `b` and the blocks after it that the
   * scan will reach (up to block `lastBlock`, about `wantEntries` entries, and
   * SCAN_RUN_BYTES_MAX), in one read. Each block is checked when served, and offered to the
   * cache, which takes a scanned block on its second miss only (blockcache.ts rule 5).
   */
  #loadBlockForScan(b: number, offset: number, length: number, lastBlock: () => number, wantEntries: number): Block {
    const cache = this.#cache;
    const cached = cache.get(this.#tableId, offset) as Block | undefined;
    if (cached !== undefined) return cached;
    if (runReader !== this || offset < runStart || offset + length > runEnd) {
      // How far to read: consecutive blocks, within the scan's bounds and wants.
      const perBlock = Math.max(1, this.meta.entryCount / Math.max(1, this.meta.blockCount));
      const blocksMax = Math.min(lastBlock() - b + 1, Math.ceil(wantEntries / perBlock) + 1);
      let end = offset + length;
      for (let k = b + 1, n = 1; n < blocksMax; k++, n++) {
        const e = this.#indexEntry(k);
        if (e.offset !== end || e.offset + e.bytes - offset > SCAN_RUN_BYTES_MAX || cache.get(this.#tableId, e.offset) !== undefined) break;
        end = e.offset + e.bytes;
      }
      if (runBuffer.length < end - offset) runBuffer = new Uint8Array(Math.max(end - offset, SCAN_RUN_BYTES_MAX));
      runReader = undefined; // until the read succeeds
      readInto(this.#file, runBuffer.subarray(0, end - offset), offset, "data block");
      runReader = this;
      runStart = offset;
      runEnd = end;
    }
    const bytes = runBuffer.subarray(offset - runStart, offset - runStart + length);
    return this.#cacheBlock(offset, length, bytes, true) ?? this.#checkBlock(bytes, offset, true);
  }

  /**
   * Binary search over the restart points, then a scan of at most 8 entries: the first
   * entry at or after (target, snapshot) in table order is the answer if its key is the
   * target.
   */
  #searchBlock(block: Block, blockOffset: number, target: Uint8Array, tLen: number, snapshotTsn: number): TableVersion | undefined {
    const bytes = block.bytes;
    const end = block.restartsAt;
    const restarts = Math.ceil(block.count / RESTART_INTERVAL);
    // Last restart whose entry lies strictly before the target.
    let lo = 0, hi = restarts - 1, from = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const at = u32At(bytes, end + 4 * mid);
      if (at >= end) throw this.#blockCorruption(blockOffset, at, "restart point outside the block");
      const sharedB = readVarint(bytes, at, end);
      const unshared = readVarint(bytes, varintEnd, end);
      readVarint(bytes, varintEnd, end);
      const tsn = readVarint(bytes, varintEnd, end);
      const keyAt = varintEnd;
      if (sharedB !== 0 || unshared < 0 || tsn < 0 || keyAt + unshared > end) throw this.#blockCorruption(blockOffset, at, "malformed restart entry");
      let c = compareBytes(bytes, keyAt, keyAt + unshared, target, 0, tLen);
      if (c === 0) c = tsn > snapshotTsn ? -1 : 1;
      if (c < 0) {
        from = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    let pos = u32At(bytes, end + 4 * from);
    let keyLen = 0;
    // Bytes of the previous entry's key equal to the target's (keys ascend, and each one
    // before the answer is smaller than the target). An entry sharing fewer bytes than that
    // with its predecessor is past the target; one sharing more is still before it; only
    // one sharing exactly that many needs its new bytes compared (LevelDB's block seek
    // copies and compares every key instead).
    let matched = 0;
    for (let i = from * RESTART_INTERVAL; i < block.count; i++) {
      const at = pos;
      // The four varints, one-byte ones read inline (the common case; this loop is the
      // hottest of a point read).
      let p = pos, v = 0;
      v = p < end ? bytes[p]! : 128;
      const shared = v < 128 ? (p++, v) : (v = readVarint(bytes, p, end), p = varintEnd, v);
      v = p < end ? bytes[p]! : 128;
      const unshared = v < 128 ? (p++, v) : (v = readVarint(bytes, p, end), p = varintEnd, v);
      v = p < end ? bytes[p]! : 128;
      const tag = v < 128 ? (p++, v) : (v = readVarint(bytes, p, end), p = varintEnd, v);
      v = p < end ? bytes[p]! : 128;
      const tsn = v < 128 ? (p++, v) : (v = readVarint(bytes, p, end), p = varintEnd, v);
      const keyAt = p;
      const valueLen = tag > 0 ? tag - 1 : 0;
      if (shared < 0 || unshared < 0 || tag < 0 || tsn < 0 || shared > keyLen || keyAt + unshared + valueLen > end) {
        throw this.#blockCorruption(blockOffset, at, "malformed entry");
      }
      keyLen = shared + unshared;
      pos = keyAt + unshared + valueLen;
      if (i % RESTART_INTERVAL !== 0) {
        if (shared < matched) return undefined; // differs from the target where its predecessor agreed: past it
        if (shared > matched) continue; // agrees with its predecessor past where that one fell short: before it
      } else {
        matched = 0; // a restart holds its whole key (shared is 0): compare all of it
      }
      // Compare the new bytes with the target from `matched` on.
      let j = 0;
      let c = 0;
      while (j < unshared && matched + j < tLen) {
        c = bytes[keyAt + j]! - target[matched + j]!;
        if (c !== 0) break;
        j++;
      }
      if (c === 0) c = keyLen - tLen; // one is a prefix of the other: the shorter first
      if (c > 0) return undefined;
      if (c === 0) {
        if (tsn <= snapshotTsn) {
          const valueAt = keyAt + unshared;
          return { tsn, value: tag === 0 ? null : bytes.subarray(valueAt, valueAt + valueLen) };
        }
        matched = keyLen; // the same key at a newer version: the next entry may be it at an older one
        continue;
      }
      matched += j;
    }
    return undefined;
  }

  /**
   * The newest version visible at `snapshotTsn` of each key of namespace `nsId` in
   * [start, end) (undefined: from the namespace's first key / to its last), in key order or
   * reverse. Tombstones are yielded (value null): they hide older versions in other
   * tables, so the merge (merge.ts) needs them. Streams block by block.
   */
  *range(nsId: number, start: string | undefined, end: string | undefined, snapshotTsn: number, options: TableRangeOptions = {}): Generator<TableEntry, void, undefined> {
    this.#open();
    assert(Number.isInteger(nsId) && nsId >= 0 && nsId <= NS_ID_MAX, `namespace id ${nsId} outside 0..2^32-1`);
    const fill = options.fillCache ?? true;
    if (options.reverse === true) {
      yield* this.#rangeReverse(nsId, start, end, snapshotTsn, fill);
      return;
    }
    let b = this.#seekBlock(compositeKey(nsId, start ?? ""), Infinity);
    if (b === this.meta.blockCount) return;
    let blk = this.#decodeBlock(b, fill);
    let i = lowerBound(blk, nsId, start ?? "", Infinity);
    let lastKey: string | undefined;
    for (;;) {
      if (i === blk.count) {
        if (++b === this.meta.blockCount) return;
        blk = this.#decodeBlock(b, fill);
        i = 0;
      }
      const ns = blk.nsIds[i]!;
      const key = blk.keys[i]!;
      if (ns !== nsId || (end !== undefined && key >= end)) return;
      const tsn = blk.tsns[i]!;
      if (key !== lastKey && tsn <= snapshotTsn) {
        lastKey = key;
        const vs = blk.valueStarts[i]!;
        yield { nsId, key, tsn, value: vs < 0 ? null : blk.bytes.subarray(vs, blk.valueEnds[i]!) };
      }
      i++;
    }
  }

  /**
   * What {@link range} yields, less deletes and values `keep` refuses, appended to `out` as
   * [key, { tsn, value }] until `out` holds `limit` entries, in key order: the read of a
   * range that one table (or one level's disjoint tables, one after another) answers alone.
   * Returns true when `out` is full. It reads the block bytes as they are, without the
   * per-block arrays and per-entry objects of {@link range}'s generator (a range scan spent
   * a third of its time there): key strings are built only for the entries it appends, and
   * key bytes are compared with the bounds only in the blocks that straddle them.
   *
   * With `make`, the rows are `make.row(...)`'s, built straight from the block's bytes
   * (`keep` is not called: `make` leaves out what it refuses), and no key string is made
   * but the last row's when `out` fills (`make.lastKey`, where a next page resumes). The
   * block's bytes are borrowed then (a cache slot), not copied: `make` decodes and keeps
   * no view.
   */
  scanInto<R = [string, TableVersion]>(nsId: number, start: string, end: string | undefined, snapshotTsn: number, limit: number, out: R[], keep: (value: Uint8Array) => boolean, fillCache = true, make?: ScanRowMaker<R>): boolean {
    this.#open();
    assert(Number.isInteger(nsId) && nsId >= 0 && nsId <= NS_ID_MAX, `namespace id ${nsId} outside 0..2^32-1`);
    if (out.length >= limit) return true;
    const lo = compositeKey(nsId, start);
    const hi = end !== undefined ? compositeKey(nsId, end) : nsId < NS_ID_MAX ? compositeKey(nsId + 1, "") : undefined;
    const ix = this.#index;
    let key = scratchKey;
    let keyLen = 0;
    /** The current key as a string, or undefined until an entry of it is appended. */
    let keyStr: string | undefined;
    let decided = false; // the current key's visible version was met (appended, a delete, or refused)
    let below = false; // the current key is before `start`
    const lastBlock = this.#lastBlockBefore(hi);
    for (let b = this.#seekBlock(lo, Infinity); b < this.meta.blockCount; b++) {
      const e = this.#indexEntry(b);
      const blockOffset = e.offset;
      const checkLo = compareBytes(ix, e.firstStart, e.firstEnd, lo, 0, lo.length) < 0;
      const checkHi = hi !== undefined && compareBytes(ix, e.lastStart, e.lastEnd, hi, 0, hi.length) >= 0;
      // Values appended are views of these bytes: a private copy when the cache's is a slab
      // slot (a maker keeps no view: the slot will do).
      const { bytes, count, restartsAt: stop } = make !== undefined ? this.#loadBlockForScan(b, blockOffset, e.bytes, lastBlock, limit - out.length) : this.#loadBlock(b, fillCache);
      let pos = 0;
      for (let i = 0; i < count; i++) {
        if (!readEntry(bytes, pos, stop, i, keyLen)) throw this.#blockCorruption(blockOffset, pos, `malformed entry ${i}`);
        const shared = eShared, unshared = eUnshared, tag = eTag, tsn = eTsn, keyAt = eKeyAt, valueLen = eValueLen;
        const newLen = shared + unshared;
        // The same key as the entry before (an older version of it): see countRange.
        const same = newLen === keyLen && compareBytes(key, shared, keyLen, bytes, keyAt, keyAt + unshared) === 0;
        pos = keyAt + unshared + valueLen;
        if (!same) {
          if (key.length < newLen) key = scratchKey = grow(key, shared, newLen);
          // The string of the previous key, if made, gives this one's shared part (past the namespace id).
          keyStr = keyStr !== undefined && shared >= 4 && make === undefined ? keyStr.slice(0, shared - 4) + binaryString(bytes, keyAt, keyAt + unshared) : undefined;
          for (let j = 0; j < unshared; j++) key[shared + j] = bytes[keyAt + j]!;
          keyLen = newLen;
          below = checkLo && compareBytes(key, 0, keyLen, lo, 0, lo.length) < 0;
          if (!below && checkHi && compareBytes(key, 0, keyLen, hi!, 0, hi!.length) >= 0) return false;
          decided = false;
        }
        if (below || decided || tsn > snapshotTsn) continue;
        decided = true;
        if (tag === 0) continue;
        if (make !== undefined) {
          const row = make.row(key, keyLen, tsn, bytes, keyAt + unshared, valueLen);
          if (row === undefined) continue;
          if (out.push(row) >= limit) {
            make.lastKey = binaryString(key, 4, keyLen);
            return true;
          }
          continue;
        }
        const value = new Uint8Array(bytes.buffer, bytes.byteOffset + keyAt + unshared, valueLen);
        if (!keep(value)) continue;
        keyStr ??= binaryString(key, 4, keyLen);
        if ((out as [string, TableVersion][]).push([keyStr, { tsn, value }]) >= limit) return true;
      }
      if (pos !== stop) throw this.#blockCorruption(blockOffset, pos, "bytes left over after the last entry");
    }
    return false;
  }

  /**
   * How many keys of namespace `nsId` in [start, end) (undefined: from the namespace's first
   * key / to its last) have a newest version at or below `snapshotTsn` that is not a delete:
   * the entries {@link range} would yield, less its deletes, without making their keys or
   * values. An entry's key bytes are compared with a bound only in a block that straddles
   * it (the block index gives each block's first and last key).
   */
  countRange(nsId: number, start: string | undefined, end: string | undefined, snapshotTsn: number, nowMs = -Infinity, onExpiring?: (key: string, tsn: number, value: Uint8Array) => void): number {
    this.#open();
    assert(Number.isInteger(nsId) && nsId >= 0 && nsId <= NS_ID_MAX, `namespace id ${nsId} outside 0..2^32-1`);
    const lo = compositeKey(nsId, start ?? "");
    const hi = end !== undefined ? compositeKey(nsId, end) : nsId < NS_ID_MAX ? compositeKey(nsId + 1, "") : undefined;
    const ix = this.#index;
    let key = scratchKey;
    let keyLen = 0;
    let decided = false; // the current key's visible version was found (counted or a delete)
    let below = false; // the current key is before `start`
    let n = 0;
    const lastBlock = this.#lastBlockBefore(hi);
    for (let b = this.#seekBlock(lo, Infinity); b < this.meta.blockCount; b++) {
      const e = this.#indexEntry(b);
      const blockOffset = e.offset;
      const checkLo = compareBytes(ix, e.firstStart, e.firstEnd, lo, 0, lo.length) < 0;
      const checkHi = hi !== undefined && compareBytes(ix, e.lastStart, e.lastEnd, hi, 0, hi.length) >= 0;
      // Used before the next table read, so a cache slot or the shared buffer will do.
      const { bytes, count, restartsAt: stop } = this.#loadBlockForScan(b, blockOffset, e.bytes, lastBlock, Infinity);
      let pos = 0;
      for (let i = 0; i < count; i++) {
        // A block's first entry is a restart (it shares nothing), whatever keyLen says.
        if (!readEntry(bytes, pos, stop, i, keyLen)) throw this.#blockCorruption(blockOffset, pos, `malformed entry ${i}`);
        const shared = eShared, unshared = eUnshared, tag = eTag, tsn = eTsn, keyAt = eKeyAt, valueLen = eValueLen;
        const newLen = shared + unshared;
        // The same key as the entry before (an older version of it): as long, and its new
        // bytes (none within a restart interval; all of them at a restart or a block's
        // first entry) equal that key's from `shared` on.
        const same = newLen === keyLen && compareBytes(key, shared, keyLen, bytes, keyAt, keyAt + unshared) === 0;
        if (!same) {
          if (key.length < newLen) key = scratchKey = grow(key, shared, newLen);
          for (let j = 0; j < unshared; j++) key[shared + j] = bytes[keyAt + j]!;
        }
        keyLen = newLen;
        pos = keyAt + unshared + valueLen;
        if (!same) {
          below = checkLo && compareBytes(key, 0, keyLen, lo, 0, lo.length) < 0;
          if (!below && checkHi && compareBytes(key, 0, keyLen, hi!, 0, hi!.length) >= 0) return n;
          decided = false;
        }
        if (!below && !decided && tsn <= snapshotTsn) {
          decided = true;
          if (tag !== 0) {
            const valueAt = keyAt + unshared;
            // An expiring value (expiry.ts: its envelope's first three bytes) that has
            // expired hides the key as a delete would; one that has not is counted and told.
            if (valueLen >= 3 && bytes[valueAt + 1] === 0xb8 && bytes[valueAt] === 0xd9 && bytes[valueAt + 2] === 0x7a) {
              const value = bytes.slice(valueAt, valueAt + valueLen);
              if (expiresAtOf(value) <= nowMs) continue;
              onExpiring?.(binaryString(key, 4, keyLen), tsn, value);
            }
            n++;
          }
        }
      }
      if (pos !== stop) throw this.#blockCorruption(blockOffset, pos, "bytes left over after the last entry");
    }
    return n;
  }

  *#rangeReverse(nsId: number, start: string | undefined, end: string | undefined, snapshotTsn: number, fill: boolean): Generator<TableEntry, void, undefined> {
    // Start at the last entry before `end` (or before the next namespace).
    let b: number;
    let i: number;
    let blk: DecodedBlock | undefined;
    const upper = end !== undefined ? compositeKey(nsId, end) : nsId < NS_ID_MAX ? compositeKey(nsId + 1, "") : undefined;
    b = upper === undefined ? this.meta.blockCount : this.#seekBlock(upper, Infinity);
    if (b < this.meta.blockCount) {
      blk = this.#decodeBlock(b, fill);
      i = end !== undefined ? lowerBound(blk, nsId, end, Infinity) : lowerBound(blk, nsId + 1, "", Infinity);
    } else {
      i = 0;
    }
    // Entries come newest-last per key; the candidate is the newest seen with tsn ≤ snapshot.
    let groupKey: string | undefined;
    let cand: TableEntry | undefined;
    for (;;) {
      if (i === 0) {
        if (b === 0) break;
        b--;
        blk = this.#decodeBlock(b, fill);
        i = blk.count;
      }
      i--;
      const d = blk!;
      const ns = d.nsIds[i]!;
      const key = d.keys[i]!;
      if (ns !== nsId || (start !== undefined && key < start)) break;
      if (key !== groupKey) {
        if (cand !== undefined) yield cand;
        cand = undefined;
        groupKey = key;
      }
      const tsn = d.tsns[i]!;
      if (tsn <= snapshotTsn) {
        const vs = d.valueStarts[i]!;
        cand = { nsId, key, tsn, value: vs < 0 ? null : d.bytes.subarray(vs, d.valueEnds[i]!) };
      }
    }
    if (cand !== undefined) yield cand;
  }

  /**
   * Every entry of the table in table order, all versions and tombstones: the input of a
   * compaction. `fillCache` false (the default here) reads through the cache without
   * filling it, so a compaction does not evict the readers' hot blocks.
   */
  *entries(options: { fillCache?: boolean; onBlock?: (offset: number) => void } = {}): Generator<TableEntry, void, undefined> {
    this.#open();
    const fill = options.fillCache ?? false;
    for (let b = 0; b < this.meta.blockCount; b++) {
      options.onBlock?.(this.#indexEntry(b).offset);
      const blk = this.#decodeBlock(b, fill);
      for (let i = 0; i < blk.count; i++) {
        const vs = blk.valueStarts[i]!;
        yield { nsId: blk.nsIds[i]!, key: blk.keys[i]!, tsn: blk.tsns[i]!, value: vs < 0 ? null : blk.bytes.subarray(vs, blk.valueEnds[i]!) };
      }
    }
  }

  /**
   * Reads every block from the file (not from the cache), checks its checksum, decodes
   * every entry and checks the order, the index and the footer's counts against them:
   * what `db.check()` runs on each table. Throws CORRUPTION at the first problem, and when
   * the content is not what the manifest records (rule 9).
   */
  verify(): TableVerifyReport {
    const it = this.verifying();
    for (let r = it.next(); ; r = it.next()) if (r.done) return r.value;
  }

  /**
   * {@link verify}, handing on each region of the file once it is checked, in file order
   * and contiguous from offset 0 (every data block, then the filter, the index and the
   * footer): `backup()` writes them to its copy as it verifies, reading the file once. A
   * region's bytes stay valid after the next is yielded (never modify them). The last
   * region (the footer) is yielded only once everything else, the content checksum
   * included, has been checked.
   */
  *verifying(): Generator<{ offset: number; bytes: Uint8Array }, TableVerifyReport, undefined> {
    this.#open();
    const m = this.meta;
    const sums = new ByteBuilder(4 * m.blockCount + 12);
    let entries = 0, keys = 0, tombstones = 0, minTsn = Number.MAX_SAFE_INTEGER, maxTsn = 0;
    let expectedOffset = 0;
    let prev: TableEntry | undefined;
    for (let b = 0; b < m.blockCount; b++) {
      const e = { ...this.#indexEntry(b) };
      if (e.offset !== expectedOffset) throw corruption(this.path, this.#indexOffset + this.#indexStart(b), `index entry ${b} says its block is at ${e.offset}, but the previous block ends at ${expectedOffset}`, "index");
      expectedOffset = e.offset + e.bytes;
      const raw = this.#readBlock(e.offset, e.bytes, false);
      sums.u32(u32At(raw.bytes, raw.bytes.length - 4));
      const blk = this.#decode(raw, e.offset);
      for (let i = 0; i < blk.count; i++) {
        const ns = blk.nsIds[i]!, key = blk.keys[i]!, tsn = blk.tsns[i]!;
        if (prev !== undefined) {
          const c = compareEntries(prev.nsId, prev.key, prev.tsn, ns, key, tsn);
          if (c >= 0) throw corruption(this.path, e.offset, `entry ${i} of the block is not after the one before it`, "data block");
          if (prev.nsId !== ns || prev.key !== key) keys++;
        } else keys++;
        if (!(prev?.nsId === ns && prev.key === key) && !this.#filter.mayContain(ns, key)) {
          throw corruption(this.path, m.dataBytes, `the filter does not contain a key of the block at ${e.offset}`, "filter");
        }
        prev = { nsId: ns, key, tsn, value: null };
        entries++;
        if (blk.valueStarts[i]! < 0) tombstones++;
        if (tsn < minTsn) minTsn = tsn;
        if (tsn > maxTsn) maxTsn = tsn;
      }
      const firstKey = compositeKey(blk.nsIds[0]!, blk.keys[0]!);
      const lastKey = compositeKey(blk.nsIds[blk.count - 1]!, blk.keys[blk.count - 1]!);
      if (compareBytes(this.#index, e.firstStart, e.firstEnd, firstKey, 0, firstKey.length) !== 0 || e.firstTsn !== blk.tsns[0] ||
        compareBytes(this.#index, e.lastStart, e.lastEnd, lastKey, 0, lastKey.length) !== 0 || e.lastTsn !== blk.tsns[blk.count - 1]) {
        throw corruption(this.path, this.#indexOffset + this.#indexStart(b), `index entry ${b} does not match the first and last entries of its block at ${e.offset}`, "index");
      }
      yield { offset: e.offset, bytes: raw.bytes };
    }
    if (expectedOffset !== m.dataBytes) throw corruption(this.path, expectedOffset, `the blocks end at ${expectedOffset}, the footer says ${m.dataBytes}`, "index");
    if (entries === 0) minTsn = 0;
    if (entries !== m.entryCount || keys !== m.keyCount || tombstones !== m.tombstoneCount || minTsn !== m.minTsn || maxTsn !== m.maxTsn) {
      throw corruption(this.path, m.fileBytes - TABLE_FOOTER_BYTES, `the footer's counts (entries ${m.entryCount}, keys ${m.keyCount}, tombstones ${m.tombstoneCount}, TSNs ${m.minTsn}..${m.maxTsn}) do not match the blocks (${entries}, ${keys}, ${tombstones}, ${minTsn}..${maxTsn})`, "footer");
    }
    this.#filter; // read and checked on first use (rule 6); its bytes are handed on below
    const filterRaw = this.#filterRaw!, index = this.#index;
    yield { offset: m.dataBytes, bytes: filterRaw };
    yield { offset: this.#indexOffset, bytes: index };
    sums.u32(u32At(filterRaw, filterRaw.length - 4));
    sums.u32(u32At(index, index.length - 4));
    sums.u32(m.footerSum);
    const contentSum = xxhash32(sums.bytes.subarray(0, sums.length));
    if (m.contentSum !== undefined && m.contentSum !== contentSum) {
      throw notTheTable(this.path, 0, `its content checksum is ${hex(contentSum)}, the manifest records ${hex(m.contentSum)}`);
    }
    yield { offset: m.fileBytes - TABLE_FOOTER_BYTES, bytes: this.#footer };
    return { blocks: m.blockCount, entries, bytes: m.fileBytes, contentSum };
  }

  /** Closes the file and frees this table's cached blocks. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#cache.dropTable(this.#tableId);
    if (runReader === this) runReader = undefined; // the run buffer kept this reader alive
    this.#file.close();
  }

  /** Every read starts here: refuses a closed table, and reads the filter and index on first use. */
  #open(): void {
    if (this.#closed) throw new TxtDbError("CLOSED", `Table "${this.path}" was closed; open it again to read it`);
    if (!this.#loaded) {
      this.#loadIndex();
      const b = this.#indexBounds();
      const { minKey, maxKey } = this.meta;
      if (!b || !minKey || !maxKey || b.minKey.nsId !== minKey.nsId || b.minKey.key !== minKey.key || b.maxKey.nsId !== maxKey.nsId || b.maxKey.key !== maxKey.key) {
        this.#loaded = false;
        throw corruption(this.path, this.#indexOffset, "the index's first and last keys are not the bounds the manifest records for this table", "index");
      }
    }
  }

  #indexStart(b: number): number {
    return u32At(this.#index, this.#indexStartsAt + 4 * b);
  }

  /** The last block a scan that ends before `hi` (undefined: at the table's end) may read, found on first use. */
  #lastBlockBefore(hi: Uint8Array | undefined): () => number {
    let last = -1;
    return () => {
      if (last < 0) last = hi === undefined ? this.meta.blockCount - 1 : Math.min(this.meta.blockCount - 1, this.#seekBlock(hi, Infinity));
      return last;
    };
  }

  /** Parses index entry `b` into the scratch object (bounds-checked: a hostile index is CORRUPTION). */
  #indexEntry(b: number): IndexEntry {
    const ix = this.#index;
    const end = this.#indexStartsAt;
    const at = this.#indexStart(b);
    const e = this.#scratch;
    const lastLen = readVarint(ix, at, end);
    e.lastStart = varintEnd;
    e.lastEnd = e.lastStart + lastLen;
    e.lastTsn = lastLen < 0 ? -1 : readVarint(ix, e.lastEnd, end);
    e.offset = e.lastTsn < 0 ? -1 : readVarint(ix, varintEnd, end);
    e.bytes = e.offset < 0 ? -1 : readVarint(ix, varintEnd, end);
    const firstLen = e.bytes < 0 ? -1 : readVarint(ix, varintEnd, end);
    e.firstStart = varintEnd;
    e.firstEnd = e.firstStart + firstLen;
    e.firstTsn = firstLen < 0 ? -1 : readVarint(ix, e.firstEnd, end);
    if (at >= end || e.offset < 0 || e.bytes < 12 || e.firstTsn < 0 || e.lastTsn < 0 || firstLen < 4 || lastLen < 4 ||
      e.firstEnd > end || e.lastEnd > end || e.offset + e.bytes > this.meta.dataBytes) {
      throw corruption(this.path, this.#indexOffset + Math.min(at, end), `index entry ${b} is malformed`, "index");
    }
    return e;
  }

  /**
   * The first block whose last entry is at or after (target, tsn) in table order: the only
   * block that can hold the first entry ≥ that position. `blockCount` when there is none.
   */
  #seekBlock(target: Uint8Array, tsn: number, tLen = target.length): number {
    let lo = 0, hi = this.meta.blockCount;
    const ix = this.#index;
    const end = this.#indexStartsAt;
    const fps = this.#fingerprints;
    if (fps !== undefined) {
      // Narrow [lo, hi) to the blocks whose last key has the target's fingerprint (see
      // #fingerprints): a search over 4 bytes per block, in one small array, instead of
      // one over keys scattered through the index (a cache miss or two per step once the
      // index outgrows the CPU caches). Blocks before lo end before the target; block hi,
      // if any, ends after it.
      const p = this.#fingerprintAt;
      const min = this.#fingerprintPrefix;
      for (let i = 0; i < p; i++) {
        const d = i < tLen ? target[i]! - min[i]! : -1;
        if (d < 0) return 0; // before every key of the table
        if (d > 0) return hi; // after every key
      }
      const fp = fingerprint(target, p, tLen);
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (fps[mid]! < fp) lo = mid + 1;
        else hi = mid;
      }
      hi = lo;
      let top = this.meta.blockCount;
      while (hi < top) {
        const mid = (hi + top) >>> 1;
        if (fps[mid]! <= fp) hi = mid + 1;
        else top = mid;
      }
    }
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      // Only the last key and TSN, which lead the entry; #indexEntry checks the rest when the block is read.
      const at = this.#indexStart(mid);
      const first = at < end ? ix[at]! : 128;
      const lastLen = first < 128 ? first : readVarint(ix, at, end);
      const lastStart = first < 128 ? at + 1 : varintEnd;
      if (at >= end || lastLen < 4 || lastStart + lastLen > end) this.#indexEntry(mid); // throws the CORRUPTION
      let c = compareBytes(ix, lastStart, lastStart + lastLen, target, 0, tLen);
      if (c === 0) {
        // The TSN only matters when the key is the target's (all versions of a key are adjacent).
        const lastTsn = readVarint(ix, lastStart + lastLen, end);
        if (lastTsn < 0) this.#indexEntry(mid); // throws the CORRUPTION
        c = lastTsn > tsn ? -1 : 1;
      }
      if (c < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Fingerprints of the blocks' last keys for #seekBlock: the 4 bytes (big-endian, zeros
   * past the key's end) after the prefix every key of the table shares. Key order is byte
   * order, so they never decrease from block to block. 4 bytes per block (~0.1 % of the
   * data), computed when the index is read; left undefined when an index entry does not
   * parse (the search then meets it and reports the CORRUPTION).
   */
  #buildFingerprints(): void {
    const count = this.meta.blockCount;
    if (count === 0) return;
    const ix = this.#index;
    const end = this.#indexStartsAt;
    const first = this.#indexEntry(0);
    const min = ix.slice(first.firstStart, first.firstEnd);
    const last = this.#indexEntry(count - 1);
    let p = 0;
    while (p < min.length && p < last.lastEnd - last.lastStart && min[p] === ix[last.lastStart + p]) p++;
    const fps = new Uint32Array(count);
    for (let b = 0; b < count; b++) {
      const at = this.#indexStart(b);
      const lastLen = at < end ? readVarint(ix, at, end) : -1;
      const lastStart = varintEnd;
      if (lastLen < p || lastStart + lastLen > end) return; // malformed (each key is at least the prefix long)
      fps[b] = fingerprint(ix, lastStart + p, lastStart + lastLen);
    }
    this.#fingerprints = fps;
    this.#fingerprintAt = p;
    this.#fingerprintPrefix = min;
  }

  #loadBlock(b: number, fillCache: boolean): Block {
    const e = this.#indexEntry(b);
    const offset = e.offset, length = e.bytes;
    const cache = this.#cache;
    const cached = cache.get(this.#tableId, offset) as Block | undefined;
    if (cached !== undefined) {
      if (!cached.transient) return cached;
      // A slab block may be overwritten while the caller iterates (rule 6 of blockcache.ts): decode a copy.
      const bytes = arenaBytes(cached.bytes.length);
      bytes.set(cached.bytes);
      return { bytes, count: cached.count, restartsAt: cached.restartsAt, transient: false };
    }
    const slotCharge = cache.slotBytes + BLOCK_OVERHEAD_BYTES;
    // A block the cache will keep in a buffer of its own (not a slab slot) must not pin an arena.
    const own = fillCache && !cache.fitsSlot(length, slotCharge);
    const block = this.#readBlock(offset, length, own);
    if (fillCache) {
      const slot = own ? -1 : cache.reserve(length, slotCharge);
      if (slot < 0) {
        cache.set(this.#tableId, offset, block, length + BLOCK_OVERHEAD_BYTES);
      } else {
        const bytes = cache.slotView(slot, length);
        bytes.set(block.bytes);
        cache.set(this.#tableId, offset, { bytes, count: block.count, restartsAt: block.restartsAt, transient: true }, slotCharge, slot);
      }
    }
    return block;
  }

  /** Reads a block from the file and checks its checksum and trailer; `own`: into a buffer of its own (to be cached), else from the arena. */
  #readBlock(offset: number, length: number, own = true): Block {
    const bytes = own ? new Uint8Array(length) : arenaBytes(length);
    readInto(this.#file, bytes, offset, "data block");
    return this.#checkBlock(bytes, offset);
  }

  /** Checks a block's checksum and trailer; `transient`: see {@link Block}. */
  #checkBlock(bytes: Uint8Array, offset: number, transient = false): Block {
    const length = bytes.length;
    if (length < 12 || xxhash32(bytes, 0, length - 4) !== u32At(bytes, length - 4)) {
      throw this.#blockCorruption(offset, 0, "block checksum mismatch");
    }
    const count = u32At(bytes, length - 8);
    const restartsAt = length - 8 - 4 * Math.ceil(count / RESTART_INTERVAL);
    if (count < 1 || restartsAt < 0) throw this.#blockCorruption(offset, length - 8, `block entry count ${count} does not fit the block`);
    return { bytes, count, restartsAt, transient };
  }

  #decodeBlock(b: number, fillCache: boolean): DecodedBlock {
    const offset = this.#indexEntry(b).offset;
    return this.#decode(this.#loadBlock(b, fillCache), offset);
  }

  /** Decodes every entry of a block into arrays, checking bounds (rule 2 for a block whose CRC matched but whose content is hostile). */
  #decode(block: Block, blockOffset: number): DecodedBlock {
    const { bytes, count, restartsAt: end } = block;
    const nsIds: number[] = new Array(count);
    const keys: string[] = new Array(count);
    const tsns: number[] = new Array(count);
    const valueStarts: number[] = new Array(count);
    const valueEnds: number[] = new Array(count);
    let key = scratchKey;
    let keyLen = 0;
    let pos = 0;
    let prevKey = "";
    let prevNs = 0;
    for (let i = 0; i < count; i++) {
      if (!readEntry(bytes, pos, end, i, keyLen)) throw this.#blockCorruption(blockOffset, pos, `malformed entry ${i}`);
      const shared = eShared, unshared = eUnshared, tag = eTag, tsn = eTsn, keyAt = eKeyAt, valueLen = eValueLen;
      keyLen = shared + unshared;
      if (shared >= 4) {
        // The key shares `shared` bytes with the previous one, 4 of them the namespace id:
        // the same namespace; reuse that part of the previous string, convert only the new bytes.
        nsIds[i] = prevNs;
        keys[i] = prevKey = prevKey.slice(0, shared - 4) + binaryString(bytes, keyAt, keyAt + unshared);
      } else {
        // A new namespace id (or a restart): the scratch key holds the previous key's
        // namespace bytes, the only ones this key can share.
        if (key.length < keyLen) key = scratchKey = grow(key, shared, keyLen);
        for (let j = 0; j < unshared; j++) key[shared + j] = bytes[keyAt + j]!;
        nsIds[i] = prevNs = ((key[0]! << 24) | (key[1]! << 16) | (key[2]! << 8) | key[3]!) >>> 0;
        keys[i] = prevKey = binaryString(key, 4, keyLen);
      }
      tsns[i] = tsn;
      const valueAt = keyAt + unshared;
      valueStarts[i] = tag === 0 ? -1 : valueAt;
      valueEnds[i] = valueAt + valueLen;
      pos = valueAt + valueLen;
    }
    if (pos !== end) throw this.#blockCorruption(blockOffset, pos, "bytes left over after the last entry");
    return { bytes, count, nsIds, keys, tsns, valueStarts, valueEnds };
  }

  #blockCorruption(blockOffset: number, within: number, reason: string): TxtDbError {
    return corruption(this.path, blockOffset + within, `${reason} (block at ${blockOffset})`, "data block");
  }
}

/** The 4 bytes of b from `at` as a big-endian u32, zeros from `end` on. */
function fingerprint(b: Uint8Array, at: number, end: number): number {
  const b0 = at < end ? b[at]! : 0;
  const b1 = at + 1 < end ? b[at + 1]! : 0;
  const b2 = at + 2 < end ? b[at + 2]! : 0;
  const b3 = at + 3 < end ? b[at + 3]! : 0;
  return ((b0 << 24) | (b1 << 16) | (b2 << 8) | b3) >>> 0;
}

/** First index i of a decoded block whose entry is at or after (nsId, key, tsn). */
function lowerBound(blk: DecodedBlock, nsId: number, key: string, tsn: number): number {
  let lo = 0, hi = blk.count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareEntries(blk.nsIds[mid]!, blk.keys[mid]!, blk.tsns[mid]!, nsId, key, tsn) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function keyOf(b: Uint8Array, start: number, end: number, path: string, offset: number): TableKey {
  if (end - start < 4 || end > b.length) throw corruption(path, offset, "index key shorter than a namespace id", "index");
  const nsId = ((b[start]! << 24) | (b[start + 1]! << 16) | (b[start + 2]! << 8) | b[start + 3]!) >>> 0;
  return { nsId, key: binaryString(b, start + 4, end) };
}

function ioCall<T>(path: string, what: string, offset: number, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof PortError) throw new TxtDbError("IO", `Reading table "${path}" (${what} at offset ${offset}) failed: ${e.message}`, { cause: e, details: { file: path, offset } });
    throw e;
  }
}

/** Reads exactly `length` bytes at `offset`; a short read means the file was cut: CORRUPTION. */
function readExact(file: FileHandle, offset: number, length: number, region: string): Uint8Array {
  const buf = new Uint8Array(length);
  readInto(file, buf, offset, region);
  return buf;
}

/** Fills `buf` from `offset` of the file; CORRUPTION if the file ends first. */
function readInto(file: FileHandle, buf: Uint8Array, offset: number, region: string): void {
  const length = buf.length;
  const n = ioCall(file.path, region, offset, () => file.read(buf, offset));
  let done = n;
  while (done < length) {
    const more = ioCall(file.path, region, offset + done, () => file.read(buf.subarray(done), offset + done));
    if (more === 0) throw corruption(file.path, offset + done, `the file ends inside the ${region} (${length - done} of its ${length} bytes missing: truncated?)`, region);
    done += more;
  }
}
