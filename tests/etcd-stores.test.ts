/**
 * Several stores on one etcd cluster. Etcd compacts one history for the whole cluster, so
 * the invariant "compaction never removes a version a live snapshot can read" must hold
 * across stores: store A's compaction, manual or automatic, may not pass a revision a
 * snapshot, a transaction or a watch replay of store B pins, whether B lives in the same
 * process or in another one (of any runtime); once B lets go, A's next compaction passes
 * it. Also: the cluster-wide registry of pins cannot be reached by a store's prefix, a
 * root-prefix store still opens beside what the registry holds, and a compactor keeps the
 * pins its own store's processes of an older release publish (under `P p/` only).
 *
 * The tests share one 1-member cluster and run in order; the last one stops it.
 */
import { afterEach, assert, canSpawn, runtime, sleep, test, waitUntil } from "./harness.ts";
import { etcdTests, failsWith, sharedCluster, str } from "./etcdtests.ts";
import { open, TxtDbError } from "txtdb";
import type { Database } from "txtdb";
import { EtcdClient, EtcdEngine, parseEtcdUrl } from "txtdb/internal";

const R = `[${runtime}] [etcd-stores]`;
/** A revision as txtdb stores it in a mark or a pin (20 digits). */
const fixed = (r: bigint) => r.toString().padStart(20, "0");

/** The first change of a watch from `fromVersion`, or the code of its error. */
async function firstChange(db: Database, ns: string, key: string, fromVersion: bigint): Promise<unknown> {
  const w = db.watch(ns, { keys: [key] }, { fromVersion });
  try {
    const first = await w.next();
    return first.done ? "done" : first.value.changes[0]?.value;
  } catch (e) {
    if (e instanceof TxtDbError) return e.code;
    throw e;
  } finally {
    await w.return?.();
  }
}

/** Commits until `db` has compacted by itself (`autoCompactBytes`) `more` more times. */
async function untilAutoCompacted(db: Database, more: number): Promise<void> {
  const want = db.stats().compactions + more;
  for (let i = 0; i < 200 && db.stats().compactions < want; i++) {
    await db.set("ns", ["churn", i % 8], "y".repeat(200));
    if (i % 10 === 9) await sleep(20);
  }
  for (let i = 0; i < 100 && db.stats().compactions < want; i++) await sleep(50);
  assert.ok(db.stats().compactions >= want, `compacted by itself ${db.stats().compactions} times, wanted ${want}`);
}

let stores = 0;

if (canSpawn) {
  const { killAllWorkers } = await import("./procs.ts");
  afterEach(() => killAllWorkers());
}

