/**
 * The frontier file changed under live processes by someone else (issue 9, defect 7): a
 * `: > frontier` or a `cp` over a live store truncates it. Readers must survive (errors
 * are allowed, a crash is not), and the store must work again once a writer rewrites it.
 * A shared mapping of the frontier made every Node and Bun reader die of SIGBUS here.
 * Run from the Node and Bun legs, with reader processes of all three runtimes.
 */
import { afterEach, assert, canSpawn, runtime, sleep, tempDir, test } from "./harness.ts";
import * as fs from "node:fs";
import { open } from "txtdb";

if (canSpawn) {
  const { RUNTIMES, startWorker, killAllWorkers } = await import("./procs.ts");
  afterEach(() => killAllWorkers());

  for (const rt of RUNTIMES) {
    test(`[${runtime}] a ${rt} reader survives the frontier being truncated under it, and sees commits again once a writer rewrites it`, async () => {
      const dir = tempDir("frontier-cut");
      const db0 = await open(dir, { namespaces: ["ns"] });
      await db0.set("ns", "k", 1);
      await db0.close();

      const reader = startWorker(rt, "files-probe", ["reader", dir]);
      await reader.waitFor("ready");
      await reader.waitFor("saw 1");
      const frontier = `${dir}/frontier`;
      const original = fs.readFileSync(frontier);
      // Truncate while the reader reads in a loop: to nothing, to a few bytes, and back to
      // full length with garbage (what a `cp` of another file over it leaves midway).
      for (let round = 0; round < 5; round++) {
        fs.truncateSync(frontier, 0);
        await sleep(30);
        fs.writeFileSync(frontier, original.subarray(0, 10));
        await sleep(30);
        fs.writeFileSync(frontier, new Uint8Array(original.length).fill(0xee));
        await sleep(30);
        fs.truncateSync(frontier, 0);
        await sleep(30);
      }
      assert.equal(reader.child.exitCode, null, `the ${rt} reader died: ${reader.stderr}`);

      // A writer rewrites the frontier on its next commit; the reader follows again.
      const db = await open(dir, { namespaces: ["ns"] });
      await db.set("ns", "k", 2);
      assert.equal(await db.get("ns", "k"), 2);
      await db.close();
      await reader.waitFor("saw 2", 10_000);

      const finished = reader.finish();
      const line = await reader.waitFor("done ", 15_000);
      const exit = await finished;
      assert.equal(exit.signal, null, `the ${rt} reader was killed by ${exit.signal}: ${reader.stderr}`);
      assert.equal(exit.code, 0, `the ${rt} reader exited ${exit.code}: ${reader.stderr}`);
      const done = JSON.parse(line.slice(5)) as { reads: number; errors: number; lastError: string };
      assert.ok(done.reads > 100, `the reader read only ${done.reads} times`);
      // Errors are allowed, but each must be a clear one.
      if (done.errors > 0) assert.match(done.lastError, /^[A-Z_]+ \S/, done.lastError);
    });
  }
}
