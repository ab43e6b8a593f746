/**
 * Expiring keys (`set(..., { expireIn })`): an expired key reads as absent from its expiry on
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
import { databaseInternals, encodeKey, encodeValue, ENVELOPE_HEADER_BYTES, EXPIRE_IN_MAX_MS, expiresAtOf, isExpiring, wrapExpiring } from "txtdb/internal";
import { ManualClock } from "./expiryclock.ts";

const R = `[${runtime}]`;

async function openClocked(dir: string, clock: ManualClock, options: Record<string, unknown> = {}): Promise<Database> {
  return await open(dir, { adapter: clock.platform(await defaultPlatform()), namespaces: ["ns"], autoCompactBytes: 0, ...options });
}

async function listed(db: { list: Database["list"] }, sel: object, opts: { limit?: number; reverse?: boolean } = {}): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const e of db.list("ns", sel as never, opts)) out.push(e.key);
  return out;
}

function rejectsWith(code: string, pattern?: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof TxtDbError, `a TxtDbError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  };
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

test(`${R} set() with expireIn: present until the expiry, then absent to get, getEntry, getMany, list, count and a snapshot taken before`, async () => {
  const clock = new ManualClock();
  const db = await openClocked(tempDir("expiry"), clock);
  const other = await openClocked(tempDir("expiry-unused"), clock); // a second store: expiry is per value, not per handle
  await other.close();
  await db.set("ns", "perm", "p");
  const { version } = await db.set("ns", "temp", { s: 1 }, { expireIn: 1000 });
  await using before = await db.snapshot();
  assert.deepEqual(await db.get("ns", "temp"), { s: 1 });
  assert.deepEqual(await db.getEntry("ns", "temp"), { key: "temp", value: { s: 1 }, version });
  assert.equal(await db.count("ns", { prefix: [] }), 2);
  clock.advance(999);
  assert.deepEqual(await db.get("ns", "temp"), { s: 1 }, "1 ms before its expiry it is there");
  clock.advance(1);
  assert.equal(await db.get("ns", "temp"), undefined, "at its expiry it is gone");
  assert.equal(await db.getEntry("ns", "temp"), undefined);
  assert.deepEqual(await db.getMany("ns", ["temp", "perm"]), [undefined, "p"]);
  assert.deepEqual(await listed(db, { prefix: [] }), ["perm"]);
  assert.deepEqual(await listed(db, { prefix: [] }, { reverse: true }), ["perm"]);
  assert.equal(await db.count("ns", { prefix: [] }), 1);
  assert.equal(await before.get("ns", "temp"), undefined, "a snapshot taken before the expiry sees it absent after");
  assert.equal(await before.count("ns", { prefix: [] }), 1);
  assert.deepEqual(await listed(before, { prefix: [] }), ["perm"]);
  const report = await db.check();
  assert.ok(report.ok, JSON.stringify(report.problems));
  await db.close();
  // Reopened (the index rebuilt from the log): still absent.
  const again = await openClocked(db.path, clock);
  assert.equal(await again.get("ns", "temp"), undefined);
  assert.equal(await again.get("ns", "perm"), "p");
  await again.close();
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

test(`${R} expireIn is checked: INVALID_ARGUMENT for what is not a finite number of ms in (0, 100 years], and nothing is written`, async () => {
  const clock = new ManualClock();
  const db = await openClocked(tempDir("expiry"), clock);
  const bad: [unknown, RegExp][] = [
    [{ expireIn: 0 }, /greater than 0, got 0/],
    [{ expireIn: -5 }, /greater than 0, got -5/],
    [{ expireIn: NaN }, /got NaN/],
    [{ expireIn: Infinity }, /got Infinity/],
    [{ expireIn: "1000" }, /got "1000"/],
    [{ expireIn: 1000n }, /got bigint/],
    [{ expireIn: null }, /got object/],
    [{ expireIn: EXPIRE_IN_MAX_MS + 1 }, /longest accepted is 3155760000000 ms/],
    [{ expiresIn: 1000 }, /no option "expiresIn"/],
    [null, /must be an object/],
    [1000, /must be an object.*got number/],
    [[1000], /got an array/],
  ];
  for (const [options, pattern] of bad) {
    await assert.rejects(db.set("ns", "k", 1, options as never), rejectsWith("INVALID_ARGUMENT", pattern), `db.set with ${String(options)}`);
    const tx = await db.begin();
    assert.throws(() => tx.set("ns", "k", 1, options as never), rejectsWith("INVALID_ARGUMENT", pattern), `tx.set with ${String(options)}`);
    await tx.commit();
  }
  assert.equal(await db.get("ns", "k"), undefined, "nothing was written");
  // Accepted: fractions (rounded up to a whole ms, never to 0), the maximum, undefined.
  await db.set("ns", "frac", 1, { expireIn: 0.25 });
  assert.equal(await db.get("ns", "frac"), 1);
  clock.advance(1);
  assert.equal(await db.get("ns", "frac"), undefined);
  await db.set("ns", "max", 1, { expireIn: EXPIRE_IN_MAX_MS });
  await db.set("ns", "none", 1, { expireIn: undefined });
  await db.set("ns", "empty", 1, {});
  clock.advance(50 * 365 * 86_400_000);
  assert.deepEqual(await db.getMany("ns", ["max", "none", "empty"]), [1, 1, 1]);
  await db.close();
});

test(`${R} set() again without expireIn clears the expiry; with a new expireIn it replaces it; delete() removes an expiring key`, async () => {
  const clock = new ManualClock();
  const db = await openClocked(tempDir("expiry"), clock);
  await db.set("ns", "cleared", 1, { expireIn: 100 });
  await db.set("ns", "cleared", 2);
  await db.set("ns", "extended", 1, { expireIn: 100 });
  await db.set("ns", "extended", 2, { expireIn: 1000 });
  await db.set("ns", "shortened", 1, { expireIn: 1000 });
  await db.set("ns", "shortened", 2, { expireIn: 100 });
  await db.set("ns", "deleted", 1, { expireIn: 1000 });
  await db.delete("ns", "deleted");
  clock.advance(100);
  assert.deepEqual(await db.getMany("ns", ["cleared", "extended", "shortened", "deleted"]), [2, 2, undefined, undefined]);
  clock.advance(900);
  assert.deepEqual(await db.getMany("ns", ["cleared", "extended"]), [2, undefined]);
  // Setting an expired key again brings it back, expiring or not.
  await db.set("ns", "extended", 3);
  assert.equal(await db.get("ns", "extended"), 3);
  await db.close();
});

test(`${R} a serializable transaction that read a key present which expires before it commits fails with CONFLICT (get, list, count); snapshot isolation and read-only transactions do not`, async () => {
  const clock = new ManualClock();
  const db = await openClocked(tempDir("expiry"), clock);
  const reads: [string, (tx: Awaited<ReturnType<Database["begin"]>>) => Promise<unknown>][] = [
    ["get", (tx) => tx.get("ns", "temp")],
    ["getMany", (tx) => tx.getMany("ns", ["perm", "temp"])],
    ["getEntry", (tx) => tx.getEntry("ns", "temp")],
    ["list", (tx) => listed(tx, { prefix: [] })],
    ["count", (tx) => tx.count("ns", { prefix: [] })],
  ];
  for (const [what, read] of reads) {
    const { version } = await db.set("ns", "temp", "t", { expireIn: 100 });
    await db.set("ns", "perm", "p");
    const tx = await db.begin();
    await read(tx);
    tx.set("ns", "out", what);
    clock.advance(100);
    await assert.rejects(tx.commit(), (e) => {
      assert.ok(e instanceof TxtDbError && e.code === "CONFLICT", `${what}: ${String(e)}`);
      assert.match(e.message, /expired/);
      const d = e.details as Record<string, unknown>;
      assert.equal(d.expired, true);
      assert.equal(d.ns, "ns");
      assert.equal(d.key, "temp");
      assert.equal(d.version, version);
      return true;
    }, what);
    // Read while already expired: absent, and nothing more to conflict on.
    const tx2 = await db.begin();
    await read(tx2);
    tx2.set("ns", "out", what);
    await tx2.commit();
    // Snapshot isolation does not validate reads.
    await db.set("ns", "temp", "t", { expireIn: 100 });
    const tx3 = await db.begin({ isolation: "snapshot" });
    await read(tx3);
    tx3.set("ns", "out", what);
    clock.advance(100);
    await tx3.commit();
    // A read-only transaction never conflicts.
    await db.set("ns", "temp", "t", { expireIn: 100 });
    const tx4 = await db.begin();
    await read(tx4);
    clock.advance(100);
    await tx4.commit();
  }
  // db.transaction() retries: the second run sees the key absent.
  await db.set("ns", "lease", "mine", { expireIn: 100 });
  const seen: unknown[] = [];
  await db.transaction(async (tx) => {
    const v = await tx.get("ns", "lease");
    seen.push(v);
    if (seen.length === 1) clock.advance(100);
    tx.set("ns", "lease", v === undefined ? "taken" : "kept");
  });
  assert.deepEqual(seen, ["mine", undefined]);
  assert.equal(await db.get("ns", "lease"), "taken");
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

test(`${R} own writes with expireIn in a transaction: read back until their expiry, absent after; count follows`, async () => {
  const clock = new ManualClock();
  const db = await openClocked(tempDir("expiry"), clock);
  await db.set("ns", "base", 1);
  const tx = await db.begin();
  tx.set("ns", "mine", "m", { expireIn: 50 });
  tx.set("ns", "base", 2, { expireIn: 50 });
  assert.equal(await tx.get("ns", "mine"), "m");
  assert.equal(await tx.count("ns", { prefix: [] }), 2);
  clock.advance(50);
  assert.equal(await tx.get("ns", "mine"), undefined);
  assert.equal(await tx.get("ns", "base"), undefined, "its own expiring write replaced the committed value");
  assert.equal(await tx.count("ns", { prefix: [] }), 0);
  assert.deepEqual(await listed(tx, { prefix: [] }), []);
  await tx.commit();
  assert.deepEqual(await db.getMany("ns", ["mine", "base"]), [undefined, undefined]);
  await db.close();
});

test(`${R} sum() keeps the expiry of the value it adds to; on an expired key it starts from nothing and does not expire; check() sees an expired key as absent`, async () => {
  const clock = new ManualClock();
  const db = await openClocked(tempDir("expiry"), clock);
  await db.set("ns", "hits", 10, { expireIn: 100 });
  await db.transaction((tx) => tx.sum("ns", "hits", 5));
  assert.equal(await db.get("ns", "hits"), 15);
  const tx = await db.begin();
  tx.set("ns", "own", 1, { expireIn: 100 });
  tx.sum("ns", "own", 1);
  await tx.commit();
  assert.equal(await db.get("ns", "own"), 2);
  clock.advance(100);
  assert.equal(await db.get("ns", "hits"), undefined, "the sum kept the expiry");
  assert.equal(await db.get("ns", "own"), undefined, "a sum on an own expiring set keeps its expiry");
  await db.transaction((tx) => tx.sum("ns", "hits", 5));
  assert.equal(await db.get("ns", "hits"), 5, "an expired key sums from nothing");
  clock.advance(10 * 365 * 86_400_000);
  assert.equal(await db.get("ns", "hits"), 5, "and the result does not expire");
  // check(): an expired key is absent.
  const { version } = await db.set("ns", "c", 1, { expireIn: 10 });
  clock.advance(10);
  await db.transaction((tx) => tx.check("ns", "c", null));
  await assert.rejects(db.transaction((tx) => tx.check("ns", "c", version), { maxRetries: 0 }), rejectsWith("CONFLICT", /absent/));
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

test(`${R} watch reports the set of an expiring key with its value, and nothing when it expires`, async () => {
  const clock = new ManualClock();
  const db = await openClocked(tempDir("expiry"), clock);
  const w = db.watch("ns", { prefix: [] });
  const first = w.next();
  await db.set("ns", "temp", { v: 1 }, { expireIn: 10 });
  const e1 = (await first).value!;
  assert.deepEqual(e1.changes, [{ key: "temp", value: { v: 1 } }]);
  clock.advance(10);
  assert.equal(await db.get("ns", "temp"), undefined);
  await db.compact();
  const second = w.next();
  const { version } = await db.set("ns", "after", 2);
  const e2 = (await second).value!;
  assert.equal(e2.version, version, "the next event is the next commit: the expiry made none");
  assert.deepEqual(e2.changes, [{ key: "after", value: 2 }]);
  await w.return!();
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
