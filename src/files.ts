/**
 * The names of the files txtdb writes in a store directory, in one place, and how a
 * failed file operation is reported.
 *
 * ```
 * MANIFEST               frame(CBOR {format, createdAtMs, checkpoint, ...}); replaced atomically
 * MANIFEST.tmp           the next manifest while it is written (renamed over MANIFEST)
 * seg-0000000001.log     append-only frames; a new segment starts past `segmentBytes`
 * ckpt-<16 digits>-<n>.dat   format 1: a compaction's checkpoint (`.tmp` while it is written)
 * tbl-<16 digits>.sst    format 2: a sorted table (table.ts; `.tmp` while it is written)
 * frontier               36 bytes: what readers may see, and what is known durable; then
 *                        the tail state (the log's end, a repair epoch, a sync-failure mark)
 * writer.lock            flock: held exclusively by the one process appending
 * mirror.lock            flock: held while a process attaches the frontier mirror; its first
 *                        8 bytes name the segment (a hint; mirror.ts)
 * readers.lock           flock: held shared by each process reading through the frontier mirror
 * leases/                one locked file per live process (liveness, pins)
 * leases/<id>.lockowner  one locked file per owner of locks on named resources, for its life,
 *                        outside locks/: its liveness and registration (locks.ts, rule 7)
 * locks/table            the table of locks on named resources (two checksummed slots)
 * locks/<id>.lease       one locked file per Database handle that took such a lock (its owner);
 *                        at 4 KiB, the grants it holds (locks.ts: the table rebuilt from them)
 * ```
 *
 * @module
 */
import { TxtDbError } from "./errors.ts";
import { PortError } from "./port.ts";
import type { Platform } from "./port.ts";

/** The manifest: which checkpoint and segments make up the store. */
export const MANIFEST = "MANIFEST";
/** The next manifest while it is written. */
export const MANIFEST_TMP = "MANIFEST.tmp";
/**
 * The first file a backup creates and the last it removes (backup.ts rule 5): a name no
 * store has, so a directory holding it is an unfinished copy, never opened as a store.
 */
export const BACKUP_UNFINISHED = "BACKUP-UNFINISHED";
/** The published frontier of the log. */
export const FRONTIER = "frontier";
/** Size of the `frontier` file (see log.ts). */
export const FRONTIER_FILE_BYTES = 36;
/** The writer lock (and the holder record at its start; see holder.ts). */
export const WRITER_LOCK = "writer.lock";
/** Held (flock) while a process attaches the frontier mirror; names its segment (mirror.ts). */
export const MIRROR_LOCK = "mirror.lock";
/** Held shared (flock) by each process reading through the frontier mirror (mirror.ts rule 3). */
export const READERS_LOCK = "readers.lock";
/** Held (flock) by the one process compacting, so compactions never run twice at once. */
export const COMPACT_LOCK = "compact.lock";
/** The directory of lease files (see liveness.ts). */
export const LEASES_DIR = "leases";
/** The directory of locks on named resources: the lock table and the lock owners' leases (locks.ts). */
export const LOCKS_DIR = "locks";
/** The lock table in {@link LOCKS_DIR} (two slots; see locktable.ts). */
export const LOCK_TABLE = "table";
/** The suffix of a lock owner's mark in {@link LEASES_DIR}: `<id>.lockowner`, flock'd for the owner's life (locks.ts, rule 7). */
export const LOCK_OWNER_MARK = ".lockowner";

/** Log segment names: `seg-` and the segment number in 10 digits. */
export const SEGMENT_FILE = /^seg-(\d{10})\.log$/;
/** Checkpoint file names exactly as compaction writes them. */
export const CHECKPOINT_FILE = /^ckpt-\d{16}(?:-\d+)?\.dat$/;
/** A checkpoint being written. */
export const CHECKPOINT_TMP_FILE = /^ckpt-\d{16}(?:-\d+)?\.dat\.tmp$/;
/** The prefix of every checkpoint name, written or being written. */
export const CHECKPOINT_PREFIX = "ckpt-";

/** Table file names exactly as compaction writes them (the group is the table's number). */
export const TABLE_FILE = /^tbl-(\d{16})\.sst$/;
/** A table being written. */
export const TABLE_TMP_FILE = /^tbl-\d{16}\.sst\.tmp$/;
/** The prefix of every table name, written or being written. */
export const TABLE_PREFIX = "tbl-";

/** The first table number 16 digits cannot hold: {@link tableName} of it is no table's name. */
export const TABLE_NUMBER_END = 10 ** 16;

/** The name of table number `n`. */
export function tableName(n: number): string {
  return `tbl-${String(n).padStart(16, "0")}.sst`;
}

/** The number of a table file, or undefined if `name` is not one. */
export function parseTableName(name: string): number | undefined {
  const m = TABLE_FILE.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** The name of log segment `n`. */
export function segmentName(n: number): string {
  return `seg-${String(n).padStart(10, "0")}.log`;
}

/** The number of a segment file, or undefined if `name` is not one. */
export function parseSegmentName(name: string): number | undefined {
  const m = SEGMENT_FILE.exec(name);
  return m ? Number(m[1]) : undefined;
}

/**
 * The last segment of the log that starts at segment `first`: the log runs from it, each
 * segment the next number, up to the first number missing among `present` (as repair and
 * catch-up read it); a segment file past a gap is no part of it. `first - 1` if `first`
 * itself is missing.
 */
export function lastLogSegment(first: number, present: ReadonlySet<number>): number {
  let n = first - 1;
  while (present.has(n + 1)) n++;
  return n;
}

/**
 * True for a name txtdb writes at the top of a store directory (not `leases/`): what a
 * planted link or non-regular file must never stand in for (see dirsafety.ts).
 */
export function isStoreFileName(name: string): boolean {
  return name === MANIFEST || name === MANIFEST_TMP || name === FRONTIER || name === WRITER_LOCK || name === COMPACT_LOCK || name === MIRROR_LOCK || name === READERS_LOCK || SEGMENT_FILE.test(name) || name.startsWith(CHECKPOINT_PREFIX) || name.startsWith(TABLE_PREFIX);
}

/** A port failure as an IO error saying what was attempted; anything else unchanged. */
export function ioError(e: unknown, what: string): unknown {
  if (e instanceof PortError) return new TxtDbError("IO", `${what} failed: ${e.message}`, { cause: e });
  return e;
}

/**
 * Deletes files in `dir` that a failed or finished compaction or format change wrote but
 * no manifest names. A deletion that fails leaves the file to cleanup at the next open
 * (compact.ts, cleanup rule 3), so it is not an error.
 */
export function removeUnnamed(platform: Platform, dir: string, names: Iterable<string>): void {
  for (const name of names) {
    try {
      platform.unlink(`${dir}/${name}`);
    } catch {
      // cleanup at the next open removes it
    }
  }
}
