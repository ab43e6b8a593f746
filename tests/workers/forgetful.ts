/**
 * A script that forgets to let go: it opens a store (with the default maxIdleMs of 10
 * minutes), then leaves a snapshot unreleased, a transaction neither committed nor rolled
 * back, a list on the database half read (which pins its version), a watch() never iterated
 * and the database itself open, prints "forgot <runtime>" and ends its code. Its process must then exit by itself:
 * the idle sweep and txtdb's other timers never keep a process alive.
 *   <dir>  the store directory
 */
import { open } from "txtdb";
import { args, say } from "./io.ts";

const [dir] = args();
const db = await open(dir!, { namespaces: ["n"] });
await db.transaction((tx) => {
  for (let i = 0; i < 600; i++) tx.set("n", ["k", i], i);
});
const snap = await db.snapshot();
await snap.get("n", ["k", 1]);
const tx = await db.begin();
await tx.get("n", ["k", 2]);
const list = db.list("n", { prefix: ["k"] });
await list.next(); // more than one page: the list pins its version until it ends
db.watch("n", { prefix: ["k"] }); // nobody waits for its events: no reason to stay
say(`forgot ${db.stats().runtime} ${db.stats().openSnapshots} snapshots ${db.stats().openTransactions} transactions`);
