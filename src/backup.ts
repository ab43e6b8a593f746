/**
 * Online backup: a consistent copy of the store at one version, taken while other processes
 * keep committing. The copy is a normal store directory (it opens with `open()` and passes
 * `check()`).
 *
 * Rules, in the order {@link backupStore} carries them out:
 *
 * 1. The destination must not exist, or be an empty directory; a symlink is refused (it
 *    could lead anywhere), and so is a destination inside the store directory. It is
 *    created with the store's directory mode, and every file in it exclusively (never
 *    written through a planted link) with the store's file mode.
 * 2. `compact.lock` is held for the whole copy: no compaction, in any process, can switch
 *    the manifest or delete a table or segment meanwhile (theirs wait for the lock, up to
 *    their `lockTimeoutMs`). Commits go on: they only add bytes past what is copied.
 * 3. The version is the published frontier read after taking the lock, or this process's
 *    view where that stands in for it (a read-only open that made a dead writer's records
 *    past the frontier durable, rule 11 of tail.ts: after a power loss the frontier file may
 *    lag the log by the last seconds of commits, be gone, or in "relaxed" lie past the log).
 *    The copy holds the
 *    files the manifest names (tables, or a format-1 checkpoint; all immutable) and the
 *    segments from the manifest's first one up to the frontier's position, the last one
 *    cut there. A visible commit is durable (the frontier never passes the durable end),
 *    so the copy never holds a commit the store itself could lose, and it holds every
 *    commit at or below the version.
 *    3a. Each table is verified as it is copied, from the one read that copies it (table.ts
 *    `verify`): every block's checksum and entries, the filter, the index and the footer,
 *    and the size, footer and content checksums the manifest records for it (table.ts rule
 *    9: a table of another store, or an older one, copied over its name). A damaged,
 *    truncated or foreign table is CORRUPTION naming the file and the offset, and nothing
 *    is backed up: a copy would carry the damage as if good, and the damage could later be
 *    all that is left of the data.
 *    3b. A format-1 checkpoint is verified as it is copied, from the one read that copies
 *    it (checkpoint.ts `checkingCheckpoint`, what `open()` checks when it loads one): every
 *    frame's checksum, the header and each entry's fields, and the version the manifest
 *    records for it (a checkpoint of another store, or an older one, copied over its name).
 *    A damaged, truncated or garbled checkpoint is CORRUPTION naming the file and the
 *    offset, and nothing is backed up, as for a table. A checkpoint records neither its
 *    length nor a checksum of its whole: one cut exactly between two frames reads as whole,
 *    here as at `open()` and in `check()`.
 *    3c. The records of each segment are checked from the bytes that are copied, read once
 *    (a record split between two reads is put together from both): each must take the
 *    version after the one before it (the first, the one after the folded version), the
 *    last being the version. A log with records missing or damaged, or a segment shorter
 *    than the copy needs, is CORRUPTION naming the segment and the offset, and nothing is
 *    backed up. Why one read: a second one, to check, cost time, and could check other
 *    bytes than the copy holds (a file changed, or a disk misreading, between the two).
 * 4. The copy gets a frontier at the copied end (visible and durable there), so that even
 *    a read-only open reads it at once, and no lease or lock files.
 * 5. The first file created is {@link UNFINISHED} (fsynced with the directory), a name
 *    that is no store's, so `open()` refuses the directory while it is there. Each file is
 *    fsynced, then the directory; the MANIFEST goes in last (temporary name, fsync,
 *    rename, directory fsync), and only then is the marker removed. An interrupted backup
 *    is never mistaken for a store: `open()` refuses a directory holding a foreign file, or
 *    store files but no MANIFEST (a crash between the rename and the marker's removal
 *    leaves a whole copy with the marker beside it).
 * 6. The copy writes 1 MiB at a time (a segment is read so too; a table's blocks and a
 *    checkpoint's frames, read as their readers read them, are gathered into writes of
 *    that size) and yields to the event loop every few MiB, so a large backup does not
 *    stall the process that takes it. Memory stays bounded: a chunk (4 MiB for a
 *    checkpoint's reads), and a record or frame that does not fit in one (never more than
 *    the file holds).
 *
 * @module
 */
