/**
 * Merge iterators: one stream in key order out of several sorted sources (the in-memory
 * table of recent commits and the on-disk tables, newest first), for reads at a snapshot
 * and for compaction.
 *
 * Sources are iterables of {@link TableEntry} (a TableReader's `range()` or `entries()`,
 * an array, a generator over the in-memory table). They are pulled lazily, one entry at a
 * time: merging never materialises a range. With up to {@link LINEAR_SOURCES_MAX} sources
 * the next entry is found by scanning the heads (fewer comparisons than a heap at that
 * size); with more, by a binary heap: O(log n) per entry.
 *
 * Ties: TSNs are global (one per commit), so the newest version of a key is the one with
 * the largest TSN whatever source holds it. The same (nsId, key, tsn) in two sources is
 * one version stored twice (e.g. in the in-memory table and in a table just written from
 * it); the copy of the earlier source wins, which is why sources are given newest first.
 *
 * Retention rule of compaction ({@link mergeForCompaction}). For one key, take its
 * versions v1 > v2 > … (TSN descending) from every source, the pins P (TSNs of snapshots
 * that may still read, non-empty), m = min(P), and H = keepAllAboveTsn (≥ m; default m):
 *
 *   R1. Keep vi if vi.tsn > H, and keep the newest version ≤ H: a snapshot may exist, or
 *       may be about to be published, at any s > H, and it reads the newest version ≤ s,
 *       which is one of those above H or else the newest ≤ H.
 *   R2. Keep vi if it is the newest version ≤ p for some p in P ∪ {+∞}, i.e. if
 *       vi.tsn ≤ p < v(i−1).tsn (v0.tsn = +∞): it is what snapshot p reads. +∞ stands for
 *       every snapshot taken after the compaction, which reads the newest version.
 *   R3. Drop every other version: no snapshot, present or future, reads it.
 *   R4. When the output is the bottom level (no older table holds versions of these keys),
 *       drop a kept tombstone vi with vi.tsn ≤ m. Every pin reads it as "absent"; by R1–R3
 *       nothing older than vi is kept (all older versions are ≤ m ≤ H, and vi is the newest
 *       ≤ every pin), so without it every pin still reads "absent". A tombstone above m
 *       stays even when nothing older is kept: reads would not change without it, but a
 *       transaction validating "did this key change after my read version?" against the
 *       tables would miss the delete. It goes once the oldest pin passes it.
 *   R5. Duplicates (same nsId, key, tsn) are one version: the first source's copy is kept.
 *
 * Memory: one head entry per source and the heap; retention decides each version from
 * the previous version of its key only (R2), so compaction streams too.
 *
 * @module
 */
import { assert } from "./errors.ts";
import { compareEntries } from "./table.ts";
import type { TableEntry } from "./table.ts";

/** Up to this many sources the merge scans the heads; above it, it keeps a heap. */
export const LINEAR_SOURCES_MAX = 4;

/** Options of {@link mergeVisible}. */
export interface MergeVisibleOptions {
  /** The snapshot: versions with tsn ≤ snapshotTsn are visible. */
  snapshotTsn: number;
  /** Sources iterate in reverse key order, and so does the output. */
  reverse?: boolean;
  /** Stop after this many entries (≥ 0). */
  limit?: number;
  /** For tests: the source count above which a heap is used ({@link LINEAR_SOURCES_MAX}). */
  linearSourcesMax?: number;
}

/** Options of {@link mergeForCompaction}; see the retention rule in the module comment. */
export interface CompactionMergeOptions {
  /**
   * TSNs of the snapshots that may still read (every live pin; the engine also passes the
   * newest folded TSN). Non-empty.
   */
  pins: readonly number[];
  /** H of rule R1: every version above it is kept. ≥ min(pins); min(pins) by default. */
  keepAllAboveTsn?: number;
  /** True when no older table holds versions of these keys (rule R4). */
  bottomLevel: boolean;
  /** For tests: the source count above which a heap is used. */
  linearSourcesMax?: number;
}

