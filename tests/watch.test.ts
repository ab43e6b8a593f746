/** watch(): events from every handle in version order, none skipped; fromVersion; return(); overflow. */
import { assert, runtime, tempDir, test } from "./harness.ts";
import { open, TxtDbError } from "txtdb";
import type { WatchEvent } from "txtdb";
import { take } from "./watchhelpers.ts";

const R = `[${runtime}]`;

test(`${R} watch(prefix) delivers another handle's commits in version order with exactly the matching keys`, async () => {
  const dir = tempDir("watch");
  const db = await open(dir, { namespaces: ["ns", "other"] });
  const writer = await open(dir);
  const it = db.watch("ns", { prefix: ["u"] });
  const got = take(it, 4);
  await writer.set("ns", ["u", 1], "a");
  await writer.set("ns", ["v", 1], "not matched");
  await writer.set("other", ["u", 1], "other namespace");
  await writer.transaction((tx) => { tx.set("ns", ["u", 2], "b"); tx.set("ns", ["u", 3], "c"); tx.set("ns", "zz", 0); });
  await writer.delete("ns", ["u", 1]);
  await writer.set("ns", ["u", 9], "last");
  const events = await got;
  assert.deepEqual(events.map((e) => e.changes), [
    [{ key: ["u", 1], value: "a" }],
    [{ key: ["u", 2], value: "b" }, { key: ["u", 3], value: "c" }],
    [{ key: ["u", 1], value: undefined }],
    [{ key: ["u", 9], value: "last" }],
  ]);
  for (let i = 1; i < events.length; i++) assert.ok(events[i]!.version > events[i - 1]!.version);
  assert.equal(db.stats().watchers, 0, "breaking out of for-await stops the watcher");
  await writer.close();
  await db.close();
});

test(`${R} watch(keys) with fromVersion replays history after that version, repeating nothing`, async () => {
  const dir = tempDir("watch2");
  const db = await open(dir, { namespaces: ["ns"] });
  const v1 = (await db.set("ns", "a", 1)).version;
  await db.set("ns", "b", 1);
  const v3 = (await db.set("ns", "a", 2)).version;
  const pending = take(db.watch("ns", { keys: ["a"] }, { fromVersion: v1 }), 2);
  const live = db.set("ns", "a", 3);
  const events = await pending;
  assert.deepEqual(events[0], { version: v3, changes: [{ key: "a", value: 2 }] });
  assert.deepEqual(events[1]!.changes, [{ key: "a", value: 3 }]);
  assert.equal(events[1]!.version, (await live).version);
  const none = await take(db.watch("ns", { keys: ["a"] }, { fromVersion: (await live).version }), 1, 100);
  assert.equal(none.length, 0, "fromVersion is exclusive: nothing to repeat");
  await db.close();
});

test(`${R} a watcher that falls behind its buffer gets WATCH_OVERFLOW naming where to resume`, async () => {
  const dir = tempDir("watch3");
  const db = await open(dir, { namespaces: ["ns"], watchBufferMax: 5 });
  const it = db.watch("ns", { prefix: [] });
  for (let i = 0; i < 20; i++) await db.set("ns", i, i);
  await new Promise((r) => setTimeout(r, 50));
  let seen = 0;
  await assert.rejects((async () => { for await (const _ of it) seen++; })(), (e: unknown) =>
    e instanceof TxtDbError && e.code === "WATCH_OVERFLOW" && typeof e.details?.resumeFrom === "bigint");
  assert.ok(seen <= 5);
  assert.equal(db.stats().watchers, 0);
  await assert.rejects(async () => db.watch("missing", { prefix: [] }), (e: unknown) => e instanceof TxtDbError && e.code === "NAMESPACE_NOT_FOUND");
  await db.close();
});

test(`${R} close() ends open watchers`, async () => {
  const dir = tempDir("watch4");
  const db = await open(dir, { namespaces: ["ns"] });
  const it = db.watch("ns", { prefix: [] });
  const pending = it.next();
  await db.close();
  assert.deepEqual(await pending, { done: true, value: undefined });
});