import { assert, describeInput, isTxtDbError, TxtDbError } from "./errors.ts";
import { BlockCache } from "./blockcache.ts";
import { CheckpointDamage, checkingCheckpoint } from "./checkpoint.ts";
import { TableReader } from "./table.ts";
import { BACKUP_UNFINISHED, FRONTIER, ioError, MANIFEST, segmentName } from "./files.ts";
import { encodeFrontier, tableIdentity } from "./log.ts";
import type { Frontier, ManifestTable } from "./log.ts";
import type { FileLock } from "./lock.ts";
import type { Log } from "./log.ts";
import type { FileHandle, Platform } from "./port.ts";
import { decodeCommit, FRAME_HEADER_BYTES, parseFrame, tsnBreak } from "./record.ts";

/** What `db.backup()` returns. */
export interface BackupResult {
  /** The version the copy holds: every commit at or below it, none above. */
  version: bigint;
  /** Bytes copied. */
  bytes: number;
}

/**
 * The first file a backup creates and the last it removes (rule 5): a name no store has,
 * so `open()` refuses the directory as an unfinished backup until the copy is whole, even
 * when all it holds besides is an empty or partly written first segment (which `open()`
 * would otherwise take for an interrupted creation and start a new, empty store over), or
 * tables without a manifest yet (which it would otherwise call a store whose manifest is
 * lost, to be restored from a backup).
 */
export const UNFINISHED = BACKUP_UNFINISHED;

const CHUNK_BYTES = 2 ** 20;
/** Chunks copied between two yields to the event loop (rule 6). */
const CHUNKS_PER_TURN = 8;

/** What a backup needs from the open store. */
export interface BackupSource {
  platform: Platform;
  /** The store directory. */
  dir: string;
  log: Log;
  compactLock: FileLock;
  lockTimeoutMs: number;
  /** Where this process's view ends, if it stands in for the frontier file's `fr` (rule 3). */
  viewOver(fr: Readonly<Frontier> | undefined): { tsn: number; seg: number; off: number } | undefined;
  /** Permission bits for files and directories the copy creates. */
  fileMode: number;
  dirMode: number;
}

