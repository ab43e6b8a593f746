/**
 * Expiring keys across processes; runs on Node, Deno or Bun.
 *
 *   set <dir> <tag> <expireInMs>   writes ns/["temp", tag] and 300 ns/["temp", tag, i] with
 *                                  expireIn, ns/["perm", tag] without; prints
 *                                  "done {from, by}": the expiry lies in [from, by] (wall-clock ms)
 *   read <dir> <tags>              opens, takes a snapshot; then on stdin:
 *                                    early       reads now; prints "early <json>" with the wall
 *                                                clock before and after the reads
 *                                    read <by>   waits until the wall clock passes <by>, reads;
 *                                                prints "read <json>"
 *                                    compact     releases the snapshot (its pin would hold the
 *                                                fold back), compacts; prints "compacted <json>"
 *
 * Prints "ready" once open.
 */
import { open } from "txtdb";
import type { Database, Snapshot, Transaction } from "txtdb";
import { args, exit, say, stdinLines } from "./io.ts";

const [mode, dir, ...rest] = args();

type Reader = Database | Snapshot | Transaction;

/** What one reader sees of the keys every setter wrote. */
async function observe(r: Reader, tags: string[]): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const tag of tags) {
    const keys: unknown[] = [];
    for await (const e of r.list("ns", { prefix: ["temp", tag] })) keys.push(e.key);
    const reversed: unknown[] = [];
    for await (const e of r.list("ns", { prefix: ["temp", tag] }, { reverse: true, limit: 290 })) reversed.push(e.key);
    out[tag] = {
      temp: (await r.get("ns", ["temp", tag])) ?? null,
      many: (await r.getMany("ns", [["temp", tag, 0], ["temp", tag, 299], ["perm", tag]])).map((v) => v ?? null),
      count: await r.count("ns", { prefix: ["temp", tag] }),
      listed: keys.length,
      reversed: reversed.length,
      perm: (await r.get("ns", ["perm", tag])) ?? null,
    };
  }
  return out;
}

async function run(): Promise<void> {
  if (mode === "set") {
    const [tag, ms] = [rest[0]!, Number(rest[1])];
    const db = await open(dir!, { namespaces: ["ns"] });
    const t0 = Date.now();
    await db.transaction((tx) => {
      tx.set("ns", ["temp", tag], tag, { expireIn: ms });
      for (let i = 0; i < 300; i++) tx.set("ns", ["temp", tag, i], i, { expireIn: ms });
      tx.set("ns", ["perm", tag], tag);
    });
    const t1 = Date.now();
    await db.close();
    say(`done ${JSON.stringify({ from: t0 + ms, by: t1 + ms })}`);
    return;
  }
  if (mode === "read") {
    const tags = rest[0]!.split(",");
    const db = await open(dir!, { namespaces: ["ns"] });
    let snap: Snapshot | undefined = await db.snapshot();
    say("ready");
    for await (const line of stdinLines()) {
      const [cmd, arg] = line.trim().split(" ");
      if (cmd === "early") {
        const before = Date.now();
        const seen = await observe(db, tags);
        say(`early ${JSON.stringify({ before, after: Date.now(), seen })}`);
      } else if (cmd === "read") {
        const by = Number(arg);
        while (Date.now() <= by) await new Promise((r) => setTimeout(r, 5));
        const tx = await db.begin();
        const result = { db: await observe(db, tags), snapshot: snap ? await observe(snap, tags) : null, tx: await observe(tx, tags) };
        // A key of its own (the readers commit in the same millisecond): two writes of one
        // key would conflict, which is not what this checks.
        tx.set("ns", ["seen", String(Date.now()), Math.random()], 1);
        await tx.commit(); // read after the expiry: absent, and nothing to conflict on
        say(`read ${JSON.stringify(result)}`);
      } else if (cmd === "compact") {
        snap?.release();
        snap = undefined;
        await db.compact();
        const report = await db.check();
        say(`compacted ${JSON.stringify({ ok: report.ok, records: report.records, problems: report.problems })}`);
      }
    }
    snap?.release();
    await db.close();
    return;
  }
  throw new Error(`unknown mode ${mode}`);
}

run().then(() => exit(0), (e) => {
  console.error(e);
  exit(1);
});
