/**
 * The engine across real processes of mixed runtimes (Node + Deno + Bun on one
 * directory): hot counters, bank transfers, write skew, namespace renames racing
 * writers, and SIGKILL of a process holding the writer lock mid-append or before fsync.
 * Run from the Node and Bun legs; Deno workers get only --allow-read --allow-write.
 */
import { afterEach, assert, canSpawn, runtime, tempDir, test } from "./harness.ts";
import { defaultPlatform, open, PortError, TxtDbError } from "txtdb";
import { withFaults } from "txtdb/adapters/faults";

if (canSpawn) {
  const { RUNTIMES, startWorker, killAllWorkers } = await import("./procs.ts");
  type Runtime = (typeof RUNTIMES)[number];
  afterEach(() => killAllWorkers());
  const R = `[${runtime}]`;

  async function runAll(specs: [Runtime, string[]][]): Promise<Record<string, unknown>[]> {
    const workers = specs.map(([rt, a]) => startWorker(rt, "dbworker", a));
    const lines = await Promise.all(workers.map((w) => w.waitFor("done ", 120_000)));
    const exits = await Promise.all(workers.map((w) => w.exited));
    exits.forEach((x, i) => assert.equal(x.code, 0, `${workers[i]!.runtime} worker exited ${x.code}: ${workers[i]!.stderr}`));
    const results = lines.map((l) => JSON.parse(l.slice(5)) as Record<string, unknown>);
    results.forEach((r, i) => assert.equal(r.runtime, specs[i]![0], "worker ran on the runtime asked for"));
    return results;
  }

  for (const isolation of ["serializable", "snapshot"] as const) {
    for (const style of ["rmw", "sum"] as const) {
      test(`${R} a hot counter incremented by Node, Deno and Bun processes ends exactly right (${isolation}, ${style})`, async () => {
        const dir = tempDir("hot");
        (await open(dir, { namespaces: ["ns"] })).close();
        const n = 60;
        const results = await runAll(RUNTIMES.map((rt) => [rt, ["counter", dir, String(n), isolation, style]]));
        const db = await open(dir);
        assert.equal(await db.get("ns", "hot"), 3 * n, `lost updates: ${JSON.stringify(results)}`);
        await db.close();
      });
    }
  }

  test(`${R} six Node, Deno and Bun processes opening one new directory at once all open it, and their commits all count`, async () => {
    for (let round = 0; round < 3; round++) {
      const dir = `${tempDir("create")}/store`; // does not exist yet: every process races to create it
      const n = 10;
      const specs = [...RUNTIMES, ...RUNTIMES].map((rt) => [rt, ["counter", dir, String(n), "serializable", "sum"]] as [Runtime, string[]]);
      await runAll(specs);
      const db = await open(dir);
      assert.equal(await db.get("ns", "hot"), specs.length * n, `round ${round}`);
      assert.ok((await db.check()).ok);
      await db.close();
    }
  });

  test(`${R} bank transfers among accounts from 4 mixed-runtime processes keep the total`, async () => {
    const dir = tempDir("bank");
    const accounts = 10;
    const db = await open(dir, { namespaces: ["ns"] });
    await db.transaction((tx) => { for (let i = 0; i < accounts; i++) tx.set("ns", ["acct", i], 100); });
    await runAll([["node", ["bank", dir, "60", String(accounts)]], ["deno", ["bank", dir, "60", String(accounts)]], ["bun", ["bank", dir, "60", String(accounts)]], ["node", ["bank", dir, "60", String(accounts)]]]);
    let total = 0;
    for await (const e of db.list<number>("ns", { prefix: ["acct"] })) {
      assert.ok(e.value >= 0, "no account went negative");
      total += e.value;
    }
    assert.equal(total, accounts * 100, "money was created or destroyed");
    assert.ok(((await db.get<number>("ns", "transfers")) ?? 0) > 0);
    await db.close();
  });

  for (const isolation of ["serializable", "snapshot"] as const) {
    test(`${R} write skew across processes (Deno vs Bun): ${isolation === "serializable" ? "prevented under serializable" : "allowed under snapshot"}`, async () => {
      const dir = tempDir("skew");
      const db = await open(dir, { namespaces: ["ns"] });
      await db.set("ns", "alice", true);
      await db.set("ns", "bob", true);
      const a = startWorker("deno", "dbworker", ["skew", dir, isolation, "alice", "bob"]);
      const b = startWorker("bun", "dbworker", ["skew", dir, isolation, "bob", "alice"]);
      await Promise.all([a.waitFor("read"), b.waitFor("read")]);
      a.send("go");
      const first = await a.waitFor("outcome");
      b.send("go");
      const second = await b.waitFor("outcome");
      await Promise.all([a.finish(), b.finish()]);
      assert.equal(first, "outcome committed");
      assert.equal(second, isolation === "serializable" ? "outcome CONFLICT" : "outcome committed");
      const onCall = [await db.get("ns", "alice"), await db.get("ns", "bob")].filter(Boolean).length;
      assert.equal(onCall, isolation === "serializable" ? 1 : 0);
      await db.close();
    });
  }

  test(`${R} a namespace renamed back and forth by one process while three runtimes write into it loses nothing`, async () => {
    const dir = tempDir("ren");
    (await open(dir, { namespaces: ["a"] })).close();
    const n = 40;
    await runAll([
      ["node", ["renamer", dir, "30", "a", "b"]],
      ["node", ["writer", dir, String(n), "a", "n"]],
      ["deno", ["writer", dir, String(n), "a", "d"]],
      ["bun", ["writer", dir, String(n), "a", "b"]],
    ]);
    const db = await open(dir);
    assert.deepEqual(await db.listNamespaces(), ["a", "ns"], "an even number of renames ends at the start");
    let count = 0;
    for await (const _ of db.list("a", { prefix: ["w"] })) count++;
    assert.equal(count, 3 * n, "every acknowledged write is in the namespace");
    await db.close();
  });

  for (const [victim, survivor, point] of [["bun", "deno", "beforeFsync"], ["deno", "node", "midAppend"], ["node", "bun", "beforeFsync"], ["bun", "node", "midAppend"]] as const) {
    test(`${R} SIGKILL of a ${victim} process holding the writer lock (${point}): a ${survivor} writer goes on within a second, nothing acknowledged is lost, the tail is repaired`, async () => {
      const dir = tempDir("kill");
      (await open(dir, { namespaces: ["ns"] })).close();
      const writer = startWorker(survivor, "dbworker", ["ackloop", dir, "s"]);
      await writer.waitFor("ack 5");
      const pauser = startWorker(victim, "dbworker", ["pause", dir, point]);
      await pauser.waitFor("paused");
      const acksBefore = writer.lines.filter((l) => l.startsWith("ack")).length;
      await new Promise((r) => setTimeout(r, 150));
      const acksWhilePaused = writer.lines.filter((l) => l.startsWith("ack")).length;
      if (point === "midAppend") assert.ok(acksWhilePaused - acksBefore <= 1, "the paused process holds the writer lock");
      // Between append and sync a process holds no lock: the others append behind it.
      else assert.ok(acksWhilePaused - acksBefore >= 2, `a process stopped before its sync held up the others (${acksWhilePaused - acksBefore} acks in 150 ms)`);
      pauser.kill9();
      const killedAt = performance.now();
      await pauser.exited;
      await writer.waitFor(`ack ${acksWhilePaused + 3}`, 1000);
      const resumedMs = performance.now() - killedAt;
      assert.ok(resumedMs < 1000, `survivor resumed after ${resumedMs} ms`);
      writer.kill9();
      await writer.exited;
      const acked = writer.lines.filter((l) => l.startsWith("ack ")).map((l) => Number(l.slice(4)));
      const db = await open(dir);
      for (const i of acked) assert.equal(await db.get("ns", ["ack", "s", i]), i, `acknowledged commit ${i} lost`);
      let paused = 0;
      for await (const _ of db.list("ns", { prefix: ["paused"] })) paused++;
      assert.ok(paused % 20 === 0, `a killed process's transaction was applied partly (${paused} keys, not a multiple of 20)`);
      await db.set("ns", "after", 1);
      await db.close();
    });
  }
}

