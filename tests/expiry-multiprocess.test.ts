/**
 * Expiring keys across real processes: Node, Deno and Bun processes each set keys with
 * expireIn; Node, Deno and Bun readers (with a snapshot taken before the expiry) see every
 * one of them absent once the wall clock passes its expiry — get, getMany, list (across
 * pages, reversed, limited), count, the snapshot, a transaction — and after one of them
 * compacts, the tables hold none of them. Nothing here depends on speed: a reader waits
 * until the wall clock has passed the expiry, and what it saw before is checked only when
 * its reads ended before the expiry began. Run from the Node and Bun legs.
 */
import { afterEach, assert, canSpawn, runtime, tempDir, test } from "./harness.ts";
import { open } from "txtdb";

if (canSpawn) {
  const { RUNTIMES, startWorker, killAllWorkers } = await import("./procs.ts");
  afterEach(() => killAllWorkers());
  const R = `[${runtime}]`;
  const EXPIRE_IN_MS = 4000;

  type Seen = Record<string, { temp: unknown; many: unknown[]; count: number; listed: number; reversed: number; perm: unknown }>;

  function assertGone(seen: Seen, where: string): void {
    for (const tag of RUNTIMES) {
      const s = seen[tag]!;
      assert.deepEqual(s, { temp: null, many: [null, null, tag], count: 0, listed: 0, reversed: 0, perm: tag }, `${where}: the keys ${tag} set are absent after their expiry`);
    }
  }

  test(`${R} keys set with expireIn by Node, Deno and Bun processes read as absent after their expiry in Node, Deno and Bun processes, snapshots and transactions included; a compaction in one of them reclaims them`, async () => {
    const dir = tempDir("expiry-mp");
    const db = await open(dir, { namespaces: ["ns"] });
    const setters = RUNTIMES.map((rt) => startWorker(rt, "expiry", ["set", dir, rt, String(EXPIRE_IN_MS)]));
    const windows = (await Promise.all(setters.map((w) => w.waitFor("done ", 60_000)))).map((l) => JSON.parse(l.slice(5)) as { from: number; by: number });
    for (const w of setters) assert.equal((await w.exited).code, 0, w.stderr);
    const from = Math.min(...windows.map((w) => w.from));
    const by = Math.max(...windows.map((w) => w.by));

    const readers = RUNTIMES.map((rt) => startWorker(rt, "expiry", ["read", dir, RUNTIMES.join(",")]));
    await Promise.all(readers.map((w) => w.waitFor("ready", 60_000)));
    for (const w of readers) w.send("early");
    for (const w of readers) {
      const early = JSON.parse((await w.waitFor("early ", 60_000)).slice(6)) as { before: number; after: number; seen: Seen };
      if (early.after < from) {
        // Read wholly before any expiry: everything is there.
        for (const tag of RUNTIMES) {
          assert.deepEqual(early.seen[tag], { temp: tag, many: [0, 299, tag], count: 300, listed: 300, reversed: 290, perm: tag }, `${w.runtime} before the expiry`);
        }
      }
    }

    for (const w of readers) w.send(`read ${by}`);
    for (const w of readers) {
      const r = JSON.parse((await w.waitFor("read ", 60_000)).slice(5)) as { db: Seen; snapshot: Seen; tx: Seen };
      assertGone(r.db, `${w.runtime} on db`);
      assertGone(r.snapshot, `${w.runtime} in a snapshot taken before the expiry`);
      assertGone(r.tx, `${w.runtime} in a transaction`);
    }
    while (Date.now() <= by) await new Promise((r) => setTimeout(r, 5));
    assert.equal(await db.count("ns", { prefix: ["temp"] }), 0, "this process too");

    // The readers' snapshots pin versions: two readers end, the third releases its snapshot
    // and compacts (everything committed folds).
    const [compactor, ...others] = readers;
    for (const w of others) assert.equal((await w.finish()).code, 0, w.stderr);
    const before = await db.check();
    compactor!.send("compact");
    const c = JSON.parse((await compactor!.waitFor("compacted ", 60_000)).slice(10)) as { ok: boolean; records: number; problems: unknown[] };
    assert.ok(c.ok, JSON.stringify(c.problems));
    assert.ok(c.records < 100, `the expired keys are reclaimed: ${c.records} records after (${before.records} log records before)`);
    const after = await db.check();
    assert.ok(after.ok, JSON.stringify(after.problems));
    assert.equal(await db.count("ns", { prefix: ["temp"] }), 0);
    assert.deepEqual(await db.getMany("ns", RUNTIMES.map((rt) => ["perm", rt])), [...RUNTIMES]);
    compactor!.send(`read ${by}`);
    const r = JSON.parse((await compactor!.waitFor("read ", 60_000)).slice(5)) as { db: Seen; snapshot: Seen; tx: Seen };
    assertGone(r.db, `${compactor!.runtime} after compacting`);
    assertGone(r.tx, `${compactor!.runtime}'s transaction after compacting`);
    assert.equal((await compactor!.finish()).code, 0, compactor!.stderr);
    await db.close();
  });
}
