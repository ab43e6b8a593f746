/**
 * watch(), expiring keys, count() and streamed list() used as an attacker or a careless user
 * would: iterators driven oddly (next() called again before the last one settled, break,
 * return(), thousands opened and closed), fromVersion out of range, a watcher replaying old
 * history while another handle compacts past it, the frontier file garbled, namespaces
 * dropped or renamed under a streaming list, odd selectors and options, clock steps, and
 * values mutated by the caller. Every bad input is a TxtDbError with a stable code; nothing
 * is written, lost or left hanging.
 */
import * as fs from "node:fs";
import { assert, runtime, sleep, tempDir, test, waitUntil } from "./harness.ts";
import { defaultPlatform, TxtDbError } from "txtdb";
import type { Database, Entry, OpenOptions, WatchEvent } from "txtdb";
import { drain, usingDbs } from "./watchhelpers.ts";
import { ManualClock } from "./expiryclock.ts";

const R = `[${runtime}]`;

/** The error `p` rejects with (or fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<TxtDbError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  assert.ok(e instanceof TxtDbError, `expected a TxtDbError, got ${String(e)}`);
  return e;
}

/** The error `f` throws synchronously. */
function thrown(f: () => unknown): TxtDbError {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof TxtDbError, `expected a TxtDbError, got ${String(e)}`);
    return e;
  }
  assert.fail("expected a TxtDbError");
}

async function all<T>(it: AsyncIterableIterator<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const e of it) out.push(e);
  return out;
}

/** `p` settled within `ms`, else "pending". */
function within<T>(p: Promise<T>, ms: number): Promise<T | "pending"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([p, new Promise<"pending">((r) => (timer = setTimeout(() => r("pending"), ms)))]).finally(() => clearTimeout(timer));
}

test(`${R} next() called again before the previous call settled: each call gets its own event, in order, and return() settles every pending call`, () => usingDbs(async (open) => {
  const db = await open(tempDir("watch-atk-next"), { namespaces: ["ns"], durability: "none" });
  const w = db.watch("ns", { prefix: [] });
  const pending = [w.next(), w.next(), w.next()];
  const v1 = (await db.set("ns", "a", 1)).version;
  const v2 = (await db.set("ns", "b", 2)).version;
  const got = await Promise.all(pending.slice(0, 2).map((p) => within(p, 5000)));
  assert.deepEqual(got.map((r) => (r === "pending" ? r : (r.value as WatchEvent).version)), [v1, v2], "the first call gets the first event, the second the second; none hangs");
  const rest = [pending[2]!, w.next()];
  await w.return!();
  const ended = await Promise.all(rest.map((p) => within(p, 5000)));
  assert.deepEqual(ended, [{ done: true, value: undefined }, { done: true, value: undefined }], "return() ends every waiting call");
  assert.deepEqual(await w.next(), { done: true, value: undefined });
  assert.equal(db.stats().watchers, 0);
}));

test(`${R} several pending next() calls when the watcher ends with an error: the first rejects with it, the others end`, () => usingDbs(async (open) => {
  const db = await open(tempDir("watch-atk-next-err"), { namespaces: ["ns"], durability: "none" });
  const w = db.watch("ns", { prefix: [] });
  const a = w.next().then(() => "resolved", (e: unknown) => e);
  const b = w.next();
  await db.dropNamespace("ns");
  const e = await within(a, 5000);
  assert.ok(e instanceof TxtDbError && e.code === "NAMESPACE_NOT_FOUND", `the first call rejects with NAMESPACE_NOT_FOUND, got ${String(e)}`);
  assert.deepEqual(await within(b, 5000), { done: true, value: undefined });
}));

/**
 * 100 versions written by one handle, then a second handle watching them from version 0
 * with a buffer of 3, so that its replay pauses (`afterWatch(dir)` runs then); the first
 * handle then compacts and writes on (rolling segments, so the watcher's handle learns of
 * the fold), and the watcher's handle reads once.
 */
