/**
 * The sorted key list of one namespace of the in-memory table (index.ts): every key it
 * holds, in binary-string order, kept in chunks of at most {@link KEY_CHUNK_MAX} keys.
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

/**
 * A set of distinct keys read in order.
 *
 * @example
 * ```ts
 * const keys = new SortedKeys();
 * keys.push("b");
 * keys.push("a");
 * for (const c = keys.seek("a"); c.key !== undefined; c.next()) console.log(c.key); // a, b
 * ```
 */
export class SortedKeys {
  /** Sorted chunks, none empty; every key of a chunk is below every key of the next. */
  #chunks: string[][] = [];
  /** First key of each chunk (the directory searched to find a key's chunk). */
  #firsts: string[] = [];
  #placed = 0;
  /** Keys pushed and not yet placed (not sorted). */
  #fresh: string[] = [];

  /** Keys held, placed or not. */
  get size(): number {
    return this.#placed + this.#fresh.length;
  }

  /** Adds a key the list does not hold; it is placed in order on the next read. */
  push(key: string): void {
    this.#fresh.push(key);
  }

  /** Keeps only the keys `keep` accepts. */
  retain(keep: (key: string) => boolean): void {
    this.#place();
    const chunks: string[][] = [];
    let placed = 0;
    for (const c of this.#chunks) {
      const kept = c.filter(keep);
      if (kept.length === 0) continue;
      chunks.push(kept);
      placed += kept.length;
    }
    this.#chunks = chunks;
    this.#firsts = chunks.map((c) => c[0]!);
    this.#placed = placed;
  }

  /** A cursor at the first key ≥ `key` (past the end if there is none). */
  seek(key: string): KeyCursor {
    this.#place();
    const c = this.#chunkOf(key);
    if (c < 0) return new KeyCursor(this.#chunks, 0, 0);
    const chunk = this.#chunks[c]!;
    const i = lowerBound(chunk, key);
    return i < chunk.length ? new KeyCursor(this.#chunks, c, i) : new KeyCursor(this.#chunks, c + 1, 0);
  }

  /** A cursor at the last key < `key` (before the start if there is none). */
  seekBefore(key: string): KeyCursor {
    const cur = this.seek(key);
    cur.prev();
    return cur;
  }

  /** Every key, in order. */
  *[Symbol.iterator](): Generator<string, void, undefined> {
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
    const fresh = this.#fresh.sort();
    this.#fresh = [];
    if (fresh.length * MERGE_RATIO >= this.#placed) {
      // Many at once (a first fill, a large transaction): one merge, then cut into chunks.
      const all = mergeSorted(this.#chunks.length === 1 ? this.#chunks[0]! : this.#chunks.flat(), fresh);
      const chunks = halfChunks(all, 0);
      this.#chunks = chunks;
      this.#firsts = chunks.map((c) => c[0]!);
      this.#placed = all.length;
      return;
    }
    // Fewer: each run of new keys that falls in one chunk is merged into it (a queue's keys
    // arrive as a few runs at the ends of their regions: a merge or two per read).
    for (let j = 0; j < fresh.length;) {
      const c = Math.max(0, this.#chunkOf(fresh[j]!)); // before every key: the first chunk takes it
      const bound = this.#firsts[c + 1];
      let k = j + 1;
      while (k < fresh.length && (bound === undefined || fresh[k]! < bound)) k++;
      this.#mergeInto(c, fresh, j, k);
      j = k;
    }
  }

  /** Merges `fresh[from..to)` (sorted, all below the next chunk's first key) into chunk `c`, split if it grows past the limit. */
  #mergeInto(c: number, fresh: readonly string[], from: number, to: number): void {
    const chunk = this.#chunks[c]!;
    this.#placed += to - from;
    if (to - from === 1) {
      const key = fresh[from]!;
      const i = lowerBound(chunk, key);
      if (i === chunk.length) chunk.push(key);
      else chunk.splice(i, 0, key);
    } else {
      const merged = mergeSorted(chunk, fresh.slice(from, to));
      chunk.length = 0;
      for (const key of merged) chunk.push(key);
    }
    this.#firsts[c] = chunk[0]!;
    if (chunk.length <= KEY_CHUNK_MAX) return;
    // Split into pieces of half the limit, so that the next keys fit without a split.
    const pieces = halfChunks(chunk, KEY_CHUNK_MAX >>> 1);
    chunk.length = KEY_CHUNK_MAX >>> 1;
    this.#chunks.splice(c + 1, 0, ...pieces);
    this.#firsts.splice(c + 1, 0, ...pieces.map((p) => p[0]!));
  }
}

/** `keys` from `from` on, cut into chunks of half the limit (the last may be shorter). */
function halfChunks(keys: readonly string[], from: number): string[][] {
  const half = KEY_CHUNK_MAX >>> 1;
  const chunks: string[][] = [];
  for (let i = from; i < keys.length; i += half) chunks.push(keys.slice(i, i + half));
  return chunks;
}

/**
 * A position in a {@link SortedKeys}: `key` is the key there, undefined once moved past
 * either end. Valid until the list next changes (index.ts reads with it synchronously).
 */
export class KeyCursor {
  readonly #chunks: readonly string[][];
  #c: number;
  #i: number;
  key: string | undefined;

  constructor(chunks: readonly string[][], c: number, i: number) {
    this.#chunks = chunks;
    this.#c = c;
    this.#i = i;
    this.key = chunks[c]?.[i];
  }

  /** Moves to the next key. */
  next(): void {
    const chunk = this.#chunks[this.#c];
    if (chunk === undefined) return;
    if (++this.#i < chunk.length) {
      this.key = chunk[this.#i];
      return;
    }
    this.#c++;
    this.#i = 0;
    this.key = this.#chunks[this.#c]?.[0];
  }

  /** Moves to the previous key. */
  prev(): void {
    if (this.#c < 0) return;
    if (this.#i > 0 && this.#c < this.#chunks.length) {
      this.key = this.#chunks[this.#c]![--this.#i];
      return;
    }
    if (this.#c === 0 || this.#chunks.length === 0) {
      this.#c = -1;
      this.key = undefined;
      return;
    }
    this.#c = Math.min(this.#c, this.#chunks.length) - 1;
    const chunk = this.#chunks[this.#c]!;
    this.#i = chunk.length - 1;
    this.key = chunk[this.#i];
  }
}

/**
 * `sorted` and `fresh` (sorted, no key in both) merged. New keys usually arrive in a few
 * runs that each fall between two neighbours of `sorted` (keys that grow with time, as a
 * queue's), so the merge searches where each run goes and copies the stretches of `sorted`
 * between runs without comparing their keys: O(runs · log n + n) copies instead of n
 * string comparisons.
 */
export function mergeSorted(sorted: readonly string[], fresh: readonly string[]): string[] {
  const out: string[] = new Array(sorted.length + fresh.length);
  let o = 0, i = 0, j = 0;
  while (j < fresh.length) {
    const at = lowerBound(sorted, fresh[j]!, i);
    while (i < at) out[o++] = sorted[i++]!;
    if (i === sorted.length) {
      while (j < fresh.length) out[o++] = fresh[j++]!;
      break;
    }
    const next = sorted[i]!;
    while (j < fresh.length && fresh[j]! < next) out[o++] = fresh[j++]!;
  }
  while (i < sorted.length) out[o++] = sorted[i++]!;
  return out;
}

/** First index in sorted `arr`, from `from` on, whose element is ≥ key. */
export function lowerBound(arr: readonly string[], key: string, from = 0): number {
  let lo = from, hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
