/**
 * A worker that compacts a store each time it is asked through files, for tests that must
 * place a compaction at one exact point of another process's work: `compact-on-signal
 * <dir> <signal dir>`. For n = 1, 2, …: waits for `<signal dir>/go-<n>`, compacts (waiting
 * for compact.lock like any compaction), commits 20 keys and enough padding to roll
 * segments (segmentBytes 1024) for the next compaction to fold once every process has
 * read them, then creates `<signal dir>/done-<n>`. Files, not
 * stdin: the asking process waits synchronously, its event loop stopped. Prints "ready"
 * once open; stops at `<signal dir>/stop`.
 */
import { open } from "txtdb";
import { defaultPlatform } from "txtdb/internal";
import { args, say } from "./io.ts";

const [dir, signals] = args();
const platform = await defaultPlatform();
const db = await open(dir!, { adapter: platform, namespaces: ["ns"], segmentBytes: 1024, autoCompactBytes: 0, durability: "none", lockTimeoutMs: 60_000 });
say("ready");
const exists = (name: string) => platform.stat(`${signals}/${name}`) !== undefined;
let keys = 0;
for (let n = 1; !exists("stop"); ) {
  if (!exists(`go-${n}`)) {
    await new Promise((res) => setTimeout(res, 1));
    continue;
  }
  await db.compact();
  await db.transaction((tx) => {
    for (let i = 0; i < 20; i++) tx.set("ns", ["c", keys + i], "v".repeat(40));
  });
  keys += 20;
  for (let i = 0; i < 5; i++) await db.set("ns", ["pad", i], "p".repeat(300));
  platform.open(`${signals}/done-${n}`, { create: true }).close();
  n++;
}
await db.close();
say("done");