if (canSpawn) {
  const { startWorker } = await import("./procs.ts");
  // The anomaly: a transaction that lost to a commit appended but not yet durable reran at
  // once, read the state before that commit (readers never pass the durable frontier), and
  // lost again; when the writer never synced (killed, or stopped, between its append and its
  // sync) it lost until its retries ran out, and so did every transaction on those keys
  // while no other commit came to sync them.
  for (const [victim, how] of [["node", "killed"], ["bun", "stopped"], ["deno", "killed"]] as const) {
    test(`[${runtime}] a transaction that lost to the commit of a ${victim} process ${how} between its append and its sync makes that commit durable and commits on its first rerun, instead of failing with CONFLICT`, async () => {
      const dir = tempDir("lost-to-unsynced");
      // Open first: a writable open syncs a dead writer's records itself.
      const db = await open(dir, { namespaces: ["ns"] });
      await db.set("ns", "before", 1);
      const pauser = startWorker(victim, "dbworker", ["pause", dir, "beforeFsync"]);
      await pauser.waitFor("paused", 30_000);
      if (how === "killed") {
        pauser.kill9();
        await pauser.exited;
      }
      const key = ["paused", "p", 0, 0];
      assert.equal(await db.get("ns", key), undefined, "the commit is not visible before it is durable");
      let runs = 0;
      const seen: (string | undefined)[] = [];
      await db.transaction(async (tx) => {
        runs++;
        const v = await tx.get<string>("ns", key);
        seen.push(v);
        tx.set("ns", key, `${v ?? ""}!`);
      }, { maxRetries: 10 });
      assert.equal(runs, 2, `one conflict, then a rerun on the commit it lost to (runs: ${runs}, read: ${seen.map((v) => v?.length).join(", ")})`);
      assert.equal(seen[0], undefined);
      assert.equal(seen[1], "x".repeat(100), "the rerun read the commit it lost to");
      assert.equal(await db.get("ns", key), `${"x".repeat(100)}!`);
      assert.equal(await db.get("ns", ["paused", "p", 0, 19]), "x".repeat(100), "the whole commit it lost to is visible");
      if (how === "stopped") {
        pauser.kill9();
        await pauser.exited;
      }
      await db.close();
      const again = await open(dir);
      assert.equal(await again.get("ns", key), `${"x".repeat(100)}!`, "durable");
      assert.equal((await again.check()).ok, true);
      await again.close();
    });
  }

  test(`[${runtime}] a failed sync of the records a transaction lost to (their writer killed before its own sync) marks the failure: that commit never appears, the transaction fails, and the store goes on after a reopen`, async () => {
    const dir = tempDir("lost-to-unsynced-eio");
    let failSyncs = false;
    const faulty = withFaults(await defaultPlatform(), (step, path) => {
      if (failSyncs && step === "beforeFsync" && path.endsWith(".log")) throw new PortError("EIO", "fdatasync", path);
    });
    const db = await open(dir, { namespaces: ["ns"], adapter: faulty });
    await db.set("ns", "before", 1);
    const pauser = startWorker("node", "dbworker", ["pause", dir, "beforeFsync"]);
    await pauser.waitFor("paused", 30_000);
    pauser.kill9();
    await pauser.exited;
    const key = ["paused", "p", 0, 0];
    failSyncs = true;
    let runs = 0;
    const failure = await db.transaction(async (tx) => {
      runs++;
      tx.set("ns", key, `${(await tx.get<string>("ns", key)) ?? ""}!`);
    }, { maxRetries: 3 }).then(() => undefined, (e: unknown) => e);
    assert.ok(failure instanceof TxtDbError && (failure.code === "IO" || failure.code === "CONFLICT"), `the transaction fails (${String(failure)})`);
    assert.ok(runs <= 2, `no rerun on a store whose sync failed (${runs} runs)`);
    await assert.rejects(db.set("ns", "later", 1), (e: unknown) => e instanceof TxtDbError && e.code === "IO", "commits are refused until a reopen verifies the tail");
    await db.close();
    const again = await open(dir);
    assert.equal(await again.get("ns", key), undefined, "the commit whose sync failed never appears");
    assert.equal(await again.get("ns", "before"), 1);
    assert.equal((await again.check()).ok, true);
    await again.set("ns", "after", 1);
    await again.close();
  });
}

