/**
 * A lock worker for the cross-runtime tests.
 *   hold <path> <shared|exclusive>   take the lock, print "held <runtime>", keep it until stdin closes
 *   probe <path> <shared|exclusive>  try once without waiting, print "probe <runtime> free|busy"
 *   lease <dir>                      create a lease, print "lease <path>", keep it until stdin closes
 */
import { defaultPlatform, FileLock, ProcessLease } from "txtdb/internal";
import { args, exit, say, stdinLines } from "./io.ts";

const [mode, target, kind] = args();
const platform = await defaultPlatform();
if (mode === "hold") {
  const lock = new FileLock(platform, target!);
  const release = await lock.acquire(kind === "exclusive", { timeoutMs: 10_000 });
  say(`held ${platform.runtime} ${platform.pid}`);
  for await (const _ of stdinLines()) { /* wait for EOF */ }
  release();
  lock.close();
} else if (mode === "probe") {
  const lock = new FileLock(platform, target!);
  const release = lock.tryAcquire(kind === "exclusive");
  say(`probe ${platform.runtime} ${release ? "free" : "busy"}`);
  release?.();
  lock.close();
} else if (mode === "lease") {
  const lease = ProcessLease.create(platform, target!);
  say(`lease ${lease.path}`);
  for await (const _ of stdinLines()) { /* wait for EOF */ }
  lease.release(platform);
} else {
  console.error(`lockworker: unknown mode ${mode}`);
  exit(2);
}
exit(0);
