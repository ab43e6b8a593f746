/**
 * Crash recovery on the simulated platform: a crash (or a torn write, or an I/O error)
 * at every file operation of opening, committing, namespace operations and segment
 * rolls; then a power loss that drops or tears every unsynced byte. After reopening,
 * the state must be a prefix of history that contains every commit that resolved.
 *
 * Every failure message names the seed and the operation; replay one point with
 * TXTDB_SEED=<seed> TXTDB_CRASH_AT=<n> (Node and Bun legs).
 */
import { assert, test } from "./harness.ts";
import { atEveryOperation, baseSeed, reopen } from "./simfaults.ts";
import { open, TxtDbError } from "txtdb";
import type { Database } from "txtdb";
import { SimWorld } from "txtdb/adapters/sim";
import type { FaultKind } from "txtdb/adapters/sim";

const BASE_SEED = baseSeed(1000);
const STEPS = 10;

interface History {
  acked: number; // highest j whose commit resolved
  createAcked: boolean;
  renameAcked: boolean;
}

/** One process: 10 sequential commits, a namespace create after 3 and a rename after 6, small segments. */
async function sequential(world: SimWorld, h: History): Promise<void> {
  const db = await open("/db", { adapter: world.process(), namespaces: ["main"], segmentBytes: 400 });
  for (let j = 1; j <= STEPS; j++) {
    await db.transaction((tx) => {
      tx.set("main", "n", j);
      tx.set("main", ["k", j], "v".repeat(40));
    }, { maxRetries: 0 });
    h.acked = j;
    if (j === 3) {
      await db.createNamespace("extra");
      h.createAcked = true;
    }
    if (j === 6) {
      await db.renameNamespace("extra", "extra2");
      h.renameAcked = true;
    }
  }
  await db.close();
}

async function verifySequential(db: Database, h: History, where: string): Promise<void> {
  const n = ((await db.get<number>("main", "n")) ?? 0);
  assert.ok(n >= h.acked, `${where}: acknowledged commit ${h.acked} lost (state at ${n})`);
  for (let j = 1; j <= STEPS; j++) {
    const v = await db.get("main", ["k", j]);
    assert.equal(v !== undefined, j <= n, `${where}: key k${j} ${v === undefined ? "missing" : "present"} with n=${n}: not a prefix of history`);
  }
  const names = await db.listNamespaces();
  // The create sits between commits 3 and 4, the rename between 6 and 7: a prefix that
  // contains a later commit must contain them.
  const created = names.includes("extra") || names.includes("extra2");
  if (h.createAcked || n >= 4) assert.ok(created, `${where}: namespace create lost (n=${n}, names ${names})`);
  if (n <= 2) assert.ok(!created, `${where}: namespace exists before its commit (n=${n})`);
  if (h.renameAcked || n >= 7) assert.deepEqual(names, ["extra2", "main"], `${where}: rename lost (n=${n})`);
  else if (created && n < 6) assert.deepEqual(names, ["extra", "main"], `${where}: rename appeared early`);
}

/** The check after a fault in `sequential`: a prefix with every resolved commit; after EIO or ENOSPC, exactly what resolved. */
async function checkSequential(world: SimWorld, h: History, where: string, failure: unknown, kind: FaultKind): Promise<void> {
  const running = kind === "EIO" || kind === "ENOSPC"; // the machine keeps running
  // A failed commit must not appear, the store must reopen.
  if (running && failure !== undefined) assert.ok(failure instanceof TxtDbError, `${where}: ${String(failure)}`);
  const after = running ? world.processCrash() : world.powerLoss();
  await verifyReadOnlyFirst(after, h, where, running);
  const db = await reopen(where, { adapter: after.process(), namespaces: ["main"] });
  await verifySequential(db, h, where);
  if (running) {
    // Nothing was lost from the page cache, so the state is exactly what resolved: a
    // commit reported as failed must not appear.
    assert.equal((await db.get<number>("main", "n")) ?? 0, h.acked, `${where}: a failed commit appeared`);
  }
  await db.set("main", "after", 1); // the store takes new commits
  await db.close();
}

/**
 * A read-only open before any writable one (rule 11 of tail.ts): the frontier file is never
 * synced, so after a power loss it may show an old state or none, yet the read-only open
 * shows every resolved commit, and a backup taken through it holds them.
 */
