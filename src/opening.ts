/**
 * What open() checks before it trusts a directory or a manifest, so that nothing is ever
 * deleted or written on the word of files that do not agree: a directory with no MANIFEST
 * becomes a store only if it is empty or holds what an interrupted creation leaves; a
 * manifest must name files that exist; a newer format is refused.
 *
 * @module
 */
import { TxtDbError } from "./errors.ts";
import { BACKUP_UNFINISHED, CHECKPOINT_FILE, COMPACT_LOCK, TABLE_FILE, FRONTIER, FRONTIER_FILE_BYTES, LEASES_DIR, MANIFEST, MANIFEST_TMP, parseSegmentName, segmentName, WRITER_LOCK, ioError } from "./files.ts";
import { FORMAT_CHECKPOINT, FORMAT_READABLE_MAX } from "./log.ts";
import type { Log, Manifest } from "./log.ts";
import { invalidArg } from "./options.ts";
import type { Platform } from "./port.ts";
import { PortError } from "./port.ts";
import { FRAME_MAGIC } from "./record.ts";
import { HOLDER_RECORD_BYTES } from "./holder.ts";

/** FORMAT if the store was written by a newer txtdb. */
export function checkFormat(path: string, format: number): void {
  if (format > FORMAT_READABLE_MAX) {
    throw new TxtDbError("FORMAT", `Store "${path}" has format version ${format}; this txtdb reads up to ${FORMAT_READABLE_MAX}. Upgrade txtdb to open it`, {
      details: { format, supported: FORMAT_READABLE_MAX },
    });
  }
}

/** Errors of a read that say nothing about the file read (tried again, they may pass). */
const TRANSIENT_ERRNOS: ReadonlySet<string> = new Set(["EIO", "EMFILE", "ENFILE", "ENOMEM", "EINTR", "EAGAIN", "EBUSY"]);

/**
 * With no MANIFEST, a directory may become a store only if it is empty or holds exactly
 * what an interrupted creation leaves (`writer.lock`, `frontier` at version 0, an empty
 * first segment, `MANIFEST.tmp`). A directory with other files is not ours: refused, and
 * nothing in it is touched. One with store files but no manifest is a damaged store:
 * CORRUPTION, never a fresh store over the old data. `thorough` also reads the files
 * (under the writer lock, when they can no longer change).
 */
export function checkCreatable(platform: Platform, path: string, log: Log, thorough: boolean): void {
  let names: string[];
  try {
    names = platform.readdir(path);
  } catch (e) {
    throw ioError(e, `Reading the store directory "${path}"`);
  }
  // A backup's copy never holds the files of a running store (leases, lock files): with
  // them, a stray marker says nothing, and the store is judged on its files as any other.
  if (names.includes(BACKUP_UNFINISHED) && !names.some((n) => n === LEASES_DIR || n === COMPACT_LOCK || n === WRITER_LOCK)) {
    // Whatever else the copy holds (tables, segments): it was never whole.
    throw new TxtDbError("INVALID_ARGUMENT", `Directory "${path}" holds an unfinished backup (its "${BACKUP_UNFINISHED}" marker is still there: the backup was interrupted before it completed), not a store. Nothing was changed; delete the directory and back up again`, {
      details: { interruptedBackup: true, path },
    });
  }
  // A file counts as the store's only with its exact name and the start txtdb writes.
  const head = (name: string): Uint8Array | undefined => {
    try {
      const info = platform.lstat(`${path}/${name}`); // never judge a file by a link's target
      if (!info?.isFile) return undefined;
      const f = platform.open(`${path}/${name}`, { readOnly: true });
      try {
        const buf = new Uint8Array(Math.min(info.size, HOLDER_RECORD_BYTES));
        return buf.subarray(0, f.read(buf, 0));
      } finally {
        f.close();
      }
    } catch (e) {
      // A read that failed for a passing reason (EIO, no descriptor left) says nothing about
      // what the file is: IO, not "not a txtdb store". A file gone meanwhile or not ours to
      // read (EACCES: another user's) is judged as no file of the store.
      if (e instanceof PortError && TRANSIENT_ERRNOS.has(e.errno)) throw ioError(e, `Reading "${path}/${name}"`);
      return undefined;
    }
  };
  const framed = (name: string) => head(name)?.[0] === FRAME_MAGIC;
  const storeLike = names.filter((n) =>
    n === MANIFEST || n === LEASES_DIR || n === COMPACT_LOCK || ((parseSegmentName(n) ?? 0) >= 1 && framed(n)) || (CHECKPOINT_FILE.test(n) && framed(n)) || TABLE_FILE.test(n)
  );
  const leftover = (n: string): boolean => {
    const bytes = head(n);
    if (!bytes) return false;
    if (n === segmentName(1)) return bytes.every((b) => b === 0) || bytes[0] === FRAME_MAGIC; // data is judged below
    // A frontier torn by a power loss during creation is shorter than a whole one.
    if (n === FRONTIER) return (platform.lstat(`${path}/${n}`)?.size ?? Infinity) <= FRONTIER_FILE_BYTES;
    if (n === WRITER_LOCK) return bytes.length === 0 || bytes[0] === 0x7b; // empty, or a holder record ("{")
    if (n === MANIFEST_TMP) return bytes.length === 0 || bytes[0] === FRAME_MAGIC;
    return false;
  };
  const foreign = names.filter((n) => !storeLike.includes(n) && !leftover(n));
  const damaged = (what: string) =>
    new TxtDbError("CORRUPTION", `Store "${path}" has no MANIFEST but ${what}: it was a store whose manifest is lost. Nothing was changed; restore MANIFEST (or the whole directory) from a backup`, {
      details: { file: `${path}/${MANIFEST}`, offset: 0 },
    });
  const extra = storeLike.filter((n) => n !== segmentName(1));
  if (extra.length > 0) throw damaged(`holds ${extra.slice(0, 3).map((n) => `"${n}"`).join(", ")}`);
  // A record in the first segment is damage whatever else is there (no commit is written
  // before the manifest): a store whose manifest is lost also holds files of later opens
  // (mirror.lock, a whole frontier), and it is CORRUPTION, not "not a txtdb store".
  if (storeLike.includes(segmentName(1))) throw damaged(`its first log segment holds data`);
  if (foreign.length > 0) {
    throw invalidArg(`Directory "${path}" is not empty and is not a txtdb store (it holds ${foreign.slice(0, 3).map((n) => `"${n}"`).join(", ")}${foreign.length > 3 ? ", …" : ""}); open an empty or new directory, or an existing store`);
  }
  if (!thorough) return;
  const first = log.segment(1);
  if (first) {
    const size = first.size();
    const head = new Uint8Array(Math.min(size, 4096));
    first.read(head, 0);
    if (head.some((b) => b !== 0)) throw damaged(`its first log segment holds data`);
  }
  const fr = log.readFrontier();
  if (fr && fr.tsn !== 0) throw damaged(`its frontier is at version ${fr.tsn}`);
}

