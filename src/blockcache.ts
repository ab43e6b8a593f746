/**
 * The block cache: one per process, shared by every open table, bounded in bytes. It keeps
 * the table blocks read most recently, so that hot keys cost a map lookup instead of a
 * positioned read and a checksum.
 *
 * Rules:
 * 1. The cache never holds more than `maxBytes` of entries (each entry's bytes are what its
 *    caller declares: a block's length plus a fixed overhead). An entry larger than the whole
 *    bound is not cached at all (a table block holding one 16 MiB value must not flush the
 *    cache), and is counted in `rejected`.
 * 2. Eviction is least-recently-used: entries sit in a doubly linked list, newest at the
 *    head; a hit moves its entry to the head (pointer updates only: re-inserting into a
 *    `Map` instead cost a third of a warm point read), eviction takes from the tail.
 * 3. Entries are keyed by (table id, block offset). Table ids come from `newTableId()` and
 *    are never reused within a process, so a block of a closed (possibly deleted and then
 *    recreated under the same name) table can never be served for another; `dropTable()`
 *    frees a closed table's blocks at once instead of waiting for them to age out.
 * 4. The key is the number tableId·2^32 + offset (no string per lookup): so block offsets
 *    stay below 2^32 (tables are at most 4 GiB, see table.ts) and ids below 2^21.
 * 5. Admission (`admit`): while the cache has room, every block is admitted. Once it is
 *    full, a block is admitted only on its second miss within the last `ghostMax` misses
 *    (its key is remembered in a bounded ring of "ghost" keys after the first). Under
 *    uniform reads of far more data than the cache, almost no block is read twice before
 *    it would be evicted: caching each one would cost an allocation, an eviction and
 *    garbage for nothing, and would flush the blocks that are read again. Blocks read
 *    twice (a hot set) get in on their second miss. (A simple form of the admission
 *    filters of 2Q and TinyLFU.)
 *
 * Cached values are immutable by contract: a block is shared by every reader of the process.
 *
 * @example
 * ```ts
 * const cache = new BlockCache(64 * 2 ** 20);
 * const id = cache.newTableId();
 * cache.set(id, 0, block, block.length);
 * cache.get(id, 0); // block, counted as a hit
 * ```
 * @module
 */
import { assert, TxtDbError } from "./errors.ts";

/** Table ids available in one process (rule 4): ~2 million tables opened per process lifetime. */
const TABLE_IDS_MAX = 2 ** 21;
const OFFSET_SPAN = 2 ** 32;

/** Counters of a {@link BlockCache}, as `stats()` and `metrics()` report them. */
export interface BlockCacheStats {
  /** Lookups that found their block. */
  hits: number;
  /** Lookups that did not (the caller then read the block from its file). */
  misses: number;
  /** Entries dropped to stay within the bound. */
  evictions: number;
  /** Entries refused because they alone exceed the bound. */
  rejected: number;
  /** Bytes held now (≤ maxBytes). */
  bytes: number;
  /** Entries held now. */
  entries: number;
  /** The bound. */
  maxBytes: number;
}

interface Slot<T> {
  key: number;
  value: T;
  bytes: number;
  /** Toward the head (more recently used); null at the head. */
  newer: Slot<T> | null;
  /** Toward the tail (less recently used); null at the tail. */
  older: Slot<T> | null;
}

/**
 * A byte-bounded LRU cache of decoded table blocks (see the module comment for its rules).
 *
 * @example
 * ```ts
 * const cache = new BlockCache<Uint8Array>(1 << 20);
 * const t = cache.newTableId();
 * if (cache.get(t, offset) === undefined) cache.set(t, offset, readBlock(offset), length);
 * cache.stats(); // { hits, misses, evictions, rejected, bytes, entries, maxBytes }
 * ```
 */
export class BlockCache<T = unknown> {
  /** The bound on held bytes. */
  readonly maxBytes: number;
  readonly #slots = new Map<number, Slot<T>>();
  /** Most recently used. */
  #head: Slot<T> | null = null;
  /** Least recently used: the next to go. */
  #tail: Slot<T> | null = null;
  #bytes = 0;
  #hits = 0;
  #misses = 0;
  #evictions = 0;
  #rejected = 0;
  #nextTableId = 1;
  /** Keys missed once while the cache was full (rule 5): a ring, and a set for lookups. */
  readonly #ghostRing: number[] = [];
  #ghostAt = 0;
  readonly #ghosts = new Set<number>();
  #ghostMax = 0;

