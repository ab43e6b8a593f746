/**
 * The same calls on a directory and on etcd give the same results: differences found by
 * running one sequence of calls against both and comparing, each fixed on the etcd side.
 * Each test checks the etcd backend against what the local engine does (and, where cheap,
 * runs the local engine beside it).
 *
 * The tests share one 1-member cluster and run in order; the last one stops it.
 */
import { assert, collector, runtime, sleep, tempDir, test } from "./harness.ts";
import { etcdTests, failsWith, sharedCluster } from "./etcdtests.ts";
import { open } from "txtdb";
import type { Database } from "txtdb";

const R = `[${runtime}] [etcd-parity]`;

let stores = 0;

etcdTests(`${R} the etcd backend as the local one`, () => {
  const one = sharedCluster(1);
  const location = async (what: string) => {
    const cluster = await one.get();
    return `etcd://${cluster.endpoints.map((e) => e.replace("http://", "")).join(",")}/parity-${what}-${runtime}-${Date.now()}-${++stores}`;
  };

  test(`${R} db.set() and db.delete() keep maxTxBytes as a transaction of one write does, as on a directory: LIMIT, nothing written (etcd wrote the value)`, async () => {
    for (const loc of [tempDir("parity-txbytes"), await location("txbytes")]) {
      const db = await open(loc, { namespaces: ["ns"], maxTxBytes: 100 });
      try {
        await failsWith("LIMIT", () => db.set("ns", "k", "x".repeat(200)));
        assert.equal(await db.get("ns", "k"), undefined, `${loc}: nothing written`);
        await failsWith("LIMIT", () => db.delete("ns", "d".repeat(120)));
        await db.set("ns", "k", "x".repeat(50));
        assert.equal(await db.get("ns", "k"), "x".repeat(50));
        await db.delete("ns", "k");
      } finally {
        await db.close();
      }
    }
  });

  test(`${R} a watcher ended unread, by return() or by its signal, gives its place back at once, as on a directory: maxWatchers of them no longer make every later watch() fail with LIMIT, and stats().watchers counts only live ones`, async () => {
    for (const loc of [tempDir("parity-watchers"), await location("watchers")]) {
      const db = await open(loc, { namespaces: ["ns"], maxWatchers: 2 });
      try {
        for (let i = 0; i < 4; i++) {
          const w = db.watch("ns", { prefix: [] });
          await w.return!();
          assert.equal(db.stats().watchers, 0, `${loc}: returned watcher ${i} still counted`);
        }
        for (let i = 0; i < 4; i++) {
          const ac = new AbortController();
          db.watch("ns", { keys: ["k"] }, { signal: ac.signal });
          ac.abort();
          assert.equal(db.stats().watchers, 0, `${loc}: aborted watcher ${i} still counted`);
        }
        const aborted = new AbortController();
        aborted.abort();
        const early = db.watch("ns", { keys: ["k"] }, { signal: aborted.signal });
        assert.equal(db.stats().watchers, 0, `${loc}: a watcher whose signal was aborted before the call is counted`);
        assert.equal((await early.next()).done, true);
        // The places are there: two live watchers, and the third is LIMIT.
        const a = db.watch("ns", { keys: ["k"] });
        const b = db.watch("ns", { keys: ["k"] });
        assert.throws(() => db.watch("ns", { keys: ["k"] }), (e: unknown) => (e as { code?: string }).code === "LIMIT");
        const v = (await db.set("ns", "k", 1)).version;
        assert.equal((await a.next()).value?.version, v);
        assert.equal((await b.next()).value?.version, v);
        await a.return!();
        await b.return!();
        assert.equal(db.stats().watchers, 0);
      } finally {
        await db.close();
      }
    }
  });

  test(`${R} a watcher dropped unread gives its pin back once collected, as docs/watch.md says: compaction is not held at its fromVersion for the process's life`, async (t) => {
    const gc = await collector();
    if (!gc) return t.skip("no way to run the garbage collector on this runtime");
    const db = await open(await location("dropped"), { namespaces: ["ns"] });
    try {
      const v0 = (await db.set("ns", "k", 0)).version;
      (() => {
        db.watch("ns", { keys: ["k"] }, { fromVersion: v0 }); // never read, never returned
      })();
      for (let i = 1; i <= 3; i++) await db.set("ns", "k", i);
      const head = (await db.set("ns", "head", 1)).version;
      let compactedTo = 0n;
      for (let i = 0; i < 20 && compactedTo < head; i++) {
        await gc();
        await sleep(300); // the pin is raised after a release (batched)
        compactedTo = (await db.compact()).checkpointVersion;
      }
      assert.ok(compactedTo >= head, `compaction stayed at ${compactedTo}, held by the dropped watcher's pin at ${v0} (head ${head})`);
      assert.equal(db.stats().watchers, 0, "the dropped watcher's place is given back too");
    } finally {
      await db.close();
    }
  });

  test(`${R} a watch that catches up over big revisions delivers them, each whole, as on a directory (etcd sent up to 1,000 revisions in one reply: past 64 MiB the watch failed with LIMIT, after ~30 s), also to a watcher of another namespace whose etcd range spans them`, async () => {
    const loc = await location("fragments");
    const db: Database = await open(loc, { namespaces: ["a", "b"], autoCompactBytes: 0 });
    try {
      const v0 = (await db.set("a", "k", 0)).version;
      // 56 revisions of two 520 KB values: ~58 MB, ~78 MB as base64 in the gateway's JSON.
      // etcd cuts fragments at its 1.5 MiB request limit between events: after three of
      // them, inside a revision, so the revisions a fragment splits must come whole.
      const big = (i: number, j: number) => new Uint8Array(520_000).fill(i * 2 + j);
      const versions: bigint[] = [];
      for (let i = 0; i < 56; i++) {
        await db.transaction((tx) => {
          tx.set("b", [i, 0], big(i, 0));
          tx.set("b", [i, 1], big(i, 1));
        });
        versions.push((await db.getEntry("b", [i, 0]))!.version);
      }
      const v1 = (await db.set("a", "k", 1)).version;

      const wa = db.watch("a", { keys: ["k"] }, { fromVersion: v0 });
      try {
        const first = await wa.next();
        assert.deepEqual([first.value?.version, first.value?.changes], [v1, [{ key: "k", value: 1 }]]);
      } finally {
        await wa.return!();
      }

      const wb = db.watch("b", { prefix: [] }, { fromVersion: v0 });
      try {
        for (let i = 0; i < 56; i++) {
          const e = (await wb.next()).value!;
          assert.equal(e.version, versions[i], `revision ${i}`);
          assert.deepEqual(e.changes.map((c) => c.key), [[i, 0], [i, 1]], `revision ${i} whole`);
          assert.deepEqual(e.changes.map((c) => (c.value as Uint8Array)[0]), [i * 2, i * 2 + 1]);
          assert.ok(e.changes.every((c) => (c.value as Uint8Array).length === 520_000));
        }
      } finally {
        await wb.return!();
      }
    } finally {
      await db.close();
    }
  });

  test(`${R} stats().version is the newest version the process has seen, and oldestPinVersion its oldest pin or that head, as on a directory (etcd gave its published pin as version, 0 before the first, and 0 as oldestPinVersion when nothing was read)`, async () => {
    for (const loc of [tempDir("parity-stats"), await location("stats")]) {
      const db = await open(loc, { namespaces: ["ns"] });
      try {
        const v1 = (await db.set("ns", "k", 1)).version;
        assert.equal(db.stats().version, v1, `${loc}: the version of its own commit`);
        // Nothing pinned: the head on a directory; on etcd the pin last published (batched).
        const o = db.stats().oldestPinVersion;
        assert.ok(o > 0n && o <= v1, `${loc}: oldestPinVersion ${o}, head ${v1}`);
        const snap = await db.snapshot();
        const v2 = (await db.set("ns", "k", 2)).version;
        assert.equal(db.stats().version, v2, loc);
        assert.ok(db.stats().oldestPinVersion <= snap.version, `${loc}: the snapshot at ${snap.version} is pinned (${db.stats().oldestPinVersion})`);
        snap.release();
        assert.equal((await db.getEntry("ns", "k"))?.version, v2);
        assert.equal(db.stats().version, v2, loc);
      } finally {
        await db.close();
      }
    }
  });

  test(`${R} after close(), the calls etcd cannot serve fail with CLOSED, as every call on a closed handle does, as on a directory (they said UNSUPPORTED)`, async () => {
    for (const loc of [tempDir("parity-closed"), await location("closed")]) {
      const db = await open(loc, { namespaces: ["ns"] });
      await db.close();
      const calls: [string, () => unknown][] = [
        ["enqueue", () => db.enqueue("q", 1)],
        ["listenQueue", () => db.listenQueue("q", () => {})],
        ["queueStats", () => db.queueStats("q")],
        ["deadLetters", () => db.deadLetters("q").next()],
        ["retryDead", () => db.retryDead("q")],
        ["lock", () => db.lock("r")],
        ["locks", () => db.locks()],
        ["backup", () => db.backup(tempDir("parity-closed-backup"))],
        ["processes", () => db.processes()],
        ["listPrepared", () => db.listPrepared()],
        ["commitPrepared", () => db.commitPrepared("t")],
        ["abortPrepared", () => db.abortPrepared("t")],
      ];
      for (const [name, call] of calls) {
        await failsWith("CLOSED", async () => await call()).catch((e: Error) => {
          throw new Error(`${loc}: db.${name}(): ${e.message}`);
        });
      }
    }
  });

  test(`${R} stop the cluster`, async () => {
    await one.stop();
  });
});
