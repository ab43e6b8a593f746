/**
 * Writing tables for compaction (format 2): the fold of the log into a new level-0 table,
 * and the merges that keep the levels in shape, so that a compaction costs in proportion
 * to the data it adds, not to the whole store (leveled, as LevelDB and Pebble).
 *
 * Rules, in the order {@link writeTables} carries them out:
 *
 * 1. The fold: for each key written in (F_old, F_new], the newest version at or below
 *    F_new, deletes included (they hide older versions in deeper tables), goes into one
 *    new level-0 table, newest first in level 0. A delete is left out when no table exists
 *    yet (nothing below it to hide). Every live pin is at or above F_new (compaction folds
 *    no further), so no older version of the fold can be read by anyone.
 * 2. Level 0 holds at most {@link L0_TABLES_MAX} tables; past that (or whenever `compact()`
 *    is called explicitly, so that superseded versions go at once), all of them and the
 *    level-1 tables their keys overlap merge into new level-1 tables.
 * 2a. The level-1 tables just before and just after level 0's key span join that merge
 *    when smaller than {@link SMALL_TABLE_BYTES}, so that level 0 holding keys past every
 *    level-1 table's does not add a small table to level 1 at each merge.
 * 3. Level n ≥ 1 holds at most {@link L1_BYTES_MAX} × 10^(n−1) bytes; past that, its
 *    oldest table (lowest number) and the level-(n+1) tables it overlaps merge into new
 *    level-(n+1) tables. Each merge rewrites one table plus ~10 below it: write
 *    amplification grows with the number of levels, not with the store.
 * 4. A merge keeps, for each key, its newest version (merge.ts, rules R1–R5 with the single
 *    pin F_new); a delete is dropped when the merge writes the deepest level holding data
 *    (nothing older is left to hide), and so is every version in a namespace id no name is
 *    bound to at F_new (dropped namespaces).
 * 4a. An expired version (expiry.ts, rule 5) enters the fold and every merge as a delete of
 *    the same version, so rules 1 and 4 keep it where it hides an older version and drop it
 *    where nothing is left to hide: compaction reclaims expired keys as it rewrites them.
 * 4b. Each table records the soonest expiry of a value it holds (the manifest's
 *    `expiresAtMs`). Once that has passed, a compaction rewrites the table even with nothing
 *    new to fold (level 0 into level 1, a deeper table in place), so expired keys are
 *    reclaimed where no new data would reach them; the rewritten table's soonest expiry is
 *    the next one, so nothing is rewritten twice for the same expiry.
 * 5. Output tables close at {@link TABLE_BYTES_TARGET} and only between keys, so all
 *    versions of one key stay in one table (levels.ts relies on it).
 * 6. Each table is written under a temporary name into a fresh file (created exclusively,
 *    a leftover or a planted link removed first), fdatasynced, renamed to its final name;
 *    the directory is synced once all are written. None is part of the store until a
 *    manifest names it (compact.ts); until then, a crash leaves files cleanup removes.
 *    Each is reopened with the identity its writer returned (size, footer and content
 *    checksums, table.ts rule 9), which the manifest then records, so the file under its
 *    name is the one written, and every later open and check can tell another from it.
 * 7. Before each file is created, renamed into place or deleted, the compaction checks that
 *    it still holds `compact.lock` (the lock file may have been deleted under it, and
 *    another compaction then holds a lock on a new one, picking the same table names); it
 *    records which file it wrote under each name, and deletes a name only while the name
 *    still leads to that file. A compaction that lost its lock stops and deletes nothing.
 *
 * @module
 */
import { removeUnnamed, tableName } from "./files.ts";
import { binaryToBytes } from "./keys.ts";
import type { ManifestTable } from "./log.ts";
import { LEVELS_MAX } from "./log.ts";
import { mergeForCompaction } from "./merge.ts";
import { pathNamesFile, PortError } from "./port.ts";
import { TxtDbError } from "./errors.ts";
import type { Platform } from "./port.ts";
import { BlockCache } from "./blockcache.ts";
import { TableReader, TableWriter } from "./table.ts";
import type { TableEntry, TableKey } from "./table.ts";
import { compareTableKeys } from "./levels.ts";
import { expiresAtOf, isExpiring, reclaimExpired } from "./expiry.ts";
import type { LevelTable } from "./levels.ts";

