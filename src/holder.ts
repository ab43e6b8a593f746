/**
 * Who holds the writer lock, or `compact.lock`, for diagnostics (`txtdb doctor`, the
 * LOCK_TIMEOUT message).
 *
 * The lock itself is flock(2) on `writer.lock` (and on the store directory, its guard: see
 * lock.ts); the kernel says whether it is held, not by
 * whom. So each process that takes it writes a fixed-size record into the lock file's first
 * bytes: its pid, runtime and when it took the lock. The record is a hint: a holder killed
 * before it wrote leaves the previous holder's record, so readers trust it only while the
 * lock is actually held (see `readWriterHolder`), and never use it for liveness. A process
 * that takes the lock again within {@link HOLDER_RESTAMP_MS} of its last record, and finds
 * that record still in the file, leaves it (see {@link stampHolder}): "since" is then when
 * its run of takes began, at most that long before this one.
 * `compact.lock` carries the same record, written by its FileLock at each exclusive take
 * (compaction, backup, a format change: see compact.ts), and read by {@link readLockHolder}.
 *
 * @module
 */
import type { FileHandle, LockHandle, Platform } from "./port.ts";
import { WRITER_LOCK } from "./files.ts";
import { sameBytes } from "./keys.ts";

/** Bytes of the holder record at the start of `writer.lock`. */
export const HOLDER_RECORD_BYTES = 128;