async function verifyReadOnlyFirst(world: SimWorld, h: History, where: string, running: boolean): Promise<void> {
  let ro: Database;
  try {
    ro = await open("/db", { adapter: world.process(), readOnly: true });
  } catch (e) {
    // Killed while creating the store: nothing resolved, and there may be no store to open.
    if (h.acked === 0 && e instanceof TxtDbError && e.code === "INVALID_ARGUMENT") return;
    assert.fail(`${where}: read-only open failed: ${String(e)}`);
  }
  try {
    if (h.acked === 0 && !(await ro.listNamespaces()).includes("main")) return;
    await verifySequential(ro, h, `${where} (read-only open)`);
    if (running) assert.equal((await ro.get<number>("main", "n")) ?? 0, h.acked, `${where} (read-only open): a failed commit appeared`);
    const report = await ro.check();
    assert.ok(report.ok, `${where} (read-only open): check(): ${JSON.stringify(report.problems)}`);
    const copy = await ro.backup("/copy");
    const n = (await ro.get<number>("main", "n")) ?? 0;
    const restored = await open("/copy", { adapter: world.process(), readOnly: true });
    try {
      assert.equal((await restored.get<number>("main", "n")) ?? 0, n, `${where}: the backup of the read-only open holds version ${copy.version}, not what it showed`);
    } finally {
      await restored.close();
    }
  } finally {
    await ro.close();
  }
}

/** `sequential` failing at every operation with the faults `kinds` gives, seeded by `seed`. */
async function sequentialAtEveryOperation(kinds: (at: number) => FaultKind[], seed: (at: number) => number): Promise<void> {
  await atEveryOperation({
    total: await countOps(BASE_SEED),
    kinds,
    seed,
    state: (): History => ({ acked: 0, createAcked: false, renameAcked: false }),
    run: (world, h) => sequential(world, h),
    check: checkSequential,
  });
}

async function countOps(seed: number): Promise<number> {
  const world = new SimWorld(seed);
  await sequential(world, { acked: 0, createAcked: false, renameAcked: false });
  return world.counters.ops;
}

test("[sim] crash at every file operation of open, commit, namespace ops and segment rolls, then power loss: a prefix with every resolved commit", async () => {
  assert.ok((await countOps(BASE_SEED)) > 80, "the scenario has more than 80 operations");
  await sequentialAtEveryOperation(() => ["crash"], (at) => BASE_SEED + at);
});

test("[sim] a torn write at every file operation, then power loss: a prefix with every resolved commit", async () => {
  await sequentialAtEveryOperation(() => ["tear"], (at) => BASE_SEED + 7919 * at);
});

test("[sim] EIO and ENOSPC at every file operation: failed commits never appear, the store reopens", async () => {
  await sequentialAtEveryOperation((at) => [at % 2 ? "EIO" : "ENOSPC"], (at) => BASE_SEED + at);
});

test("[sim] killed at every file operation, then a read-only open, then power loss: what the read-only open showed survives (it synced a dead writer's records before showing them)", async () => {
  await atEveryOperation({
    total: await countOps(BASE_SEED),
    kinds: () => ["crash"],
    seed: (at) => BASE_SEED + 13 * at,
    state: (): History => ({ acked: 0, createAcked: false, renameAcked: false }),
    run: (world, h) => sequential(world, h),
    check: async (world, h, where) => {
      const killed = world.processCrash(); // the page cache survives the process
      let shown = 0;
      try {
        const ro = await open("/db", { adapter: killed.process(), readOnly: true });
        try {
          if ((await ro.listNamespaces()).includes("main")) shown = (await ro.get<number>("main", "n")) ?? 0;
        } finally {
          await ro.close();
        }
      } catch (e) {
        if (!(h.acked === 0 && e instanceof TxtDbError && e.code === "INVALID_ARGUMENT")) throw e;
      }
      assert.ok(shown >= h.acked, `${where}: the read-only open showed ${shown}, not every resolved commit (${h.acked})`);
      const db = await reopen(where, { adapter: killed.powerLoss().process(), namespaces: ["main"] });
      await verifySequential(db, h, where);
      const n = (await db.get<number>("main", "n")) ?? 0;
      assert.ok(n >= shown, `${where}: the read-only open showed commit ${shown}, and a power loss after it took it (state at ${n})`);
      await db.close();
    },
  });
});