/** Copies the store to `dest` by the rules above. */
export async function backupStore(src: BackupSource, dest: string): Promise<BackupResult> {
  const { platform, dir, log } = src;
  checkDestination(platform, dir, dest);
  const release = await src.compactLock.acquire(true, { timeoutMs: src.lockTimeoutMs });
  // The paths of the files this backup created, the only ones it removes if it fails: another backup may
  // have filled the destination meanwhile (a failure here used to delete a finished copy).
  const written: string[] = [];
  try {
    // Again under the lock: a backup that held it before this one may have filled `dest`.
    checkDestination(platform, dir, dest);
    // The manifest's frame only: a damaged file (a sparse one of gigabytes) is CORRUPTION, not an allocation error.
    const read = log.readManifestWithFrame();
    if (!read) throw new TxtDbError("CORRUPTION", `Store "${dir}" has no MANIFEST to back up`, { details: { file: `${dir}/${MANIFEST}`, offset: 0 } });
    const { manifest, frame: manifestBytes } = read;
    const published = log.readFrontier();
    const fr = src.viewOver(published) ?? published;
    const firstSegment = manifest.firstSegment ?? 1;
    const version = fr ? fr.tsn : manifest.checkpointTsn ?? 0;
    platform.mkdir(dest, src.dirMode);
    // Rule 5: marked unfinished before any store file is in it.
    const mark = platform.open(`${dest}/${UNFINISHED}`, { create: true, exclusive: true, mode: src.fileMode });
    written.push(`${dest}/${UNFINISHED}`);
    try {
      mark.write(new TextEncoder().encode(`An interrupted txtdb backup of "${dir}": not a store. Delete this directory and back up again.\n`), 0);
      mark.sync();
    } finally {
      mark.close();
    }
    platform.syncDir(dest);
    let bytes = 0;
    const turns = new Turns(platform);
    for (const t of manifest.tables ?? []) bytes += await copyTable(src, t, dest, turns, written);
    if (manifest.checkpoint) bytes += await copyCheckpoint(src, manifest.checkpoint, manifest.checkpointTsn ?? 0, dest, turns, written);
    if (fr) {
      // Rule 3c: the records copied are the whole history from the folded version on.
      let last = manifest.checkpointTsn ?? 0;
      for (let seg = firstSegment; seg <= fr.seg; seg++) {
        const name = segmentName(seg);
        if (!platform.stat(`${dir}/${name}`)) {
          if (seg === fr.seg && fr.off === 0) continue; // a roll-over's new segment, empty
          throw new TxtDbError("CORRUPTION", `Segment "${name}" of "${dir}" is missing (the manifest's first segment is ${firstSegment}, the frontier is in segment ${fr.seg}); nothing was backed up`, { details: { file: `${dir}/${name}`, offset: 0 } });
        }
        const copied = await copySegment(src, seg, seg === fr.seg ? fr.off : undefined, last, dest, turns, written);
        bytes += copied.bytes;
        last = copied.last;
      }
      if (last !== fr.tsn) {
        throw new TxtDbError("CORRUPTION", `The log of "${dir}" ends at version ${last} where its frontier says ${fr.tsn}: records are missing from it; nothing was backed up. Run \`txtdb check\`; restore from a backup if it persists`, {
          details: { file: `${dir}/${segmentName(fr.seg)}`, offset: fr.off },
        });
      }
    }
    if (fr) {
      const f = platform.open(`${dest}/${FRONTIER}`, { create: true, exclusive: true, mode: src.fileMode });
      written.push(`${dest}/${FRONTIER}`);
      try {
        f.write(encodeFrontier({ tsn: fr.tsn, seg: fr.seg, off: fr.off, durableSeg: fr.seg, durableOff: fr.off }), 0);
        f.sync();
      } finally {
        f.close();
      }
    }
    platform.syncDir(dest);
    // Rule 5: the manifest last.
    const tmp = `${dest}/${MANIFEST}.tmp`;
    const f = platform.open(tmp, { create: true, exclusive: true, mode: src.fileMode });
    written.push(tmp);
    try {
      f.write(manifestBytes, 0);
      f.sync();
    } finally {
      f.close();
    }
    platform.rename(tmp, `${dest}/${MANIFEST}`);
    written.push(`${dest}/${MANIFEST}`);
    platform.syncDir(dest);
    platform.unlink(`${dest}/${UNFINISHED}`);
    platform.syncDir(dest);
    bytes += manifestBytes.length;
    return { version: BigInt(version), bytes };
  } catch (e) {
    removeCopy(platform, written);
    throw ioError(e, `Backing up "${dir}" to "${dest}"`);
  } finally {
    release();
  }
}

function checkDestination(platform: Platform, dir: string, dest: string): void {
  if (typeof dest !== "string" || dest.length === 0) {
    throw new TxtDbError("INVALID_ARGUMENT", `backup() needs a destination directory path; got ${describeInput(dest)}`);
  }
  // The kernel takes no NUL in a path: the runtimes' refusal came out as IO, which it is not.
  if (dest.includes("\0")) {
    throw new TxtDbError("INVALID_ARGUMENT", `backup() needs a destination directory path; got ${JSON.stringify(dest)}, which holds a NUL character ("\\0") that no file path can (nothing was written)`);
  }
  // A URL names no directory: "s3://bucket/b" made a directory "s3:" in the working
  // directory and resolved, so the caller believed the copy was in the bucket (open()
  // refuses such locations as well).
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(dest)?.[1];
  if (scheme !== undefined) {
    throw new TxtDbError("INVALID_ARGUMENT", `backup() copies the store into a directory; got the ${scheme}:// URL "${dest}" (nothing was written). For a directory whose name starts like a URL, write it as "./${dest}"`);
  }
  const trim = (p: string) => p.replace(/\/+$/, "") || "/";
  if (trim(dest) === trim(dir) || trim(dest).startsWith(trim(dir) + "/")) {
    throw new TxtDbError("INVALID_ARGUMENT", `The backup destination "${dest}" is the store directory "${dir}" or inside it; choose a directory outside the store`);
  }
  let info;
  try {
    info = platform.lstat(dest);
  } catch (e) {
    throw ioError(e, `Checking the backup destination "${dest}"`);
  }
  if (info?.isSymlink) throw new TxtDbError("INVALID_ARGUMENT", `The backup destination "${dest}" is a symlink; pass the directory it leads to, or a new path`);
  if (info && !info.isDirectory) throw new TxtDbError("INVALID_ARGUMENT", `The backup destination "${dest}" exists and is not a directory; pass a new path or an empty directory`);
  if (insideStore(platform, dir, trim(dest))) {
    throw new TxtDbError("INVALID_ARGUMENT", `The backup destination "${dest}" is inside the store directory "${dir}" (by another path or through a symlink); choose a directory outside the store`);
  }
  if (info && platform.readdir(dest).length > 0) throw new TxtDbError("INVALID_ARGUMENT", `The backup destination "${dest}" is not empty; pass a new path or an empty directory (nothing was written)`);
}