/** The writer lock's holder, as it described itself. */
export interface WriterHolder {
  pid: number;
  runtime: string;
  /** Wall-clock time the lock was taken (ms since the epoch). */
  sinceWallMs: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The record's part that stays the same for a process (pid, runtime), by platform. */
const recordHeads = new WeakMap<Platform, string>();

/**
 * Encodes this process's holder record (padded JSON, so a reader never needs a length).
 * Written at acquisitions of the writer lock (see {@link stampHolder}), so its fixed part is built once.
 */
export function holderRecord(platform: Platform, nowWallMs: number = platform.wallClockMs()): Uint8Array {
  let head = recordHeads.get(platform);
  if (head === undefined) {
    head = JSON.stringify({ pid: platform.pid, runtime: platform.runtime }).slice(0, -1);
    recordHeads.set(platform, head);
  }
  const json = `${head},"sinceWallMs":${JSON.stringify(nowWallMs)}}`;
  const out = new Uint8Array(HOLDER_RECORD_BYTES).fill(0x20);
  out.set(encoder.encode(json).subarray(0, HOLDER_RECORD_BYTES - 1));
  out[HOLDER_RECORD_BYTES - 1] = 0x0a;
  return out;
}

/** Parses a holder record; undefined when the bytes are not one. */
export function parseHolderRecord(bytes: Uint8Array): WriterHolder | undefined {
  try {
    const v: unknown = JSON.parse(decoder.decode(bytes).trim());
    if (v === null || typeof v !== "object") return undefined;
    const { pid, runtime, sinceWallMs } = v as Record<string, unknown>;
    if (!Number.isSafeInteger(pid) || typeof runtime !== "string" || typeof sinceWallMs !== "number") return undefined;
    return { pid: pid as number, runtime: runtime.replace(/[^a-z0-9._-]/gi, "?").slice(0, 16), sinceWallMs };
  } catch {
    return undefined;
  }
}

/** Reads the holder record from an open lock file handle. */
export function readHolderFrom(handle: FileHandle): WriterHolder | undefined {
  const buf = new Uint8Array(HOLDER_RECORD_BYTES);
  const n = handle.read(buf, 0);
  return n === 0 ? undefined : parseHolderRecord(buf.subarray(0, n));
}

/**
 * Whether the writer lock of the store at `dir` is held by another open file description,
 * and if so who says it holds it (`guard`: held through the store directory's flock alone,
 * its lock file free or missing). `held: false` when it is free right now. Opens the lock
 * file read-only (a shared flock attempt needs no write access) and never creates it.
 */
export function readWriterHolder(platform: Platform, dir: string): { held: boolean; holder: WriterHolder | undefined; guard?: boolean } {
  // A writer takes the file, then the guard, and lets go of the guard first: one that takes
  // both between the two looks below shows "file free, guard held", as a writer whose file
  // was deleted does. So that is believed only when seen in GUARD_ONLY_LOOKS looks in a row
  // (seen once, against a busy healthy writer: `txtdb doctor` warned of a deleted writer.lock).
  for (let look = 1; ; look++) {
    const file = readLockHolder(platform, `${dir}/${WRITER_LOCK}`);
    if (file.held) return file;
    // The file free or missing: its guard (lock.ts) may still be held, by a writer whose file was deleted since.
    let dirHandle: LockHandle | undefined;
    try {
      dirHandle = platform.openDirectoryLock?.(dir);
    } catch {
      dirHandle = undefined; // the directory cannot be opened: nobody is told it is held
    }
    let guard = false;
    try {
      if (dirHandle) guard = heldElsewhere(dirHandle);
    } finally {
      dirHandle?.close();
    }
    if (!guard || look >= GUARD_ONLY_LOOKS) return { held: guard, holder: undefined, guard };
  }
}

/** Looks in a row that must find the writer lock's file free and its guard held to say it is held through the guard alone. */
const GUARD_ONLY_LOOKS = 3;

/**
 * Whether the lock file at `path` (no guard: `compact.lock`) is held by another open file
 * description, and who says it holds it. Read-only and never blocking; a missing file is free.
 */
export function readLockHolder(platform: Platform, path: string): { held: boolean; holder: WriterHolder | undefined } {
  let handle: FileHandle;
  try {
    handle = platform.open(path, { readOnly: true });
  } catch {
    return { held: false, holder: undefined }; // no file (never compacted, or a cleaner deleted it)
  }
  try {
    return heldElsewhere(handle) ? { held: true, holder: readHolderFrom(handle) } : { held: false, holder: undefined };
  } finally {
    handle.close();
  }
}

/** Whether another open file description holds `handle`'s flock: a shared attempt fails (and one that succeeds is let go). */
function heldElsewhere(handle: LockHandle): boolean {
  if (!handle.tryLock(false)) return true;
  handle.unlock();
  return false;
}

/**
 * How long a process's holder record stands for its later takes of the writer lock. Why:
 * a commit takes the lock, and a write to the lock file costs a system call that changes the
 * file's times (~5 µs here, against ~1.5 µs for the read that finds the record in place),
 * at every commit of a process committing in a loop. Bounded so that "since" says how long
 * a stopped holder has held the lock to within this much.
 */
export const HOLDER_RESTAMP_MS = 100;

/** Per lock, the record this process last wrote into it and when (wall-clock ms). */
const lastStamps = new WeakMap<object, { bytes: Uint8Array; wallMs: number }>();
const stampRead = new Uint8Array(HOLDER_RECORD_BYTES);

/**
 * Writes who holds the writer lock into the lock file (see {@link holderRecord}), for
 * `txtdb doctor` and LOCK_TIMEOUT messages, unless this process's own record, written less
 * than {@link HOLDER_RESTAMP_MS} ago, is still there (read back and compared: another
 * process, or another handle, that took the lock since wrote its own). `afterWait`: the
 * lock was taken after waiting for another holder, whose record is there: written without
 * the look. A courtesy: a failed write changes nothing else. Call it holding the lock.
 */
export function stampHolder(lock: { stamp(bytes: Uint8Array): void; readStamp?(into: Uint8Array): number }, platform: Platform, afterWait = false): void {
  try {
    const now = platform.wallClockMs();
    const last = lastStamps.get(lock);
    if (!afterWait && last && lock.readStamp && now >= last.wallMs && now - last.wallMs < HOLDER_RESTAMP_MS) {
      let mineThere = false;
      try {
        mineThere = lock.readStamp(stampRead) === HOLDER_RECORD_BYTES && sameBytes(stampRead, last.bytes);
      } catch {
        // unreadable: written again below
      }
      if (mineThere) return;
    }
    lastStamps.delete(lock);
    const bytes = holderRecord(platform, now);
    lock.stamp(bytes);
    lastStamps.set(lock, { bytes, wallMs: now });
  } catch {
    // diagnostics only
  }
}

/**
 * The pids the kernel names as holding an exclusive flock on the file `file` (device and
 * inode), from Linux's `/proc/locks`; undefined where that cannot be read (not Linux, Deno
 * without access to /proc). The holder record is a hint that only txtdb writes: a lock taken
 * by another program (`flock(1)` on `writer.lock`, another user's process in a group-shared
 * store) leaves the previous txtdb holder's record in place, which would blame that process.
 * The kernel's table names the real one (the pid that took the lock).
 */
export function kernelFlockHolders(platform: Platform, file: { dev: number; ino: number }): number[] | undefined {
  let text = "";
  try {
    const f = platform.open("/proc/locks", { readOnly: true });
    try {
      const buf = new Uint8Array(64 * 1024);
      const decoder = new TextDecoder();
      for (let at = 0; at < 16 * 1024 * 1024; ) {
        const n = f.read(buf, at);
        if (n <= 0) break;
        text += decoder.decode(buf.subarray(0, n), { stream: true });
        at += n;
      }
    } finally {
      f.close();
    }
  } catch {
    return undefined;
  }
  // glibc's encoding of st_dev: the major and minor numbers /proc/locks prints in hex.
  const major = Math.floor(file.dev / 256) & 0xfff;
  const minor = (file.dev & 0xff) | (Math.floor(file.dev / 4096) & 0xfff00);
  const pids: number[] = [];
  for (const line of text.split("\n")) {
    // "1: FLOCK  ADVISORY  WRITE 4242 00:2d:1234 0 EOF"; a waiter's line has "->" after the number.
    const m = /^\d+:\s+FLOCK\s+\S+\s+WRITE\s+(\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/.exec(line);
    if (m && Number(m[4]) === file.ino && parseInt(m[2]!, 16) === major && parseInt(m[3]!, 16) === minor) pids.push(Number(m[1]));
  }
  return pids;
}

/**
 * What the kernel says of the holder when the record names another process, or none: a
 * sentence naming the real holder's pid, or "" (the record agrees, or the kernel's table
 * cannot be read).
 */
export function unrecordedHolder(platform: Platform, file: { dev: number; ino: number }, recorded: number | undefined): { pid: number; text: string } | undefined {
  const pids = kernelFlockHolders(platform, file);
  if (pids === undefined || pids.length === 0 || (recorded !== undefined && pids.includes(recorded))) return undefined;
  const pid = pids[0]!;
  // A txtdb process records itself right after its grant, but one stopped (SIGSTOP, a
  // debugger) in between holds the lock unrecorded as long as another program would: this
  // says both (doctor, which sees the leases, tells them apart).
  const earlier = recorded === undefined ? "" : `; the record in the file names pid ${recorded}, an earlier holder`;
  const why = `which has not recorded itself (a txtdb process that has just taken the lock or was stopped right after, or another program: flock(1), another user's process)${earlier}`;
  return { pid, text: `held by pid ${pid} per the kernel's lock table, ${why}` };
}

/** The holder description a LOCK_TIMEOUT message ends with (see `FileLock.describeHolder`). */
export function describeHolder(platform: Platform): (handle: FileHandle) => string {
  return (handle) => {
    const h = readHolderFrom(handle);
    let real: ReturnType<typeof unrecordedHolder>;
    try {
      real = unrecordedHolder(platform, handle.info(), h?.pid);
    } catch {
      real = undefined;
    }
    if (real) return ` (${real.text}; it keeps the lock until it lets go or dies)`;
    if (!h) return "";
    const forMs = Math.max(0, Math.round(platform.wallClockMs() - h.sinceWallMs));
    return ` (it says: pid ${h.pid}, ${h.runtime}, since ${forMs} ms ago; a stopped or hung process keeps it until it dies)`;
  };
}
