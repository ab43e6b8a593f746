/**
 * The conformance suite (tests/conformance.ts: the same tests the local engine passes) on
 * a 1-member etcd cluster through `open("etcd://…")`, then what is particular to etcd
 * through the public API: watch across handles with drop and rename, expiry, count,
 * check(), compact() respecting a snapshot, what fails with UNSUPPORTED, and limits.
 */
import { assert, runtime, sleep, tempDir, test } from "./harness.ts";
import { conformance } from "./conformance.ts";
import { etcdTests, sharedCluster, whenAvailable } from "./etcdtests.ts";
import { Coordinator, open, Sagas, TxtDbError } from "txtdb";
import { EtcdClient } from "txtdb/internal";
import type { Database, OpenOptions, WatchEvent } from "txtdb";

const R = `[${runtime}] [etcd]`;
const code = (c: string) => (e: unknown) => e instanceof TxtDbError && e.code === c;
async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
let stores = 0;

etcdTests(`${R} conformance`, () => {
  const one = sharedCluster(1);
  /** A location of its own for each store: a new prefix on the shared cluster. */
  const location = async () => {
    const cluster = await one.get();
    return `etcd://${cluster.endpoints.map((e) => e.replace("http://", "")).join(",")}/conf-${runtime}-${Date.now()}-${++stores}`;
  };
  const fresh = async (opts: OpenOptions = {}): Promise<{ db: Database; dir: string }> => {
    const dir = await location();
    return { db: await open(dir, { namespaces: ["ns"], ...opts }), dir };
  };

  conformance(R, { fresh, location, etcd: true });

  test(`${R} watch across handles: keys and prefix, in order, from a version; a drop or a rename ends it after every earlier event`, async () => {
    const { db, dir } = await fresh();
    await using other = await open(dir);
    const { version: v0 } = await db.set("ns", ["a", 1], "before");
    const byKey = db.watch("ns", { keys: [["a", 1], ["b"]] }, { fromVersion: v0 });
    const byPrefix = db.watch<string>("ns", { prefix: ["a"] }, { fromVersion: v0 });
    const v1 = (await other.set("ns", ["a", 1], "one")).version;
    await other.set("ns", ["c"], "elsewhere");
    const v2 = (await other.transaction((tx) => {
      tx.set("ns", ["a", 2], "two");
      tx.delete("ns", ["a", 1]);
    }), (await other.getEntry("ns", ["a", 2]))!.version);
    const seen: WatchEvent<string>[] = [];
    for (let i = 0; i < 2; i++) seen.push((await byPrefix.next()).value as WatchEvent<string>);
    assert.deepEqual(seen.map((e) => e.version), [v1, v2]);
    assert.deepEqual(seen[1]!.changes.sort((x, y) => String(x.key).localeCompare(String(y.key))), [{ key: ["a", 1], value: undefined }, { key: ["a", 2], value: "two" }]);
    const first = await byKey.next();
    assert.deepEqual((first.value as WatchEvent).changes, [{ key: ["a", 1], value: "one" }]);
    // Rename: the watcher on "ns" delivers what came before, then ends with where to go on.
    await other.set("ns", ["a", 3], "last");
    await other.renameNamespace("ns", "renamed");
    assert.deepEqual(((await byPrefix.next()).value as WatchEvent).changes, [{ key: ["a", 3], value: "last" }]);
    await assert.rejects(byPrefix.next(), (e: unknown) => e instanceof TxtDbError && e.code === "NAMESPACE_NOT_FOUND" && (e.details as { op: string; to: string }).op === "rename" && (e.details as { to: string }).to === "renamed");
    await byKey.return?.();
    // Drop.
    const onRenamed = db.watch("renamed", { prefix: [] });
    await other.set("renamed", "x", 1);
    assert.deepEqual(((await onRenamed.next()).value as WatchEvent).changes, [{ key: "x", value: 1 }]);
    await other.dropNamespace("renamed");
    await assert.rejects(onRenamed.next(), (e: unknown) => e instanceof TxtDbError && e.code === "NAMESPACE_NOT_FOUND" && (e.details as { op: string }).op === "drop");
    // return() and a signal end a watch that waits.
    await db.createNamespace("w");
    const stop = new AbortController();
    const waiting = db.watch("w", { prefix: [] }, { signal: stop.signal });
    const pending = waiting.next();
    stop.abort();
    assert.equal((await pending).done, true);
    await db.close();
  });

  test(`${R} expiry, count and check() through the public API`, async () => {
    const { db } = await fresh();
    const t0 = Date.now();
    await db.set("ns", "short", 1, { expireIn: 500 });
    await db.set("ns", "long", 2, { expireIn: 60_000 });
    const present = await db.count("ns", { prefix: [] });
    if (Date.now() - t0 < 450) assert.equal(present, 2, "both present before the expiry");
    for (let i = 0; i < 30; i++) await db.set("ns", ["n", i], i);
    assert.equal(await db.count("ns", { prefix: ["n"] }), 30);
    await sleep(Math.max(0, t0 + 600 - Date.now()));
    assert.equal(await db.get("ns", "short"), undefined, "expired");
    assert.equal(await db.get("ns", "long"), 2);
    assert.equal(await db.count("ns", { prefix: [] }), 31);
    const report = await db.check();
    assert.equal(report.ok, true, JSON.stringify(report.problems));
    assert.ok(report.records >= 31);
    await db.close();
  });

  test(`${R} compact() keeps what a snapshot reads and removes deleted keys' tombstones`, async () => {
    const { db } = await fresh();
    for (let i = 0; i < 10; i++) await db.set("ns", ["k", i], i);
    const snap = await db.snapshot();
    for (let i = 0; i < 10; i++) await db.delete("ns", ["k", i]);
    const r = await db.compact();
    assert.ok(r.checkpointVersion <= snap.version, "history the snapshot reads is kept");
    assert.equal(await snap.count("ns", { prefix: ["k"] }), 10);
    assert.equal(await snap.get("ns", ["k", 3]), 3);
    snap.release();
    await sleep(400); // the pin is raised after a release (batched)
    const r2 = await db.compact();
    assert.ok(r2.checkpointVersion > snap.version, "released, its history goes");
    assert.equal(r2.entriesRemoved, 10, "the tombstones of the 10 deletes");
    assert.equal(await db.count("ns", { prefix: [] }), 0);
    await db.close();
  });

  test(`${R} watch from a version whose namespace binding etcd compacted away fails with WATCH_OVERFLOW and resumeFrom, never delivering a re-created namespace's writes as the old one's`, async () => {
    const dir = await location();
    const writer = await open(dir, { namespaces: ["a"] });
    const from = (await writer.set("a", "pad", 0)).version;
    await writer.set("a", "k1", "old");
    await writer.dropNamespace("a");
    const snap = await writer.snapshot(); // holds compaction at the drop
    await writer.createNamespace("a");
    await writer.set("a", "k2", "new");
    const r = await writer.compact();
    assert.ok(r.checkpointVersion > from && r.checkpointVersion <= snap.version, `compacted to ${r.checkpointVersion}, between ${from} and ${snap.version}`);
    const db = await open(dir); // another process, opened after the compaction
    const w = db.watch("a", { prefix: [] }, { fromVersion: from });
    const got = await w.next().then((x) => x, (e: unknown) => e);
    assert.ok(got instanceof TxtDbError && got.code === "WATCH_OVERFLOW", `expected WATCH_OVERFLOW, got ${JSON.stringify(got, (_k, v) => (typeof v === "bigint" ? String(v) : v))}`);
    assert.equal(typeof got.details?.resumeFrom, "bigint");
    snap.release();
    await writer.close();
    await db.close();
  });

  test(`${R} autoCompactBytes: a handle compacts etcd's history by itself once it wrote that much, below a snapshot another handle holds`, async () => {
    const { db, dir } = await fresh({ autoCompactBytes: 4_000 });
    await using reader = await open(dir);
    const { version: first } = await db.set("ns", "k", "x".repeat(100));
    const snap = await reader.snapshot();
    for (let i = 0; i < 60 && db.stats().compactions === 0; i++) await db.set("ns", ["v", i], "y".repeat(100));
    for (let i = 0; i < 100 && db.stats().compactions === 0; i++) await sleep(50);
    assert.ok(db.stats().compactions >= 1, "compacted by itself");
    assert.equal(await snap.get("ns", "k"), "x".repeat(100), "the other handle's snapshot still reads its version");
    snap.release();
    await sleep(400); // the pin rises after a release (batched)
    await db.compact();
    const old = db.watch("ns", { prefix: [] }, { fromVersion: first - 1n });
    const overflow = await old.next().then(() => undefined, (e: unknown) => e);
    assert.ok(overflow instanceof TxtDbError && overflow.code === "WATCH_OVERFLOW", `history before the compaction is gone: ${String(overflow)}`);
    // details.resumeFrom: the oldest fromVersion the kept history serves (it was missing).
    const from = overflow.details?.resumeFrom;
    assert.equal(typeof from, "bigint", JSON.stringify(overflow.details, (_k, v) => (typeof v === "bigint" ? String(v) : v)));
    const again = db.watch("ns", { prefix: [] }, { fromVersion: from as bigint });
    const { version: after } = await db.set("ns", "after", 1);
    const event = await again.next();
    assert.ok(event.value !== undefined && event.value.version > (from as bigint) && event.value.version <= after, "resumed there, no overflow");
    await again.return!();
    await db.close();
  });

  test(`${R} a read-only open of a location that holds no store is INVALID_ARGUMENT and writes nothing (it made an empty store there)`, async () => {
    const cluster = await one.get();
    const hosts = cluster.endpoints.map((e) => e.replace("http://", "")).join(",");
    const prefix = `ro-missing-${runtime}-${Date.now()}`;
    await assert.rejects(open(`etcd://${hosts}/${prefix}`, { readOnly: true }), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_ARGUMENT" && /without readOnly/.test(e.message));
    const etcd = new EtcdClient({ endpoints: cluster.endpoints });
    try {
      const left = await etcd.range(prefix, { prefix: true, keysOnly: true });
      assert.equal(left.kvs.length, 0, "nothing written under the prefix");
    } finally {
      etcd.close();
    }
    const db = await open(`etcd://${hosts}/${prefix}`, { namespaces: ["ns"] });
    await db.close();
    const ro = await open(`etcd://${hosts}/${prefix}`, { readOnly: true });
    assert.deepEqual(await ro.listNamespaces(), ["ns"], "once made, it opens read-only");
    await ro.close();
  });

  test(`${R} a new store is made only at an empty location outside every other store; nothing is written when refused`, async () => {
    const cluster = await one.get();
    const hosts = cluster.endpoints.map((e) => e.replace("http://", "")).join(",");
    const base = `nest-${runtime}-${Date.now()}`;
    const etcd = new EtcdClient({ endpoints: cluster.endpoints });
    const keysUnder = async (p: string) => (await etcd.range(p, { prefix: true, keysOnly: true })).count;
    try {
      await using outer = await open(`etcd://${hosts}/${base}/a`, { namespaces: ["ns"] });
      await outer.set("ns", "k", 1);
      // Inside it: its reads and cleanup would take the inner store's keys for its own.
      for (const inner of [`${base}/a/d`, `${base}/a/d/0000000000000001`, `${base}/a/x/y`]) {
        await assert.rejects(open(`etcd://${hosts}/${inner}`, { namespaces: ["ns"] }), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_ARGUMENT" && /lies inside the txtdb store/.test(e.message), inner);
      }
      // Around it, or where other keys are: not empty.
      const before = await keysUnder(`${base}/`);
      await assert.rejects(open(`etcd://${hosts}/${base}`), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_ARGUMENT" && /not a txtdb store/.test(e.message));
      await etcd.put(`${base}/b/someone-else`, "x");
      await assert.rejects(open(`etcd://${hosts}/${base}/b`), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_ARGUMENT" && /not a txtdb store/.test(e.message));
      await assert.rejects(open(`etcd://${hosts}`), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_ARGUMENT", "the whole cluster, which holds keys");
      assert.equal(await keysUnder(`${base}/`), before + 1, "nothing written by the refusals");
      // The store itself opens again, from another handle, as before.
      await using again = await open(`etcd://${hosts}/${base}/a`);
      assert.equal(await again.get("ns", "k"), 1);
    } finally {
      etcd.close();
    }
  });

  test(`${R} keys changed outside txtdb under the store's prefix fail with CORRUPTION naming them; namespaces never share data`, async () => {
    const cluster = await one.get();
    const { db, dir } = await fresh();
    const prefix = dir.slice(dir.lastIndexOf("/") + 1);
    const etcd = new EtcdClient({ endpoints: cluster.endpoints });
    const corrupt = (e: unknown) => e instanceof TxtDbError && e.code === "CORRUPTION";
    try {
      // A damaged id counter: no namespace is created under an id that is not one.
      await etcd.put(`${prefix}/m/next-id`, "abc");
      await assert.rejects(db.createNamespace("x"), (e: unknown) => corrupt(e) && /m\/next-id/.test((e as Error).message));
      assert.deepEqual(await db.listNamespaces(), ["ns"]);
      // A damaged binding: reads, writes and transactions on it are CORRUPTION.
      await etcd.put(`${prefix}/n/evil`, "-1");
      await assert.rejects(db.get("evil", "k"), corrupt);
      await assert.rejects(db.set("evil", "k", 1), corrupt);
      await assert.rejects(db.transaction((tx) => tx.set("evil", "k", 1)), corrupt);
      // A data key whose bytes do not decode: CORRUPTION, and check() names it.
      await db.set("ns", "fine", 1);
      const { kvs } = await etcd.range(`${prefix}/d/`, { prefix: true });
      const dataPrefix = new TextDecoder().decode(kvs[0]!.key).replace(/[^/]*$/, "");
      await etcd.put(new Uint8Array([...new TextEncoder().encode(dataPrefix), 0x03, 0x7a]), new Uint8Array([0x01]));
      await assert.rejects(collect(db.list("ns", { prefix: [] })), corrupt);
      assert.equal((await db.check()).ok, false);
    } finally {
      etcd.close();
      await db.close();
    }
  });

  test(`${R} a transaction's timeoutMs and signal end it while etcd does not answer its begin() or reads: TIMEOUT at the deadline, not after requestTimeoutMs`, async () => {
    const cluster = await one.get();
    const { db } = await fresh({ requestTimeoutMs: 5_000 });
    await cluster.stop(0);
    try {
      let t0 = performance.now();
      // The function reads: begin() may be served by a pin this process holds, so the read
      // (or else begin) is what waits on etcd; both are inside the deadline, no commit is sent.
      await assert.rejects(db.transaction(async (tx) => tx.set("ns", "k", ((await tx.get<number>("ns", "k")) ?? 0) + 1), { timeoutMs: 200 }), code("TIMEOUT"));
      assert.ok(performance.now() - t0 < 2_500, `TIMEOUT after ${Math.round(performance.now() - t0)} ms`);
      const stop = new AbortController();
      setTimeout(() => stop.abort(), 100);
      t0 = performance.now();
      await assert.rejects(db.transaction(async (tx) => tx.set("ns", "k", ((await tx.get<number>("ns", "k")) ?? 0) + 2), { signal: stop.signal }), code("TIMEOUT"));
      assert.ok(performance.now() - t0 < 2_500, `TIMEOUT after ${Math.round(performance.now() - t0)} ms`);
    } finally {
      await cluster.cont(0);
    }
    await cluster.leader();
    await whenAvailable(() => db.set("ns", "after", 1));
    assert.equal(await db.get("ns", "k"), undefined, "neither transaction wrote");
    await db.close();
  });

  test(`${R} what needs a local store fails with UNSUPPORTED, and nothing is written`, async () => {
    const { db } = await fresh();
    const unsupported = code("UNSUPPORTED");
    await assert.rejects(db.enqueue("q", 1), unsupported);
    await assert.rejects(db.listenQueue("q", () => {}), unsupported);
    assert.throws(() => db.queueStats("q"), unsupported);
    await assert.rejects(db.deadLetters("q").next(), unsupported);
    await assert.rejects(db.retryDead("q"), unsupported);
    await assert.rejects(db.lock(["r"], "X"), unsupported);
    assert.throws(() => db.locks(), unsupported);
    await assert.rejects(db.commitPrepared("t"), unsupported);
    await assert.rejects(db.abortPrepared("t"), unsupported);
    await assert.rejects(db.listPrepared(), unsupported);
    await assert.rejects(db.backup("/tmp/nowhere"), unsupported);
    assert.throws(() => db.processes(), unsupported);
    const tx = await db.begin();
    tx.set("ns", "k", 1);
    assert.throws(() => tx.enqueue("q", 1), unsupported);
    await assert.rejects(tx.prepare("t"), unsupported);
    assert.equal(await db.get("ns", "k"), undefined, "the prepare wrote nothing");
    await assert.rejects(Sagas.open(db), unsupported);
    const coord = await Coordinator.open(tempDir("coord"));
    await assert.rejects(coord.transaction([db], () => {}), unsupported);
    await coord.close();
    // Metrics and stats work, with etcd's figures.
    const s = db.stats();
    assert.equal(s.path, db.path);
    assert.match(db.metrics(), /txtdb_commits_total/);
    await db.close();
  });

  test(`${R} limits: a transaction past etcd's 128 operations and a value past its request size fail with LIMIT; nothing is written`, async () => {
    const { db } = await fresh();
    const tx = await db.begin();
    assert.throws(() => {
      for (let i = 0; i < 200; i++) tx.set("ns", ["w", i], i);
    }, (e: unknown) => e instanceof TxtDbError && e.code === "LIMIT" && /max-txn-ops/.test(e.message));
    tx.rollback();
    await assert.rejects(db.set("ns", "big", "x".repeat(2 * 1024 * 1024)), code("LIMIT"));
    assert.equal(await db.get("ns", "big"), undefined);
    assert.equal(await db.count("ns", { prefix: [] }), 0);
    await db.close();
  });

  test(`${R} stop the cluster`, async () => {
    await one.stop();
  });
});
