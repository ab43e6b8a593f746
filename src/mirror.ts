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
 * runtime's `performance.now()` reads the kernel's one monotonic clock.
 *
 * The segment's key comes from the frontier file's device and inode, so a copy of a store
 * directory gets a segment of its own; the segment's header names them too, and a segment
 * whose header, owner, permissions or size do not match is not used. Attaching and removing
 * happen under the flock of `mirror.lock`: the first process to attach (no attachments)
 * writes the header and the frontier, and the last one to detach removes the segment. A
 * process killed meanwhile leaves it for the next one to take over. A segment someone
 * removes (`ipcrm`) stays attached in the processes that have it, and has no key any more:
 * a process that then attaches finds it by listing the segments and joins it, so the
 * processes of a store never split between two mirrors (one's commits would be written
 * where the other's readers never look).
 *
 * @module
 */
import { MIRROR_LOCK, READERS_LOCK } from "./files.ts";
import type { FileHandle, FileInfo, Platform, SharedMemory, SharedRegion } from "./port.ts";

/** How long a reader trusts the mirror after a file probe (rule 2), and how long a commit without it waits (rule 5). */
export const MIRROR_TRUST_MS = 0.25;

/** A registered reader that has not read for this long lets go of `readers.lock` (rule 3). */
export const READER_IDLE_MS = 50;

/** Bytes of the segment (one page; the layout below uses the first 68). */
const REGION_BYTES = 4096;
/** "txm1": a txtdb frontier mirror, layout 1. */
const MAGIC = 0x31_6d_78_74;
const LAYOUT = 1;
/** Header: magic u32 @0, layout u32 @4, device f64 @8, inode f64 @16, sequence i32 @24. */
const SEQ_INDEX = 6;
/** The frontier's 36 bytes, at a multiple of 4. */
const FRONTIER_AT = 32;
const FRONTIER_WORDS = 9;
/** Longest an attach or detach spins for `mirror.lock` (its holders keep it for microseconds). */
const LIFECYCLE_WAIT_MS_MAX = 50;

/** What the mirror needs of the log (log.ts). */
export interface MirrorHost {
  readonly platform: Platform;
  /** Opens (creating it unless read-only) a small lock file of the store directory. */
  openLockFile(name: string): FileHandle;
  /** The frontier file's identity. */
  frontierInfo(): FileInfo;
  /** Reads the frontier file's first 36 bytes into `into` if their checksum holds. */
  readFrontierBytes(into: Uint8Array): boolean;
}

/** The key of the segment for frontier file (dev, ino): a positive 31-bit number (FNV-1a of both). */
export function mirrorKey(dev: number, ino: number): number {
  let h = 0x811c9dc5;
  const mix = (n: number) => {
    for (let i = 0; i < 7; i++) {
      h = Math.imul(h ^ (n % 256), 0x01000193);
      n = Math.floor(n / 256);
    }
  };
  mix(dev);
  mix(ino);
  mix(LAYOUT);
  return (h & 0x7fffffff) || 1;
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

/** True if `region`'s header is a mirror's, of frontier file (dev, ino). */
function headerNames(region: SharedRegion, file: FileInfo): boolean {
  const view = new DataView(region.bytes.buffer, region.bytes.byteOffset, FRONTIER_AT);
  return view.getUint32(0, true) === MAGIC && view.getUint32(4, true) === LAYOUT && view.getFloat64(8, true) === file.dev && view.getFloat64(16, true) === file.ino;
}

/**
 * A segment of this store's mirror that was removed while processes still have it attached
 * (its key is gone): attached here, or undefined if there is none.
 */
function joinRemoved(shm: SharedMemory, uid: number, file: FileInfo): { id: number; region: SharedRegion } | undefined {
  for (const seg of shm.list()) {
    if (!seg.removed || seg.attached === 0 || seg.uid !== uid || seg.bytes !== REGION_BYTES || (seg.mode & 0o077) !== 0) continue;
    let region: SharedRegion | undefined;
    try {
      region = shm.attach(seg.id, REGION_BYTES);
      if (headerNames(region, file)) return { id: seg.id, region };
    } catch {
      // gone meanwhile (its last process detached), or not attachable: not this one
    }
    region?.detach();
  }
  return undefined;
}

/** This process's attachment of a store's frontier mirror. */
export class FrontierMirror {
  readonly #platform: Platform;
  readonly #shm: SharedMemory;
  readonly #id: number;
  #region: SharedRegion | undefined;
  readonly #seq: Int32Array;
  readonly #words: Uint32Array;
  readonly #lifecycle: FileHandle;
  readonly #registration: FileHandle;
  /** Cancels the detach at process exit (Platform.onExit). */
  #cancelAtExit: (() => void) | undefined;
  #registered = false;

  private constructor(platform: Platform, shm: SharedMemory, id: number, region: SharedRegion, lifecycle: FileHandle, registration: FileHandle) {
    this.#platform = platform;
    this.#shm = shm;
    this.#id = id;
    this.#region = region;
    const buf = region.bytes.buffer;
    this.#seq = new Int32Array(buf, region.bytes.byteOffset, FRONTIER_AT / 4);
    this.#words = new Uint32Array(buf, region.bytes.byteOffset + FRONTIER_AT, FRONTIER_WORDS);
    this.#lifecycle = lifecycle;
    this.#registration = registration;
  }

  /**
   * Attaches the store's mirror (creating it if this is the first process), registered as
   * a reader (rule 3); undefined where it cannot be had, and this process then works
   * without it (rule 5). Never throws.
   */
  static attach(host: MirrorHost): FrontierMirror | undefined {
    const platform = host.platform;
    const shm = platform.sharedMemory;
    const uid = platform.uid;
    if (!shm || uid === undefined) return undefined;
    let lifecycle: FileHandle | undefined;
    let registration: FileHandle | undefined;
    let region: SharedRegion | undefined;
    let locked = false;
    try {
      lifecycle = host.openLockFile(MIRROR_LOCK);
      registration = host.openLockFile(READERS_LOCK);
      if (!spinLock(platform, lifecycle, true)) throw new Error("mirror.lock held");
      locked = true;
      const file = host.frontierInfo();
      const key = mirrorKey(file.dev, file.ino);
      let id = shm.get(key, REGION_BYTES, false, 0o600);
      if (id === undefined) {
        // None by its key. Someone may have removed it (`ipcrm`) while processes still have
        // it attached: join them, or their commits would go to a segment newcomers never read.
        const joined = joinRemoved(shm, uid, file);
        if (joined) {
          region = joined.region;
          const mirror = new FrontierMirror(platform, shm, joined.id, joined.region, lifecycle, registration);
          region = undefined;
          mirror.#cancelAtExit = platform.onExit?.(() => mirror.detach());
          return mirror;
        }
        id = shm.get(key, REGION_BYTES, true, 0o600)!;
      }
      const info = shm.stat(id);
      if (!info || info.uid !== uid || info.removed || info.bytes < REGION_BYTES || (info.mode & 0o077) !== 0) throw new Error("not ours");
      region = shm.attach(id, REGION_BYTES);
      const view = new DataView(region.bytes.buffer, region.bytes.byteOffset, FRONTIER_AT);
      if (info.attached === 0) {
        // The first attachment (none left from before, or only dead processes'): nobody
        // writes it now, since writing it takes an attachment and this lock. Start it from
        // the file. A frontier that does not read back leaves it unchecked: readers probe
        // the file until the next publish.
        region.bytes.fill(0, 0, FRONTIER_AT + 4 * FRONTIER_WORDS);
        view.setUint32(0, MAGIC, true);
        view.setUint32(4, LAYOUT, true);
        view.setFloat64(8, file.dev, true);
        view.setFloat64(16, file.ino, true);
        const fr = new Uint8Array(4 * FRONTIER_WORDS);
        if (host.readFrontierBytes(fr)) region.bytes.set(fr, FRONTIER_AT);
      } else if (!headerNames(region, file)) {
        throw new Error("another store's segment");
      }
      const mirror = new FrontierMirror(platform, shm, id, region, lifecycle, registration);
      region = undefined;
      // A process that ends without closing the store detaches (and removes) it all the same.
      mirror.#cancelAtExit = platform.onExit?.(() => mirror.detach());
      return mirror;
    } catch {
      try {
        region?.detach();
      } catch {
        // detached or not: nothing here uses it
      }
      registration?.close();
      if (locked) lifecycle?.unlock();
      lifecycle?.close();
      lifecycle = undefined;
      return undefined;
    } finally {
      if (lifecycle && locked) lifecycle.unlock();
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

  /**
   * Detaches; the last process to detach removes the segment. Never throws: a segment that
   * cannot be removed now is taken over by the next process to attach.
   */
  detach(): void {
    const region = this.#region;
    if (!region) return;
    this.#region = undefined;
    this.#cancelAtExit?.();
    const locked = spinLock(this.#platform, this.#lifecycle, true);
    this.#registered = false;
    try {
      this.#registration.close();
      let last = false;
      try {
        last = locked && this.#shm.stat(this.#id)?.attached === 1;
      } catch {
        last = false;
      }
      try {
        region.detach();
        if (last) this.#shm.remove(this.#id);
      } catch {
        // left for the next process to attach
      }
    } finally {
      if (locked) this.#lifecycle.unlock();
      this.#lifecycle.close();
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