  /** `maxBytes` ≥ 0; 0 disables caching (every lookup misses). */
  constructor(maxBytes: number) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
      throw new TxtDbError("INVALID_ARGUMENT", `Cache size ${maxBytes} is not a whole number of bytes ≥ 0; pass e.g. 64 * 2 ** 20`);
    }
    this.maxBytes = maxBytes;
  }

  /** A fresh id for a table opened in this process (rule 3: never reused). */
  newTableId(): number {
    if (this.#nextTableId >= TABLE_IDS_MAX) {
      throw new TxtDbError("LIMIT", `This process has opened ${TABLE_IDS_MAX} tables through one block cache, the limit; reopen the store`);
    }
    return this.#nextTableId++;
  }

  /** The cached value of (tableId, offset), marked most recently used; counts a hit or a miss. */
  get(tableId: number, offset: number): T | undefined {
    const key = slotKey(tableId, offset);
    const slot = this.#slots.get(key);
    if (slot === undefined) {
      this.#misses++;
      return undefined;
    }
    this.#hits++;
    if (slot !== this.#head) {
      this.#unlink(slot);
      this.#pushHead(slot);
    }
    return slot.value;
  }

  #unlink(slot: Slot<T>): void {
    if (slot.newer !== null) slot.newer.older = slot.older;
    else this.#head = slot.older;
    if (slot.older !== null) slot.older.newer = slot.newer;
    else this.#tail = slot.newer;
    slot.newer = slot.older = null;
  }

  #pushHead(slot: Slot<T>): void {
    slot.older = this.#head;
    slot.newer = null;
    if (this.#head !== null) this.#head.newer = slot;
    this.#head = slot;
    if (this.#tail === null) this.#tail = slot;
  }

  #remove(slot: Slot<T>): void {
    this.#unlink(slot);
    this.#slots.delete(slot.key);
    this.#bytes -= slot.bytes;
  }

  /**
   * Rule 5: true if a block of `bytes` bytes missed at (tableId, offset) should be cached:
   * there is room, or this is its second miss within the ghost window. A false answer
   * remembers the key.
   */
  admit(tableId: number, offset: number, bytes: number): boolean {
    if (bytes > this.maxBytes) {
      this.#rejected++; // rule 1: never cached
      return false;
    }
    if (this.#bytes + bytes <= this.maxBytes) return true;
    const key = slotKey(tableId, offset);
    if (this.#ghosts.delete(key)) return true;
    // The window: as many keys as the cache holds entries (at least 64).
    this.#ghostMax = Math.max(64, this.#slots.size);
    if (this.#ghostRing.length < this.#ghostMax) {
      this.#ghostRing.push(key);
    } else {
      this.#ghostAt %= this.#ghostRing.length;
      this.#ghosts.delete(this.#ghostRing[this.#ghostAt]!);
      this.#ghostRing[this.#ghostAt++] = key;
    }
    this.#ghosts.add(key);
    return false;
  }

  /**
   * Caches `value` for (tableId, offset) as `bytes` bytes, evicting the least recently used
   * entries as needed (rule 1). Replaces an existing entry of the same key.
   */
  set(tableId: number, offset: number, value: T, bytes: number): void {
    if (!(Number.isSafeInteger(bytes) && bytes >= 0)) assert(false, `cache entry size ${bytes} is not a byte count`);
    const key = slotKey(tableId, offset);
    const old = this.#slots.get(key);
    if (old !== undefined) this.#remove(old);
    if (bytes > this.maxBytes) {
      this.#rejected++;
      return;
    }
    while (this.#bytes + bytes > this.maxBytes) {
      const oldest = this.#tail;
      assert(oldest !== null, "cache bytes counted without entries");
      this.#remove(oldest);
      this.#evictions++;
    }
    const slot: Slot<T> = { key, value, bytes, newer: null, older: null };
    this.#slots.set(key, slot);
    this.#pushHead(slot);
    this.#bytes += bytes;
  }

  /** Frees every entry of `tableId` (a table being closed); returns how many. O(entries held). */
  dropTable(tableId: number): number {
    let dropped = 0;
    for (const slot of this.#slots.values()) {
      if (Math.floor(slot.key / OFFSET_SPAN) === tableId) {
        this.#remove(slot);
        dropped++;
      }
    }
    return dropped;
  }

  /** Frees every entry; counters stay. */
  clear(): void {
    this.#slots.clear();
    this.#ghosts.clear();
    this.#ghostRing.length = 0;
    this.#head = this.#tail = null;
    this.#bytes = 0;
  }

  /** Bytes held now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The counters (a fresh object). */
  stats(): BlockCacheStats {
    return {
      hits: this.#hits,
      misses: this.#misses,
      evictions: this.#evictions,
      rejected: this.#rejected,
      bytes: this.#bytes,
      entries: this.#slots.size,
      maxBytes: this.maxBytes,
    };
  }
}

function slotKey(tableId: number, offset: number): number {
  // Conditions first: the messages are built only on failure (this runs per lookup).
  if (!(Number.isInteger(tableId) && tableId > 0 && tableId < TABLE_IDS_MAX)) assert(false, `table id ${tableId} out of range`);
  if (!(Number.isInteger(offset) && offset >= 0 && offset < OFFSET_SPAN)) assert(false, `block offset ${offset} out of range`);
  return tableId * OFFSET_SPAN + offset;
}
