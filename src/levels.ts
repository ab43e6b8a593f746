/**
 * The levels: the sorted tables of the manifest this process follows (format 2), open, and
 * read as one store below the in-memory table of commits not yet folded (index.ts).
 *
 * Shape (as in LevelDB and Pebble):
 *
 * - Level 0 holds one table per fold of the log, newest first. Their key ranges overlap;
 *   their TSN ranges do not: a newer level-0 table holds only versions newer than every
 *   version of an older one.
 * - Levels 1 and up are each one sorted run: tables in key order, key ranges disjoint, and
 *   all versions of one key in one table. Every version in level n is newer than every
 *   version of the same key in level n + 1 (compaction moves a key's versions down
 *   together, and level 0 empties into level 1 whole), so a point read stops at the first
 *   table, in the order level 0 newest first, then level 1, 2, …, that holds a version of
 *   the key at or below the snapshot.
 *
 * Tables are opened when a manifest naming them is adopted (footer, filter and index only:
 * table.ts rule 3) and closed when an adopted manifest no longer names them. A file a
 * process has open stays readable after another process's compaction unlinks it (POSIX),
 * so a process reads its tables until it adopts the next manifest; opening a table that a
 * later compaction already deleted fails, and the caller reads the manifest again (tail.ts).
 *
 * How a process learns that the set of tables changed, as cheaply as it learns of new
 * commits: a compaction that folds the active segment seals it, so the published
 * frontier moves to a new segment number; the freshness probe every read makes (one
 * pread of the frontier, tail.ts) sees the segment change and reads the manifest. A
 * compaction that folds only older, sealed segments leaves the frontier where it is; the
 * other processes then learn of it when their reading reaches the next segment. Until
 * then they read the tables they have open (unlinked files stay readable) below their
 * in-memory table, which still holds everything past the fold of the manifest they
 * follow: their reads stay right, and the disk space of the replaced tables comes back
 * once the last of them adopts the new manifest (or closes).
 *
 * A table is opened with what the manifest records of it (log.ts `ManifestTable`): its key
 * bounds, and its size and footer checksum, so that a file put under its name, another
 * store's table or an older one of this store whose every checksum holds, is CORRUPTION
 * at the open instead of being read as this store's data (table.ts rule 9; a size the
 * open takes anyway and the footer it reads anyway: no extra read).
 *
 * Every read here is synchronous (positioned reads through the port), so the set of tables
 * never changes in the middle of a read, a page of a scan, or a validation.
 *
 * @module
 */
import { bloomHash } from "./bloom.ts";
import type { BlockCache } from "./blockcache.ts";
import type { ManifestTable } from "./log.ts";
import { tableIdentity } from "./log.ts";
import { PortError } from "./port.ts";
import type { FileHandle, Platform } from "./port.ts";
import { storeFileError } from "./dirsafety.ts";
import { TxtDbError } from "./errors.ts";
import { MANIFEST } from "./files.ts";
import { TableReader } from "./table.ts";
import { bytesToBinary } from "./keys.ts";
import type { TableEntry, TableKey, TableVersion } from "./table.ts";

/** An open table and the level the manifest puts it in. */
export interface LevelTable {
  name: string;
  level: number;
  reader: TableReader;
  /** The manifest's soonest expiry of a value in the table (log.ts ManifestTable). */
  expiresAtMs?: number;
}

/** (nsId, key) order. */
export function compareTableKeys(aNs: number, aKey: string, bNs: number, bKey: string): number {
  if (aNs !== bNs) return aNs < bNs ? -1 : 1;
  return aKey < bKey ? -1 : aKey > bKey ? 1 : 0;
}

function keyCmp(k: TableKey, nsId: number, key: string): number {
  return compareTableKeys(k.nsId, k.key, nsId, key);
}

/** True when `t` may hold keys of namespace `nsId` in [start, end) (end undefined: to the namespace's end). */
function overlaps(t: TableReader, nsId: number, start: string, end: string | undefined): boolean {
  const { minKey, maxKey } = t.meta;
  if (!minKey || !maxKey) return false;
  if (keyCmp(maxKey, nsId, start) < 0) return false; // ends before start
  if (end === undefined) return minKey.nsId <= nsId;
  return keyCmp(minKey, nsId, end) < 0; // starts before end
}

/** The tables of one manifest, by level. */
export class Levels {
  readonly #platform: Platform;
  readonly #dir: string;
  readonly #cache: BlockCache;
  /** Level 0, newest first. */
  #l0: LevelTable[] = [];
  /** Levels 1.. (index 0 is level 1), each in key order. */
  #runs: LevelTable[][] = [];
  #byName = new Map<string, LevelTable>();
  /** The largest TSN any table holds (0 with none). */
  maxTsn = 0;