/**
 * For a directory with no MANIFEST where no store is to be created (a read-only open, a
 * command line that only reads or changes a store): CORRUPTION, with the message a writable
 * open gives, when it holds a store's files (its manifest is lost); otherwise nothing, and
 * the caller says there is no store here. Only reads, and takes no lock.
 */
export function checkManifestLost(platform: Platform, path: string, log: Log): void {
  try {
    checkCreatable(platform, path, log, true);
  } catch (e) {
    // A store created since the caller looked (its first commit written after its MANIFEST
    // was renamed into place) is no damage: only a manifest still missing makes it so.
    if (e instanceof TxtDbError && (e.code === "CORRUPTION" || e.details?.interruptedBackup === true) && !log.readManifest()) throw e;
  }
}

/**
 * A manifest must agree with the files before anything is deleted on its word: the
 * segment the log resumes at exists (compaction only ever names one that does), and so
 * do the checkpoint (format 1) or tables (format 2) it names. Otherwise the store is damaged (CORRUPTION), never
 * "repaired" by deleting what the manifest does not mention.
 */
export function checkManifestFiles(platform: Platform, path: string, log: Log, m: Manifest): void {
  const bad = (reason: string) =>
    new TxtDbError("CORRUPTION", `Manifest of "${path}" does not match the files: ${reason}. Nothing was changed; restore the store from a backup, or run \`txtdb check\``, {
      details: { file: `${path}/${MANIFEST}`, offset: 0 },
    });
  const first = m.firstSegment ?? 1;
  const ckptTsn = m.checkpointTsn ?? 0;
  if (!Number.isSafeInteger(first) || first < 1) throw bad(`first segment ${first} is not a positive integer`);
  if (!Number.isSafeInteger(ckptTsn) || ckptTsn < 0) throw bad(`checkpoint version ${ckptTsn} is not a non-negative integer`);
  if (m.format > FORMAT_CHECKPOINT) {
    for (const t of m.tables ?? []) {
      if (!TABLE_FILE.test(t.name)) throw bad(`table name ${JSON.stringify(t.name)} is not one txtdb writes`);
      if (!platform.stat(`${path}/${t.name}`)) throw bad(`its table "${t.name}" is missing`);
    }
  } else {
    if (m.checkpoint && !CHECKPOINT_FILE.test(m.checkpoint)) throw bad(`checkpoint name ${JSON.stringify(m.checkpoint)} is not one txtdb writes`);
    if (m.checkpoint && !platform.stat(`${path}/${m.checkpoint}`)) throw bad(`its checkpoint "${m.checkpoint}" is missing`);
    if (!m.checkpoint && (first !== 1 || ckptTsn !== 0)) throw bad(`it starts at segment ${first} without a checkpoint`);
  }
  if (!log.segment(first)) throw bad(`the log should resume at "${segmentName(first)}", which is missing`);
}
