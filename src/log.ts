/**
 * The shared commit log on disk: segment files, the manifest, and the published frontier.
 *
 * Files in a store directory:
 *
 * ```
 * MANIFEST               frame(CBOR {format, createdAtMs}); replaced atomically
 * seg-0000000001.log     append-only frames; a new segment starts past `segmentBytes`
 * frontier               36 bytes: what readers may see, and what is known durable; then
 *                        the tail state (the log's end, a repair epoch, a sync-failure mark)
 * writer.lock            flock: held exclusively by the one process appending
 * leases/                one locked file per live process (liveness, pins)
 * ```
 *
 * The frontier is how a commit becomes visible to other processes: the writer appends, a
 * sync covers the batch (durability "full"), and only then does the frontier move past it.
 * Readers never read past it, so they never see a commit that is not yet durable. It also
 * records the durable end. Recovery treats a bad frame as a torn tail (cut it off) only if
 * it lies past that durable end and no whole frame follows it; otherwise it is CORRUPTION,
 * and nothing is cut. The frontier file is synced only with a sync-failure mark (it is
 * rebuilt from the log after a power loss), so a frontier torn by a power loss only loses
 * the first test.
 *
 * The durability order of one group commit (append, fdatasync, frontier, release the
 * lock, resolve) is written as numbered rules above the code that carries it out, in
 * tail.ts; file names are in files.ts.
 *
 * @module
 */
import type { ManifestTwoPhase } from "./prepared.ts";
import { TxtDbError } from "./errors.ts";
import { crc32c } from "./crc32c.ts";
import { decodeInternal, encodeInternal } from "./codec.ts";
import { frame, parseFrame, FRAME_BODY_MAX_BYTES, FRAME_HEADER_BYTES, FRAME_MAGIC, NewerRecordError } from "./record.ts";
import { joinPath, PortError } from "./port.ts";
import type { FileHandle, OpenOptions, Platform } from "./port.ts";
import { storeFileError } from "./dirsafety.ts";
import { isNamespaceBinding } from "./checkpoint.ts";
import { NS_ID_MAX } from "./table.ts";
import type { TableIdentity } from "./table.ts";
import { FrontierMirror } from "./mirror.ts";
import { FRONTIER, FRONTIER_FILE_BYTES, MANIFEST, MANIFEST_TMP, parseSegmentName, parseTableName, segmentName, TABLE_NUMBER_END } from "./files.ts";

/**
 * The on-disk format this code writes; a newer one is refused with FORMAT. Format 1 keeps
 * the folded state in one checkpoint file that every process loads into memory; format 2
 * keeps it in sorted tables read on demand (levels.ts). Format 1 stores are upgraded in
 * place (upgrade.ts).
 */
export const FORMAT_VERSION = 2;
/**
 * Format 2 plus records of two-phase commit in the log and prepared transactions in the
 * manifest. A store moves to it when its first transaction is prepared (prepared.ts), so a
 * release that reads up to format 2 refuses it with FORMAT instead of misreading it; stores
 * that never prepare stay at format 2.
 */
export const FORMAT_TWO_PHASE = 3;
/** The newest format this code reads. */
export const FORMAT_READABLE_MAX = FORMAT_TWO_PHASE;
/** The format of stores whose folded state is a checkpoint (upgrade.ts reads and writes it). */
export const FORMAT_CHECKPOINT = 1;

/** The frontier's 36 bytes (the file's first part): what {@link Log.readFrontier} reads back. */
export function encodeFrontier(fr: Frontier): Uint8Array {
  const buf = new Uint8Array(FRONTIER_BYTES);
  const view = new DataView(buf.buffer);
  view.setFloat64(0, fr.tsn, true);
  view.setUint32(8, fr.seg, true);
  view.setFloat64(12, fr.off, true);
  view.setUint32(20, fr.durableSeg, true);
  view.setFloat64(24, fr.durableOff, true);
  view.setUint32(32, crc32c(buf.subarray(0, 32)), true);
  return buf;
}

/** A byte position in the log. */
export interface LogPosition {
  seg: number;
  off: number;
}

/** The published frontier: the visible end and the durable end of the log. */
export interface Frontier {
  tsn: number;
  seg: number;
  off: number;
  durableSeg: number;
  durableOff: number;
}

/**
 * The shared state of the log's end, kept in the frontier file after the frontier itself
 * (readers' probe never reads it). See the rules at the top of tail.ts.
 */
export interface TailState {
  /** The end of the log as the last append (or catch-up) under the writer lock left it. */
  end: LogPosition;
  /** The version of the last record before `end`. */
  endTsn: number;
  /** Bumped each time a repair cut records past the durable end (rule 8 in tail.ts). */
  epoch: number;
  /** Set when a sync failed short of a batch's end: the pid that saw it (rule 7), or 0. */
  failedPid: number;
}

/** Where a scan stopped, and why if it did not reach its target. */
export interface ScanEnd {
  end: LogPosition;
  /** `cut`: the segment is shorter than what was read from it already (damage, never a torn tail). */
  problem?: { at: LogPosition; reason: string; incomplete: boolean; cut?: true };
  /** The scan stopped at preallocated (zero) space: the end of what was written. */
  zeroEnd?: boolean;
}

/** A table the manifest names (format 2), and the level it belongs to. */
export interface ManifestTable {
  /** The file name, `tbl-<16 digits>.sst`. */
  name: string;
  /** 0: a fold of the log (tables may overlap, newest first); 1 and up: one sorted run each. */
  level: number;
  /**
   * The table's smallest and largest (namespace id, key bytes), so that opening a store
   * reads no table (levels.ts finds the table of a key from them; each table's filter and
   * index are read on its first use and checked against them). Absent: read at open.
   */
  min?: [number, Uint8Array];
  max?: [number, Uint8Array];
  /**
   * The soonest expiry (ms since the epoch) of a value the table holds, set with `expireIn`:
   * once it has passed, compaction rewrites the table to reclaim it (fold.ts, rule 4b).
   * Absent: the table holds no expiring value, or was written before this was recorded.
   */
  expiresAtMs?: number;
  /**
   * The table's identity (table.ts rule 9): its size in bytes, its footer's checksum and the
   * checksum of its whole content, so that a file copied over its name (another store's
   * table, an older one of this store: every checksum in it holds) is CORRUPTION instead of
   * being read as this store's data. Absent: written before they were recorded (or by a
   * process of a release that drops them when it rewrites the manifest); not checked.
   * A decoder that does not know them ignores them (only the fields above are kept).
   */
  bytes?: number;
  /** The table's footer checksum (its last 4 bytes), checked with `bytes` at every open. */
  footerSum?: number;
  /** xxHash32 over the checksums of every block, the filter, the index and the footer: checked by `check()` and `backup()`. */
  contentSum?: number;
}

