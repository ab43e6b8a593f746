/**
 * Four processes (two Node, one Deno, one Bun) write, delete and list one store against a model
 * while small segments roll and automatic compaction folds them under the others
 * (tests/workers/stresser.ts). Two writers at once under the writer lock, a catch-up that
 * stops short, or a fold that drops what another process committed shows as a key missing
 * from a list, a deleted key listed, a final count off, or a CORRUPTION error. A longer
 * form: scripts/stress-mp.mjs.
 */
import { assert, canSpawn, runtime, tempDir, test } from "./harness.ts";
import { open } from "txtdb";

if (canSpawn) {
  const { startWorker, killAllWorkers } = await import("./procs.ts");

  for (const [durability, seed] of [["none", 1], ["relaxed", 2], ["full", 3]] as const) {
    test(`[${runtime}] stress: two Node, a Deno and a Bun process commit, delete and list one store (durability "${durability}") while automatic compaction folds its segments; every list and the final state match the model`, async () => {
      const dir = tempDir("stress-mp");
      try {
        // Before the writer lock's fix (lock.ts, #startKernelWait) 5 runs in 6 of this shape
        // failed with durability "none"; two Node processes make the race likelier.
        const runtimes = ["node", "node", "deno", "bun"] as const;
        const workers = runtimes.map((rt, i) => startWorker(rt, "stresser", [dir, String(i), String(runtimes.length), String(seed), "150", durability, "65536", "100000"]));
        const outcomes = await Promise.all(workers.map(async (w) => ({ w, exit: await w.exited })));
        const report = outcomes.map(({ w, exit }) => `${w.runtime} (exit ${exit.code ?? exit.signal}): ${w.lines.join(" | ")} ${w.stderr.slice(0, 2000)}`).join("\n");
        for (const { exit } of outcomes) assert.equal(exit.code, 0, report);
        const totals = new Set(outcomes.map(({ w }) => w.lines.find((l) => l.startsWith("result "))?.match(/total=(\d+)/)?.[1]));
        assert.equal(totals.size, 1, `the processes disagree on the final state:\n${report}`);
        const db = await open(dir);
        try {
          const s = db.stats();
          assert.ok(s.checkpointVersion > 0n, "automatic compaction folded segments during the run");
          assert.equal(await db.count("t", {}), Number([...totals][0]));
          const check = await db.check();
          assert.equal(check.ok, true, JSON.stringify(check.problems));
        } finally {
          await db.close();
        }
      } finally {
        killAllWorkers();
      }
    });
  }
}