/**
 * True when `dest`, as the kernel resolves it (`./`, `..`, an absolute path for a relative
 * store, a symlink on the way), is the store directory or inside it: the nearest existing
 * directory of `dest` or one of its parents (followed by `..`) is the store's inode.
 */
function insideStore(platform: Platform, dir: string, dest: string): boolean {
  try {
    const store = platform.stat(dir);
    if (!store || store.ino === 0) return false; // no inode numbers here: the spelling check above is all there is
    let at = dest;
    let info = platform.stat(at);
    while (!info) {
      const cut = at.lastIndexOf("/");
      if (cut < 0 && at === ".") return false;
      at = cut < 0 ? "." : cut === 0 ? "/" : at.slice(0, cut);
      info = platform.stat(at);
    }
    for (let hops = 0; hops < 1024; hops++) {
      if (info.ino === store.ino && info.dev === store.dev) return true;
      const up = platform.stat(`${at}/..`);
      if (!up || (up.ino === info.ino && up.dev === info.dev)) return false; // the root
      at = `${at}/..`;
      info = up;
    }
    return false;
  } catch {
    return false; // an unreadable path: creating the destination fails with the reason
  }
}

/** Counts the chunks written and yields to the event loop every {@link CHUNKS_PER_TURN} of them (rule 6). */
class Turns {
  #chunks = 0;
  constructor(readonly platform: Platform) {}

  /** Called after each chunk written. */
  async written(): Promise<void> {
    if (++this.#chunks % CHUNKS_PER_TURN === 0) await this.platform.sleep(0);
  }
}

/**
 * Writes the contiguous regions it is handed (a table's blocks, a checkpoint's frames) into
 * `output` from offset 0, gathered into writes of {@link CHUNK_BYTES}: a write per block
 * was a system call per 4 KiB. A region larger than that is written as it is.
 */
class GatheredWrites {
  readonly #buf = new Uint8Array(CHUNK_BYTES);
  #filled = 0;
  /** The file offset of `#buf[0]`. */
  #at = 0;
  constructor(readonly output: FileHandle, readonly turns: Turns) {}

  /** The bytes handed in so far: where the next region must start. */
  get end(): number {
    return this.#at + this.#filled;
  }

