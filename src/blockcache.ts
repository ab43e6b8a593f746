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
 * 2. Eviction approximates least-recently-used by second chance (CLOCK): entries sit in a
 *    doubly linked list, newest at the head; a hit only marks its entry as referenced, and
 *    eviction takes from the tail, moving a referenced entry back to the head (unmarked)
 *    instead of dropping it. Moving an entry to the head at every hit touched its two
 *    neighbours, blocks rarely in the CPU's caches: ~90 ns of a ~200 ns hit (measured).
 * 3. Entries are keyed by (table id, block offset). Table ids come from `newTableId()` and
 *    are never reused within a process, so a block of a closed (possibly deleted and then
 *    recreated under the same name) table can never be served for another; `dropTable()`
 *    frees a closed table's blocks at once instead of waiting for them to age out. Ids
 *    have no limit (below 2^53): every process opens the tables that each compaction, in
 *    any process, writes, so a long-lived one opens tables without end.
 * 4. Entries are found by table id, then by block offset, in maps keyed by numbers (no
 *    string per lookup): small integers, which engines hash faster than the single number
 *    tableId·2^32 + offset (a double) this cache used as its key (~105 → ~50 ns a lookup,
 *    measured). That number still names a block in the admission filter (rule 5), so block
 *    offsets stay below 2^32 (tables are at most 4 GiB, see table.ts), and the id in it is
 *    taken modulo 2^21 − 1 (plus one): two tables opened ~2 million opens apart may share
 *    a ghost key, which at worst admits a block on its first miss. Ids themselves used to
 *    stop at 2^21, and a process that had opened that many tables in its life (one
 *    calling compact() after each batch reached it within hours, and so did every process
 *    following its compactions) failed every read with LIMIT.
 * 5. Admission (`admit`): while the cache has room, every block is admitted. Once it is
 *    full, a block is admitted only on its second miss while its key is still remembered
 *    from the first: "ghost" keys sit in a direct-mapped table of a power of two ≥ the
 *    entries held (at least 64, and at least the slab slots the bound allows: a cache
 *    that scans keep empty still remembers a scan's blocks until it comes again) slots,
 *    where a later miss whose key hashes to the same slot takes it, so a key is remembered
 *    over about as many misses as the table has slots. Under
 *    uniform reads of far more data than the cache, almost no block is read twice before
 *    it would be evicted: caching each one would cost an allocation, an eviction and
 *    garbage for nothing, and would flush the blocks that are read again. Blocks read
 *    twice (a hot set) get in on their second miss. (A simple form of the admission
 *    filters of 2Q and TinyLFU.) A block a range scan or a count read (table.ts) gets in on
 *    its second miss only, room or not: a scan reads dozens of blocks once each, and while
 *    the cache fills every block it keeps lands in memory the process touches for the first
 *    time, which costs more here than the scan's whole read (~14 µs per 4 KiB page on this
 *    VM, a 4 KiB copy into touched memory 0.3 µs). A range scanned again is cached then.
 *
 * 6. Slab (`slotBytes` > 0): blocks up to `slotBytes` long live in fixed-size slots of a few
 *    large buffers the cache owns (`reserve` hands out a slot, evicting as needed; removing
 *    the entry frees it for the next block). A block cached in its own small buffer instead
 *    leaves that buffer to the garbage collector on eviction: under reads of far more data
 *    than the cache, every admission then cost an allocation and every eviction garbage
 *    outside the heap, which drove full collections and left the allocator holding freed
 *    chunks (a 64 MiB cache measured ~50 MiB of RSS above its bytes, and point reads ran
 *    slower than with no cache at all). With slots the memory is the slots, allocated as
 *    they are first used. The price: a slot is reused as soon as its entry goes, so a view
 *    into it is valid only until the next `reserve` or `set`; the caller copies what it
 *    keeps (table.ts copies a value a point read returns and a block a scan decodes).
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