/** Level 0 merges into level 1 past this many tables (rule 2). */
export const L0_TABLES_MAX = 4;
/** Level 1's size bound; each deeper level holds 10× the one above (rule 3). */
export const L1_BYTES_MAX = 64 * 2 ** 20;
/** Output tables close past this size (rule 5). */
export const TABLE_BYTES_TARGET = 32 * 2 ** 20;
/** A level-1 table next to level 0's keys is merged with it below this size (rule 2a). */
export const SMALL_TABLE_BYTES = TABLE_BYTES_TARGET / 4;

/** What a compaction starts from. */
export interface FoldInput {
  platform: Platform;
  dir: string;
  mode: number;
  /** The tables of the manifest planned against, open. */
  tables: LevelTable[];
  /** The fold's entries in table order (rule 1, already filtered to bound namespaces). */
  fold: Iterable<TableEntry>;
  /** F_new: the version the new state holds. */
  foldedTsn: number;
  /** Namespace ids bound at F_new; versions of any other are dropped (rule 4). */
  liveNsIds: ReadonlySet<number>;
  /** The number of the first new table's name. */
  nextTable: number;
  /** The level the fold's tables go to: 0 (a compaction) or 1 (a format upgrade: one sorted run). */
  foldLevel?: 0 | 1;
  /** Merge level 0 into level 1 whatever its size (an explicit `compact()`: rule 2). */
  mergeLevel0?: boolean;
  /** The wall clock (ms since the epoch) versions count as expired at (rule 4a); none if omitted. */
  expiredAtMs?: number;
  /**
   * Throws when this compaction lost `compact.lock` (rule 7); asked before each file is
   * created, renamed into place or deleted.
   */
  checkLock?: () => void;
}

/** What a compaction wrote. */
export interface FoldOutput {
  /** The new table list, for the manifest. */
  tables: ManifestTable[];
  /** The next number for a table name. */
  nextTable: number;
  /** Names of the new files (deleted again if the manifest is not switched). */
  written: string[];
  /** Tables of the input no longer in the list (deleted after the switch). */
  replaced: string[];
  /** Bytes of table files written. */
  bytesWritten: number;
  /** The file each name of `written` was written to (rule 7). */
  identities: Map<string, { ino: number; dev: number }>;
}

interface Slot {
  name: string;
  level: number;
  reader: TableReader;
  /** Opened here (a new table): closed at the end. */
  own: boolean;
  /** The soonest expiry of a value in the table (rule 4b); undefined: none, or not recorded. */
  expiresAtMs?: number;
}

/**
 * Rule 7: deletes those of `names` a compaction wrote, only while it still holds its lock
 * (`checkLock` does not throw) and only where the name still leads to the file it wrote
 * (`identities`). Best effort: what is left, cleanup at a later open removes.
 */
export function removeOwnTables(platform: Platform, dir: string, names: readonly string[], identities: ReadonlyMap<string, { ino: number; dev: number }>, checkLock: () => void): void {
  try {
    checkLock();
  } catch {
    return; // lost the lock: nothing is deleted
  }
  removeUnnamed(platform, dir, names.filter((n) => pathNamesFile(platform, `${dir}/${n}`, identities.get(n))));
}