if (canSpawn) {
  const { RUNTIMES, startWorker } = await import("./procs.ts");
  test(`[${runtime}] kill -9 of Node, Deno and Bun processes stopped between append and sync: a writer goes on meanwhile, nothing acknowledged is lost, no transaction is applied partly`, async () => {
    const dir = tempDir("kill-unsynced");
    (await open(dir, { namespaces: ["ns"] })).close();
    const writer = startWorker("node", "dbworker", ["ackloop", dir, "s"]);
    await writer.waitFor("ack 3");
    const victims = RUNTIMES.map((rt) => startWorker(rt, "dbworker", ["pause", dir, "beforeFsync", rt]));
    await Promise.all(victims.map((v) => v.waitFor("paused", 30_000)));
    // All three have appended and stopped before their sync: none holds the writer lock.
    const before = writer.lines.filter((l) => l.startsWith("ack ")).length;
    await writer.waitFor(`ack ${before + 3}`, 5000);
    for (const v of victims) v.kill9();
    await Promise.all(victims.map((v) => v.exited));
    const after = writer.lines.filter((l) => l.startsWith("ack ")).length;
    await writer.waitFor(`ack ${after + 3}`, 5000);
    writer.kill9();
    await writer.exited;
    const acked = writer.lines.filter((l) => l.startsWith("ack ")).map((l) => Number(l.slice(4)));
    const db = await open(dir);
    for (const i of acked) assert.equal(await db.get("ns", ["ack", "s", i]), i, `acknowledged commit ${i} lost`);
    for (const rt of RUNTIMES) {
      const perAttempt = new Map<number, number>();
      for await (const e of db.list("ns", { prefix: ["paused", rt] })) {
        const attempt = (e.key as [string, string, number, number])[2];
        perAttempt.set(attempt, (perAttempt.get(attempt) ?? 0) + 1);
      }
      for (const [attempt, n] of perAttempt) assert.equal(n, 20, `${rt}'s transaction ${attempt} was applied partly (${n} of 20 keys)`);
    }
    assert.equal((await db.check()).ok, true, "the store checks clean");
    await db.set("ns", "after", 1);
    await db.close();
  });

  test(`[${runtime}] watch: commits from Node, Deno and Bun writers under steady load reach this process in order, none missed`, async () => {
    const dir = tempDir("watchmp");
    const db = await open(dir, { namespaces: ["ns"] });
    const it = db.watch("ns", { prefix: ["ack"] });
    const workers = RUNTIMES.map((rt) => startWorker(rt, "dbworker", ["ackloop", dir, rt]));
    await Promise.all(workers.map((w) => w.waitFor("ack 30", 30_000)));
    for (const w of workers) w.kill9();
    await Promise.all(workers.map((w) => w.exited));
    const acked = workers.map((w) => w.lines.filter((l) => l.startsWith("ack ")).length);
    const seen = new Map<string, number>();
    // Stop once every acknowledged commit was seen. Counting events would stop early: a
    // killed writer's commit that another process's sync made durable (rule 3 in tail.ts)
    // appears without ever having been acknowledged.
    const allSeen = () => RUNTIMES.every((rt, i) => (seen.get(rt) ?? 0) >= acked[i]!);
    let last = 0n;
    const stop = setTimeout(() => void it.return?.(), 10_000);
    for await (const e of it) {
      assert.ok(e.version > last, "versions strictly increase");
      last = e.version;
      for (const c of e.changes) {
        const [, rt, i] = c.key as [string, string, number];
        assert.equal(i, seen.get(rt) ?? 0, `${rt}'s commits arrive in order, none skipped`);
        seen.set(rt, i + 1);
      }
      if (allSeen()) break;
    }
    clearTimeout(stop);
    for (const [i, rt] of RUNTIMES.entries()) assert.ok((seen.get(rt) ?? 0) >= acked[i]!, `${rt}: saw ${seen.get(rt)} of ${acked[i]} acknowledged`);
    await db.close();
  });
}

