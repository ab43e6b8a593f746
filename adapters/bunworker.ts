/**
 * Worker threads for Bun's adapter parts that run blocking libc calls off the main thread
 * (bunflock.ts: a waiting flock; bunwatch.ts: inotify reads). Each worker runs a small
 * module given as source text, loaded from a Blob URL made once per source.
 *
 * @module
 */

/** A Bun worker as these parts use it; `M` is the shape of the messages it posts. */
export interface BunWorker<M> {
  onmessage: ((e: { data: M }) => void) | null;
  onerror: ((e: unknown) => void) | null;
  postMessage(m: unknown): void;
  unref?(): void;
  terminate(): void;
}

/**
 * A function that starts a worker running `source` (module text), or undefined where the
 * runtime has no workers. Starting one may throw (the caller falls back).
 */
export function workerStarter<M>(source: string): (() => BunWorker<M>) | undefined {
  const WorkerCtor = (globalThis as unknown as { Worker?: new (url: string) => BunWorker<M> }).Worker;
  if (!WorkerCtor) return undefined;
  let url: string | undefined;
  return () => new WorkerCtor(url ??= URL.createObjectURL(new Blob([source], { type: "application/javascript" })));
}
