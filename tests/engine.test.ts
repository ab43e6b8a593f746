/**
 * The engine on this runtime's real adapter: the API of ../shared/API.md, each error code,
 * and two-database (two open file descriptions: as two processes) concurrency.
 */
import * as fs from "node:fs";
import { assert, runtime, tempDir, test } from "./harness.ts";
import { conformance } from "./conformance.ts";
import { open, TxtDbError } from "txtdb";
import type { Database, Entry } from "txtdb";

const R = `[${runtime}]`;
const code = (c: string) => (e: unknown) => e instanceof TxtDbError && e.code === c;
async function collect<T>(it: AsyncIterable<Entry<T>>): Promise<Entry<T>[]> {
  const out: Entry<T>[] = [];
  for await (const e of it) out.push(e);
  return out;
}
/** Where the written log ends (segments are preallocated): the published frontier's offset. */
function logicalEnd(dir: string): number {
  const b = fs.readFileSync(`${dir}/frontier`);
  return new DataView(b.buffer, b.byteOffset, b.length).getFloat64(12, true);
}
async function fresh(opts: Parameters<typeof open>[1] = {}): Promise<{ db: Database; dir: string }> {
  const dir = tempDir("eng");
  return { db: await open(dir, { namespaces: ["ns"], ...opts }), dir };
}

conformance(R, { fresh, location: () => Promise.resolve(tempDir("conf")), etcd: false });

test(`${R} bad options fail with INVALID_ARGUMENT`, async () => {
  const dir = tempDir("opt");
  await assert.rejects(open(dir, { durability: "sometimes" as never }), code("INVALID_ARGUMENT"));
  await assert.rejects(open(dir, { isolation: "read-committed" as never }), code("INVALID_ARGUMENT"));
  await assert.rejects(open(dir, { namespaces: [""] }), code("INVALID_ARGUMENT"));
  await assert.rejects(open(dir, { maxKeyBytes: -1 }), code("INVALID_ARGUMENT"));
});

test(`${R} durability modes none and relaxed commit and survive a clean reopen`, async () => {
  for (const durability of ["none", "relaxed"] as const) {
    const { db, dir } = await fresh({ durability, relaxedSyncMs: 5 });
    await Promise.all(Array.from({ length: 100 }, (_, i) => db.set("ns", i, i)));
    if (durability === "none") assert.equal(db.stats().fsyncs, 0, "durability none never syncs");
    await new Promise((r) => setTimeout(r, 20));
    await db.close();
    const again = await open(dir);
    assert.equal(await again.get("ns", 99), 99);
    await again.close();
  }
});

test(`${R} group commit: concurrent commits of one process share lock acquisitions and fsyncs`, async () => {
  const { db } = await fresh();
  const before = db.stats();
  await Promise.all(Array.from({ length: 200 }, (_, i) => db.set("ns", i, i)));
  const after = db.stats();
  assert.equal(after.commits - before.commits, 200);
  assert.ok(after.fsyncs - before.fsyncs <= 5, `${after.fsyncs - before.fsyncs} fsyncs for 200 concurrent commits`);
  assert.ok(after.batchSizeMax >= 100, `largest batch ${after.batchSizeMax}`);
  await db.close();
});

test(`${R} group commit splits big transactions queued at once into batches of at most 64 MiB past the first, and commits every one`, async () => {
  // Memory bound: a batch is held about three times over while it is built, so five
  // transactions of 20 MiB queued in one turn must not become one 100 MiB batch.
  const { db } = await fresh();
  const part = new Uint8Array(10 << 20).fill(7);
  const before = db.stats();
  await Promise.all(Array.from({ length: 5 }, (_, i) => db.transaction((tx) => {
    tx.set("ns", ["big", i, 0], part);
    tx.set("ns", ["big", i, 1], part);
  })));
  const after = db.stats();
  assert.equal(after.commits - before.commits, 5);
  assert.ok(after.batches - before.batches >= 2, `${after.batches - before.batches} group commit(s) for 100 MiB of transactions queued at once`);
  assert.ok(after.batchSizeMax <= 4, `largest batch ${after.batchSizeMax}`);
  for (let i = 0; i < 5; i++) assert.equal(((await db.get("ns", ["big", i, 1])) as Uint8Array).length, part.length);
  await db.close();
});

