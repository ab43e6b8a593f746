/**
 * Cross-process and cross-runtime locking with real processes. Run from the Node and
 * Bun legs (the Deno leg has no --allow-run); Deno processes take part as workers with
 * exactly --allow-read --allow-write.
 */
import { afterEach, assert, canSpawn, runtime, tempDir, test, waitUntil } from "./harness.ts";
import { defaultPlatform, FileLock, leaseOwnerAlive } from "txtdb/internal";

if (canSpawn) {
  const { RUNTIMES, startWorker, killAllWorkers } = await import("./procs.ts");
  afterEach(() => killAllWorkers());
  const platform = await defaultPlatform();

  test(`[${runtime}] cross-runtime exclusion: a lock held by each runtime blocks the other two (3×3, exclusive and shared)`, async () => {
    const dir = tempDir("x3");
    const outcomes: string[] = [];
    for (const holderRt of RUNTIMES) {
      for (const holdKind of ["exclusive", "shared"] as const) {
        const path = `${dir}/${holderRt}-${holdKind}.lock`;
        const holder = startWorker(holderRt, "lockworker", ["hold", path, holdKind]);
        assert.ok((await holder.waitFor("held")).startsWith(`held ${holderRt} `), "holder runs on the runtime asked for");
        const probes = await Promise.all(
          RUNTIMES.flatMap((proberRt) =>
            (["exclusive", "shared"] as const).map(async (probeKind) => {
              const w = startWorker(proberRt, "lockworker", ["probe", path, probeKind]);
              const line = await w.waitFor("probe");
              await w.exited;
              assert.ok(line.startsWith(`probe ${proberRt} `), `a ${proberRt} worker reported "${line}"`);
              return { proberRt, probeKind, free: line.endsWith("free") };
            })
          ),
        );
        for (const p of probes) {
          const expectFree = holdKind === "shared" && p.probeKind === "shared";
          outcomes.push(`${holderRt}:${holdKind} vs ${p.proberRt}:${p.probeKind} → ${p.free ? "free" : "busy"}`);
          assert.equal(p.free, expectFree, `${p.proberRt} ${p.probeKind} probe while ${holderRt} holds ${holdKind}: got ${p.free ? "free" : "busy"}`);
        }
        // This process too (a third open file description).
        const mine = new FileLock(platform, path);
        assert.equal(mine.tryAcquire(true), undefined, `this ${runtime} process got an exclusive lock ${holderRt} holds`);
        mine.close();
        await holder.finish();
        const after = startWorker(holderRt === "node" ? "deno" : "node", "lockworker", ["probe", path, "exclusive"]);
        assert.equal(await after.waitFor("probe"), `probe ${holderRt === "node" ? "deno" : "node"} free`, "released on exit");
        await after.exited;
      }
    }
    assert.equal(outcomes.length, 3 * 2 * 6);
  });

  for (const victim of RUNTIMES) {
    test(`[${runtime}] a lock held by a SIGKILLed ${victim} process is free again within 100 ms`, async () => {
      const dir = tempDir("kill");
      const path = `${dir}/k.lock`;
      const holder = startWorker(victim, "lockworker", ["hold", path, "exclusive"]);
      await holder.waitFor("held");
      const lock = new FileLock(platform, path);
      assert.equal(lock.tryAcquire(true), undefined, "held by the worker");
      holder.kill9();
      const { signal } = await holder.exited;
      assert.equal(signal, "SIGKILL");
      let release: (() => void) | undefined;
      const elapsed = await waitUntil(() => (release = lock.tryAcquire(true)) !== undefined, 100, 1);
      assert.ok(elapsed >= 0, "lock still held 100 ms after the holder died");
      release!();
      lock.close();
    });

    test(`[${runtime}] liveness from the lease lock sees a SIGKILLed ${victim} peer as dead`, async () => {
      const dir = tempDir("lease");
      const w = startWorker(victim, "lockworker", ["lease", dir]);
      const leasePath = (await w.waitFor("lease ")).slice("lease ".length);
      assert.equal(leaseOwnerAlive(platform, leasePath), true);
      w.kill9();
      await w.exited;
      const elapsed = await waitUntil(() => !leaseOwnerAlive(platform, leasePath), 100, 1);
      assert.ok(elapsed >= 0, "dead peer still looks alive after 100 ms");
    });
  }

  test(`[${runtime}] a waiter in this process gets a lock the moment another runtime's holder releases it`, async () => {
    const dir = tempDir("handoff");
    const path = `${dir}/h.lock`;
    const holder = startWorker("deno", "lockworker", ["hold", path, "exclusive"]);
    await holder.waitFor("held");
    const lock = new FileLock(platform, path);
    const waiting = lock.acquire(true, { timeoutMs: 10_000 });
    let got = false;
    void waiting.then(() => (got = true));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(got, false, "got a lock that another process holds");
    await holder.finish();
    (await waiting)();
    lock.close();
  });
}
