/**
 * Waiting for flock(2) without freezing the event loop.
 *
 * Lock levels (per lock file, per process):
 *
 * ```
 *   UNLOCKED ──acquire(shared)────► SHARED(n)   (kernel: LOCK_SH on our one handle)
 *   UNLOCKED ──acquire(exclusive)─► EXCLUSIVE   (kernel: LOCK_EX on our one handle)
 *   SHARED(n) ──release──► SHARED(n-1) … SHARED(0) = UNLOCKED (kernel: LOCK_UN)
 *   EXCLUSIVE ──release──► UNLOCKED             (kernel: LOCK_UN)
 * ```
 *
 * There is never an in-place upgrade (flock upgrades are not atomic): an exclusive waiter
 * waits for the in-process holders to drain, then takes the kernel lock from UNLOCKED.
 *
 * A guard (the writer lock's): a lock file can be deleted under its holder (a tmp cleaner,
 * `rm *.lock`); the next process to open the path then creates and locks a new file, and two
 * processes hold "the" lock at once. A lock made with `guardDir` also takes the flock of that
 * directory (the store's), which cannot be deleted while it holds the store, right after
 * the file's and releases it right before. The file still excludes processes that take no
 * guard, but only while it is not deleted; none that can write a store of this format
 * exists in a release (0.1.0 writes format 1 only, and refuses a newer store before it
 * appends), so while the guard is held {@link FileLock.heldAtPath} does not look at the
 * file: a holder is never made to give up a lock nobody else can take. The guard is taken
 * without waiting: held by another process, it means that process holds the lock through a
 * file deleted since (the file excludes everyone else), and the lock is polled until the
 * guard is free.
 *
 * Why one handle per lock file per process: flock belongs to the open file description,
 * so two handles in one process would exclude each other. In-process waiters queue in
 * FIFO order in front of that handle. Waiting for another process is done with
 * non-blocking attempts and a short, capped backoff (a blocking flock would freeze the
 * event loop); timeouts and AbortSignal end a wait with `LOCK_TIMEOUT`.
 *
 * @module
 */
import { TxtDbError, assert } from "./errors.ts";
import { pathNamesFile } from "./port.ts";
import type { FileHandle, LockHandle, Platform } from "./port.ts";
import { abortReason, armDeadline, signalAborted } from "./timers.ts";
import { storeFileError } from "./dirsafety.ts";
import type { Timer } from "./timers.ts";

/** Options for one wait. */
export interface LockWaitOptions {
  /** Give up after this many milliseconds (default: wait forever). */
  timeoutMs?: number;
  /** Give up when this signal aborts. */
  signal?: AbortSignal;
}

/** A held lock; call it (once) to release. */
export type Release = () => void;

interface Waiter {
  exclusive: boolean;
  resolve: (release: Release) => void;
  reject: (e: unknown) => void;
  enqueuedMs: number;
  cleanup: () => void;
}

/** Backoff between attempts at a lock held by another process, capped so wake-up is quick. */
const POLL_DELAYS_MS = [0, 0, 0, 1, 1, 1, 2, 2, 3] as const;
const POLL_DELAY_MAX_MS = 4;
/** How often a lock file replaced under us is reopened before giving up with IO. */
const LOCK_FILE_REOPEN_MAX = 8;

/**
 * With a guard, how often a grant looks whether the path still names the locked file. The
 * guard keeps out every other holder whatever happened to the file, so the look only makes
 * sure that processes opening the path wait on the file this process locks, in the kernel;
 * after a deletion they poll instead (the guard busy) until this process looks again. It
 * cost ~5 % of sequential durable commits to look at every grant (a statx each).
 */
const GUARDED_PATH_CHECK_EVERY_MS = 100;

/**
 * A process-wide lock over one lock file, shared or exclusive, that excludes other
 * processes of any runtime through flock(2) and queues waiters inside this process.
 *
 * @example
 * ```ts
 * const lock = new FileLock(platform, "/data/writer.lock");
 * const release = await lock.acquire(true, { timeoutMs: 5000 });
 * try { ... } finally { release(); }
 * ```
 */
