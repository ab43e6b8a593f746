/**
 * A worker that keeps compacting a store while it writes: `compactor <dir> <rounds>`.
 * Each round commits 20 new keys ns/["c", i] in small segments, then compacts. Prints
 * "ready" once open, "round <r> <keys>" after each compaction, "done" at the end.
 */
import { open } from "txtdb";
import { args, say } from "./io.ts";

const [dir, roundsArg] = args();
const rounds = Number(roundsArg ?? 50);
const db = await open(dir!, { namespaces: ["ns"], segmentBytes: 1024, autoCompactBytes: 0, durability: "none" });
say("ready");
let keys = 0;
for (let r = 0; r < rounds; r++) {
  await db.transaction((tx) => {
    for (let i = 0; i < 20; i++) tx.set("ns", ["c", keys + i], "v".repeat(40));
  });
  keys += 20;
  for (let i = 0; i < 5; i++) await db.set("ns", ["pad", i], "p".repeat(300)); // roll segments
  await db.compact();
  say(`round ${r} ${keys}`);
}
await db.close();
say("done");
