/**
 * A process that pins an old version of a store, for the command line's `stats` and
 * `compact` tests.
 *   <dir>   opens the store with 256-byte segments, writes 5 keys, takes a snapshot
 *           (pinning that version), writes 20 more keys (sealing several segments), prints
 *           "pinned <pid> <runtime> <pinned version> <head version>", keeps the snapshot until stdin closes
 */
import { open } from "txtdb";
import { databaseInternals } from "txtdb/internal";
import { args, exit, say, stdinLines } from "./io.ts";

const [dir] = args();
const db = await open(dir!, { segmentBytes: 256, autoCompactBytes: 2 ** 40, namespaces: ["n"] });
for (let i = 0; i < 5; i++) await db.set("n", `a${i}`, "x".repeat(100));
const snap = await db.snapshot();
for (let i = 0; i < 20; i++) await db.set("n", `b${i}`, "x".repeat(100));
say(`pinned ${databaseInternals(db).platform.pid} ${databaseInternals(db).platform.runtime} ${snap.version} ${(await db.snapshot()).version}`);
for await (const _ of stdinLines()) { /* wait for EOF */ }
snap.release();
await db.close();
exit(0);
