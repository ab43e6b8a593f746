/**
 * The etcd backend attacked as a careless user and an attacker would, against real etcd
 * processes, compared with the local engine where API.md says they behave alike: the test
 * helper's SIGSTOP (a stopped member must answer nothing), watch() arguments, members
 * paused in the middle of a commit (the outcome reported is the outcome that happened),
 * and namespaces changed concurrently from several processes.
 *
 * The tests share one 1-member cluster and run in order; the last one stops it.
 */
import { assert, canSpawn, collector, runtime, sleep, tempDir, test } from "./harness.ts";
import { etcdTests, sharedCluster, whenAvailable as whenUp } from "./etcdtests.ts";
import { open, TxtDbError } from "txtdb";
import { EtcdClient } from "txtdb/internal";
import type { Database } from "txtdb";

const R = `[${runtime}] [etcd-attack]`;

/**
 * The code of the TxtDbError `fn` throws or rejects with, or "ok". A watcher it returns is
 * pulled once: an error there counts; one that waits for events is "ok" after a second.
 */
async function codeOf(fn: () => unknown): Promise<string> {
  try {
    const r = fn();
    if (typeof r === "object" && r !== null && typeof (r as { next?: unknown }).next === "function") {
      const it = r as AsyncIterator<unknown>;
      const waited = await Promise.race([it.next().then(() => false), sleep(1000).then(() => true)]);
      if (waited) await it.return?.();
    } else await r;
    return "ok";
  } catch (e) {
    if (e instanceof TxtDbError) return e.code;
    throw e;
  }
}

let stores = 0;

