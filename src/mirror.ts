/**
 * The frontier mirror: a copy of the frontier's 36 bytes in System V shared memory, so that
 * the freshness probe of a read on `db` is a memory read instead of a pread.
 *
 * Why: on this kind of machine every system call costs ~2 µs, and with page-table isolation
 * and no PCID it also empties the TLB, so the JavaScript of the read that follows runs
 * slower still: a cached point read took ~1.3 µs without its probe and ~5.2 µs with it.
 * Mapping the frontier file instead would make it a memory read too, but a mapped file that
 * someone truncates (`: > frontier`) kills every process that maps it with SIGBUS; a shared
 * memory segment has no file to truncate.
 *
 * Not every process can attach it: Deno would need `--allow-ffi`, an older release knows
 * nothing of it, and an attach can fail. So the mirror is a hint that readers may trust for
 * a bounded time, and processes without it make their commits wait that long:
 *
 * 1. The frontier file stays the truth. The mirror only ever holds a frontier the file held
 *    (or held before): it is written after the file, in the frontier lock, by every process
 *    that has it attached; a torn or unchecked copy reads as absent.
 * 2. A reader with the mirror reads the file (a "file probe") at least every
 *    {@link MIRROR_TRUST_MS}, and in between may probe the mirror instead. The time of a
 *    file probe is taken before its pread, and counts only once the read it served succeeded.
 * 3. A reader reads through the mirror only while it holds a shared flock on
 *    `readers.lock` (it is "registered"), and only on the strength of a file probe made
 *    after it registered. It registers at its first read and lets go once it has not read
 *    for {@link READER_IDLE_MS}, so a process that stopped reading makes nobody wait.
 * 4. A process with the mirror resolves a commit only once the mirror shows a frontier
 *    covering it. A frontier another process published in the file alone (rule 5) is
 *    copied into the mirror first, in the frontier lock.
 * 5. A process without the mirror, once the frontier (file) covers its commit, looks at
 *    `readers.lock`: if no reader holds it, the commit resolves; otherwise it resolves
 *    {@link MIRROR_TRUST_MS} after that look, by then every registered reader has probed the
 *    file since (rule 2). A reader that registers after the look probes the file after it
 *    (rule 3), so it sees the commit too.
 *
 * Together: a read that begins after a commit resolved in any process sees it, as with a
 * file probe on every read. Only durations are compared across processes, and every
 * runtime's `performance.now()` reads the kernel's one monotonic clock. What a user of the
 * same uid can still do: write a stale but well-formed frontier into the segment, or delete
 * `readers.lock` under registered readers (a process without the mirror that opens it
 * afterwards finds nobody on the new file). Rule 2 bounds both: a read is then at most
 * MIRROR_TRUST_MS late.
 *
 * The segment has no key: its creator marks it removed at once (IPC_RMID), so the kernel
 * destroys it when the last process detaches, whether it closed the store, exited, crashed
 * or was killed, and nothing is ever left behind. Processes find it by its id, which its
 * creator writes into `mirror.lock` (a hint), else by listing the segments; its header
 * names the frontier file (device and inode: a copy of the store directory gets a segment
 * of its own), the layout and {@link MIRROR_TRUST_MS}. A segment is joined only if it is
 * this user's, owner-only, of the expected size, marked removed, attached somewhere, and
 * its header names this store; another program's segment is never written. Attaching
 * happens under the flock of `mirror.lock`, so two processes never make two segments for
 * one store; a process that finds this store's segment of another layout or trust time (a
 * process of another release) works without the mirror rather than beside it. So does a
 * process of a user other than the frontier file's owner (a group-shared store, another
 * user's read-only open): it could not join the owner's segment, and one of its own would
 * be written by none of the owner's commits.
 *
 * @module
 */
import { MIRROR_LOCK, READERS_LOCK } from "./files.ts";
import type { FileHandle, FileInfo, Platform, SharedMemory, SharedRegion, SharedSegmentInfo } from "./port.ts";

/** How long a reader trusts the mirror after a file probe (rule 2), and how long a commit without it waits (rule 5). */
export const MIRROR_TRUST_MS = 0.25;

/** A registered reader that has not read for this long lets go of `readers.lock` (rule 3). */
export const READER_IDLE_MS = 50;

