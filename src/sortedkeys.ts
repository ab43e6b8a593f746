/**
 * The sorted key list of one namespace of the in-memory table (index.ts): every key it
 * holds, in binary-string order, kept in chunks of at most {@link KEY_CHUNK_MAX} keys.
 * The list holds items that carry their key (the index's version chains), so a range read
 * walks from key to versions without a hash lookup per key (that lookup was a quarter of a
 * 1,000-key scan's time).
 *
 * Why chunks: the in-memory table grows until compaction folds it (up to ~32 MiB of log
 * with default options, some 300k keys), and a range read needs its keys in order. One
 * flat sorted array costs a copy of the whole array for every batch of new keys read
 * after (measured: a set and a 10-key list at 200k unfolded keys took 347 µs against
 * 155 µs at 20k, nearly all of it the copy; a queue's claim round paid it under the
 * writer lock). In chunks a new key costs a search and a move of at most one chunk.
 *
 * New keys are buffered (`push`) and placed on the next read, so a stream of writes with
 * no reads in between pays nothing for order.
 *
 * @module
 */

/** Most keys in one chunk; a fuller one is split into pieces of half as many. */
export const KEY_CHUNK_MAX = 1024;

/** New keys at least 1/16 as many as those placed are merged with them in one pass; fewer are merged run by run into their chunks. */
const MERGE_RATIO = 16;

/** An item of a {@link SortedKeys}: anything that carries its key. */
export interface Keyed {
  readonly key: string;
}

/**
 * A set of items with distinct keys, read in key order.
 *
 * @example
 * ```ts
 * const keys = new SortedKeys<{ key: string }>();
 * keys.push({ key: "b" });
 * keys.push({ key: "a" });
 * for (const c = keys.seek("a"); c.item !== undefined; c.next()) console.log(c.item.key); // a, b
 * ```
 */
export class SortedKeys<T extends Keyed> {
  /** Sorted chunks, none empty; every key of a chunk is below every key of the next. */
  #chunks: T[][] = [];
  /** First key of each chunk (the directory searched to find a key's chunk). */
  #firsts: string[] = [];
  #placed = 0;
  /** Items pushed and not yet placed (not sorted). */
  #fresh: T[] = [];

  /** Keys held, placed or not. */
  get size(): number {
    return this.#placed + this.#fresh.length;
  }

  /** Adds an item whose key the list does not hold; it is placed in order on the next read. */
  push(item: T): void {
    this.#fresh.push(item);
  }

  /** Keeps only the items `keep` accepts. */
  retain(keep: (item: T) => boolean): void {
    this.#place();
    const chunks: T[][] = [];
    let placed = 0;
    for (const c of this.#chunks) {
      const kept = c.filter(keep);
      if (kept.length === 0) continue;
      chunks.push(kept);
      placed += kept.length;
    }
    this.#chunks = chunks;
    this.#firsts = chunks.map((c) => c[0]!.key);
    this.#placed = placed;
  }

