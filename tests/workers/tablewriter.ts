/**
 * A writer that keeps replacing the store's tables: `tablewriter <dir> <rounds>`. 200
 * accounts of 100 each; every round moves money between random accounts in a few
 * transactions (the total stays 20,000 in every committed state), rolls small segments,
 * and compacts, so level 0 fills and merges into level 1 again and again. Prints "ready",
 * waits for a "go" line, prints "round <r>" after each compaction, "done" at the end.
 */
import { open } from "txtdb";
import { args, say, stdinLines } from "./io.ts";

const [dir, roundsArg] = args();
const rounds = Number(roundsArg ?? 40);
const ACCOUNTS = 200;
const db = await open(dir!, { namespaces: ["acct"], segmentBytes: 2048, autoCompactBytes: 0, durability: "none" });
if ((await db.get("acct", ["a", 0])) === undefined) {
  await db.transaction((tx) => {
    for (let i = 0; i < ACCOUNTS; i++) tx.set("acct", ["a", i], 100);
  });
}
say("ready");
// Rounds start once the test says the readers are reading ("go"): the point is to replace
// tables under them, not before they start.
for await (const line of stdinLines()) if (line === "go") break;
let seed = 12345;
const rnd = (n: number) => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
};
for (let r = 0; r < rounds; r++) {
  for (let t = 0; t < 8; t++) {
    await db.transaction(async (tx) => {
      const from = rnd(ACCOUNTS), to = rnd(ACCOUNTS), amount = 1 + rnd(20);
      const a = (await tx.get<number>("acct", ["a", from]))!;
      const b = (await tx.get<number>("acct", ["a", to]))!;
      if (from === to) return;
      tx.set("acct", ["a", from], a - amount);
      tx.set("acct", ["a", to], b + amount);
    });
  }
  await db.set("acct", "pad", "p".repeat(600)); // rolls segments, so compaction has sealed ones to fold
  await db.compact();
  say(`round ${r}`);
  await new Promise((resolve) => setTimeout(resolve, 5)); // let the readers interleave on a busy machine
}
await db.close();
say("done");