async function replayAcrossCompaction(open: (dir: string, options?: OpenOptions) => Promise<Database>, label: string, afterWatch: (dir: string, leasesBefore: string[]) => void = () => {}) {
  const dir = tempDir(label);
  const options = { namespaces: ["ns"], durability: "none" as const, segmentBytes: 4096, autoCompactBytes: 0, watchBufferMax: 3 };
  const writer = await open(dir, options);
  const versions: bigint[] = [];
  for (let i = 0; i < 100; i++) versions.push((await writer.set("ns", ["k", i], "x".repeat(100))).version);
  const leasesBefore = fs.readdirSync(`${dir}/leases`);
  const watcherDb = await open(dir, options);
  const w = watcherDb.watch("ns", { prefix: ["k"] }, { fromVersion: 0n });
  afterWatch(dir, leasesBefore);
  await writer.compact();
  for (let i = 0; i < 60; i++) await writer.set("ns", ["other", i], "y".repeat(100));
  await watcherDb.get("ns", "nothing");
  return { versions, watcherDb, ...(await drain(w, 10_000)) };
}

test(`${R} a watcher replaying old history pins it at once: another handle's compaction keeps it, and every event is delivered`, () => usingDbs(async (open) => {
  const { versions, events, error } = await replayAcrossCompaction(open, "watch-atk-pin");
  assert.equal(error, undefined, `the replay ended with ${String(error)}`);
  assert.deepEqual(events.map((e) => e.version), versions);
}));

test(`${R} a watcher whose pin the other handle cannot see (its lease deleted by hand), compacted past, ends with WATCH_OVERFLOW after the events it delivered, never with a silent gap`, () => usingDbs(async (open) => {
  // (A pin that cannot be written fails watch() at its start: compact.test.ts.) Once the
  // watcher's lease is gone, the other handle's compaction takes its process for dead and
  // folds the history the replay still needs.
  const { versions, watcherDb, events, error } = await replayAcrossCompaction(open, "watch-atk-fold", (dir, before) => {
    for (const name of fs.readdirSync(`${dir}/leases`)) if (!before.includes(name)) fs.rmSync(`${dir}/leases/${name}`);
  });
  const got = events.map((e) => e.version);
  assert.deepEqual(got, versions.slice(0, got.length), "what was delivered is the history in order, with no gap");
  assert.ok(got.length < versions.length, "the history was folded before it was read (else this test proves nothing)");
  assert.ok(error instanceof TxtDbError && error.code === "WATCH_OVERFLOW", `a watcher that could not deliver everything says so (got ${got.length} of ${versions.length} events, error ${String(error)})`);
  const resumeFrom = (error.details as { resumeFrom: bigint }).resumeFrom;
  assert.ok(got.length === 0 || resumeFrom > got[got.length - 1]!, "resumeFrom names the oldest version one can resume from");
  const again = watcherDb.watch("ns", { prefix: ["k"] }, { fromVersion: resumeFrom });
  await again.return!();
}));

test(`${R} watchers opened and closed by the thousand (return, break, abort, pending next) leave none behind`, () => usingDbs(async (open) => {
  const db = await open(tempDir("watch-atk-churn"), { namespaces: ["ns"], durability: "none", maxWatchers: 10 });
  await db.set("ns", "a", 1);
  for (let i = 0; i < 3000; i++) {
    const mode = i % 4;
    if (mode === 0) {
      const w = db.watch("ns", { prefix: [] });
      await w.return!();
    } else if (mode === 1) {
      const w = db.watch("ns", { keys: ["a"] }, { fromVersion: 0n });
      for await (const _ of w) break;
    } else if (mode === 2) {
      const c = new AbortController();
      const w = db.watch("ns", { prefix: [] }, { signal: c.signal });
      const p = w.next();
      c.abort();
      assert.deepEqual(await p, { done: true, value: undefined });
    } else {
      const w = db.watch("ns", { prefix: [] });
      const p = w.next();
      await w.return!();
      await p;
    }
  }
  assert.equal(db.stats().watchers, 0);
  // The limit still holds, and still frees.
  const ws = Array.from({ length: 10 }, () => db.watch("ns", { prefix: [] }));
  assert.equal(thrown(() => db.watch("ns", { prefix: [] })).code, "LIMIT");
  for (const w of ws) await w.return!();
  const w = db.watch("ns", { prefix: [] });
  const v = (await db.set("ns", "b", 2)).version;
  assert.equal(((await w.next()).value as WatchEvent).version, v);
  await w.return!();
}));

