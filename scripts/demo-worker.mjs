// One demo process: transfers money between accounts until its time is up, then prints
// what it did. Runs unchanged on Node, Deno and Bun (all import "txtdb").
import { open, detectRuntime } from "txtdb";

const g = globalThis;
const [dir, secondsArg, accountsArg, tag] = g.Deno ? g.Deno.args : g.process.argv.slice(2);
const seconds = Number(secondsArg), accounts = Number(accountsArg);
const db = await open(dir);
const until = performance.now() + seconds * 1000;
let acked = 0, declined = 0;
// Several transfers in flight per process, so group commit shares each fsync among them.
const IN_FLIGHT = 8;
async function loop() {
  while (performance.now() < until) {
    const from = Math.floor(Math.random() * accounts);
    const to = (from + 1 + Math.floor(Math.random() * (accounts - 1))) % accounts;
    const amount = 1 + Math.floor(Math.random() * 50);
    const moved = await db.transaction(async (tx) => {
      const a = await tx.get("bank", ["acct", from]);
      const b = await tx.get("bank", ["acct", to]);
      if (a < amount) return false;
      tx.set("bank", ["acct", from], a - amount);
      tx.set("bank", ["acct", to], b + amount);
      tx.set("bank", ["xfer", tag, `${from}-${to}-${performance.now()}-${Math.random()}`], { from, to, amount });
      tx.sum("bank", "transfers", 1);
      return true;
    }, { maxRetries: 1000 });
    if (moved) acked++;
    else declined++;
  }
}
await Promise.all(Array.from({ length: IN_FLIGHT }, loop));
const s = db.stats();
console.log("done " + JSON.stringify({ tag, runtime: detectRuntime(), acked, declined, seconds, conflicts: s.conflicts, retries: s.retries, batches: s.batches, fsyncs: s.fsyncs }));
await db.close();