export class FileLock {
  readonly #platform: Platform;
  readonly #path: string;
  readonly #mode: number;
  #handle: FileHandle | undefined;
  /** The inode of the handle the lock was last checked on (see #handleIsAtPath). */
  #handleInfo: { handle: FileHandle; ino: number; dev: number } | undefined;
  /** When a grant last found the path naming the handle's file (see #grantAtPath). */
  #pathCheckedAtMs = -Infinity;
  #holders = 0;
  #exclusiveHeld = false;
  readonly #queue: Waiter[] = [];
  #polling = false;
  /** The mode of the kernel wait (the port's lockAsync) in flight on the handle, if one is. */
  #kernelWaitMode: "exclusive" | "shared" | undefined;
  /** How many times this thread took the kernel lock (see #startKernelWait). */
  #kernelTakes = 0;
  #closed = false;
  /** Called after each grant with the wait it took. */
  onWait: ((waitMs: number) => void) | undefined;
  /** Says who holds the lock, for the LOCK_TIMEOUT message (e.g. " (held by pid 42, node)"). */
  describeHolder: ((handle: FileHandle) => string) | undefined;

  readonly #readOnly: boolean;
  /** The directory whose flock guards this lock (see the module comment); undefined: none. */
  readonly #guardDir: string | undefined;
  #guard: LockHandle | undefined;
  /** True while the guard is held with the kernel lock. */
  #guardHeld = false;
  /** True when the last attempt found the file free but the guard held elsewhere: poll, do not wait on the file. */
  #guardBusy = false;
  /** The holder record written into the file at each exclusive take (see the constructor's `recordHolder`). */
  readonly #holderRecord: (() => Uint8Array) | undefined;

  /**
   * `readOnly`: the file is opened read-only and never created (a read-only open's probe of
   * the writer lock; flock needs no write access). `guardDir`: the directory whose flock is
   * taken with the file's (the writer lock's; see the module comment), where the port can
   * open one. `recordHolder`: the bytes written at the start of the file each time this
   * process takes the lock exclusively (holder.ts's record: who holds it, since when, for
   * LOCK_TIMEOUT messages and `txtdb doctor`), for a lock whose every exclusive user should
   * record itself however it takes the lock (`compact.lock`: compaction, backup, a format
   * change); the writer lock's callers stamp it themselves (holder.ts, stampHolder).
   */
  constructor(platform: Platform, path: string, mode = 0o600, options: { readOnly?: boolean; guardDir?: string; recordHolder?: () => Uint8Array } = {}) {
    this.#platform = platform;
    this.#path = path;
    this.#mode = mode;
    this.#readOnly = options.readOnly ?? false;
    this.#guardDir = platform.openDirectoryLock ? options.guardDir : undefined;
    this.#holderRecord = options.recordHolder;
  }

  /** The lock file's path. */
  get path(): string {
    return this.#path;
  }

  /** True while this process holds the lock in any mode. */
  get held(): boolean {
    return this.#holders > 0;
  }

  /** True while this process holds the lock exclusively. */
  get heldExclusive(): boolean {
    return this.#exclusiveHeld;
  }

