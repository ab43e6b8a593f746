/**
 * Expiring keys (`set(..., { expireIn })`), below the API (the API-level tests are in
 * tests/conformance.ts, for every engine): an expired key reads as absent from its expiry on
 * in every read (get, getEntry, getMany, list in both directions and across pages, count,
 * snapshots, transactions), hides older versions of its key, makes a serializable
 * transaction that read it present conflict, keeps its expiry through sum(), is refused with
 * INVALID_ARGUMENT when the option is bad, and is reclaimed by compaction while versions a
 * pin can read stay. The wall clock is moved by hand (tests/expiryclock.ts): no test waits
 * for an expiry or depends on how fast anything runs.
 */
import { assert, runtime, tempDir, test } from "./harness.ts";
import { defaultPlatform, open, TxtDbError } from "txtdb";
import type { Database } from "txtdb";
import { databaseInternals, encodeKey, encodeValue, ENVELOPE_HEADER_BYTES, expiresAtOf, isExpiring, wrapExpiring } from "txtdb/internal";
import { ManualClock } from "./expiryclock.ts";
import { listed, rejectsWith } from "./conformance.ts";

const R = `[${runtime}]`;

async function openClocked(dir: string, clock: ManualClock, options: Record<string, unknown> = {}): Promise<Database> {
  return await open(dir, { adapter: clock.platform(await defaultPlatform()), namespaces: ["ns"], autoCompactBytes: 0, ...options });
}



test(`${R} the envelope: 13 header bytes, the value's own bytes unchanged after them, the expiry read without decoding`, () => {
  for (const value of [1, "x", { a: [1, 2n] }, new Uint8Array([0xd9, 0xb8, 0x7a]), -0, null]) {
    const bytes = encodeValue(value);
    assert.equal(isExpiring(bytes), false, `a value without expiry is no envelope: ${String(value)}`);
    for (const at of [1, 2 ** 32 - 1, 2 ** 32, 1_800_000_000_123, Number.MAX_SAFE_INTEGER]) {
      const env = wrapExpiring(bytes, at);
      assert.equal(env.length, ENVELOPE_HEADER_BYTES + bytes.length);
      assert.deepEqual([...env.subarray(ENVELOPE_HEADER_BYTES)], [...bytes]);
      assert.equal(isExpiring(env), true);
      assert.equal(expiresAtOf(env), at);
    }
  }
  // Malformed envelopes never count as expired (the read then reports CORRUPTION).
  assert.ok(Number.isNaN(expiresAtOf(new Uint8Array([0xd9, 0xb8, 0x7a, 0x82, 0x1b, 0, 0, 0]))));
  assert.ok(Number.isNaN(expiresAtOf(new Uint8Array([0xd9, 0xb8, 0x7a, 0x83, 0x1b, 0, 0, 0, 0, 0, 0, 0, 0, 1]))));
});

test(`${R} list() with expired keys among live ones: forward, reverse, limits and pages of 256, in memory, in tables and both`, async () => {
  const clock = new ManualClock();
  const db = await openClocked(tempDir("expiry"), clock);
  const N = 1500;
  const write = (from: number, to: number) =>
    db.transaction((tx) => {
      for (let i = from; i < to; i++) tx.set("ns", ["k", i], i, i % 3 === 0 ? undefined : { expireIn: 1000 + (i % 2) * 5000 });
    });
  await write(0, N / 2);
  await db.compact(); // half of them in tables
  await write(N / 2, N);
  const liveAt = (elapsed: number) => [...Array(N).keys()].filter((i) => i % 3 === 0 || 1000 + (i % 2) * 5000 > elapsed);
  const start = clock.nowMs;
  for (const elapsed of [0, 1000, 6000]) {
    clock.nowMs = start + elapsed;
    const live = liveAt(elapsed);
    assert.deepEqual(await listed(db, { prefix: ["k"] }), live.map((i) => ["k", i]), `forward at +${elapsed} ms`);
    assert.deepEqual(await listed(db, { prefix: ["k"] }, { reverse: true }), live.map((i) => ["k", i]).reverse(), `reverse at +${elapsed} ms`);
    for (const limit of [1, 255, 256, 257, 700]) {
      assert.deepEqual(await listed(db, { prefix: ["k"] }, { limit }), live.slice(0, limit).map((i) => ["k", i]), `limit ${limit} at +${elapsed} ms`);
      assert.deepEqual(await listed(db, { prefix: ["k"] }, { limit, reverse: true }), live.slice(-limit).reverse().map((i) => ["k", i]), `reverse limit ${limit} at +${elapsed} ms`);
    }
    assert.equal(await db.count("ns", { prefix: ["k"] }), live.length, `count at +${elapsed} ms`);
    assert.equal(await db.count("ns", { start: ["k", 100], end: ["k", 1000] }), live.filter((i) => i >= 100 && i < 1000).length);
    const tx = await db.begin();
    assert.deepEqual(await listed(tx, { prefix: ["k"] }, { limit: 300 }), live.slice(0, 300).map((i) => ["k", i]), `a transaction's list at +${elapsed} ms`);
    assert.equal(await tx.count("ns", { prefix: ["k"] }), live.length);
    tx.rollback();
  }
  await db.close();
});

