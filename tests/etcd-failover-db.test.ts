/**
 * `open("etcd://…")` on a 3-member cluster through the public API, under failures:
 * - SIGKILL of the leader under load: no acknowledged commit is lost, none applied twice;
 *   the longest stall (the gap between acknowledged commits) is printed;
 * - SIGSTOP of two members: writes and reads fail with UNAVAILABLE within
 *   requestTimeoutMs (nothing hangs), and work again after SIGCONT with nothing lost.
 */
import { assert, runtime, sleep, test } from "./harness.ts";
import { etcdTests, sharedCluster, whenAvailable } from "./etcdtests.ts";
import { open, TxtDbError } from "txtdb";
import { FENCE_ATTEMPTS_MAX } from "txtdb/internal";
import type { Database } from "txtdb";

const R = `[${runtime}] [etcd]`;

etcdTests(`${R} failover through the public API`, () => {
  const three = sharedCluster(3);
  const location = async (what: string) => {
    const cluster = await three.get();
    return `etcd://${cluster.endpoints.map((e) => e.replace("http://", "")).join(",")}/${what}-${runtime}-${Date.now()}`;
  };

  test(`${R} SIGKILL of the leader under load from 3 handles: every acknowledged commit is there, none twice; the stall is bounded`, async () => {
    const cluster = await three.get();
    const url = await location("kill");
    const dbs: Database[] = [];
    for (let i = 0; i < 3; i++) dbs.push(await open(url, { namespaces: ["f"], requestTimeoutMs: 3000 }));
    let stop = false;
    let ok = 0, unknown = 0, notApplied = 0, increments = 0;
    let lastAck = performance.now(), stall = 0;
    const ack = () => {
      const now = performance.now();
      stall = Math.max(stall, now - lastAck);
      lastAck = now;
    };
    const loop = async (db: Database, i: number) => {
      while (!stop) {
        try {
          if (i === 0) {
            // A serializable read-modify-write: retried on CONFLICT by db.transaction().
            await db.transaction(async (tx) => tx.set("f", "rmw", ((await tx.get<number>("f", "rmw")) ?? 0) + 1), { maxRetries: 100 });
            increments++;
          } else {
            const tx = await db.begin();
            tx.sum("f", "n", 1);
            await tx.commit();
            ok++;
          }
          ack();
        } catch (err) {
          if (!(err instanceof TxtDbError) || err.code !== "UNAVAILABLE") throw err;
          if ((err.details as { outcome?: string } | undefined)?.outcome === "unknown") unknown++;
          else notApplied++;
          await sleep(50);
        }
      }
    };
    try {
      const loops = dbs.map(loop);
      await sleep(500);
      const leader = await cluster.leader();
      lastAck = performance.now();
      stall = 0;
      await cluster.kill(leader);
      await sleep(2000);
      const stallAfterKill = stall;
      await cluster.restart(leader);
      await sleep(500);
      stop = true;
      await Promise.all(loops);
      const n = (await dbs[0]!.get<number>("f", "n")) ?? 0;
      const rmw = (await dbs[0]!.get<number>("f", "rmw")) ?? 0;
      const seen = JSON.stringify({ n, ok, unknown, notApplied, rmw, increments, stallMs: Math.round(stallAfterKill) });
      console.log(`${R} leader kill: ${seen}`);
      assert.ok(ok > 0 && increments > 0, seen);
      assert.ok(n >= ok && n <= ok + unknown, `the sums are the commits acknowledged, plus at most those of unknown outcome: ${seen}`);
      assert.ok(rmw >= increments, `no acknowledged increment lost: ${seen}`);
      assert.ok(stallAfterKill < 10_000, `commits went on within 10 s of the leader's kill: ${seen}`);
    } finally {
      stop = true;
      await Promise.all(dbs.map((db) => db.close().catch(() => {})));
    }
  });

  test(`${R} SIGSTOP of two members: reads fail with UNAVAILABLE within requestTimeoutMs, commits within the bound of an unknown outcome; after SIGCONT they work and nothing is lost`, async () => {
    const cluster = await three.get();
    const url = await location("stop");
    const TIMEOUT_MS = 2000;
    const MARGIN_MS = 2000; // a loaded machine's scheduling, not the client's
    await using db = await open(url, { namespaces: ["s"], requestTimeoutMs: TIMEOUT_MS });
    await db.set("s", "k", "before");
    const leader = await cluster.leader();
    const frozen = [leader, (leader + 1) % 3];
    for (const i of frozen) await cluster.stop(i);
    try {
      // A read fails within requestTimeoutMs. A commit whose request reached a member may
      // have landed: learning its outcome takes up to FENCE_ATTEMPTS_MAX more requests (the
      // README's bound: (1 + 3) × requestTimeoutMs).
      const COMMIT_BOUND_MS = (1 + FENCE_ATTEMPTS_MAX) * TIMEOUT_MS;
      for (const [what, call, bound] of [["set", () => db.set("s", "k", "during"), COMMIT_BOUND_MS], ["get", () => db.get("s", "k"), TIMEOUT_MS], ["transaction", () => db.transaction((tx) => tx.set("s", "t", 1)), COMMIT_BOUND_MS]] as const) {
        const t0 = performance.now();
        await assert.rejects(call(), (e: unknown) => e instanceof TxtDbError && e.code === "UNAVAILABLE", what);
        const ms = performance.now() - t0;
        assert.ok(ms < bound + MARGIN_MS, `${what} failed after ${Math.round(ms)} ms`);
      }
    } finally {
      for (const i of frozen) await cluster.cont(i);
    }
    await cluster.leader();
    // The write of unknown outcome ("during") may have landed or not; nothing else changed.
    await whenAvailable(() => db.set("s", "after", 1), 200);
    assert.ok(["before", "during"].includes((await db.get<string>("s", "k"))!));
    assert.equal(await db.get("s", "after"), 1);
  });

  test(`${R} stop the cluster`, async () => {
    await three.stop();
  });
});
