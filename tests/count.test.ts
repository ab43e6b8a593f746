/**
 * count(ns, selection) on the database, snapshots and transactions: the number of live keys
 * in a selection, whether they sit in the in-memory table, in the tables on disk or both;
 * a transaction counts its own writes and conflicts when another commit changes the range.
 */
import { assert, runtime, tempDir, test } from "./harness.ts";
import { open, TxtDbError } from "txtdb";
import type { Database, Snapshot } from "txtdb";

const R = `[${runtime}]`;

/** The count by listing, to compare with. */
async function listed(db: Database | Snapshot, ns: string, sel: { prefix?: unknown[]; start?: unknown[]; end?: unknown[] }): Promise<number> {
  let n = 0;
  // deno-lint-ignore no-explicit-any
  for await (const _ of db.list(ns, sel as any)) n++;
  return n;
}

test(`${R} count() equals the entries list() yields: prefixes, start/end, deletes, keys in memory and in tables`, async () => {
  const dir = tempDir("count");
  const db = await open(dir, { namespaces: ["ns", "other"], autoCompactBytes: 0 });
  await db.transaction((tx) => {
    for (let i = 0; i < 3000; i++) tx.set("ns", [i % 3 === 0 ? "a" : "b", i], i);
    tx.set("other", ["a", 1], 1);
  });
  await db.compact(); // now in a table
  const before = await db.snapshot();
  await db.transaction((tx) => {
    for (let i = 0; i < 3000; i += 7) tx.delete("ns", [i % 3 === 0 ? "a" : "b", i]);
    for (let i = 3000; i < 3500; i++) tx.set("ns", ["a", i], i); // in memory only
    for (let i = 1; i < 3000; i += 50) tx.set("ns", [i % 3 === 0 ? "a" : "b", i], -i); // overwritten: still one key
    tx.delete("ns", ["b", 99_999]); // absent everywhere: nothing to count
  });
  const sels = [{ prefix: ["a"] }, { prefix: ["b"] }, { prefix: [] }, { start: ["a", 100], end: ["b", 50] }, { start: ["b"] }, { end: ["a", 10] }, { prefix: ["c"] }, { start: ["b"], end: ["a"] }];
  const check = async (what: string) => {
    for (const sel of sels) {
      assert.equal(await db.count("ns", sel as never), await listed(db, "ns", sel), `${what}: count ${JSON.stringify(sel)}`);
      assert.equal(await before.count("ns", sel as never), await listed(before, "ns", sel), `${what}: count ${JSON.stringify(sel)} on a snapshot from before`);
    }
  };
  // One table under the in-memory commits (the tables' count corrected by memory's keys),
  // then two tables (merged), then after a compaction that folds them into one level.
  await check("one table + memory");
  await db.set("ns", ["a", 3], "again");
  await db.compact();
  await check("after a second compaction");
  // ["a", i] for i < 3000 divisible by 3, less those divisible by 7, plus 500 in memory, plus
  // 651, 1701 and 2751 (divisible by 21 and set again after their delete in one transaction).
  assert.equal(await db.count("ns", { prefix: ["a"] }), 1000 - Math.ceil(1000 / 7) + 500 + 3);
  before.release();
  assert.equal(await db.count("other", { prefix: [] }), 1);
  await db.close();
});

test(`${R} count() on a snapshot reads its version; on the database, other handles' commits at once`, async () => {
  const dir = tempDir("count");
  const db = await open(dir, { namespaces: ["ns"] });
  const other = await open(dir);
  for (let i = 0; i < 10; i++) await other.set("ns", ["k", i], i);
  await using snap = await db.snapshot();
  await other.delete("ns", ["k", 0]);
  await other.set("ns", ["k", 99], 99);
  await other.set("ns", ["k", 100], 100);
  assert.equal(await snap.count("ns", { prefix: ["k"] }), 10);
  assert.equal(await db.count("ns", { prefix: ["k"] }), 11);
  await other.close();
  await db.close();
});

test(`${R} count() in a transaction includes its own sets, deletes and sums; a commit that changes the range makes it conflict`, async () => {
  const dir = tempDir("count");
  const db = await open(dir, { namespaces: ["ns"] });
  const other = await open(dir);
  for (let i = 0; i < 10; i++) await db.set("ns", ["k", i], i);
  const tx = await db.begin();
  tx.set("ns", ["k", 3], "overwritten"); // present before and after: no change
  tx.delete("ns", ["k", 4]);
  tx.delete("ns", ["k", 50]); // absent: no change
  tx.set("ns", ["k", 20], "new");
  tx.sum("ns", ["k", 21], 5); // creates the key
  tx.set("ns", ["z"], "outside the selection");
  assert.equal(await tx.count("ns", { prefix: ["k"] }), 11);
  assert.equal(await tx.count("ns", { start: ["k", 4], end: ["k", 21] }), 6); // 5..9 and 20 (21 is the end, excluded)
  await other.set("ns", ["k", 7], "changed elsewhere");
  await assert.rejects(tx.commit(), (e: unknown) => e instanceof TxtDbError && e.code === "CONFLICT");
  // Without a concurrent change the same transaction commits.
  await db.transaction(async (t) => {
    assert.equal(await t.count("ns", { prefix: ["k"] }), 10);
    t.delete("ns", ["k", 0]);
    assert.equal(await t.count("ns", { prefix: ["k"] }), 9);
  });
  assert.equal(await db.count("ns", { prefix: ["k"] }), 9);
  await other.close();
  await db.close();
});

test(`${R} count() refuses a bad selector or namespace with a TxtDbError; a closed database is CLOSED`, async () => {
  const db = await open(tempDir("count"), { namespaces: ["ns"] });
  const code = (c: string) => (e: unknown) => e instanceof TxtDbError && e.code === c;
  await assert.rejects(db.count("ns", null as never), (e: unknown) => code("INVALID_ARGUMENT")(e) && /count\(\)/.test((e as Error).message));
  await assert.rejects(db.count("nope", { prefix: [] }), code("NAMESPACE_NOT_FOUND"));
  await assert.rejects(db.count("ns", { prefix: [Symbol("x")] } as never), code("INVALID_KEY"));
  await assert.rejects(db.count(5 as never, { prefix: [] }), code("INVALID_ARGUMENT"));
  await db.close();
  await assert.rejects(db.count("ns", { prefix: [] }), code("CLOSED"));
});