/** Table ids in admission-filter keys are folded into [1, GHOST_IDS) (rule 4). */
const GHOST_IDS = 2 ** 21;
const OFFSET_SPAN = 2 ** 32;
/** Bytes per slab buffer (rule 6): the slots come 1 MiB at a time, as the cache fills. */
const SLAB_BYTES = 2 ** 20;

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
  tableId: number;
  offset: number;
  value: T;
  bytes: number;
  /** The slab slot holding the value's bytes (rule 6), or -1. */
  slab: number;
  /** Toward the head (more recently used); null at the head. */
  newer: Slot<T> | null;
  /** Toward the tail (less recently used); null at the tail. */
  older: Slot<T> | null;
  /** Hit since it was last inserted or given its second chance (rule 2). */
  referenced: boolean;
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
  /** Entries by table id, then by block offset (rule 4). */
  readonly #tables = new Map<number, Map<number, Slot<T>>>();
  #entries = 0;
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
  /**
   * Keys missed once while the cache was full (rule 5), by slot (0: none; keys are never 0).
   * A typed array, not a Set and a ring: under uniform reads of a large store every read
   * misses, and the Set's three operations on non-integer keys cost ~170 ns per miss.
   */
  #ghosts = new Float64Array(0);
  /** Rule 6: the slot size (0: no slab), the slots the bound allows, the buffers, free slots. */
  readonly slotBytes: number;
  readonly #slotsMax: number;
  readonly #perSlab: number;
  readonly #slabs: Uint8Array[] = [];
  #slabSlots = 0;
  readonly #freeSlots: number[] = [];

  /**
   * `maxBytes` ≥ 0; 0 disables caching (every lookup misses). `slotBytes` > 0 keeps blocks
   * up to that size in slab slots (rule 6); each slab entry is charged `slotBytes` plus
   * whatever its caller adds.
   */
  constructor(maxBytes: number, options: { slotBytes?: number } = {}) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
      throw new TxtDbError("INVALID_ARGUMENT", `Cache size ${maxBytes} is not a whole number of bytes ≥ 0; pass e.g. 64 * 2 ** 20`);
    }
    const slotBytes = options.slotBytes ?? 0;
    assert(Number.isSafeInteger(slotBytes) && slotBytes >= 0, `slab slot size ${slotBytes} is not a byte count`);
    this.maxBytes = maxBytes;
    this.slotBytes = slotBytes;
    this.#slotsMax = slotBytes > 0 ? Math.floor(maxBytes / slotBytes) : 0;
    this.#perSlab = slotBytes > 0 ? Math.max(1, Math.floor(SLAB_BYTES / slotBytes)) : 1;
  }

  /**
   * Rule 6: a free slab slot for a block of `length` bytes, after evicting least recently
   * used entries until an entry charged `charge` bytes fits the bound; -1 when the block is
   * longer than a slot or the bound holds no slot (cache it in a buffer of its own, or not
   * at all). Give the slot to {@link set}, or back with {@link freeSlot} if the block turns
   * out bad.
   */
  reserve(length: number, charge: number): number {
    if (!this.fitsSlot(length, charge)) return -1;
    this.#evictFor(charge);
    const free = this.#freeSlots.pop();
    if (free !== undefined) return free;
    // Every slot in use belongs to an entry charged at least slotBytes, and the entries
    // leave room for `charge` ≥ slotBytes: so fewer than #slotsMax slots are in use.
    assert(this.#slabSlots < this.#slotsMax, "no slab slot free under the bound");
    // Each buffer holds #perSlab slots (the last may hold fewer: slotView relies on that).
    const count = Math.min(this.#perSlab, this.#slotsMax - this.#slabSlots);
    this.#slabs.push(new Uint8Array(count * this.slotBytes));
    for (let i = count - 1; i > 0; i--) this.#freeSlots.push(this.#slabSlots + i);
    const slot = this.#slabSlots;
    this.#slabSlots += count;
    return slot;
  }

  /** Whether {@link reserve} hands out a slot for a block of `length` bytes charged `charge` (else it returns -1). */
  fitsSlot(length: number, charge: number): boolean {
    return length <= this.slotBytes && charge <= this.maxBytes && this.#slotsMax > 0;
  }

  /** The first `length` bytes of slab slot `slot` (valid until the slot's entry goes: rule 6). */
  slotView(slot: number, length: number): Uint8Array {
    const perSlab = this.#perSlab;
    const slab = this.#slabs[Math.floor(slot / perSlab)]!;
    const at = (slot % perSlab) * this.slotBytes;
    return slab.subarray(at, at + length);
  }

  /** Returns a slot {@link reserve} gave that never reached {@link set}. */
  freeSlot(slot: number): void {
    this.#freeSlots.push(slot);
  }

  #evictFor(bytes: number): void {
    while (this.#bytes + bytes > this.maxBytes) {
      const oldest = this.#tail;
      assert(oldest !== null, "cache bytes counted without entries");
      if (oldest.referenced) {
        // Rule 2: a second chance. Each entry gets at most one per pass: this ends.
        oldest.referenced = false;
        if (oldest !== this.#head) {
          this.#unlink(oldest);
          this.#pushHead(oldest);
        }
        continue;
      }
      this.#remove(oldest);
      this.#evictions++;
    }
  }

  /** A fresh id for a table opened in this process (rule 3: never reused, no limit). */
  newTableId(): number {
    return this.#nextTableId++;
  }

  /** The cached value of (tableId, offset), marked as used (rule 2); counts a hit or a miss. */
  get(tableId: number, offset: number): T | undefined {
    checkKey(tableId, offset);
    const slot = this.#tables.get(tableId)?.get(offset);
    if (slot === undefined) {
      this.#misses++;
      return undefined;
    }
    this.#hits++;
    slot.referenced = true;
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
    const table = this.#tables.get(slot.tableId)!;
    table.delete(slot.offset);
    if (table.size === 0) this.#tables.delete(slot.tableId);
    this.#entries--;
    this.#bytes -= slot.bytes;
    if (slot.slab >= 0) this.#freeSlots.push(slot.slab);
  }

  /**
   * Rule 5: true if a block of `bytes` bytes missed at (tableId, offset) should be cached:
   * there is room (unless `secondMissOnly`: a block a scan read), or this is its second miss
   * within the ghost window. A false answer remembers the key.
   */
  admit(tableId: number, offset: number, bytes: number, secondMissOnly = false): boolean {
    if (bytes > this.maxBytes) {
      this.#rejected++; // rule 1: never cached
      return false;
    }
    if (!secondMissOnly && this.#bytes + bytes <= this.maxBytes) return true;
    const key = slotKey(tableId, offset);
    // The window: about as many keys as the cache holds entries (at least 64, and at least
    // as many as its slab slots).
    let ghosts = this.#ghosts;
    const want = Math.max(64, this.#entries, this.#slotsMax);
    if (ghosts.length < want) {
      let size = 64;
      while (size < want) size *= 2;
      const grown = new Float64Array(size);
      for (const k of ghosts) if (k !== 0) grown[ghostSlot(k, size)] = k;
      ghosts = this.#ghosts = grown;
    }
    const at = ghostSlot(key, ghosts.length);
    if (ghosts[at] === key) {
      ghosts[at] = 0;
      return true;
    }
    ghosts[at] = key;
    return false;
  }

  /**
   * Caches `value` for (tableId, offset) as `bytes` bytes, evicting the least recently used
   * entries as needed (rule 1). Replaces an existing entry of the same key. `slab`: the
   * slot from {@link reserve} holding the value's bytes (freed when the entry goes).
   */
  set(tableId: number, offset: number, value: T, bytes: number, slab = -1): void {
    if (!(Number.isSafeInteger(bytes) && bytes >= 0)) assert(false, `cache entry size ${bytes} is not a byte count`);
    checkKey(tableId, offset);
    const old = this.#tables.get(tableId)?.get(offset);
    if (old !== undefined) this.#remove(old);
    if (bytes > this.maxBytes) {
      this.#rejected++;
      if (slab >= 0) this.#freeSlots.push(slab);
      return;
    }
    this.#evictFor(bytes);
    const slot: Slot<T> = { tableId, offset, value, bytes, slab, newer: null, older: null, referenced: false };
    let table = this.#tables.get(tableId);
    if (table === undefined) this.#tables.set(tableId, (table = new Map()));
    table.set(offset, slot);
    this.#entries++;
    this.#pushHead(slot);
    this.#bytes += bytes;
  }

  /** Frees every entry of `tableId` (a table being closed); returns how many. O(entries of the table). */
  dropTable(tableId: number): number {
    const table = this.#tables.get(tableId);
    if (table === undefined) return 0;
    const slots = [...table.values()];
    for (const slot of slots) this.#remove(slot);
    return slots.length;
  }

  /** Frees every entry; counters stay. */
  clear(): void {
    this.#tables.clear();
    this.#entries = 0;
    this.#ghosts = new Float64Array(0);
    this.#head = this.#tail = null;
    this.#bytes = 0;
    this.#slabs.length = 0;
    this.#slabSlots = 0;
    this.#freeSlots.length = 0;
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
      entries: this.#entries,
      maxBytes: this.maxBytes,
    };
  }
}

/** Where key tableId·2^32 + offset goes in a ghost table of `size` (a power of two) slots. */
function ghostSlot(key: number, size: number): number {
  // Offsets of nearby blocks differ in few bits, and a product's low bits depend only on
  // its operands' low bits: mix every bit in (murmur3's finaliser).
  let h = (key >>> 0) ^ Math.imul((key / OFFSET_SPAN) >>> 0, 0x9e3779b1);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h & (size - 1);
}

/** Rule 4's ranges, asserted at every lookup and insertion. */
function checkKey(tableId: number, offset: number): void {
  // Conditions first: the messages are built only on failure (this runs per lookup).
  if (!(Number.isSafeInteger(tableId) && tableId > 0)) assert(false, `table id ${tableId} out of range`);
  if (!(Number.isInteger(offset) && offset >= 0 && offset < OFFSET_SPAN)) assert(false, `block offset ${offset} out of range`);
}

/** The number naming a block in the admission filter (rule 5). */
function slotKey(tableId: number, offset: number): number {
  checkKey(tableId, offset);
  return (((tableId - 1) % (GHOST_IDS - 1)) + 1) * OFFSET_SPAN + offset;
}
