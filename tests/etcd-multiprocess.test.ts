/**
 * `open("etcd://…")` across real processes of all three runtimes on one etcd cluster,
 * through the public API only: hot counters (db.transaction() read-modify-write and
 * tx.sum()), bank transfers with audits over snapshots, write skew prevented under
 * serializable, and watch across processes (every commit, in order, none missed).
 *
 * Workers are started from the Node and Bun legs (the Deno leg does not spawn); a Deno
 * worker takes part in each run.
 */
import { afterEach, assert, canSpawn, runtime, test } from "./harness.ts";
import { etcdTests, sharedCluster } from "./etcdtests.ts";
import { open } from "txtdb";

const R = `[${runtime}]`;

if (canSpawn) {
  const { RUNTIMES, startWorker, killAllWorkers } = await import("./procs.ts");
  afterEach(() => killAllWorkers());

  etcdTests(`${R} open("etcd://…"), multi-process`, () => {
    const one = sharedCluster(1);
    const net = { denoFlags: ["--allow-net"] };
    let n = 0;
    const location = async (what: string) => {
      const cluster = await one.get();
      return `etcd://${cluster.endpoints.map((e) => e.replace("http://", "")).join(",")}/${what}-${runtime}-${Date.now()}-${++n}`;
    };

    test(`${R} hot counters and bank transfers from node, deno and bun processes: exact counts, money conserved in every audit`, async () => {
      const url = await location("mp");
      await using db = await open(url, { namespaces: ["c", "b"] });
      const accounts = 6;
      await db.transaction((tx) => {
        for (let i = 0; i < accounts; i++) tx.set("b", ["acct", i], 100);
      });
      const rounds = 30;
      const workers = RUNTIMES.flatMap((rt) => [
        startWorker(rt, "etcd-db", ["counter", url, String(rounds)], net),
        startWorker(rt, "etcd-db", ["bank", url, String(rounds), String(accounts)], net),
      ]);
      const done = await Promise.all(workers.map((w) => w.waitFor("done ", 90_000)));
      const results = await Promise.all(workers.map((w) => w.finish()));
      for (const [i, r] of results.entries()) assert.equal(r.code, 0, `worker ${workers[i]!.runtime} exited ${r.code ?? r.signal}: ${workers[i]!.stderr}`);
      for (const w of workers) assert.deepEqual(w.lines.filter((l) => l.startsWith("bad ")), [], `${w.runtime} audited a wrong total`);
      assert.equal(await db.get("c", "hot"), RUNTIMES.length * rounds, "no lost update");
      assert.equal(await db.get("c", "sum"), RUNTIMES.length * rounds, "every sum counted once");
      let total = 0;
      for await (const e of db.list<number>("b", { prefix: ["acct"] })) {
        assert.ok(e.value >= 0, "no account below 0");
        total += e.value;
      }
      assert.equal(total, accounts * 100, "money conserved");
      const conflicts = done.reduce((sum, line) => sum + (JSON.parse(line.slice(5)) as { conflicts: number }).conflicts, 0);
      assert.ok(conflicts > 0, "the processes did contend");
    });

    test(`${R} write skew is prevented across processes: three doctors in three runtimes, never all off call`, async () => {
      const url = await location("skew");
      await using db = await open(url, { namespaces: ["r"] });
      const rounds = 12;
      for (let k = 0; k < rounds; k++) {
        await db.transaction((tx) => {
          for (let d = 0; d < 3; d++) tx.set("r", ["doc", k, d], true);
        });
      }
      const workers = RUNTIMES.map((rt, i) => startWorker(rt, "etcd-db", ["skew", url, String(i), String(rounds)], net));
      await Promise.all(workers.map((w) => w.waitFor("ready", 30_000)));
      // All three start each round together: the rounds open one by one.
      for (let k = 0; k < rounds; k++) await db.set("r", ["round", k], true);
      await Promise.all(workers.map((w) => w.waitFor("done ", 90_000)));
      const results = await Promise.all(workers.map((w) => w.finish()));
      for (const [i, r] of results.entries()) assert.equal(r.code, 0, `worker ${workers[i]!.runtime} exited ${r.code ?? r.signal}: ${workers[i]!.stderr}`);
      for (let k = 0; k < rounds; k++) {
        const on = await db.getMany<boolean>("r", [0, 1, 2].map((d) => ["doc", k, d]));
        const onCall = on.filter((v) => v === true).length;
        assert.ok(onCall >= 1, `round ${k}: someone stays on call (${JSON.stringify(on)})`);
        assert.equal(onCall, 1, `round ${k}: exactly two went off call, one at a time`);
      }
    });

    test(`${R} watch across processes: watchers in node, deno and bun see every commit of another process, in order, none missed`, async () => {
      const url = await location("watch");
      await using db = await open(url, { namespaces: ["w"] });
      const { version: from } = await db.set("w", "start", 0);
      const commits = 26; // even: the last is a transaction that sets one key and deletes another
      const watchers = RUNTIMES.map((rt) => startWorker(rt, "etcd-db", ["watch", url, String(from), String(commits)], net));
      await Promise.all(watchers.map((w) => w.waitFor("ready", 30_000)));
      const writer = await open(url);
      const versions: string[] = [];
      for (let i = 0; i < commits; i++) {
        if (i % 2 === 0) {
          versions.push(String((await writer.set("w", ["k", i], i)).version));
        } else {
          const tx = await writer.begin();
          tx.set("w", ["k", i], i);
          tx.delete("w", ["k", i - 1]);
          versions.push(String((await tx.commit()).version));
        }
      }
      await writer.close();
      await Promise.all(watchers.map((w) => w.waitFor("done ", 60_000)));
      for (const w of watchers) {
        const events = w.lines.filter((l) => l.startsWith("event ")).map((l) => l.split(" ")[1]!);
        assert.deepEqual(events, versions, `${w.runtime} saw every commit, in order, once`);
        const last = JSON.parse(w.lines.filter((l) => l.startsWith("event ")).at(-1)!.split(" ").slice(2).join(" ")) as { key: unknown; value?: unknown }[];
        assert.deepEqual(last.map((c) => c.key).sort(), [["k", commits - 1], ["k", commits - 2]].sort(), `${w.runtime}: the last commit's set and delete`);
      }
      const results = await Promise.all(watchers.map((w) => w.finish()));
      for (const [i, r] of results.entries()) assert.equal(r.code, 0, `worker ${watchers[i]!.runtime} exited ${r.code ?? r.signal}: ${watchers[i]!.stderr}`);
    });

    test(`${R} stop the cluster`, async () => {
      await one.stop();
    });
  });
}
