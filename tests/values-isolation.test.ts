/**
 * Values handed out and taken in are the caller's own (issue 9, item 2): mutating a value
 * a read returned never changes what later reads, snapshots, compaction or the files see;
 * mutating a value after set() never changes what is committed.
 */
import { assert, runtime, tempDir, test } from "./harness.ts";
import { open } from "txtdb";
import type { Database, Entry } from "txtdb";
import { foldIntoCheckpoint } from "./valuehelpers.ts";

const R = `[${runtime}]`;

async function collect<T>(it: AsyncIterable<Entry<T>>): Promise<Entry<T>[]> {
  const out: Entry<T>[] = [];
  for await (const e of it) out.push(e);
  return out;
}

type Stored = { id: number; bytes: Uint8Array; floats: Float64Array };
const bytes = () => new Uint8Array([1, 2, 3, 4]);
const floats = () => new Float64Array([0.5, -1.5]);
const stored = (): Stored => ({ id: 7, bytes: bytes(), floats: floats() });

/** Overwrites every typed array reachable from a read value, as a careless caller might. */
function scribble(v: unknown): void {
  if (ArrayBuffer.isView(v)) (v as Uint8Array).fill(0);
  else if (v && typeof v === "object") for (const x of Object.values(v)) scribble(x);
}

/**
 * Every typed array reachable from `v` owns its whole buffer: a view into a larger one would
 * let the caller reach bytes that are not its own through `.buffer`.
 */
function assertOwnsBuffers(v: unknown, what: string): void {
  if (ArrayBuffer.isView(v)) assert.equal(v.buffer.byteLength, v.byteLength, `${what}: a read typed array owns its whole buffer`);
  else if (v && typeof v === "object") for (const x of Object.values(v)) assertOwnsBuffers(x, what);
}

async function assertIntact(db: Database, what: string): Promise<void> {
  assert.deepEqual(await db.get("ns", "u8"), bytes(), `${what}: Uint8Array`);
  assert.deepEqual(await db.get("ns", "f64"), floats(), `${what}: Float64Array`);
  assert.deepEqual(await db.get("ns", "obj"), stored(), `${what}: typed arrays inside an object`);
}

async function seeded(): Promise<{ db: Database; dir: string }> {
  const dir = tempDir("vals");
  const db = await open(dir, { namespaces: ["ns"], segmentBytes: 512, autoCompactBytes: 0 });
  await db.set("ns", "u8", bytes());
  await db.set("ns", "f64", floats());
  await db.set("ns", "obj", stored());
  return { db, dir };
}

test(`${R} db reads (get, getEntry, getMany, list) hand out values whose mutation never reaches the store`, async () => {
  const { db } = await seeded();
  for (const k of ["u8", "f64", "obj"]) scribble(await db.get("ns", k));
  await assertIntact(db, "after get");
  for (const k of ["u8", "f64", "obj"]) assertOwnsBuffers(await db.get("ns", k), k);
  for (const k of ["u8", "f64", "obj"]) scribble((await db.getEntry("ns", k))!.value);
  await assertIntact(db, "after getEntry");
  scribble(await db.getMany("ns", ["u8", "f64", "obj"]));
  await assertIntact(db, "after getMany");
  for (const e of await collect(db.list("ns", { prefix: [] }))) scribble(e.value);
  await assertIntact(db, "after list");
  await db.close();
});

test(`${R} snapshot and transaction reads (own uncommitted writes too) hand out values of their own`, async () => {
  const { db } = await seeded();
  {
    await using snap = await db.snapshot();
    scribble(await snap.get("ns", "u8"));
    scribble((await snap.getEntry("ns", "obj"))!.value);
    scribble(await snap.getMany("ns", ["f64"]));
    for (const e of await collect(snap.list("ns", { prefix: [] }))) scribble(e.value);
    assert.deepEqual(await snap.get("ns", "obj"), stored(), "the snapshot still reads the stored value");
  }
  await assertIntact(db, "after snapshot reads");
  await db.transaction(async (tx) => {
    scribble(await tx.get("ns", "u8"));
    scribble(await tx.getMany("ns", ["f64", "obj"]));
    for (const e of await collect(tx.list("ns", { prefix: [] }))) scribble(e.value);
    tx.set("ns", "own", stored());
    scribble(await tx.get("ns", "own"));
    scribble((await tx.getEntry("ns", "own"))!.value);
    for (const e of await collect(tx.list("ns", { prefix: [] }))) scribble(e.value);
    assert.deepEqual(await tx.get("ns", "own"), stored(), "an uncommitted write reads back unchanged");
  });
  await assertIntact(db, "after transaction reads");
  assert.deepEqual(await db.get("ns", "own"), stored(), "the transaction committed what it set, not what a read of it was changed to");
  await db.close();
});

test(`${R} mutated read values never reach the files: compact() then a reopen read the original, and check() is ok`, async () => {
  const { db, dir } = await seeded();
  for (const k of ["u8", "f64", "obj"]) scribble(await db.get("ns", k));
  await foldIntoCheckpoint(db);
  assert.equal((await db.check()).ok, true);
  await db.close();
  const again = await open(dir);
  await assertIntact(again, "after compact and reopen");
  assert.equal((await again.check()).ok, true);
  await again.close();
});

test(`${R} watch events carry values of their own`, async () => {
  const { db } = await seeded();
  const it = db.watch("ns", { keys: ["w"] });
  try {
    const next = it.next();
    await db.set("ns", "w", stored());
    const ev = await next;
    scribble(ev.value!.changes[0]!.value);
    assert.deepEqual(await db.get("ns", "w"), stored());
    assertOwnsBuffers(ev.value!.changes[0]!.value, "watch event");
  } finally {
    await it.return!();
    await db.close();
  }
});

test(`${R} a value changed by the caller after set() is called is not what gets committed`, async () => {
  const { db } = await seeded();
  const v = stored();
  const pending = db.set("ns", "late", v);
  scribble(v);
  v.id = 99;
  await pending;
  assert.deepEqual(await db.get("ns", "late"), stored(), "db.set encodes at call time");
  const w = stored();
  await db.transaction(async (tx) => {
    tx.set("ns", "late-tx", w);
    scribble(w);
    w.id = 99;
  });
  assert.deepEqual(await db.get("ns", "late-tx"), stored(), "tx.set encodes at call time");
  await db.close();
});
