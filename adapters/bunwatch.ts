/**
 * Directory and file watches for Bun on Linux: inotify read on a worker thread through
 * bun:ffi (a watch of a file reports that file's events only).
 *
 * Why not Bun's `fs.watch`: it drops events for a file written in place again and again
 * (measured here: two processes taking turns writing one file, each woken by its watch,
 * waited p50 3.6 ms and p95 5 ms, i.e. for the 5 ms fallback probe, against 20 µs with
 * Node's `fs.watch`), and in-place writes are exactly how the lock table and the frontier
 * change. The kernel queues every event; a thread blocked in read(2) on the inotify
 * descriptor wakes at once and posts a message (the same turn-taking: p50 10–40 µs, p95
 * 0.1–0.2 ms).
 *
 * One worker per watch (a watch lives as long as a waiting lock or a `watch()` stream).
 * `close()` removes the kernel watch from this thread (inotify_rm_watch); the kernel then
 * queues IN_IGNORED, which ends the worker's blocking read, and the worker closes the
 * descriptor and exits. Closing a descriptor would not wake a thread blocked reading it.
 * Workers are unref'd: a watch never keeps the process alive (as `persistent: false`).
 *
 * @module
 */
import type { WatchHandle } from "../src/port.ts";
import { workerStarter } from "./bunworker.ts";
import type { BunWorker } from "./bunworker.ts";

interface BunFfiLib {
  symbols: Record<string, (...args: unknown[]) => unknown>;
}
type DlOpen = (name: string, symbols: Record<string, { args: string[]; returns: string }>) => BunFfiLib;

/** The worker: watches one directory, posts "change" per batch of events. */
const WORKER_SOURCE = `
import { dlopen } from "bun:ffi";
self.onmessage = (e) => {
  const { dir, libc } = e.data;
  let lib;
  try {
    lib = dlopen(libc, {
      inotify_init1: { args: ["i32"], returns: "i32" },
      inotify_add_watch: { args: ["i32", "ptr", "u32"], returns: "i32" },
      read: { args: ["i32", "ptr", "u64"], returns: "i64" },
      close: { args: ["i32"], returns: "i32" },
    });
  } catch {
    postMessage({ type: "ready", fd: -1, wd: -1 });
    self.close();
    return;
  }
  const fd = lib.symbols.inotify_init1(0x80000); // IN_CLOEXEC
  // IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
  const wd = fd < 0 ? -1 : lib.symbols.inotify_add_watch(fd, new TextEncoder().encode(dir + "\\0"), 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200);
  postMessage({ type: "ready", fd, wd });
  if (wd >= 0) {
    const buf = new Uint8Array(4096);
    const view = new DataView(buf.buffer);
    for (;;) {
      const n = Number(lib.symbols.read(fd, buf, buf.length));
      if (n <= 0) {
        // The descriptor is the main thread's to close now (it may still remove the watch).
        postMessage({ type: "failed" });
        self.close();
        return;
      }
      let ignored = false;
      for (let at = 0; at + 16 <= n; at += 16 + view.getUint32(at + 12, true)) {
        if (view.getUint32(at + 4, true) & 0x8000) ignored = true; // IN_IGNORED: the watch is gone
      }
      if (ignored) break;
      postMessage({ type: "change" });
    }
  }
  // Only after IN_IGNORED (the main thread removed the watch and no longer uses the
  // descriptor) or when no watch was made: a number closed here may be reused at once.
  if (fd >= 0) lib.symbols.close(fd);
  self.close();
};
`;

/**
 * A `watchDir` for Bun on Linux that wakes on every inotify event, using `libc` for the
 * calls. Falls back to `fallback` (Bun's `fs.watch`) where workers or inotify are missing.
 */
export function makeInotifyWatchDir(
  dlopen: DlOpen,
  libc: string,
  fallback: (dir: string, onChange: () => void) => WatchHandle | undefined,
): (dir: string, onChange: () => void) => WatchHandle | undefined {
  let rmWatch: ((fd: number, wd: number) => unknown) | undefined;
  let closeFd: ((fd: number) => unknown) | undefined;
  try {
    const lib = dlopen(libc, { inotify_rm_watch: { args: ["i32", "i32"], returns: "i32" }, close: { args: ["i32"], returns: "i32" } });
    rmWatch = lib.symbols.inotify_rm_watch;
    closeFd = lib.symbols.close;
  } catch {
    return fallback;
  }
  const start = workerStarter<WatchMessage>(WORKER_SOURCE);
  if (!start || !rmWatch) return fallback;
  return (dir, onChange) => {
    let worker: BunWorker<WatchMessage>;
    try {
      worker = start();
    } catch {
      return fallback(dir, onChange);
    }
    let closed = false;
    let kernel: { fd: number; wd: number } | undefined;
    let fallbackHandle: WatchHandle | undefined;
    worker.onmessage = (e) => {
      const m = e.data;
      if (m.type === "change") {
        if (!closed) onChange();
      } else if (m.type === "failed") {
        if (kernel) closeFd!(kernel.fd);
        kernel = undefined;
        if (!closed) fallbackHandle = fallback(dir, onChange);
      } else if (m.type === "ready") {
        if ((m.wd ?? -1) < 0) {
          // No inotify here (a limit reached, the directory gone): Bun's own watch then.
          if (!closed) fallbackHandle = fallback(dir, onChange);
          return;
        }
        kernel = { fd: m.fd!, wd: m.wd! };
        if (closed) {
          rmWatch!(kernel.fd, kernel.wd);
          kernel = undefined;
        }
        // Events between this request and the watch's start are lost: a spurious call
        // makes the caller look once (the port allows spurious calls).
        else onChange();
      }
    };
    worker.unref?.();
    worker.postMessage({ dir, libc });
    return {
      close() {
        if (closed) return;
        closed = true;
        fallbackHandle?.close();
        if (kernel) rmWatch!(kernel.fd, kernel.wd);
        kernel = undefined;
      },
    };
  };
}

type WatchMessage = { type: string; fd?: number; wd?: number };