test(`${R} fromVersion: 0n replays everything, past the newest version, non-bigints and negatives are INVALID_ARGUMENT`, () => usingDbs(async (open) => {
  const db = await open(tempDir("watch-atk-from"), { namespaces: ["ns"], durability: "none" });
  const v1 = (await db.set("ns", "a", 1)).version;
  const v2 = (await db.set("ns", "a", 2)).version;
  const { events } = await drain(db.watch("ns", { keys: ["a"] }, { fromVersion: 0n }), 300);
  assert.deepEqual(events.map((e) => e.version), [v1, v2]);
  for (const bad of [-1n, 1, "1", 1.5, null, Number.NaN] as unknown[]) {
    const e = thrown(() => db.watch("ns", { keys: ["a"] }, { fromVersion: bad as bigint }));
    assert.equal(e.code, "INVALID_ARGUMENT", String(bad));
    assert.match(e.message, /fromVersion/);
  }
  // Past the newest version (no version of this store): refused, not waited for while
  // every commit up to it goes by unreported; the newest version itself is fine.
  for (const ahead of [2n ** 70n, BigInt(Number.MAX_SAFE_INTEGER) + 2n, v2 + 1n]) {
    const e = thrown(() => db.watch("ns", { keys: ["a"] }, { fromVersion: ahead }));
    assert.equal(e.code, "INVALID_ARGUMENT", String(ahead));
    assert.match(e.message, /past this store's newest version/);
  }
  const atHead = db.watch("ns", { keys: ["a"] }, { fromVersion: v2 });
  await db.set("ns", "a", 3);
  assert.deepEqual(((await atHead.next()).value as WatchEvent).changes, [{ key: "a", value: 3 }]);
  await atHead.return!();
  assert.equal(db.stats().watchers, 0);
  assert.equal(await db.get("ns", "a"), 3, "nothing was written by the bad calls");
}));

test(`${R} a garbled or truncated frontier file under running watchers: no crash, the watchers go on or fail with a TxtDbError, and hear no commit that was refused`, () => usingDbs(async (open) => {
  // Each damage on a store of its own: a commit after it may be refused (the file cut or
  // garbled past the sync-failure mark reads as a garbled mark), and then the store refuses
  // commits until a writable reopen.
  for (const damage of ["garble", "truncate", "empty"] as const) {
    const dir = tempDir(`watch-atk-frontier-${damage}`);
    const db = await open(dir, { namespaces: ["ns"], durability: "none" });
    await db.set("ns", "a", 0);
    const w = db.watch("ns", { prefix: [] });
    const p = w.next().then((r) => r, (e: unknown) => e);
    const f = `${dir}/frontier`;
    const size = fs.statSync(f).size;
    if (damage === "garble") fs.writeFileSync(f, new Uint8Array(size).fill(0x55));
    else if (damage === "truncate") fs.truncateSync(f, Math.floor(size / 2));
    else fs.truncateSync(f, 0);
    await sleep(100);
    let v: bigint | undefined;
    try {
      v = (await db.set("ns", "a", damage)).version;
    } catch (e) {
      assert.ok(e instanceof TxtDbError, `a commit over a damaged frontier fails with a TxtDbError, got ${String(e)}`);
    }
    const r = await within(p, v === undefined ? 500 : 5000);
    if (r instanceof TxtDbError) continue;
    if (v === undefined) {
      assert.equal(r, "pending", `the watcher heard a commit that was refused after the frontier was ${damage}d`);
      await w.return!();
      continue;
    }
    assert.notEqual(r, "pending", `the watcher heard the commit after the frontier was ${damage}d`);
    assert.equal(((r as IteratorResult<WatchEvent>).value as WatchEvent).version, v);
    await w.return!();
  }
}));

test(`${R} a watcher over a namespace renamed, dropped and re-created hears only its own namespace, and resumes where told`, () => usingDbs(async (open) => {
  const db = await open(tempDir("watch-atk-ns"), { namespaces: ["ns"], durability: "none" });
  const w = db.watch("ns", { prefix: [] });
  const v1 = (await db.set("ns", "a", 1)).version;
  await db.renameNamespace("ns", "moved");
  await db.createNamespace("ns");
  await db.set("ns", "a", "new namespace");
  const { events, error } = await drain(w, 3000);
  assert.deepEqual(events.map((e) => e.version), [v1]);
  assert.ok(error instanceof TxtDbError && error.code === "NAMESPACE_NOT_FOUND");
  const { to, version } = error.details as { to: string; version: bigint };
  assert.equal(to, "moved");
  const next = db.watch(to, { prefix: [] }, { fromVersion: version });
  const vm = (await db.set("moved", "b", 2)).version;
  assert.equal(((await next.next()).value as WatchEvent).version, vm);
  await next.return!();
}));

test(`${R} list() and count() refuse a misspelt selector field or list option, and a non-boolean reverse, with INVALID_ARGUMENT, on db, snapshots and transactions`, () => usingDbs(async (open) => {
  const db = await open(tempDir("list-atk-sel"), { namespaces: ["ns"], durability: "none" });
  for (let i = 0; i < 5; i++) await db.set("ns", ["eu", i], i);
  await db.set("ns", ["us", 0], 0);
  const snap = await db.snapshot();
  const tx = await db.begin();
  try {
    for (const [name, r] of [["db", db], ["snapshot", snap], ["transaction", tx]] as const) {
      const badSelectors = [{ prefx: ["eu"] }, { prefix: ["eu"], stat: ["eu", 2] }, ["eu"]] as unknown[];
      for (const sel of badSelectors) {
        const e1 = await rejection(all(r.list("ns", sel as never)));
        assert.equal(e1.code, "INVALID_ARGUMENT", `${name} list ${JSON.stringify(sel)}`);
        assert.match(e1.message, /selector/);
        const e2 = await rejection(r.count("ns", sel as never));
        assert.equal(e2.code, "INVALID_ARGUMENT", `${name} count ${JSON.stringify(sel)}`);
      }
      const badOptions = [{ reverse: "yes" }, { reverse: 1 }, { limit: 2, cursor: "abc" }, { Limit: 1 }, 5, "reverse", [1], null] as unknown[]; // null: as set() refuses it (review helper-74)
      for (const opts of badOptions) {
        const e = await rejection(all(r.list("ns", { prefix: ["eu"] }, opts as never)));
        assert.equal(e.code, "INVALID_ARGUMENT", `${name} list options ${JSON.stringify(opts)}`);
      }
      for (const limit of [-1, Number.NaN, 1.5, -Infinity, "2"] as unknown[]) {
        assert.equal((await rejection(all(r.list("ns", { prefix: [] }, { limit: limit as number })))).code, "INVALID_ARGUMENT", `${name} limit ${String(limit)}`);
      }
      // What stays valid: {} and { prefix: [] } (everything), start > end (nothing), limit 0, Infinity, huge.
      assert.equal(await r.count("ns", {}), 6);
      assert.equal((await all(r.list("ns", {}))).length, 6);
      assert.equal(await r.count("ns", { start: ["us"], end: ["eu"] }), 0);
      assert.equal((await all(r.list("ns", { start: ["us"], end: ["eu"] }))).length, 0);
      assert.equal((await all(r.list("ns", { prefix: [] }, { limit: 0 }))).length, 0);
      assert.equal((await all(r.list("ns", { prefix: [] }, { limit: 2 ** 60, reverse: false }))).length, 6);
      assert.equal((await all(r.list("ns", { prefix: [] }, { limit: Infinity }))).length, 6);
      assert.deepEqual((await all(r.list<number>("ns", { prefix: ["eu"], start: ["eu", 2] }, { reverse: true, limit: 2 }))).map((e) => e.value), [4, 3]);
      assert.equal(await r.count("ns", { prefix: ["eu"], start: ["eu", 2], end: ["eu", 4] }), 2);
    }
  } finally {
    snap.release();
    tx.rollback();
  }
  assert.equal(await db.count("ns", {}), 6, "nothing was written");
}));

test(`${R} keys of every type: count and list agree, forwards, reversed and limited, across a compaction`, () => usingDbs(async (open) => {
  const db = await open(tempDir("list-atk-types"), { namespaces: ["ns"], durability: "none", autoCompactBytes: 0 });
  const parts = [new Uint8Array([0]), new Uint8Array([255, 0]), "", "a", "\u0000", "\uffff", -Infinity, -0, 0, 1.5, Infinity, -(2n ** 70n), 0n, 2n ** 70n, false, true];
  for (const p of parts) {
    await db.set("ns", p, 1);
    await db.set("ns", ["t", p], 1);
    await db.set("ns", ["t", p, p], 1);
  }
  for (const phase of ["memory", "tables"]) {
    if (phase === "tables") await db.compact();
    const listed = await all(db.list("ns", { prefix: ["t"] }));
    assert.equal(await db.count("ns", { prefix: ["t"] }), listed.length, phase);
    assert.equal(listed.length, 2 * (parts.length - 1), `${phase}: -0 and 0 are one key`);
    const reversed = await all(db.list("ns", { prefix: ["t"] }, { reverse: true }));
    assert.deepEqual(reversed.map((e) => e.key), listed.map((e) => e.key).reverse(), phase);
    assert.equal(await db.count("ns", {}), 3 * (parts.length - 1), phase);
    for (const p of parts) {
      assert.equal(await db.count("ns", { prefix: ["t", p] }), 1, `${phase}: one key extends ["t", ${String(p)}]`);
    }
  }
}));

test(`${R} a streamed list on db and on a snapshot shows the version it began at while the namespace is dropped, renamed or compacted under it`, () => usingDbs(async (open) => {
  const dir = tempDir("list-atk-stream");
  const options = { namespaces: ["ns", "other"], durability: "none" as const, autoCompactBytes: 0, segmentBytes: 8192 };
  const db = await open(dir, options);
  const other = await open(dir, options);
  const fill = async () => {
    for (let i = 0; i < 600; i++) await db.set("ns", ["k", i], { i });
  };
  await fill();
  for (const where of ["db", "snapshot"] as const) {
    for (const action of ["drop", "rename", "rewrite-and-compact"] as const) {
      const snap = where === "snapshot" ? await db.snapshot() : undefined;
      const it = (snap ?? db).list<{ i: number }>("ns", { prefix: ["k"] });
      const got: number[] = [];
      for (let j = 0; j < 300; j++) got.push((await it.next()).value!.value.i);
      if (action === "drop") await other.dropNamespace("ns");
      else if (action === "rename") await other.renameNamespace("ns", "ns2");
      else {
        for (let i = 0; i < 600; i += 2) await other.set("ns", ["k", i], { i: -1 });
        for (let i = 1; i < 600; i += 2) await other.delete("ns", ["k", i]);
        await other.compact();
        await db.get("other", "x"); // this handle learns of the fold
      }
      for (;;) {
        const n = await it.next();
        if (n.done) break;
        got.push(n.value.value.i);
      }
      assert.deepEqual(got, Array.from({ length: 600 }, (_, i) => i), `${where} ${action}: the whole list at the version it began at`);
      snap?.release();
      if (action === "rename") await db.dropNamespace("ns2");
      if ((await db.listNamespaces()).includes("ns")) await db.dropNamespace("ns");
      await db.createNamespace("ns");
      await fill();
    }
  }
}));

test(`${R} values and keys mutated by the caller after a read or a write change neither the store nor other readers`, () => usingDbs(async (open) => {
  const db = await open(tempDir("values-atk-mut"), { namespaces: ["ns"], durability: "none" });
  const key = ["k", new Uint8Array([1, 2])] as [string, Uint8Array];
  const value = { n: 1, list: [1, 2], bytes: new Uint8Array([7]), map: new Map([["a", 1]]) };
  const w = db.watch("ns", { prefix: ["k"] });
  await db.set("ns", key, value);
  key[1][0] = 9;
  value.n = 2;
  value.list.push(3);
  const fresh = () => ({ n: 1, list: [1, 2], bytes: new Uint8Array([7]), map: new Map([["a", 1]]) });
  const k = ["k", new Uint8Array([1, 2])];
  const ev = (await w.next()).value as WatchEvent<typeof value>;
  ev.changes[0]!.value!.n = 99;
  (ev.changes[0]!.key as unknown[])[0] = "zz";
  await w.return!();
  const got = (await db.get<typeof value>("ns", k))!;
  got.n = 5;
  got.bytes[0] = 0;
  got.map.set("b", 2);
  for await (const e of db.list<typeof value>("ns", { prefix: ["k"] })) {
    e.value.list.length = 0;
    (e.key as unknown[])[1] = "x";
  }
  const snap = await db.snapshot();
  (await snap.get<typeof value>("ns", k))!.n = 7;
  assert.deepEqual(await snap.get("ns", k), fresh());
  snap.release();
  await db.transaction(async (tx) => {
    (await tx.get<typeof value>("ns", k))!.n = 8;
    assert.deepEqual(await tx.get("ns", k), fresh());
    const own = { o: 1 };
    tx.set("ns", "own", own);
    own.o = 2;
    (await tx.get<{ o: number }>("ns", "own"))!.o = 3;
    for (const e of await all(tx.list<{ o: number }>("ns", { start: "own", end: "own\u0000" }))) e.value.o = 4;
    assert.deepEqual(await tx.get("ns", "own"), { o: 1 });
  });
  assert.deepEqual(await db.get("ns", k), fresh());
  assert.deepEqual(await db.get("ns", "own"), { o: 1 });
  assert.deepEqual((await db.getEntry("ns", k))!.key, ["k", new Uint8Array([1, 2])]);
  assert.equal(await db.get("ns", ["k", new Uint8Array([9, 2])]), undefined);
}));

test(`${R} expireIn: bad values are INVALID_ARGUMENT and write nothing; a fraction rounds up; a re-set without expiry keeps the key; count, list, get, snapshots and transactions agree across clock steps and compactions`, async () => {
  const clock = new ManualClock();
  const adapter = clock.platform(await defaultPlatform());
  await usingDbs(async (open) => {
    const db = await open(tempDir("expiry-atk"), { adapter, namespaces: ["ns"], durability: "none", autoCompactBytes: 0 });
    const before = (await db.set("ns", "bad", "kept")).version;
    for (const bad of [0, -1, -0.5, Number.NaN, Infinity, -Infinity, 1e300, 2 ** 53, "1000", null, true, 10n] as unknown[]) {
      const e = await rejection(db.set("ns", "bad", "x", { expireIn: bad as number }));
      assert.equal(e.code, "INVALID_ARGUMENT", String(bad));
      assert.match(e.message, /expireIn/);
      const tx = await db.begin();
      assert.equal(thrown(() => tx.set("ns", "bad", "x", { expireIn: bad as number })).code, "INVALID_ARGUMENT");
      tx.rollback();
    }
    assert.equal((await rejection(db.set("ns", "bad", "x", { expiresIn: 10 } as never))).code, "INVALID_ARGUMENT");
    assert.deepEqual(await db.getEntry("ns", "bad"), { key: "bad", value: "kept", version: before }, "nothing was written");

    await db.set("ns", "frac", 1, { expireIn: 0.0001 });
    assert.equal(await db.get("ns", "frac"), 1, "a fraction of a ms rounds up to 1 ms: present now");
    clock.advance(1);
    assert.equal(await db.get("ns", "frac"), undefined);

    await db.set("ns", "reset", 1, { expireIn: 10 });
    await db.set("ns", "reset", 2);
    clock.advance(1000);
    assert.equal(await db.get("ns", "reset"), 2, "a set without expireIn clears the expiry");

    const keys: [string, number][] = [];
    for (let i = 0; i < 300; i++) {
      keys.push(["e", i]);
      await db.set("ns", ["e", i], i, i % 3 === 0 ? { expireIn: 1000 + i } : i % 3 === 1 ? undefined : { expireIn: 100_000 });
    }
    await db.compact();
    for (let i = 0; i < 300; i += 5) await db.set("ns", ["e", i], -i, i % 2 === 1 ? { expireIn: 500 } : undefined);
    for (let i = 1; i < 300; i += 7) await db.delete("ns", ["e", i]);
    const snap = await db.snapshot();
    const agree = async (label: string): Promise<number> => {
      const counts: number[] = [];
      for (const r of [db, snap]) {
        const c = await r.count("ns", { prefix: ["e"] });
        const listed = await all(r.list("ns", { prefix: ["e"] }));
        const reversed = await all(r.list("ns", { prefix: ["e"] }, { reverse: true }));
        const present = (await r.getMany("ns", keys)).filter((v) => v !== undefined).length;
        const limited = await all(r.list("ns", { prefix: ["e"] }, { limit: 40 }));
        assert.deepEqual([listed.length, reversed.length, present], [c, c, c], `${label}: count, list, reversed list and getMany agree`);
        assert.equal(limited.length, Math.min(40, c), `${label}: a limited list still returns limit live entries`);
        assert.deepEqual(reversed.map((e: Entry<unknown>) => e.key), listed.map((e) => e.key).reverse());
        counts.push(c);
      }
      const tx = await db.begin();
      counts.push(await tx.count("ns", { prefix: ["e"] }), (await all(tx.list("ns", { prefix: ["e"] }))).length);
      tx.rollback();
      assert.ok(counts.every((c) => c === counts[0]), `${label}: db, snapshot and transaction agree (${counts.join(", ")})`);
      return counts[0]!;
    };
    const n0 = await agree("now");
    clock.advance(800);
    const n1 = await agree("+800 ms");
    clock.advance(1000);
    const n2 = await agree("+1800 ms");
    await db.compact();
    assert.equal(await agree("+1800 ms, compacted with a snapshot open"), n2);
    clock.advance(100_000);
    const n3 = await agree("+101.8 s");
    await db.compact();
    assert.equal(await agree("+101.8 s, compacted"), n3);
    assert.ok(n0 > n1 && n1 > n2 && n2 > n3 && n3 > 0, `keys expire as the clock moves (${n0}, ${n1}, ${n2}, ${n3})`);
    snap.release();
  });
});

test(`${R} a serializable transaction that read a key which then expires fails with CONFLICT; one that read it absent does not`, async () => {
  const clock = new ManualClock();
  const adapter = clock.platform(await defaultPlatform());
  await usingDbs(async (open) => {
    const db: Database = await open(tempDir("expiry-atk-tx"), { adapter, namespaces: ["ns"], durability: "none" });
    await db.set("ns", "s", 1, { expireIn: 100 });
    const tx = await db.begin({ isolation: "serializable" });
    assert.equal(await tx.count("ns", { prefix: [] }), 1);
    tx.set("ns", "out", 1);
    clock.advance(100);
    assert.equal((await rejection(tx.commit())).code, "CONFLICT");
    const tx2 = await db.begin({ isolation: "serializable" });
    assert.equal(await tx2.get("ns", "s"), undefined);
    tx2.set("ns", "out", 2);
    await tx2.commit();
    assert.equal(await db.get("ns", "out"), 2);
  });
});

test(`${R} a watcher that never reads overflows on live commits with WATCH_OVERFLOW naming where to resume, and stops pinning history`, () => usingDbs(async (open) => {
  const db = await open(tempDir("watch-atk-lazy"), { namespaces: ["ns"], durability: "none", watchBufferMax: 4, autoCompactBytes: 0 });
  const start = (await db.set("ns", "x", 0)).version;
  const w = db.watch("ns", { prefix: [] });
  for (let i = 0; i < 10; i++) await db.set("ns", ["k", i], i);
  assert.ok(await waitUntil(() => db.stats().watchers === 0, 5000) >= 0, "the watcher overflowed");
  const e = await rejection(w.next());
  assert.equal(e.code, "WATCH_OVERFLOW");
  assert.equal((e.details as { resumeFrom: bigint }).resumeFrom, start);
  assert.deepEqual(await w.next(), { done: true, value: undefined });
  assert.deepEqual(await w.return!(), { done: true, value: undefined }, "return() after the end is harmless");
  const { events } = await drain(db.watch("ns", { prefix: [] }, { fromVersion: start }), 500);
  assert.equal(events.length, 10, "resuming replays what it missed");
}));

test(`${R} watch() with a selector of neither or both of keys and prefix, or options that are no object, is INVALID_ARGUMENT`, () => usingDbs(async (open) => {
  const db = await open(tempDir("watch-atk-args"), { namespaces: ["ns"], durability: "none" });
  const bad: [unknown, unknown][] = [[{}, undefined], [{ keys: ["a"], prefix: ["a"] }, undefined], [{ prefx: ["a"] }, undefined], [{ prefix: [] }, null], [{ prefix: [] }, 5]];
  for (const [sel, opts] of bad) {
    let code = "none";
    try {
      const w = (db.watch as (ns: string, s: unknown, o?: unknown) => AsyncIterableIterator<unknown>)("ns", sel, opts);
      await w.return!();
    } catch (e) {
      code = e instanceof TxtDbError ? e.code : `not a TxtDbError: ${String(e)}`;
    }
    assert.equal(code, "INVALID_ARGUMENT", `${JSON.stringify(sel)}, ${String(opts)}`);
  }
}));

test(`${R} watch() replaying history across a TSN gap in the log (a sealed segment cut back to its first record, the next segment whole) ends with CORRUPTION naming the segment, after the events before the gap, never skipping the missing versions silently`, () => usingDbs(async (open) => {
  const dir = tempDir("watch-atk-gap");
  const db = await open(dir, { namespaces: ["ns"], segmentBytes: 1024, autoCompactBytes: 0 });
  let last = 0n;
  for (let i = 0; i < 40; i++) last = (await db.set("ns", i, "v".repeat(100) + i)).version;
  const segs = fs.readdirSync(dir).filter((n) => /^seg-\d{10}\.log$/.test(n)).sort();
  assert.ok(segs.length >= 4, `several segments: ${segs}`);
  // Cut the third segment back to its first record: the fourth goes on after the records cut.
  const bytes = new Uint8Array(fs.readFileSync(`${dir}/${segs[2]}`));
  const firstEnd = 9 + new DataView(bytes.buffer, bytes.byteOffset).getUint32(1, true);
  assert.ok(firstEnd < bytes.length, "the segment holds more than one record");
  fs.truncateSync(`${dir}/${segs[2]}`, firstEnd);
  const { events, error } = await drain(db.watch("ns", { prefix: [] }, { fromVersion: 0n }), 5000);
  assert.ok(error instanceof TxtDbError, `the watcher ends with an error, not quietly after ${events.length} events up to ${events.at(-1)?.version} (last ${last})`);
  assert.equal(error.code, "CORRUPTION", error.message);
  assert.equal((error.details as { file?: string }).file, `${dir}/${segs[3]}`);
  for (let i = 1; i < events.length; i++) assert.equal(events[i]!.version, events[i - 1]!.version + 1n, "no version skipped before the error");
}));
