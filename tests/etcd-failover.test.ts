/**
 * The etcd client against a real three-member cluster whose members die and freeze: the
 * leader SIGKILLed (reads and writes go on through the other members), a watch whose
 * member is SIGKILLed (it resumes on another from the next revision, nothing lost or
 * repeated), two members SIGSTOPped (no quorum: writes and reads fail with UNAVAILABLE
 * within requestTimeoutMs, and work again after SIGCONT).
 *
 * The tests share one cluster and run in order; each leaves all three members running.
 */
import { assert, runtime, sleep, test } from "./harness.ts";
import { etcdTests, failsWith, sharedCluster, str, uniquePrefix } from "./etcdtests.ts";
import { EtcdClient, TxtDbError } from "txtdb/internal";

const R = `[${runtime}]`;

etcdTests(`${R} etcd failover`, () => {
  const three = sharedCluster(3);

  test(`${R} the leader SIGKILLed: reads go on at once, writes go on through the other members`, async () => {
    const cluster = await three.get();
    const leader = await cluster.leader();
    // The dead leader first: every call meets a refused connection before a live member.
    const order = [leader, ...[0, 1, 2].filter((i) => i !== leader)];
    const c = new EtcdClient({ endpoints: order.map((i) => cluster.endpoints[i]!), requestTimeoutMs: 5000 });
    const p = uniquePrefix("leader");
    await c.put(`${p}before`, "1");
    await cluster.kill(leader);

    const read = await c.range(`${p}before`);
    assert.equal(str(read.kvs[0]!.value), "1", "a read right after the leader died");

    // A write during the election may be proposed to the dead leader and be of unknown
    // outcome; the client says so instead of resending, and a read tells.
    try {
      await c.put(`${p}during`, "1");
    } catch (e) {
      assert.ok(e instanceof TxtDbError && e.code === "UNAVAILABLE", String(e));
      assert.equal(e.details?.outcome, "unknown");
    }
    const newLeader = await cluster.leader();
    assert.notEqual(newLeader, leader);
    const after = await c.put(`${p}after`, "2");
    assert.ok(after.revision > read.revision);
    const all = await c.range(p, { prefix: true });
    assert.ok(all.kvs.some((kv) => str(kv.key) === `${p}after`));
    c.close();
    await cluster.restart(leader);
  });

  test(`${R} a watch whose member is SIGKILLed resumes on another member from the next revision: every event once, in order`, async () => {
    const cluster = await three.get();
    const leader = await cluster.leader();
    const victim = (leader + 1) % 3;
    const others = [0, 1, 2].filter((i) => i !== victim);
    // The watcher streams from the victim (its first endpoint); the writer never uses it.
    const watcher = new EtcdClient({ endpoints: [victim, ...others].map((i) => cluster.endpoints[i]!), requestTimeoutMs: 5000 });
    const writer = new EtcdClient({ endpoints: others.map((i) => cluster.endpoints[i]!), requestTimeoutMs: 5000 });
    const p = uniquePrefix("resume");
    const TOTAL = 30;
    const start = await writer.put(`${p}000`, "0");
    for (let i = 1; i < 10; i++) await writer.put(`${p}${String(i).padStart(3, "0")}`, String(i));
    const ac = new AbortController();
    const guard = setTimeout(() => ac.abort(), 30_000);
    const seen: string[] = [];
    const revisions: bigint[] = [];
    let killed: Promise<void> | undefined;
    let writing: Promise<void> | undefined;
    for await (const e of watcher.watch(p, { prefix: true, startRevision: start.revision, signal: ac.signal })) {
      if (e.type === "PROGRESS") continue;
      seen.push(str(e.kv.key).slice(p.length));
      revisions.push(e.revision);
      if (seen.length === 5) {
        killed = cluster.kill(victim);
        await killed;
        // Written while the watch has no stream: it must pick them up from where it was.
        writing = (async () => {
          for (let i = 10; i < TOTAL; i++) await writer.put(`${p}${String(i).padStart(3, "0")}`, String(i));
        })();
      }
      if (seen.length === TOTAL) break;
    }
    clearTimeout(guard);
    await writing;
    assert.deepEqual(seen, Array.from({ length: TOTAL }, (_, i) => String(i).padStart(3, "0")));
    for (let i = 1; i < revisions.length; i++) assert.ok(revisions[i]! > revisions[i - 1]!, "strictly increasing revisions");
    watcher.close();
    writer.close();
    await cluster.restart(victim);
  });

  test(`${R} two of three members SIGSTOPped: writes and reads fail with UNAVAILABLE within requestTimeoutMs, and work again after SIGCONT`, async () => {
    const cluster = await three.get();
    const leader = await cluster.leader();
    const frozen = [leader, (leader + 1) % 3];
    const alive = (leader + 2) % 3;
    const TIMEOUT_MS = 2000;
    const MARGIN_MS = 2000; // a loaded machine's scheduling, not the client's
    const c = new EtcdClient({ endpoints: cluster.endpoints, requestTimeoutMs: TIMEOUT_MS });
    const p = uniquePrefix("quorum");
    await c.put(`${p}k`, "before");
    for (const i of frozen) cluster.stop(i);
    try {
      const write = await failsWith("UNAVAILABLE", () => c.put(`${p}k`, "during"));
      assert.ok(write.ms < TIMEOUT_MS + MARGIN_MS, `the write returned after ${write.ms} ms`);
      assert.match(write.error.message, /did not serve \/v3\/kv\/put/);
      const read = await failsWith("UNAVAILABLE", () => c.range(`${p}k`));
      assert.ok(read.ms < TIMEOUT_MS + MARGIN_MS, `the read returned after ${read.ms} ms`);
      // A serializable read needs no quorum: the member still running answers it alone.
      const local = new EtcdClient({ endpoints: [cluster.endpoints[alive]!], requestTimeoutMs: TIMEOUT_MS });
      assert.equal((await local.range(`${p}k`, { serializable: true })).count, 1);
      local.close();
    } finally {
      for (const i of frozen) cluster.cont(i);
    }
    await cluster.leader();
    // Back to quorum: a write works again (the first tries may still meet the election).
    const t0 = performance.now();
    for (;;) {
      try {
        await c.put(`${p}k`, "after");
        break;
      } catch (e) {
        assert.ok(e instanceof TxtDbError && e.code === "UNAVAILABLE", String(e));
        assert.ok(performance.now() - t0 < 20_000, `no write succeeded within 20 s of SIGCONT: ${String(e)}`);
        await sleep(200);
      }
    }
    const value = str((await c.range(`${p}k`)).kvs[0]!.value);
    // "during" was sent to etcd and may have been applied once the members came back.
    assert.equal(value, "after");
    c.close();
  });

  test(`${R} stop the three-member cluster`, async () => {
    await three.stop();
  });
});