/** What the manifest records of a table's identity, as {@link TableReader.open} checks it; undefined when it records none. */
export function tableIdentity(t: ManifestTable): TableIdentity | undefined {
  if (t.bytes === undefined || t.footerSum === undefined) return undefined;
  return t.contentSum !== undefined ? { bytes: t.bytes, footerSum: t.footerSum, contentSum: t.contentSum } : { bytes: t.bytes, footerSum: t.footerSum };
}

export interface Manifest {
  format: number;
  createdAtMs: number;
  /** Format 1: the checkpoint file holding the state at `checkpointTsn`, if compaction ran. */
  checkpoint?: string | null;
  /**
   * The version the folded state holds (format 1: the checkpoint; format 2: the tables);
   * the log goes on after it. Kept under its format-1 name on disk.
   */
  checkpointTsn?: number;
  /** The first log segment still in use (earlier ones are folded). */
  firstSegment?: number;
  /** Format 2: the tables, level 0 newest first, then each level in key order. */
  tables?: ManifestTable[];
  /** Format 2: the namespace bindings at `checkpointTsn`, flat [name, id, ...]. */
  bindings?: (string | number)[];
  /** Format 2: the next namespace id to hand out, as of `checkpointTsn`. */
  nextNsId?: number;
  /** Format 2: the number in the next table's name (names are never reused). */
  nextTable?: number;
  /** Format 3: prepared transactions undecided at `checkpointTsn`, and recent decisions (prepared.ts). */
  twoPhase?: ManifestTwoPhase;
}

/**
 * True if two manifests name the same files: checkpoint, tables, the folded version and
 * the first segment, with a manifest that omits them (a fresh store's) read as none, 0
 * and 1, as readManifest reads it.
 */
export function sameManifestFiles(a: Manifest, b: Manifest): boolean {
  return (a.checkpoint ?? null) === (b.checkpoint ?? null) && (a.checkpointTsn ?? 0) === (b.checkpointTsn ?? 0) && (a.firstSegment ?? 1) === (b.firstSegment ?? 1) &&
    tableNames(a) === tableNames(b);
}

function tableNames(m: Manifest): string {
  return (m.tables ?? []).map((t) => `${t.level}:${t.name}`).join(",");
}

/** The largest manifest txtdb writes: one frame (prepareManifest refuses a larger body). */
export const MANIFEST_MAX_BYTES = FRAME_HEADER_BYTES + FRAME_BODY_MAX_BYTES;

/**
 * The bytes of the manifest's frame, never more: its header first, then as much as the
 * header says (at most {@link MANIFEST_MAX_BYTES}). Reading the file whole would let a
 * damaged or planted one (a sparse file of many gigabytes) fail every open with an
 * allocation error, or hold gigabytes of memory, instead of CORRUPTION.
 */
function readManifestFrame(f: FileHandle, path: string): Uint8Array {
  const size = f.size();
  if (size > MANIFEST_MAX_BYTES) {
    throw new TxtDbError("CORRUPTION", `Manifest "${path}" is ${size} bytes, more than any manifest txtdb writes (at most ${MANIFEST_MAX_BYTES}): it is damaged or not txtdb's. Nothing was changed and nothing more of it was read; restore it from a backup`, {
      details: { file: path, offset: 0, bytes: size, limitBytes: MANIFEST_MAX_BYTES },
    });
  }
  const head = new Uint8Array(Math.min(size, FRAME_HEADER_BYTES));
  const got = f.read(head, 0);
  // A header that is not a frame's, or one whose length is impossible, is judged by parseFrame on these bytes alone.
  if (got < FRAME_HEADER_BYTES || head[0] !== FRAME_MAGIC) return head.subarray(0, got);
  const length = new DataView(head.buffer).getUint32(1, true);
  if (length > FRAME_BODY_MAX_BYTES) return head;
  const buf = new Uint8Array(Math.min(size, FRAME_HEADER_BYTES + length));
  return buf.subarray(0, f.read(buf, 0));
}

/** Deepest table level a manifest may name. */
export const LEVELS_MAX = 8;


const FRONTIER_BYTES = FRONTIER_FILE_BYTES;
/**
 * The tail state's place in the frontier file, past the 36 bytes readers probe. The end
 * record (40 bytes at 64: endTsn f64, seg u32, off f64, epoch u32, 12 zero bytes, crc32c
 * u32 of the first 36) is written only under the writer lock; the failure mark (8 bytes at
 * 104: pid u32, its complement u32) by whoever saw a sync fail, holding the frontier lock.
 * Disjoint bytes, so neither write undoes the other. All zeros (a store made before they
 * existed) reads as: end unknown, epoch 0, no failure. A file cut short of the mark by
 * someone after this process saw the mark's bytes reads as a garbled mark: a mark may have
 * been lost with them.
 */
const TAIL_END_AT = 64;
const TAIL_END_BYTES = 40;
/** Where the sync-failure mark lies in the frontier file (an error about a garbled one names it). */
export const SYNC_FAILURE_AT = TAIL_END_AT + TAIL_END_BYTES;
const SYNC_FAILURE_BYTES = 8;
/**
 * The failure mark's pid when its bytes are neither zeros nor a pid and its complement:
 * something other than txtdb wrote over them. Read as a failure (the safe side: a writable
 * open verifies the tail, rule 8 of tail.ts), and reported as CORRUPTION of the frontier
 * file meanwhile. No process has this id (pids stay far below 2^32 - 1).
 */
export const SYNC_FAILURE_GARBLED = 0xffffffff;
/** How long a publish may wait for another process's frontier critical section (a few syscalls). */
const FRONTIER_LOCK_WAIT_MS_MAX = 2000;
/** Reads start small (the common catch-up finds nothing new) and double up to this. */
const READ_CHUNK_FIRST_BYTES = 4096;
const READ_CHUNK_MAX_BYTES = 4 << 20;
/**
 * Segments grow in zero-filled steps of this size. An fdatasync after an append that
 * extends a file must also journal the new size; one into space already allocated need
 * not, which measured ~35 % faster here (≈210 µs vs ≈320 µs). The commit that extends
 * pays for flushing the step's zeros: ≈2 ms for 1 MiB, ≈0.7 ms for 256 KiB, a stall of
 * the event loop (and of every writer waiting for the lock) that this size keeps small.
 * A zero byte where a frame's magic would be marks the end of what was written.
 */
export const PREALLOCATE_BYTES = 256 << 10;
/**
 * The most one interrupted append leaves past the point where it tore: a batch of commits
 * (under 64 MiB, commit.ts) and its last, largest possible frame, then the zeros of one
 * preallocation step. Generous on purpose: below it, a tear is told from damage exactly.
 */
const TORN_WRITE_MAX_BYTES = 2 * (FRAME_HEADER_BYTES + FRAME_BODY_MAX_BYTES) + PREALLOCATE_BYTES;
const ZEROS = new Uint8Array(PREALLOCATE_BYTES);

/** Compares log positions. */
export function comparePositions(a: LogPosition, b: LogPosition): number {
  return a.seg !== b.seg ? a.seg - b.seg : a.off - b.off;
}

