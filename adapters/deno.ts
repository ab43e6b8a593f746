/**
 * The Deno adapter: Deno's own file APIs and `Deno.FsFile.tryLockSync`, which is
 * flock(2) — the same kernel lock the Node and Bun adapters take. Needs only
 * `--allow-read` and `--allow-write`: no FFI, no subprocesses, no environment.
 *
 * @example
 * ```ts
 * import { open } from "@txtdb/txtdb";
 * const db = await open("./data"); // picks this adapter on Deno
 * ```
 * @module
 */
import { PortError } from "../src/port.ts";
import type { FileHandle, FileInfo, OpenOptions, Platform, WatchHandle } from "../src/port.ts";

const ERRNO_BY_CLASS: Record<string, string> = {
  NotFound: "ENOENT",
  AlreadyExists: "EEXIST",
  PermissionDenied: "EACCES",
  NotCapable: "EACCES",
  IsADirectory: "EISDIR",
  NotADirectory: "ENOTDIR",
  Interrupted: "EINTR",
  WouldBlock: "EWOULDBLOCK",
};

function portError(e: unknown, op: string, path: string): PortError {
  const code = (e as { code?: unknown })?.code;
  const name = (e as { name?: unknown })?.name;
  const errno = typeof code === "string" ? code : (typeof name === "string" && ERRNO_BY_CLASS[name]) || "EIO";
  return new PortError(errno, op, path, e);
}

class DenoFile implements FileHandle {
  readonly path: string;
  readonly #file: Deno.FsFile;
  #closed = false;

  constructor(path: string, file: Deno.FsFile) {
    this.path = path;
    this.#file = file;
  }

  read(buf: Uint8Array, position: number): number {
    try {
      this.#file.seekSync(position, Deno.SeekMode.Start);
      let done = 0;
      while (done < buf.length) {
        const n = this.#file.readSync(buf.subarray(done));
        if (n === null || n === 0) break;
        done += n;
      }
      return done;
    } catch (e) {
      throw portError(e, "read", this.path);
    }
  }

  write(data: Uint8Array, position: number): void {
    try {
      this.#file.seekSync(position, Deno.SeekMode.Start);
      let done = 0;
      while (done < data.length) done += this.#file.writeSync(data.subarray(done));
    } catch (e) {
      throw portError(e, "write", this.path);
    }
  }

  append(data: Uint8Array): number {
    const at = this.size();
    this.write(data, at);
    return at;
  }

  truncate(size: number): void {
    try {
      this.#file.truncateSync(size);
    } catch (e) {
      throw portError(e, "truncate", this.path);
    }
  }

  size(): number {
    try {
      return this.#file.statSync().size;
    } catch (e) {
      throw portError(e, "fstat", this.path);
    }
  }

  sync(): void {
    try {
      this.#file.syncSync();
    } catch (e) {
      throw portError(e, "fsync", this.path);
    }
  }

  datasync(): void {
    try {
      this.#file.syncDataSync();
    } catch (e) {
      throw portError(e, "fdatasync", this.path);
    }
  }

  tryLock(exclusive: boolean): boolean {
    try {
      return this.#file.tryLockSync(exclusive);
    } catch (e) {
      throw portError(e, "flock", this.path);
    }
  }

  unlock(): void {
    try {
      this.#file.unlockSync();
    } catch (e) {
      throw portError(e, "flock(LOCK_UN)", this.path);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#file.close();
    } catch (e) {
      throw portError(e, "close", this.path);
    }
  }
}

/** The Platform for Deno. */
export const denoPlatform: Platform = {
  runtime: "deno",
  pid: Deno.pid,
  capabilities: { fileEvents: true, sharedWithOtherProcesses: true },
  open(path: string, options: OpenOptions = {}): FileHandle {
    try {
      const file = Deno.openSync(path, {
        read: true,
        write: !options.readOnly,
        create: options.create === true && !options.exclusive,
        createNew: options.create === true && options.exclusive === true,
        mode: options.mode ?? 0o600,
      });
      return new DenoFile(path, file);
    } catch (e) {
      throw portError(e, "open", path);
    }
  },
  stat(path: string): FileInfo | undefined {
    try {
      const s = Deno.statSync(path);
      return { size: s.size, isFile: s.isFile, isDirectory: s.isDirectory };
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw portError(e, "stat", path);
    }
  },
  readdir(path: string): string[] {
    try {
      return [...Deno.readDirSync(path)].map((e) => e.name);
    } catch (e) {
      throw portError(e, "readdir", path);
    }
  },
  mkdir(path: string, mode = 0o700): void {
    try {
      Deno.mkdirSync(path, { recursive: true, mode });
    } catch (e) {
      throw portError(e, "mkdir", path);
    }
  },
  rename(from: string, to: string): void {
    try {
      Deno.renameSync(from, to);
    } catch (e) {
      throw portError(e, "rename", from);
    }
  },
  unlink(path: string): void {
    try {
      Deno.removeSync(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw portError(e, "unlink", path);
    }
  },
  syncDir(path: string): void {
    let dir: Deno.FsFile | undefined;
    try {
      dir = Deno.openSync(path, { read: true });
      dir.syncSync();
    } catch (e) {
      throw portError(e, "fsync(dir)", path);
    } finally {
      dir?.close();
    }
  },
  monotonicMs: () => performance.now(),
  wallClockMs: () => Date.now(),
  sleep: (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)),
  nextTurn: () => new Promise<void>((resolve) => setImmediate(resolve)),
  randomBytes: (buf: Uint8Array) => void crypto.getRandomValues(buf),
  watchDir(dir: string, onChange: () => void): WatchHandle | undefined {
    let watcher: Deno.FsWatcher;
    try {
      watcher = Deno.watchFs(dir, { recursive: false });
    } catch {
      return undefined;
    }
    void (async () => {
      try {
        for await (const _event of watcher) onChange();
      } catch {
        // closed or broken: the core's polling fallback covers it
      }
    })();
    return { close: () => watcher.close() };
  },
};

export default denoPlatform;
