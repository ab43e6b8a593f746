/**
 * Two-phase commit under a crash (or a torn write) at every file operation, on the
 * simulated platform: one process runs a coordinator over two stores and makes transfers
 * between them (a sum out of one store, into the other, and a marker in each), through
 * every step of the protocol (the first prepare's move to format 3, prepares, the decision,
 * commits, the deletion of finished decisions). Then power loss drops or tears what was not
 * synced, and a new process opens the stores and the coordinator, which resolve what was in
 * doubt. Every transfer must then be in both stores or in neither; every one whose
 * `coord.transaction` resolved must be in both; the sums over the stores are conserved;
 * nothing stays prepared; check() is clean on all three stores.
 *
 * Every failure message names the seed and the operation; replay one point with
 * TXTDB_SEED=<seed> TXTDB_CRASH_AT=<n> (Node and Bun legs).
 */
import { assert, test } from "./harness.ts";
import { atEveryOperation, baseSeed } from "./simfaults.ts";
import { Coordinator, open } from "txtdb";
import type { Database } from "txtdb";
import { databaseInternals } from "txtdb/internal";
import { SimWorld } from "txtdb/adapters/sim";

const BASE_SEED = baseSeed(4200);
const TRANSFERS = 3;

/** Opens what the scenario uses on one simulated process. */
async function openAll(world: SimWorld): Promise<{ a: Database; b: Database; coord: Coordinator }> {
  const p = world.process();
  const a = await open("/a", { adapter: p, namespaces: ["acct"], segmentBytes: 600 });
  const b = await open("/b", { adapter: p, namespaces: ["acct"], segmentBytes: 600 });
  const coord = await Coordinator.open("/c", { adapter: p, recoverIntervalMs: 0, inDoubtTimeoutMs: 3_600_000 });
  return { a, b, coord };
}

/** The transfers: j moves j from a's "x" to b's "y", and marks ["t", j] in both. */
async function scenario(world: SimWorld, acked: Set<number>): Promise<void> {
  let opened: { a: Database; b: Database; coord: Coordinator } | undefined;
  try {
    opened = await openAll(world);
    const { a, b, coord } = opened;
    for (let j = 1; j <= TRANSFERS; j++) {
      await coord.transaction([a, b], (ta, tb) => {
        ta.sum("acct", "x", -j);
        tb.sum("acct", "y", j);
        ta.set("acct", ["t", j], j);
        tb.set("acct", ["t", j], j);
      }, { maxRetries: 0 });
      acked.add(j);
      if (j === 2) await a.compact(); // a fold past a prepare record of the store
    }
  } finally {
    if (opened) {
      await opened.coord.close().catch(() => {});
      await opened.a.close().catch(() => {});
      await opened.b.close().catch(() => {});
    }
  }
}

async function verify(world: SimWorld, acked: Set<number>, where: string): Promise<void> {
  let all: { a: Database; b: Database; coord: Coordinator };
  try {
    all = await openAll(world);
  } catch (e) {
    assert.fail(`${where}: reopen failed: ${String(e)}`);
  }
  const { a, b, coord } = all;
  try {
    // The crashed process's lease is gone with it: whatever it left in doubt is due now.
    // The coordinator's open pushed its commit decisions; the stores resolve the rest.
    await databaseInternals(a).participant.resolveDue();
    await databaseInternals(b).participant.resolveDue();
    assert.deepEqual((await a.listPrepared()).map((p) => p.txid), [], `${where}: store a keeps a transaction in doubt`);
    assert.deepEqual((await b.listPrepared()).map((p) => p.txid), [], `${where}: store b keeps a transaction in doubt`);
    let moved = 0;
    for (let j = 1; j <= TRANSFERS; j++) {
      const inA = (await a.get("acct", ["t", j])) !== undefined;
      const inB = (await b.get("acct", ["t", j])) !== undefined;
      assert.equal(inA, inB, `${where}: transfer ${j} is in ${inA ? "a" : "b"} only`);
      if (acked.has(j)) assert.ok(inA, `${where}: transfer ${j} resolved but is in neither store`);
      if (inA) moved += j;
    }
    const x = (await a.get<number>("acct", "x")) ?? 0;
    const y = (await b.get<number>("acct", "y")) ?? 0;
    assert.equal(x + moved, 0, `${where}: store a's sum does not match its transfers`);
    assert.equal(x + y, 0, `${where}: the sum over the stores is not conserved (x=${x}, y=${y})`);
    for (const [name, db] of [["a", a], ["b", b]] as const) {
      const report = await db.check();
      assert.ok(report.ok, `${where}: check() of ${name}: ${JSON.stringify(report.problems)}`);
    }
    // The stores take new cross-store transactions.
    await coord.transaction([a, b], (ta, tb) => {
      ta.set("acct", "after", 1);
      tb.set("acct", "after", 1);
    });
  } finally {
    await coord.close();
    await a.close();
    await b.close();
  }
  const c = await open("/c", { adapter: world.process(), readOnly: true });
  const report = await c.check();
  await c.close();
  assert.ok(report.ok, `${where}: check() of the coordinator store: ${JSON.stringify(report.problems)}`);
}

test("[sim] a crash or torn write at every file operation of cross-store transactions, then power loss: every transfer in both stores or neither, resolved ones in both, sums conserved", async () => {
  const probe = new SimWorld(BASE_SEED);
  await scenario(probe, new Set());
  const total = probe.counters.ops;
  assert.ok(total > 100, `scenario has ${total} operations`);
  assert.ok(probe.trace.some((t) => t.startsWith("rename /a/MANIFEST.tmp")), "the scenario moves a store to format 3 and compacts it");
  await atEveryOperation({
    total,
    kinds: (at) => [at % 3 === 0 ? "tear" : "crash"],
    seed: (at) => BASE_SEED + 17 * at,
    state: () => new Set<number>(),
    run: (world, acked) => scenario(world, acked),
    check: (world, acked, where) => verify(world.powerLoss(), acked, where),
  });
});

test("[sim] EIO or ENOSPC at every file operation of cross-store transactions, the machine running on: a transfer that failed is in neither store once resolved", async () => {
  const probe = new SimWorld(BASE_SEED);
  await scenario(probe, new Set());
  const total = probe.counters.ops;
  await atEveryOperation({
    total,
    kinds: (at) => [at % 2 ? "EIO" : "ENOSPC"],
    seed: (at) => BASE_SEED + 29 * at,
    state: () => new Set<number>(),
    run: (world, acked) => scenario(world, acked),
    check: (world, acked, where) => verify(world.processCrash(), acked, where),
  });
});