  /** A cursor at the first key ≥ `key` (past the end if there is none). */
  seek(key: string): KeyCursor<T> {
    this.#place();
    const c = this.#chunkOf(key);
    if (c < 0) return new KeyCursor(this.#chunks, 0, 0);
    const chunk = this.#chunks[c]!;
    const i = lowerBound(chunk, key);
    return i < chunk.length ? new KeyCursor(this.#chunks, c, i) : new KeyCursor(this.#chunks, c + 1, 0);
  }

  /** A cursor at the last key < `key` (before the start if there is none). */
  seekBefore(key: string): KeyCursor<T> {
    const cur = this.seek(key);
    cur.prev();
    return cur;
  }

  /** Every item, in key order. */
  *[Symbol.iterator](): Generator<T, void, undefined> {
    this.#place();
    for (const c of this.#chunks) yield* c;
  }

  /** Index of the chunk that holds `key` or would: the last whose first key is ≤ it; -1 if before all. */
  #chunkOf(key: string): number {
    const f = this.#firsts;
    let lo = 0, hi = f.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (f[mid]! <= key) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }

  #place(): void {
    if (this.#fresh.length === 0) return;
    const fresh = this.#fresh.sort(byKey);
    this.#fresh = [];
    if (fresh.length * MERGE_RATIO >= this.#placed) {
      // Many at once (a first fill, a large transaction): one merge, then cut into chunks.
      const all = mergeSorted(this.#chunks.length === 1 ? this.#chunks[0]! : this.#chunks.flat(), fresh);
      const chunks = halfChunks(all, 0);
      this.#chunks = chunks;
      this.#firsts = chunks.map((c) => c[0]!.key);
      this.#placed = all.length;
      return;
    }
    // Fewer: each run of new keys that falls in one chunk is merged into it (a queue's keys
    // arrive as a few runs at the ends of their regions: a merge or two per read).
    for (let j = 0; j < fresh.length;) {
      const c = Math.max(0, this.#chunkOf(fresh[j]!.key)); // before every key: the first chunk takes it
      const bound = this.#firsts[c + 1];
      let k = j + 1;
      while (k < fresh.length && (bound === undefined || fresh[k]!.key < bound)) k++;
      this.#mergeInto(c, fresh, j, k);
      j = k;
    }
  }

  /** Merges `fresh[from..to)` (sorted, all below the next chunk's first key) into chunk `c`, split if it grows past the limit. */
  #mergeInto(c: number, fresh: readonly T[], from: number, to: number): void {
    const chunk = this.#chunks[c]!;
    this.#placed += to - from;
    if (to - from === 1) {
      const item = fresh[from]!;
      const i = lowerBound(chunk, item.key);
      if (i === chunk.length) chunk.push(item);
      else chunk.splice(i, 0, item);
    } else {
      const merged = mergeSorted(chunk, fresh.slice(from, to));
      chunk.length = 0;
      for (const item of merged) chunk.push(item);
    }
    this.#firsts[c] = chunk[0]!.key;
    if (chunk.length <= KEY_CHUNK_MAX) return;
    // Split into pieces of half the limit, so that the next keys fit without a split.
    const pieces = halfChunks(chunk, KEY_CHUNK_MAX >>> 1);
    chunk.length = KEY_CHUNK_MAX >>> 1;
    this.#chunks.splice(c + 1, 0, ...pieces);
    this.#firsts.splice(c + 1, 0, ...pieces.map((p) => p[0]!.key));
  }
}

function byKey(a: Keyed, b: Keyed): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/** `keys` from `from` on, cut into chunks of half the limit (the last may be shorter). */
function halfChunks<T>(keys: readonly T[], from: number): T[][] {
  const half = KEY_CHUNK_MAX >>> 1;
  const chunks: T[][] = [];
  for (let i = from; i < keys.length; i += half) chunks.push(keys.slice(i, i + half));
  return chunks;
}

/**
 * A position in a {@link SortedKeys}: `item` is the item there, undefined once moved past
 * either end. Valid until the list next changes (index.ts reads with it synchronously).
 */
export class KeyCursor<T extends Keyed> {
  readonly #chunks: readonly T[][];
  #c: number;
  #i: number;
  item: T | undefined;

  constructor(chunks: readonly T[][], c: number, i: number) {
    this.#chunks = chunks;
    this.#c = c;
    this.#i = i;
    this.item = chunks[c]?.[i];
  }

  /** The key of the item here, or undefined past either end. */
  get key(): string | undefined {
    return this.item?.key;
  }

  /** Moves to the next key. */
  next(): void {
    const chunk = this.#chunks[this.#c];
    if (chunk === undefined) return;
    if (++this.#i < chunk.length) {
      this.item = chunk[this.#i];
      return;
    }
    this.#c++;
    this.#i = 0;
    this.item = this.#chunks[this.#c]?.[0];
  }

  /** Moves to the previous key. */
  prev(): void {
    if (this.#c < 0) return;
    if (this.#i > 0 && this.#c < this.#chunks.length) {
      this.item = this.#chunks[this.#c]![--this.#i];
      return;
    }
    if (this.#c === 0 || this.#chunks.length === 0) {
      this.#c = -1;
      this.item = undefined;
      return;
    }
    this.#c = Math.min(this.#c, this.#chunks.length) - 1;
    const chunk = this.#chunks[this.#c]!;
    this.#i = chunk.length - 1;
    this.item = chunk[this.#i];
  }
}

/**
 * `sorted` and `fresh` (sorted, no key in both) merged. New keys usually arrive in a few
 * runs that each fall between two neighbours of `sorted` (keys that grow with time, as a
 * queue's), so the merge searches where each run goes and copies the stretches of `sorted`
 * between runs without comparing their keys: O(runs · log n + n) copies instead of n
 * string comparisons.
 */
export function mergeSorted<T extends Keyed>(sorted: readonly T[], fresh: readonly T[]): T[] {
  const out: T[] = new Array(sorted.length + fresh.length);
  let o = 0, i = 0, j = 0;
  while (j < fresh.length) {
    const at = lowerBound(sorted, fresh[j]!.key, i);
    while (i < at) out[o++] = sorted[i++]!;
    if (i === sorted.length) {
      while (j < fresh.length) out[o++] = fresh[j++]!;
      break;
    }
    const next = sorted[i]!.key;
    while (j < fresh.length && fresh[j]!.key < next) out[o++] = fresh[j++]!;
  }
  while (i < sorted.length) out[o++] = sorted[i++]!;
  return out;
}

/** First index in `arr` (sorted by key), from `from` on, whose item's key is ≥ key. */
export function lowerBound(arr: readonly Keyed[], key: string, from = 0): number {
  let lo = from, hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid]!.key < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
