/**
 * A process that holds a store's writer lock, for the command line's `doctor` tests.
 *   <dir> <heldForMs> [guard]   opens the store (so it has a lease, as every txtdb process does),
 *                       takes the writer lock, writes the holder record a writer writes
 *                       (src/holder.ts), dated `heldForMs` in the past so a test need not
 *                       wait, prints "held <pid> <runtime>", keeps the lock until stdin closes;
 *                       with "guard", takes the store directory's flock with it, as commits do;
 *                       with "unrecorded", puts back the record found before its open: a
 *                       writer stopped between its grant and its record (the record still
 *                       names an earlier holder)
 */
import { open } from "txtdb";
import { defaultPlatform, FileLock } from "txtdb/internal";
import type { Platform } from "txtdb/internal";
import { holderRecord } from "../../src/holder.ts";
import { args, exit, say, stdinLines } from "./io.ts";

const [dir, heldForMs, guarded] = args();
const platform = await defaultPlatform();
/** The record as it was before this process opened the store (whose open may take the lock and record itself). */
const earlier = guarded !== "unrecorded" ? new Uint8Array(0) : (() => {
  const f = platform.open(`${dir}/writer.lock`, { readOnly: true });
  const buf = new Uint8Array(4096);
  const n = f.read(buf, 0);
  f.close();
  return buf.subarray(0, n);
})();
const db = await open(dir!, { adapter: platform });
// "guard": with the store directory's flock too, as a commit takes it (lock.ts).
const lock = new FileLock(platform, `${dir}/writer.lock`, 0o600, guarded === "guard" ? { guardDir: dir! } : {});
const release = await lock.acquire(true, { timeoutMs: 10_000 });
// The record is written through a second handle: flock does not stop writes, and this is
// what a writer does after it takes the lock.
const backdated = { pid: platform.pid, runtime: platform.runtime, wallClockMs: () => platform.wallClockMs() - Number(heldForMs) } as Platform;
const file = platform.open(`${dir}/writer.lock`, { create: true });
file.write(guarded === "unrecorded" ? earlier : holderRecord(backdated), 0);
file.close();
say(`held ${platform.pid} ${platform.runtime}`);
for await (const _ of stdinLines()) { /* wait for EOF */ }
release();
lock.close();
await db.close();
exit(0);
