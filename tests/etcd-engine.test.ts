/**
 * The etcd engine (src/etcd/engine.ts) against a real one-member etcd: reads at a
 * snapshot, namespaces, the anomalies serializable transactions must prevent (lost update,
 * write skew, phantom insert and phantom delete in a read range) and the one snapshot
 * isolation allows, sums under contention, pins that hold across a compaction the engine
 * drives, watch from a revision and WATCH_OVERFLOW, a commit whose reply is lost (resolved
 * by its commit id, applied once), expiring values, and etcd's per-txn limits.
 *
 * Several engines opened on one cluster stand for several processes: each has its own
 * client, lease and pin. Keys are encoded with keys.ts and values with codec.ts, as the
 * public layer does.
 */
import { assert, runtime, sleep, test } from "./harness.ts";
import { etcdTests, failsWith, sharedCluster } from "./etcdtests.ts";
import { EtcdCluster } from "./etcdcluster.ts";
import { decodeKey, decodeValue, encodeKey, encodeValue, ETCD_TX_WRITES_MAX, FENCE_ATTEMPTS_MAX, EtcdEngine, isTombstone, prefixRange, TxtDbError, wrapExpiring } from "txtdb/internal";
import type { EtcdCommitRequest, EtcdEngineOptions, EtcdTransaction, FetchLike, StoredEntry } from "txtdb/internal";

const R = `[${runtime}]`;
const k = (key: unknown) => encodeKey(key);
const v = (value: unknown) => encodeValue(value);
const val = (e: StoredEntry | undefined) => (e === undefined ? undefined : decodeValue(e.value));
let stores = 0;

/** Runs `fn` in a transaction, retried on CONFLICT (as db.transaction() does). */
async function transaction<T>(engine: EtcdEngine, fn: (tx: EtcdTransaction) => Promise<T>, isolation: "serializable" | "snapshot" = "serializable", retries = 200): Promise<{ result: T; conflicts: number }> {
  let conflicts = 0;
  for (;;) {
    const tx = await engine.begin({ isolation });
    try {
      const result = await fn(tx);
      await tx.commit();
      return { result, conflicts };
    } catch (e) {
      tx.rollback();
      if (!(e instanceof TxtDbError) || e.code !== "CONFLICT" || conflicts >= retries) throw e;
      conflicts++;
      await sleep(Math.random() * Math.min(40, 2 * conflicts));
    }
  }
}

