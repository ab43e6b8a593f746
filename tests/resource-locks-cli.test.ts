/**
 * `txtdb locks <dir>` and `txtdb doctor` on locks on named resources, run as users run them
 * (node dist/cli.js, deno run cli/main.ts, bun cli/main.ts), while workers of other runtimes
 * hold and wait for locks; doctor flags a holder stopped with SIGSTOP.
 */
import { assert, canSpawn, runtime, tempDir, test, waitUntil } from "./harness.ts";
import { open } from "txtdb";

if (canSpawn) {
  const fs = await import("node:fs");
  const { startWorker, killAllWorkers } = await import("./procs.ts");
  const { runCli: run } = await import("./clirun.ts");

  test(`[${runtime}] txtdb locks lists who holds what and who waits, from every runtime; doctor flags a stopped holder`, async () => {
    const dir = tempDir("rl-cli");
    await (await open(dir)).close();
    const holder = startWorker("deno", "resource-locker", [dir]);
    const waiter = startWorker("bun", "resource-locker", [dir]);
    try {
      const [, , holderPid] = (await holder.waitFor("ready")).split(" ");
      await waiter.waitFor("ready");
      holder.send(`lock h X ["jobs",7]`);
      await holder.waitFor("granted h ");
      waiter.send(`lock w S ["jobs",7] 60000`);
      for (const rt of ["node", "deno", "bun"] as const) {
        let r = run(rt, ["locks", dir]);
        assert.notEqual(await waitUntil(() => (r = run(rt, ["locks", dir])).out.includes('"waiting":true'), 10_000, 20), -1, `${rt}: ${r.out}${r.err}`);
        assert.equal(r.code, 0, r.err);
        const lines = r.out.trim().split("\n").map((l) => JSON.parse(l) as { resource: unknown; mode: string; runtime: string; waiting: boolean; pid: number });
        assert.deepEqual(lines.map((l) => [l.resource, l.mode, l.runtime, l.waiting]), [
          ["jobs", "IX", "deno", false],
          [["jobs", 7], "X", "deno", false],
          ["jobs", "IS", "bun", false],
          [["jobs", 7], "S", "bun", true],
        ]);
      }
      const ok = run("node", ["doctor", dir]);
      assert.equal(ok.code, 0, ok.out + ok.err);
      assert.match(ok.out, /locks on named resources: 3 held, 1 waiting/);
      assert.match(ok.out, new RegExp(`pid ${holderPid} \\(deno\\) holds 2 .*; 1 waiting on them`));
      process.kill(Number(holderPid), "SIGSTOP");
      try {
        const state = () => /\) (\S)/.exec(fs.readFileSync(`/proc/${holderPid}/stat`, "utf8").slice(-400))?.[1];
        assert.notEqual(await waitUntil(() => state() === "T", 5_000), -1);
        for (const rt of ["node", "bun"] as const) { // Deno may not read /proc with --allow-read alone
          const r = run(rt, ["doctor", dir]);
          assert.equal(r.code, 1, `${rt}: ${r.out}${r.err}`);
          assert.match(r.out, new RegExp(`warning: pid ${holderPid} holds locks on named resources while stopped .*kill -CONT ${holderPid}`));
        }
      } finally {
        process.kill(Number(holderPid), "SIGCONT");
      }
      holder.send("release h");
      await waiter.waitFor("granted w ");
      waiter.send("release w");
      await waiter.waitFor("released w");
      assert.equal(run("bun", ["locks", dir]).out, "");
      holder.send("exit");
      waiter.send("exit");
      await holder.finish();
      await waiter.finish();
    } finally {
      killAllWorkers();
    }
  });
}