test(`${R} an expired version hides the older versions of its key, in memory and in the tables below`, async () => {
  const clock = new ManualClock();
  const db = await openClocked(tempDir("expiry"), clock);
  await db.set("ns", "a", "old a");
  await db.set("ns", "b", "old b");
  await db.compact(); // the old versions now live in a table
  await db.set("ns", "a", "new a", { expireIn: 10 });
  await db.set("ns", "b", "new b", { expireIn: 10 });
  await db.set("ns", "c", "old c");
  await db.compact(); // "b"'s expiring version is folded over the older one, still live
  await db.set("ns", "c", "new c", { expireIn: 10 }); // in memory, over the table's "old c"
  clock.advance(10);
  for (const k of ["a", "b", "c"]) {
    assert.equal(await db.get("ns", k), undefined, `${k}: the older version does not come back`);
    assert.equal(await db.getEntry("ns", k), undefined);
  }
  assert.deepEqual(await listed(db, { prefix: [] }), []);
  assert.equal(await db.count("ns", { prefix: [] }), 0);
  await db.compact(); // "a"'s expired version folds as a delete over the table's older version
  assert.deepEqual(await db.getMany("ns", ["a", "b", "c"]), [undefined, undefined, undefined]);
  assert.deepEqual(await listed(db, { prefix: [] }), []);
  const report = await db.check();
  assert.ok(report.ok, JSON.stringify(report.problems));
  await db.close();
});

test(`${R} count() in a serializable transaction over expiring keys held in a table (the count that walks table blocks) notes them: CONFLICT once they expire`, async () => {
  const clock = new ManualClock();
  const db = await openClocked(tempDir("expiry"), clock);
  await db.transaction((tx) => {
    for (let i = 0; i < 300; i++) tx.set("ns", ["k", i], i, i % 2 === 0 ? { expireIn: 100 } : undefined);
  });
  await db.compact(); // every key now in one table: count() walks its blocks
  await db.set("ns", ["k", 1], "in memory, over a table version");
  const tx = await db.begin();
  assert.equal(await tx.count("ns", { prefix: ["k"] }), 300);
  tx.set("ns", "out", 1);
  clock.advance(100);
  assert.equal(await db.count("ns", { prefix: ["k"] }), 150, "the expired half no longer counts");
  await assert.rejects(tx.commit(), (e) => e instanceof TxtDbError && e.code === "CONFLICT" && (e.details as Record<string, unknown>).expired === true);
  await db.close();
});

test(`${R} the stored bytes: an expiring value is the envelope around exactly the bytes of the value; a plain value is unchanged`, async () => {
  const clock = new ManualClock();
  const db = await openClocked(tempDir("expiry"), clock);
  const value = { name: "alice", tags: ["a"], n: 1n };
  await db.set("ns", "plain", value);
  await db.set("ns", "temp", value, { expireIn: 60_000 });
  const internals = databaseInternals(db);
  const id = internals.index.resolve("ns", internals.index.lastTsn)!;
  const plain = internals.index.get(id, encodeKey("plain", 1024), internals.index.lastTsn)!.value;
  const temp = internals.index.get(id, encodeKey("temp", 1024), internals.index.lastTsn)!.value;
  assert.deepEqual(plain, encodeValue(value));
  assert.deepEqual(temp, wrapExpiring(encodeValue(value), clock.nowMs + 60_000));
  await db.close();
});