  constructor(platform: Platform, dir: string, cache: BlockCache) {
    this.#platform = platform;
    this.#dir = dir;
    this.#cache = cache;
  }

  /** The process's block cache. */
  get cache(): BlockCache {
    return this.#cache;
  }

  /** True when there are no tables. */
  get empty(): boolean {
    return this.#byName.size === 0;
  }

  /** Every open table: level 0 newest first, then each level in key order. */
  tables(): LevelTable[] {
    return [...this.#l0, ...this.#runs.flat()];
  }

  /**
   * Makes `tables` the open set: opens the ones not open yet, closes the ones no longer
   * named. If a table cannot be opened (missing: a later compaction deleted it; damaged),
   * the tables opened by this call are closed again, the previous set stays, and the error
   * is thrown.
   */
  adopt(tables: readonly ManifestTable[]): void {
    const opened: LevelTable[] = [];
    const next = new Map<string, LevelTable>();
    const l0: LevelTable[] = [];
    const runs: LevelTable[][] = [];
    try {
      for (const t of tables) {
        let lt = this.#byName.get(t.name);
        if (!lt || lt.level !== t.level) {
          const existing = lt;
          if (existing) {
            lt = { ...existing, name: t.name, level: t.level }; // moved to another level: same file
          } else {
            const file = openTable(this.#platform, `${this.#dir}/${t.name}`);
            try {
              // With the manifest's key bounds the open reads the footer only (constant time).
              const bounds = t.min && t.max ? { minKey: { nsId: t.min[0], key: bytesToBinary(t.min[1]) }, maxKey: { nsId: t.max[0], key: bytesToBinary(t.max[1]) } } : undefined;
              // With the manifest's identity, the open also refuses a file copied over the table's name (table.ts rule 9).
              const options = { cache: this.#cache, identity: tableIdentity(t), ...(bounds ? { bounds } : {}) };
              lt = { name: t.name, level: t.level, reader: TableReader.open(file, options), ...(t.expiresAtMs !== undefined ? { expiresAtMs: t.expiresAtMs } : {}) };
            } catch (e) {
              file.close();
              throw e;
            }
            opened.push(lt);
          }
        }
        next.set(t.name, lt);
      }
      for (const t of tables) {
        const lt = next.get(t.name)!;
        if (t.level === 0) {
          l0.push(lt);
        } else {
          while (runs.length < t.level) runs.push([]);
          runs[t.level - 1]!.push(lt);
        }
      }
      for (const run of runs) run.sort((a, b) => compareKeysOrEmpty(a.reader.meta.minKey, b.reader.meta.minKey));
      this.#checkShape(l0, runs);
    } catch (e) {
      for (const t of opened) t.reader.close();
      throw e;
    }
    for (const [name, t] of this.#byName) if (!next.has(name)) t.reader.close();
    this.#byName = next;
    this.#l0 = l0;
    this.#runs = runs;
    this.maxTsn = 0;
    for (const lt of next.values()) if (lt.reader.meta.maxTsn > this.maxTsn) this.maxTsn = lt.reader.meta.maxTsn;
  }

  /**
   * Reads rely on the shape in the module comment: a point read stops at the first table
   * that holds the key, level 0 newest first, and finds a key in a deeper level by binary
   * search over its tables' key bounds. A manifest that lists level 0 in another order, or a
   * level whose tables' key ranges overlap, would make reads return an older version as
   * the newest (and check() agreed with them, reading by the same manifest). Compaction
   * never writes such a manifest; a crafted or miswritten one is CORRUPTION. Checked from
   * the footers (TSNs) and the manifest's key bounds: no block is read.
   */
  #checkShape(l0: LevelTable[], runs: LevelTable[][]): void {
    const manifest = `${this.#dir}/${MANIFEST}`;
    const bad = (what: string) =>
      new TxtDbError("CORRUPTION", `Manifest "${manifest}" lists its tables out of shape: ${what}; reads by it would return older versions as the newest. Restore the manifest from a backup`, {
        details: { file: manifest, offset: 0 },
      });
    // Level 0: of two tables that may share a key, the one listed first holds only newer
    // versions. (One fold larger than a table's target size writes several level-0 tables
    // of the same versions and disjoint keys, in any order.) Pairwise: compaction leaves at
    // most L0_TABLES_MAX (fold.ts) tables in level 0.
    for (let i = 0; i < l0.length; i++) {
      const a = l0[i]!.reader.meta;
      for (let j = i + 1; j < l0.length; j++) {
        const b = l0[j]!.reader.meta;
        if (a.minTsn > b.maxTsn || a.entryCount === 0 || b.entryCount === 0) continue;
        if (compareKeysOrEmpty(a.maxKey, b.minKey) < 0 || compareKeysOrEmpty(b.maxKey, a.minKey) < 0) continue;
        throw bad(`level 0 must list its tables newest first, but "${l0[i]!.name}" (versions ${a.minTsn}..${a.maxTsn}) comes before "${l0[j]!.name}" (versions ${b.minTsn}..${b.maxTsn}) and their keys overlap`);
      }
    }
    runs.forEach((run, i) => {
      let before: LevelTable | undefined;
      for (const t of run) {
        if (!t.reader.meta.minKey) continue;
        if (before && compareKeysOrEmpty(before.reader.meta.maxKey, t.reader.meta.minKey) >= 0) {
          throw bad(`the key ranges of "${before.name}" and "${t.name}" in level ${i + 1} overlap, where a level's tables must be disjoint`);
        }
        before = t;
      }
    });
  }

  /** The table of a sorted run that may hold (nsId, key), or undefined. */
  #inRun(run: LevelTable[], nsId: number, key: string): TableReader | undefined {
    let lo = 0, hi = run.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const maxKey = run[mid]!.reader.meta.maxKey;
      if (!maxKey || keyCmp(maxKey, nsId, key) < 0) lo = mid + 1;
      else hi = mid;
    }
    const t = run[lo]?.reader;
    return t && t.meta.minKey && keyCmp(t.meta.minKey, nsId, key) <= 0 ? t : undefined;
  }

  /**
   * The newest version of (nsId, key) at or below `snap` in the tables (a value, or null
   * for a delete), or undefined when no table holds one.
   */
  get(nsId: number, key: string, snap: number, borrow = false): TableVersion | undefined {
    if (this.#byName.size === 0) return undefined;
    const hash = bloomHash(nsId, key);
    for (const t of this.#l0) {
      if (t.reader.meta.minTsn > snap) continue;
      const v = t.reader.getHashed(nsId, key, hash, snap, borrow);
      if (v) return v;
    }
    for (const run of this.#runs) {
      const t = this.#inRun(run, nsId, key);
      if (!t || t.meta.minTsn > snap) continue;
      const v = t.getHashed(nsId, key, hash, snap, borrow);
      if (v) return v;
    }
    return undefined;
  }

  /**
   * Sources for a range read at `snap`, newest first: each level-0 table, then each level
   * as one stream over its tables in key (or reverse key) order. Keys in [start, end)
   * (end undefined: to the namespace's end).
   */
  rangeSources(nsId: number, start: string, end: string | undefined, snap: number, reverse: boolean, fillCache = true): Iterable<TableEntry>[] {
    const out: Iterable<TableEntry>[] = [];
    for (const t of this.#l0) {
      if (t.reader.meta.minTsn > snap || !overlaps(t.reader, nsId, start, end)) continue;
      out.push(t.reader.range(nsId, start, end, snap, { reverse, fillCache }));
    }
    for (const run of this.#runs) {
      const hit = run.filter((t) => t.reader.meta.minTsn <= snap && overlaps(t.reader, nsId, start, end)).map((t) => t.reader);
      if (hit.length === 0) continue;
      if (reverse) hit.reverse();
      out.push(hit.length === 1 ? hit[0]!.range(nsId, start, end, snap, { reverse, fillCache }) : chain(hit, nsId, start, end, snap, reverse, fillCache));
    }
    return out;
  }

  /**
   * The tables a range read at `snap` of [start, end) must read when they form one source
   * of {@link rangeSources} (one level-0 table, or one level's tables, which are disjoint),
   * in key order; undefined when there are several sources to merge.
   */
  singleSource(nsId: number, start: string, end: string | undefined, snap: number): TableReader[] | undefined {
    let found: TableReader[] | undefined;
    for (const t of this.#l0) {
      if (t.reader.meta.minTsn > snap || !overlaps(t.reader, nsId, start, end)) continue;
      if (found !== undefined) return undefined;
      found = [t.reader];
    }
    for (const run of this.#runs) {
      let hit: TableReader[] | undefined;
      for (const t of run) {
        if (t.reader.meta.minTsn > snap || !overlaps(t.reader, nsId, start, end)) continue;
        if (hit === undefined) {
          if (found !== undefined) return undefined;
          found = hit = [];
        }
        hit.push(t.reader);
      }
    }
    return found ?? [];
  }

  /**
   * How many keys of [start, end) have a newest version at or below `snap` in the tables
   * that is neither a delete nor expired at `nowMs`, when no two tables that may answer
   * share a key (a key's versions then all lie in one table, as after compactions of keys
   * written in order, or in one level's disjoint tables): the sum of their counts.
   * Undefined when two of them overlap; the caller merges then.
   */
  countRange(nsId: number, start: string, end: string | undefined, snap: number, nowMs: number, onExpiring?: (key: string, tsn: number, value: Uint8Array) => void): number | undefined {
    const tables: TableReader[] = [];
    for (const t of this.#l0) if (t.reader.meta.minTsn <= snap && overlaps(t.reader, nsId, start, end)) tables.push(t.reader);
    for (const run of this.#runs) for (const t of run) if (t.reader.meta.minTsn <= snap && overlaps(t.reader, nsId, start, end)) tables.push(t.reader);
    tables.sort((a, b) => compareKeysOrEmpty(a.meta.minKey, b.meta.minKey));
    for (let i = 1; i < tables.length; i++) {
      if (compareKeysOrEmpty(tables[i - 1]!.meta.maxKey, tables[i]!.meta.minKey) >= 0) return undefined;
    }
    let n = 0;
    for (const t of tables) n += t.countRange(nsId, start, end, snap, nowMs, onExpiring);
    return n;
  }

  /**
   * A key in [start, end) of namespace `nsId` whose newest version in the tables is newer
   * than `afterTsn` (a value or a delete), or undefined. Tables holding nothing newer than
   * `afterTsn` are not read.
   */
  changedInRange(nsId: number, start: string, end: string | undefined, afterTsn: number): { key: string; tsn: number } | undefined {
    if (this.maxTsn <= afterTsn) return undefined;
    for (const t of this.tables()) {
      if (t.reader.meta.maxTsn <= afterTsn || !overlaps(t.reader, nsId, start, end)) continue;
      for (const e of t.reader.range(nsId, start, end, Number.MAX_SAFE_INTEGER, { fillCache: false })) {
        if (e.tsn > afterTsn) return { key: e.key, tsn: e.tsn };
      }
    }
    return undefined;
  }

  /** Bytes of table files by level (index = level). */
  bytesByLevel(): number[] {
    const out: number[] = [];
    for (const t of this.#byName.values()) out[t.level] = (out[t.level] ?? 0) + t.reader.meta.fileBytes;
    for (let i = 0; i < out.length; i++) out[i] ??= 0;
    return out;
  }

  /** Bytes the open tables keep in memory outside the cache (filters and indexes). */
  residentBytes(): number {
    let n = 0;
    for (const t of this.#byName.values()) n += t.reader.residentBytes;
    return n;
  }

  /** Closes every table. */
  close(): void {
    for (const t of this.#byName.values()) t.reader.close();
    this.#byName.clear();
    this.#l0 = [];
    this.#runs = [];
    this.maxTsn = 0;
  }
}

/**
 * Opens a table the manifest names, read-only. The port's errors become TxtDbErrors naming
 * the file, since every read of the store can meet them: a symlink, FIFO or directory in
 * its place is CORRUPTION (dirsafety.ts), and so is a missing table (a later compaction may
 * have deleted it meanwhile: callers read the manifest again and retry while it moves, so
 * only a table missing from the manifest that stays is reported); any other failure is IO.
 */
function openTable(platform: Platform, path: string): FileHandle {
  try {
    return platform.open(path, { readOnly: true });
  } catch (e) {
    const planted = storeFileError(e, path);
    if (planted) throw planted;
    if (e instanceof PortError && e.errno === "ENOENT") {
      throw new TxtDbError("CORRUPTION", `Table "${path}", which the manifest names, is missing. Run \`txtdb check\`; restore the store from a backup`, {
        cause: e,
        details: { file: path, offset: 0 },
      });
    }
    if (e instanceof PortError) throw new TxtDbError("IO", `Opening table "${path}" failed: ${e.message}`, { cause: e, details: { file: path, offset: 0 } });
    throw e;
  }
}

function compareKeysOrEmpty(a: TableKey | undefined, b: TableKey | undefined): number {
  if (!a || !b) return a ? 1 : b ? -1 : 0;
  return compareTableKeys(a.nsId, a.key, b.nsId, b.key);
}

/** One level's tables read one after another (they are disjoint and in order). */
function* chain(tables: TableReader[], nsId: number, start: string, end: string | undefined, snap: number, reverse: boolean, fillCache: boolean): Generator<TableEntry, void, undefined> {
  for (const t of tables) yield* t.range(nsId, start, end, snap, { reverse, fillCache });
}