/** Rules 1–7: writes the fold and whatever merges the levels need. */
export function writeTables(input: FoldInput): FoldOutput {
  const { platform, dir, mode } = input;
  const cache = new BlockCache(0); // compaction reads every block once: no cache
  let next = input.nextTable;
  const written: string[] = [];
  const identities = new Map<string, { ino: number; dev: number }>();
  const replaced: string[] = [];
  const checkLock = input.checkLock ?? (() => {});
  const removeOwn = (names: readonly string[]) => removeOwnTables(platform, dir, names, identities, checkLock);
  let bytesWritten = 0;
  let slots: Slot[] = input.tables.map((t) => ({ name: t.name, level: t.level, reader: t.reader, own: false, ...(t.expiresAtMs !== undefined ? { expiresAtMs: t.expiresAtMs } : {}) }));
  const newSlots: Slot[] = [];

  /** Writes entries into tables of `level`, split at TABLE_BYTES_TARGET between keys (rules 5, 6). */
  const writeRun = (entries: Iterable<TableEntry>, level: number): Slot[] => {
    const out: Slot[] = [];
    let w: { writer: TableWriter; name: string; tmp: string; file: ReturnType<Platform["open"]>; expiresAtMs: number } | undefined;
    const close = () => {
      if (!w) return;
      const meta = w.writer.finish();
      w.file.datasync();
      const id = typeof w.file.info === "function" ? w.file.info() : undefined;
      w.file.close();
      checkLock();
      try {
        platform.rename(w.tmp, `${dir}/${w.name}`);
      } catch (e) {
        throw plantedDirectory(e, `${dir}/${w.name}`);
      }
      written.push(w.name);
      if (id) identities.set(w.name, { ino: id.ino, dev: id.dev });
      bytesWritten += meta.fileBytes;
      const file = platform.open(`${dir}/${w.name}`, { readOnly: true });
      // With the identity the writer returned (table.ts rule 9): the file renamed into place is the one written.
      const identity = { bytes: meta.fileBytes, footerSum: meta.footerSum, ...(meta.contentSum !== undefined ? { contentSum: meta.contentSum } : {}) };
      const slot: Slot = { name: w.name, level, reader: TableReader.open(file, { cache, identity }), own: true, ...(w.expiresAtMs < Infinity ? { expiresAtMs: w.expiresAtMs } : {}) };
      out.push(slot);
      newSlots.push(slot);
      w = undefined;
    };
    let prevNs = -1, prevKey = "";
    try {
      for (const e of entries) {
        if (w && w.writer.bytesWritten >= TABLE_BYTES_TARGET && (e.nsId !== prevNs || e.key !== prevKey)) close();
        if (!w) {
          const name = tableName(next++);
          const tmp = `${dir}/${name}.tmp`;
          checkLock();
          try {
            platform.unlink(tmp); // a leftover, or a planted link: removed, never written through
          } catch (e) {
            throw plantedDirectory(e, tmp);
          }
          const file = platform.open(tmp, { create: true, exclusive: true, mode });
          w = { writer: new TableWriter(file), name, tmp, file, expiresAtMs: Infinity };
        }
        w.writer.add(e.nsId, e.key, e.tsn, e.value);
        if (e.value !== null && isExpiring(e.value)) {
          const at = expiresAtOf(e.value);
          if (at < w.expiresAtMs) w.expiresAtMs = at; // NaN (a malformed envelope) never counts
        }
        prevNs = e.nsId;
        prevKey = e.key;
      }
      close();
    } catch (e) {
      if (w) {
        try {
          w.file.close();
          checkLock();
          platform.unlink(w.tmp);
        } catch {
          // cleanup at the next open removes it
        }
      }
      throw e;
    }
    return out;
  };

  const live = (e: TableEntry) => input.liveNsIds.has(e.nsId);
  const nowMs = input.expiredAtMs;
  const reclaim = (src: Iterable<TableEntry>): Iterable<TableEntry> => nowMs === undefined ? src : reclaimExpired(src, nowMs);
  const filtered = function* (src: Iterable<TableEntry>): Generator<TableEntry> {
    for (const e of src) if (live(e)) yield e;
  };

  try {
    // Rule 1: the fold.
    const noTables = slots.length === 0;
    const fold = reclaim(input.fold);
    const foldSrc = noTables ? (function* () {
      for (const e of fold) if (e.value !== null) yield e;
    })() : fold;
    const l0 = writeRun(foldSrc, input.foldLevel ?? 0);
    slots = [...l0, ...slots];

    // Rule 2: level 0 into level 1 (also when one of its tables holds an expiry that has
    // passed, rule 4b: level 0's tables are merged together since their order matters).
    const due = (s: Slot) => nowMs !== undefined && s.expiresAtMs !== undefined && s.expiresAtMs <= nowMs;
    const level0 = slots.filter((s) => s.level === 0);
    if (level0.length > L0_TABLES_MAX || (input.mergeLevel0 === true && level0.length > 0) || level0.some(due)) {
      const range = spanOf(level0);
      const below = slots.filter((s) => s.level === 1 && overlapsSpan(s, range));
      // Rule 2a: and the level-1 tables just before and just after that span, when small.
      // Level 0 overlapping no level-1 table (keys that only grow: times, counters; or a
      // compact() after each batch) went into level 1 as a table of its own, so every
      // explicit compact() added a table, however small, and none was ever merged again:
      // tables grew with the number of compactions, not the data (60 compactions, 60
      // tables of 50 keys), each an open file in every process, until opens failed with
      // EMFILE. Pulled in, a small neighbour grows until it is no longer small.
      if (range) {
        const run = slots.filter((s) => s.level === 1 && !below.includes(s));
        let before: Slot | undefined, after: Slot | undefined;
        for (const s of run) {
          const min = s.reader.meta.minKey, max = s.reader.meta.maxKey;
          if (!min || !max) continue;
          if (compareTableKeys(max.nsId, max.key, range.min.nsId, range.min.key) < 0) {
            if (!before || compareSpanStart(s, before) > 0) before = s;
          } else if (compareTableKeys(min.nsId, min.key, range.max.nsId, range.max.key) > 0) {
            if (!after || compareSpanStart(s, after) < 0) after = s;
          }
        }
        for (const s of [before, after]) if (s && s.reader.meta.fileBytes < SMALL_TABLE_BYTES) below.push(s);
      }
      const inputs = [...level0, ...below];
      const bottom = !slots.some((s) => s.level > 1);
      slots = mergeInto(slots, inputs, 1, bottom);
    }
    // Rule 3: each level over its bound pushes its oldest table down.
    for (let level = 1; level < LEVELS_MAX; level++) {
      const bound = L1_BYTES_MAX * 10 ** (level - 1);
      for (;;) {
        const here = slots.filter((s) => s.level === level);
        const bytes = here.reduce((n, s) => n + s.reader.meta.fileBytes, 0);
        if (bytes <= bound || here.length === 0) break;
        const oldest = here.reduce((a, b) => (a.name < b.name ? a : b));
        const range = spanOf([oldest]);
        const below = slots.filter((s) => s.level === level + 1 && overlapsSpan(s, range));
        const bottom = !slots.some((s) => s.level > level + 1);
        slots = mergeInto(slots, [oldest, ...below], level + 1, bottom);
      }
    }
    // Rule 4b: a deeper table holding a value whose expiry has passed is rewritten in place,
    // so that compaction reclaims expired keys where no new data reaches them, dropping what
    // nothing deeper needs hidden (level 0 went into level 1 by rule 2). A rewritten table's
    // soonest expiry is in the future (expired values became deletes, rule 4a), so none is
    // rewritten twice.
    for (let level = 1; level < LEVELS_MAX; level++) {
      for (;;) {
        const table = slots.find((s) => s.level === level && due(s));
        if (!table) break;
        const span = spanOf([table]);
        slots = mergeInto(slots, [table], level, !slots.some((s) => s.level > level && overlapsSpan(s, span)));
      }
    }
    if (written.length > 0) platform.syncDir(dir);
  } catch (e) {
    for (const s of newSlots) s.reader.close();
    removeOwn(written);
    throw e;
  }
  for (const s of newSlots) s.reader.close();
  const finalNames = new Set(slots.map((s) => s.name));
  for (const t of input.tables) if (!finalNames.has(t.name)) replaced.push(t.name);
  // New tables that a later merge already consumed were never named: delete them now.
  removeOwn(written.filter((n) => !finalNames.has(n)));
  const level0 = slots.filter((s) => s.level === 0); // newest first, as built
  const deeper = slots.filter((s) => s.level > 0).sort((a, b) => a.level - b.level || compareSpanStart(a, b));
  return {
    tables: [...level0, ...deeper].map((s) => manifestEntry(s.name, s.level, s.reader, s.expiresAtMs)),
    nextTable: next,
    written: written.filter((n) => finalNames.has(n)),
    replaced,
    bytesWritten,
    identities,
  };

  /** Merges `inputs` (newest first) into new tables of `level`; returns the new slot list. */
  function mergeInto(all: Slot[], inputs: Slot[], level: number, bottom: boolean): Slot[] {
    // Sources newest first: level 0 in its order, then shallower levels before deeper.
    const ordered = [...inputs].sort((a, b) => a.level - b.level);
    const merged = mergeForCompaction(ordered.map((s) => reclaim(s.reader.entries())), { pins: [input.foldedTsn], bottomLevel: bottom });
    const out = writeRun(filtered(merged), level);
    const gone = new Set(inputs.map((s) => s.name));
    return [...all.filter((s) => !gone.has(s.name)), ...out];
  }
}