test(`${R} compaction reclaims expired keys as it folds the log, and keeps every version a pinned snapshot can read`, async () => {
  const clock = new ManualClock();
  const dir = tempDir("expiry");
  const db = await openClocked(dir, clock, { segmentBytes: 64 * 1024 });
  const N = 2000;
  await db.transaction((tx) => {
    for (let i = 0; i < N; i++) tx.set("ns", ["temp", i], "x".repeat(100), { expireIn: 1000 });
    for (let i = 0; i < 100; i++) tx.set("ns", ["perm", i], i);
    tx.set("ns", "long", "v1", { expireIn: 1_000_000 });
    tx.set("ns", "short", "s1", { expireIn: 1000 });
  });
  const snap = await db.snapshot(); // pins the version the fold goes up to
  await db.set("ns", "long", "v2");
  await db.set("ns", "short", "s2");
  const before = await db.check();
  clock.advance(1000);
  const result = await db.compact();
  assert.ok(result.segmentsFolded > 0, `the big commit's segment folds: ${JSON.stringify(result, (_, v) => typeof v === "bigint" ? String(v) : v)}`);
  assert.equal(result.checkpointVersion, snap.version);
  const after = await db.check();
  assert.ok(after.ok, JSON.stringify(after.problems));
  // 100 perm + "long" in the table, the two later commits in the log; no expired key kept.
  assert.ok(after.records <= 100 + 1 + 2 + 2, `expired keys reclaimed: ${after.records} records (before: ${before.records} log records)`);
  assert.ok(db.stats().checkpointBytes < N * 20, `table bytes: ${db.stats().checkpointBytes}`);
  assert.equal(await snap.get("ns", "long"), "v1", "the pinned snapshot still reads its version, expiring later");
  assert.equal(await snap.get("ns", "short"), undefined, "an expired version is absent even to a snapshot taken before its expiry");
  assert.deepEqual(await db.getMany("ns", ["long", "short"]), ["v2", "s2"]);
  assert.equal(await snap.count("ns", { prefix: ["temp"] }), 0);
  assert.equal(await snap.count("ns", { prefix: ["perm"] }), 100);
  snap.release();
  await db.close();
  const again = await openClocked(dir, clock);
  assert.equal(await again.count("ns", { prefix: ["temp"] }), 0);
  assert.deepEqual(await again.getMany("ns", ["long", "short"]), ["v2", "s2"]);
  await again.close();
});

test(`${R} compaction reclaims expired keys already in tables when a level merge rewrites them; the older versions they hid stay hidden`, async () => {
  const clock = new ManualClock();
  const dir = tempDir("expiry");
  const db = await openClocked(dir, clock);
  const N = 2000;
  await db.transaction((tx) => {
    for (let i = 0; i < N; i++) tx.set("ns", ["temp", i], "old");
  });
  await db.compact();
  await db.transaction((tx) => {
    for (let i = 0; i < N; i++) tx.set("ns", ["temp", i], "x".repeat(100), { expireIn: 1000 });
    for (let i = 0; i < 100; i++) tx.set("ns", ["perm", i], i);
  });
  await db.compact(); // level 1 now holds the expiring versions (and no older ones)
  const full = await db.check();
  assert.ok(full.records >= N + 100, `before the expiry the tables hold every key: ${full.records}`);
  const bytesBefore = db.stats().checkpointBytes;
  clock.advance(1000);
  assert.equal(await db.count("ns", { prefix: ["temp"] }), 0, "expired: the older versions do not come back");
  // New commits whose keys span the expired ones: the merge of level 0 into level 1 rewrites them.
  await db.set("ns", ["perm", 0], "again");
  await db.set("ns", "tick", 1);
  await db.compact();
  const after = await db.check();
  assert.ok(after.ok, JSON.stringify(after.problems));
  assert.ok(after.records <= 100 + 1 + 2, `expired keys reclaimed: ${full.records} records before, ${after.records} after`);
  assert.ok(db.stats().checkpointBytes < bytesBefore / 4, `table bytes ${bytesBefore} before, ${db.stats().checkpointBytes} after`);
  assert.equal(await db.count("ns", { prefix: ["temp"] }), 0);
  assert.equal(await db.get("ns", ["temp", 7]), undefined);
  assert.equal(await db.count("ns", { prefix: ["perm"] }), 100);
  await db.close();
});

