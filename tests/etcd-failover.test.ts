/**
 * The etcd client against a real three-member cluster whose members die and freeze: the
 * leader SIGKILLed (reads and writes go on through the other members), a watch whose
 * member is SIGKILLed (it resumes on another from the next revision, nothing lost or
 * repeated), two members SIGSTOPped (no quorum: writes, reads and watches fail with
 * UNAVAILABLE within requestTimeoutMs, a write the member without a leader refused is
 * reported not applied, and all works again after SIGCONT).
 *
 * The tests share one cluster and run in order; each leaves all three members running.
 */
import { assert, runtime, sleep, test } from "./harness.ts";
import { etcdTests, failsWith, sharedCluster, str, uniquePrefix } from "./etcdtests.ts";
import { EtcdClient, TxtDbError } from "txtdb/internal";
import { open } from "txtdb";

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

  test(`${R} a public watch() whose only member dies fails with UNAVAILABLE, and watching again from its details.resumeFrom (exclusive, as fromVersion) misses no commit (it said etcd's next revision, and a commit was skipped)`, async () => {
    const cluster = await three.get();
    const leader = await cluster.leader();
    const victim = (leader + 1) % 3;
    const others = [0, 1, 2].filter((i) => i !== victim);
    const host = (i: number) => cluster.endpoints[i]!.replace("http://", "");
    const path = `failover-watch-${runtime}-${Date.now()}`;
    const writer = await open(`etcd://${others.map(host).join(",")}/${path}`, { namespaces: ["ns"] });
    const watching = await open(`etcd://${host(victim)}/${path}`, { requestTimeoutMs: 1500 });
    const events = watching.watch("ns", { prefix: [] });
    const { version: v1 } = await writer.set("ns", "a", 1);
    assert.equal((await events.next()).value?.version, v1);
    await cluster.kill(victim);
    try {
      const { version: v2 } = await writer.set("ns", "b", 2);
      const { version: v3 } = await writer.set("ns", "c", 3);
      const err = await events.next().then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof TxtDbError && err.code === "UNAVAILABLE", String(err));
      assert.equal(err.details?.resumeFrom, v1, "the version of the last event delivered");
      const again = writer.watch("ns", { prefix: [] }, { fromVersion: err.details!.resumeFrom as bigint });
      assert.equal((await again.next()).value?.version, v2, "the first commit after the last event delivered");
      assert.equal((await again.next()).value?.version, v3);
      await again.return!();
    } finally {
      await watching.close().catch(() => {});
      await writer.close();
      await cluster.restart(victim);
    }
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

  test(`${R} two of three members SIGSTOPped: writes, reads and watches fail with UNAVAILABLE within requestTimeoutMs, and work again after SIGCONT`, async () => {
    const cluster = await three.get();
    const leader = await cluster.leader();
    const frozen = [leader, (leader + 1) % 3];
    const alive = (leader + 2) % 3;
    const TIMEOUT_MS = 2000;
    const MARGIN_MS = 2000; // a loaded machine's scheduling, not the client's
    const c = new EtcdClient({ endpoints: cluster.endpoints, requestTimeoutMs: TIMEOUT_MS });
    // Only the member left running: it answers, and says it has no leader.
    const lone = new EtcdClient({ endpoints: [cluster.endpoints[alive]!], requestTimeoutMs: TIMEOUT_MS });
    const p = uniquePrefix("quorum");
    const { revision } = await c.put(`${p}k`, "before");
    // A watch streaming from the member left running: etcd cancels it once that member has
    // had no leader for a few election timeouts, and no member can take it over.
    const watching = (async () => {
      const t0 = performance.now();
      try {
        for await (const _ of lone.watch(`${p}k`, { startRevision: revision + 1n })) assert.fail("no event expected");
      } catch (e) {
        return { error: e, ms: performance.now() - t0 };
      }
      return { error: undefined, ms: performance.now() - t0 };
    })();
    for (const i of frozen) await cluster.stop(i);
    try {
      const write = await failsWith("UNAVAILABLE", () => c.put(`${p}k`, "during"));
      assert.ok(write.ms < TIMEOUT_MS + MARGIN_MS, `the write returned after ${write.ms} ms`);
      assert.match(write.error.message, /did not serve \/v3\/kv\/put/);
      const read = await failsWith("UNAVAILABLE", () => c.range(`${p}k`));
      assert.ok(read.ms < TIMEOUT_MS + MARGIN_MS, `the read returned after ${read.ms} ms`);

      // Once the running member knows it has no leader, it refuses a write before raft sees
      // it: the client reports it certainly not applied, and at once.
      await cluster.waitNoLeader(alive);
      const refused = await failsWith("UNAVAILABLE", () => lone.put(`${p}k`, "refused"));
      assert.equal(refused.error.details?.outcome, "not-applied");
      assert.match(refused.error.message, /no leader/);
      assert.ok(refused.ms < TIMEOUT_MS + MARGIN_MS, `the refused write returned after ${refused.ms} ms`);
      // A serializable read needs no quorum: that member answers it alone.
      assert.equal(str((await lone.range(`${p}k`, { serializable: true })).kvs[0]!.value), "before");

      const watched = await watching;
      assert.ok(watched.error instanceof TxtDbError && watched.error.code === "UNAVAILABLE", String(watched.error));
      assert.equal(watched.error.details?.resumeFrom, revision + 1n, "the error says where to watch from again");
      assert.ok(watched.ms < 15_000, `the watch failed after ${watched.ms} ms`);
    } finally {
      for (const i of frozen) await cluster.cont(i);
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
    assert.equal(str((await c.range(`${p}k`)).kvs[0]!.value), "after");
    c.close();
    lone.close();
  });

  test(`${R} stop the three-member cluster`, async () => {
    await three.stop();
  });
});
