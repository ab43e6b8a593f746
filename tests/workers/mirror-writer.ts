/**
 * A writer for the frontier mirror's tests (tests/mirror.test.ts); runs on Node, Deno or Bun.
 *
 *   <dir> <count> <marker>   opens the store, prints "ready", waits for a stdin line, then
 *                            sets ns/"c" to 1..count one commit at a time; after each commit
 *                            resolves, replaces the file <marker> with its value (rename, so a
 *                            reader never sees it half written). Prints "done".
 */
import { open } from "txtdb";
import * as fs from "node:fs";
import { args, say, stdinLines } from "./io.ts";

const [dir, countArg, marker] = args();
const db = await open(dir!, { namespaces: ["ns"] });
say("ready");
const lines = stdinLines()[Symbol.asyncIterator]();
await lines.next();
const count = Number(countArg);
for (let i = 1; i <= count; i++) {
  await db.set("ns", "c", i);
  fs.writeFileSync(`${marker}.tmp`, String(i));
  fs.renameSync(`${marker}.tmp`, marker!);
}
say("done");
await db.close();
