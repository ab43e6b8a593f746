/**
 * watch() buffers (issue 9, defect 18): a watcher's buffer is bounded by bytes as well as
 * events, so a watcher nobody consumes cannot grow with large values; it ends with
 * WATCH_OVERFLOW naming the version to resume from, and resuming from a backlog larger
 * than the buffer replays it rather than overflowing again.
 */
import { assert, runtime, sleep, tempDir, test, waitUntil } from "./harness.ts";
import { TxtDbError } from "txtdb";
import type { WatchEvent } from "txtdb";
import { take, usingDbs } from "./watchhelpers.ts";

const R = `[${runtime}]`;

const MiB = 2 ** 20;

function overflowed(e: unknown): { resumeFrom: bigint; bufferedBytes: number; bufferedEvents: number } {
  assert.ok(e instanceof TxtDbError && e.code === "WATCH_OVERFLOW", `expected WATCH_OVERFLOW, got ${String(e)}`);
  assert.match(e.message, /resume with watch\(\.\.\., \{ fromVersion: \d+n \}\)/);
  return e.details as { resumeFrom: bigint; bufferedBytes: number; bufferedEvents: number };
}

test(`${R} a watcher never consumed holds at most 64 MiB of large values by default, then ends with WATCH_OVERFLOW naming where to resume`, () => usingDbs(async (open) => {
  const dir = tempDir("watch-bytes");
  // No automatic compaction: the resume below replays history the overflowed watcher no longer pins.
  const db = await open(dir, { namespaces: ["ns"], durability: "none", autoCompactBytes: 0 });
  const start = (await db.set("ns", "unwatched", 0)).version;
  const it = db.watch("ns", { prefix: ["big"] });
  const count = 40; // 80 MiB of values: under the 10,000-event bound, over the byte bound
  const versions: bigint[] = [];
  for (let i = 0; i < count; i++) versions.push((await db.set("ns", ["big", i], new Uint8Array(2 * MiB).fill(i))).version);
  assert.ok(await waitUntil(() => db.stats().watchers === 0, 10_000) >= 0, "the watcher overflowed and stopped");
  const error = await it.next().then(() => undefined, (e: unknown) => e);
  const details = overflowed(error);
  assert.equal(details.resumeFrom, start, "nothing was consumed: resume from where the watcher started");
  assert.ok(details.bufferedBytes <= 64 * MiB, `buffered ${details.bufferedBytes} bytes, within 64 MiB`);
  assert.ok(details.bufferedEvents >= 30, `it buffered what fits (${details.bufferedEvents} events)`);
  assert.deepEqual(await it.next(), { done: true, value: undefined }, "the overflowed watcher is over");
  // Resuming replays the whole backlog, though it is larger than the buffer.
  const replay = await take(db.watch("ns", { prefix: ["big"] }, { fromVersion: details.resumeFrom }), count);
  assert.deepEqual(replay.map((e) => e.version), versions);
  for (let i = 0; i < count; i++) {
    const v = replay[i]!.changes[0]!.value as Uint8Array;
    assert.ok(v instanceof Uint8Array && v.length === 2 * MiB && v[0] === i && v[v.length - 1] === i, `event ${i} carries its value`);
  }
  await db.close();
}));

test(`${R} watchBufferBytes bounds a watcher's buffer; one event larger than the bound is still delivered`, () => usingDbs(async (open) => {
  const dir = tempDir("watch-bytes2");
  const db = await open(dir, { namespaces: ["ns"], durability: "none", watchBufferBytes: 256 * 1024 });
  const start = (await db.set("ns", "x", 0)).version;
  // One event alone may exceed the bound: it is held, and delivered.
  const big = db.watch("ns", { keys: ["huge"] });
  const vHuge = (await db.set("ns", "huge", "h".repeat(1024 * 1024))).version;
  await sleep(50); // the event is buffered before anyone asks for it
  const first = await big.next();
  assert.equal(first.done, false);
  assert.equal((first.value as WatchEvent).version, vHuge);
  assert.equal(((first.value as WatchEvent).changes[0]!.value as string).length, 1024 * 1024);
  await big.return!();
  // A consumer that takes nothing: a handful of 64 KiB values fill 256 KiB.
  const it = db.watch("ns", { prefix: ["v"] }, { fromVersion: vHuge });
  for (let i = 0; i < 10; i++) await db.set("ns", ["v", i], new Uint8Array(64 * 1024));
  assert.ok(await waitUntil(() => db.stats().watchers === 0, 5000) >= 0, "the watcher overflowed");
  const details = overflowed(await it.next().then(() => undefined, (e: unknown) => e));
  assert.equal(details.resumeFrom, vHuge);
  assert.ok(details.bufferedBytes <= 256 * 1024 && details.bufferedEvents >= 2 && details.bufferedEvents < 10, JSON.stringify({ ...details, resumeFrom: String(details.resumeFrom) }));
  assert.ok(start < vHuge);
  await db.close();
}));