etcdTests(`${R} stores sharing a cluster`, () => {
  const one = sharedCluster(1);
  const hostsOf = async () => (await one.get()).endpoints.map((e) => e.replace("http://", "")).join(",");
  const location = async (what: string) => `etcd://${await hostsOf()}/stores-${what}-${runtime}-${Date.now()}-${++stores}`;

  test(`${R} store A's compact() passes no revision store B pins: B's snapshot, open transaction and a watch replaying from the snapshot's version all read their history; released, A's next compaction passes it`, async () => {
    await using a = await open(await location("a"), { namespaces: ["ns"] });
    await using b = await open(await location("b"), { namespaces: ["ns"] });
    await b.set("ns", "s", "steady");
    await b.set("ns", "k", 1);
    const snap = await b.snapshot();
    const pinned = snap.version;
    const tx = await b.begin();
    await b.set("ns", "k", 2);
    for (let i = 0; i < 5; i++) await a.set("ns", "x", i);
    const r = await a.compact();
    assert.ok(r.checkpointVersion <= pinned, `A compacted to ${r.checkpointVersion}, past B's pin at ${pinned}`);
    assert.equal(await snap.get("ns", "k"), 1, "B's snapshot reads its version");
    assert.equal(await tx.get("ns", "s"), "steady", "B's transaction reads at its version");
    assert.equal(await firstChange(b, "ns", "k", pinned), 2, "a watch from the pinned version replays the change after it");
    // The transaction commits after A's compaction (it compares B's own mark, which A's
    // compaction leaves alone).
    tx.set("ns", "t", "written");
    await tx.commit();
    assert.equal(await b.get("ns", "t"), "written");
    snap.release();
    await sleep(400); // B's pin rises shortly after the releases (batched)
    const after = await a.compact();
    assert.ok(after.checkpointVersion > pinned, `A compacted to ${after.checkpointVersion} once B let go of ${pinned}`);
    assert.equal(await firstChange(b, "ns", "k", pinned), "WATCH_OVERFLOW", "B's old version is compacted now");
  });

  test(`${R} store A's automatic compaction (autoCompactBytes) passes no revision store B pins; released, it passes it`, async () => {
    await using a = await open(await location("auto-a"), { namespaces: ["ns"], autoCompactBytes: 2_000 });
    await using b = await open(await location("auto-b"), { namespaces: ["ns"] });
    await b.set("ns", "s", "steady");
    await b.set("ns", "k", 1);
    const snap = await b.snapshot();
    const tx = await b.begin();
    await b.set("ns", "k", 2);
    await untilAutoCompacted(a, 2);
    assert.equal(await snap.get("ns", "k"), 1, "B's snapshot reads its version");
    assert.equal(await tx.get("ns", "s"), "steady", "B's transaction reads at its version");
    assert.equal(await firstChange(b, "ns", "k", snap.version), 2);
    tx.set("ns", "t", 1);
    await tx.commit();
    const pinned = snap.version;
    snap.release();
    await sleep(400);
    await untilAutoCompacted(a, 1);
    assert.equal(await firstChange(b, "ns", "k", pinned), "WATCH_OVERFLOW", "A's automatic compaction passed B's version once released");
  });

  if (canSpawn) {
    test(`${R} store B's snapshot, transaction and watch replay in node, deno and bun processes survive store A's compact() and automatic compaction in this one; released, A's compaction passes them`, async () => {
      const { RUNTIMES, startWorker } = await import("./procs.ts");
      const net = { denoFlags: ["--allow-net"] };
      await using a = await open(await location("mp-a"), { namespaces: ["ns"], autoCompactBytes: 2_000 });
      // A store B of its own for each worker: a transaction of one reads what the others write.
      const workers = [];
      for (const rt of RUNTIMES) {
        const urlB = await location(`mp-b-${rt}`);
        await (await open(urlB, { namespaces: ["ns"] })).close();
        workers.push(startWorker(rt, "etcd-db", ["hold", urlB], net));
      }
      const pins = await Promise.all(workers.map((w) => w.waitFor("pinned ", 60_000)));
      const oldest = pins.map((l) => BigInt(l.slice(7))).reduce((x, y) => (x < y ? x : y));
      const check = async (what: string) => {
        for (const w of workers) w.send(what);
        const lines = await Promise.all(workers.map((w) => w.waitFor(`${what === "check" ? "checked" : "committed"} `, 30_000).then((l) => {
          w.lines.splice(w.lines.indexOf(l), 1); // the next check waits for a new line
          return JSON.parse(l.slice(l.indexOf(" ") + 1)) as Record<string, unknown>;
        })));
        for (const [i, got] of lines.entries()) assert.equal(got.error, undefined, `${workers[i]!.runtime} after ${what}: ${JSON.stringify(got)}`);
        return lines;
      };
      await untilAutoCompacted(a, 2);
      for (const got of await check("check")) assert.deepEqual(got, { snap: 1, tx: "steady", watched: 2 });
      for (let i = 0; i < 5; i++) await a.set("ns", "x", i);
      const r = await a.compact();
      assert.ok(r.checkpointVersion <= oldest, `A compacted to ${r.checkpointVersion}, past a pin at ${oldest}`);
      for (const got of await check("check")) assert.deepEqual(got, { snap: 1, tx: "steady", watched: 2 });
      await check("commit");
      for (const w of workers) w.send("release");
      await Promise.all(workers.map((w) => w.waitFor("released", 30_000)));
      await sleep(600); // the workers' pins rise shortly after the releases (batched)
      const newest = pins.map((l) => BigInt(l.slice(7))).reduce((x, y) => (x > y ? x : y));
      const after = await a.compact();
      assert.ok(after.checkpointVersion > newest, `A compacted to ${after.checkpointVersion} once every worker let go (newest pin ${newest})`);
      const results = await Promise.all(workers.map((w) => w.finish()));
      for (const [i, res] of results.entries()) assert.equal(res.code, 0, `worker ${workers[i]!.runtime} exited ${res.code ?? res.signal}: ${workers[i]!.stderr}`);
    });
  }

  test(`${R} a compaction keeps the pins its own store's processes of an older release publish under the store's prefix only; this release's pins are written there too`, async () => {
    const url = await location("legacy");
    const engine = await EtcdEngine.open(url);
    const etcd = new EtcdClient({ endpoints: (await one.get()).endpoints });
    try {
      await engine.createNamespace("ns");
      await engine.set("ns", "k", new Uint8Array([1]));
      const snap = await engine.snapshot();
      const lease = await engine.pins.lease();
      const own = await etcd.range(engine.layout.pinKey(lease.id));
      const shared = await etcd.range(engine.layout.clusterPinKey(lease.id));
      assert.equal(str(own.kvs[0]!.value), str(shared.kvs[0]!.value), "one pin, in the registry and under the store");
      assert.ok(BigInt(str(shared.kvs[0]!.value)) <= snap.revision!);
      snap.release();
      // An older release's process: a pin under `P p/` only, published as its rule 3 did.
      const old = await etcd.grantLease(10);
      try {
        const at = (await etcd.range("x")).revision;
        const put = await etcd.txn({
          compare: [{ key: engine.layout.mark, target: "VALUE", result: "LESS", value: fixed(at + 1n) }],
          success: [{ op: "put", key: engine.layout.pinKey(old.id), value: fixed(at), lease: old.id }],
        });
        assert.ok(put.succeeded);
        for (let i = 0; i < 5; i++) await engine.set("ns", "k", new Uint8Array([i]));
        await sleep(400);
        const r = await engine.compact();
        assert.ok(r.compactedTo <= at, `compacted to ${r.compactedTo}, past the older release's pin at ${at}`);
        assert.equal((await etcd.range("x", { revision: at })).kvs.length, 0, "its revision is still readable");
      } finally {
        await etcd.revokeLease(old.id);
      }
      const r = await engine.compact();
      assert.ok(r.compactedTo > snap.revision!, "once its lease ended, the compaction passes it");
    } finally {
      etcd.close();
      await engine.close();
    }
  });

  test(`${R} a prefix that would reach the cluster's registry (beginning with "/", only through %2F) is INVALID_ARGUMENT naming what to do, and nothing is written`, async () => {
    const hosts = await hostsOf();
    for (const path of ["%2Ftxtdb", "%2Ftxtdb%2Fp", "%2F", "%2Fother"]) {
      const url = `etcd://${hosts}/${path}`;
      const { error } = await failsWith("INVALID_ARGUMENT", () => open(url, { namespaces: ["ns"] }));
      assert.match(error.message, /registry/);
      assert.match(error.message, /drop the leading %2F/);
      assert.throws(() => parseEtcdUrl(url), (e: unknown) => e instanceof TxtDbError && e.code === "INVALID_ARGUMENT");
    }
    const etcd = new EtcdClient({ endpoints: (await one.get()).endpoints });
    try {
      const registry = await etcd.range("/", { prefix: true, keysOnly: true });
      const names = registry.kvs.map((kv) => str(kv.key));
      assert.ok(names.every((k) => k === "/txtdb/m/compacted" || k.startsWith("/txtdb/p/")), `only the registry's keys begin with "/": ${JSON.stringify(names)}`);
    } finally {
      etcd.close();
    }
    // Leading slashes of the path itself are dropped, as before.
    assert.equal(parseEtcdUrl(`etcd://${hosts}//ok`).prefix, "ok/");
  });

  test(`${R} a watcher pins what it has still to deliver from its call on: another handle's compaction before the consumer reads passes none of it, the pin follows the events taken, and return() gives it back (etcd watchers held no pin: docs/watch.md said they did)`, async () => {
    const loc = await location("watch-pin");
    await using db = await open(loc, { namespaces: ["ns"] });
    await using other = await open(loc);
    const v0 = (await db.set("ns", "k", 0)).version;
    const versions: bigint[] = [];
    for (let i = 1; i <= 4; i++) versions.push((await db.set("ns", "k", i)).version);
    // The pins the store's processes published (P p/<lease>): db's and other's.
    const etcd = new EtcdClient({ endpoints: (await one.get()).endpoints });
    const prefix = `${loc.slice(loc.lastIndexOf("/") + 1)}/p/`;
    let oldest = 0n;
    const published = async (ok: (r: bigint) => boolean) => {
      for (let i = 0; i < 250; i++) {
        const pins = (await etcd.range(new TextEncoder().encode(prefix), { prefix: true })).kvs.map((kv) => BigInt(str(kv.value)));
        oldest = pins.reduce((m, r) => (r < m ? r : m), pins[0] ?? 0n);
        if (pins.length === 2 && ok(oldest)) return true;
        await sleep(20);
      }
      return false;
    };
    const w = await (async () => {
      try {
        // Nothing reads in db: its published pin rises past v0.
        assert.ok(await published((r) => r > v0), `db's pin never rose past v0 (oldest ${oldest})`);
        const w = db.watch("ns", { keys: ["k"] }, { fromVersion: v0 });
        assert.ok(await published((r) => r <= v0), `the watcher's pin at ${v0} was never published (oldest ${oldest})`);
        return w;
      } finally {
        etcd.close();
      }
    })();
    const first = await other.compact();
    assert.ok(first.checkpointVersion <= v0, `compacted to ${first.checkpointVersion}, past the watcher's pin at ${v0}`);
    const got: bigint[] = [];
    for (let i = 0; i < 2; i++) got.push((await w.next()).value!.version);
    // Two events taken: the pin has left v0 (for the first: the watcher moves it when asked
    // for the next), and a compaction may pass v0 now.
    await sleep(400);
    const second = await other.compact();
    assert.ok(second.checkpointVersion > v0 && second.checkpointVersion <= versions[1]!, `compacted to ${second.checkpointVersion}; the watcher took events up to ${versions[1]}`);
    for (let i = 0; i < 2; i++) got.push((await w.next()).value!.version);
    assert.deepEqual(got, versions);
    await w.return!();
    await sleep(400);
    assert.ok((await other.compact()).checkpointVersion >= versions[3]!, "the pin of a watcher ended by return() stayed");
    assert.equal(await firstChange(db, "ns", "k", v0), "WATCH_OVERFLOW");
  });

  test(`${R} stop the cluster`, async () => {
    await one.stop();
  });
});