test(`${R} group commit gathers transactions that await reads before committing, and never starves timers`, async () => {
  const { db } = await fresh();
  // 32 read-modify-write transactions, each awaiting a read: they reach commit() after
  // different numbers of microtask hops, yet one turn of the event loop gathers them.
  const before = db.stats();
  await Promise.all(Array.from({ length: 32 }, (_, i) => db.transaction(async (tx) => tx.set("ns", i, ((await tx.get<number>("ns", i)) ?? 0) + 1))));
  const after = db.stats();
  assert.equal(after.commits - before.commits, 32);
  assert.ok(after.batches - before.batches <= 3, `${after.batches - before.batches} group commits for 32 concurrent transactions`);
  // A stream of commits fed only by promise continuations must still let a timer run.
  let timerFired = false;
  setTimeout(() => (timerFired = true), 1);
  let commits = 0;
  await Promise.all(Array.from({ length: 8 }, async (_, w) => {
    while (!timerFired && commits < 20_000) {
      await db.transaction(async (tx) => tx.set("ns", `w${w}`, ((await tx.get<number>("ns", `w${w}`)) ?? 0) + 1));
      commits++;
    }
  }));
  assert.ok(timerFired && commits < 20_000, `a 1 ms timer waited for ${commits} commits`);
  // Likewise one loop awaiting each blind write (which the committer does not hold back).
  let fired = false;
  setTimeout(() => (fired = true), 1);
  let writes = 0;
  while (!fired && writes < 20_000) {
    await db.set("ns", "loop", writes);
    writes++;
  }
  assert.ok(fired && writes < 20_000, `a 1 ms timer waited for ${writes} awaited writes`);
  await db.close();
});

test(`${R} rollback() while commit() waits for the writer lock takes the commit back: commit() rejects with INVALID_ARGUMENT and nothing is written; after the commit it changes nothing`, async () => {
  const { db } = await fresh();
  const tx = await db.begin();
  tx.set("ns", "rb", 1);
  const committing = tx.commit(); // queued for the next group commit
  tx.rollback();
  await committing.then(
    () => assert.fail("the commit went on after rollback()"),
    (e) => assert.equal((e as TxtDbError).code, "INVALID_ARGUMENT", String(e)),
  );
  assert.equal(await db.get("ns", "rb"), undefined, "nothing was written");
  assert.throws(() => tx.set("ns", "rb", 3), (e: unknown) => (e as TxtDbError).code === "INVALID_ARGUMENT");
  const later = await db.begin();
  later.set("ns", "rb", 2);
  const done = await later.commit();
  later.rollback(); // finished: a no-op
  assert.equal(await db.get("ns", "rb"), 2);
  assert.equal((await db.getEntry("ns", "rb"))?.version, done.version);
  await db.close();
});

test(`${R} retries of transactions that lost on one hot key take turns: 200 concurrent increments all commit`, async () => {
  const { db } = await fresh();
  await Promise.all(Array.from({ length: 200 }, () => db.transaction(async (tx) => tx.set("ns", "hot", ((await tx.get<number>("ns", "hot")) ?? 0) + 1))));
  assert.equal(await db.get("ns", "hot"), 200);
  const s = db.stats();
  // In turn, a loser reruns on its predecessor's state and wins at once: about one retry each.
  assert.ok(s.retries <= 2 * 200, `${s.retries} retries for 200 increments`);
  await db.close();
});

