/**
 * The etcd engine across real processes of all three runtimes on one etcd cluster: hot
 * counters (serializable read-modify-write, and sum()) and bank transfers with audits.
 * Invariants: no lost update (the counters are exact), sums never conflict, money is
 * conserved in every snapshot any process audits and at the end.
 *
 * Workers are started from the Node and Bun legs (the Deno leg does not spawn); a Deno
 * worker takes part in each run.
 */
import { afterEach, assert, canSpawn, runtime, test } from "./harness.ts";
import { etcdTests, sharedCluster } from "./etcdtests.ts";
import { decodeValue, encodeKey, encodeValue, EtcdEngine, prefixRange } from "txtdb/internal";

const R = `[${runtime}]`;

if (canSpawn) {
  const { RUNTIMES, startWorker, killAllWorkers } = await import("./procs.ts");
  afterEach(() => killAllWorkers());

  etcdTests(`${R} etcd engine, multi-process`, () => {
    const one = sharedCluster(1);
    const net = { denoFlags: ["--allow-net"] };

    test(`${R} hot counters and bank transfers from node, deno and bun processes: exact counts, money conserved in every audit`, async () => {
      const cluster = await one.get();
      const url = `etcd://${cluster.endpoints.map((e) => e.replace("http://", "")).join(",")}/mp-${runtime}`;
      const engine = await EtcdEngine.open(url);
      await engine.createNamespace("c");
      await engine.createNamespace("b");
      const accounts = 6;
      const setup = await engine.begin();
      for (let i = 0; i < accounts; i++) setup.set("b", encodeKey(["acct", i]), encodeValue(100));
      await setup.commit();
      const n = 40;
      const workers = RUNTIMES.flatMap((rt) => [
        startWorker(rt, "etcd-engine", ["counter", url, String(n)], net),
        startWorker(rt, "etcd-engine", ["bank", url, String(n), String(accounts)], net),
      ]);
      const done = await Promise.all(workers.map((w) => w.waitFor("done ", 60_000)));
      const results = await Promise.all(workers.map((w) => w.finish()));
      for (const [i, r] of results.entries()) assert.equal(r.code, 0, `worker ${workers[i]!.runtime} exited ${r.code ?? r.signal}: ${workers[i]!.stderr}`);
      for (const w of workers) assert.deepEqual(w.lines.filter((l) => l.startsWith("bad ")), [], `${w.runtime} audited a wrong total`);
      const reader = engine.reader();
      assert.equal(decodeValue((await reader.get("c", encodeKey("hot")))!.value), RUNTIMES.length * n, "no lost update");
      assert.equal(decodeValue((await reader.get("c", encodeKey("sum")))!.value), RUNTIMES.length * n, "every sum counted once");
      const [lo, hi] = prefixRange(["acct"]);
      let total = 0;
      for await (const e of reader.range("b", lo, hi)) {
        const balance = decodeValue(e.value) as number;
        assert.ok(balance >= 0, "no account below 0");
        total += balance;
      }
      assert.equal(total, accounts * 100, "money conserved");
      const conflicts = done.reduce((sum, line) => sum + (JSON.parse(line.slice(5)) as { conflicts: number }).conflicts, 0);
      assert.ok(conflicts > 0, "the processes did contend");
      await engine.close();
    });

    test(`${R} stop the cluster`, async () => {
      await one.stop();
    });
  });
}
