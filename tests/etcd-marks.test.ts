/**
 * A store's compaction mark `P m/compacted` deleted outside txtdb (`etcdctl del`, another
 * tool, a careless operator), against a real one-member etcd (pins.ts rule 8). The mark
 * says how far the store's history may be gone; rule 3's publish and a commit's V9 compare
 * it by value, which fails on a missing key, so without it every pin publish looped 20
 * times into UNAVAILABLE, every transaction failed with a CONFLICT no retry could clear,
 * and a fresh open took the store for foreign keys. Here: the mark is put back, at no
 * less than the revision etcd's history was compacted at (so a transaction whose
 * snapshot a cleanup passed still fails with CONFLICT, never commits unchecked), in the
 * process that has the store open and at a fresh open, writable or read-only; a mark
 * deleted again as soon as it is put back fails at once with CORRUPTION; and a compaction
 * with the mark missing passes no live pin.
 *
 * The tests share one 1-member cluster and run in order (they delete the cluster's mark
 * too); the last one stops it.
 */
import { assert, runtime, sleep, test } from "./harness.ts";
import { etcdTests, failsWith, sharedCluster, str } from "./etcdtests.ts";
import { open } from "txtdb";
import { decodeValue, encodeKey, encodeValue, EtcdClient, EtcdEngine } from "txtdb/internal";
import type { FetchLike } from "txtdb/internal";

const R = `[${runtime}] [etcd-marks]`;
const fixed = (r: bigint) => r.toString().padStart(20, "0");
const enc = new TextEncoder();
const CLUSTER_MARK = "/txtdb/m/compacted";

/** Runs `fn` with console.warn caught; resolves with what `fn` resolved with and the warnings. */
async function warned<T>(fn: () => Promise<T>): Promise<{ value: T; warnings: string[] }> {
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (m: unknown) => void warnings.push(String(m));
  try {
    return { value: await fn(), warnings };
  } finally {
    console.warn = warn;
  }
}

let stores = 0;

