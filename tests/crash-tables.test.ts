/**
 * Crash safety of table writing on the simulated platform: enough compactions that level 0
 * fills and merges into level 1 (fold.ts rule 2), with deletes, overwrites and a dropped
 * namespace; a crash or a torn write at every file operation, then a power loss; and EIO
 * and ENOSPC at every file operation, then a process crash. After reopening: every
 * resolved commit is there, the state is a prefix of history, and check() is clean.
 *
 * Replay one point with TXTDB_SEED=<seed> TXTDB_CRASH_AT=<n> (Node and Bun legs).
 */
import { assert, test } from "./harness.ts";
import { atEveryOperation, baseSeed, crashOrTear, reopen } from "./simfaults.ts";
import { open, TxtDbError } from "txtdb";
import type { Database } from "txtdb";
import { SimWorld } from "txtdb/adapters/sim";

const BASE_SEED = baseSeed(5000);
const ROUNDS = 24;
const COMPACT_EVERY = 4; // six compactions: level 0 passes 4 tables and merges into level 1

/** Commit j sets n = j, k[j % 6] = j, deletes k[(j + 3) % 6] when j % 5 == 0; namespace "tmp" lives from 2 to 13. */
async function scenario(world: SimWorld, h: { acked: number }): Promise<void> {
  const db = await open("/db", { adapter: world.process(), namespaces: ["main"], segmentBytes: 256, autoCompactBytes: 0 });
  for (let j = 1; j <= ROUNDS; j++) {
    await db.transaction((tx) => {
      tx.set("main", "n", j);
      tx.set("main", ["k", j % 6], j);
      if (j % 5 === 0) tx.delete("main", ["k", (j + 3) % 6]);
    }, { maxRetries: 0 });
    h.acked = j;
    if (j === 2) await db.createNamespace("tmp");
    if (j >= 2 && j < 13) await db.set("tmp", j, "t".repeat(30));
    if (j === 13) await db.dropNamespace("tmp");
    if (j % COMPACT_EVERY === 0) await db.compact();
  }
  await db.close();
}

/** The value of k[r] after commits 1..n. */
function expected(n: number, r: number): number | undefined {
  let v: number | undefined;
  for (let j = 1; j <= n; j++) {
    if (j % 6 === r) v = j;
    if (j % 5 === 0 && (j + 3) % 6 === r) v = undefined;
  }
  return v;
}

async function verify(db: Database, h: { acked: number }, where: string, exact: boolean): Promise<void> {
  const n = (await db.get<number>("main", "n")) ?? 0;
  assert.ok(n >= h.acked, `${where}: acknowledged commit ${h.acked} lost (n=${n})`);
  if (exact) assert.equal(n, h.acked, `${where}: a failed commit appeared`);
  for (let r = 0; r < 6; r++) assert.equal(await db.get("main", ["k", r]), expected(n, r), `${where}: k${r} is not what the prefix up to ${n} wrote`);
  const listed: unknown[] = [];
  for await (const e of db.list("main", { prefix: ["k"] })) listed.push(e.value);
  assert.deepEqual(listed, [0, 1, 2, 3, 4, 5].map((r) => expected(n, r)).filter((v) => v !== undefined), `${where}: list`);
  const names = await db.listNamespaces();
  if (n >= 14) assert.deepEqual(names, ["main"], `${where}: the dropped namespace is back`); // dropped between commits 13 and 14
  if (n >= 3 && n <= 12) assert.deepEqual(names, ["main", "tmp"], `${where}: the namespace created between commits 2 and 3`);
  const report = await db.check();
  assert.ok(report.ok, `${where}: check() after recovery: ${JSON.stringify(report.problems)}`);
}

test("[sim] tables: a crash (or torn write) at every file operation of six compactions and a level merge, then power loss: a prefix with every resolved commit", async () => {
  const probe = new SimWorld(BASE_SEED);
  await scenario(probe, { acked: 0 });
  const total = probe.counters.ops;
  assert.ok(probe.trace.filter((t) => t.startsWith("rename /db/MANIFEST.tmp")).length >= 6, "six manifest switches");
  const db0 = await open("/db", { adapter: probe.powerLoss().process() });
  assert.ok(db0.stats().tableBytesByLevel[1]! > 0, `level 1 holds the merge: ${JSON.stringify(db0.stats().tableBytesByLevel)}`);
  await db0.close();
  await atEveryOperation({
    total,
    kinds: crashOrTear,
    seed: (at, kind) => BASE_SEED + 13 * at + (kind === "tear" ? 1 : 0),
    state: () => ({ acked: 0 }),
    run: (world, h) => scenario(world, h),
    check: async (world, h, where) => {
      const db = await reopen(where, { adapter: world.powerLoss().process(), namespaces: ["main"] });
      await verify(db, h, where, false);
      await db.set("main", "after", 1);
      await db.compact();
      await db.close();
    },
  });
});

test("[sim] tables: EIO and ENOSPC at every file operation of compactions: errors are TxtDbErrors, nothing acknowledged is lost, the store reopens clean", async () => {
  const probe = new SimWorld(BASE_SEED + 1);
  await scenario(probe, { acked: 0 });
  const total = probe.counters.ops;
  await atEveryOperation({
    total,
    kinds: (at) => [at % 2 === 0 ? "EIO" : "ENOSPC"],
    seed: (at) => BASE_SEED + 7 * at,
    state: () => ({ acked: 0 }),
    run: (world, h) => scenario(world, h),
    check: async (world, h, where, failure) => {
      if (failure !== undefined) assert.ok(failure instanceof TxtDbError, `${where}: ${String(failure)}`);
      const db = await reopen(where, { adapter: world.processCrash().process(), namespaces: ["main"] });
      // The page cache survives a process crash: exactly what resolved (a failed commit never appears).
      await verify(db, h, where, true);
      await db.close();
    },
  });
});