export { parseSegmentName, segmentName };

/**
 * A store's mode from its MANIFEST's permission bits: the mode new files get. Owner read
 * and write always (a MANIFEST made read-only by hand must not make new files unwritable);
 * never execute, setuid, setgid or sticky bits (a MANIFEST chmod-ed 0755 or 04755 must not
 * give them to files, nor `w` to the directories, which get `x` where `r` is).
 */
export function storeMode(manifestMode: number): number {
  return (manifestMode & 0o666) | 0o600;
}

/** Access to one store directory's log files. One per open database. */
export class Log {
  readonly platform: Platform;
  readonly dir: string;
  readonly readOnly: boolean;
  #mode: number;
  readonly #segments = new Map<number, FileHandle>();
  #frontierHandle: FileHandle | undefined;
  /** The frontier file reaches past the sync-failure mark: this process wrote or read its bytes (see writeTailEnd, #parseTail). */
  #markSpaceKnown = false;
  readonly #frontierBuf = new Uint8Array(FRONTIER_BYTES);
  readonly #frontierView = new DataView(this.#frontierBuf.buffer);
  readonly #frontierWords = new Uint32Array(this.#frontierBuf.buffer);
  readonly #tailBuf = new Uint8Array(TAIL_END_BYTES + SYNC_FAILURE_BYTES);
  /** The frontier and the tail state in one read (see readHead). */
  readonly #headBuf = new Uint8Array(SYNC_FAILURE_AT + SYNC_FAILURE_BYTES);
  readonly #headView = new DataView(this.#headBuf.buffer);
  readonly #headWords = new Uint32Array(this.#headBuf.buffer, 0, FRONTIER_BYTES / 4);
  /** The buffer of the first read of a scan to the log's end (see scan). */
  readonly #probeBuffer = new Uint8Array(READ_CHUNK_FIRST_BYTES);
  /** Per segment handle, the bytes known to be allocated (see preallocate). */
  readonly #allocated = new WeakMap<FileHandle, number>();
  /** The last frontier that passed its checksum, and its words (see readFrontier). */
  readonly #lastWords = new Uint32Array(FRONTIER_BYTES / 4);
  #lastFrontier: Readonly<Frontier> | undefined;
  /**
   * Why the last {@link readFrontier} read nothing: the file absent (a read-only open that
   * finds it deleted), cut short of the frontier's bytes, or failing its checksum on every
   * attempt (garbled); undefined after a read that found one.
   */
  frontierMiss: "absent" | "short" | "garbled" | undefined;
  /** The frontier mirror (mirror.ts), while attached. */
  #mirror: FrontierMirror | undefined;
  readonly #mirrorWords = new Uint32Array(FRONTIER_BYTES / 4);
  readonly #mirrorBuf = new Uint8Array(this.#mirrorWords.buffer);
  readonly #mirrorView = new DataView(this.#mirrorWords.buffer);

  constructor(platform: Platform, dir: string, mode: number, readOnly: boolean) {
    this.platform = platform;
    this.dir = dir;
    this.#mode = mode;
    this.readOnly = readOnly;
  }

  /**
   * The permission bits of the files this process creates in the store: the store's mode,
   * which its MANIFEST carries (learned at each read of it and at each new segment, so that
   * a store whose files were chmod-ed since is followed), not the options of whichever
   * process happens to create them; the `mode` option before the store has a MANIFEST.
   */
  get mode(): number {
    return this.#mode;
  }