/**
 * A directory where a table or its temporary file goes (the next table name: someone put
 * it there) fails the compaction with CORRUPTION naming it and saying what to do, as an
 * open does. It used to be IO "rename failed on \"….sst.tmp\": EISDIR", naming the file
 * compaction had just written and not the one in its way, and every compaction, automatic
 * ones silently, failed the same way while the log grew.
 */
function plantedDirectory(e: unknown, path: string): unknown {
  // EISDIR on Linux; Deno removes an empty directory as unlink, and says ENOTEMPTY of another.
  if (!(e instanceof PortError) || (e.errno !== "EISDIR" && e.errno !== "ENOTEMPTY")) return e;
  return new TxtDbError("CORRUPTION", `Store file "${path}" is a directory, where txtdb only ever puts a regular file; someone else put it there. Compaction writes a table under that name and cannot until it is removed: remove it (and check who can write the directory), then compact again. Nothing was switched`, {
    cause: e,
    details: { file: path, offset: 0 },
  });
}

interface Span {
  min: TableKey;
  max: TableKey;
}

function spanOf(slots: Slot[]): Span | undefined {
  let min: TableKey | undefined, max: TableKey | undefined;
  for (const s of slots) {
    const a = s.reader.meta.minKey, b = s.reader.meta.maxKey;
    if (!a || !b) continue;
    if (!min || compareTableKeys(a.nsId, a.key, min.nsId, min.key) < 0) min = a;
    if (!max || compareTableKeys(b.nsId, b.key, max.nsId, max.key) > 0) max = b;
  }
  return min && max ? { min, max } : undefined;
}

