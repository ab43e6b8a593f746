/**
 * The same calls on a directory and on etcd give the same results: differences found by
 * running one sequence of calls against both and comparing, each fixed on the etcd side.
 * Each test checks the etcd backend against what the local engine does (and, where cheap,
 * runs the local engine beside it).
 *
 * The tests share one 1-member cluster and run in order; the last one stops it.
 */
import { assert, runtime, tempDir, test } from "./harness.ts";
import { etcdTests, failsWith, sharedCluster } from "./etcdtests.ts";
import { open } from "txtdb";

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

  test(`${R} stop the cluster`, async () => {
    await one.stop();
  });
});