/** Bytes of the segment (one page; the layout below uses the first 68). */
const REGION_BYTES = 4096;
/** "txm1": a txtdb frontier mirror. */
const MAGIC = 0x31_6d_78_74;
/**
 * The header's layout and the protocol's rules. MIRROR_TRUST_MS is part of the protocol: a
 * process without the mirror waits its own value, so a release must not change it without
 * a new layout (whose processes then keep off this one's segments).
 */
const LAYOUT = 2;
/**
 * Header: magic u32 @0, layout u32 @4, device f64 @8, inode f64 @16, sequence i32 @24,
 * trust time in µs u32 @28.
 */
const SEQ_INDEX = 6;
const TRUST_US = Math.round(MIRROR_TRUST_MS * 1000);
/** `mirror.lock`'s first 8 bytes: the magic and the id of the segment (a hint: checked before use). */
const HINT_BYTES = 8;
/** The frontier's 36 bytes, at a multiple of 4. */
const FRONTIER_AT = 32;
const FRONTIER_WORDS = 9;
/** Longest an attach spins for `mirror.lock` (its holders keep it for microseconds; a stopped one: the process goes without). */
const LIFECYCLE_WAIT_MS_MAX = 10;

/** What the mirror needs of the log (log.ts). */
export interface MirrorHost {
  readonly platform: Platform;
  /** A read-only open: it writes no hint into `mirror.lock`. */
  readonly readOnly: boolean;
  /** Opens (creating it unless read-only) a small lock file of the store directory. */
  openLockFile(name: string): FileHandle;
  /** The frontier file's identity. */
  frontierInfo(): FileInfo;
  /** The frontier file's 36 bytes as last checked (log.ts readFrontier), or undefined if unreadable. */
  frontierBytes(): Uint8Array | undefined;
}

/** Longest a reader spins to register (rule 3) before it probes the file unregistered instead. */
const REGISTER_WAIT_MS_MAX = 1;

/** Spins on `f`'s flock for up to `waitMsMax`; false if its holder never lets go. */
function spinLock(platform: Platform, f: FileHandle, exclusive: boolean, waitMsMax = LIFECYCLE_WAIT_MS_MAX): boolean {
  if (f.tryLock(exclusive)) return true;
  const t0 = platform.monotonicMs();
  for (let i = 1; ; i++) {
    if (f.tryLock(exclusive)) return true;
    if ((i & 15) === 0 && platform.monotonicMs() - t0 > waitMsMax) return false;
  }
}

/** What a segment's header says of it, for the store whose frontier file is `file`. */
type Verdict = "this store" | "another layout" | "not this store";

function verdictOf(bytes: Uint8Array, file: FileInfo): Verdict {
  const view = new DataView(bytes.buffer, bytes.byteOffset, FRONTIER_AT);
  if (view.getUint32(0, true) !== MAGIC || view.getFloat64(8, true) !== file.dev || view.getFloat64(16, true) !== file.ino) return "not this store";
  return view.getUint32(4, true) === LAYOUT && view.getUint32(28, true) === TRUST_US ? "this store" : "another layout";
}

/** True if segment `info` may be a store's mirror of this user: owner-only, the size, removed, attached. */
function candidate(info: SharedSegmentInfo | undefined, uid: number): info is SharedSegmentInfo {
  return info !== undefined && info.uid === uid && info.removed && info.attached > 0 && info.bytes === REGION_BYTES && (info.mode & 0o077) === 0;
}

/**
 * Looks at segment `id` (a candidate): attached here if its header names this store in this
 * layout; "another layout" if it names this store otherwise; undefined if not this store's.
 */
function tryJoin(shm: SharedMemory, id: number, file: FileInfo): SharedRegion | "another layout" | undefined {
  let region: SharedRegion | undefined;
  try {
    region = shm.attach(id, REGION_BYTES);
    const verdict = verdictOf(region.bytes, file);
    if (verdict === "this store") return region;
    region.detach();
    return verdict === "another layout" ? verdict : undefined;
  } catch {
    try {
      region?.detach();
    } catch {
      // not attached after all
    }
    return undefined; // gone meanwhile (its last process detached), or not attachable
  }
}

/**
 * The store's live segment (see the module comment): the one `hint` names, else the first
 * candidate of the kernel's list whose header names the store. "another layout" if the
 * store has one only another release can use.
 */