etcdTests(`${R} compaction marks deleted outside txtdb`, () => {
  const one = sharedCluster(1);
  let outside: EtcdClient | undefined;
  /** A client of the cluster's own, as `etcdctl` is. */
  const etcdctl = async () => (outside ??= new EtcdClient({ endpoints: (await one.get()).endpoints }));
  const location = async (what: string) => {
    const hosts = (await one.get()).endpoints.map((e) => e.replace("http://", "")).join(",");
    const prefix = `marks-${what}-${runtime}-${Date.now()}-${++stores}`;
    return { url: `etcd://${hosts}/${prefix}`, mark: `${prefix}/m/compacted`, prefix: `${prefix}/` };
  };
  /** The value of `key`, or undefined when it is missing. */
  const valueOf = async (key: string) => {
    const kv = (await (await etcdctl()).range(enc.encode(key))).kvs[0];
    return kv && str(kv.value);
  };
  const del = async (...keys: string[]) => {
    for (const key of keys) assert.equal((await (await etcdctl()).deleteRange(enc.encode(key))).deleted, 1, `${key} was there to delete`);
  };

  test(`${R} a store's mark deleted while it is open is put back at the cluster's mark, once, with a warning: a transaction commits, db.transaction() runs its function once, a snapshot that must publish a new pin (the lease was lost) is taken at once; a compaction with the mark missing passes no live pin`, async () => {
    const { url, mark, prefix } = await location("open");
    await using db = await open(url, { namespaces: ["ns"] });
    await db.set("ns", "k", 1);
    const compacted = (await db.compact()).checkpointVersion; // both marks there now
    assert.equal(await valueOf(mark), fixed(compacted));
    await db.set("ns", "k", 2);

    // A transaction reading and writing (its commit compares the mark: V9).
    await del(mark);
    const { warnings } = await warned(async () => {
      const tx = await db.begin();
      tx.set("ns", "k", ((await tx.get<number>("ns", "k")) ?? 0) + 1);
      await tx.commit(); // was CONFLICT: "a key this transaction read or wrote was changed"
    });
    assert.equal(await db.get("ns", "k"), 3);
    assert.equal(await valueOf(mark), fixed(compacted), "put back at the cluster's mark, where it was");
    assert.equal(warnings.length, 1, `one warning: ${JSON.stringify(warnings)}`);
    assert.match(warnings[0]!, new RegExp(`"${mark}".*deleted outside txtdb; put it back at revision ${compacted}`));

    // db.transaction() ran its function 11 times, each failing with that CONFLICT.
    await del(mark);
    let runs = 0;
    await warned(() => db.transaction(async (tx) => {
      runs++;
      tx.set("ns", "k", ((await tx.get<number>("ns", "k")) ?? 0) + 1);
    }));
    assert.equal(runs, 1, "the function ran once");
    assert.equal(await db.get("ns", "k"), 4);

    // A pin published anew: the lease ended (etcd ended it; a blind write takes a new one).
    await del(mark);
    const c = await etcdctl();
    const pin = (await c.range(enc.encode(`${prefix}p/`), { prefix: true })).kvs[0]!;
    await c.revokeLease(BigInt(`0x${str(pin.key).slice(prefix.length + 2)}`));
    await db.set("ns", "blind", 1); // no mark compare; etcd refuses the old lease, a new one is taken
    const t0 = performance.now();
    const snap = (await warned(() => db.snapshot())).value; // was UNAVAILABLE after 20 publishes
    assert.equal(await snap.get("ns", "k"), 4);
    assert.ok(performance.now() - t0 < 2000);
    assert.equal(await valueOf(mark), fixed(compacted));

    // Compaction with the mark missing: it never passes a live pin (another process's
    // snapshot here), and its own txn puts the mark back at the revision it compacted at.
    await using other = await open(url);
    const held = await other.snapshot();
    await db.set("ns", "k", 5);
    snap.release();
    await del(mark);
    const r = await db.compact();
    assert.ok(r.checkpointVersion <= held.version, `compacted to ${r.checkpointVersion}, past the live pin at ${held.version}`);
    assert.equal(await held.get("ns", "k"), 4, "the pinned snapshot still reads its version");
    assert.equal(await valueOf(mark), fixed(r.checkpointVersion));
    held.release();
  });

  test(`${R} a store whose mark was deleted while closed opens again, writable and read-only (its namespace id counter says it is a store), and reads what it held; with the cluster's mark deleted too, the store's comes back at the revision etcd was compacted at, not 0; a prefix of foreign keys is still refused`, async () => {
    const { url, mark } = await location("closed");
    {
      await using db = await open(url, { namespaces: ["ns"] });
      await db.set("ns", "k", "kept");
    }
    await del(mark);
    {
      // Was INVALID_ARGUMENT: "etcd holds keys under its prefix that are not a txtdb store's".
      await using db = (await warned(() => open(url))).value;
      assert.equal(await db.get("ns", "k"), "kept");
      await db.set("ns", "k", "again");
      const compacted = (await db.compact()).checkpointVersion;
      assert.equal(await valueOf(mark), fixed(compacted));
    }
    const compacted = BigInt((await valueOf(mark))!);
    await del(mark);
    {
      // Was INVALID_ARGUMENT: "No txtdb store … open it once without readOnly to create it".
      await using db = (await warned(() => open(url, { readOnly: true }))).value;
      assert.equal(await db.get("ns", "k"), "again");
      assert.equal(await valueOf(mark), fixed(compacted));
    }
    // Both marks gone: the cluster's is made again at 0, which would say nothing was ever
    // compacted; the store's comes back at what etcd reports (its history begins at the
    // compaction above, the newest on this cluster).
    await del(mark, CLUSTER_MARK);
    {
      await using db = (await warned(() => open(url))).value;
      assert.equal(await valueOf(mark), fixed(compacted), "at the revision etcd was compacted at");
      assert.equal(await valueOf(CLUSTER_MARK), fixed(0n));
      assert.equal(await db.get("ns", "k"), "again");
    }
    // Keys txtdb did not write, even a "m/next-id" that is no id: not a store, nothing written.
    const foreign = await location("foreign");
    await (await etcdctl()).put(enc.encode(`${foreign.prefix}m/next-id`), enc.encode("hello"));
    await failsWith("INVALID_ARGUMENT", () => open(foreign.url));
    const ro = await failsWith("INVALID_ARGUMENT", () => open(foreign.url, { readOnly: true }));
    assert.match(ro.error.message, /keys there that are not a txtdb store's/);
    assert.equal(await valueOf(foreign.mark), undefined, "nothing written");
  });

  test(`${R} a mark deleted again as soon as txtdb puts it back (something keeps deleting it): a snapshot and a commit fail at once with CORRUPTION naming the key, after one put-back, not after 20 publishes`, async () => {
    const { url, mark } = await location("fight");
    const markB64 = btoa(mark);
    let fight = false;
    let txns = 0;
    // Stands for a tool deleting the mark: each txn that puts it back is followed by a delete.
    const fetch: FetchLike = async (u, init) => {
      const res = await globalThis.fetch(u, init);
      if (!String(u).endsWith("/v3/kv/txn")) return res;
      txns++;
      const body = JSON.parse(String(init?.body)) as { success?: { request_put?: { key?: string } }[] };
      if (fight && body.success?.some((op) => op.request_put?.key === markB64)) {
        const text = await res.text();
        await (await etcdctl()).deleteRange(enc.encode(mark));
        return new Response(text, { status: res.status, headers: res.headers });
      }
      return res;
    };
    const e = await EtcdEngine.open(url, { fetch });
    try {
      await e.createNamespace("ns");
      const { version: old } = await e.set("ns", encodeKey("k"), encodeValue(1));
      await e.set("ns", encodeKey("k"), encodeValue(2));
      (await e.snapshot()).release();
      await sleep(400); // the pin rises past `old` (batched), so a snapshot there publishes anew
      fight = true;
      await del(mark);
      txns = 0;
      const s = await warned(() => failsWith("CORRUPTION", () => e.snapshot(old))); // was UNAVAILABLE after 20
      assert.equal(s.value.error.details?.key, mark);
      assert.match(s.value.error.message, /deleted again right after txtdb put it back: something outside txtdb keeps deleting/);
      assert.ok(txns <= 5, `${txns} txns: the publish, the put-back, the publish again`);
      assert.equal(await valueOf(mark), undefined, "deleted again after its put-back");
      const tx = await e.begin();
      assert.equal(decodeValue((await tx.get("ns", encodeKey("k")))!.value), 2);
      tx.set("ns", encodeKey("k"), encodeValue(3));
      const c = await warned(() => failsWith("CORRUPTION", () => tx.commit())); // was CONFLICT
      assert.equal(c.value.error.details?.key, mark);
      fight = false;
      await warned(async () => (await e.snapshot(old)).release()); // put back once more, and kept
      assert.ok((await valueOf(mark)) !== undefined);
      const again = await e.begin();
      again.set("ns", encodeKey("k"), encodeValue(3));
      await again.commit();
    } finally {
      await e.close();
    }
  });

  test(`${R} both marks deleted after a compaction passed a lost pin: the store's mark comes back at the revision etcd was compacted at, so the transaction that read there still fails with CONFLICT details.compacted (V9) instead of committing what it can no longer validate`, async () => {
    const { url, mark } = await location("lost");
    let cut = false;
    const refused = () => Promise.reject(Object.assign(new TypeError("fetch failed"), { cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) }));
    const fetch: FetchLike = (u, init) => (cut && String(u).includes("/v3/lease/keepalive") ? refused() : globalThis.fetch(u, init));
    const e = await EtcdEngine.open(url, { fetch, leaseTtlSeconds: 2 });
    const other = await EtcdEngine.open(url);
    try {
      await e.createNamespace("l");
      await e.set("l", encodeKey("a"), encodeValue(1));
      // A transaction that read "b" (absent), committed after its pin is gone.
      const late = await e.begin();
      assert.equal(await late.get("l", encodeKey("b")), undefined);
      late.set("l", encodeKey("c"), encodeValue("late"));
      const R0 = late.readRevision;
      cut = true;
      await (await e.pins.lease()).lost;
      const t0 = performance.now();
      while ((await other.compact()).compactedTo <= R0) {
        assert.ok(performance.now() - t0 < 8000, "etcd did not end the lease within 8 s");
        await sleep(200);
      }
      cut = false;
      // "b" written and deleted after the snapshot, its tombstone cleaned up: only the mark
      // can tell the commit its snapshot was passed.
      await other.set("l", encodeKey("b"), encodeValue(1));
      await other.delete("l", encodeKey("b"));
      await sleep(400);
      const passed = await other.compact();
      assert.ok(passed.removed >= 1);
      await del(mark, CLUSTER_MARK);
      const stale = await warned(() => failsWith("CONFLICT", () => late.commit()));
      assert.equal(stale.value.error.details?.compacted, true, stale.value.error.message);
      assert.equal(await valueOf(mark), fixed(passed.compactedTo), "the store's mark is back where etcd's history begins");
      assert.equal(decodeValue((await e.reader().get("l", encodeKey("c")))?.value ?? encodeValue(null)), null, "nothing committed");
    } finally {
      await other.close();
      await e.close();
    }
  });

  test(`${R} the namespace id counter P m/next-id deleted outside txtdb: the next namespace takes an id past every id in use, bound or holding data, with one warning (it took id 1 and read and wrote namespace "a"'s keys as its own), by createNamespace and by open's namespaces option; a key among the data keys that names no id fails with CORRUPTION and creates nothing`, async () => {
    const { url, prefix } = await location("next-id");
    const counter = `${prefix}m/next-id`;
    const fresh = await warned(() => open(url, { namespaces: ["a", "b", "c"] }));
    await using db = fresh.value;
    assert.deepEqual(fresh.warnings, [], "a new store warns of nothing");
    assert.deepEqual([await valueOf(`${prefix}n/a`), await valueOf(`${prefix}n/c`), await valueOf(counter)], ["1", "3", "4"]);
    for (const ns of ["a", "b", "c"]) await db.set(ns, "k", ns);

    await del(counter);
    const d = await warned(() => db.createNamespace("d"));
    assert.equal(d.warnings.length, 1, JSON.stringify(d.warnings));
    assert.match(d.warnings[0]!, new RegExp(`"${counter}".*deleted outside txtdb while namespaces use ids up to 3; new namespaces take ids from 4`));
    assert.equal(await valueOf(`${prefix}n/d`), "4"); // was 1: "a"'s id
    assert.equal(await valueOf(counter), "5");
    assert.equal(await db.get("d", "k"), undefined, "the new namespace is empty");
    await db.set("d", "k", "d");
    assert.equal(await db.get("a", "k"), "a", "and the old one kept its value");

    // The binding of the highest id deleted too: its data keys still hold the id.
    await del(counter, `${prefix}n/d`);
    const e = await warned(() => open(url, { namespaces: ["e"] }));
    await using other = e.value;
    assert.match(e.warnings.join("\n"), /ids up to 4; new namespaces take ids from 5/);
    assert.equal(await valueOf(`${prefix}n/e`), "5");
    assert.equal(await other.get("e", "k"), undefined);
    assert.equal(await other.get("a", "k"), "a");

    // A foreign key among the data keys: no id to go past, so nothing is created.
    await del(counter);
    await (await etcdctl()).put(enc.encode(`${prefix}d/zzz`), enc.encode("x"));
    const bad = await failsWith("CORRUPTION", () => db.createNamespace("f"));
    assert.equal(bad.error.details?.key, `${prefix}d/zzz`);
    assert.equal(await valueOf(`${prefix}n/f`), undefined, "nothing created");
    assert.equal(await valueOf(counter), undefined);
  });

  test(`${R} stop the cluster`, async () => {
    outside?.close();
    await one.stop();
  });
});