  /** Learns the store's mode from the MANIFEST now (a new segment is made with it). */
  #followStoreMode(): void {
    try {
      const info = this.platform.lstat(this.path(MANIFEST));
      if (info?.isFile) this.#mode = storeMode(info.mode);
    } catch {
      // the mode learned last stays
    }
  }

  path(name: string): string {
    return joinPath(this.dir, name);
  }

  /**
   * The error for a whole frame of segment `at.seg` whose record does not decode (`e`, from
   * decodeCommit): FORMAT when a newer release wrote it (a record kind this release does not
   * know, or a manifest moved past the formats it reads, which another process may do while
   * this one runs), CORRUPTION naming file and offset otherwise.
   */
  undecodableRecord(at: LogPosition, e: unknown): TxtDbError {
    const file = this.path(segmentName(at.seg));
    const newer = (what: string) =>
      new TxtDbError("FORMAT", `Log file "${file}" holds at offset ${at.off} ${what}: a newer release of txtdb wrote to this store. Upgrade txtdb in this process (every process that opens the store must run a release that reads its format)`, {
        details: { file, offset: at.off },
      });
    if (e instanceof NewerRecordError) return newer(e.message);
    let m: Manifest | undefined;
    try {
      m = this.readManifest();
    } catch {
      m = undefined;
    }
    if (m && m.format > FORMAT_READABLE_MAX) return newer(`a record this release cannot read, and the store's manifest says format ${m.format} (this txtdb reads up to ${FORMAT_READABLE_MAX})`);
    return this.corruptionAt(at, (e as Error).message);
  }

  /** CORRUPTION naming segment `at.seg`'s file and the offset, with `reason`. */
  corruptionAt(at: LogPosition, reason: string): TxtDbError {
    const file = this.path(segmentName(at.seg));
    return new TxtDbError("CORRUPTION", `Log file "${file}" is damaged at offset ${at.off}: ${reason}. Run \`txtdb check\`; restore from a backup if it persists`, {
      details: { file, offset: at.off },
    });
  }

  // --- manifest ---

  readManifest(): Manifest | undefined {
    return this.readManifestWithFrame()?.manifest;
  }

  /**
   * {@link readManifest}, with the bytes of the manifest's frame as read (what `backup()`
   * copies: the frame alone, never more of the file, which may be damaged past it).
   */
  readManifestWithFrame(): { manifest: Manifest; frame: Uint8Array } | undefined {
    const path = this.path(MANIFEST);
    if (!this.platform.lstat(path)) return undefined;
    const f = this.#openStoreFile(path, { readOnly: true });
    try {
      this.#mode = storeMode(f.info().mode);
      const frame = readManifestFrame(f, path);
      const r = parseFrame(frame, 0);
      if (r.kind !== "ok") {
        throw new TxtDbError("CORRUPTION", `Manifest "${path}" is damaged at offset 0: ${r.kind === "bad" ? r.reason : "truncated"}; restore it from a backup`, {
          details: { file: path, offset: 0 },
        });
      }
      const m = decodeInternal(r.body) as Partial<Manifest> | null;
      if (!m || typeof m.format !== "number") {
        throw new TxtDbError("CORRUPTION", `Manifest "${path}" has no format version`, { details: { file: path, offset: 0 } });
      }
      const out: Manifest = {
        format: m.format,
        createdAtMs: m.createdAtMs ?? 0,
        checkpoint: typeof m.checkpoint === "string" ? m.checkpoint : null,
        checkpointTsn: typeof m.checkpointTsn === "number" ? m.checkpointTsn : 0,
        firstSegment: typeof m.firstSegment === "number" ? m.firstSegment : 1,
      };
      if (m.format >= 2) {
        // Shapes are checked here; that the files exist, in checkManifestFiles (opening.ts).
        const bad = (what: string) => new TxtDbError("CORRUPTION", `Manifest "${path}" is malformed: ${what}; restore it from a backup`, { details: { file: path, offset: 0 } });
        const tables = m.tables ?? [];
        if (!Array.isArray(tables)) throw bad("its table list is not a list");
        const bound = (b: unknown): b is [number, Uint8Array] => Array.isArray(b) && b.length === 2 && Number.isSafeInteger(b[0]) && b[0] >= 0 && b[0] <= 0xffffffff && b[1] instanceof Uint8Array;
        out.tables = tables.map((t, i) => {
          if (!t || typeof t !== "object" || typeof t.name !== "string" || !Number.isSafeInteger(t.level) || t.level < 0 || t.level > LEVELS_MAX) throw bad(`table #${i} is not {name, level}`);
          if ((t.min !== undefined || t.max !== undefined) && !(bound(t.min) && bound(t.max))) throw bad(`table #${i} has malformed key bounds`);
          const expiry = typeof t.expiresAtMs === "number" && Number.isFinite(t.expiresAtMs) ? { expiresAtMs: t.expiresAtMs } : {};
          // The identity (table.ts rule 9) whole or not at all: a malformed one would check nothing, or refuse a good table.
          const u32 = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0 && (n as number) <= 0xffffffff;
          if ((t.bytes !== undefined || t.footerSum !== undefined || t.contentSum !== undefined) && !(u32(t.bytes) && u32(t.footerSum) && (t.contentSum === undefined || u32(t.contentSum)))) {
            throw bad(`table #${i} has a malformed identity (size and checksums)`);
          }
          const identity = t.bytes !== undefined ? { bytes: t.bytes, footerSum: t.footerSum!, ...(t.contentSum !== undefined ? { contentSum: t.contentSum } : {}) } : {};
          return t.min !== undefined ? { name: t.name, level: t.level, min: t.min, max: t.max!, ...expiry, ...identity } : { name: t.name, level: t.level, ...expiry, ...identity };
        });
        // A table named twice would be opened twice and read as two tables: its entries
        // listed and counted twice, a level's run no longer disjoint, and a compaction
        // merging it with itself. No compaction writes such a manifest; a crafted or
        // miswritten one is refused before anything reads by it.
        const named = new Set<string>();
        let highest = 0;
        for (const t of out.tables) {
          if (named.has(t.name)) throw bad(`it names table "${t.name}" twice`);
          named.add(t.name);
          highest = Math.max(highest, parseTableName(t.name) ?? 0);
        }
        const bindings = m.bindings ?? [];
        if (!Array.isArray(bindings) || bindings.length % 2 !== 0) throw bad("its namespace bindings are not pairs");
        // The rules a format-1 checkpoint's header is held to (checkpoint.ts), plus what the
        // index assumes of bindings at one version: each name once, each id once. Otherwise
        // a compaction hit an assertion on an id that is not a namespace id, listing
        // namespaces threw a TypeError, and two names bound to one id read each other's keys.
        const nextNsId = m.nextNsId ?? 1;
        if (!Number.isSafeInteger(nextNsId) || nextNsId < 1 || nextNsId > NS_ID_MAX + 1) throw bad(`its next namespace id ${JSON.stringify(nextNsId)} is not an integer in 1..2^32`);
        const names = new Set<string>(), ids = new Set<number>();
        for (let i = 0; i < bindings.length; i += 2) {
          const [name, id] = [bindings[i] as unknown, bindings[i + 1] as number];
          if (!isNamespaceBinding(name, id, nextNsId)) {
            throw bad(`its namespace binding #${i / 2} is not a name and an id in 1..${nextNsId - 1}`);
          }
          if (names.has(name) || ids.has(id)) throw bad(`its namespace binding #${i / 2} binds ${names.has(name) ? `the name ${JSON.stringify(name)}` : `the id ${id}`} a second time`);
          names.add(name);
          ids.add(id);
        }
        out.bindings = bindings;
        out.nextNsId = nextNsId;
        // The next table a compaction writes is named by this number. At or below a table the
        // manifest names, the compaction would rename its new table over that one while the
        // manifest still names it (a crash then leaves the store reading other content under
        // its name); outside 1 .. 10^16 - 1 it makes a name no open accepts. Refused, so that
        // nothing is written by it.
        if (m.nextTable === undefined) {
          out.nextTable = highest + 1;
        } else if (!Number.isSafeInteger(m.nextTable) || m.nextTable <= highest || m.nextTable >= TABLE_NUMBER_END) {
          throw bad(`its next table number ${JSON.stringify(m.nextTable)} is not an integer past every table it names (${highest}) and below ${TABLE_NUMBER_END}`);
        } else {
          out.nextTable = m.nextTable;
        }
        if (m.twoPhase !== undefined && m.twoPhase !== null) {
          if (typeof m.twoPhase !== "object" || !Array.isArray(m.twoPhase.prepared) || !Array.isArray(m.twoPhase.decisions)) throw bad("its two-phase part is malformed");
          out.twoPhase = m.twoPhase;
        }
      }
      return { manifest: out, frame: frame.subarray(0, r.next) };
    } finally {
      f.close();
    }
  }

  /**
   * Replaces the manifest atomically: temp file, fsync, rename, directory fsync. The temp
   * file is created exclusively (O_EXCL), so that a symlink or file someone planted as
   * MANIFEST.tmp is never written through; a stale one (a crash between create and rename;
   * the caller holds the writer lock, so no one else is writing it) is unlinked first,
   * which removes a link itself, never its target.
   */
  writeManifest(m: Manifest): void {
    this.prepareManifest(m);
    this.installManifest();
  }

  /**
   * The first half of {@link writeManifest}: `MANIFEST.tmp` written and fsynced. The caller
   * holds `compact.lock` (every writer of `MANIFEST.tmp` does, and cleanup at open deletes
   * it only under that lock), so it may do this before taking the writer lock. Returns the
   * file written (where the port can tell), for the check before the switch that the name
   * still leads to it.
   */
  prepareManifest(m: Manifest): { ino: number; dev: number } | undefined {
    const body = encodeInternal(m);
    if (body.length > FRAME_BODY_MAX_BYTES) {
      // No open could read it back (a frame that long is taken for garbage): refused before
      // anything is written, so the manifest in place stays the store's.
      throw new TxtDbError("LIMIT", `The manifest of "${this.dir}" would be ${body.length} bytes, over the ${FRAME_BODY_MAX_BYTES}-byte limit of one record: the two-phase transactions prepared and still undecided hold too much. Commit or roll them back (db.inDoubt()), then compact again`, {
        details: { bytes: body.length, limitBytes: FRAME_BODY_MAX_BYTES },
      });
    }
    const tmp = this.path(MANIFEST_TMP);
    this.platform.unlink(tmp);
    const f = this.#openStoreFile(tmp, { create: true, exclusive: true, mode: this.mode });
    try {
      f.write(frame(body), 0);
      f.sync();
      if (typeof f.info !== "function") return undefined;
      const { ino, dev } = f.info();
      return { ino, dev };
    } finally {
      f.close();
    }
  }

  /** The second half of {@link writeManifest}: the rename into place and the directory fsync. */
  installManifest(): void {
    this.platform.rename(this.path(MANIFEST_TMP), this.path(MANIFEST));
    this.platform.syncDir(this.dir);
  }

  /** Removes a prepared `MANIFEST.tmp` that will not be installed. */
  discardPreparedManifest(): void {
    this.platform.unlink(this.path(MANIFEST_TMP));
  }

  /**
   * Of `names`, the ones the manifest on disk does not name, which a failed compaction or
   * format change may delete. A manifest switch that failed after its rename (the
   * directory sync failed) may be the store's manifest all the same: its files are never
   * deleted. If the manifest cannot be read, none may be deleted.
   */
  unnamedByManifest(names: readonly string[]): string[] {
    let m: Manifest | undefined;
    try {
      m = this.readManifest();
    } catch {
      return [];
    }
    if (!m) return [];
    const named = new Set<string>((m.tables ?? []).map((t) => t.name));
    if (m.checkpoint) named.add(m.checkpoint);
    return names.filter((n) => !named.has(n));
  }

  /** Opens a store file, turning a planted non-regular file or symlink into a clear error. */
  #openStoreFile(path: string, options: OpenOptions): FileHandle {
    try {
      return this.platform.open(path, options);
    } catch (e) {
      throw storeFileError(e, path) ?? e;
    }
  }

  // --- frontier ---

  #frontier(): FileHandle {
    this.#frontierHandle ??= this.#openStoreFile(this.path(FRONTIER), this.readOnly ? { readOnly: true } : { create: true, mode: this.mode });
    return this.#frontierHandle;
  }

  /**
   * The frontier file to read, or undefined where a read-only open finds it deleted (by
   * hand: a writable open creates it again, empty, and reads the log to its end; a read-only
   * one reads it as empty too, and looks again at the next read).
   */
  #frontierToRead(): FileHandle | undefined {
    try {
      return this.#frontier();
    } catch (e) {
      if (this.readOnly && e instanceof PortError && e.errno === "ENOENT") return undefined;
      throw e;
    }
  }

  /**
   * Reads the frontier. A read can race the writer's overwrite, so a checksum mismatch
   * is retried; a frontier that stays unreadable (or is absent, or cut short by someone
   * truncating the file) reads as undefined.
   *
   * Always a pread, never a shared mapping of the file: if any process truncates a mapped
   * file (a stray `: > frontier`, a `cp` over a live store), touching the mapped page
   * raises SIGBUS and kills this process outright, which JavaScript cannot catch, and
   * nothing stops another process of the same user from truncating it. A pread of 36 bytes
   * can only ever return fewer bytes. Reads on `db` probe the frontier mirror instead where
   * they can (mirror.ts: System V shared memory, which has no file to truncate).
   */
  readFrontier(): Readonly<Frontier> | undefined {
    const f = this.#frontierToRead();
    if (!f) {
      this.frontierMiss = "absent";
      return undefined;
    }
    const buf = this.#frontierBuf;
    for (let attempt = 0; attempt < 50; attempt++) {
      if (f.read(buf, 0) < FRONTIER_BYTES) {
        this.frontierMiss = "short";
        return undefined;
      }
      const fr = this.#parseFrontier(buf, this.#frontierWords, this.#frontierView);
      if (fr) {
        this.frontierMiss = undefined;
        return fr;
      }
    }
    this.frontierMiss = "garbled";
    return undefined;
  }

  /** The frontier in `bytes` (its first 36), or undefined if its checksum fails (a write in flight). */
  #parseFrontier(bytes: Uint8Array, words: Uint32Array, view: DataView): Readonly<Frontier> | undefined {
    if (this.#lastFrontier) {
      // Unchanged since it was last checked (the usual answer to a read's probe): nine
      // word compares instead of a checksum. Words that all equal the checked ones are
      // that checked frontier, even if a writer was midway through replacing it.
      const seen = this.#lastWords;
      let same = true;
      for (let i = 0; i < seen.length; i++) {
        if (words[i] !== seen[i]) {
          same = false;
          break;
        }
      }
      if (same) return this.#lastFrontier;
    }
    if (view.getUint32(32, true) !== crc32c(bytes.subarray(0, 32))) return undefined;
    const fr: Frontier = {
      tsn: view.getFloat64(0, true),
      seg: view.getUint32(8, true),
      off: view.getFloat64(12, true),
      durableSeg: view.getUint32(20, true),
      durableOff: view.getFloat64(24, true),
    };
    this.#lastWords.set(words);
    this.#lastFrontier = fr;
    return fr;
  }

  /**
   * The frontier and the tail state (see {@link readFrontier}, {@link readTailState}) in
   * one pread of the frontier file's first 112 bytes instead of two: for callers to whom
   * the order of the two reads does not matter (the writer lock or the frontier lock keeps
   * what they depend on still). Torn parts are read again; after that, each on its own.
   */
  readHead(): { frontier: Readonly<Frontier> | undefined; tail: TailState } {
    const f = this.#frontierToRead();
    const buf = this.#headBuf;
    for (let attempt = 0; f && attempt < 50; attempt++) {
      const got = f.read(buf, 0);
      if (got < TAIL_END_AT + TAIL_END_BYTES) break; // short: each read on its own says what it means
      const frontier = this.#parseFrontier(buf, this.#headWords, this.#headView);
      const tail = this.#parseTail(buf.subarray(TAIL_END_AT, got), this.#headView, TAIL_END_AT);
      if (frontier && tail) return { frontier, tail };
    }
    return { frontier: this.readFrontier(), tail: this.readTailState() };
  }

  /**
   * Reads the tail state (see {@link TailState}) in one pread. A torn end record is a
   * concurrent write under the writer lock: read again; one that stays bad reads as
   * unknown. Any non-zero failure mark counts, even a torn one: it errs on the safe side.
   */
  readTailState(): TailState {
    const f = this.#frontierToRead();
    const buf = this.#tailBuf;
    const view = new DataView(buf.buffer);
    let got = 0;
    for (let attempt = 0; f && attempt < 50; attempt++) {
      got = f.read(buf, TAIL_END_AT);
      if (got < TAIL_END_BYTES) break;
      const st = this.#parseTail(buf.subarray(0, got), view, 0);
      if (st) return st;
    }
    // An end record whose checksum stays bad (a power loss tore its last, unsynced write:
    // the end record is never synced) reads as an unknown end; the mark beside it, which is
    // synced whenever it is set or cleared, still counts. A file cut short of the mark after
    // this process saw the mark's bytes lost whatever mark it held (`: > frontier`), so it
    // reads as garbled: the safe side (rule 8 of tail.ts verifies the tail at the next
    // writable open). A file that never reached the tail state (a store made before it
    // existed) reads as no failure.
    const failedPid = f ? this.#parseMark(got - TAIL_END_BYTES, view, TAIL_END_BYTES) : 0;
    return { endTsn: 0, end: { seg: 0, off: 0 }, epoch: 0, failedPid };
  }

  /**
   * The failure mark's pid, given `got` bytes read of it at `at` in `view` (below zero: the
   * file ends before it): 0 (clear), a pid, or SYNC_FAILURE_GARBLED for bytes txtdb never
   * writes there, or for a mark cut short after this process saw its bytes (readTailState).
   */
  #parseMark(got: number, view: DataView, at: number): number {
    if (got >= SYNC_FAILURE_BYTES) {
      this.#markSpaceKnown = true;
      const pid = view.getUint32(at, true);
      const check = view.getUint32(at + 4, true);
      if (pid === 0 && check === 0) return 0;
      return check === (~pid >>> 0) && pid !== SYNC_FAILURE_GARBLED ? pid : SYNC_FAILURE_GARBLED;
    }
    return this.#markSpaceKnown ? SYNC_FAILURE_GARBLED : 0;
  }

  /**
   * The tail state in `bytes` (the end record, then the failure mark if it was read), whose
   * first byte is at `at` in `view`; undefined if the end record's checksum fails.
   */
  #parseTail(bytes: Uint8Array, view: DataView, at: number): TailState | undefined {
    const got = bytes.length;
    const failedPid = this.#parseMark(got - TAIL_END_BYTES, view, at + TAIL_END_BYTES);
    if (bytes.subarray(0, TAIL_END_BYTES).every((b) => b === 0)) return { endTsn: 0, end: { seg: 0, off: 0 }, epoch: 0, failedPid };
    if (view.getUint32(at + 36, true) !== crc32c(bytes.subarray(0, 36))) return undefined;
    return {
      endTsn: view.getFloat64(at, true),
      end: { seg: view.getUint32(at + 8, true), off: view.getFloat64(at + 12, true) },
      epoch: view.getUint32(at + 20, true),
      failedPid,
    };
  }

  /** Writes the tail state's end record (end, epoch); the caller holds the writer lock. */
  writeTailEnd(st: Omit<TailState, "failedPid">): void {
    const buf = new Uint8Array(TAIL_END_BYTES);
    const view = new DataView(buf.buffer);
    view.setFloat64(0, st.endTsn, true);
    view.setUint32(8, st.end.seg, true);
    view.setFloat64(12, st.end.off, true);
    view.setUint32(20, st.epoch >>> 0, true);
    view.setUint32(36, crc32c(buf.subarray(0, 36)), true);
    const f = this.#frontier();
    f.write(buf, TAIL_END_AT);
    if (!this.#markSpaceKnown) {
      // The sync-failure mark's bytes exist (as zeros: no mark) from now on, so that every
      // read of the tail state is one pread of its full length: a read that reaches past
      // the file's end costs a second call to learn it is the end. Extending to exactly
      // the mark's end never clears a mark (it only ever adds zeros past the old end).
      if (f.size() < SYNC_FAILURE_AT + SYNC_FAILURE_BYTES) f.truncate(SYNC_FAILURE_AT + SYNC_FAILURE_BYTES);
      this.#markSpaceKnown = true;
    }
  }

  /**
   * Sets (a pid) or clears (0) the sync-failure mark, durably: the frontier file is synced
   * with it. A mark lost to a power loss would let the next open publish the failed
   * batches; a clearing lost to one would make the next open cut commits that resolved
   * after the repair. (The frontier file is otherwise never synced.) The caller holds the
   * frontier lock.
   */
  writeSyncFailure(pid: number): void {
    const buf = new Uint8Array(SYNC_FAILURE_BYTES);
    const view = new DataView(buf.buffer);
    if (pid !== 0) {
      view.setUint32(0, pid >>> 0, true);
      view.setUint32(4, ~pid >>> 0, true);
    }
    const f = this.#frontier();
    f.write(buf, SYNC_FAILURE_AT);
    f.datasync();
  }

  /**
   * Runs `fn` holding the frontier file's own flock: the frontier only moves forward, so a
   * publish is read, compare, write, and two processes publishing at once must not
   * interleave (a slower one would move it back). Held for a few system calls, never
   * across an await, so a waiter retries at once rather than sleeping; a holder stopped
   * for longer than FRONTIER_LOCK_WAIT_MS_MAX (SIGSTOP) fails the publish with IO.
   */
  withFrontierLocked<T>(fn: () => T): T {
    const f = this.#frontier();
    this.#spinLock(f);
    try {
      return fn();
    } finally {
      f.unlock();
    }
  }

  #spinLock(f: FileHandle): void {
    if (f.tryLock(true)) return;
    const t0 = this.platform.monotonicMs();
    for (let i = 1; !f.tryLock(true); i++) {
      if ((i & 255) === 0 && (this.platform.monotonicMs() - t0 > FRONTIER_LOCK_WAIT_MS_MAX || i > 1 << 24)) {
        throw new TxtDbError("IO", `Cannot lock "${f.path}" after ${FRONTIER_LOCK_WAIT_MS_MAX} ms: another process holds it and does not go on (stopped?); see \`txtdb doctor\``);
      }
    }
  }

  /** Overwrites the frontier in place (one small write; readers retry a torn read). */
  publishFrontier(fr: Frontier): void {
    const bytes = encodeFrontier(fr);
    this.#frontier().write(bytes, 0);
    this.#mirror?.publish(bytes); // after the file (mirror.ts rule 1)
  }

  // --- the frontier mirror (mirror.ts) ---

  /** Attaches the frontier mirror where the platform offers one; true if it is attached. */
  attachMirror(): boolean {
    this.#mirror ??= FrontierMirror.attach({
      platform: this.platform,
      readOnly: this.readOnly,
      openLockFile: (name) => this.openLockFile(name),
      frontierInfo: () => this.#frontier().info(),
      frontierBytes: () => {
        const fr = this.readFrontier();
        return fr && encodeFrontier(fr);
      },
    });
    return this.#mirror !== undefined;
  }

  /** Opens a small lock file of the store directory, creating it unless read-only; the caller closes it. */
  openLockFile(name: string): FileHandle {
    return this.#openStoreFile(this.path(name), this.readOnly ? { readOnly: true } : { create: true, mode: this.mode });
  }

  /** True while the frontier mirror is attached. */
  get mirrored(): boolean {
    return this.#mirror !== undefined;
  }

  /** True while this process is registered as a reader of the mirror (mirror.ts rule 3). */
  get mirrorReaderRegistered(): boolean {
    return this.#mirror?.registered ?? false;
  }

  /** Registers this process as a reader of the mirror (mirror.ts rule 3); false if it could not. */
  registerMirrorReader(): boolean {
    return this.#mirror?.register() ?? false;
  }

  /** Ends this process's registration as a reader of the mirror. */
  unregisterMirrorReader(): void {
    this.#mirror?.unregister();
  }

  /** The frontier the mirror holds, or undefined (none attached, a write in flight, a bad copy): then probe the file. */
  readMirroredFrontier(): Readonly<Frontier> | undefined {
    const m = this.#mirror;
    if (m === undefined || !m.read(this.#mirrorWords)) return undefined;
    return this.#parseFrontier(this.#mirrorBuf, this.#mirrorWords, this.#mirrorView);
  }

  /**
   * Mirror rule 4: makes the mirror show at least what the frontier file shows, when
   * another process published it in the file alone. Takes the frontier lock.
   */
  copyFrontierToMirror(): void {
    const m = this.#mirror;
    if (m === undefined) return;
    this.withFrontierLocked(() => {
      const fr = this.readFrontier();
      if (fr) m.publish(encodeFrontier(fr));
    });
  }

  // --- segments ---

  listSegments(): number[] {
    const out: number[] = [];
    for (const name of this.platform.readdir(this.dir)) {
      const n = parseSegmentName(name);
      if (n !== undefined) out.push(n);
    }
    return out.sort((a, b) => a - b);
  }

  segment(n: number): FileHandle | undefined {
    let f = this.#segments.get(n);
    if (f) return f;
    const path = this.path(segmentName(n));
    try {
      f = this.platform.open(path, { readOnly: this.readOnly });
    } catch (e) {
      if (e instanceof PortError && e.errno === "ENOENT") return undefined;
      throw storeFileError(e, path) ?? e;
    }
    this.#segments.set(n, f);
    return f;
  }

  /**
   * A second handle of segment `n`, which the caller owns and closes: its own open file
   * description, so its flock is apart from the usual handle's (tail.ts waits for the sync
   * lock through it).
   */
  openSegmentAgain(n: number): FileHandle {
    return this.#openStoreFile(this.path(segmentName(n)), { readOnly: this.readOnly });
  }

  /** Forgets (closes) the handle of segment `n`, e.g. before deleting it. */
  forgetSegment(n: number): void {
    this.#segments.get(n)?.close();
    this.#segments.delete(n);
  }

  /**
   * Creates segment `n`, empty (durably: the directory is synced). The caller holds the
   * writer lock and has caught up: no published commit lies in a segment `n` yet.
   *
   * A file `n` may exist already, left by a roll-over that failed (ENOSPC, EIO) or a writer
   * that died before publishing into it. It holds nothing published, so it is emptied and
   * reused in place rather than replaced: other processes may hold it open, and a new inode
   * under the old name would leave them reading the orphan. The port's open never follows
   * a symlink and refuses a non-regular file, so a planted one fails instead. A new file
   * is created exclusively (O_EXCL), never through a link.
   *
   * Every handle this opens is either kept (one per segment: an earlier handle of `n` is
   * closed first) or closed on failure: a roll-over that fails on each commit must not
   * leak a descriptor each time.
   */
  createSegment(n: number): FileHandle {
    const path = this.path(segmentName(n));
    this.forgetSegment(n);
    this.#followStoreMode();
    let f: FileHandle;
    let fresh = true;
    try {
      f = this.platform.open(path, { create: true, exclusive: true, mode: this.mode });
    } catch (e) {
      if (!(e instanceof PortError && e.errno === "EEXIST")) throw storeFileError(e, path) ?? e;
      f = this.#openStoreFile(path, { mode: this.mode });
      fresh = false;
    }
    try {
      if (!fresh && f.size() > 0) f.truncate(0);
      this.platform.syncDir(this.dir);
    } catch (e) {
      f.close();
      throw e;
    }
    this.#segments.set(n, f);
    return f;
  }

  /**
   * Visits every whole frame from `from` up to `to` (exclusive; undefined: to the end of
   * the last segment). Stops at the first frame that is incomplete or bad.
   */
  scan(from: LogPosition, to: LogPosition | undefined, visit: (body: Uint8Array, at: LogPosition, next: LogPosition) => void): ScanEnd {
    let seg = from.seg;
    let off = from.off;
    for (;;) {
      if (to && seg > to.seg) return { end: { seg, off } };
      const file = this.segment(seg);
      if (!file) {
        if (to && comparePositions({ seg, off }, to) < 0) {
          return { end: { seg, off }, problem: { at: { seg, off }, reason: `segment ${segmentName(seg)} is missing`, incomplete: false } };
        }
        return { end: { seg, off } };
      }
      // The file's size is asked for only once a read comes back short: the common catch-up
      // reads one chunk of preallocated zeros, and an fstat per scan was a system call more.
      const target = to && seg === to.seg ? to.off : Infinity;
      let chunk = READ_CHUNK_FIRST_BYTES;
      let atEof = false;
      let fileEnd = Infinity; // known once a read came back short
      while (off < target) {
        const want = Math.min(target - off, chunk);
        let buf: Uint8Array;
        let got: number;
        if (want === READ_CHUNK_FIRST_BYTES && to === undefined) {
          // The commonest read of all: a catch-up at the log's end, finding preallocated zeros.
          // It goes into one buffer kept for it; only when it finds more than zeros are its
          // bytes copied into one of their own (the visitor may keep the bodies it is given).
          got = file.read(this.#probeBuffer, off);
          if (got > 0 && parseFrame(this.#probeBuffer.subarray(0, got), 0).kind === "zero") return { end: { seg, off }, zeroEnd: true };
          buf = this.#probeBuffer.slice(0, want);
        } else {
          buf = new Uint8Array(want);
          got = file.read(buf, off);
        }
        if (got < want) {
          // Short: the file ends at off + got, or before off if it was cut under us.
          const size = got > 0 ? off + got : file.size();
          if (size < off) {
            // Cut under this process (by hand, a restore of an old copy): records it read and
            // may have acknowledged are gone. Without this, a scan took the cut segment for a
            // sealed one, and the writer went on appending past a hole of zeros, acknowledging
            // commits into a store that no longer opened.
            return { end: { seg, off }, problem: { at: { seg, off }, reason: `segment is ${size} bytes, shorter than the ${off} bytes already read from it: it was cut or replaced under this process`, incomplete: false, cut: true } };
          }
          atEof = true;
          fileEnd = size;
        }
        let at = 0;
        for (;;) {
          const r = parseFrame(buf.subarray(0, got), at);
          if (r.kind === "ok") {
            visit(r.body, { seg, off: off + at }, { seg, off: off + r.next });
            at = r.next;
            continue;
          }
          if (r.kind === "bad") return { end: { seg, off: off + at }, problem: { at: { seg, off: off + at }, reason: r.reason, incomplete: false } };
          if (r.kind === "zero") {
            const here = { seg, off: off + at };
            // Zeros where a target says records are: they are missing.
            if (to) return { end: here, problem: { at: here, reason: "zeros where records should be", incomplete: false } };
            return { end: here, zeroEnd: true };
          }
          break;
        }
        if (at === 0) {
          // The next frame does not fit in this read: read more, or it is cut short.
          if (atEof) {
            // The file ends here, between frames, or inside one: short of a target it is the
            // segment that ends early (below), else a frame cut short.
            if (got === 0 || target !== Infinity) break;
            return { end: { seg, off }, problem: { at: { seg, off }, reason: "frame is cut short", incomplete: true } };
          }
          if (want >= target - off) {
            return { end: { seg, off }, problem: { at: { seg, off }, reason: "frame is cut short", incomplete: true } };
          }
          const header = buf.subarray(0, FRAME_HEADER_BYTES);
          const needed = header.length === FRAME_HEADER_BYTES ? new DataView(header.buffer, header.byteOffset).getUint32(1, true) + FRAME_HEADER_BYTES : chunk * 2;
          chunk = Math.max(chunk * 2, needed);
          continue;
        }
        off += at;
        // At the file's end with bytes left after the last whole frame: the next read starts
        // at those bytes and says what they are (a frame cut short).
        if (atEof && at === got) break;
        atEof = false;
        chunk = Math.min(chunk * 2, READ_CHUNK_MAX_BYTES);
      }
      if (off < target && target !== Infinity) {
        // The file ended before the frontier's position in it.
        return { end: { seg, off }, problem: { at: { seg, off: fileEnd }, reason: `segment ends at ${fileEnd} before the frontier at ${target}`, incomplete: true } };
      }
      if (to && seg === to.seg) return { end: { seg, off } };
      if (!this.segment(seg + 1)) return { end: { seg, off } };
      seg++;
      off = 0;
    }
  }

  /** True if a whole, checksummed frame starts at `pos` (two reads: its header, then the frame). */
  wholeFrameAt(pos: LogPosition): boolean {
    const file = this.segment(pos.seg);
    if (!file) return false;
    const head = new Uint8Array(FRAME_HEADER_BYTES);
    if (file.read(head, pos.off) < FRAME_HEADER_BYTES || head[0] !== FRAME_MAGIC) return false;
    const bytes = Math.min(FRAME_HEADER_BYTES + new DataView(head.buffer).getUint32(1, true), file.size() - pos.off);
    const buf = new Uint8Array(Math.max(bytes, FRAME_HEADER_BYTES));
    const got = file.read(buf, pos.off);
    return parseFrame(buf.subarray(0, got), 0).kind === "ok";
  }

  /**
   * Whether anything was written at `pos` or after it in a later segment: a byte other than
   * preallocated zeros where the next record would start, or a next segment. One small read
   * (and a stat of the next segment's name), so that a read-only open can tell cheaply
   * whether a dead writer left records past the frontier (tail.ts rule 11).
   */
  writtenAt(pos: LogPosition): boolean {
    const file = this.segment(pos.seg);
    if (file) {
      const byte = new Uint8Array(1);
      if (file.read(byte, pos.off) === 1 && byte[0] !== 0) return true;
    }
    return this.platform.stat(this.path(segmentName(pos.seg + 1))) !== undefined;
  }

  /**
   * True if a whole, checksummed frame starts anywhere after `pos` (in its segment or the
   * segments that follow it, n + 1 after n, up to the first number missing), or if more
   * bytes follow it there than one torn write leaves. A bad frame followed by a good one is
   * damage in the middle of the log, never a torn tail: a torn tail is, by definition, the
   * last thing written. Only the segments the log goes on into count: a stray file with a
   * higher number past a missing one (a copy left by hand) is no part of the log, and
   * judging by it refused the repair of a plain torn tail as CORRUPTION.
   */
  validFrameAfter(pos: LogPosition): boolean {
    for (let n = pos.seg; ; n++) {
      const file = this.segment(n);
      if (!file) return false;
      const from = n === pos.seg ? pos.off + 1 : 0;
      const size = file.size();
      if (size <= from) continue;
      // More than a torn write leaves is damage, and is not read: read whole, a segment
      // someone extended (a sparse file of many gigabytes) failed the open with an
      // allocation error instead of CORRUPTION.
      if (size - from > TORN_WRITE_MAX_BYTES) return true;
      const buf = new Uint8Array(size - from);
      const got = file.read(buf, from);
      const view = buf.subarray(0, got);
      for (let i = view.indexOf(FRAME_MAGIC); i >= 0; i = view.indexOf(FRAME_MAGIC, i + 1)) {
        if (parseFrame(view, i).kind === "ok") return true;
      }
    }
  }

  /**
   * Makes sure segment `file` has allocated (zero-filled) space up to `end`, growing it in
   * PREALLOCATE_BYTES steps. The zeros become durable with the next fdatasync.
   */
  preallocate(file: FileHandle, end: number, limitBytes: number): void {
    // The size this process last saw or made, so that a commit into space already
    // allocated costs no fstat. Files only grow, but for a cut (truncateAt, or a sealed
    // segment, which is not written again); a stale, larger figure would only let a
    // write extend the file itself, which is correct, merely a slower sync.
    if ((this.#allocated.get(file) ?? 0) >= end) return;
    const size = file.size();
    this.#allocated.set(file, size);
    if (size >= end) return;
    const target = Math.max(end, Math.min(size + PREALLOCATE_BYTES, Math.max(limitBytes, end)));
    for (let at = size; at < target; at += ZEROS.length) {
      file.write(at + ZEROS.length <= target ? ZEROS : ZEROS.subarray(0, target - at), at);
    }
    this.#allocated.set(file, target);
  }

  /**
   * Cuts segment `pos.seg` at `pos.off`, removes the segments the log went on into after it
   * (n + 1 after n, up to the first number missing: the ones {@link validFrameAfter} looked
   * at), and syncs. A stray higher-numbered file past a missing number is no part of the log
   * and is left alone, as cleanup leaves any file that is not the store's.
   */
  truncateAt(pos: LogPosition): void {
    const f = this.segment(pos.seg);
    if (f) {
      this.#allocated.delete(f);
      f.truncate(pos.off);
      f.datasync();
    }
    for (let n = pos.seg + 1; this.platform.lstat(this.path(segmentName(n))) !== undefined; n++) {
      this.#segments.get(n)?.close();
      this.#segments.delete(n);
      this.platform.unlink(this.path(segmentName(n)));
    }
    this.platform.syncDir(this.dir);
  }

  close(): void {
    const mirror = this.#mirror;
    this.#mirror = undefined; // nothing reads the region after this (a detached region is a crash to touch)
    mirror?.detach();
    for (const f of this.#segments.values()) f.close();
    this.#segments.clear();
    this.#frontierHandle?.close();
    this.#frontierHandle = undefined;
    this.#lastFrontier = undefined;
  }
}