function findLive(shm: SharedMemory, uid: number, file: FileInfo, hint: number | undefined): { id: number; region: SharedRegion } | "another layout" | undefined {
  if (hint !== undefined && candidate(shm.stat(hint), uid)) {
    const r = tryJoin(shm, hint, file);
    if (r !== undefined) return r === "another layout" ? r : { id: hint, region: r };
  }
  for (const info of shm.list()) {
    if (info.id === hint || !candidate(info, uid)) continue;
    const r = tryJoin(shm, info.id, file);
    if (r !== undefined) return r === "another layout" ? r : { id: info.id, region: r };
  }
  return undefined;
}

/** The finding {@link FrontierMirror.attach} makes, for tests and tools: the id and attachments of the store's segment, if it has one. */
export function findMirrorSegment(shm: SharedMemory, uid: number, file: FileInfo): { id: number; attached: number } | undefined {
  const live = findLive(shm, uid, file, undefined);
  if (live === undefined || live === "another layout") return undefined;
  live.region.detach();
  const info = shm.stat(live.id);
  return info && { id: live.id, attached: info.attached };
}

/** This process's attachment of a store's frontier mirror. */
export class FrontierMirror {
  readonly #platform: Platform;
  #region: SharedRegion | undefined;
  readonly #seq: Int32Array;
  readonly #words: Uint32Array;
  readonly #registration: FileHandle;
  #registered = false;

  private constructor(platform: Platform, region: SharedRegion, registration: FileHandle) {
    this.#platform = platform;
    this.#region = region;
    const buf = region.bytes.buffer;
    this.#seq = new Int32Array(buf, region.bytes.byteOffset, FRONTIER_AT / 4);
    this.#words = new Uint32Array(buf, region.bytes.byteOffset + FRONTIER_AT, FRONTIER_WORDS);
    this.#registration = registration;
  }

  /**
   * Attaches the store's mirror (creating it if this is the first process), not yet
   * registered as a reader (rule 3: the first read registers); undefined where it cannot be
   * had, and this process then works without it (rule 5). Never throws.
   */
  static attach(host: MirrorHost): FrontierMirror | undefined {
    const platform = host.platform;
    const shm = platform.sharedMemory;
    const uid = platform.uid;
    if (!shm || uid === undefined) return undefined;
    let lifecycle: FileHandle | undefined;
    let registration: FileHandle | undefined;
    let region: SharedRegion | undefined;
    try {
      lifecycle = host.openLockFile(MIRROR_LOCK);
      registration = host.openLockFile(READERS_LOCK);
      if (!spinLock(platform, lifecycle, true)) throw new Error("mirror.lock held");
      const file = host.frontierInfo();
      // Only the user who owns the store shares its mirror: a segment is joined only if it
      // is this user's, so a process of another user (a group member of a shared store, a
      // reader of a 0o644 one) would make a segment of its own that no other user's commit
      // writes, and read through it a frontier up to MIRROR_TRUST_MS older than commits that
      // resolved elsewhere without waiting for it. It works without the mirror (rule 5).
      if (file.uid !== uid) throw new Error("the store is another user's");
      const hintBuf = new Uint8Array(HINT_BYTES);
      const hintView = new DataView(hintBuf.buffer);
      const hint = lifecycle.read(hintBuf, 0) === HINT_BYTES && hintView.getUint32(0, true) === MAGIC ? hintView.getInt32(4, true) : undefined;
      const live = findLive(shm, uid, file, hint);
      if (live === "another layout") throw new Error("a process of another release has this store's mirror");
      let id: number;
      if (live !== undefined) {
        id = live.id;
        region = live.region;
      } else {
        // The first process (or the first since the last one detached): a new segment,
        // removed at once so that it goes with its last detach, whatever ends the processes.
        id = shm.create(REGION_BYTES, 0o600);
        try {
          region = shm.attach(id, REGION_BYTES);
        } finally {
          shm.remove(id);
        }
        const view = new DataView(region.bytes.buffer, region.bytes.byteOffset, FRONTIER_AT);
        region.bytes.fill(0, 0, FRONTIER_AT + 4 * FRONTIER_WORDS);
        view.setUint32(0, MAGIC, true);
        view.setUint32(4, LAYOUT, true);
        view.setFloat64(8, file.dev, true);
        view.setFloat64(16, file.ino, true);
        view.setUint32(28, TRUST_US, true);
        // Nobody else writes it yet (they would need this lock to find it). A frontier that
        // does not read back leaves it unchecked: readers probe the file until the next publish.
        const fr = host.frontierBytes();
        if (fr) region.bytes.set(fr, FRONTIER_AT);
        if (!host.readOnly) {
          hintView.setUint32(0, MAGIC, true);
          hintView.setInt32(4, id, true);
          lifecycle.write(hintBuf, 0);
        }
      }
      const mirror = new FrontierMirror(platform, region, registration);
      region = undefined;
      return mirror;
    } catch {
      try {
        region?.detach();
      } catch {
        // detached or not: nothing here uses it
      }
      registration?.close();
      return undefined;
    } finally {
      // Only the attach needs it (closing the handle lets go of its lock).
      lifecycle?.close();
    }
  }