etcdTests(`${R} a root-prefix store beside the registry`, () => {
  const own = sharedCluster(1);

  test(`${R} a store at the root prefix ("") is made where only the registry's keys are, and its compaction keeps its pins`, async () => {
    const cluster = await own.get();
    const hosts = cluster.endpoints.map((e) => e.replace("http://", "")).join(",");
    const etcd = new EtcdClient({ endpoints: cluster.endpoints });
    try {
      // Another store came and went: its keys deleted, the registry's stay.
      await (await open(`etcd://${hosts}/gone`, { namespaces: ["ns"] })).close();
      await etcd.deleteRange("gone/", { prefix: true });
      assert.ok((await etcd.range("/txtdb/", { prefix: true, keysOnly: true })).count >= 1, "the registry holds the cluster's mark");
      await using root = await open(`etcd://${hosts}`, { namespaces: ["ns"] });
      await using other = await open(`etcd://${hosts}/`);
      await root.set("ns", "k", 1);
      const snap = await root.snapshot();
      await root.set("ns", "k", 2);
      const r = await other.compact();
      assert.ok(r.checkpointVersion <= snap.version, `compacted to ${r.checkpointVersion}, past the pin at ${snap.version}`);
      assert.equal(await snap.get("ns", "k"), 1);
      snap.release();
      await sleep(400);
      assert.ok((await other.compact()).checkpointVersion > snap.version);
      assert.equal(await root.get("ns", "k"), 2);
    } finally {
      etcd.close();
    }
  });

  test(`${R} stop the root store's cluster`, async () => {
    await own.stop();
  });
});