test(`${R} a watcher resuming from a backlog larger than watchBufferMax replays it all, then overflows only when it falls behind live commits`, () => usingDbs(async (open) => {
  const dir = tempDir("watch-backlog");
  const db = await open(dir, { namespaces: ["ns"], durability: "none", watchBufferMax: 5 });
  const from = (await db.set("ns", "before", 0)).version;
  const versions: bigint[] = [];
  for (let i = 0; i < 20; i++) versions.push((await db.set("ns", ["k", i], i)).version);
  const it = db.watch("ns", { prefix: ["k"] }, { fromVersion: from });
  const replay = await take(it, 20);
  assert.deepEqual(replay.map((e) => e.version), versions);
  assert.deepEqual(replay.map((e) => e.changes[0]!.value), versions.map((_, i) => i));
  // Past the history it asked for, a consumer that stops reading overflows as before.
  const it2 = db.watch("ns", { prefix: ["k"] }, { fromVersion: versions[19]! });
  for (let i = 20; i < 40; i++) await db.set("ns", ["k", i], i);
  assert.ok(await waitUntil(() => db.stats().watchers === 0, 5000) >= 0, "the live watcher overflowed");
  const details = overflowed(await it2.next().then(() => undefined, (e: unknown) => e));
  assert.equal(details.resumeFrom, versions[19]);
  await db.close();
}));

test(`${R} watch({ signal }): an abort ends the watcher as return() does, a pending next() resolves done, an aborted signal yields nothing; read-then-watch from a snapshot's version misses nothing`, () => usingDbs(async (open) => {
  const dir = tempDir("watch-signal");
  const db = await open(dir, { namespaces: ["ns"], durability: "none" });
  const ac = new AbortController();
  const it = db.watch("ns", { prefix: ["k"] }, { signal: ac.signal });
  const v1 = (await db.set("ns", ["k", 1], 1)).version;
  const first = await it.next();
  assert.equal(first.done, false);
  assert.equal((first.value as WatchEvent).version, v1);
  const pending = it.next();
  ac.abort();
  assert.deepEqual(await pending, { done: true, value: undefined }, "a pending next() resolves done on abort");
  assert.deepEqual(await it.next(), { done: true, value: undefined });
  assert.equal(db.stats().watchers, 0, "the aborted watcher is gone");
  // A for-await loop over a watcher whose signal aborts finishes.
  const ac2 = new AbortController();
  const seen: bigint[] = [];
  const loop = (async () => { for await (const e of db.watch("ns", { prefix: ["k"] }, { signal: ac2.signal })) seen.push(e.version); })();
  const v2 = (await db.set("ns", ["k", 2], 2)).version;
  await waitUntil(() => seen.length === 1, 5_000);
  ac2.abort();
  await loop;
  assert.deepEqual(seen, [v2]);
  // Already aborted: nothing, at once.
  const gone = db.watch("ns", { prefix: ["k"] }, { signal: AbortSignal.abort() });
  assert.deepEqual(await gone.next(), { done: true, value: undefined });
  assert.throws(() => db.watch("ns", { prefix: ["k"] }, { signal: "no" as unknown as AbortSignal }), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_ARGUMENT");
  // Read then watch: the state at a snapshot, then every change after it, none missed or repeated.
  const snap = await db.snapshot();
  const state: unknown[] = [];
  for await (const e of snap.list("ns", { prefix: ["k"] })) state.push(e.value);
  const from = snap.version;
  snap.release();
  const v3 = (await db.set("ns", ["k", 3], 3)).version;
  const after = db.watch("ns", { prefix: ["k"] }, { fromVersion: from });
  const e3 = await after.next();
  assert.deepEqual(state, [1, 2]);
  assert.equal((e3.value as WatchEvent).version, v3, "the first event is the first commit after the snapshot");
  await after.return!();
  await db.close();
}));
