/**
 * A reader of a store whose tables another process keeps replacing: `tablereader <dir>`.
 * Until stdin closes, it checks, again and again, that a snapshot lists exactly 200
 * accounts summing to 20,000 (forward and in reverse), that point reads in the snapshot
 * agree with the listing, and that a read on the database sees a state at least as new as
 * the snapshot's. Prints "ready", then at the end "ok <checks> <folds>" (folds: distinct
 * folded versions it saw, i.e. table sets it read through), or "bad <what>" at the first
 * violation.
 */
import { open } from "txtdb";
import { args, say, stdinLines } from "./io.ts";

const [dir] = args();
const db = await open(dir!, { readOnly: true });
say("ready");
let stop = false;
void (async () => {
  for await (const _ of stdinLines()) { /* commands are not used */ }
  stop = true;
})();
const folds = new Set<bigint>();
let checks = 0;
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
try {
  while (!stop) {
    const snap = await db.snapshot();
    try {
      const entries: { key: unknown; value: number }[] = [];
      for await (const e of snap.list<number>("acct", { prefix: ["a"] })) entries.push({ key: e.key, value: e.value });
      const reversed: number[] = [];
      for await (const e of snap.list<number>("acct", { prefix: ["a"] }, { reverse: true })) reversed.push(e.value);
      if (entries.length !== 200 || sum(entries.map((e) => e.value)) !== 20_000) {
        say(`bad listing at version ${snap.version}: ${entries.length} accounts summing to ${sum(entries.map((e) => e.value))}`);
        break;
      }
      if (JSON.stringify(reversed) !== JSON.stringify(entries.map((e) => e.value).reverse())) {
        say(`bad reverse listing at version ${snap.version}`);
        break;
      }
      const i = checks % 200;
      const v = await snap.get<number>("acct", ["a", i]);
      if (v !== entries[i]!.value) {
        say(`bad point read of account ${i} at version ${snap.version}: ${v}, listed ${entries[i]!.value}`);
        break;
      }
    } finally {
      snap.release();
    }
    const fresh = await db.getEntry("acct", ["a", 0]);
    if (!fresh) {
      say("bad: account 0 missing");
      break;
    }
    folds.add(db.stats().checkpointVersion);
    checks++;
    await new Promise((r) => setTimeout(r, 1));
  }
  say(`ok ${checks} ${folds.size}`);
} catch (e) {
  say(`bad error: ${String(e)}`);
}
await db.close();