function overlapsSpan(s: Slot, span: Span | undefined): boolean {
  const a = s.reader.meta.minKey, b = s.reader.meta.maxKey;
  if (!span || !a || !b) return false;
  return compareTableKeys(b.nsId, b.key, span.min.nsId, span.min.key) >= 0 && compareTableKeys(a.nsId, a.key, span.max.nsId, span.max.key) <= 0;
}

function compareSpanStart(a: Slot, b: Slot): number {
  const x = a.reader.meta.minKey, y = b.reader.meta.minKey;
  if (!x || !y) return x ? 1 : y ? -1 : 0;
  return compareTableKeys(x.nsId, x.key, y.nsId, y.key);
}

/**
 * A table as the manifest lists it: name, level, key bounds and identity (log.ts). The
 * identity is what the reader was opened with or found: the writer's for a new table, the
 * manifest's for one carried over; the content checksum of a table carried over from a
 * manifest that did not record it stays unknown (only a full read would give it).
 */
export function manifestEntry(name: string, level: number, reader: TableReader, expiresAtMs?: number): ManifestTable {
  const { minKey, maxKey, fileBytes, footerSum, contentSum } = reader.meta;
  const extra = { ...(expiresAtMs !== undefined ? { expiresAtMs } : {}), bytes: fileBytes, footerSum, ...(contentSum !== undefined ? { contentSum } : {}) };
  if (!minKey || !maxKey) return { name, level, ...extra };
  return { name, level, min: [minKey.nsId, binaryToBytes(minKey.key)], max: [maxKey.nsId, binaryToBytes(maxKey.key)], ...extra };
}