etcdTests(`${R} etcd engine`, () => {
  const one = sharedCluster(1);
  /** A store of its own (a fresh prefix) and `n` engines on it, each like a process of its own. */
  async function store(n = 1, options: EtcdEngineOptions = {}): Promise<{ url: string; engines: EtcdEngine[]; close(): Promise<void> }> {
    const cluster = await one.get();
    const url = `etcd://${cluster.endpoints.map((e) => e.replace("http://", "")).join(",")}/s${++stores}-${runtime}`;
    const engines = await Promise.all(Array.from({ length: n }, () => EtcdEngine.open(url, options)));
    return { url, engines, close: async () => void (await Promise.all(engines.map((e) => e.close()))) };
  }

  test(`${R} reads at a snapshot: get, getMany, range both ways with a limit, count; later commits are not seen`, async () => {
    const s = await store();
    const e = s.engines[0]!;
    await e.createNamespace("a");
    for (let i = 0; i < 10; i++) await e.set("a", k(["u", i]), v({ i }));
    await e.set("a", k("other"), v("x"));
    const snap = await e.snapshot();
    await e.set("a", k(["u", 3]), v("changed"));
    await e.delete("a", k(["u", 4]));
    await e.set("a", k(["u", 99]), v("new"));
    assert.deepEqual(val(await snap.get("a", k(["u", 3]))), { i: 3 });
    assert.deepEqual(val(await snap.get("a", k(["u", 4]))), { i: 4 });
    assert.equal(await snap.get("a", k(["u", 99])), undefined);
    assert.deepEqual((await snap.getMany("a", [k(["u", 1]), k("nope"), k(["u", 2])])).map(val), [{ i: 1 }, undefined, { i: 2 }]);
    const [lo, hi] = prefixRange(["u"]);
    const all: StoredEntry[] = [];
    for await (const x of snap.range("a", lo, hi)) all.push(x);
    assert.deepEqual(all.map((x) => decodeKey(x.key)), Array.from({ length: 10 }, (_, i) => ["u", i]));
    const rev: StoredEntry[] = [];
    for await (const x of snap.range("a", lo, hi, { reverse: true, limit: 3 })) rev.push(x);
    assert.deepEqual(rev.map((x) => decodeKey(x.key)), [["u", 9], ["u", 8], ["u", 7]]);
    assert.equal(await snap.count("a", lo, hi), 10);
    // The newest state: the delete is a tombstone, which reads as absent and is not counted.
    const now = e.reader();
    assert.equal(await now.get("a", k(["u", 4])), undefined);
    assert.equal(await now.count("a", lo, hi), 10);
    assert.ok(isTombstone((await e.rawData("a", k(["u", 4])))!.value), "a delete is stored as a tombstone");
    // Versions are the revisions of the commits that wrote them.
    const entry = (await now.get("a", k(["u", 3])))!;
    assert.equal(typeof entry.version, "bigint");
    assert.ok(entry.version > snap.revision!);
    // Ranges page past more keys than one page holds, tombstones included.
    const tx = await e.begin();
    for (let i = 0; i < 100; i++) tx.set("a", k(["p", i]), v(i));
    await tx.commit();
    const tx2 = await e.begin();
    for (let i = 0; i < 100; i += 2) tx2.delete("a", k(["p", i]));
    await tx2.commit();
    const [plo, phi] = prefixRange(["p"]);
    const big = e.reader();
    assert.equal(await big.count("a", plo, phi), 50);
    const last: StoredEntry[] = [];
    for await (const x of big.range("a", plo, phi, { reverse: true, limit: 2 })) last.push(x);
    assert.deepEqual(last.map((x) => decodeKey(x.key)), [["p", 99], ["p", 97]]);
    snap.release();
    await s.close();
  });

  test(`${R} a range over big values is read in pages sized by bytes, not 256 keys each: no reply holds them all, and every entry comes, in order`, async () => {
    // 60 values of 512 KiB: one page of up to 256 keys was one ~42 MB reply (near etcd's
    // 1.5 MiB values, 256 of them were past the longest string a JavaScript engine makes).
    const replies: number[] = [];
    const asked: number[] = [];
    let counting = false;
    const fetch: FetchLike = async (url, init) => {
      const res = await globalThis.fetch(url, init);
      if (!counting || !String(url).includes("/v3/kv/")) return res;
      for (const m of String(init?.body ?? "").matchAll(/"limit":"(\d+)"/g)) asked.push(Number(m[1]));
      const body = await res.text();
      replies.push(body.length);
      return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
    };
    const s = await store(1, { fetch });
    const e = s.engines[0]!;
    await e.createNamespace("big");
    const part = new Uint8Array(512 << 10).fill(5);
    /** The live keys under `prefix`, read with the requests counted. */
    const keysUnder = async (prefix: string): Promise<unknown[]> => {
      counting = true;
      const [lo, hi] = prefixRange([prefix]);
      const keys: unknown[] = [];
      for await (const x of e.reader().range("big", lo, hi)) keys.push(decodeKey(x.key));
      counting = false;
      return keys;
    };
    for (let i = 0; i < 60; i++) await e.set("big", k(["b", i]), encodeValue(part));
    assert.deepEqual(await keysUnder("b"), Array.from({ length: 60 }, (_, i) => ["b", i]));
    const largest = Math.max(...replies);
    assert.ok(replies.length >= 3, `${replies.length} replies for 60 values of 512 KiB`);
    assert.ok(largest < 30e6, `the largest reply was ${largest} bytes`);
    // Small entries first (tombstones) say nothing of what follows: no page asks for more
    // than 64 keys, which with etcd's 1.5 MiB values is ~128 MB of JSON at most.
    const tx = await e.begin();
    for (let i = 0; i < 40; i++) tx.set("big", k(["c", i]), v(i));
    await tx.commit();
    const tx2 = await e.begin();
    for (let i = 0; i < 40; i++) tx2.delete("big", k(["c", i]));
    await tx2.commit();
    for (let i = 100; i < 105; i++) await e.set("big", k(["c", i]), encodeValue(part));
    assert.deepEqual(await keysUnder("c"), [100, 101, 102, 103, 104].map((i) => ["c", i]));
    assert.ok(asked.length > 0 && Math.max(...asked) <= 64, `keys asked per page: ${asked.join(", ")}`);
    await s.close();
  });

  test(`${R} namespaces: create, list, drop, rename keeps keys and id (atomic), errors name what is wrong`, async () => {
    const s = await store(2);
    const [e, f] = s.engines as [EtcdEngine, EtcdEngine];
    await e.createNamespace("accounts");
    await e.createNamespace("logs");
    await failsWith("NAMESPACE_EXISTS", () => f.createNamespace("accounts"));
    assert.deepEqual(await f.listNamespaces(), ["accounts", "logs"]);
    await e.set("accounts", k("alice"), v(10));
    await failsWith("NAMESPACE_NOT_FOUND", () => e.set("nope", k("x"), v(1)));
    await failsWith("NAMESPACE_NOT_FOUND", () => e.reader().get("nope", k("x")));
    // A transaction that read "accounts" loses to a rename committed after its snapshot.
    const tx = await e.begin();
    assert.equal(decodeValue((await tx.get("accounts", k("alice")))!.value), 10);
    tx.set("accounts", k("bob"), v(1));
    await f.renameNamespace("accounts", "ledger");
    const { error } = await failsWith("CONFLICT", () => tx.commit());
    assert.equal(error.details?.ns, "accounts");
    assert.deepEqual(await e.listNamespaces(), ["ledger", "logs"]);
    assert.equal(decodeValue((await e.reader().get("ledger", k("alice")))!.value), 10, "the rename kept the keys");
    await failsWith("NAMESPACE_NOT_FOUND", () => e.reader().get("accounts", k("alice")));
    await failsWith("NAMESPACE_EXISTS", () => e.renameNamespace("ledger", "logs"));
    await failsWith("NAMESPACE_NOT_FOUND", () => e.renameNamespace("accounts", "x"));
    // A snapshot from before the rename still reads the old name.
    const before = await e.snapshot();
    await e.dropNamespace("ledger");
    await failsWith("NAMESPACE_NOT_FOUND", () => e.dropNamespace("ledger"));
    assert.equal(decodeValue((await before.get("ledger", k("alice")))!.value), 10);
    before.release();
    // A new namespace of the same name starts empty: a new id.
    await e.createNamespace("ledger");
    assert.equal(await e.reader().get("ledger", k("alice")), undefined);
    await failsWith("INVALID_ARGUMENT", () => e.createNamespace(""));
    // What open(..., { namespaces }) asks: the missing ones created together, the rest left.
    assert.deepEqual(await f.ensureNamespaces(["logs", "n1", "n2", "n1"]), ["n1", "n2"]);
    assert.deepEqual(await e.ensureNamespaces(["logs", "n1"]), []);
    assert.deepEqual(await e.listNamespaces(), ["ledger", "logs", "n1", "n2"]);
    await e.set("n2", k("k"), v(1));
    // Namespace operations in a commit request, as db.ts builds them: alone.
    const nsReq = (ops: NonNullable<EtcdCommitRequest["namespaceOps"]>, writes = new Map()) => ({ readRevision: 0n, isolation: "serializable" as const, blind: true, bindings: new Map(), reads: new Map(), ranges: [], writes, checks: [], namespaceOps: ops });
    await e.commit(nsReq([{ op: "create", name: "q1" }, { op: "create", name: "q2" }]));
    await failsWith("NAMESPACE_EXISTS", () => e.commit(nsReq([{ op: "create", name: "q3" }, { op: "create", name: "q1" }])));
    await e.commit(nsReq([{ op: "rename", name: "q2", to: "q3" }]));
    await e.commit(nsReq([{ op: "drop", name: "q1" }]));
    assert.deepEqual(await e.listNamespaces(), ["ledger", "logs", "n1", "n2", "q3"]);
    await failsWith("UNSUPPORTED", () => e.commit(nsReq([{ op: "drop", name: "q3" }], new Map([["n1", new Map([[k("x"), { kind: "delete" }]])]]))));
    await s.close();
  });

  test(`${R} a transaction reads its own writes, deletes and sums; a read-only one commits at its read revision`, async () => {
    const s = await store();
    const e = s.engines[0]!;
    await e.createNamespace("n");
    await e.set("n", k("a"), v(1));
    await e.set("n", k("b"), v(2));
    const tx = await e.begin();
    tx.set("n", k("c"), v(3));
    tx.delete("n", k("a"));
    tx.sum("n", k("b"), 40);
    assert.equal(await tx.get("n", k("a")), undefined);
    assert.equal(decodeValue((await tx.get("n", k("b")))!.value), 42);
    assert.equal(decodeValue((await tx.get("n", k("c")))!.value), 3);
    const [lo, hi] = prefixRange([]);
    assert.deepEqual((await tx.range("n", lo, hi)).map((x) => [decodeKey(x.key), decodeValue(x.value)]), [["b", 42], ["c", 3]]);
    const { version } = await tx.commit();
    const r = e.reader();
    assert.equal(await r.get("n", k("a")), undefined);
    assert.equal(decodeValue((await r.get("n", k("b")))!.value), 42);
    assert.equal((await r.get("n", k("c")))!.version, version, "every key of a commit carries its revision");
    const ro = await e.begin();
    await ro.get("n", k("b"));
    assert.equal((await ro.commit()).version, ro.readRevision);
    await s.close();
  });

  test(`${R} lost update prevented: concurrent read-modify-write increments from 4 engines add up exactly`, async () => {
    const s = await store(4);
    await s.engines[0]!.createNamespace("c");
    const per = 15;
    let conflicts = 0;
    await Promise.all(s.engines.flatMap((e) => [0, 1].map(async () => {
      for (let i = 0; i < per; i++) {
        const r = await transaction(e, async (tx) => {
          const n = (await tx.get("c", k("n")))?.value;
          tx.set("c", k("n"), v((n ? (decodeValue(n) as number) : 0) + 1));
        });
        conflicts += r.conflicts;
      }
    })));
    assert.equal(decodeValue((await s.engines[0]!.reader().get("c", k("n")))!.value), 4 * 2 * per);
    assert.ok(conflicts > 0, "the increments did contend");
    await s.close();
  });

  test(`${R} write skew prevented under serializable, allowed under snapshot isolation`, async () => {
    const s = await store(2);
    const [e, f] = s.engines as [EtcdEngine, EtcdEngine];
    await e.createNamespace("oncall");
    for (const isolation of ["serializable", "snapshot"] as const) {
      await e.set("oncall", k("alice"), v(true));
      await e.set("oncall", k("bob"), v(true));
      // Each doctor goes off call if the other is still on: both read both, each writes one.
      const t1 = await e.begin({ isolation });
      const t2 = await f.begin({ isolation });
      for (const [tx, me, other] of [[t1, "alice", "bob"], [t2, "bob", "alice"]] as const) {
        assert.equal(decodeValue((await tx.get("oncall", k(other)))!.value), true);
        tx.set("oncall", k(me), v(false));
      }
      await t1.commit();
      if (isolation === "serializable") {
        const { error } = await failsWith("CONFLICT", () => t2.commit());
        assert.deepEqual(error.details?.key, "alice");
        assert.equal(error.details?.ns, "oncall");
        assert.equal(typeof error.details?.version, "bigint");
      } else {
        await t2.commit(); // write skew: allowed, as documented
        const r = e.reader();
        assert.equal(decodeValue((await r.get("oncall", k("alice")))!.value), false);
        assert.equal(decodeValue((await r.get("oncall", k("bob")))!.value), false);
      }
    }
    // Snapshot isolation still fails a write-write conflict.
    const a = await e.begin({ isolation: "snapshot" });
    const b = await f.begin({ isolation: "snapshot" });
    a.set("oncall", k("carol"), v(1));
    b.set("oncall", k("carol"), v(2));
    await a.commit();
    await failsWith("CONFLICT", () => b.commit());
    await s.close();
  });

  test(`${R} phantoms: an insert or a delete inside a read range conflicts; changes outside it and an unchanged range commit`, async () => {
    const s = await store(2);
    const [e, f] = s.engines as [EtcdEngine, EtcdEngine];
    await e.createNamespace("r");
    for (const key of [["q", 1], ["q", 3], ["q", 5], ["z", 1]]) await e.set("r", k(key), v(1));
    const [lo, hi] = prefixRange(["q"]);
    const readRange = async () => {
      const tx = await e.begin();
      assert.ok((await tx.range("r", lo, hi, {}, { prefix: ["q"] })).length >= 2);
      tx.set("r", k("summary"), v("three"));
      return tx;
    };
    // Phantom insert.
    let tx = await readRange();
    await f.set("r", k(["q", 2]), v(1));
    let c = await failsWith("CONFLICT", () => tx.commit());
    assert.deepEqual(c.error.details?.key, ["q", 2]);
    assert.deepEqual(c.error.details?.range, { prefix: ["q"] });
    // Phantom delete: etcd's range compares cannot see a deleted key, a tombstone they can.
    tx = await readRange();
    await f.delete("r", k(["q", 3]));
    c = await failsWith("CONFLICT", () => tx.commit());
    assert.deepEqual(c.error.details?.key, ["q", 3]);
    // A delete inside a range after a compaction removed older tombstones: still seen.
    await e.compact();
    tx = await readRange();
    await f.delete("r", k(["q", 5]));
    await failsWith("CONFLICT", () => tx.commit());
    // Unchanged range (changes only outside it): commits.
    await f.set("r", k(["q", 5]), v(1));
    tx = await readRange();
    await f.set("r", k(["z", 2]), v(1));
    await f.set("r", k("a"), v(1));
    await tx.commit();
    // A limited scan only covers what it read: an insert past its last key commits.
    const lim = await e.begin();
    assert.equal((await lim.range("r", lo, hi, { limit: 1 })).length, 1);
    lim.set("r", k("x"), v(1));
    await f.set("r", k(["q", 4]), v(1));
    await lim.commit();
    // Snapshot isolation ignores phantoms.
    const si = await e.begin({ isolation: "snapshot" });
    await si.range("r", lo, hi);
    si.set("r", k("summary"), v("si"));
    await f.set("r", k(["q", 6]), v(1));
    await si.commit();
    await s.close();
  });

  test(`${R} a read set larger than etcd's 128 compares is folded into ranges: commits when unchanged, conflicts on any change`, async () => {
    const s = await store(2);
    const [e, f] = s.engines as [EtcdEngine, EtcdEngine];
    await e.createNamespace("m");
    const tx0 = await e.begin();
    for (let i = 0; i < 100; i++) tx0.set("m", k(i * 2), v(i));
    await tx0.commit();
    const readMany = async () => {
      const tx = await e.begin();
      const keys = Array.from({ length: 300 }, (_, i) => k(i * 2));
      await tx.getMany("m", keys);
      tx.set("m", k("done"), v(true));
      return tx;
    };
    let tx = await readMany();
    await f.set("m", k(10_000), v("past every key read or written"));
    await tx.commit();
    tx = await readMany();
    await f.set("m", k(398), v("read, never written before"));
    const { error } = await failsWith("CONFLICT", () => tx.commit());
    assert.deepEqual(error.details?.key, 398);
    // Writes: at most ETCD_TX_WRITES_MAX keys per transaction.
    // The write past the limit fails at once; the transaction is left as it was.
    const big = await e.begin();
    for (let i = 0; i < ETCD_TX_WRITES_MAX; i++) big.set("m", k(["w", i]), v(i));
    assert.throws(() => big.set("m", k(["w", ETCD_TX_WRITES_MAX]), v(0)), (err: unknown) => err instanceof TxtDbError && err.code === "LIMIT" && new RegExp(`${ETCD_TX_WRITES_MAX} keys .*max-txn-ops`).test(err.message));
    big.set("m", k(["w", 0]), v("again")); // a key already written is no new write
    assert.equal(big.state.writeCount, ETCD_TX_WRITES_MAX);
    big.rollback();
    await s.close();
  });

  test(`${R} serializable history: random transactions from 4 engines replayed in version order read exactly what they read (keys and ranges, deletes included)`, async () => {
    const s = await store(4);
    await s.engines[0]!.createNamespace("h");
    type Rec = { version: bigint; reads: [string, unknown][]; ranges: { lo: string; hi: string; seen: [string, unknown][] }[]; writes: [string, unknown][] };
    const committed: Rec[] = [];
    const key = (i: number) => k(["k", i]);
    let serial = 0;
    await Promise.all(s.engines.map(async (e) => {
      for (let t = 0; t < 20; t++) {
        const id = ++serial;
        for (let attempt = 0; ; attempt++) {
          const tx = await e.begin();
          const rec: Rec = { version: 0n, reads: [], ranges: [], writes: [] };
          try {
            for (let r = 0; r < 1 + Math.floor(Math.random() * 2); r++) {
              const kk = key(Math.floor(Math.random() * 8));
              const got = await tx.get("h", kk);
              rec.reads.push([kk, got && decodeValue(got.value)]);
            }
            if (Math.random() < 0.6) {
              const a = Math.floor(Math.random() * 8), b = a + 1 + Math.floor(Math.random() * 4);
              const seen = await tx.range("h", key(a), key(b));
              rec.ranges.push({ lo: key(a), hi: key(b), seen: seen.map((x) => [x.key, decodeValue(x.value)]) });
            }
            for (let w = 0; w < 1 + Math.floor(Math.random() * 2); w++) {
              const kk = key(Math.floor(Math.random() * 8));
              if (rec.writes.some(([x]) => x === kk)) continue;
              const value = Math.random() < 0.3 ? undefined : id * 10 + w;
              if (value === undefined) tx.delete("h", kk);
              else tx.set("h", kk, v(value));
              rec.writes.push([kk, value]);
            }
            rec.version = (await tx.commit()).version;
            committed.push(rec);
            break;
          } catch (err) {
            tx.rollback();
            if (!(err instanceof TxtDbError) || err.code !== "CONFLICT" || attempt > 200) throw err;
            await sleep(Math.random() * 10);
          }
        }
      }
    }));
    // First committer wins, so version order is a serial order: replay it.
    committed.sort((a, b) => (a.version < b.version ? -1 : 1));
    const model = new Map<string, unknown>();
    for (const [i, rec] of committed.entries()) {
      for (const [kk, value] of rec.reads) assert.deepEqual(value, model.get(kk), `commit #${i} at ${rec.version} read ${JSON.stringify(decodeKey(kk))}`);
      for (const r of rec.ranges) {
        const expect = [...model.entries()].filter(([kk, x]) => kk >= r.lo && kk < r.hi && x !== undefined).sort(([a], [b]) => (a < b ? -1 : 1));
        assert.deepEqual(r.seen, expect, `commit #${i} at ${rec.version} range read`);
      }
      for (const [kk, value] of rec.writes) model.set(kk, value);
    }
    const final = s.engines[0]!.reader();
    for (let i = 0; i < 8; i++) assert.deepEqual(val(await final.get("h", key(i))), model.get(key(i)));
    assert.equal(committed.length, 80);
    await s.close();
  });

  test(`${R} sum() is exact under contention from 4 engines and never fails with CONFLICT; numbers and bigints; INVALID_VALUE on a string`, async () => {
    const s = await store(4);
    await s.engines[0]!.createNamespace("s");
    await s.engines[0]!.set("s", k("str"), v("text"));
    const per = 20;
    await Promise.all(s.engines.flatMap((e, w) => [0, 1].map(async (j) => {
      for (let i = 0; i < per; i++) {
        const tx = await e.begin();
        tx.sum("s", k("hits"), 1);
        tx.sum("s", k("big"), 3n);
        tx.set("s", k(["by", w, j, i]), v(true));
        await tx.commit(); // no retry loop: a CONFLICT here fails the test
      }
    })));
    const r = s.engines[0]!.reader();
    assert.equal(decodeValue((await r.get("s", k("hits")))!.value), 4 * 2 * per);
    assert.equal(decodeValue((await r.get("s", k("big")))!.value), BigInt(4 * 2 * per * 3));
    const bad = await s.engines[0]!.begin();
    bad.sum("s", k("str"), 1);
    await failsWith("INVALID_VALUE", () => bad.commit());
    // A sum on a key the serializable transaction read conflicts like any read.
    const t = await s.engines[0]!.begin();
    await t.get("s", k("hits"));
    t.sum("s", k("hits"), 1);
    await s.engines[1]!.set("s", k("hits"), v(0));
    await failsWith("CONFLICT", () => t.commit());
    await s.close();
  });

  test(`${R} check(): passes at the key's version, fails with CONFLICT otherwise; null means absent`, async () => {
    const s = await store();
    const e = s.engines[0]!;
    await e.createNamespace("c");
    const { version } = await e.set("c", k("a"), v(1));
    let tx = await e.begin();
    tx.check("c", k("a"), version);
    tx.check("c", k("b"), null);
    tx.set("c", k("x"), v(1));
    await tx.commit();
    const { version: deleted } = await e.delete("c", k("a"));
    tx = await e.begin();
    tx.check("c", k("a"), deleted); // the version of a delete: the key is absent, not at that version
    tx.set("c", k("x"), v(2));
    const { error } = await failsWith("CONFLICT", () => tx.commit());
    assert.equal(error.details?.version, null);
    tx = await e.begin();
    tx.check("c", k("a"), null);
    tx.set("c", k("x"), v(3));
    await tx.commit();
    await s.close();
  });

  test(`${R} pins: a snapshot stays readable across a compaction the engine drives; released, its revision is compacted and reads of it fail clearly`, async () => {
    const s = await store(2);
    const [e, f] = s.engines as [EtcdEngine, EtcdEngine];
    await e.createNamespace("p");
    await e.set("p", k("a"), v("old"));
    await e.set("p", k("gone"), v("soon deleted"));
    const snap = await e.snapshot();
    const pinned = snap.revision!;
    await f.set("p", k("a"), v("new"));
    await f.delete("p", k("gone"));
    for (let i = 0; i < 5; i++) await f.set("p", k("churn"), v(i));
    // Another process compacts: it may not pass the snapshot's pin.
    const c1 = await f.compact();
    assert.ok(c1.compactedTo <= pinned, `compacted to ${c1.compactedTo}, past the pin at ${pinned}`);
    assert.equal(decodeValue((await snap.get("p", k("a")))!.value), "old");
    assert.equal(decodeValue((await snap.get("p", k("gone")))!.value), "soon deleted");
    assert.ok(isTombstone((await e.rawData("p", k("gone")))!.value), "the tombstone above the pin stays");
    snap.release();
    await sleep(400); // the pin is raised shortly after the release
    const c2 = await f.compact();
    assert.ok(c2.compactedTo > pinned, `compacted to ${c2.compactedTo} after the release`);
    assert.ok(c2.removed >= 1, "the tombstone below the mark was removed");
    assert.equal(await e.rawData("p", k("gone")), undefined);
    const { error } = await failsWith("INVALID_ARGUMENT", () => e.snapshot(pinned));
    assert.match(error.message, /compacted/);
    await failsWith("INVALID_ARGUMENT", () => f.client.range("x", { revision: pinned }));
    // Still consistent at the newest revision.
    assert.equal(decodeValue((await e.reader().get("p", k("a")))!.value), "new");
    assert.equal(await e.reader().get("p", k("gone")), undefined);
    await s.close();
  });

  test(`${R} watch: one event per commit in order from a revision, only the selected keys, deletes as undefined; WATCH_OVERFLOW after compaction`, async () => {
    const s = await store(2);
    const [e, f] = s.engines as [EtcdEngine, EtcdEngine];
    await e.createNamespace("w");
    const from = await e.currentRevision();
    const versions: bigint[] = [];
    versions.push((await f.set("w", k(["x", 1]), v(1))).version);
    const tx = await f.begin();
    tx.set("w", k(["x", 2]), v(2));
    tx.set("w", k(["x", 3]), v(3));
    tx.set("w", k(["y", 1]), v("not selected"));
    versions.push((await tx.commit()).version);
    await f.set("w", k(["y", 2]), v("not selected"));
    versions.push((await f.delete("w", k(["x", 1]))).version);
    const [lo, hi] = prefixRange(["x"]);
    const ac = new AbortController();
    const seen: { version: bigint; changes: [unknown, unknown][] }[] = [];
    for await (const ev of e.watch("w", { start: lo, end: hi }, { fromVersion: from, signal: ac.signal })) {
      seen.push({ version: ev.version, changes: ev.changes.map((c) => [decodeKey(c.key), c.value && decodeValue(c.value)]) });
      if (seen.length === 3) break;
    }
    assert.deepEqual(seen, [
      { version: versions[0], changes: [[["x", 1], 1]] },
      { version: versions[1], changes: [[["x", 2], 2], [["x", 3], 3]] },
      { version: versions[2], changes: [[["x", 1], undefined]] },
    ]);
    // Resuming from the last version seen repeats nothing; keys selection; live events.
    const live = e.watch("w", { keys: [k(["x", 2]), k(["x", 9])] }, { fromVersion: versions[2] });
    const next = live.next();
    await f.set("w", k(["x", 3]), v("unselected"));
    const v9 = (await f.set("w", k(["x", 9]), v(9))).version;
    const got = await next;
    assert.equal(got.done, false);
    assert.equal(got.value!.version, v9);
    assert.deepEqual(got.value!.changes.map((c) => decodeKey(c.key)), [["x", 9]]);
    await live.return(undefined);
    // Compaction past `from`: the history is gone.
    await sleep(400);
    await f.compact();
    const mark = (await e.compact()).compactedTo;
    assert.ok(mark > from);
    const { error } = await failsWith("WATCH_OVERFLOW", async () => {
      for await (const _ of e.watch("w", { start: lo, end: hi }, { fromVersion: from })) break;
    });
    assert.match(error.message, /keeps history from revision/);
    await s.close();
  });

  test(`${R} a commit whose reply is lost is resolved by its commit id: applied exactly once, success reported; one lost before etcd is resent`, async () => {
    let loseReply = 0;
    let dropRequest = 0;
    let duplicate = 0;
    let revokeOnLoss: (() => Promise<void>) | undefined;
    let revokeBetween: (() => Promise<void>) | undefined;
    let txnCalls = 0;
    const fetch: FetchLike = async (url, init) => {
      const isTxn = String(url).endsWith("/v3/kv/txn") && typeof init?.body === "string" && init.body.includes("request_put");
      if (isTxn) txnCalls++;
      const isWrite = String(url).endsWith("/v3/kv/txn") && typeof init?.body === "string" && /request_put|request_delete_range/.test(init.body);
      if (isWrite && duplicate > 0) {
        // A retrying proxy: the request reaches etcd twice, and the reply is the second's.
        duplicate--;
        await (await globalThis.fetch(url, init)).text();
        if (revokeBetween) await revokeBetween(); // the lease ends between the two deliveries
        return await globalThis.fetch(url, init);
      }
      if (isTxn && dropRequest > 0) {
        dropRequest--;
        // A reset before anything was sent: the client cannot know that, so the outcome is "unknown".
        throw Object.assign(new TypeError("fetch failed"), { cause: Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }) });
      }
      const res = await globalThis.fetch(url, init);
      if (isTxn && loseReply > 0) {
        loseReply--;
        await res.text();
        if (revokeOnLoss) await revokeOnLoss(); // an outage past the lease's TTL, in effect
        throw Object.assign(new TypeError("fetch failed"), { cause: Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }) });
      }
      return res;
    };
    const s = await store(1, { fetch });
    const e = s.engines[0]!;
    await e.createNamespace("u");
    // Reply lost after etcd applied the commit.
    let tx = await e.begin();
    tx.sum("u", k("n"), 1);
    tx.set("u", k("a"), v("once"));
    loseReply = 1;
    txnCalls = 0;
    const { version } = await tx.commit();
    assert.equal(txnCalls, 2, "the commit and the fence, no resend");
    const a = (await e.reader().get("u", k("a")))!;
    assert.equal(a.version, version, "the version reported is the commit's");
    assert.equal(decodeValue((await e.reader().get("u", k("n")))!.value), 1);
    // Request lost before etcd: the fence proves it never landed, and the commit is resent.
    tx = await e.begin();
    tx.sum("u", k("n"), 1);
    dropRequest = 1;
    txnCalls = 0;
    await tx.commit();
    assert.equal(txnCalls, 3, "the lost commit, the fence, the resend");
    assert.equal(decodeValue((await e.reader().get("u", k("n")))!.value), 2, "applied once");
    // The commit's reply and every fence's lost: the outcome is unknown, and said so.
    tx = await e.begin();
    tx.sum("u", k("n"), 1);
    loseReply = 1 + FENCE_ATTEMPTS_MAX;
    const { error } = await failsWith("UNAVAILABLE", () => tx.commit());
    assert.equal(error.details?.outcome, "unknown");
    assert.match(error.message, /outcome is unknown/);
    // A fence whose own reply is lost is sent again, and learns the outcome.
    tx = await e.begin();
    tx.sum("u", k("n"), 1);
    loseReply = 2;
    txnCalls = 0;
    await tx.commit();
    assert.equal(txnCalls, 3, "the commit, a lost fence, a fence that reads the id");
    assert.equal(decodeValue((await e.reader().get("u", k("n")))!.value), 4, "applied once (and the unknown one before it, once)");
    assert.deepEqual([e.stats().lostLanded, e.stats().lostFenced, e.stats().unknown], [2, 1, 1]);
    // A commit delivered twice: the second delivery fails its commit-id compare, and that is
    // the reply the engine gets; the id read in the failure branch says it landed (not a
    // CONFLICT, which db.transaction() would retry, applying it twice).
    tx = await e.begin();
    assert.equal(decodeValue((await tx.get("u", k("n")))!.value), 4);
    tx.set("u", k("n"), v(5));
    duplicate = 1;
    const dup = await tx.commit();
    assert.equal(duplicate, 0);
    const n = (await e.reader().get("u", k("n")))!;
    assert.equal(decodeValue(n.value), 5);
    assert.equal(n.version, dup.version, "the version reported is the one that landed");
    // A lost reply, and the lease ends before the fence (an outage past its TTL): the fence
    // fails with "lease not found"; the outcome is unknown (UNAVAILABLE), never a wrong
    // INVALID_ARGUMENT for a commit that landed. The next commit takes a new lease.
    const other = await EtcdEngine.open(s.url);
    const leaseId = (await e.pins.lease()).id;
    revokeOnLoss = async () => {
      revokeOnLoss = undefined;
      await other.client.revokeLease(leaseId);
    };
    tx = await e.begin();
    tx.sum("u", k("n"), 1);
    loseReply = 1;
    const gone = await failsWith("UNAVAILABLE", () => tx.commit());
    assert.equal(gone.error.details?.outcome, "unknown");
    assert.match(gone.error.message, /lease ended/);
    assert.equal(decodeValue((await e.reader().get("u", k("n")))!.value), 6, "it had landed");
    tx = await e.begin();
    tx.sum("u", k("n"), 1);
    await tx.commit();
    assert.notEqual((await e.pins.lease()).id, leaseId);
    assert.equal(decodeValue((await e.reader().get("u", k("n")))!.value), 7);
    // Delivered twice with the lease ended in between: ending it deleted the first
    // delivery's id, and the second fails on what the first wrote. Not a CONFLICT (which
    // db.transaction() would run again, applying it twice): the outcome is unknown.
    const leaseId2 = (await e.pins.lease()).id;
    revokeBetween = async () => {
      revokeBetween = undefined;
      await other.client.revokeLease(leaseId2);
    };
    tx = await e.begin();
    tx.set("u", k("n"), v(decodeValue((await tx.get("u", k("n")))!.value) as number + 1));
    duplicate = 1;
    const unknownBefore = e.stats().unknown;
    const twice = await failsWith("UNAVAILABLE", () => tx.commit());
    assert.equal(twice.error.details?.outcome, "unknown");
    assert.match(twice.error.message, /whether an earlier delivery of it landed/, "reported as U5 says, not fenced as a lost reply");
    assert.equal(e.stats().unknown, unknownBefore + 1, "counted once");
    assert.equal(decodeValue((await e.reader().get("u", k("n")))!.value), 8, "applied once");
    // Namespace operations delivered twice report what they did (U6), not NAMESPACE_EXISTS
    // or NAMESPACE_NOT_FOUND from meeting their own first delivery's effect.
    duplicate = 1;
    await e.createNamespace("dup");
    assert.equal(duplicate, 0);
    duplicate = 1;
    await e.renameNamespace("dup", "dup2");
    assert.equal(duplicate, 0);
    duplicate = 1;
    await e.dropNamespace("dup2");
    assert.equal(duplicate, 0);
    assert.deepEqual((await e.listNamespaces()).filter((n) => n.startsWith("dup")), []);
    await other.close();
    loseReply = 0;
    await s.close();
  });

  test(`${R} commit ids of namespace operations are cleaned up as they go: a process making many namespace operations and no commits keeps only a few in etcd`, async () => {
    const s = await store();
    const e = s.engines[0]!;
    for (let i = 0; i < 30; i++) {
      await e.createNamespace(`n${i}`);
      await e.dropNamespace(`n${i}`);
    }
    const ids = await e.client.range(e.layout.commitPrefix, { prefix: true, keysOnly: true });
    // The lease's mark of life, and the ids of the last few operations not yet cleaned up.
    assert.ok(ids.count <= 10, `${ids.count} commit ids left after 60 namespace operations`);
    await s.close();
  });

  test(`${R} expiring values read as absent from their expiry on; a serializable read of one that expires before commit conflicts`, async () => {
    const s = await store();
    const e = s.engines[0]!;
    await e.createNamespace("x");
    await e.set("x", k("session"), wrapExpiring(v({ user: 1 }), Date.now() + 600));
    await e.set("x", k("keep"), v(1));
    const [lo, hi] = prefixRange([]);
    assert.deepEqual(decodeValue((await e.reader().get("x", k("session")))!.value.subarray(13)), { user: 1 });
    assert.equal(await e.reader().count("x", lo, hi), 2);
    const tx = await e.begin();
    assert.ok(await tx.get("x", k("session")));
    tx.set("x", k("seen"), v(true));
    await sleep(700);
    const { error } = await failsWith("CONFLICT", () => tx.commit());
    assert.equal(error.details?.expired, true);
    assert.equal(await e.reader().get("x", k("session")), undefined);
    assert.equal(await e.reader().count("x", lo, hi), 1);
    await sleep(300);
    const c = await e.compact();
    assert.ok(c.removed >= 1, "compaction reclaimed the expired value");
    await s.close();
  });

  test(`${R} a process cut off from etcd past its lease TTL loses its pin: its snapshot fails with UNAVAILABLE once another compacts past it; new snapshots work`, async () => {
    let cut = false;
    const refused = () => Promise.reject(Object.assign(new TypeError("fetch failed"), { cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) }));
    const fetch: FetchLike = (url, init) => (cut && String(url).includes("/v3/lease/keepalive") ? refused() : globalThis.fetch(url, init));
    const s = await store(1, { fetch, leaseTtlSeconds: 2 });
    const e = s.engines[0]!;
    const other = await EtcdEngine.open(s.url);
    await e.createNamespace("l");
    await e.set("l", k("a"), v(1));
    const snap = await e.snapshot();
    // A transaction that read "b" (absent) before the cut, and commits after.
    const late = await e.begin();
    assert.equal(await late.get("l", k("b")), undefined);
    late.set("l", k("c"), v("late"));
    await other.set("l", k("a"), v(2));
    assert.ok((await other.compact()).compactedTo <= snap.revision!, "the pin holds while the lease lives");
    cut = true;
    const lost = await (await e.pins.lease()).lost;
    assert.equal(lost.code, "UNAVAILABLE");
    // etcd ends the lease by its own clock, deleting the pin: then a compaction passes it.
    const t0 = performance.now();
    while ((await other.compact()).compactedTo <= snap.revision!) {
      assert.ok(performance.now() - t0 < 8000, "etcd did not end the lease within 8 s");
      await sleep(200);
    }
    cut = false;
    // "b" written and deleted after the transaction's snapshot, its tombstone cleaned up by
    // a compaction that passed the lost pin: nothing in "b" shows the change any more; the
    // mark in the commit's compares does (V9).
    await other.set("l", k("b"), v(1));
    await other.delete("l", k("b"));
    await sleep(400);
    assert.ok((await other.compact()).removed >= 1);
    const stale = await failsWith("CONFLICT", () => late.commit());
    assert.equal(stale.error.details?.compacted, true);
    const { error } = await failsWith("UNAVAILABLE", () => snap.get("l", k("a")));
    assert.match(error.message, /pin was lost/);
    snap.release();
    const fresh = await e.snapshot();
    assert.equal(decodeValue((await fresh.get("l", k("a")))!.value), 2);
    fresh.release();
    let tx = await e.begin();
    tx.sum("l", k("n"), 1);
    await tx.commit();
    // A lease etcd ended before the keep-alive noticed: etcd refuses the commit whole
    // ("lease not found"); the engine takes a new lease and sends it again.
    const old = await e.pins.lease();
    await other.client.revokeLease(old.id);
    tx = await e.begin();
    tx.sum("l", k("n"), 1);
    await tx.commit();
    assert.notEqual((await e.pins.lease()).id, old.id);
    assert.equal(decodeValue((await e.reader().get("l", k("n")))!.value), 2);
    // The new lease ended too, before its first pin: publishing the pin meets "lease not
    // found", takes another lease and publishes again (it failed with INVALID_ARGUMENT).
    await other.client.revokeLease((await e.pins.lease()).id);
    (await e.snapshot()).release();
    assert.ok(e.stats().pinnedRevision !== undefined, "the pin is published again, under the new lease");
    await other.close();
    await s.close();
  });

  test(`${R} stop the cluster`, async () => {
    await one.stop();
  });

  test(`${R} commits from 3 engines go on through a leader kill on a 3-member cluster: the count is exact, no commit applied twice`, async () => {
    const cluster = await EtcdCluster.start(3);
    const engines: EtcdEngine[] = [];
    try {
      const url = `etcd://${cluster.endpoints.map((e) => e.replace("http://", "")).join(",")}/failover-${runtime}`;
      for (let i = 0; i < 3; i++) engines.push(await EtcdEngine.open(url, { requestTimeoutMs: 3000 }));
      await engines[0]!.createNamespace("f");
      let stop = false;
      let ok = 0, unknown = 0, notApplied = 0;
      const loop = async (e: EtcdEngine) => {
        while (!stop) {
          try {
            const tx = await e.begin();
            tx.sum("f", k("n"), 1);
            await tx.commit();
            ok++;
          } catch (err) {
            if (!(err instanceof TxtDbError) || err.code !== "UNAVAILABLE") throw err;
            if (err.details?.outcome === "unknown") unknown++;
            else notApplied++;
            await sleep(50);
          }
        }
      };
      const loops = engines.map(loop);
      await sleep(400);
      const leader = await cluster.leader();
      await cluster.kill(leader);
      await sleep(1500);
      await cluster.restart(leader);
      await sleep(400);
      stop = true;
      await Promise.all(loops);
      const n = decodeValue((await engines[0]!.reader().get("f", k("n")))!.value) as number;
      const stats = engines.map((e) => e.stats());
      const seen = JSON.stringify({ n, ok, unknown, notApplied, lost: stats.map((x) => [x.lostLanded, x.lostFenced, x.unknown]) });
      assert.ok(ok > 0, seen);
      assert.ok(n >= ok && n <= ok + unknown, `the count must be the commits reported, plus at most those of unknown outcome: ${seen}`);
      assert.equal(stats.reduce((sum, x) => sum + x.commits, 0), ok, seen);
    } finally {
      await Promise.all(engines.map((e) => e.close().catch(() => {})));
      await cluster.close();
    }
  });
});
