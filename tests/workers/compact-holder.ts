/**
 * A process whose compaction holds a store's `compact.lock`, for the command line's `doctor`
 * tests and LOCK_TIMEOUT messages.
 *   <dir>   opens the store, holds its writer lock through a lock of its own on writer.lock
 *           (another open file description: to flock, another process), then starts
 *           db.compact(), which takes compact.lock and waits for the writer lock; prints
 *           "compacting <pid> <runtime>" once compact.lock is held, and on stdin EOF lets
 *           the writer lock go: the compaction finishes, and the process exits
 */
import { open } from "txtdb";
import { defaultPlatform, FileLock } from "txtdb/internal";
import { args, exit, say, stdinLines } from "./io.ts";

const [dir] = args();
const platform = await defaultPlatform();
const db = await open(dir!, { adapter: platform, lockTimeoutMs: 120_000 });
const writer = new FileLock(platform, `${dir}/writer.lock`);
const releaseWriter = await writer.acquire(true, { timeoutMs: 10_000 });
const compaction = db.compact();
// A probe of compact.lock through a handle of its own (to flock, another process): free until the compaction took it.
const probe = new FileLock(platform, `${dir}/compact.lock`);
for (let i = 0; ; i++) {
  const free = probe.tryAcquire(false);
  if (!free) break;
  free();
  if (i > 1000) throw new Error("compact.lock was not taken within 10 s");
  await new Promise((res) => setTimeout(res, 10));
}
probe.close();
say(`compacting ${platform.pid} ${platform.runtime}`);
for await (const _ of stdinLines()) { /* wait for EOF */ }
releaseWriter();
await compaction;
writer.close();
await db.close();
exit(0);
