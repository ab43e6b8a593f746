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

test(`${R} count() over several tables: ones that share no key are counted table by table, ones that do are merged; both equal list()`, async () => {
  const dir = tempDir("count");
  const db = await open(dir, { namespaces: ["ns"], autoCompactBytes: 0 });
  const sels = [{ prefix: [] }, { prefix: ["b"] }, { start: ["a", 1500], end: ["c", 10] }, { start: ["b", 1999] }, { end: ["b", 0] }];
  const check = async (what: string) => {
    for (const sel of sels) assert.equal(await db.count("ns", sel as never), await listed(db, "ns", sel), `${what}: count ${JSON.stringify(sel)}`);
  };
  // Three compactions of disjoint key ranges: tables in one or more levels that share no key.
  for (const part of ["a", "b", "c"]) {
    await db.transaction((tx) => {
      for (let i = 0; i < 2000; i++) tx.set("ns", [part, i], i);
    });
    await db.compact();
    await check(`after "${part}"`);
  }
  assert.equal(await db.count("ns", { prefix: [] }), 6000);
  // Deletes and overwrites folded into a new table that overlaps the others: merged.
  await db.transaction((tx) => {
    for (let i = 0; i < 2000; i += 10) tx.delete("ns", ["b", i]);
    tx.set("ns", ["a", 5], "again");
  });
  await db.compact();
  await check("after overlapping deletes");
  assert.equal(await db.count("ns", { prefix: ["b"] }), 1800);
  await db.close();

  // Automatic compactions (level-0 tables, not merged) of rounds that rewrite and delete
  // keys of earlier rounds: tables that share keys, counted at every step.
  const dir2 = tempDir("count");
  const auto = await open(dir2, { namespaces: ["ns"], segmentBytes: 8192, autoCompactBytes: 16384 });
  for (let round = 0; round < 40; round++) {
    await auto.transaction((tx) => {
      for (let i = 0; i < 60; i++) tx.set("ns", ["k", (round * 37 + i) % 500], "v".repeat(40));
      for (let i = 0; i < 10; i++) tx.delete("ns", ["k", (round * 53 + i * 7) % 500]);
    });
    for (const sel of [{ prefix: [] }, { start: ["k", 100], end: ["k", 300] }]) {
      assert.equal(await auto.count("ns", sel as never), await listed(auto, "ns", sel), `round ${round}: count ${JSON.stringify(sel)}`);
    }
  }
  assert.ok(auto.stats().tables > 1, `automatic compactions made ${auto.stats().tables} tables`);
  await auto.close();
});
