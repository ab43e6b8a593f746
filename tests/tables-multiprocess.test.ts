/**
 * Readers in other runtimes read through tables while another process replaces them: a
 * Node writer moves money between 200 accounts and compacts after every round (level 0
 * fills and merges into level 1 again and again, and replaced tables are deleted); a Deno
 * and a Bun reader check, in snapshot after snapshot, that the accounts always sum to the
 * same total, forward and reverse, with point reads agreeing. Then the store checks clean.
 */
import { assert, canSpawn, runtime, tempDir, test } from "./harness.ts";
import { open } from "txtdb";

if (canSpawn) {
  const { startWorker, killAllWorkers } = await import("./procs.ts");

  test(`[${runtime}] Deno and Bun readers see a consistent store, snapshot after snapshot, while a Node process keeps replacing its tables`, async () => {
    const dir = tempDir("tables-mp");
    try {
      const writer = startWorker("node", "tablewriter", [dir, "40"]);
      await writer.waitFor("ready", 30_000);
      const readers = [startWorker("deno", "tablereader", [dir]), startWorker("bun", "tablereader", [dir])];
      for (const r of readers) await r.waitFor("ready", 30_000);
      writer.send("go");
      await writer.waitFor("done", 120_000);
      assert.equal((await writer.finish()).code, 0, writer.stderr);
      const results: string[] = [];
      for (const r of readers) {
        await r.finish();
        const line = r.lines.find((l) => l.startsWith("ok ") || l.startsWith("bad"));
        assert.ok(line?.startsWith("ok "), `${r.runtime} reader: ${line}; stderr: ${r.stderr}`);
        const [, checks, folds] = line!.split(" ").map(Number);
        assert.ok(checks! > 5, `${r.runtime} reader made ${checks} checks`);
        assert.ok(folds! >= 3, `${r.runtime} reader read through ${folds} table sets`);
        results.push(line!);
      }
      const db = await open(dir);
      const s = db.stats();
      assert.ok(s.tableBytesByLevel[1]! > 0, `level 1 was written: ${JSON.stringify(s.tableBytesByLevel)}`);
      let total = 0;
      for await (const e of db.list<number>("acct", { prefix: ["a"] })) total += e.value;
      assert.equal(total, 20_000);
      assert.equal((await db.check()).ok, true);
      await db.close();
    } finally {
      killAllWorkers();
    }
  });
}
