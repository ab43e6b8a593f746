/**
 * The idle sweep and txtdb's other timers never keep a process alive: a script that leaves a
 * snapshot, a transaction, a half-read list, a watch() it never iterates and the database
 * itself open exits as soon as its own code is done (a watch left so kept Node alive until
 * the store was closed), on Node, Deno and Bun (before this, the idle sweep's 10 s interval
 * kept a Node script alive until maxIdleMs, 10 minutes, released the snapshot). Workers are
 * started from the Node and Bun legs (the Deno leg cannot spawn).
 */
import { afterEach, assert, canSpawn, runtime, sleep, tempDir, test } from "./harness.ts";
import { open } from "txtdb";

const EXIT_MS_MAX = 5_000;

if (canSpawn) {
  // Loaded only where the leg can spawn: procs.ts reads the environment, which the Deno leg may not.
  const { RUNTIMES, startWorker, killAllWorkers } = await import("./procs.ts");
  afterEach(() => killAllWorkers());
  for (const rt of RUNTIMES) {
    test(`[${runtime}] a ${rt} process that leaves a snapshot, a transaction, a list and the database open exits by itself within ${EXIT_MS_MAX / 1000} s`, async () => {
      const w = startWorker(rt, "forgetful", [`${tempDir("exit")}/store`]);
      const line = await w.waitFor("forgot", 30_000);
      assert.match(line, /^forgot \w+ 1 snapshots 1 transactions$/, "the worker really left them open");
      const t0 = performance.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const outcome = await Promise.race([
        w.exited,
        new Promise<"still running">((resolve) => (timer = setTimeout(() => resolve("still running"), EXIT_MS_MAX))),
      ]);
      clearTimeout(timer);
      if (outcome === "still running") w.kill9();
      assert.notEqual(outcome, "still running", `the ${rt} process was still running ${EXIT_MS_MAX} ms after its code ended: something of txtdb keeps it alive`);
      assert.deepEqual(outcome, { code: 0, signal: null }, `${rt} worker: ${w.stderr}`);
      assert.ok(performance.now() - t0 < EXIT_MS_MAX);
    });
    test(`[${runtime}] a ${rt} process whose open() gave up waiting for a writer lock that flock(1) keeps exits at once, by process.exit() or by the uncaught LOCK_TIMEOUT (Node waited in its exit for the pending wait, until the holder let go)`, async () => {
      const { spawn, spawnSync } = await import("node:child_process");
      assert.equal(spawnSync("flock", ["--version"]).status, 0, "this test needs flock(1) (util-linux)");
      const dir = `${tempDir("exit-giveup")}/store`;
      await (await open(dir)).close();
      const holder = spawn("flock", ["-o", `${dir}/writer.lock`, "sleep", "60"], { stdio: "ignore" });
      try {
        for (const [how, code] of [["exit", 3], ["uncaught", 1]] as const) {
          const w = startWorker(rt, "lock-giveup", [dir, how]);
          let timer: ReturnType<typeof setTimeout> | undefined;
          const outcome = await Promise.race([
            w.exited,
            new Promise<"still running">((resolve) => (timer = setTimeout(() => resolve("still running"), 30_000))),
          ]);
          clearTimeout(timer);
          if (outcome === "still running") w.kill9();
          assert.notEqual(outcome, "still running", `${rt}, ${how}: still running 30 s after open() gave up at 300 ms (${w.lines.join(" | ")} ${w.stderr})`);
          assert.deepEqual(outcome, { code, signal: null }, `${rt}, ${how}: ${w.lines.join(" | ")} ${w.stderr}`);
          // The uncaught error as the runtime prints it (Deno shows no code, only the message).
          if (how === "exit") assert.deepEqual(w.lines, ["gave up LOCK_TIMEOUT"], `${rt}, ${how}`);
          else assert.match(w.stderr, /Cannot acquire exclusive lock on .*writer\.lock/, `${rt}, ${how}`);
        }
      } finally {
        holder.kill("SIGKILL");
      }
    });
    test(`[${runtime}] a ${rt} process awaiting a watch() event stays alive until another process's commit brings it`, async () => {
      const dir = `${tempDir("exit-watch")}/store`;
      const w = startWorker(rt, "watch-waiter", [dir]);
      await w.waitFor("waiting", 30_000);
      await sleep(EXIT_MS_MAX / 2);
      assert.equal(w.child.exitCode, null, `the ${rt} process exited while its consumer waited for an event: ${w.stderr}`);
      const db = await open(dir);
      const { version } = await db.set("n", ["k", 1], 1);
      await db.close();
      assert.equal(await w.waitFor("event", 15_000), `event ${version}`);
      assert.deepEqual(await w.exited, { code: 0, signal: null }, `${rt} worker: ${w.stderr}`);
    });
  }
}