if (canSpawn) {
  const { startWorker } = await import("./procs.ts");
  for (const victim of ["deno", "bun", "node"] as const) {
    test(`[${runtime}] a ${victim} process's snapshot holds compaction back while it lives, reads its version, and its pin is reclaimed after SIGKILL`, async () => {
      const dir = tempDir("pin");
      const db = await open(dir, { namespaces: ["ns"], segmentBytes: 1024, autoCompactBytes: 0 });
      await db.set("ns", "k", "old");
      const w = startWorker(victim, "dbworker", ["snapshot", dir]);
      const pinned = BigInt((await w.waitFor("pinned ")).slice(7));
      for (let i = 0; i < 100; i++) await db.set("ns", "k", "new-" + i);
      const held = await db.compact();
      assert.equal(held.minPinnedVersion, pinned, "compaction honours the other process's pin");
      w.send("read");
      assert.equal(await w.waitFor("value "), 'value "old"', "the pinned snapshot still reads its version after compaction");
      w.kill9();
      await w.exited;
      const after = await db.compact();
      assert.ok(after.leasesReclaimed >= 1, "the dead process's lease was reclaimed");
      assert.ok(after.minPinnedVersion > pinned);
      assert.ok(after.segmentsFolded > 0);
      assert.equal(db.processes().length, 1);
      await db.close();
    });
  }
}

if (canSpawn) {
  const { startWorker } = await import("./procs.ts");
  test(`[${runtime}] watch: Deno and Bun watcher processes see a Node writer's and each other's runtimes' commits in order`, async () => {
    const dir = tempDir("watch3");
    (await open(dir, { namespaces: ["ns"] })).close();
    const watchers = [startWorker("deno", "dbworker", ["watchcount", dir, "40"]), startWorker("bun", "dbworker", ["watchcount", dir, "40"]), startWorker("node", "dbworker", ["watchcount", dir, "40"])];
    await Promise.all(watchers.map((w) => w.waitFor("watching")));
    const writers = [startWorker("node", "dbworker", ["ackloop", dir, "n"]), startWorker("bun", "dbworker", ["ackloop", dir, "b"]), startWorker("deno", "dbworker", ["ackloop", dir, "d"])];
    const lines = await Promise.all(watchers.map((w) => w.waitFor("watched", 30_000)));
    for (const w of writers) w.kill9();
    for (const l of lines) assert.match(l, /^watched \d+ in order$/);
  });
}
