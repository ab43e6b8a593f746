/**
 * A process using the etcd engine; runs on Node, Deno (with --allow-net) or Bun.
 *
 *   counter <url> <n>           n serializable read-modify-write increments of c/"hot"
 *                               (retried on CONFLICT) and n sum() of 1 on c/"sum"
 *   bank <url> <n> <accounts>   n transfers between random accounts of b/["acct", i]
 *                               (never below 0), every 10th a read-only audit of the
 *                               total over a range read; prints "bad <json>" if an audit
 *                               sees a total other than accounts * 100
 *
 * Prints "done <json>" (conflicts retried, audits) when finished.
 */
import { decodeValue, encodeKey, encodeValue, EtcdEngine, prefixRange, TxtDbError } from "txtdb/internal";
import type { EtcdTransaction } from "txtdb/internal";
import { args, exit, say } from "./io.ts";

const [mode, url, nText, accountsText] = args();
const n = Number(nText);
let conflicts = 0;

async function transaction(engine: EtcdEngine, fn: (tx: EtcdTransaction) => Promise<void>, isolation: "serializable" | "snapshot" = "serializable"): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const tx = await engine.begin({ isolation });
    try {
      await fn(tx);
      await tx.commit();
      return;
    } catch (e) {
      tx.rollback();
      if (!(e instanceof TxtDbError) || e.code !== "CONFLICT" || attempt > 500) throw e;
      conflicts++;
      await new Promise((r) => setTimeout(r, Math.random() * Math.min(50, 2 * attempt)));
    }
  }
}

async function run(): Promise<void> {
  const engine = await EtcdEngine.open(url!);
  try {
    if (mode === "counter") {
      for (let i = 0; i < n; i++) {
        await transaction(engine, async (tx) => {
          const cur = await tx.get("c", encodeKey("hot"));
          tx.set("c", encodeKey("hot"), encodeValue((cur ? (decodeValue(cur.value) as number) : 0) + 1));
        });
        const s = await engine.begin();
        s.sum("c", encodeKey("sum"), 1);
        await s.commit(); // a CONFLICT here fails the worker: sums never conflict
      }
      say(`done ${JSON.stringify({ conflicts })}`);
    } else if (mode === "bank") {
      const accounts = Number(accountsText);
      const [lo, hi] = prefixRange(["acct"]);
      let audits = 0;
      for (let i = 0; i < n; i++) {
        const a = Math.floor(Math.random() * accounts);
        const b = (a + 1 + Math.floor(Math.random() * (accounts - 1))) % accounts;
        await transaction(engine, async (tx) => {
          const [ea, eb] = await tx.getMany("b", [encodeKey(["acct", a]), encodeKey(["acct", b])]);
          const from = decodeValue(ea!.value) as number, to = decodeValue(eb!.value) as number;
          const amount = Math.min(from, 1 + Math.floor(Math.random() * 20));
          tx.set("b", encodeKey(["acct", a]), encodeValue(from - amount));
          tx.set("b", encodeKey(["acct", b]), encodeValue(to + amount));
        });
        if (i % 10 === 0) {
          const snap = await engine.snapshot();
          let total = 0;
          for await (const e of snap.range("b", lo, hi)) total += decodeValue(e.value) as number;
          snap.release();
          audits++;
          if (total !== accounts * 100) say(`bad ${JSON.stringify({ total, revision: String(snap.revision) })}`);
        }
      }
      say(`done ${JSON.stringify({ conflicts, audits })}`);
    } else {
      throw new Error(`unknown mode ${mode}`);
    }
  } finally {
    await engine.close();
  }
}

run().then(() => exit(0), (e) => {
  console.error(e);
  exit(1);
});