  async put(offset: number, bytes: Uint8Array): Promise<void> {
    assert(offset === this.end, `regions are contiguous: ${offset} after ${this.end}`);
    if (this.#filled > 0 && this.#filled + bytes.length > this.#buf.length) await this.flush();
    if (bytes.length > this.#buf.length) {
      this.output.write(bytes, this.#at);
      this.#at += bytes.length;
      await this.turns.written();
      return;
    }
    this.#buf.set(bytes, this.#filled);
    this.#filled += bytes.length;
  }

  /** Writes what is gathered. */
  async flush(): Promise<void> {
    if (this.#filled === 0) return;
    this.output.write(this.#buf.subarray(0, this.#filled), this.#at);
    this.#at += this.#filled;
    this.#filled = 0;
    await this.turns.written();
  }
}

/**
 * Rule 3a: copies table `t` into `dest` as {@link TableReader.verifying} hands on its checked
 * regions (the file is read once); fsyncs it. The footer comes last, once everything else
 * is checked. CORRUPTION says nothing was backed up (the caller removes what was written).
 */
async function copyTable(src: BackupSource, t: ManifestTable, dest: string, turns: Turns, written: string[]): Promise<number> {
  const { platform, dir } = src;
  const from = `${dir}/${t.name}`, to = `${dest}/${t.name}`;
  let reader: TableReader | undefined;
  try {
    const input = platform.open(from, { readOnly: true });
    try {
      // No cache: every block is read from the file and checked (verify reads past any cache).
      reader = TableReader.open(input, { cache: new BlockCache(0), identity: tableIdentity(t) });
    } catch (e) {
      input.close();
      throw e;
    }
    const output = platform.open(to, { create: true, exclusive: true, mode: src.fileMode });
    written.push(to); // created by this backup (exclusive): its to remove on failure
    try {
      const out = new GatheredWrites(output, turns);
      const regions = reader.verifying();
      for (let r = regions.next(); !r.done; r = regions.next()) await out.put(r.value.offset, r.value.bytes);
      await out.flush();
      output.sync();
      return out.end;
    } finally {
      output.close();
    }
  } catch (e) {
    if (isTxtDbError(e) && e.code === "CORRUPTION") {
      throw new TxtDbError("CORRUPTION", `${e.message}. Nothing was backed up`, { cause: e, details: e.details ?? { file: from, offset: 0 } });
    }
    throw e;
  } finally {
    reader?.close();
  }
}

/**
 * Rule 3b: copies the format-1 checkpoint `name` into `dest` as {@link checkingCheckpoint}
 * hands on its checked frames (the file is read once); fsyncs it. `tsn` is the version the
 * manifest records for it. Damage is CORRUPTION naming the file and the offset, saying
 * nothing was backed up (the caller removes what was written).
 */
async function copyCheckpoint(src: BackupSource, name: string, tsn: number, dest: string, turns: Turns, written: string[]): Promise<number> {
  const { platform, dir } = src;
  const from = `${dir}/${name}`, to = `${dest}/${name}`;
  const input = platform.open(from, { readOnly: true });
  try {
    const output = platform.open(to, { create: true, exclusive: true, mode: src.fileMode });
    written.push(to); // created by this backup (exclusive): its to remove on failure
    try {
      const out = new GatheredWrites(output, turns);
      const frames = checkingCheckpoint(input);
      let r = frames.next();
      for (; !r.done; r = frames.next()) await out.put(r.value.offset, r.value.bytes);
      await out.flush();
      if (r.value.header.tsn !== tsn) {
        throw new CheckpointDamage(0, `it holds version ${r.value.header.tsn} where the manifest says ${tsn} (another store's checkpoint, or an older one, copied over its name?)`);
      }
      output.sync();
      return out.end;
    } finally {
      output.close();
    }
  } catch (e) {
    if (e instanceof CheckpointDamage) {
      throw new TxtDbError("CORRUPTION", `Checkpoint "${from}" is damaged at offset ${e.offset}: ${e.message}. Nothing was backed up; run \`txtdb check\`, and restore the store from a backup if it persists`, {
        cause: e,
        details: { file: from, offset: e.offset },
      });
    }
    throw e;
  } finally {
    input.close();
  }
}

/**
 * Rule 3c: copies segment `seg` up to `end` (its size if undefined) into `dest`, 1 MiB at
 * a time, checking its records from each chunk before writing it; fsyncs it. `last` is the
 * version before its first record; returns the bytes copied and the version of its last
 * record.
 */
async function copySegment(src: BackupSource, seg: number, end: number | undefined, last: number, dest: string, turns: Turns, written: string[]): Promise<{ bytes: number; last: number }> {
  const { platform, dir, log } = src;
  const name = segmentName(seg);
  const input = platform.open(`${dir}/${name}`, { readOnly: true });
  try {
    const size = end ?? input.size();
    const output = platform.open(`${dest}/${name}`, { create: true, exclusive: true, mode: src.fileMode });
    written.push(`${dest}/${name}`); // created by this backup (exclusive): its to remove on failure
    try {
      const records = new SegmentRecords(log, seg, size, last);
      const buf = new Uint8Array(Math.min(CHUNK_BYTES, Math.max(size, 1)));
      for (let at = 0; at < size;) {
        const n = input.read(buf.subarray(0, Math.min(buf.length, size - at)), at);
        if (n === 0) throw log.corruptionAt({ seg, off: at }, `the segment ends at ${at} bytes, before the ${size} the backup copies (it was cut while the store was open); nothing was backed up`);
        const chunk = buf.subarray(0, n);
        records.check(chunk, at);
        output.write(chunk, at);
        at += n;
        await turns.written();
      }
      records.end();
      output.sync();
      return { bytes: size, last: records.last };
    } finally {
      output.close();
    }
  } finally {
    input.close();
  }
}

/**
 * Rule 3c: the records of segment `seg`, checked from the chunks the backup copies, handed
 * in file order: each must take the version after the one before it. A record that skips
 * versions (records missing: a segment cut back, one removed and the next renamed into its
 * place) or a damaged one is CORRUPTION naming the segment and the offset: a copy would
 * have served a history with a hole, and opened and passed `check()` only as far as a
 * reader could tell.
 */
class SegmentRecords {
  /** The version of the last record checked (before the first: the version before the segment). */
  last: number;
  /** A record begun in an earlier chunk: its frame header, then its whole frame once the header gives its length. */
  #partial: Uint8Array | undefined;
  #partialFilled = 0;
  /** The segment offset of the record in `#partial`. */
  #partialAt = 0;

  /** `size`: where the copy of the segment ends; `last`: the version before its first record. */
  constructor(readonly log: Log, readonly seg: number, readonly size: number, last: number) {
    this.last = last;
  }

  /** Checks the records in `chunk`, the segment's bytes from offset `at` on. */
  check(chunk: Uint8Array, at: number): void {
    let i = this.#partial ? this.#fill(chunk) : 0;
    if (this.#partial) return; // the chunk all went into a record that goes on in the next
    for (;;) {
      const r = parseFrame(chunk, i);
      if (r.kind === "ok") {
        this.#record(r.body, at + i);
        i = r.next;
      } else if (r.kind === "incomplete") {
        if (i === chunk.length) return;
        // The record goes on in the next chunk: its bytes here are kept until it is whole.
        this.#partial = new Uint8Array(FRAME_HEADER_BYTES);
        this.#partialFilled = 0;
        this.#partialAt = at + i;
        this.#fill(chunk.subarray(i));
        return;
      } else {
        throw this.#damaged(at + i, r.kind === "bad" ? r.reason : "zeros where records should be");
      }
    }
  }

  /** After the last chunk: a record begun and not finished is cut short. */
  end(): void {
    if (this.#partial) throw this.#damaged(this.#partialAt, "frame is cut short");
  }

  /** Copies the start of `bytes` into the record begun earlier, checking it once it is whole; returns the bytes used. */
  #fill(bytes: Uint8Array): number {
    let used = 0;
    for (;;) {
      const p = this.#partial!;
      const n = Math.min(p.length - this.#partialFilled, bytes.length - used);
      p.set(bytes.subarray(used, used + n), this.#partialFilled);
      this.#partialFilled += n;
      used += n;
      if (this.#partialFilled < p.length) return used;
      const r = parseFrame(p, 0);
      if (r.kind === "ok") {
        this.#partial = undefined;
        this.#record(r.body, this.#partialAt);
        return used;
      }
      if (r.kind !== "incomplete") throw this.#damaged(this.#partialAt, r.kind === "bad" ? r.reason : "zeros where records should be");
      // The header alone so far, and it is sound (its magic, a possible length): room for
      // the whole frame, unless it would end past what the copy holds.
      const length = FRAME_HEADER_BYTES + new DataView(p.buffer, p.byteOffset).getUint32(1, true);
      if (this.#partialAt + length > this.size) throw this.#damaged(this.#partialAt, "frame is cut short");
      this.#partial = new Uint8Array(length);
      this.#partial.set(p);
    }
  }

  #record(body: Uint8Array, off: number): void {
    let tsn: number;
    try {
      // Only the version is kept, so the record is decoded where it lies (no copy).
      tsn = decodeCommit(body).tsn;
    } catch (e) {
      throw this.log.undecodableRecord({ seg: this.seg, off }, e);
    }
    if (tsn !== this.last + 1) throw this.#damaged(off, tsnBreak(tsn, this.last));
    this.last = tsn;
  }

  #damaged(off: number, reason: string): TxtDbError {
    return this.log.corruptionAt({ seg: this.seg, off }, `${reason}; nothing was backed up`);
  }
}

/** Removes what a failed backup created: the files it created itself, never another's (unlink never follows links). */
function removeCopy(platform: Platform, written: readonly string[]): void {
  for (const path of written) {
    try {
      platform.unlink(path);
    } catch {
      // already gone, or left for the user: the error says what failed
    }
  }
}