/** Two processes committing concurrently (group commit in each), sums and markers. */
async function concurrent(world: SimWorld, acked: Set<string>): Promise<void> {
  const a = await open("/db", { adapter: world.process(), namespaces: ["main"] });
  const b = await open("/db", { adapter: world.process() });
  const work = (db: Database, name: string) =>
    Promise.all(Array.from({ length: 8 }, (_, i) =>
      db.transaction((tx) => {
        tx.sum("main", "total", 1);
        tx.set("main", ["c", name, i], true);
      }).then(() => void acked.add(`${name}${i}`))
    ));
  await Promise.all([work(a, "a"), work(b, "b")]);
  await a.close();
  await b.close();
}

test("[sim] two processes group-committing: a crash at every operation keeps every resolved commit, atomically", async () => {
  const probe = new SimWorld(BASE_SEED);
  await concurrent(probe, new Set());
  const total = probe.counters.ops;
  await atEveryOperation({
    total,
    kinds: (at) => [at % 3 === 0 ? "tear" : "crash"],
    seed: (at) => BASE_SEED + 31 * at,
    state: () => new Set<string>(),
    run: (world, acked) => concurrent(world, acked),
    check: async (world, acked, where) => {
      const db = await reopen(where, { adapter: world.powerLoss().process(), namespaces: ["main"] });
      const markers: string[] = [];
      for await (const e of db.list("main", { prefix: ["c"] })) markers.push(`${(e.key as string[])[1]}${(e.key as unknown[])[2]}`);
      for (const k of acked) assert.ok(markers.includes(k), `${where}: acknowledged commit ${k} lost`);
      assert.equal((await db.get<number>("main", "total")) ?? 0, markers.length, `${where}: a commit was applied partly`);
      await db.close();
    },
  });
});

/** Writes, compacts (checkpoint, manifest switch, deletes), writes, compacts again. */
async function compacting(world: SimWorld, h: { acked: number }): Promise<void> {
  const db = await open("/db", { adapter: world.process(), namespaces: ["main"], segmentBytes: 300, autoCompactBytes: 0 });
  for (let j = 1; j <= 12; j++) {
    await db.transaction((tx) => {
      tx.set("main", "n", j);
      tx.set("main", ["k", j % 4], j);
    }, { maxRetries: 0 });
    h.acked = j;
    if (j === 6 || j === 12) await db.compact();
  }
  await db.close();
}

test("[sim] a crash (or torn write) at every file operation of compaction and the manifest switch, then power loss: every resolved commit, and check() passes", async () => {
  const probe = new SimWorld(BASE_SEED);
  await compacting(probe, { acked: 0 });
  const total = probe.counters.ops;
  assert.ok(probe.trace.some((t) => t.startsWith("rename /db/MANIFEST.tmp")), "the scenario switches manifests");
  await atEveryOperation({
    total,
    kinds: () => ["crash", "tear"],
    seed: (at, kind) => BASE_SEED + 13 * at + (kind === "tear" ? 1 : 0),
    state: () => ({ acked: 0 }),
    run: (world, h) => compacting(world, h),
    check: async (world, h, where) => {
      const db = await reopen(where, { adapter: world.powerLoss().process(), namespaces: ["main"] });
      const n = (await db.get<number>("main", "n")) ?? 0;
      assert.ok(n >= h.acked, `${where}: acknowledged commit ${h.acked} lost (n=${n})`);
      for (let r = 0; r < 4; r++) {
        // The last commit j ≤ n with j % 4 == r wrote ["k", r] = j.
        let expect: number | undefined;
        for (let j = n; j >= 1; j--) if (j % 4 === r) { expect = j; break; }
        assert.equal(await db.get("main", ["k", r]), expect, `${where}: k${r} is not what the prefix up to ${n} wrote`);
      }
      const report = await db.check();
      assert.ok(report.ok, `${where}: check() after recovery: ${JSON.stringify(report.problems)}`);
      await db.close();
    },
  });
});
