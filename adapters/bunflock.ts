/**
 * A waiting flock(2) for Bun: the call blocks a worker thread (through bun:ffi) instead of
 * this one, so a process waiting for the writer lock is woken by the kernel the moment the
 * holder releases it, as Node's (koffi on libuv's pool) and Deno's (`FsFile.lock`) are;
 * without it Bun polled with a backoff, and the lock idled between holders.
 *
 * Workers are pooled: each runs one call at a time (a wait may block its thread for as long
 * as another process holds the lock), a call finds an idle worker or starts one, and at most
 * {@link IDLE_WORKERS_MAX} idle ones are kept. A wait cannot be cancelled; the core releases
 * a grant nobody wants any more (lock.ts). Workers are unref'd: a waiting call never keeps
 * the process alive. errno is read on the worker, right after its call (it is per thread).
 *
 * @module
 */
import { workerStarter } from "./bunworker.ts";
import type { BunWorker } from "./bunworker.ts";

const WORKER_SOURCE = (errnoLocation: string) => `
import { dlopen, read } from "bun:ffi";
let lib;
self.onmessage = (e) => {
  const { id, libc, fd, op } = e.data;
  try {
    lib ??= dlopen(libc, { flock: { args: ["i32", "i32"], returns: "i32" }, ${JSON.stringify(errnoLocation)}: { args: [], returns: "ptr" } });
    const r = lib.symbols.flock(fd, op);
    postMessage({ id, err: r === 0 ? 0 : read.i32(lib.symbols[${JSON.stringify(errnoLocation)}]()) });
  } catch (error) {
    postMessage({ id, err: -1, message: String(error && error.message || error) });
  }
};
`;

/** Idle workers kept for the next wait. */
const IDLE_WORKERS_MAX = 4;

type FlockReply = { id: number; err: number; message?: string };

/**
 * `flockAsync(fd, op)` for the Node-style platform: resolves with 0 or the errno of a
 * blocking flock run on a worker thread; undefined where Bun has no workers.
 */
export function makeWorkerFlock(libc: string, errnoLocation: string): ((fd: number, op: number) => Promise<number>) | undefined {
  const start = workerStarter<FlockReply>(WORKER_SOURCE(errnoLocation));
  if (!start) return undefined;
  const idle: BunWorker<FlockReply>[] = [];
  let nextId = 0;
  return (fd, op) =>
    new Promise<number>((resolve, reject) => {
      let worker = idle.pop();
      if (!worker) {
        try {
          worker = start();
          worker.unref?.();
        } catch (e) {
          reject(e);
          return;
        }
      }
      const w = worker;
      const id = ++nextId;
      w.onmessage = (e) => {
        if (e.data.id !== id) return;
        w.onmessage = null;
        w.onerror = null;
        if (idle.length < IDLE_WORKERS_MAX) idle.push(w);
        else w.terminate();
        if (e.data.err === -1) reject(new Error(`flock on a worker thread failed: ${e.data.message}`));
        else resolve(e.data.err);
      };
      w.onerror = (e) => {
        w.onmessage = null;
        w.onerror = null;
        w.terminate();
        reject(e instanceof Error ? e : new Error(`flock worker failed: ${String((e as { message?: string })?.message ?? e)}`));
      };
      w.postMessage({ id, libc, fd, op });
    });
}