  /** True while this process holds `readers.lock` shared (rule 3). */
  get registered(): boolean {
    return this.#registered;
  }

  /**
   * Registers this process as a reader (rule 3): `readers.lock` shared. A process without
   * the mirror holds it exclusively for two system calls when it looks (rule 5), so this
   * spins briefly; false if it could not (the caller probes the file, unregistered).
   */
  register(): boolean {
    if (this.#registered) return true;
    if (this.#region === undefined) return false;
    try {
      this.#registered = spinLock(this.#platform, this.#registration, false, REGISTER_WAIT_MS_MAX);
    } catch {
      this.#registered = false;
    }
    return this.#registered;
  }

  /** Lets go of `readers.lock` (rule 3): the caller reads through the mirror no more until it registers again. */
  unregister(): void {
    if (!this.#registered) return;
    this.#registered = false;
    try {
      this.#registration.unlock();
    } catch {
      // the handle is gone (closing): its lock goes with it
    }
  }

  /**
   * Copies the mirrored frontier into `into` (9 words); false if a write is in flight or
   * was cut short (the caller probes the file). The sequence is odd while a write is in
   * flight and moves on with each one.
   */
  read(into: Uint32Array): boolean {
    if (this.#region === undefined) return false; // detached (at exit): its memory is gone
    const seq = this.#seq;
    const words = this.#words;
    for (let attempt = 0; attempt < 4; attempt++) {
      const s = Atomics.load(seq, SEQ_INDEX);
      if ((s & 1) !== 0) continue;
      for (let i = 0; i < FRONTIER_WORDS; i++) into[i] = words[i]!;
      if (Atomics.load(seq, SEQ_INDEX) === s) return true;
    }
    return false;
  }

  /** Writes `frontier` (36 bytes, checksummed) into the mirror. The caller holds the frontier lock (rule 1). */
  publish(frontier: Uint8Array): void {
    if (this.#region === undefined) return;
    const seq = this.#seq;
    // From whatever a writer killed mid-write left: odd while this one writes, then even.
    const odd = Atomics.load(seq, SEQ_INDEX) | 1;
    Atomics.store(seq, SEQ_INDEX, odd);
    const src = new Uint32Array(frontier.buffer, frontier.byteOffset, FRONTIER_WORDS);
    for (let i = 0; i < FRONTIER_WORDS; i++) this.#words[i] = src[i]!;
    Atomics.store(seq, SEQ_INDEX, (odd + 1) | 0);
  }

  /** Detaches (the kernel destroys the segment with its last detach) and lets go of `readers.lock`. */
  detach(): void {
    const region = this.#region;
    if (!region) return;
    this.#region = undefined;
    this.#registered = false;
    this.#registration.close();
    try {
      region.detach();
    } catch {
      // the process's exit detaches it all the same
    }
  }
}

/**
 * Rule 5 for a process without the mirror: whether any process holds `readers.lock`
 * (a reader with the mirror). `handle` is this process's handle of it; an error counts as
 * yes, which only makes a commit wait.
 */
export function readersRegistered(handle: FileHandle | undefined): boolean {
  if (!handle) return true;
  try {
    if (!handle.tryLock(true)) return true;
    handle.unlock();
    return false;
  } catch {
    return true;
  }
}
