/** Helpers the watch tests share: consuming watchers with a bound, and closing what a test opened. */
import { open as openDb } from "txtdb";
import type { Database, OpenOptions, WatchEvent } from "txtdb";

/**
 * Runs `body` with an `open` that remembers what it opened, and closes all of it at the
 * end, failed assertion or not: an open handle's watch timer would keep the test process
 * alive and hang the run instead of failing it.
 */
export async function usingDbs(body: (open: (dir: string, options?: OpenOptions) => Promise<Database>) => Promise<void>): Promise<void> {
  const opened: Database[] = [];
  try {
    await body(async (dir, options) => {
      const db = await openDb(dir, options);
      opened.push(db);
      return db;
    });
  } finally {
    for (const db of opened) await db.close().catch(() => undefined);
  }
}

/** The first `n` events, or fewer if `timeoutMs` passes first. */
export async function take(it: AsyncIterableIterator<WatchEvent>, n: number, timeoutMs = 5000): Promise<WatchEvent[]> {
  const out: WatchEvent[] = [];
  const deadline = setTimeout(() => void it.return?.(), timeoutMs);
  for await (const e of it) {
    out.push(e);
    if (out.length >= n) break;
  }
  clearTimeout(deadline);
  return out;
}

/** Events until the watcher ends; its error (or undefined if it ended quietly or timed out). */
export async function drain(it: AsyncIterableIterator<WatchEvent>, timeoutMs = 5000): Promise<{ events: WatchEvent[]; error: unknown }> {
  const events: WatchEvent[] = [];
  const deadline = setTimeout(() => void it.return?.(), timeoutMs);
  try {
    for await (const e of it) events.push(e);
    return { events, error: undefined };
  } catch (error) {
    return { events, error };
  } finally {
    clearTimeout(deadline);
  }
}