type Compare = (a: TableEntry, b: TableEntry) => number;

/**
 * The heads of k sorted sources and which of them comes next: by scanning when there are
 * few, by a binary heap when there are many. Ties go to the lower source index (R5).
 */
class Heads {
  readonly #iters: Iterator<TableEntry>[];
  readonly #heads: (TableEntry | undefined)[];
  readonly #cmp: Compare;
  /** Source indices in heap order; undefined in linear mode. */
  readonly #heap: number[] | undefined;

  constructor(sources: readonly Iterable<TableEntry>[], cmp: Compare, linearMax: number) {
    this.#cmp = cmp;
    this.#iters = [];
    this.#heads = [];
    for (const s of sources) {
      const it = s[Symbol.iterator]();
      this.#iters.push(it);
      const r = it.next();
      this.#heads.push(r.done === true ? undefined : r.value);
    }
    if (sources.length > linearMax) {
      this.#heap = [];
      for (let i = 0; i < this.#heads.length; i++) if (this.#heads[i] !== undefined) this.#heap.push(i);
      for (let i = (this.#heap.length >>> 1) - 1; i >= 0; i--) this.#siftDown(i);
    }
  }

  #before(i: number, j: number): boolean {
    const c = this.#cmp(this.#heads[i]!, this.#heads[j]!);
    return c < 0 || (c === 0 && i < j);
  }

  /** The source whose head comes next, or -1 when all are exhausted. */
  top(): number {
    const heap = this.#heap;
    if (heap !== undefined) return heap.length > 0 ? heap[0]! : -1;
    let best = -1;
    for (let i = 0; i < this.#heads.length; i++) {
      if (this.#heads[i] !== undefined && (best < 0 || this.#before(i, best))) best = i;
    }
    return best;
  }

  head(i: number): TableEntry {
    return this.#heads[i]!;
  }

  /** Moves source `i` (which must be `top()`) to its next entry. */
  advance(i: number): void {
    const r = this.#iters[i]!.next();
    this.#heads[i] = r.done === true ? undefined : r.value;
    const heap = this.#heap;
    if (heap === undefined) return;
    assert(heap[0] === i, "merge advanced a source that is not the top");
    if (r.done === true) {
      const last = heap.pop()!;
      if (heap.length === 0) return;
      heap[0] = last;
    }
    this.#siftDown(0);
  }

  #siftDown(at: number): void {
    const heap = this.#heap!;
    const n = heap.length;
    for (;;) {
      const l = 2 * at + 1;
      if (l >= n) return;
      const r = l + 1;
      const child = r < n && this.#before(heap[r]!, heap[l]!) ? r : l;
      if (!this.#before(heap[child]!, heap[at]!)) return;
      const t = heap[at]!;
      heap[at] = heap[child]!;
      heap[child] = t;
      at = child;
    }
  }

  /** Ends every source early (runs generators' `finally` blocks). */
  close(): void {
    for (const it of this.#iters) it.return?.();
  }
}

const byKey: Compare = (a, b) => (a.nsId !== b.nsId ? (a.nsId < b.nsId ? -1 : 1) : a.key === b.key ? 0 : a.key < b.key ? -1 : 1);
const byKeyReverse: Compare = (a, b) => byKey(b, a);
const byEntry: Compare = (a, b) => compareEntries(a.nsId, a.key, a.tsn, b.nsId, b.key, b.tsn);

/**
 * For each key in the union of `sources` (newest source first), the newest version with
 * tsn ≤ snapshotTsn, skipping keys whose visible version is a tombstone, in key order (or
 * reverse), at most `limit` of them. Each source iterates in the output's direction with
 * the versions of one key adjacent (in any TSN order); a source may give only the visible
 * version per key (TableReader.range) or all of them.
 *
 * @example
 * ```ts
 * const sources = [memtableRange, ...tables.map((t) => t.range(nsId, start, end, snap))];
 * for (const e of mergeVisible(sources, { snapshotTsn: snap, limit: 100 })) use(e.key, e.value);
 * ```
 */
export function* mergeVisible(sources: readonly Iterable<TableEntry>[], options: MergeVisibleOptions): Generator<TableEntry, void, undefined> {
  const snap = options.snapshotTsn;
  const limit = options.limit ?? Infinity;
  assert(limit >= 0, `merge limit ${limit} is negative`);
  if (limit === 0) return;
  const cmp = options.reverse === true ? byKeyReverse : byKey;
  const heads = new Heads(sources, cmp, options.linearSourcesMax ?? LINEAR_SOURCES_MAX);
  let emitted = 0;
  try {
    for (let s = heads.top(); s >= 0; s = heads.top()) {
      const first = heads.head(s);
      let best: TableEntry | undefined;
      // Consume every version of this key from every source. Ties on the key come from the
      // lower source first, so `>` keeps the first copy of a duplicated TSN (R5).
      do {
        const e = heads.head(s);
        if (e.tsn <= snap && (best === undefined || e.tsn > best.tsn)) best = e;
        heads.advance(s);
        s = heads.top();
      } while (s >= 0 && cmp(heads.head(s), first) === 0);
      if (best !== undefined && best.value !== null) {
        yield best;
        if (++emitted >= limit) return;
      }
    }
  } finally {
    heads.close();
  }
}

/**
 * Merges sources for compaction: every version the retention rule (module comment, R1–R5)
 * keeps, in table order, ready for a TableWriter. Each source iterates in table order
 * (nsId, key ascending, TSN descending), newest source first.
 *
 * @example
 * ```ts
 * const w = new TableWriter(file);
 * for (const e of mergeForCompaction([newer.entries(), older.entries()], { pins: [oldestPin, foldTsn], bottomLevel: true })) {
 *   w.add(e.nsId, e.key, e.tsn, e.value);
 * }
 * ```
 */
export function* mergeForCompaction(sources: readonly Iterable<TableEntry>[], options: CompactionMergeOptions): Generator<TableEntry, void, undefined> {
  assert(options.pins.length > 0, "compaction needs at least one pin (the newest folded TSN)");
  const oldestPin = Math.min(...options.pins);
  const keepAllAbove = options.keepAllAboveTsn ?? oldestPin;
  assert(keepAllAbove >= oldestPin, `keepAllAboveTsn ${keepAllAbove} is below the oldest pin ${oldestPin}: R4 would be unsafe`);
  // R1's "newest version ≤ H" is R2 with H as one more pin.
  const pins = [...options.pins, keepAllAbove].sort((a, b) => a - b);
  const heads = new Heads(sources, byEntry, options.linearSourcesMax ?? LINEAR_SOURCES_MAX);
  let prev: TableEntry | undefined;
  /** TSN of the previous version of the current key (+∞ at a key's first version). */
  let newerTsn = Infinity;
  try {
    for (let s = heads.top(); s >= 0; s = heads.top()) {
      const e = heads.head(s);
      heads.advance(s);
      if (prev !== undefined) {
        const c = byEntry(prev, e);
        if (c > 0) assert(false, `compaction source ${s} is out of order at (${e.nsId}, ${JSON.stringify(e.key)}, ${e.tsn})`);
        if (c === 0) continue; // R5
        if (prev.nsId !== e.nsId || prev.key !== e.key) newerTsn = Infinity;
      }
      prev = e;
      const tsn = e.tsn;
      const keep = tsn > keepAllAbove || newerTsn === Infinity || pinIn(pins, tsn, newerTsn);
      newerTsn = tsn;
      if (!keep) continue;
      if (e.value === null && options.bottomLevel && tsn <= oldestPin) continue; // R4
      yield e;
    }
  } finally {
    heads.close();
  }
}

/** True when some pin p (sorted ascending) has lo ≤ p < hi. */
function pinIn(pins: readonly number[], lo: number, hi: number): boolean {
  let a = 0, b = pins.length;
  while (a < b) {
    const mid = (a + b) >>> 1;
    if (pins[mid]! < lo) a = mid + 1;
    else b = mid;
  }
  return a < pins.length && pins[a]! < hi;
}