etcdTests(`${R} etcd attack`, () => {
  const one = sharedCluster(1);
  const location = async (what: string) => {
    const cluster = await one.get();
    return `etcd://${cluster.endpoints.map((e) => e.replace("http://", "")).join(",")}/attack-${what}-${runtime}-${Date.now()}-${++stores}`;
  };

  test(`${R} a member stopped with the test cluster's stop() answers nothing: stop() returns only once every thread of it has stopped`, async () => {
    // kill(SIGSTOP) returns before the process stops; a request sent at once was answered
    // now and then (the cause of a flaky TIMEOUT test). Busy members make the window wider.
    const cluster = await one.get();
    const url = cluster.endpoints[0]!;
    const put = (k: string) => fetch(`${url}/v3/kv/put`, { method: "POST", body: JSON.stringify({ key: btoa(k), value: btoa("v") }) }).then((r) => r.text());
    const answered: number[] = [];
    for (let i = 0; i < 60; i++) {
      await Promise.all([put("stop-a"), put("stop-b"), put("stop-c")]);
      await cluster.stop(0);
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), 150);
      try {
        await (await fetch(`${url}/v3/kv/range`, { method: "POST", body: JSON.stringify({ key: btoa("stop-a") }), signal: ac.signal })).text();
        answered.push(i);
      } catch { /* no answer: stopped */ } finally {
        clearTimeout(timer);
        await cluster.cont(0);
      }
    }
    assert.deepEqual(answered, [], "a stopped member answered these tries");
  });

  test(`${R} watch() checks its arguments as the local engine does: exactly one of keys and prefix, options an object (INVALID_ARGUMENT)`, async () => {
    const local = await open(tempDir("attack-watch"), { namespaces: ["ns"] });
    const etcd = await open(await location("watchargs"), { namespaces: ["ns"] });
    try {
      const bad: [string, (db: Database) => unknown][] = [
        ["keys and prefix", (db) => db.watch("ns", { keys: ["a"], prefix: [] } as never)],
        ["neither", (db) => db.watch("ns", {} as never)],
        ["options null", (db) => db.watch("ns", { prefix: [] }, null as never)],
        ["options a string", (db) => db.watch("ns", { prefix: [] }, "x" as never)],
        ["keys not an array", (db) => db.watch("ns", { keys: "a" } as never)],
        ["fromVersion a number", (db) => db.watch("ns", { prefix: [] }, { fromVersion: 1 as never })],
      ];
      for (const [what, call] of bad) {
        assert.equal(await codeOf(() => call(local)), "INVALID_ARGUMENT", `local: ${what}`);
        assert.equal(await codeOf(() => call(etcd)), "INVALID_ARGUMENT", `etcd: ${what}`);
      }
    } finally {
      await local.close();
      await etcd.close();
    }
  });

  test(`${R} watch() of no keys waits as on a directory (it does not end at once), and ends with NAMESPACE_NOT_FOUND when the namespace is dropped`, async () => {
    const local = await open(tempDir("attack-watch0"), { namespaces: ["ns"] });
    const etcd = await open(await location("watch0"), { namespaces: ["ns"] });
    try {
      for (const db of [local, etcd]) {
        const w = db.watch("ns", { keys: [] });
        const first = w.next();
        const early = await Promise.race([first.then((r) => (r.done ? "ended" : "event"), (e: unknown) => `error ${String(e)}`), sleep(300).then(() => "waiting")]);
        assert.equal(early, "waiting", `${db === local ? "local" : "etcd"}: a watch of no keys`);
        await db.set("ns", "k", 1);
        await db.dropNamespace("ns");
        await assert.rejects(first, (e: unknown) => e instanceof TxtDbError && e.code === "NAMESPACE_NOT_FOUND", db === local ? "local" : "etcd");
      }
    } finally {
      await local.close();
      await etcd.close();
    }
  });

  test(`${R} timeoutMs and a signal firing while the member is paused mid-transaction: TIMEOUT only when nothing was written, else the outcome that happened, and details.outcome says what is known`, async () => {
    const cluster = await one.get();
    const db = await open(await location("pause"), { namespaces: ["ns"], requestTimeoutMs: 1000 });
    const seen = new Map<string, number>();
    try {
      for (let i = 0; i < 12; i++) {
        const stop = new AbortController();
        // The member freezes at a different point each time: before begin(), during it,
        // during the read, or while the commit is on its way.
        const p = db.transaction(async (tx) => {
          const n = (await tx.get<number>("ns", "n")) ?? 0;
          tx.set("ns", ["k", i], n);
        }, { timeoutMs: 40 + (i % 4) * 10, ...(i % 2 === 0 ? { signal: stop.signal } : {}) });
        await sleep(i * 3);
        await cluster.stop(0);
        stop.abort();
        const outcome = await p.then(() => "committed", (e: unknown) => {
          if (!(e instanceof TxtDbError)) throw e;
          return e.code === "UNAVAILABLE" ? `UNAVAILABLE ${String(e.details?.outcome)}` : e.code;
        });
        await cluster.cont(0);
        seen.set(outcome, (seen.get(outcome) ?? 0) + 1);
        const written = (await whenUp(() => db.get("ns", ["k", i]))) !== undefined;
        if (outcome === "committed") assert.ok(written, `try ${i}: committed but not there`);
        else if (outcome === "TIMEOUT" || outcome === "UNAVAILABLE not-applied") assert.ok(!written, `try ${i}: ${outcome} but written`);
        else assert.equal(outcome, "UNAVAILABLE unknown", `try ${i}: unexpected outcome`);
      }
    } finally {
      await cluster.cont(0);
      await db.close();
    }
    assert.ok(seen.size > 0, JSON.stringify([...seen]));
  });

  test(`${R} a db.list() iterator dropped unfinished gives its pin back once collected, as a dropped snapshot does: compaction is not held below it for the process's life`, async (t) => {
    const gc = await collector();
    if (!gc) return t.skip("no way to run the garbage collector on this runtime");
    const db = await open(await location("leak"), { namespaces: ["ns"] });
    try {
      for (let i = 0; i < 3; i++) await db.set("ns", ["k", i], i);
      let listed = 0n;
      await (async () => {
        const it = db.list<number>("ns", { prefix: [] });
        listed = (await it.next()).value!.version; // read one entry, then drop the iterator
      })();
      for (let i = 0; i < 5; i++) await db.set("ns", ["later", i], i);
      const head = (await db.set("ns", "head", 1)).version;
      let compactedTo = 0n;
      for (let i = 0; i < 20 && compactedTo < head; i++) {
        await gc();
        await sleep(300); // the pin is raised after a release (batched, 200 ms)
        compactedTo = (await db.compact()).checkpointVersion;
      }
      assert.ok(compactedTo >= head, `compaction stayed at ${compactedTo}, below the dropped list's ${listed}..head ${head}`);
    } finally {
      await db.close();
    }
  });

  if (canSpawn) {
    test(`${R} namespaces created, dropped and renamed while written, from node, deno and bun processes at once: every name bound to its own id, no key left under an unbound id, check() clean`, async () => {
      const { RUNTIMES, startWorker, killAllWorkers } = await import("./procs.ts");
      const url = await location("ns");
      const cluster = await one.get();
      const db = await open(url, { namespaces: ["a", "b", "c", "d"] });
      const prefix = url.slice(url.lastIndexOf("/") + 1);
      const etcd = new EtcdClient({ endpoints: cluster.endpoints });
      try {
        const workers = RUNTIMES.map((rt, i) => startWorker(rt, "etcd-ns", ["churn", url, "120", String(i + 1)], { denoFlags: ["--allow-net"] }));
        const done = await Promise.all(workers.map((w) => w.waitFor("done ", 120_000)));
        const counts: Record<string, number> = {};
        for (const line of done) for (const [k, n] of Object.entries(JSON.parse(line.slice(5)) as Record<string, number>)) counts[k] = (counts[k] ?? 0) + n;
        for (const what of ["create ok", "drop ok", "rename ok", "set ok", "tx ok"]) assert.ok((counts[what] ?? 0) > 0, `no "${what}" in ${JSON.stringify(counts)}`);
        const results = await Promise.all(workers.map((w) => w.finish()));
        for (const [i, r] of results.entries()) assert.equal(r.code, 0, `${workers[i]!.runtime} exited ${r.code ?? r.signal}: ${workers[i]!.stderr}`);
        for (const w of workers) assert.deepEqual(w.lines.filter((l) => l.startsWith("bad ")), [], `${w.runtime}: unexpected errors`);
        const dec = new TextDecoder();
        const bound = await etcd.range(`${prefix}/n/`, { prefix: true });
        const ids = bound.kvs.map((kv) => Number(dec.decode(kv.value)));
        assert.equal(new Set(ids).size, ids.length, `two names share an id: ${bound.kvs.map((kv) => `${dec.decode(kv.key)}=${dec.decode(kv.value)}`).join(", ")}`);
        const data = await etcd.range(`${prefix}/d/`, { prefix: true, keysOnly: true });
        const orphans = data.kvs.map((kv) => dec.decode(kv.key)).filter((k) => !ids.includes(parseInt(k.slice(prefix.length + 3, prefix.length + 19), 16)));
        assert.deepEqual(orphans.slice(0, 5), [], `${orphans.length} keys under ids no name is bound to`);
        const report = await db.check();
        assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 3)));
      } finally {
        killAllWorkers();
        etcd.close();
        await db.close();
      }
    });
  }

  test(`${R} stop the cluster`, async () => {
    await one.stop();
  });
});

