/**
 * A read that fails for a passing reason (EIO) is reported as IO, never as damage found in
 * the store or as "not a txtdb store": `check()` and the first open of a new store, on the
 * simulated platform, with the failure at each of their file operations in turn.
 */
import { assert, test } from "./harness.ts";
import { open, TxtDbError } from "txtdb";
import { SimWorld } from "txtdb/adapters/sim";

test("[sim] check() meeting EIO at any read (a segment, the frontier, the manifest, the directory) throws IO and reports no damage", async () => {
  const setup = async (world: SimWorld) => {
    const db = await open("/db", { adapter: world.process(), namespaces: ["m"], segmentBytes: 256, autoCompactBytes: 0 });
    for (let j = 0; j < 12; j++) await db.set("m", j, "x".repeat(50));
    return db;
  };
  const probe = new SimWorld(5);
  const probeDb = await setup(probe);
  const start = probe.counters.ops;
  assert.equal((await probeDb.check()).ok, true);
  const ops = probe.counters.ops - start;
  await probeDb.close();
  assert.ok(ops > 5, `check() made ${ops} file operations`);
  let io = 0;
  for (let at = 1; at <= ops; at++) {
    const world = new SimWorld(5);
    const db = await setup(world);
    const failAt = world.counters.ops + at;
    world.failAt(failAt, "EIO");
    let outcome: unknown;
    try {
      outcome = await db.check();
    } catch (e) {
      outcome = e;
    }
    const where = `EIO at check operation ${at} (${world.trace[failAt - 1] ?? "?"})`;
    if (outcome instanceof Error) {
      assert.ok(outcome instanceof TxtDbError && outcome.code === "IO", `${where}: ${String(outcome)}`);
      io++;
    } else {
      const report = outcome as { ok: boolean; problems: unknown[] };
      assert.equal(report.ok, true, `${where}: ${JSON.stringify(report.problems)}`);
    }
    assert.equal((await db.check()).ok, true, `${where}: the next check is clean`);
    await db.close();
  }
  assert.ok(io > 0, "some failed reads reached check()");
});

test("[sim] creating a store meeting EIO at any step fails with IO (never INVALID_ARGUMENT: not a txtdb store), and the next open creates it", async () => {
  const probe = new SimWorld(6);
  await (await open("/db", { adapter: probe.process(), namespaces: ["m"] })).close();
  const ops = probe.counters.ops;
  for (let at = 1; at <= ops; at++) {
    const world = new SimWorld(6);
    world.failAt(at, "EIO");
    let failure: unknown;
    try {
      await (await open("/db", { adapter: world.process(), namespaces: ["m"] })).close();
    } catch (e) {
      failure = e;
    }
    const where = `EIO at creation operation ${at} (${world.trace[at - 1] ?? "?"})`;
    if (failure !== undefined) assert.ok(failure instanceof TxtDbError && failure.code === "IO", `${where}: ${String(failure)}`);
    const db = await open("/db", { adapter: world.process(), namespaces: ["m"] });
    await db.set("m", "k", 1);
    assert.equal((await db.check()).ok, true, where);
    await db.close();
  }
});

test("an IO error for a failure outside the store says what to do: too many open files (EMFILE) names the limit to raise, a full disk (ENOSPC) says to free space, a read-only mount (EROFS) says to remount; nothing is written", async () => {
  const { withFaults } = await import("txtdb/adapters/faults");
  const { defaultPlatform, PortError } = await import("txtdb/internal");
  const { tempDir } = await import("./harness.ts");
  const dir = tempDir("errno-hints");
  const writer = await open(dir, { namespaces: ["ns"], autoCompactBytes: 0 });
  for (let i = 0; i < 50; i++) await writer.set("ns", i, "v".repeat(100));
  await writer.compact();
  await writer.close();
  let fail: string | undefined;
  const platform = withFaults(await defaultPlatform(), (step, path) => {
    if (fail === "EMFILE" && step === "beforeOpen" && path.endsWith(".sst")) throw new PortError("EMFILE", "open", path);
    if ((fail === "ENOSPC" || fail === "EROFS") && step === "beforeWrite" && path.endsWith(".log")) throw new PortError(fail, "write", path);
  });
  fail = "EMFILE";
  let thrown: unknown;
  try {
    const db = await open(dir, { adapter: platform });
    await db.close();
  } catch (e) {
    thrown = e;
  }
  assert.ok(thrown instanceof TxtDbError && thrown.code === "IO", `EMFILE opening a table: ${String(thrown)}`);
  assert.match((thrown as Error).message, /EMFILE: this process has too many files open\. .*ulimit -n/);
  fail = undefined;
  const db = await open(dir, { adapter: platform });
  // A commit's append failing with `errno`: an IO error whose message matches `hint`.
  const appendFails = async (errno: string, hint: RegExp) => {
    fail = errno;
    const e = await db.set("ns", "full", 1).then(() => undefined, (x: unknown) => x);
    assert.ok(e instanceof TxtDbError && e.code === "IO", `${errno} appending: ${String(e)}`);
    assert.match(e.message, hint);
  };
  await appendFails("ENOSPC", /ENOSPC: the file system is full; free space on it, then try again/);
  // A read-only mount: remount (readOnly: true is for reading only, which a CLI `set` cannot use).
  await appendFails("EROFS", /EROFS: the file system is mounted read-only; a write needs it remounted writable \(to only read the store, open it with readOnly: true/);
  fail = undefined;
  assert.equal(await db.get("ns", "full"), undefined, "the failed commit was not written");
  await db.set("ns", "full", 2);
  assert.equal(await db.get("ns", "full"), 2);
  await db.close();
});