test(`${R} compact() with nothing new to fold rewrites the tables whose soonest expiry has passed, in this handle and in one opened later, and rewrites nothing twice`, async () => {
  const clock = new ManualClock();
  const dir = tempDir("expiry-rewrite");
  const db = await openClocked(dir, clock);
  const N = 3000;
  await db.transaction((tx) => {
    for (let i = 0; i < N; i++) tx.set("ns", ["temp", i], "y".repeat(100), { expireIn: 1000 });
    for (let i = 0; i < 100; i++) tx.set("ns", ["perm", i], i);
  });
  await db.transaction((tx) => {
    for (let i = 0; i < 50; i++) tx.set("ns", ["later", i], i, { expireIn: 3_600_000 });
  });
  await db.compact();
  const manifest = databaseInternals(db).index.levels!;
  const soonest = Math.min(...manifest.tables().map((t) => t.expiresAtMs ?? Infinity));
  assert.equal(soonest, clock.nowMs + 1000, "the table records its soonest expiry");
  const before = await db.check();
  assert.ok(before.records >= N + 150, `before: ${before.records} records`);
  const bytesBefore = db.stats().checkpointBytes;
  const quiet = await db.compact();
  assert.equal(quiet.tableBytesWritten, 0, "nothing expired yet: nothing rewritten");
  clock.advance(1000);
  // Another handle, opened now, knows the tables' expiries from the manifest.
  const other = await openClocked(dir, clock);
  const r = await other.compact();
  assert.equal(r.segmentsFolded, 0, "nothing new to fold");
  assert.ok(r.tableBytesWritten > 0, "the table was rewritten");
  const after = await other.check();
  assert.ok(after.ok, JSON.stringify(after.problems));
  assert.ok(after.records <= 150 + 2, `expired keys reclaimed: ${before.records} records before, ${after.records} after`);
  assert.ok(other.stats().checkpointBytes < bytesBefore / 4, `table bytes ${bytesBefore} before, ${other.stats().checkpointBytes} after`);
  const next = Math.min(...databaseInternals(other).index.levels!.tables().map((t) => t.expiresAtMs ?? Infinity));
  assert.equal(next, clock.nowMs - 1000 + 3_600_000, "the rewritten table's soonest expiry is the next one");
  assert.equal((await other.compact()).tableBytesWritten, 0, "a rewritten table is not rewritten again");
  for (const h of [db, other]) {
    assert.equal(await h.count("ns", { prefix: ["temp"] }), 0);
    assert.equal(await h.count("ns", { prefix: ["perm"] }), 100);
    assert.equal(await h.count("ns", { prefix: ["later"] }), 50);
    assert.equal(await h.get("ns", ["perm", 42]), 42);
  }
  await other.close();
  await db.close();
});

test(`${R} count() judges every version against one reading of the clock: a folded version expiring while the count runs, under a newer live version in memory, is not counted twice (review helper-74: 50,000 live keys counted 53,365)`, async () => {
  const base = await defaultPlatform();
  let nowMs = 1_800_000_000_000;
  let stepPerRead = 0; // each reading moves the clock on by this much: an expiry falls between two readings
  const platform = new Proxy(base, {
    get: (target, prop) => {
      if (prop === "wallClockMs") {
        return () => {
          const t = nowMs;
          nowMs += stepPerRead;
          return t;
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  const db = await open(tempDir("count-clock"), { adapter: platform, namespaces: ["s"], autoCompactBytes: 0 });
  try {
    await db.set("s", "a", 1);
    await db.set("s", "k", "old", { expireIn: 60_000 });
    await db.set("s", "z", 1);
    await db.compact(); // k's expiring version is in a table now
    await db.set("s", "k", "new"); // a newer version, not expiring, in memory
    assert.equal(await db.count("s", {}), 3);
    stepPerRead = 120_000;
    assert.equal(await db.count("s", {}), 3, "db.count");
    const snap = await db.snapshot();
    assert.equal(await snap.count("s", {}), 3, "snapshot count");
    snap.release();
    assert.equal(await db.transaction((tx) => tx.count("s", {})), 3, "transaction count");
    stepPerRead = 0;
    const keys: unknown[] = [];
    for await (const e of db.list("s", {})) keys.push(e.key);
    assert.deepEqual(keys, ["a", "k", "z"]);
  } finally {
    await db.close();
  }
});