test(`${R} segments roll over past segmentBytes and every process reads across them`, async () => {
  const { db, dir } = await fresh({ segmentBytes: 4096 });
  const other = await open(dir, { segmentBytes: 4096 });
  for (let i = 0; i < 200; i++) await (i % 2 ? db : other).set("ns", i, "v".repeat(100));
  const segs = fs.readdirSync(dir).filter((f) => f.startsWith("seg-"));
  assert.ok(segs.length >= 5, `${segs.length} segments`);
  assert.equal((await collect(other.list("ns", { prefix: [] }))).length, 200);
  await db.close();
  await other.close();
  const again = await open(dir);
  assert.equal((await collect(again.list("ns", { prefix: [] }))).length, 200);
  await again.close();
});

test(`${R} a torn tail past the durable end is repaired by the next writer; nothing acknowledged is lost`, async () => {
  const { db, dir } = await fresh();
  for (let i = 0; i < 10; i++) await db.set("ns", i, i);
  await db.close();
  const seg = `${dir}/seg-0000000001.log`;
  const end = logicalEnd(dir);
  const fd = fs.openSync(seg, "r+");
  fs.writeSync(fd, new Uint8Array([0xc7, 50, 0, 0, 0, 1, 2, 3]), 0, 8, end); // a frame cut short at the end of the log
  fs.closeSync(fd);
  const again = await open(dir);
  assert.equal(fs.statSync(seg).size, end, "the torn frame was cut off");
  for (let i = 0; i < 10; i++) assert.equal(await again.get("ns", i), i);
  await again.set("ns", "after", 1);
  await again.close();
});

test(`${R} a damaged record before the durable end fails with CORRUPTION naming file and offset`, async () => {
  const { db, dir } = await fresh();
  for (let i = 0; i < 10; i++) await db.set("ns", i, "value-" + i);
  await db.close();
  const seg = `${dir}/seg-0000000001.log`;
  const bytes = fs.readFileSync(seg);
  const at = Math.floor(logicalEnd(dir) / 2);
  bytes[at] = bytes[at]! ^ 0x40;
  fs.writeFileSync(seg, bytes);
  await assert.rejects(open(dir), (e: unknown) => {
    assert.ok(e instanceof TxtDbError && e.code === "CORRUPTION", String(e));
    assert.match(e.message, /seg-0000000001\.log/);
    assert.equal(e.details?.file, seg);
    assert.equal(typeof e.details?.offset, "number");
    return true;
  });
  assert.equal(fs.readFileSync(seg).length, bytes.length, "nothing was truncated");
});

test(`${R} a store written by a newer format fails with FORMAT`, async () => {
  const { db, dir } = await fresh();
  await db.close();
  const { frame, encodeInternal } = await import("txtdb/internal");
  fs.writeFileSync(`${dir}/MANIFEST`, frame(encodeInternal({ format: 99, createdAtMs: 0 })));
  await assert.rejects(open(dir), code("FORMAT"));
  await assert.rejects(open(dir, { readOnly: true }), code("FORMAT"));
});

test(`${R} a commit submitted at any microtask after the previous group commit resolved is never stranded`, async () => {
  const { db } = await fresh();
  for (let hops = 0; hops < 12; hops++) {
    await db.set("ns", "a", hops);
    for (let i = 0; i < hops; i++) await Promise.resolve();
    const second = db.set("ns", "b", hops);
    const outcome = await Promise.race([second.then(() => "committed"), new Promise((r) => setTimeout(() => r("stranded"), 2000))]);
    assert.equal(outcome, "committed", `a commit queued ${hops} microtasks after the previous one resolved never ran`);
  }
  // Through transaction() as well (a different number of hops between resolve and submit).
  for (let hops = 0; hops < 12; hops++) {
    await db.transaction((tx) => tx.set("ns", "c", hops));
    for (let i = 0; i < hops; i++) await Promise.resolve();
    const outcome = await Promise.race([db.transaction((tx) => tx.set("ns", "d", hops)).then(() => "committed"), new Promise((r) => setTimeout(() => r("stranded"), 2000))]);
    assert.equal(outcome, "committed", `transaction() ${hops} microtasks later never committed`);
  }
  await db.close();
});