  /** Takes the lock if it is free right now, without waiting; undefined otherwise. */
  tryAcquire(exclusive: boolean): Release | undefined {
    if (this.#closed) throw new TxtDbError("CLOSED", `Lock "${this.#path}" was closed`);
    if (this.#queue.length > 0) return undefined;
    if (this.#holders > 0) {
      if (exclusive || this.#exclusiveHeld) return undefined;
      this.#holders++;
      return this.#makeRelease();
    }
    if (!this.#tryKernelLock(exclusive)) return undefined;
    this.#taken(exclusive);
    return this.#makeRelease();
  }

  /** Waits for the lock (FIFO among this process's waiters). */
  acquire(exclusive: boolean, options: LockWaitOptions = {}): Promise<Release> {
    const now = this.#platform.monotonicMs();
    const { timeoutMs, signal } = options;
    if (signalAborted(signal)) return Promise.reject(this.#timeoutError(exclusive, 0, abortReason(signal)));
    const immediate = this.tryAcquire(exclusive);
    if (immediate) {
      this.onWait?.(0);
      return Promise.resolve(immediate);
    }
    return new Promise<Release>((resolve, reject) => {
      let wait: Timer | undefined;
      const waiter: Waiter = {
        exclusive,
        resolve,
        reject,
        enqueuedMs: now,
        cleanup: () => wait?.cancel(),
      };
      wait = armDeadline(timeoutMs, signal, (aborted, reason) =>
        this.#abandon(waiter, aborted ? this.#timeoutError(exclusive, this.#platform.monotonicMs() - now, reason) : this.#timeoutError(exclusive, timeoutMs!)));
      this.#queue.push(waiter);
      try {
        this.#pump();
      } catch (e) {
        this.#abandonAll(e);
      }
    });
  }

  /** Closes the lock's handle. Fails waiters with `CLOSED`. Holders must have released. */
  close(): void {
    this.#closed = true;
    for (const w of this.#queue.splice(0)) {
      w.cleanup();
      w.reject(new TxtDbError("CLOSED", `Lock "${this.#path}" was closed while waiting`));
    }
    if (this.#holders === 0) this.#closeHandles();
  }

  /** Closes the file's handle and the guard's (which drops their kernel locks). */
  #closeHandles(): void {
    this.#handle?.close();
    this.#handle = undefined;
    this.#guard?.close();
    this.#guard = undefined;
  }

  #abandonAll(e: unknown): void {
    for (const w of this.#queue.splice(0)) {
      w.cleanup();
      w.reject(e);
    }
  }

  #handleOpen(): FileHandle {
    try {
      this.#handle ??= this.#platform.open(this.#path, this.#readOnly ? { readOnly: true } : { create: true, mode: this.#mode });
    } catch (e) {
      throw storeFileError(e, this.#path) ?? e; // a planted link or FIFO: say so clearly
    }
    return this.#handle;
  }

  /**
   * Takes the kernel lock on the file now at the path. flock locks an inode, not a name: if
   * the lock file was deleted (a tmp cleaner) or replaced since this handle was opened, a
   * lock on the old inode excludes nobody who opens the path now. So after a kernel grant
   * the handle's inode is compared with the path's (every grant without a guard, every
   * GUARDED_PATH_CHECK_EVERY_MS with one); on a mismatch the handle is dropped and the file
   * at the path (created afresh if missing) is locked instead.
   */
  #tryKernelLock(exclusive: boolean): boolean {
    // A shared wait in flight would turn an exclusive lock taken now into a shared one (see
    // #startKernelWait): the wait's grant is used instead.
    if (exclusive && this.#kernelWaitMode === "shared") return false;
    for (let attempt = 0; attempt < LOCK_FILE_REOPEN_MAX; attempt++) {
      const handle = this.#handleOpen();
      if (!handle.tryLock(exclusive)) {
        this.#guardBusy = false; // the file itself is held: what is waited on (and what LOCK_TIMEOUT names)
        return false;
      }
      if (this.#grantAtPath(handle)) {
        this.#kernelTakes++;
        return this.#takeGuard(handle, exclusive);
      }
      handle.close(); // also drops the kernel lock on the orphaned inode
      this.#handle = undefined;
    }
    throw new TxtDbError("IO", `Lock file "${this.#path}" was replaced ${LOCK_FILE_REOPEN_MAX} times while being locked; something keeps deleting or replacing it (a tmp cleaner?): exclude the store directory from it`);
  }

  /**
   * Takes the guard, without waiting, right after the file's kernel lock. Held elsewhere
   * (a process still holding the lock through a file deleted since), the file's lock is let
   * go and false returned; the waiters then poll (#pump).
   */
  #takeGuard(handle: FileHandle, exclusive: boolean): boolean {
    this.#guardBusy = false;
    if (this.#guardDir === undefined) return true;
    let taken: boolean;
    try {
      this.#guard ??= this.#platform.openDirectoryLock!(this.#guardDir);
      taken = this.#guard.tryLock(exclusive);
    } catch (e) {
      handle.unlock();
      throw e;
    }
    if (taken) {
      this.#guardHeld = true;
      return true;
    }
    handle.unlock();
    this.#guardBusy = true;
    return false;
  }

  /**
   * Whether a kernel grant on `handle` may stand: the path names its file. With a guard
   * this is looked at only every GUARDED_PATH_CHECK_EVERY_MS (and on a handle not seen
   * before); without one, at every grant, since the file is then all that excludes.
   */
  #grantAtPath(handle: FileHandle): boolean {
    const now = this.#platform.monotonicMs();
    if (this.#guardDir !== undefined && this.#handleInfo?.handle === handle && now - this.#pathCheckedAtMs < GUARDED_PATH_CHECK_EVERY_MS) return true;
    if (!this.#handleIsAtPath(handle)) return false;
    this.#pathCheckedAtMs = now;
    return true;
  }

  #handleIsAtPath(handle: FileHandle): boolean {
    if (typeof handle.info !== "function") return true;
    // An open handle's inode never changes: asked once per handle, not at every grant.
    let mine = this.#handleInfo;
    if (mine?.handle !== handle) mine = this.#handleInfo = { handle, ...handle.info() };
    return pathNamesFile(this.#platform, this.#path, mine);
  }

  /**
   * True while this process holds the lock and the path still names the file it locked.
   * A lock file deleted (or replaced) under a holder no longer excludes anybody: the next
   * process to open the path creates a new file and locks that. Holders of long locks
   * (compaction) ask this before each step another holder's work could collide with.
   */
  heldAtPath(): boolean {
    if (this.#holders === 0) return false;
    if (this.#guardHeld) return true; // the guard's directory cannot be deleted under us: nobody else can hold it
    return this.#handle !== undefined && this.#handleIsAtPath(this.#handle);
  }

  /**
   * The IO error of work that found this lock lost ({@link heldAtPath} false): `what`
   * stopped; `notDone` says what it left undone.
   */
  lostError(what: string, notDone: string): TxtDbError {
    return new TxtDbError("IO", `${what} stopped: its lock file "${this.#path}" was deleted or replaced while this process held it (a tmp cleaner?). ${notDone}; keep cleaners out of the store directory`, {
      details: { file: this.#path },
    });
  }

  /** Writes `bytes` at the start of the lock file (the holder's record; see holder.ts). Hold the lock. */
  stamp(bytes: Uint8Array): void {
    assert(this.#holders > 0 && this.#handle !== undefined, "stamp() without holding the lock");
    this.#handle.write(bytes, 0);
  }

  /** Reads the start of the lock file (the holder's record) into `into`; returns the bytes read. Hold the lock. */
  readStamp(into: Uint8Array): number {
    assert(this.#holders > 0 && this.#handle !== undefined, "readStamp() without holding the lock");
    return this.#handle.read(into, 0);
  }

  #timeoutError(exclusive: boolean, waitedMs: number, cause?: unknown): TxtDbError {
    if (this.#guardBusy && this.#guardDir !== undefined) {
      // The file was free at the last attempt: its record names the last holder of the file,
      // not whoever holds the directory's flock.
      return new TxtDbError(
        "LOCK_TIMEOUT",
        `Cannot acquire ${exclusive ? "exclusive" : "shared"} lock on "${this.#path}" after ${Math.round(waitedMs)} ms; ` +
          `the file is free, but its guard, the flock of the directory "${this.#guardDir}", is held by another process ` +
          `(a txtdb process still holding the lock through a lock file deleted since, or another program locking the directory) (see \`txtdb doctor\`), or raise the timeout`,
        { cause, details: { path: this.#path, guardDir: this.#guardDir, waitedMs } },
      );
    }
    let holder = "";
    try {
      if (this.#handle && this.describeHolder) holder = this.describeHolder(this.#handle);
    } catch {
      // a description is a courtesy; the timeout is the error
    }
    return new TxtDbError(
      "LOCK_TIMEOUT",
      `Cannot acquire ${exclusive ? "exclusive" : "shared"} lock on "${this.#path}" after ${Math.round(waitedMs)} ms; ` +
        `another process holds it${holder} (see \`txtdb doctor\`), or raise the timeout`,
      { cause, details: { path: this.#path, waitedMs } },
    );
  }

  #abandon(waiter: Waiter, error: TxtDbError): void {
    const i = this.#queue.indexOf(waiter);
    if (i < 0) return; // already granted
    this.#queue.splice(i, 1);
    waiter.cleanup();
    waiter.reject(error);
    this.#pump(); // a shared waiter behind an abandoned exclusive one may proceed now
  }

  #makeRelease(): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      assert(this.#holders > 0, "release without holders");
      this.#holders--;
      if (this.#holders === 0) {
        this.#exclusiveHeld = false;
        // The guard first: a process the file's release wakes then finds the guard free.
        if (this.#guardHeld) {
          this.#guardHeld = false;
          this.#guard?.unlock();
        }
        this.#handle?.unlock();
        if (this.#closed) this.#closeHandles();
      }
      try {
        this.#pump();
      } catch (e) {
        this.#abandonAll(e); // the waiters hear of the failure; the releaser is done
      }
    };
  }

  /** The kernel lock was just taken (from UNLOCKED): the first holder, and its record if wanted. */
  #taken(exclusive: boolean): void {
    this.#holders = 1;
    this.#exclusiveHeld = exclusive;
    if (!exclusive || this.#holderRecord === undefined || this.#readOnly) return;
    try {
      this.#handle?.write(this.#holderRecord(), 0);
    } catch {
      // diagnostics only: a lock whose record could not be written is held all the same
    }
  }

  #grant(waiter: Waiter): void {
    waiter.cleanup();
    const waited = this.#platform.monotonicMs() - waiter.enqueuedMs;
    this.onWait?.(waited);
    waiter.resolve(this.#makeRelease());
  }

  /** Grants what can be granted now; starts the poll loop if the kernel lock is busy. */
  #pump(): void {
    while (this.#queue.length > 0) {
      const head = this.#queue[0]!;
      if (this.#holders > 0) {
        if (head.exclusive || this.#exclusiveHeld) return; // wait for release
        this.#queue.shift();
        this.#holders++;
        this.#grant(head);
        continue;
      }
      if (this.#closed) return;
      if (!this.#tryKernelLock(head.exclusive)) {
        if (this.#handle?.lockAsync && !this.#guardBusy) this.#startKernelWait(this.#handle, head.exclusive);
        else this.#startPolling();
        return;
      }
      this.#queue.shift();
      this.#taken(head.exclusive);
      this.#grant(head);
    }
  }

  /**
   * Waits for the kernel lock on a helper thread (the port's lockAsync): the kernel wakes
   * this process the moment the holder releases, where polling would find out up to a few
   * milliseconds later, with the lock idle meanwhile. One wait at a time per lock; a wait
   * cannot be cancelled, so a grant nobody wants any more (the waiter timed out, or the
   * head of the queue now wants another mode) is released at once and the queue pumped.
   *
   * A grant is used only if this thread took no kernel lock while the wait was in flight.
   * flock belongs to the open file description, so the waiting call and this thread's
   * non-blocking attempts are one owner to the kernel: when an attempt here won the lock
   * after another process released it, the waiting call "succeeded" at once (the
   * description held the lock already); this process then released the lock; another took
   * it; and the late success granted the next waiter here a lock the kernel no longer gave
   * this process. Two processes wrote under the writer lock at once, over each other's
   * records (a stress run with several processes and automatic compaction lost committed
   * writes). Such a stale grant is released if nobody here holds the lock (the waiting call
   * may have taken it for real after the release), and the queue pumped. For the same
   * reason no exclusive lock is taken while a shared wait is in flight: when that wait
   * returned, it would turn the held lock into a shared one under its holder.
   */
  #startKernelWait(handle: FileHandle, exclusive: boolean): void {
    if (this.#polling) return;
    this.#polling = true;
    this.#kernelWaitMode = exclusive ? "exclusive" : "shared";
    const takesBefore = this.#kernelTakes;
    handle.lockAsync!(exclusive).then(
      () => {
        this.#polling = false;
        this.#kernelWaitMode = undefined;
        const head = this.#queue[0];
        const fresh = this.#kernelTakes === takesBefore;
        const usable = fresh && !this.#closed && this.#handle === handle && this.#holders === 0 && head !== undefined && head.exclusive === exclusive;
        const atPath = usable && this.#grantAtPath(handle);
        let granted = false;
        if (atPath) {
          try {
            granted = this.#takeGuard(handle, exclusive); // false: the guard is busy, and the file let go
          } catch (e) {
            this.#abandonAll(e);
            return;
          }
        }
        if (granted && head) {
          this.#queue.shift();
          this.#taken(exclusive);
          this.#grant(head);
        } else {
          try {
            if (this.#handle === handle && this.#holders === 0) handle.unlock();
            if (this.#closed && this.#handle === handle && this.#holders === 0) this.#closeHandles();
          } catch {
            // closed meanwhile: the kernel dropped the lock with the file
          }
          if (this.#handle === handle && usable && !atPath) {
            handle.close(); // the lock file was replaced: #tryKernelLock reopens the path
            this.#handle = undefined;
          }
        }
        try {
          this.#pump();
        } catch (e) {
          this.#abandonAll(e);
        }
      },
      (e) => {
        this.#polling = false;
        this.#kernelWaitMode = undefined;
        this.#abandonAll(e);
      },
    );
  }

  #startPolling(): void {
    if (this.#polling) return;
    this.#polling = true;
    void (async () => {
      let attempt = 0;
      try {
        while (this.#queue.length > 0 && !this.#closed && this.#holders === 0) {
          const delay = POLL_DELAYS_MS[attempt] ?? POLL_DELAY_MAX_MS;
          attempt++;
          await this.#platform.sleep(delay);
          if (this.#holders > 0 || this.#queue.length === 0 || this.#closed) break;
          const head = this.#queue[0]!;
          if (this.#tryKernelLock(head.exclusive)) {
            this.#queue.shift();
            this.#taken(head.exclusive);
            this.#grant(head);
            break;
          }
        }
      } catch (e) {
        // An operating failure (EIO, a crashed simulated machine): nobody can get the lock.
        this.#abandonAll(e);
      } finally {
        this.#polling = false;
      }
      try {
        this.#pump();
      } catch (e) {
        this.#abandonAll(e);
      }
    })();
  }
}
