/**
 * list() on the database and on snapshots streams: it reads the index a page at a time as
 * the consumer asks, yet shows one version throughout (later commits, and compactions that
 * prune old versions, do not show through), and a list on `db` pins that version only until
 * it ends or is returned.
 */
import { assert, runtime, tempDir, test } from "./harness.ts";
import { open, TxtDbError } from "txtdb";
import type { Database, Entry } from "txtdb";

const R = `[${runtime}]`;
const N = 2000; // several pages

async function fill(db: Database, round: number): Promise<void> {
  await db.transaction((tx) => {
    for (let i = 0; i < N; i++) tx.set("ns", ["k", i], `${round}:${i}`);
  });
}

async function take<T>(it: AsyncIterableIterator<Entry<T>>, n: number): Promise<Entry<T>[]> {
  const out: Entry<T>[] = [];
  while (out.length < n) {
    const r = await it.next();
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

test(`${R} list() on db streams every entry of a large selection in order, forward, reversed and limited`, async () => {
  const db = await open(tempDir("list"), { namespaces: ["ns"] });
  await fill(db, 0);
  const all = await take(db.list<string>("ns", { prefix: ["k"] }), Infinity);
  assert.equal(all.length, N);
  assert.deepEqual(all.map((e) => (e.key as [string, number])[1]), Array.from({ length: N }, (_, i) => i));
  const rev = await take(db.list<string>("ns", { prefix: ["k"] }, { reverse: true }), Infinity);
  assert.deepEqual(rev.map((e) => e.value), all.map((e) => e.value).reverse());
  const limited = await take(db.list<string>("ns", { start: ["k", 100] }, { limit: 700 }), Infinity);
  assert.equal(limited.length, 700);
  assert.deepEqual(limited[0]!.key, ["k", 100]);
  assert.deepEqual(limited[699]!.key, ["k", 799]);
  const revLimited = await take(db.list<string>("ns", { end: ["k", 1500] }, { limit: 600, reverse: true }), Infinity);
  assert.deepEqual(revLimited.map((e) => (e.key as [string, number])[1]), Array.from({ length: 600 }, (_, i) => 1499 - i));
  await db.close();
});

test(`${R} a streaming list shows the version it began at: later commits and a compaction that prunes old versions do not show through`, async () => {
  const dir = tempDir("list");
  const db = await open(dir, { namespaces: ["ns"], segmentBytes: 4096, autoCompactBytes: 0 });
  const other = await open(dir, { segmentBytes: 4096, autoCompactBytes: 0 });
  await fill(db, 0);
  const it = db.list<string>("ns", { prefix: ["k"] });
  const first = await take(it, 10);
  // Another process rewrites everything, deletes some keys, adds new ones and compacts.
  await fill(other, 1);
  await other.transaction((tx) => {
    for (let i = 0; i < N; i += 3) tx.delete("ns", ["k", i]);
    tx.set("ns", ["k", N + 5], "new");
  });
  await other.compact();
  assert.equal(await db.get("ns", ["k", 1]), `1:1`, "this process has seen the new state");
  // Once more, now that this process has read past the list's version: following this
  // compaction, it prunes every version no pin of its own needs.
  await fill(other, 2);
  await other.compact();
  assert.equal(await db.get("ns", ["k", 1]), `2:1`);
  const rest = await take(it, Infinity);
  const seen = [...first, ...rest];
  assert.equal(seen.length, N, "every key of the version the list began at, none added or deleted since");
  for (const [i, e] of seen.entries()) assert.equal(e.value, `0:${i}`);
  await other.close();
  await db.close();
});

test(`${R} a list on db pins its version only while it runs: break (return()) releases it`, async () => {
  const db = await open(tempDir("list"), { namespaces: ["ns"] });
  await fill(db, 0);
  const v0 = db.stats().version;
  const it = db.list("ns", { prefix: ["k"] });
  await take(it, 1);
  await db.set("ns", "x", 1);
  await db.get("ns", "x");
  assert.equal(db.stats().oldestPinVersion, v0, "the running list holds its version");
  await it.return!();
  await db.get("ns", "x");
  assert.ok(db.stats().oldestPinVersion > v0, "returned, it holds nothing");
  // for await … break calls return() too.
  for await (const _ of db.list("ns", { prefix: ["k"] })) break;
  await db.set("ns", "y", 1);
  await db.get("ns", "y");
  assert.equal(db.stats().oldestPinVersion, db.stats().version);
  await db.close();
});

test(`${R} a list on a snapshot fails with CLOSED once the snapshot is released mid-way, and on db once it closes`, async () => {
  const db = await open(tempDir("list"), { namespaces: ["ns"] });
  await fill(db, 0);
  const snap = await db.snapshot();
  const it = snap.list("ns", { prefix: ["k"] });
  await take(it, 300);
  snap.release();
  await assert.rejects(take(it, Infinity), (e: unknown) => e instanceof TxtDbError && e.code === "CLOSED");
  const onDb = db.list("ns", { prefix: ["k"] });
  await take(onDb, 300);
  await db.close();
  await assert.rejects(take(onDb, Infinity), (e: unknown) => e instanceof TxtDbError && e.code === "CLOSED");
});

test(`${R} a list fails at its very next next() with CLOSED, not one page later: released as idle (maxIdleMs), its snapshot released, its database closed (review helper-74: 255 more entries came first)`, async () => {
  const db = await open(tempDir("list-next"), { namespaces: ["ns"], maxIdleMs: 100 });
  await fill(db, 0);
  const closed = (e: unknown) => e instanceof TxtDbError && e.code === "CLOSED";
  // Idle: one entry read, the page behind it buffered, then unused past maxIdleMs.
  const idle = db.list("ns", { prefix: ["k"] });
  assert.equal((await idle.next()).done, false);
  await new Promise((r) => setTimeout(r, 350));
  await assert.rejects(idle.next(), closed, "released as idle");
  // Its snapshot released.
  const snap = await db.snapshot();
  const onSnap = snap.list("ns", { prefix: ["k"] });
  assert.equal((await onSnap.next()).done, false);
  snap.release();
  await assert.rejects(onSnap.next(), closed, "snapshot released");
  // The database closed.
  const onDb = db.list("ns", { prefix: ["k"] });
  assert.equal((await onDb.next()).done, false);
  await db.close();
  await assert.rejects(onDb.next(), closed, "database closed");
});
